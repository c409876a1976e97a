SELECT queen.timers_settle($1::uuid, $2::text[], $3::text[], $4::text[])
