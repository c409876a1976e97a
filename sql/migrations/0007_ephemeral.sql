-- Declarations of ephemeral queues (docs/ephemeral.md): the options `configure` set, so a
-- declared queue comes back after a restart configured (and empty: its messages live only in
-- a server's memory). Read by every server every few seconds; never on a push, pop or ack.
CREATE TABLE queen.ephemeral_queues (
    name text PRIMARY KEY,
    options jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
