-- Every partition of every queue with the counters the analytics add up: stored messages are
-- last_position - removed, queue-mode progress is the cursor, a live lease covers lease_end -
-- position messages (docs/storage.md, "Counters"). One row per partition, no count over
-- queen.messages; retries are few (only failed deliveries write there). Unordered: the engine
-- orders queues and partitions by name (a database sort of every row spilled to disk).
SELECT q.id AS queue_id, q.name AS queue_name, q.namespace, q.task, q.priority,
       q.created_at AS queue_created_at,
       p.id AS partition_id, p.name AS partition_name, p.created_at AS partition_created_at,
       p.last_position, p.removed, p.dead_lettered, p.last_message_at,
       coalesce(c.position, 0) AS committed,
       CASE WHEN c.lease_id IS NOT NULL AND c.lease_expires_at > now()
            THEN greatest(c.lease_end - c.position, 0) ELSE 0 END AS leased,
       coalesce(r.n, 0) AS failed
  FROM queen.queues q
  LEFT JOIN queen.partitions p ON p.queue_id = q.id
  LEFT JOIN queen.cursors c ON c.partition_id = p.id AND c.consumer_group = '__QUEUE_MODE__'
  LEFT JOIN (SELECT r.partition_id, count(*) AS n FROM queen.retries r
              WHERE r.consumer_group = '__QUEUE_MODE__' GROUP BY r.partition_id) r
         ON r.partition_id = p.id
