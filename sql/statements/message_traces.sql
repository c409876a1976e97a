SELECT count(*) OVER () AS total, id, transaction_id, partition_id, event_type, data,
       consumer_group, worker_id, created_at, trace_names
  FROM queen.message_traces($1::uuid, $2::text)
 ORDER BY created_at, id
