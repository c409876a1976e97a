-- Storage for the hot path (docs/storage.md): the message table rebuilt around what push, pop
-- and ack do per message, measured against the leanest PostgreSQL queue.
--
--   * Partitions get a compact number (`num`): messages are keyed by (pnum, position), 16 bytes
--     instead of 24 per key, with integer comparisons only.
--   * A transactionId is stored as `uuid` when it is one (what Queen's clients generate; 16
--     bytes instead of 37), as text otherwise (in the "C" collation: compared byte by byte).
--     Each form has its unique index per partition, so a push finds duplicates by inserting (no
--     separate probe) and every row enters exactly one of them; the unique (partition, text)
--     index with collation-aware comparisons goes.
--   * Payloads are kept as the JSON text the client sent (`payload text`, or `sealed` bytes for
--     encrypting queues): no jsonb parse on push, no jsonb-to-text on pop, byte-for-byte what
--     was pushed.
--   * Every partition has its queue-mode cursor from the start, so first pops never insert
--     cursor rows concurrently (they could deadlock).
-- Existing messages are copied into the new table (payloads keep their jsonb text form).

ALTER TABLE queen.partitions ADD COLUMN num bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE queen.partitions ADD CONSTRAINT partitions_num_key UNIQUE (num);

ALTER TABLE queen.messages RENAME TO messages_v1;
ALTER TABLE queen.messages_v1 RENAME CONSTRAINT messages_pkey TO messages_v1_pkey;
ALTER INDEX queen.messages_partition_id_transaction_id_key RENAME TO messages_v1_txid;

CREATE TABLE queen.messages (
    pnum         bigint      NOT NULL,
    position     bigint      NOT NULL,
    id           uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- The transactionId: one of the two.
    txuuid       uuid,
    txtext       text COLLATE "C",
    trace_id     uuid,
    producer_sub text,
    -- The JSON text as pushed, or (encrypting queues) nonce || ciphertext || tag.
    payload      text,
    sealed       bytea,
    -- Set by a dead-letter retry (see 0002).
    settled_by   text[],
    requeued_at  timestamptz,
    PRIMARY KEY (pnum, position)
);
CREATE UNIQUE INDEX messages_txuuid ON queen.messages (pnum, txuuid) WHERE txuuid IS NOT NULL;
CREATE UNIQUE INDEX messages_txtext ON queen.messages (pnum, txtext) WHERE txtext IS NOT NULL;

INSERT INTO queen.messages (pnum, position, id, created_at, txuuid, txtext, trace_id,
                            producer_sub, payload, sealed, settled_by, requeued_at)
SELECT p.num, m.position,
       m.id, m.created_at, t.u, CASE WHEN t.u IS NULL THEN m.transaction_id END,
       m.trace_id, m.producer_sub, m.payload::text, m.encrypted, m.settled_by, m.requeued_at
  FROM queen.messages_v1 m
  JOIN queen.partitions p ON p.id = m.partition_id
 CROSS JOIN LATERAL (
       SELECT CASE WHEN m.transaction_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                   THEN m.transaction_id::uuid END AS u) t;
DROP TABLE queen.messages_v1;

INSERT INTO queen.cursors (partition_id, consumer_group, position)
SELECT p.id, '__QUEUE_MODE__', 0 FROM queen.partitions p
ON CONFLICT DO NOTHING;

-- The old functions and the type of the old ack go; the current ones are applied after the
-- migrations (sql/functions/).
DROP TYPE IF EXISTS queen.ack_item CASCADE;
