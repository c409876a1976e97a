SELECT s.query_id, s.fresh, s.did_reset, s.mismatch FROM queen.stream_register($1::text, $2::text, $3::text, $4::text, $5::boolean) s
