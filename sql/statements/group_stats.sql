-- Consumer groups per queue: partitions read, offset lag (positions behind the partition's
-- last), and time lag as the age of the newest message a lagging partition holds (a lower
-- bound of the true lag, from the partition row: no lookup per cursor).
SELECT c.consumer_group, q.name AS queue_name,
       count(DISTINCT c.worker_id) AS members,
       count(*) AS partitions,
       count(*) FILTER (WHERE p.last_position > c.position) AS partitions_with_lag,
       coalesce(sum(greatest(p.last_position - c.position, 0)), 0)::bigint AS total_lag,
       coalesce(max(extract(epoch FROM now() - p.last_message_at))
                  FILTER (WHERE p.last_position > c.position), 0)::float8 AS max_time_lag,
       max(c.last_consumed_at) AS last_consumed_at,
       s.mode AS subscription_mode, s.from_ts AS subscription_from
  FROM queen.cursors c
  JOIN queen.partitions p ON p.id = c.partition_id
  JOIN queen.queues q ON q.id = p.queue_id
  LEFT JOIN queen.subscriptions s ON s.queue_id = q.id AND s.consumer_group = c.consumer_group
 WHERE c.consumer_group <> '__QUEUE_MODE__'
 GROUP BY c.consumer_group, q.name, s.mode, s.from_ts
 ORDER BY c.consumer_group, q.name
