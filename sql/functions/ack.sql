-- Offset-commit acks (docs/semantics.md, "Acks"). Items may span groups and partitions
-- (coalesced requests); each (partition, group) is settled under its cursor lock, in a fixed
-- order. A transactionId comes split as the server stores it (txuuid or txtext).

-- One acknowledgement resolved to its message, as queen.ack() holds it in memory.
CREATE TYPE queen.ack_item AS (
    idx integer, grp text, partition_id uuid, txid text, status text, err text, lease_id uuid,
    position bigint, message_id uuid, qname text, pname text, retry_limit integer,
    retry_delay integer, dlq_on boolean, dlq_retries boolean
);

CREATE FUNCTION queen.ack(
    p_groups text[],
    p_partition_ids uuid[],
    p_txuuids uuid[],
    p_txtexts text[],
    p_statuses text[],        -- completed | success | failed | retry | dlq
    p_errors text[],
    p_lease_ids uuid[],
    p_strict boolean)         -- inside a transaction: any failed item aborts it
RETURNS TABLE (
    idx integer, success boolean, error text, queue_name text, partition_name text,
    lease_released boolean, dlq boolean, noop boolean)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    g record;
    c record;
    it record;
    v_stale boolean;
    v_nack bigint;
    v_nack_status text;
    v_nack_error text;
    v_commit bigint;
    v_pos bigint;
    v_failures integer;
    v_released boolean;
    v_nack_dlq boolean;
    v_count integer;
    v_not_before timestamptz;
    res_idx integer[] := '{}';
    res_ok boolean[] := '{}';
    res_err text[] := '{}';
    res_q text[] := '{}';
    res_p text[] := '{}';
    res_rel boolean[] := '{}';
    res_dlq boolean[] := '{}';
    res_noop boolean[] := '{}';
    v_items queen.ack_item[];
    v_sorted queen.ack_item[];   -- resolved items ordered by (partition, group): one slice per group
    v_g queen.ack_item[];        -- the current group's slice
    v_any_dlq boolean := 'dlq' = ANY (p_statuses);
