-- queen-rs server-side functions: the push, pop, ack and lease operations, each one statement
-- for the engine (one round trip). Re-applied (CREATE OR REPLACE) by every server at start-up,
-- under the migration lock, so the functions always match the server's build.
--
-- Locking discipline (deadlock freedom):
--   * pushes lock the rows of queues with a maxSize (queue-id order), then partition counter
--     rows in partition-id order;
--   * pops lock cursor rows with SKIP LOCKED (never wait on each other);
--   * acks and the lease sweeper lock cursor rows in (partition id, group) order.

-- Plans: every function runs with plan_cache_mode = force_generic_plan. Left to choose, the
-- plan cache planned these statements on every call (their array and record parameters make a
-- custom plan look cheaper than the generic one; on auto they ran at forced-custom speed), and
-- planning cost more than executing: one-message push 382 -> 152 us, pop 409 -> 146 us per call, measured with pgbench
-- (docs/design-notes.md). Lookups whose generic plan could turn into a scan are written as
-- per-row probes (LATERAL ... OFFSET 0).

-- Custom SQLSTATEs raised here (class QU):
--   QU001 duplicate transactionId inside a transaction
--   QU002 a required lease is not live
--   QU003 an ack inside a transaction failed
--   QU004 a plaintext payload for a queue with encryptionEnabled (DETAIL: the queue)
--   QU005 the push would exceed the queue's maxSize (DETAIL: the queue)

CREATE OR REPLACE FUNCTION queen.push(
    p_partition_ids uuid[],
    p_ids uuid[],
    p_txids text[],
    p_trace_ids uuid[],
    p_payloads jsonb[],
    p_encrypted bytea[],
    p_producer_subs text[],
    p_fail_on_duplicate boolean)
RETURNS TABLE (ord integer, message_id uuid, inserted boolean)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_dup text;
    v_q record;
    v_size bigint;
BEGIN
    -- Queue rules, checked per queue of the batch (primary-key probes):
    --   * encryptionEnabled: every payload must arrive encrypted (QU004, the server encrypts;
    --     a server whose cache said "plaintext" refreshes it and retries);
    --   * maxSize: pushes to the queue are serialised on its row (NO KEY UPDATE, taken before any
    --     partition lock: one lock order for everyone) and refused when the unconsumed messages
    --     plus this batch would exceed it (QU005). The count stops at maxSize + 1 rows.
    FOR v_q IN
        SELECT q.id, q.name, q.max_size, sum(t.n) AS n,
               bool_or(q.encryption_enabled AND t.plain) AS plaintext
          FROM (SELECT u.pid, count(*) AS n, bool_or(u.enc IS NULL) AS plain
                  FROM unnest(p_partition_ids, p_encrypted) AS u(pid, enc)
                 GROUP BY u.pid) t
          JOIN queen.partitions p ON p.id = t.pid
          JOIN queen.queues q ON q.id = p.queue_id
         GROUP BY q.id, q.name, q.max_size
         ORDER BY q.id
    LOOP
        IF v_q.plaintext THEN
            RAISE EXCEPTION 'queue % requires encrypted payloads', v_q.name
                USING ERRCODE = 'QU004', DETAIL = v_q.name;
        END IF;
        CONTINUE WHEN v_q.max_size <= 0;
        PERFORM 1 FROM queen.queues q WHERE q.id = v_q.id FOR NO KEY UPDATE;
        SELECT count(*) INTO v_size FROM (
            SELECT 1
              FROM queen.partitions p
             CROSS JOIN LATERAL (SELECT coalesce(min(c.position), 0) AS pos
                                   FROM queen.cursors c WHERE c.partition_id = p.id) c
              JOIN queen.messages ms ON ms.partition_id = p.id AND ms.position > c.pos
             WHERE p.queue_id = v_q.id
             LIMIT v_q.max_size + 1) s;
        IF v_size + v_q.n > v_q.max_size THEN
            RAISE EXCEPTION 'queue % is full (maxSize %)', v_q.name, v_q.max_size
                USING ERRCODE = 'QU005', DETAIL = v_q.name;
        END IF;
    END LOOP;

    -- Take the counters of every partition touched, in id order. Pushes to one partition are
    -- serialised from here to commit, so positions follow commit order, and the statements below
    -- (with a snapshot taken after the locks) see every message committed before us.
    -- NO KEY UPDATE, like the UPDATE below: it must not conflict with the KEY SHARE locks that
    -- foreign-key checks take when pops and acks create cursor rows (FOR UPDATE did, and
    -- deadlocked against pops inserting cursors in another partition order).
    PERFORM 1 FROM queen.partitions p
     WHERE p.id = ANY (p_partition_ids)
     ORDER BY p.id
       FOR NO KEY UPDATE;

    IF p_fail_on_duplicate THEN
        SELECT m.transaction_id INTO v_dup
          FROM unnest(p_partition_ids, p_txids) AS i(partition_id, txid)
          CROSS JOIN LATERAL (
                SELECT ms.transaction_id FROM queen.messages ms
                 WHERE ms.partition_id = i.partition_id AND ms.transaction_id = i.txid
                OFFSET 0) m
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'duplicate transactionId %', v_dup USING ERRCODE = 'QU001';
        END IF;
    END IF;

    -- Positions are taken for every item; a duplicate (found by the unique index) leaves a gap,
    -- which readers do not mind. With the counters locked, no concurrent push can insert a
    -- conflicting row, so ON CONFLICT only ever sees rows committed before us.
    RETURN QUERY
    WITH items AS (
        SELECT t.partition_id, t.id, t.txid, t.trace_id, t.payload, t.enc, t.sub, t.o::integer AS ord,
               row_number() OVER (PARTITION BY t.partition_id ORDER BY t.o) AS k
          FROM unnest(p_partition_ids, p_ids, p_txids, p_trace_ids, p_payloads, p_encrypted, p_producer_subs)
               WITH ORDINALITY AS t(partition_id, id, txid, trace_id, payload, enc, sub, o)
    ), counts AS (
        SELECT i.partition_id, count(*) AS n FROM items i GROUP BY i.partition_id
    ), bumped AS (
        UPDATE queen.partitions p
           SET last_position = p.last_position + c.n,
               last_message_at = now()
          FROM counts c
         WHERE p.id = c.partition_id
        RETURNING p.id, p.last_position - c.n AS base
    ), ins AS (
        INSERT INTO queen.messages
               (partition_id, position, id, transaction_id, trace_id, payload, encrypted, producer_sub)
        SELECT i.partition_id, b.base + i.k, i.id, i.txid, i.trace_id, i.payload, i.enc, i.sub
          FROM items i
          JOIN bumped b ON b.id = i.partition_id
        ON CONFLICT (partition_id, transaction_id) DO NOTHING
        RETURNING queen.messages.id
    )
    SELECT i.ord, coalesce(ins.id, m.id), ins.id IS NOT NULL
      FROM items i
      JOIN bumped b ON b.id = i.partition_id
      LEFT JOIN ins ON ins.id = i.id
      -- OFFSET 0 keeps this a per-item index probe (run only for duplicates): flattened into a
      -- join, a plan cached while the table was empty would scan the whole table every call.
      LEFT JOIN LATERAL (
            SELECT ms.id FROM queen.messages ms
             WHERE ins.id IS NULL AND ms.partition_id = i.partition_id AND ms.transaction_id = i.txid
            OFFSET 0
           ) m ON true;
