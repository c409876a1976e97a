-- Per-partition figures of one queue ($1) or of every queue ($1 NULL), as seen by queue-mode
-- consumers: total, pending, processing (under a live lease), completed, failed (delivered and
-- failed at least once, not yet settled), dead-lettered; oldest and newest message.
SELECT q.id AS queue_id, q.name AS queue_name, q.namespace, q.task, q.priority,
       q.created_at AS queue_created_at,
       p.id AS partition_id, p.name AS partition_name, p.created_at AS partition_created_at,
       coalesce(s.total, 0) AS total, coalesce(s.pending, 0) AS pending,
       coalesce(s.processing, 0) AS processing, coalesce(s.completed, 0) AS completed,
       (SELECT count(*) FROM queen.retries r WHERE r.partition_id = p.id AND r.consumer_group = '__QUEUE_MODE__') AS failed,
       (SELECT count(*) FROM queen.dead_letters d WHERE d.partition_id = p.id) AS dead_letter,
       s.oldest, s.newest
  FROM queen.queues q
  LEFT JOIN queen.partitions p ON p.queue_id = q.id
  LEFT JOIN queen.cursors c ON c.partition_id = p.id AND c.consumer_group = '__QUEUE_MODE__'
  LEFT JOIN LATERAL (
        SELECT count(*) AS total,
               count(*) FILTER (WHERE m.position > coalesce(c.position, 0)
                                  AND NOT (c.lease_id IS NOT NULL AND c.lease_expires_at > now()
                                           AND m.position <= c.lease_end)) AS pending,
               count(*) FILTER (WHERE c.lease_id IS NOT NULL AND c.lease_expires_at > now()
                                  AND m.position > c.position AND m.position <= c.lease_end) AS processing,
               count(*) FILTER (WHERE m.position <= coalesce(c.position, 0)) AS completed,
               min(m.created_at) AS oldest, max(m.created_at) AS newest
          FROM queen.messages m
         WHERE m.pnum = p.num) s ON true
 WHERE $1::text IS NULL OR q.name = $1::text
 ORDER BY q.name, p.name
