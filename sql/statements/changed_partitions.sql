SELECT queue_found, safe_time, num, id, name, last_position, log_start, last_message_at FROM queen.changed_partitions($1::text, $2::timestamptz, $3::bigint, $4::integer)
