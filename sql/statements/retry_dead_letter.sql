SELECT queen.retry_dead_letter($1::uuid, $2::text)
