SELECT timer, payload, sealed FROM queen.timers_read($1::text, $2::text, $3::text, $4::integer)