BEGIN
    -- The items, resolved to positions, held in memory (no temporary table: no catalog churn).
    SELECT coalesce(array_agg(ROW(t.o::integer, t.grp, t.pid, queen.txid(t.txuuid, t.txtext),
                                  t.status, t.err, t.lease, m.position, m.id, q.name, p.name,
                                  q.retry_limit, q.retry_delay, q.dead_letter_queue,
                                  q.dlq_after_max_retries)::queen.ack_item
                              ORDER BY t.o), '{}')
      INTO v_items
      FROM unnest(p_groups, p_partition_ids, p_txuuids, p_txtexts, p_statuses, p_errors,
                  p_lease_ids)
           WITH ORDINALITY AS t(grp, pid, txuuid, txtext, status, err, lease, o)
      LEFT JOIN queen.partitions p ON p.id = t.pid
      LEFT JOIN queen.queues q ON q.id = p.queue_id
      -- A per-item index probe (OFFSET 0: never flattened into a join that a plan cached on an
      -- empty table would run as a full scan).
      LEFT JOIN LATERAL (
            SELECT ms.position, ms.id FROM queen.messages ms
             WHERE ms.pnum = p.num AND ms.txuuid = t.txuuid
            UNION ALL
            SELECT ms.position, ms.id FROM queen.messages ms
             WHERE ms.pnum = p.num AND ms.txtext = t.txtext COLLATE "C") m ON true;

    FOR it IN SELECT * FROM unnest(v_items) WHERE position IS NULL LOOP
        res_idx := res_idx || it.idx; res_ok := res_ok || false;
        res_err := res_err || 'Message not found (unresolvable)'::text;
        res_q := res_q || it.qname; res_p := res_p || it.pname;
        res_rel := res_rel || false; res_dlq := res_dlq || false; res_noop := res_noop || false;
    END LOOP;

    -- Each (partition, group) works on its own slice of the sorted items, so a batch of n items
    -- over n partitions costs O(n), not O(n^2) scans of the whole batch.
    SELECT coalesce(array_agg(i ORDER BY i.partition_id, i.grp, i.idx), '{}') INTO v_sorted
      FROM unnest(v_items) i WHERE i.position IS NOT NULL;
    FOR g IN
        SELECT (v_sorted[k]).partition_id, (v_sorted[k]).grp, min(k) AS lo, max(k) AS hi
          FROM generate_subscripts(v_sorted, 1) AS k
         GROUP BY 1, 2 ORDER BY 1, 2
    LOOP
        v_g := v_sorted[g.lo:g.hi];
        -- The cursor almost always exists (the pop made it): one statement then, two otherwise.
        SELECT * INTO c FROM queen.cursors cu
         WHERE cu.partition_id = g.partition_id AND cu.consumer_group = g.grp FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO queen.cursors (partition_id, consumer_group, position)
            VALUES (g.partition_id, g.grp, 0) ON CONFLICT DO NOTHING;
            SELECT * INTO c FROM queen.cursors cu
             WHERE cu.partition_id = g.partition_id AND cu.consumer_group = g.grp FOR UPDATE;
        END IF;

        -- Fencing: an item naming a lease that is not the live one fails the whole group.
        SELECT EXISTS (
            SELECT 1 FROM unnest(v_g) i
             WHERE true AND i.position IS NOT NULL
               AND i.lease_id IS NOT NULL
               AND (c.lease_id IS DISTINCT FROM i.lease_id OR c.lease_expires_at <= now()))
          INTO v_stale;
        IF v_stale THEN
            FOR it IN SELECT * FROM unnest(v_g) i
                       WHERE true AND i.position IS NOT NULL
            LOOP
                res_idx := res_idx || it.idx; res_ok := res_ok || false;
                res_err := res_err || 'Invalid lease: the lease expired or is held by another consumer'::text;
                res_q := res_q || it.qname; res_p := res_p || it.pname;
                res_rel := res_rel || false; res_dlq := res_dlq || false; res_noop := res_noop || false;
            END LOOP;
            CONTINUE;
        END IF;

        -- The lowest nack above the cursor clamps everything after it.
        SELECT i.position, i.status, i.err INTO v_nack, v_nack_status, v_nack_error
          FROM unnest(v_g) i
         WHERE true AND i.position > c.position
           AND i.status IN ('failed', 'retry')
         ORDER BY i.position LIMIT 1;
        IF NOT FOUND THEN
            v_nack := NULL;
        END IF;
        SELECT max(i.position) INTO v_commit
          FROM unnest(v_g) i
         WHERE true AND i.position > c.position
           AND i.status IN ('completed', 'success', 'dlq')
           AND (v_nack IS NULL OR i.position < v_nack);

        v_pos := greatest(c.position, coalesce(v_commit, c.position));
        v_nack_dlq := false;
        v_not_before := NULL;

        -- Explicit dead-letters at or below the new commit point.
        IF v_any_dlq THEN
            INSERT INTO queen.dead_letters
                   (partition_id, position, message_id, transaction_id, consumer_group, error_message, retry_count)
            SELECT i.partition_id, i.position, i.message_id, i.txid, i.grp, i.err,
                   coalesce((SELECT r.failures FROM queen.retries r
                              WHERE r.partition_id = i.partition_id AND r.consumer_group = i.grp
                                AND r.position = i.position), 0)
              FROM unnest(v_g) i
             WHERE true AND i.status = 'dlq'
               AND i.position > c.position AND i.position <= v_pos
            ON CONFLICT DO NOTHING;
        END IF;

        IF v_nack IS NOT NULL THEN
            SELECT * INTO it FROM unnest(v_g) i
             WHERE true AND i.position = v_nack LIMIT 1;
            IF v_nack_status = 'failed' THEN
                INSERT INTO queen.retries AS r (partition_id, consumer_group, position, failures, last_error)
                VALUES (g.partition_id, g.grp, v_nack, 1, v_nack_error)
                ON CONFLICT (partition_id, consumer_group, position)
                DO UPDATE SET failures = r.failures + 1, last_error = EXCLUDED.last_error
                RETURNING r.failures INTO v_failures;
            ELSE
                v_failures := 0;
            END IF;
            IF v_failures > it.retry_limit THEN
                -- Out of retries: to the dead-letter queue (or dropped), and the cursor moves past.
                IF it.dlq_on AND it.dlq_retries THEN
                    INSERT INTO queen.dead_letters
                           (partition_id, position, message_id, transaction_id, consumer_group, error_message, retry_count)
                    VALUES (g.partition_id, v_nack, it.message_id, it.txid, g.grp,
                            coalesce(v_nack_error, 'retry limit exceeded'), v_failures)
                    ON CONFLICT DO NOTHING;
                    v_nack_dlq := true;
                END IF;
                v_pos := v_nack;
            ELSE
                v_pos := v_nack - 1;
                IF it.retry_delay > 0 THEN
                    v_not_before := now() + make_interval(secs => it.retry_delay / 1000.0);
                END IF;
            END IF;
            v_released := true;
        ELSE
            v_released := c.lease_id IS NOT NULL AND (c.lease_end IS NULL OR v_pos >= c.lease_end);
        END IF;

        SELECT count(*) INTO v_count FROM unnest(v_g) i
         WHERE true
           AND i.position > c.position AND i.position <= v_pos;
        UPDATE queen.cursors cu
           SET position = v_pos,
               lease_id = CASE WHEN v_released THEN NULL ELSE cu.lease_id END,
               lease_expires_at = CASE WHEN v_released THEN NULL ELSE cu.lease_expires_at END,
               lease_end = CASE WHEN v_released THEN NULL ELSE cu.lease_end END,
               not_before = v_not_before,
               total_consumed = cu.total_consumed + v_count,
               last_consumed_at = now()
         WHERE cu.partition_id = g.partition_id AND cu.consumer_group = g.grp;
        IF v_pos > c.position THEN
            DELETE FROM queen.retries r
             WHERE r.partition_id = g.partition_id AND r.consumer_group = g.grp AND r.position <= v_pos;
        END IF;

        FOR it IN SELECT * FROM unnest(v_g) i
                   WHERE true AND i.position IS NOT NULL
                   ORDER BY i.idx
        LOOP
            res_idx := res_idx || it.idx;
            res_q := res_q || it.qname; res_p := res_p || it.pname;
            res_rel := res_rel || v_released;
            IF it.position <= c.position THEN
                IF it.status IN ('completed', 'success') THEN
                    res_ok := res_ok || true; res_err := res_err || NULL::text;
                    res_noop := res_noop || true;
                ELSE
                    res_ok := res_ok || false;
                    res_err := res_err || 'Message already committed: it cannot be failed or retried'::text;
                    res_noop := res_noop || false;
                END IF;
                res_dlq := res_dlq || false;
            ELSE
                res_ok := res_ok || true; res_err := res_err || NULL::text;
                res_noop := res_noop || false;
                res_dlq := res_dlq || ((it.status = 'dlq' AND it.position <= v_pos)
                                       OR (it.position = v_nack AND v_nack_dlq));
            END IF;
        END LOOP;
    END LOOP;

    IF p_strict AND NOT (true = ALL (res_ok)) THEN
        RAISE EXCEPTION 'ack failed: %', (SELECT e FROM unnest(res_err) e WHERE e IS NOT NULL LIMIT 1)
            USING ERRCODE = 'QU003';
    END IF;

    RETURN QUERY
    SELECT * FROM unnest(res_idx, res_ok, res_err, res_q, res_p, res_rel, res_dlq, res_noop)
     ORDER BY 1;
END
$$;

