-- Analytics that do not grow with stored data (docs/storage.md, "Counters").
--
-- * partitions.removed: messages deleted from the partition (retention, message deletes, the
--   old place of a message a DLQ retry moved). Stored messages = last_position - removed, with
--   no count over queen.messages. Kept by a statement trigger on deletes (sql/functions/
--   counters.sql) and by queen.retry_dead_letter; pushes, pops and acks never touch it.
-- * partitions.dead_lettered: dead-letter rows of the partition, kept by statement triggers on
--   queen.dead_letters (a rare path).
-- * A BRIN index on messages.created_at: the message listing walks time windows newest first
--   without a B-tree on the hot table (a BRIN summary costs an insert next to nothing). With
--   autosummarize, autovacuum summarises each range as soon as it fills: a range not yet
--   summarised matches every window, and a table filled in one go would otherwise be read
--   whole by every listing until its first vacuum.
-- * cursors by group, for one group's partitions without a scan of every cursor.
-- * dead letters by partition, newest first, for the DLQ listing of one queue or partition.

ALTER TABLE queen.partitions ADD COLUMN removed bigint NOT NULL DEFAULT 0;
ALTER TABLE queen.partitions ADD COLUMN dead_lettered bigint NOT NULL DEFAULT 0;

UPDATE queen.partitions p
   SET removed = p.last_position - coalesce(m.n, 0),
       dead_lettered = coalesce(d.n, 0)
  FROM queen.partitions pp
  LEFT JOIN (SELECT pnum, count(*) AS n FROM queen.messages GROUP BY pnum) m ON m.pnum = pp.num
  LEFT JOIN (SELECT partition_id, count(*) AS n FROM queen.dead_letters GROUP BY partition_id) d
         ON d.partition_id = pp.id
 WHERE pp.id = p.id;

CREATE INDEX messages_created_at ON queen.messages USING brin (created_at)
  WITH (pages_per_range = 16, autosummarize = on);
CREATE INDEX cursors_group ON queen.cursors (consumer_group);
CREATE INDEX dead_letters_partition ON queen.dead_letters (partition_id, id);