END
$$;

-- A lease that ran out counts as a failed delivery of every message it covered. Messages at the
-- head of the partition whose failures now exceed the retry limit go to the dead-letter queue
-- (or are dropped) and the cursor moves past them. The cursor row must be locked by the caller.
CREATE OR REPLACE FUNCTION queen.expire_lease(p_partition_id uuid, p_group text)
RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    c record;
    v_limit integer;
    v_dlq boolean;
    m record;
    v_pos bigint;
BEGIN
    SELECT * INTO c FROM queen.cursors
     WHERE partition_id = p_partition_id AND consumer_group = p_group;
    IF NOT FOUND OR c.lease_id IS NULL OR c.lease_expires_at > now() THEN
        RETURN;
    END IF;
    SELECT q.retry_limit, q.dead_letter_queue AND q.dlq_after_max_retries INTO v_limit, v_dlq
      FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id
     WHERE p.id = p_partition_id;

    INSERT INTO queen.retries AS r (partition_id, consumer_group, position, failures, last_error)
    SELECT p_partition_id, p_group, ms.position, 1, 'lease expired'
      FROM queen.messages ms
     WHERE ms.partition_id = p_partition_id
       AND ms.position > c.position
       AND ms.position <= coalesce(c.lease_end, c.position)
    ON CONFLICT (partition_id, consumer_group, position)
    DO UPDATE SET failures = r.failures + 1, last_error = 'lease expired';

    v_pos := c.position;
    FOR m IN
        SELECT ms.position, ms.id, ms.transaction_id, r.failures
          FROM queen.messages ms
          JOIN queen.retries r ON r.partition_id = ms.partition_id AND r.consumer_group = p_group
                              AND r.position = ms.position
         WHERE ms.partition_id = p_partition_id
           AND ms.position > c.position
           AND ms.position <= coalesce(c.lease_end, c.position)
         ORDER BY ms.position
    LOOP
        EXIT WHEN m.failures <= v_limit;
        IF v_dlq THEN
            INSERT INTO queen.dead_letters
                   (partition_id, position, message_id, transaction_id, consumer_group, error_message, retry_count)
            VALUES (p_partition_id, m.position, m.id, m.transaction_id, p_group,
                    'lease expired ' || m.failures || ' times', m.failures)
            ON CONFLICT DO NOTHING;
        END IF;
        v_pos := m.position;
    END LOOP;

    DELETE FROM queen.retries
     WHERE partition_id = p_partition_id AND consumer_group = p_group AND position <= v_pos;
    UPDATE queen.cursors
       SET position = v_pos, lease_id = NULL, lease_expires_at = NULL, lease_end = NULL
     WHERE partition_id = p_partition_id AND consumer_group = p_group;
