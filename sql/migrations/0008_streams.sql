-- Stream processing (docs/streams.md): the queries Queen's clients register and the state their
-- operators keep per (query, source partition). The clients run the operators; the server keeps
-- the state and commits each cycle (state, sink pushes, source ack) in one transaction.
CREATE TABLE queen.stream_queries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text COLLATE "C" NOT NULL UNIQUE,
    source_queue text NOT NULL,
    sink_queue text,
    config_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A state row lives as long as its query and its source partition: deleting either (a queue
-- delete removes its partitions) removes the state.
CREATE TABLE queen.stream_state (
    query_id uuid NOT NULL REFERENCES queen.stream_queries (id) ON DELETE CASCADE,
    partition_id uuid NOT NULL REFERENCES queen.partitions (id) ON DELETE CASCADE,
    key text COLLATE "C" NOT NULL,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (query_id, partition_id, key)
);
CREATE INDEX stream_state_partition ON queen.stream_state (partition_id);
