-- Leases: expiry (a failed delivery), extension, the transaction check, the sweeper, and the
-- give-back of an undeliverable pop.

-- A lease that ran out counts as a failed delivery of every message it covered (but for a
-- stream query's group, below). Messages at the
-- head of the partition whose failures now exceed the retry limit go to the dead-letter queue
-- (or are dropped) and the cursor moves past them. The cursor row must be locked by the caller.
CREATE FUNCTION queen.expire_lease(p_partition_id uuid, p_group text)
RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    c record;
    v_limit integer;
    v_dlq boolean;
    m record;
    v_pos bigint;
    v_pnum bigint;
BEGIN
    SELECT * INTO c FROM queen.cursors
     WHERE partition_id = p_partition_id AND consumer_group = p_group;
    IF NOT FOUND OR c.lease_id IS NULL OR c.lease_expires_at > now() THEN
        RETURN;
    END IF;
    -- The group of a registered stream query (`streams.<name>`, its clients' default): its gates
    -- hold messages back by letting the lease run out, so the expiry gives the batch back
    -- without counting a failed delivery, as Queen does (docs/streams.md).
    IF left(p_group, 8) = 'streams.' AND EXISTS (
           SELECT 1 FROM queen.stream_queries sq WHERE sq.name = substr(p_group, 9) COLLATE "C")
    THEN
        UPDATE queen.cursors
           SET lease_id = NULL, lease_expires_at = NULL, lease_end = NULL
         WHERE partition_id = p_partition_id AND consumer_group = p_group;
        RETURN;
    END IF;
    SELECT q.retry_limit, q.dead_letter_queue AND q.dlq_after_max_retries, p.num
      INTO v_limit, v_dlq, v_pnum
      FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id
     WHERE p.id = p_partition_id;

    INSERT INTO queen.retries AS r (partition_id, consumer_group, position, failures, last_error)
    SELECT p_partition_id, p_group, ms.position, 1, 'lease expired'
      FROM queen.messages ms
     WHERE ms.pnum = v_pnum
       AND ms.position > c.position
       AND ms.position <= coalesce(c.lease_end, c.position)
    ON CONFLICT (partition_id, consumer_group, position)
    DO UPDATE SET failures = r.failures + 1, last_error = 'lease expired';

    v_pos := c.position;
    FOR m IN
        SELECT ms.position, ms.id, queen.txid(ms.txuuid, ms.txtext) AS transaction_id, r.failures
          FROM queen.messages ms
          JOIN queen.retries r ON r.partition_id = p_partition_id AND r.consumer_group = p_group
                              AND r.position = ms.position
         WHERE ms.pnum = v_pnum
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

-- Extends every partition held by a live lease to max(current expiry, now() + seconds).
CREATE FUNCTION queen.extend_lease(p_lease_id uuid, p_seconds integer)
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
CREATE FUNCTION queen.require_leases(p_lease_ids uuid[])
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
CREATE FUNCTION queen.sweep_expired_leases(p_limit integer)
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

-- Gives back what a pop claimed when the server could not hand it out (a payload it cannot
-- decrypt: no key, or another key): a leasing pop's lease is dropped without counting a failed
-- delivery; an autoAck pop's cursor moves back before the first message it took, unless it has
-- moved since. So a misconfigured server neither loses messages nor walks them to the DLQ.
-- Returns the cursors given back.
CREATE FUNCTION queen.unpop(
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
