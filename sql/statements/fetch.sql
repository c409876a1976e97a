SELECT ord, found, high_watermark, log_start, record_offset, transaction_id, payload, sealed, created_at FROM queen.fetch($1::text[], $2::text[], $3::bigint[], $4::integer)
