SELECT m FROM queen.list_messages($1::text, $2::text, $3::text, $4::text, $5::text, $6::timestamptz, $7::timestamptz, $8::integer, $9::integer) m
