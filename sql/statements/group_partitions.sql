-- One consumer group's cursors ($1), per queue and partition, with their lag (see
-- group_stats.sql for what the time lag is). Unordered: the engine sorts the rows.
SELECT q.name AS queue_name, p.name AS partition_name, c.worker_id, c.last_consumed_at,
       c.total_consumed, greatest(p.last_position - c.position, 0) AS offset_lag,
       CASE WHEN p.last_position > c.position
            THEN extract(epoch FROM now() - p.last_message_at)::float8 ELSE 0 END AS time_lag,
       c.lease_id IS NOT NULL AND c.lease_expires_at > now() AS lease_active
  FROM queen.cursors c
  JOIN queen.partitions p ON p.id = c.partition_id
  JOIN queen.queues q ON q.id = p.queue_id
 WHERE c.consumer_group = $1::text
