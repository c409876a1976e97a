-- Timers (docs/kv.md, "Timers"), kept in queen.timers until the server fires them.

-- A timer as the API answers it.
CREATE FUNCTION queen.timer_json(t queen.timers) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('queue', t.queue, 'timerKey', t.timer_key,
        'partition', t.partition, 'txn', t.txn, 'messageId', t.message_id,
        'deliverAt', queen.ts(t.deliver_at), 'attempts', t.attempts, 'lastError', t.last_error,
        'createdAt', queen.ts(t.created_at), 'updatedAt', queen.ts(t.updated_at))
$$;

-- Runs schedule and cancel operations in order, in one transaction; the server has checked
-- them, and no (queue, timerKey) appears twice in one call:
--   {"op": "schedule", "queue", "timerKey", "partition", "txn", "messageId", "payload" (JSON
--    text) or "sealed" (base64 of it sealed, on a server with an encryption key), "delayMs",
--    "reschedule"}
--   {"op": "cancel", "queue", "timerKey", "txn"?}
-- Schedule is an upsert: a timer already there is replaced (status "rescheduled", its attempts
-- back to 0), unless a fire has claimed it (status "too_late": the message is being delivered).
-- A cancel deletes the timer ("cancelled"), finds none ("absent": never scheduled, or already
-- delivered; the given txn is echoed so the caller can look for the delivery), or finds it
-- claimed ("too_late").
CREATE FUNCTION queen.timers_apply(p_ops jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_op jsonb;
    v_out jsonb := '[]';
    v_r jsonb;
    v_t queen.timers;
    v_inserted boolean;
BEGIN
    FOR v_op IN SELECT o FROM jsonb_array_elements(p_ops) AS o LOOP
        v_t := NULL;
        v_r := NULL;
        IF v_op->>'op' = 'schedule' THEN
            INSERT INTO queen.timers AS t (queue, timer_key, partition, txn, message_id, payload,
                                           sealed, deliver_at, created_at, updated_at)
            VALUES (v_op->>'queue', v_op->>'timerKey', v_op->>'partition', v_op->>'txn',
                    (v_op->>'messageId')::uuid, v_op->>'payload',
                    decode(v_op->>'sealed', 'base64'),
                    now() + make_interval(secs => (v_op->>'delayMs')::double precision / 1000),
                    now(), now())
            ON CONFLICT (queue, timer_key) DO UPDATE
               SET partition = excluded.partition, txn = excluded.txn,
                   message_id = excluded.message_id, payload = excluded.payload,
                   sealed = excluded.sealed,
                   deliver_at = excluded.deliver_at, attempts = 0, last_error = NULL,
                   claim_token = NULL, claimed_until = NULL, updated_at = now()
             WHERE t.claimed_until IS NULL OR t.claimed_until < now()
            RETURNING queen.timer_json(t), (t.xmax = 0) INTO v_r, v_inserted;
            IF v_r IS NULL THEN
                v_r := jsonb_build_object('ok', false, 'status', 'too_late',
                    'queue', v_op->>'queue', 'timerKey', v_op->>'timerKey');
            ELSE
                v_r := v_r || jsonb_build_object('ok', true,
                    'status', CASE WHEN v_inserted THEN 'scheduled' ELSE 'rescheduled' END);
            END IF;
        ELSE
            DELETE FROM queen.timers t
             WHERE t.queue = v_op->>'queue' AND t.timer_key = v_op->>'timerKey'
               AND (t.claimed_until IS NULL OR t.claimed_until < now())
            RETURNING t.* INTO v_t;
            IF v_t.queue IS NOT NULL THEN
                v_r := jsonb_build_object('ok', true, 'status', 'cancelled',
                    'queue', v_t.queue, 'timerKey', v_t.timer_key, 'txn', v_t.txn);
            ELSE
                v_r := jsonb_build_object('ok', false,
                    'status', CASE WHEN EXISTS (SELECT 1 FROM queen.timers t
                                                 WHERE t.queue = v_op->>'queue'
                                                   AND t.timer_key = v_op->>'timerKey')
                                   THEN 'too_late' ELSE 'absent' END,
                    'queue', v_op->>'queue', 'timerKey', v_op->>'timerKey',
                    'txn', v_op->'txn');
            END IF;
        END IF;
        v_out := v_out || jsonb_build_array(v_r);
    END LOOP;
    RETURN v_out;
END
$$;

-- Claims up to p_limit timers that are due (and not claimed by a live fire) for a fire that
-- lasts at most p_lease_ms; answers them.
CREATE FUNCTION queen.timers_claim(p_limit integer, p_claim uuid, p_lease_ms integer)
RETURNS SETOF queen.timers
LANGUAGE sql AS $$
    UPDATE queen.timers t
       SET claim_token = p_claim,
           claimed_until = now() + make_interval(secs => p_lease_ms::double precision / 1000)
     WHERE (t.queue, t.timer_key) IN (
           SELECT d.queue, d.timer_key FROM queen.timers d
            WHERE d.deliver_at <= now()
              AND (d.claimed_until IS NULL OR d.claimed_until < now())
            ORDER BY d.deliver_at
            LIMIT p_limit
              FOR UPDATE SKIP LOCKED)
    RETURNING t.*
$$;

-- Ends a fire: the timers pushed (p_errors[i] NULL) are deleted, the others released with their
-- error and a backoff of 2^attempts seconds (at most a minute). Only rows still under this
-- claim are touched (a claim that outlived its lease may have been taken by another fire).
CREATE FUNCTION queen.timers_settle(p_claim uuid, p_queues text[], p_keys text[],
                                    p_errors text[])
RETURNS void
LANGUAGE sql AS $$
    DELETE FROM queen.timers t
     USING unnest(p_queues, p_keys, p_errors) AS s(queue, key, error)
     WHERE t.queue = s.queue AND t.timer_key = s.key COLLATE "C"
       AND t.claim_token = p_claim AND s.error IS NULL;
    UPDATE queen.timers t
       SET attempts = t.attempts + 1, last_error = s.error, claim_token = NULL,
           claimed_until = NULL,
           deliver_at = now() + make_interval(secs => least(2 ^ t.attempts, 60))
      FROM unnest(p_queues, p_keys, p_errors) AS s(queue, key, error)
     WHERE t.queue = s.queue AND t.timer_key = s.key COLLATE "C"
       AND t.claim_token = p_claim AND s.error IS NOT NULL;
$$;

-- One timer, or one page of a queue's timers by key (after: exclusive).
CREATE FUNCTION queen.timers_read(p_queue text, p_key text, p_after text, p_limit integer)
RETURNS TABLE (timer jsonb, payload text, sealed bytea)
LANGUAGE sql STABLE AS $$
    SELECT queen.timer_json(t), t.payload, t.sealed FROM queen.timers t
     WHERE t.queue = p_queue
       AND (p_key IS NULL OR t.timer_key = p_key COLLATE "C")
       AND (p_after IS NULL OR t.timer_key > p_after COLLATE "C")
     ORDER BY t.timer_key
     LIMIT p_limit
$$;
