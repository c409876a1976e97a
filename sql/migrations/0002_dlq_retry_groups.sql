-- A dead-letter retry moves the message to the tail of its partition so the groups that
-- dead-lettered it meet it again. The groups that had already settled it (their cursor was past
-- it, and they did not dead-letter it) are recorded here, and their pops step over it instead of
-- delivering it a second time. NULL for every message that was never retried from the DLQ.
ALTER TABLE queen.messages ADD COLUMN settled_by text[];
