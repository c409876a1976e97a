-- Timers (docs/kv.md, "Timers"): a message scheduled for later under a (queue, timerKey), until
-- the server fires it into the queue (then the row goes: a delivered timer has no row).
--
-- * txn / message_id: the transactionId and the id the fired message will carry, fixed at
--   schedule time so a caller can find the delivery in the queue. A fire that is repeated (a
--   server stopped between the push and the delete) is a duplicate of the first by txn.
-- * claim_token / claimed_until: a fire in progress. While claimed, a cancel or reschedule
--   answers too_late; a claim that outlives claimed_until (its server died) is taken again.
-- * attempts / last_error: fires the queue refused (full, say), retried with a backoff.
-- * payload / sealed: the JSON text to push, or — on a server with an encryption key — that
--   text sealed with it (a timer's queue may encrypt; its payload is not kept in the clear).

CREATE TABLE queen.timers (
    queue text NOT NULL,
    timer_key text COLLATE "C" NOT NULL,
    partition text NOT NULL,
    txn text NOT NULL,
    message_id uuid NOT NULL,
    payload text,
    sealed bytea,
    deliver_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    claim_token uuid,
    claimed_until timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (queue, timer_key)
);

CREATE INDEX timers_due ON queen.timers (deliver_at);
