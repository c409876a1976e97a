-- Pop: claim partitions for a consumer group and read their next messages, one statement.
--
-- One pop, or several folded together (p_split): then each claimed partition goes to its own
-- request, the k-th with lease p_lease_ids[k] and up to p_batch messages, reported as slot k.
-- Otherwise up to p_max_partitions partitions share p_lease_ids[1] and p_batch caps the total.
--
-- Locking: cursor rows are locked with SKIP LOCKED, so pops never wait on each other; pops
-- never insert rows another pop could be inserting (cursors and subscriptions are created by
-- queen.ensure_group, in a transaction of its own). A candidate partition without the group's
-- cursor — a named group's first look at it — is skipped and reported (a row with slot -1 and
-- the partition's id): the server runs queen.ensure_group for those partitions and, if the pop
-- got nothing, pops again.
--
-- Which partition: a specific-partition pop takes that one. An any-partition pop looks at a
-- bounded window of the queue's partitions from a random point of their (random) ids, wrapping
-- around (32 candidates per partition wanted: those with messages beyond the group's cursor
-- and no live lease), and tries them least recently served first; only when none of them can
-- be claimed does it fall back to every candidate, least recently served first. The window
-- bounds the cost whatever the number of partitions; serving the least recently served of it
-- keeps every partition served (docs/storage.md, "Fairness").
CREATE FUNCTION queen.pop(
    p_queue text,
    p_partition text,          -- NULL: any partition
    p_group text,
    p_batch integer,
    p_max_partitions integer,
    p_lease_ids uuid[],
    p_lease_seconds integer,   -- NULL: the queue's leaseTime
    p_auto_ack boolean,
    p_workers text[],
    p_split boolean)
RETURNS TABLE (
    slot integer, partition_id uuid, partition_name text, pos bigint, message_id uuid,
    transaction_id text, trace_id uuid, payload text, sealed bytea, producer_sub text,
    created_at timestamptz, retry_count integer, lease_expires_at timestamptz,
    queue_priority integer)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    q queen.queues;
    cand record;
    v_expires timestamptz;
    v_claimed integer := 0;
    v_total integer := 0;
    v_n integer;
    v_pos bigint;
    v_old_lease uuid;
    v_slot integer;
    v_cap integer;
    v_start uuid := gen_random_uuid();
    v_tried uuid[] := '{}';
    v_missing uuid[] := '{}';
    v_simple boolean;
    v_max integer := CASE WHEN p_split THEN cardinality(p_lease_ids) ELSE greatest(p_max_partitions, 1) END;
    v_window integer;
