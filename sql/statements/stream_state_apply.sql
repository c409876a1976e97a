SELECT queen.stream_state_apply($1::uuid, $2::uuid, $3::jsonb)
