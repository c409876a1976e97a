-- queen-rs schema, version 1.
--
-- Hot-path principles:
--   * messages are keyed by (partition_id, position): a pop is an index range scan;
--   * a partition's position counter is a row updated inside the push transaction, so its row
--     lock serialises pushes to that partition until commit and positions follow commit order;
--   * a cursor per (partition, consumer group) holds the committed position and the live lease:
--     an ack updates one row, no table grows by a row per ack;
--   * counters and cursors are small, update-heavy rows: low fillfactor keeps updates HOT.

CREATE SCHEMA IF NOT EXISTS queen;

CREATE TABLE queen.queues (
    id                          uuid PRIMARY KEY,
    name                        text NOT NULL UNIQUE,
    namespace                   text,
    task                        text,
    lease_time                  integer NOT NULL DEFAULT 300,
    max_size                    bigint  NOT NULL DEFAULT 0,
    ttl                         integer NOT NULL DEFAULT 0,
    retry_limit                 integer NOT NULL DEFAULT 3,
    retry_delay                 integer NOT NULL DEFAULT 0,
    dead_letter_queue           boolean NOT NULL DEFAULT true,
    dlq_after_max_retries       boolean NOT NULL DEFAULT true,
    priority                    integer NOT NULL DEFAULT 0,
    delayed_processing          integer NOT NULL DEFAULT 0,
    window_buffer               integer NOT NULL DEFAULT 0,
    retention_seconds           integer NOT NULL DEFAULT 0,
    completed_retention_seconds integer NOT NULL DEFAULT 0,
    retention_enabled           boolean NOT NULL DEFAULT false,
    encryption_enabled          boolean NOT NULL DEFAULT false,
    max_wait_time_seconds       integer NOT NULL DEFAULT 0,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queues_namespace_task ON queen.queues (namespace, task);

CREATE TABLE queen.partitions (
    id              uuid PRIMARY KEY,
    queue_id        uuid NOT NULL REFERENCES queen.queues (id) ON DELETE CASCADE,
    name            text NOT NULL,
    -- Last position handed out; a push takes the next ones under this row's lock.
    last_position   bigint NOT NULL DEFAULT 0,
    -- created_at of the newest message (windowBuffer).
    last_message_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (queue_id, name)
) WITH (fillfactor = 50);
-- Any-partition pops walk a queue's partitions from a random id (partition ids are random).
CREATE INDEX partitions_queue_walk ON queen.partitions (queue_id, id);

CREATE TABLE queen.messages (
    partition_id   uuid        NOT NULL,
    position       bigint      NOT NULL,
    id             uuid        NOT NULL,
    transaction_id text        NOT NULL,
    trace_id       uuid,
    payload        jsonb,
    -- AES-256-GCM nonce || ciphertext when the queue encrypts (payload is then NULL).
    encrypted      bytea,
    producer_sub   text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition_id, position),
    UNIQUE (partition_id, transaction_id)
);

-- Per (partition, consumer group): committed position and the live lease.
CREATE TABLE queen.cursors (
    partition_id       uuid    NOT NULL REFERENCES queen.partitions (id) ON DELETE CASCADE,
    consumer_group     text    NOT NULL,
    position           bigint  NOT NULL DEFAULT 0,
    lease_id           uuid,
    lease_expires_at   timestamptz,
    -- Last position covered by the live lease.
    lease_end          bigint,
    -- Redelivery hold (retryDelay): nothing is delivered before this time.
    not_before         timestamptz,
    worker_id          text,
    total_consumed     bigint  NOT NULL DEFAULT 0,
    last_consumed_at   timestamptz,
    PRIMARY KEY (partition_id, consumer_group)
) WITH (fillfactor = 50);
CREATE INDEX cursors_lease ON queen.cursors (lease_id) WHERE lease_id IS NOT NULL;
CREATE INDEX cursors_expiry ON queen.cursors (lease_expires_at) WHERE lease_id IS NOT NULL;

-- Delivery counts of messages that failed at least once (sparse: only failures write here).
CREATE TABLE queen.retries (
    partition_id   uuid    NOT NULL,
    consumer_group text    NOT NULL,
    position       bigint  NOT NULL,
    failures       integer NOT NULL DEFAULT 0,
    last_error     text,
    PRIMARY KEY (partition_id, consumer_group, position)
);

-- How a named group starts on partitions it has not read yet.
CREATE TABLE queen.subscriptions (
    queue_id        uuid NOT NULL REFERENCES queen.queues (id) ON DELETE CASCADE,
    consumer_group  text NOT NULL,
    mode            text NOT NULL,            -- all | new | timestamp
    from_ts         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue_id, consumer_group)
);

CREATE TABLE queen.dead_letters (
    id             bigserial PRIMARY KEY,
    partition_id   uuid NOT NULL,
    position       bigint NOT NULL,
    message_id     uuid NOT NULL,
    transaction_id text NOT NULL,
    consumer_group text NOT NULL,
    error_message  text,
    retry_count    integer NOT NULL DEFAULT 0,
    failed_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (partition_id, consumer_group, position)
);
CREATE INDEX dead_letters_failed_at ON queen.dead_letters (failed_at);

CREATE TABLE queen.traces (
    id             uuid PRIMARY KEY,
    partition_id   uuid NOT NULL,
    transaction_id text NOT NULL,
    consumer_group text,
    event_type     text NOT NULL DEFAULT 'info',
    data           jsonb NOT NULL,
    worker_id      text,
    trace_names    text[] NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX traces_message ON queen.traces (partition_id, transaction_id);
CREATE INDEX traces_names ON queen.traces USING gin (trace_names);

-- Settings every server attached to the database follows (maintenance modes).
CREATE TABLE queen.system_settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One acknowledgement resolved to its message, as queen.ack() holds it in memory.
CREATE TYPE queen.ack_item AS (
    idx integer, grp text, partition_id uuid, txid text, status text, err text, lease_id uuid,
    position bigint, message_id uuid, qname text, pname text, retry_limit integer,
    retry_delay integer, dlq_on boolean, dlq_retries boolean
);