BEGIN
    SELECT * INTO q FROM queen.queues qq WHERE qq.name = p_queue;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- A partition passed over waits past its turn about ln(pops)/32 of a round (docs/storage.md).
    v_window := 32 * v_max;
    v_expires := now() + make_interval(secs => coalesce(p_lease_seconds, q.lease_time));
    -- No ttl, maxWaitTimeSeconds or delayedProcessing: messages are read with one set-based
    -- statement per partition. Otherwise queen.pop_scan looks at them one by one.
    v_simple := q.ttl = 0 AND q.max_wait_time_seconds = 0 AND q.delayed_processing = 0;
    -- A lease need not survive a database crash: lost, it is as if it had expired (the messages
    -- are delivered again; at-least-once either way), and the consumer's ack then fails the
    -- lease check. So a leasing pop does not wait for its WAL flush; the next synchronous commit
    -- on the server flushes it anyway. An autoAck pop moves the cursor for good (at-most-once):
    -- that one stays synchronous.
    IF NOT p_auto_ack THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;

    FOR cand IN
        -- The window: the first v_window candidates from v_start on, wrapping around to the
        -- lowest ids (the LIMIT over the two ordered halves stops before the second when the
        -- first fills it, so no partition is in every window).
        (SELECT w.* FROM ((
            (SELECT p.id AS pid, p.num, p.name AS pname, p.last_position AS last,
                    c.partition_id IS NOT NULL AS has_cursor, c.last_consumed_at AS served
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
            (SELECT p.id, p.num, p.name, p.last_position, c.partition_id IS NOT NULL,
                    c.last_consumed_at
               FROM queen.partitions p
               LEFT JOIN queen.cursors c ON c.partition_id = p.id AND c.consumer_group = p_group
              WHERE p_partition IS NULL AND p.queue_id = q.id AND p.id < v_start
                AND p.last_position > coalesce(c.position, 0)
                AND (c.lease_id IS NULL OR c.lease_expires_at <= now())
                AND (c.not_before IS NULL OR c.not_before <= now())
                AND (q.window_buffer = 0
                     OR p.last_message_at <= now() - make_interval(secs => q.window_buffer))
              ORDER BY p.id
              LIMIT v_window)) LIMIT v_window) w
          ORDER BY w.served NULLS FIRST, w.pid)
        UNION ALL
        (SELECT p.id, p.num, p.name, p.last_position, c.partition_id IS NOT NULL,
                c.last_consumed_at
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
            v_missing := v_missing || cand.pid;
            CONTINUE;
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
        END IF;
        v_slot := CASE WHEN p_split THEN v_claimed + 1 ELSE 1 END;
        v_cap := CASE WHEN p_split THEN p_batch ELSE p_batch - v_total END;
        IF v_simple THEN
            v_n := 0;
            LOOP
                RETURN QUERY SELECT * FROM queen.pop_read(
                    q.priority, cand.pid, cand.num, cand.pname, cand.last, p_group, v_cap, v_slot,
                    CASE WHEN p_auto_ack THEN NULL ELSE p_lease_ids[v_slot] END, v_expires,
                    p_workers[v_slot]);
                GET DIAGNOSTICS v_n = ROW_COUNT;
                -- Nothing delivered but the cursor stepped over messages its group had settled
                -- (a dead-letter retry): look further.
                EXIT WHEN v_n > 0 OR NOT EXISTS (
                    SELECT 1 FROM queen.cursors c JOIN queen.partitions p ON p.id = c.partition_id
                     WHERE c.partition_id = cand.pid AND c.consumer_group = p_group
                       AND c.position > v_pos AND p.last_position > c.position);
                SELECT c.position INTO v_pos FROM queen.cursors c
                 WHERE c.partition_id = cand.pid AND c.consumer_group = p_group;
            END LOOP;
        ELSE
            RETURN QUERY SELECT * FROM queen.pop_scan(
                q, cand.pid, cand.num, cand.pname, p_group, v_cap, v_slot,
                CASE WHEN p_auto_ack THEN NULL ELSE p_lease_ids[v_slot] END, v_expires,
                p_workers[v_slot]);
            GET DIAGNOSTICS v_n = ROW_COUNT;
        END IF;
        CONTINUE WHEN v_n = 0;
        v_claimed := v_claimed + 1;
        v_total := v_total + v_n;
        EXIT WHEN v_claimed >= v_max OR (NOT p_split AND v_total >= p_batch);
    END LOOP;
    -- Partitions skipped for want of the group's cursor, for queen.ensure_group.
    RETURN QUERY SELECT -1, u.id, NULL::text, NULL::bigint, NULL::uuid, NULL::text, NULL::uuid,
                        NULL::text, NULL::bytea, NULL::text, NULL::timestamptz, NULL::integer,
                        NULL::timestamptz, NULL::integer
                   FROM unnest(v_missing) AS u(id);
END
$$;

-- Reads up to p_cap messages of a locked cursor's partition and records the claim, in one
-- statement: with p_lease a lease over what was delivered, without one (autoAck) the cursor
-- moves past it. Messages the group settled before a dead-letter retry moved them (settled_by)
-- are stepped over. The delivery count comes from the sparse retries table, looked at only when
-- the cursor has rows there. A partition whose counter (p_last, read before the cursor was
-- locked) is ahead of every message beyond the cursor holds only gaps there (deleted or moved
-- messages): the cursor moves up to it, so it does not look busy for ever.
CREATE FUNCTION queen.pop_read(
    p_priority integer, p_pid uuid, p_pnum bigint, p_pname text, p_last bigint, p_group text,
    p_cap integer, p_slot integer, p_lease uuid, p_expires timestamptz, p_worker text)
RETURNS TABLE (
    slot integer, partition_id uuid, partition_name text, pos bigint, message_id uuid,
    transaction_id text, trace_id uuid, payload text, sealed bytea, producer_sub text,
    created_at timestamptz, retry_count integer, lease_expires_at timestamptz,
    queue_priority integer)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_pos bigint;
    v_retried boolean;
BEGIN
    SELECT cu.position INTO v_pos FROM queen.cursors cu
     WHERE cu.partition_id = p_pid AND cu.consumer_group = p_group;
    v_retried := EXISTS (SELECT 1 FROM queen.retries r
                          WHERE r.partition_id = p_pid AND r.consumer_group = p_group);
    RETURN QUERY
    WITH m AS (
        SELECT ms.position, ms.id, ms.txuuid, ms.txtext, ms.trace_id, ms.payload, ms.sealed,
               ms.producer_sub, ms.created_at,
               coalesce(p_group = ANY (ms.settled_by), false) AS settled
          FROM queen.messages ms
         WHERE ms.pnum = p_pnum AND ms.position > v_pos
         ORDER BY ms.position
         LIMIT p_cap
    ), span AS (
        SELECT coalesce(max(m.position), greatest(p_last, v_pos)) AS last,
               max(m.position) FILTER (WHERE NOT m.settled) AS delivered,
               count(*) FILTER (WHERE NOT m.settled) AS n
          FROM m
    ), claim AS (
        UPDATE queen.cursors cu
           SET position = CASE WHEN p_lease IS NULL OR s.n = 0 THEN s.last ELSE cu.position END,
               lease_id = CASE WHEN s.n > 0 THEN p_lease END,
               lease_expires_at = CASE WHEN s.n > 0 AND p_lease IS NOT NULL THEN p_expires END,
               lease_end = CASE WHEN s.n > 0 AND p_lease IS NOT NULL THEN s.delivered END,
               worker_id = CASE WHEN s.n > 0 THEN p_worker ELSE cu.worker_id END,
               total_consumed = cu.total_consumed + CASE WHEN p_lease IS NULL THEN s.n ELSE 0 END,
               last_consumed_at = CASE WHEN s.n > 0 THEN now() ELSE cu.last_consumed_at END
          FROM span s
         WHERE cu.partition_id = p_pid AND cu.consumer_group = p_group
           AND (s.n > 0 OR s.last > v_pos)
        RETURNING cu.position
    ), forgotten AS (
        -- Failure counts of messages the cursor moved past are settled.
        DELETE FROM queen.retries r
         WHERE v_retried AND r.partition_id = p_pid AND r.consumer_group = p_group
           AND r.position <= (SELECT c.position FROM claim c)
    )
    SELECT p_slot, p_pid, p_pname, m.position, m.id, queen.txid(m.txuuid, m.txtext), m.trace_id,
           m.payload, m.sealed, m.producer_sub, m.created_at,
           CASE WHEN v_retried
                THEN coalesce((SELECT r.failures FROM queen.retries r
                                WHERE r.partition_id = p_pid AND r.consumer_group = p_group
                                  AND r.position = m.position), 0)
                ELSE 0 END,
           CASE WHEN p_lease IS NULL THEN NULL ELSE p_expires END,
           p_priority
      FROM m
     WHERE NOT m.settled
     ORDER BY m.position;
END
$$;

-- The reading of queues with ttl, maxWaitTimeSeconds or delayedProcessing, message by message:
-- delivery stops at the first message that may not go yet (delayedProcessing: never skip ahead
-- of it; created_at is not monotonic in position where a dead-letter retry moved an older
-- message to the tail, hence the running bool_and), and a message past its ttl or
-- maxWaitTimeSeconds is never delivered but dead-lettered (or dropped); at the head the cursor
-- moves past it, further on the ack of a later message does. A scan that found only such
-- messages looks further.
CREATE FUNCTION queen.pop_scan(
    q queen.queues, p_pid uuid, p_pnum bigint, p_pname text, p_group text, p_cap integer,
    p_slot integer, p_lease uuid, p_expires timestamptz, p_worker text)
RETURNS TABLE (
    slot integer, partition_id uuid, partition_name text, pos bigint, message_id uuid,
    transaction_id text, trace_id uuid, payload text, sealed bytea, producer_sub text,
    created_at timestamptz, retry_count integer, lease_expires_at timestamptz,
    queue_priority integer)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    m record;
    v_pos bigint;
    v_head bigint;
    v_n integer := 0;
    v_last bigint;
    v_skipped integer;
BEGIN
    SELECT c.position INTO v_pos FROM queen.cursors c
     WHERE c.partition_id = p_pid AND c.consumer_group = p_group;
    v_head := v_pos;
    <<scan>>
    LOOP
        v_skipped := 0;
        FOR m IN
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
                             WHERE ms.pnum = p_pnum AND ms.position > v_head
                             ORDER BY ms.position
                             LIMIT p_cap) h) r
              LEFT JOIN queen.retries rt ON rt.partition_id = p_pid AND rt.consumer_group = p_group
                                        AND rt.position = r.position
             WHERE r.ok
             ORDER BY r.position
        LOOP
            IF m.settled OR m.expired IS NOT NULL THEN
                IF NOT m.settled AND q.dead_letter_queue THEN
                    INSERT INTO queen.dead_letters
                           (partition_id, position, message_id, transaction_id, consumer_group,
                            error_message, retry_count)
                    VALUES (p_pid, m.position, m.id, queen.txid(m.txuuid, m.txtext), p_group,
                            m.expired, m.failures)
                    ON CONFLICT DO NOTHING;
                END IF;
                IF v_n = 0 THEN
                    v_head := m.position;
                END IF;
                v_skipped := v_skipped + 1;
                CONTINUE;
            END IF;
            slot := p_slot;
            partition_id := p_pid;
            partition_name := p_pname;
            pos := m.position;
            message_id := m.id;
            transaction_id := queen.txid(m.txuuid, m.txtext);
            trace_id := m.trace_id;
            payload := m.payload;
            sealed := m.sealed;
            producer_sub := m.producer_sub;
            created_at := m.created_at;
            retry_count := m.failures;
            lease_expires_at := CASE WHEN p_lease IS NULL THEN NULL ELSE p_expires END;
            queue_priority := q.priority;
            RETURN NEXT;
            v_n := v_n + 1;
            v_last := m.position;
        END LOOP;
        EXIT scan WHEN v_n > 0 OR v_skipped = 0;
    END LOOP scan;
    IF v_head > v_pos THEN
        UPDATE queen.cursors c SET position = v_head
         WHERE c.partition_id = p_pid AND c.consumer_group = p_group;
        DELETE FROM queen.retries r
         WHERE r.partition_id = p_pid AND r.consumer_group = p_group AND r.position <= v_head;
    END IF;
    IF v_n = 0 THEN
        RETURN;
    END IF;
    IF p_lease IS NULL THEN
        UPDATE queen.cursors c
           SET position = v_last, lease_id = NULL, lease_expires_at = NULL, lease_end = NULL,
               worker_id = p_worker, total_consumed = c.total_consumed + v_n,
               last_consumed_at = now()
         WHERE c.partition_id = p_pid AND c.consumer_group = p_group;
    ELSE
        UPDATE queen.cursors c
           SET lease_id = p_lease, lease_expires_at = p_expires, lease_end = v_last,
               worker_id = p_worker, last_consumed_at = now()
         WHERE c.partition_id = p_pid AND c.consumer_group = p_group;
    END IF;
