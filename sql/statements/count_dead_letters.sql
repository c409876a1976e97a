SELECT queen.count_dead_letters($1::text, $2::text, $3::text, $4::timestamptz, $5::timestamptz)
