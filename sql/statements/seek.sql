SELECT queen.seek($1::text, $2::text, $3::text, $4::boolean, $5::timestamptz)