END
$$;

-- Creates what a named consumer group needs before it reads partitions of a queue: the
-- subscription (where the group starts on partitions it has not read: the first message for
-- `all`, after what exists now for `new`, after p_from for `timestamp`; remembered per queue and
-- group, so the first pop's choice holds for partitions created later) and a cursor on each of
-- p_partitions that has none, at that starting point. Runs in a transaction of its own,
-- inserting in partition id order: concurrent calls may wait for each other briefly, never
-- deadlock, and pops never wait for them. Returns the cursors created.
CREATE FUNCTION queen.ensure_group(
    p_queue text, p_group text, p_sub_mode text, p_sub_from timestamptz, p_partitions uuid[])
RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_qid uuid;
    v_mode text;
    v_from timestamptz;
    v_n integer;
BEGIN
    SELECT id INTO v_qid FROM queen.queues WHERE name = p_queue;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF p_group = '__QUEUE_MODE__' THEN
        v_mode := 'all';
    ELSE
        v_mode := coalesce(p_sub_mode, 'all');
        INSERT INTO queen.subscriptions (queue_id, consumer_group, mode, from_ts)
        VALUES (v_qid, p_group, v_mode,
                CASE v_mode WHEN 'new' THEN now() WHEN 'timestamp' THEN p_sub_from END)
        ON CONFLICT DO NOTHING;
        SELECT s.mode, s.from_ts INTO v_mode, v_from
          FROM queen.subscriptions s WHERE s.queue_id = v_qid AND s.consumer_group = p_group;
    END IF;
    INSERT INTO queen.cursors (partition_id, consumer_group, position)
    SELECT p.id, p_group,
           CASE WHEN v_mode = 'all' OR v_from IS NULL THEN 0
                ELSE coalesce((SELECT ms.position FROM queen.messages ms
                                WHERE ms.pnum = p.num AND ms.created_at < v_from
                                ORDER BY ms.position DESC LIMIT 1), 0)
           END
      FROM queen.partitions p
     WHERE p.queue_id = v_qid AND p.id = ANY (p_partitions)
     ORDER BY p.id
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;
