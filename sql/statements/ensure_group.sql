SELECT queen.ensure_group($1::text, $2::text, $3::text, $4::timestamptz, $5::uuid[])