END
$$;

-- One pop, or several folded together (p_split): then each claimed partition goes to its own
-- request, the k-th with lease p_lease_ids[k] and up to p_batch messages, reported as slot k.
-- Otherwise up to p_max_partitions partitions share p_lease_ids[1] and p_batch caps the total.
DROP FUNCTION IF EXISTS queen.pop(text, text, text, integer, integer, uuid, integer, boolean, text, timestamptz, text);
CREATE OR REPLACE FUNCTION queen.pop(
    p_queue text,
    p_partition text,          -- NULL: any partition
    p_group text,
    p_batch integer,
    p_max_partitions integer,
    p_lease_ids uuid[],
    p_lease_seconds integer,   -- NULL: the queue's leaseTime
    p_auto_ack boolean,
    p_sub_mode text,           -- all | new | timestamp (NULL: all)
    p_sub_from timestamptz,
    p_workers text[],
    p_split boolean)
RETURNS TABLE (
    partition_id uuid, partition_name text, pos bigint, message_id uuid, transaction_id text,
    trace_id uuid, payload jsonb, encrypted bytea, producer_sub text, created_at timestamptz,
    retry_count integer, lease_expires_at timestamptz, queue_priority integer, slot integer)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    q record;
    v_mode text := 'all';
    v_from timestamptz;
    cand record;
    m record;
    v_claimed integer := 0;
    v_total integer := 0;       -- messages returned so far (batch is a cap over all partitions)
    v_n integer;
    v_last bigint;
    v_pos bigint;
    v_old_lease uuid;
    v_expires timestamptz;
    v_slot integer;
    v_cap integer;
    v_start uuid;
    v_tried uuid[] := '{}';
    v_head bigint;
    v_skipped integer;
    v_max integer := CASE WHEN p_split THEN cardinality(p_lease_ids) ELSE greatest(p_max_partitions, 1) END;
    v_window integer := 8 * (CASE WHEN p_split THEN cardinality(p_lease_ids) ELSE greatest(p_max_partitions, 1) END);
