-- The messages a dead-letter retry moved to the tail of their partition, by key: the only ones
-- whose time (created_at) is older than a message stored ahead of them. The listings read a
-- partition's newest messages by position and add these (docs/storage.md, "Listing messages
-- without scans"). A push never enters this index (its rows are not requeued).
CREATE INDEX messages_requeued ON queen.messages (pnum, position) WHERE requeued_at IS NOT NULL;
