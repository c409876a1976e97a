SELECT queen.message_traces($1::uuid, $2::text)
