-- A dead-letter retry moves the message to the tail of its partition so the groups that
-- dead-lettered it meet it again.
--   settled_by:  the groups that had already settled it (their cursor was past it, and they did
--                not dead-letter it); their pops step over it instead of delivering it again.
--   requeued_at: when the retry sent it back; ttl, maxWaitTimeSeconds and retention count from
--                then, so a message dead-lettered as expired can be retried at all.
-- Both NULL for every message never retried from the DLQ.
ALTER TABLE queen.messages ADD COLUMN settled_by text[], ADD COLUMN requeued_at timestamptz;