BEGIN
    SELECT * INTO q FROM queen.queues qq WHERE qq.name = p_queue;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_expires := now() + make_interval(secs => coalesce(p_lease_seconds, q.lease_time));
    -- A lease need not survive a database crash: lost, it is as if it had expired (the messages
    -- are delivered again; at-least-once either way), and the consumer's ack then fails the
    -- lease check. So a leasing pop does not wait for its WAL flush, which takes one disk
    -- flush off every push -> pop -> ack cycle. The next synchronous commit on the server (an
    -- ack, a push) flushes it anyway. An autoAck pop moves the cursor for good (at-most-once):
    -- that one stays synchronous.
    IF NOT p_auto_ack THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;

    -- Where a named group starts on partitions it has not read: remembered per queue and group.
    IF p_group <> '__QUEUE_MODE__' THEN
        SELECT s.mode, s.from_ts INTO v_mode, v_from
          FROM queen.subscriptions s WHERE s.queue_id = q.id AND s.consumer_group = p_group;
        IF NOT FOUND THEN
            v_mode := coalesce(p_sub_mode, 'all');
            v_from := CASE v_mode WHEN 'new' THEN now() WHEN 'timestamp' THEN p_sub_from END;
            INSERT INTO queen.subscriptions (queue_id, consumer_group, mode, from_ts)
            VALUES (q.id, p_group, v_mode, v_from)
            ON CONFLICT DO NOTHING;
            SELECT s.mode, s.from_ts INTO v_mode, v_from
              FROM queen.subscriptions s WHERE s.queue_id = q.id AND s.consumer_group = p_group;
        END IF;
    END IF;

    -- Partitions with something beyond the group's cursor and no live lease, least recently
    -- served first. Each is then locked with SKIP LOCKED: concurrent pops spread over partitions
    -- instead of queueing behind each other.
    -- Candidates: partitions with something beyond the group's cursor and no live lease. Each is
    -- then locked with SKIP LOCKED, so concurrent pops spread over partitions instead of queueing
    -- behind each other. Any-partition pops first walk a bounded window of partitions from a
    -- random point of the (random) partition ids — cost independent of the number of
    -- partitions, fair on average — and only when that yields nothing claimable fall back to
    -- every candidate, least recently served first: a pop looks past however many partitions
    -- the others hold, and returns nothing only when nothing is claimable.
    v_start := gen_random_uuid();
    FOR cand IN
        (SELECT p.id AS pid, p.name AS pname, c.partition_id IS NOT NULL AS has_cursor
           FROM queen.partitions p
           LEFT JOIN queen.cursors c ON c.partition_id = p.id AND c.consumer_group = p_group
          WHERE p_partition IS NULL AND p.queue_id = q.id AND p.id >= v_start
            AND p.last_position > coalesce(c.position, 0)
            AND (c.lease_id IS NULL OR c.lease_expires_at <= now())
            AND (c.not_before IS NULL OR c.not_before <= now())
            AND (q.window_buffer = 0
                OR p.last_message_at <= now() - make_interval(secs => q.window_buffer))
          ORDER BY p.id
          LIMIT v_window)
        UNION ALL
        (SELECT p.id, p.name, c.partition_id IS NOT NULL
           FROM queen.partitions p
           LEFT JOIN queen.cursors c ON c.partition_id = p.id AND c.consumer_group = p_group
          WHERE p_partition IS NULL AND p.queue_id = q.id AND p.id < v_start
            AND p.last_position > coalesce(c.position, 0)
            AND (c.lease_id IS NULL OR c.lease_expires_at <= now())
            AND (c.not_before IS NULL OR c.not_before <= now())
            AND (q.window_buffer = 0
                OR p.last_message_at <= now() - make_interval(secs => q.window_buffer))
          ORDER BY p.id
          LIMIT v_window)
        UNION ALL
        (SELECT p.id, p.name, c.partition_id IS NOT NULL
           FROM queen.partitions p
           LEFT JOIN queen.cursors c ON c.partition_id = p.id AND c.consumer_group = p_group
          WHERE p.queue_id = q.id
            AND (p_partition IS NULL OR p.name = p_partition)
            AND p.last_position > coalesce(c.position, 0)
            AND (c.lease_id IS NULL OR c.lease_expires_at <= now())
            AND (c.not_before IS NULL OR c.not_before <= now())
            AND (q.window_buffer = 0
                OR p.last_message_at <= now() - make_interval(secs => q.window_buffer))
          ORDER BY c.last_consumed_at NULLS FIRST, p.id)
    LOOP
        -- The fallback lists partitions the window already tried (and maybe claimed).
        CONTINUE WHEN cand.pid = ANY (v_tried);
        v_tried := v_tried || cand.pid;
        IF NOT cand.has_cursor THEN
            INSERT INTO queen.cursors AS c (partition_id, consumer_group, position)
            VALUES (cand.pid, p_group,
                    CASE WHEN v_mode = 'all' OR v_from IS NULL THEN 0
                         ELSE coalesce((SELECT ms.position FROM queen.messages ms
                                         WHERE ms.partition_id = cand.pid AND ms.created_at < v_from
                                         ORDER BY ms.position DESC LIMIT 1), 0)
                    END)
            ON CONFLICT DO NOTHING;
        END IF;
        SELECT c.position, c.lease_id INTO v_pos, v_old_lease
          FROM queen.cursors c
         WHERE c.partition_id = cand.pid AND c.consumer_group = p_group
           AND (c.lease_id IS NULL OR c.lease_expires_at <= now())
           AND (c.not_before IS NULL OR c.not_before <= now())
           FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        IF v_old_lease IS NOT NULL THEN
            -- The previous holder's lease ran out: that counts as a failed delivery.
            PERFORM queen.expire_lease(cand.pid, p_group);
            SELECT c.position INTO v_pos FROM queen.cursors c
             WHERE c.partition_id = cand.pid AND c.consumer_group = p_group;
        END IF;

        v_slot := CASE WHEN p_split THEN v_claimed + 1 ELSE 1 END;
        v_cap := CASE WHEN p_split THEN p_batch ELSE p_batch - v_total END;
        v_n := 0;
        v_head := v_pos;
        <<scan>>
        LOOP
        v_skipped := 0;
        FOR m IN
            -- Deliver in order up to the first message that may not go yet (delayedProcessing):
            -- never skip ahead of it. created_at is not monotonic in position (positions follow
            -- commit order), hence the running bool_and rather than a filter.
            SELECT r.*, coalesce(rt.failures, 0) AS failures
              FROM (SELECT h.*, bool_and(
                               h.created_at <= now() - make_interval(secs => q.delayed_processing)
                           ) OVER (ORDER BY h.position) AS ok,
                           coalesce(p_group = ANY (h.settled_by), false) AS settled,
                           CASE WHEN q.ttl > 0
                                 AND coalesce(h.requeued_at, h.created_at)
                                     <= now() - make_interval(secs => q.ttl)
                                THEN 'expired'
                                WHEN q.max_wait_time_seconds > 0
                                 AND coalesce(h.requeued_at, h.created_at)
                                     <= now() - make_interval(secs => q.max_wait_time_seconds)
                                THEN 'max wait time exceeded'
                           END AS expired
                      FROM (SELECT ms.* FROM queen.messages ms
                             WHERE ms.partition_id = cand.pid AND ms.position > v_head
                             ORDER BY ms.position
                             LIMIT v_cap) h) r
              LEFT JOIN queen.retries rt ON rt.partition_id = cand.pid AND rt.consumer_group = p_group
                                        AND rt.position = r.position
             WHERE r.ok
             ORDER BY r.position
        LOOP
            IF m.settled OR m.expired IS NOT NULL THEN
                -- Settled by this group before a dead-letter retry moved it here: stepped over.
                -- ttl / maxWaitTimeSeconds: never delivered; dead-lettered (or dropped). At the
                -- head, the cursor moves past either; further on, the ack of a later message does.
                IF NOT m.settled AND q.dead_letter_queue THEN
                    INSERT INTO queen.dead_letters
                           (partition_id, position, message_id, transaction_id, consumer_group, error_message, retry_count)
                    VALUES (cand.pid, m.position, m.id, m.transaction_id, p_group, m.expired, m.failures)
                    ON CONFLICT DO NOTHING;
                END IF;
                IF v_n = 0 THEN
                    v_head := m.position;
                END IF;
                v_skipped := v_skipped + 1;
                CONTINUE;
            END IF;
            partition_id := cand.pid;
            partition_name := cand.pname;
            pos := m.position;
            message_id := m.id;
            transaction_id := m.transaction_id;
            trace_id := m.trace_id;
            payload := m.payload;
            encrypted := m.encrypted;
            producer_sub := m.producer_sub;
            created_at := m.created_at;
            retry_count := m.failures;
            lease_expires_at := CASE WHEN p_auto_ack THEN NULL ELSE v_expires END;
            queue_priority := q.priority;
            slot := v_slot;
            RETURN NEXT;
            v_n := v_n + 1;
            v_last := m.position;
        END LOOP;
        -- A scan that found only expired messages looks further (each pass moves v_head on).
        EXIT scan WHEN v_n > 0 OR v_skipped = 0;
        END LOOP scan;
        IF v_head > v_pos THEN
            UPDATE queen.cursors c SET position = v_head
             WHERE c.partition_id = cand.pid AND c.consumer_group = p_group;
            DELETE FROM queen.retries r
             WHERE r.partition_id = cand.pid AND r.consumer_group = p_group AND r.position <= v_head;
        END IF;
        CONTINUE WHEN v_n = 0;

        IF p_auto_ack THEN
            UPDATE queen.cursors c
               SET position = v_last, lease_id = NULL, lease_expires_at = NULL, lease_end = NULL,
                   worker_id = p_workers[v_slot], total_consumed = c.total_consumed + v_n,
                   last_consumed_at = now()
             WHERE c.partition_id = cand.pid AND c.consumer_group = p_group;
        ELSE
            UPDATE queen.cursors c
               SET lease_id = p_lease_ids[v_slot], lease_expires_at = v_expires, lease_end = v_last,
                   worker_id = p_workers[v_slot], last_consumed_at = now()
             WHERE c.partition_id = cand.pid AND c.consumer_group = p_group;
        END IF;
        v_claimed := v_claimed + 1;
        v_total := v_total + v_n;
        EXIT WHEN v_claimed >= v_max OR (NOT p_split AND v_total >= p_batch);
    END LOOP;
