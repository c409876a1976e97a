SELECT doc, payload, sealed, total FROM queen.list_dead_letters($1::text, $2::text, $3::text, $4::timestamptz, $5::timestamptz, $6::integer, $7::integer)
