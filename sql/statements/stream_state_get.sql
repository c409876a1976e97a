SELECT queen.stream_state_get($1::uuid, $2::uuid, $3::text[], $4::text, $5::bigint) AS rows