END
$$;

-- Offset-commit acks (semantics.md §3). Items may span groups and partitions (coalesced
-- requests); each (partition, group) is settled under its cursor lock, in a fixed order.
CREATE OR REPLACE FUNCTION queen.ack(
    p_groups text[],
    p_partition_ids uuid[],
    p_txids text[],
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
    SELECT coalesce(array_agg(ROW(t.o::integer, t.grp, t.pid, t.txid, t.status, t.err, t.lease,
                                  m.position, m.id, q.name, p.name, q.retry_limit, q.retry_delay,
                                  q.dead_letter_queue, q.dlq_after_max_retries)::queen.ack_item
                              ORDER BY t.o), '{}')
      INTO v_items
      FROM unnest(p_groups, p_partition_ids, p_txids, p_statuses, p_errors, p_lease_ids)
           WITH ORDINALITY AS t(grp, pid, txid, status, err, lease, o)
      -- A per-item index probe (OFFSET 0: never flattened into a join that a plan cached on an
      -- empty table would run as a full scan).
      LEFT JOIN LATERAL (
            SELECT ms.position, ms.id FROM queen.messages ms
             WHERE ms.partition_id = t.pid AND ms.transaction_id = t.txid
            OFFSET 0) m ON true
      LEFT JOIN queen.partitions p ON p.id = t.pid
      LEFT JOIN queen.queues q ON q.id = p.queue_id;

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

-- Extends every partition held by a live lease to max(current expiry, now() + seconds).
CREATE OR REPLACE FUNCTION queen.extend_lease(p_lease_id uuid, p_seconds integer)
RETURNS TABLE (renewed integer, expires_at timestamptz, error text)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_n integer;
    v_exp timestamptz;
BEGIN
    WITH upd AS (
        UPDATE queen.cursors c
           SET lease_expires_at = greatest(c.lease_expires_at,
                   now() + make_interval(secs => coalesce(p_seconds, q.lease_time)))
          FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id
         WHERE c.lease_id = p_lease_id AND c.lease_expires_at > now() AND p.id = c.partition_id
        RETURNING c.lease_expires_at
    )
    SELECT count(*), max(u.lease_expires_at) INTO v_n, v_exp FROM upd u;
    IF v_n > 0 THEN
        RETURN QUERY SELECT v_n, v_exp, NULL::text;
    ELSIF EXISTS (SELECT 1 FROM queen.cursors c WHERE c.lease_id = p_lease_id) THEN
        RETURN QUERY SELECT 0, NULL::timestamptz, 'Lease expired'::text;
    ELSE
        RETURN QUERY SELECT 0, NULL::timestamptz, 'Lease not found'::text;
    END IF;
END
$$;

-- Fails (QU002) unless every lease given is live.
CREATE OR REPLACE FUNCTION queen.require_leases(p_lease_ids uuid[])
RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_missing uuid;
BEGIN
    SELECT l INTO v_missing FROM unnest(p_lease_ids) l
     WHERE NOT EXISTS (SELECT 1 FROM queen.cursors c
                        WHERE c.lease_id = l AND c.lease_expires_at > now())
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'lease % is not live', v_missing USING ERRCODE = 'QU002';
    END IF;
END
$$;

-- Settles up to p_limit expired leases; returns how many. Run by the sweeper.
CREATE OR REPLACE FUNCTION queen.sweep_expired_leases(p_limit integer)
RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    c record;
    v_n integer := 0;
BEGIN
    FOR c IN
        SELECT cu.partition_id, cu.consumer_group FROM queen.cursors cu
         WHERE cu.lease_id IS NOT NULL AND cu.lease_expires_at <= now()
         ORDER BY cu.partition_id, cu.consumer_group
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM queen.expire_lease(c.partition_id, c.consumer_group);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END
$$;

-- Creates queues and partitions seen for the first time (with queue defaults) and returns the
-- ids of every (queue, partition) asked for.
DROP FUNCTION IF EXISTS queen.ensure_partitions(text[], text[], uuid[], uuid[]);
CREATE OR REPLACE FUNCTION queen.ensure_partitions(
    p_queues text[], p_partitions text[], p_queue_ids uuid[], p_partition_ids uuid[])
RETURNS TABLE (queue_name text, partition_name text, partition_id uuid, encrypted boolean)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    INSERT INTO queen.queues (id, name, namespace, task)
    SELECT DISTINCT ON (t.qn) t.qid, t.qn,
           CASE WHEN position('.' in t.qn) > 0 THEN split_part(t.qn, '.', 1) END,
           CASE WHEN position('.' in t.qn) > 0 THEN substr(t.qn, position('.' in t.qn) + 1) END
      FROM unnest(p_queues, p_queue_ids) AS t(qn, qid)
     ORDER BY t.qn
    ON CONFLICT (name) DO NOTHING;

    INSERT INTO queen.partitions (id, queue_id, name)
    SELECT DISTINCT ON (q.id, t.pn) t.pid, q.id, t.pn
      FROM unnest(p_queues, p_partitions, p_partition_ids) AS t(qn, pn, pid)
      JOIN queen.queues q ON q.name = t.qn
     ORDER BY q.id, t.pn
    ON CONFLICT (queue_id, name) DO NOTHING;

    RETURN QUERY
    SELECT DISTINCT q.name, p.name, p.id, q.encryption_enabled
      FROM unnest(p_queues, p_partitions) AS t(qn, pn)
      JOIN queen.queues q ON q.name = t.qn
      JOIN queen.partitions p ON p.queue_id = q.id AND p.name = t.pn;
END
$$;

-- Creates or updates a queue; options given as NULL keep their current value (or the default
-- for a new queue). Also creates the queue's Default partition.
CREATE OR REPLACE FUNCTION queen.configure(
    p_id uuid, p_name text, p_namespace text, p_task text, p_partition_id uuid,
    p_lease_time integer, p_max_size bigint, p_ttl integer, p_retry_limit integer,
    p_retry_delay integer, p_dead_letter_queue boolean, p_dlq_after_max_retries boolean,
    p_priority integer, p_delayed_processing integer, p_window_buffer integer,
    p_retention_seconds integer, p_completed_retention_seconds integer,
    p_retention_enabled boolean, p_encryption_enabled boolean, p_max_wait_time_seconds integer)
RETURNS SETOF queen.queues
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_id uuid;
BEGIN
    INSERT INTO queen.queues (id, name, namespace, task)
    VALUES (p_id, p_name,
            coalesce(p_namespace, CASE WHEN position('.' in p_name) > 0 THEN split_part(p_name, '.', 1) END),
            coalesce(p_task, CASE WHEN position('.' in p_name) > 0 THEN substr(p_name, position('.' in p_name) + 1) END))
    ON CONFLICT (name) DO NOTHING;
    UPDATE queen.queues q SET
        namespace = coalesce(p_namespace, q.namespace),
        task = coalesce(p_task, q.task),
        lease_time = coalesce(p_lease_time, q.lease_time),
        max_size = coalesce(p_max_size, q.max_size),
        ttl = coalesce(p_ttl, q.ttl),
        retry_limit = coalesce(p_retry_limit, q.retry_limit),
        retry_delay = coalesce(p_retry_delay, q.retry_delay),
        dead_letter_queue = coalesce(p_dead_letter_queue, q.dead_letter_queue),
        dlq_after_max_retries = coalesce(p_dlq_after_max_retries, q.dlq_after_max_retries),
        priority = coalesce(p_priority, q.priority),
        delayed_processing = coalesce(p_delayed_processing, q.delayed_processing),
        window_buffer = coalesce(p_window_buffer, q.window_buffer),
        retention_seconds = coalesce(p_retention_seconds, q.retention_seconds),
        completed_retention_seconds = coalesce(p_completed_retention_seconds, q.completed_retention_seconds),
        retention_enabled = coalesce(p_retention_enabled, q.retention_enabled),
        encryption_enabled = coalesce(p_encryption_enabled, q.encryption_enabled),
        max_wait_time_seconds = coalesce(p_max_wait_time_seconds, q.max_wait_time_seconds),
        updated_at = now()
     WHERE q.name = p_name
    RETURNING q.id INTO v_id;
    INSERT INTO queen.partitions (id, queue_id, name) VALUES (p_partition_id, v_id, 'Default')
    ON CONFLICT (queue_id, name) DO NOTHING;
    RETURN QUERY SELECT * FROM queen.queues WHERE id = v_id;
END
$$;

-- Removes a queue with its partitions, messages, cursors, retries, dead letters and traces.
-- Returns whether it existed.
CREATE OR REPLACE FUNCTION queen.delete_queue(p_name text)
RETURNS boolean
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_id uuid;
    v_parts uuid[];
BEGIN
    SELECT id INTO v_id FROM queen.queues WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT coalesce(array_agg(id), '{}') INTO v_parts FROM queen.partitions WHERE queue_id = v_id;
    DELETE FROM queen.messages WHERE partition_id = ANY (v_parts);
    DELETE FROM queen.retries WHERE partition_id = ANY (v_parts);
    DELETE FROM queen.dead_letters WHERE partition_id = ANY (v_parts);
    DELETE FROM queen.traces WHERE partition_id = ANY (v_parts);
    DELETE FROM queen.queues WHERE id = v_id;  -- partitions, cursors, subscriptions cascade
    RETURN true;
END
$$;

-- Retention (semantics.md §7), one small batch per call, on one server at a time: a caller that
-- does not get the advisory lock returns at once (another server is doing it). Per queue with
-- retentionEnabled:
--   * retentionSeconds: messages older than that are deleted, consumed or not;
--   * completedRetentionSeconds: messages older than that which every group reading the
--     partition has committed are deleted;
--   * partitions (other than Default) left empty and quiet for the longer of the two periods
--     are removed with their cursors.
-- Deletes look only at the head of each partition (its p_batch lowest positions: the oldest,
-- as created_at follows position to within commit skew), so a call reads and locks at most
-- p_batch messages per partition however long the partition is, and never the partition
-- counter a push waits on; the
-- partition delete re-checks last_message_at on the locked row, so a push that committed
-- meanwhile keeps its partition.
CREATE OR REPLACE FUNCTION queen.retention(p_batch integer)
RETURNS TABLE (deleted bigint, completed bigint, partitions bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    q record;
    p record;
    v_n bigint;
    v_left integer := p_batch;
BEGIN
    deleted := 0; completed := 0; partitions := 0;
    IF NOT pg_try_advisory_xact_lock(hashtext('queen.retention')) THEN
        RETURN NEXT;
        RETURN;
    END IF;
    FOR q IN SELECT * FROM queen.queues WHERE retention_enabled ORDER BY id LOOP
        FOR p IN SELECT pp.id FROM queen.partitions pp WHERE pp.queue_id = q.id ORDER BY pp.id LOOP
            EXIT WHEN v_left <= 0;
            IF q.retention_seconds > 0 THEN
                DELETE FROM queen.messages ms
                 WHERE ms.partition_id = p.id
                   AND ms.position IN (
                        SELECT h.position
                          FROM (SELECT hh.position, coalesce(hh.requeued_at, hh.created_at) AS at
                                  FROM queen.messages hh
                                 WHERE hh.partition_id = p.id ORDER BY hh.position LIMIT v_left) h
                         WHERE h.at < now() - make_interval(secs => q.retention_seconds));
                GET DIAGNOSTICS v_n = ROW_COUNT;
                deleted := deleted + v_n;
                v_left := v_left - v_n::integer;
            END IF;
            IF q.completed_retention_seconds > 0 AND v_left > 0 THEN
                DELETE FROM queen.messages ms
                 WHERE ms.partition_id = p.id
                   AND ms.position IN (
                        SELECT h.position
                          FROM (SELECT hh.position, coalesce(hh.requeued_at, hh.created_at) AS at
                                  FROM queen.messages hh
                                 WHERE hh.partition_id = p.id ORDER BY hh.position LIMIT v_left) h
                         WHERE h.position <= (SELECT min(c.position) FROM queen.cursors c
                                               WHERE c.partition_id = p.id)
                           AND h.at < now() - make_interval(secs => q.completed_retention_seconds));
                GET DIAGNOSTICS v_n = ROW_COUNT;
                completed := completed + v_n;
                v_left := v_left - v_n::integer;
            END IF;
        END LOOP;
        IF v_left > 0 THEN
            DELETE FROM queen.partitions pp
             WHERE pp.id IN (
                    SELECT e.id FROM queen.partitions e
                     WHERE e.queue_id = q.id AND e.name <> 'Default'
                       AND coalesce(e.last_message_at, e.created_at) < now() - make_interval(
                             secs => greatest(q.retention_seconds, q.completed_retention_seconds))
                       AND NOT EXISTS (SELECT 1 FROM queen.messages ms WHERE ms.partition_id = e.id)
                     LIMIT v_left)
               -- Re-checked on the locked row: a push that committed meanwhile moved it.
               AND coalesce(pp.last_message_at, pp.created_at) < now() - make_interval(
                     secs => greatest(q.retention_seconds, q.completed_retention_seconds));
            GET DIAGNOSTICS v_n = ROW_COUNT;
            partitions := partitions + v_n;
            v_left := v_left - v_n::integer;
        END IF;
        EXIT WHEN v_left <= 0;
    END LOOP;
    RETURN NEXT;
END
$$;

-- Sends a dead-lettered message back to be delivered again: it moves to the tail of its
-- partition (a new position under the partition counter lock, as a push), its dead-letter and
-- retry rows go. The groups that dead-lettered it, the groups not past it yet and groups that
-- start later meet it there; the groups that had settled it are recorded in `settled_by` and
-- their pops step over it. Its ttl, maxWaitTimeSeconds and retention count from the retry
-- (`requeued_at`). Returns the message's queue (to wake its waiting pops), or NULL when
-- the message is not in the dead-letter queue.
DROP FUNCTION IF EXISTS queen.retry_dead_letter(uuid, text);
CREATE OR REPLACE FUNCTION queen.retry_dead_letter(p_partition_id uuid, p_txid text)
RETURNS text
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_pos bigint;
    v_new bigint;
    v_queue text;
BEGIN
    SELECT ms.position INTO v_pos FROM queen.messages ms
     WHERE ms.partition_id = p_partition_id AND ms.transaction_id = p_txid;
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM queen.dead_letters d
                                 WHERE d.partition_id = p_partition_id AND d.position = v_pos) THEN
        RETURN NULL;
    END IF;
    UPDATE queen.partitions p SET last_position = p.last_position + 1, last_message_at = now()
     WHERE p.id = p_partition_id
    RETURNING p.last_position, (SELECT q.name FROM queen.queues q WHERE q.id = p.queue_id)
         INTO v_new, v_queue;
    -- Groups past it that did not dead-letter it have settled it: they do not get it again.
    -- Groups not past it yet (and groups that start later) meet it at its new place. Groups
    -- recorded by an earlier retry stay recorded, whether or not they have stepped over it yet.
    UPDATE queen.messages ms
       SET position = v_new,
           requeued_at = now(),
           settled_by = (SELECT array_agg(DISTINCT s.g) FROM (
                            SELECT unnest(ms.settled_by) AS g
                            UNION ALL
                            SELECT c.consumer_group FROM queen.cursors c
                             WHERE c.partition_id = p_partition_id AND c.position >= v_pos
                               AND NOT EXISTS (SELECT 1 FROM queen.dead_letters d
                                                WHERE d.partition_id = p_partition_id
                                                  AND d.position = v_pos
                                                  AND d.consumer_group = c.consumer_group)) s)
     WHERE ms.partition_id = p_partition_id AND ms.position = v_pos;
    DELETE FROM queen.dead_letters d WHERE d.partition_id = p_partition_id AND d.position = v_pos;
    DELETE FROM queen.retries r WHERE r.partition_id = p_partition_id AND r.position = v_pos;
    RETURN v_queue;
END
$$;

-- Gives back what a pop claimed when the server could not hand it out (a payload it cannot
-- decrypt: no key, or another key): a leasing pop's lease is dropped without counting a failed
-- delivery; an autoAck pop's cursor moves back before the first message it took, unless it has
-- moved since. So a misconfigured server neither loses messages nor walks them to the DLQ.
-- Returns the cursors given back.
CREATE OR REPLACE FUNCTION queen.unpop(
    p_group text,
    p_lease_id uuid,
    p_partitions uuid[],
    p_first bigint[],
    p_last bigint[],
    p_counts integer[],
    p_auto_ack boolean)
RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_n integer := 0;
    v_one integer;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_partitions), 0) LOOP
        IF p_auto_ack THEN
            UPDATE queen.cursors c
               SET position = p_first[i] - 1,
                   total_consumed = greatest(c.total_consumed - p_counts[i], 0)
             WHERE c.partition_id = p_partitions[i] AND c.consumer_group = p_group
               AND c.position = p_last[i];
        ELSE
            UPDATE queen.cursors c
               SET lease_id = NULL, lease_expires_at = NULL, lease_end = NULL
             WHERE c.partition_id = p_partitions[i] AND c.consumer_group = p_group
               AND c.lease_id = p_lease_id;
        END IF;
        GET DIAGNOSTICS v_one = ROW_COUNT;
        v_n := v_n + v_one;
    END LOOP;
    RETURN v_n;
END
$$;
