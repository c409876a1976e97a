-- Push: one statement for any number of items over any number of partitions (docs/storage.md).
--
-- The server prepares the work so the database does only what needs its data:
--   p_parts         the distinct partitions (ascending: the lock order), p_counts items per
--                   partition, p_parts_sealed whether every item of that partition is sealed;
--   per item        its partition, its rank k among the batch's items of that partition (its
--                   position is the partition's counter + k), its id, its transactionId split
--                   into (txuuid, txtext), trace id, payload (JSON text) or sealed bytes,
--                   producer.
-- The items of one statement are free of duplicates among themselves (the server folds them).
--
-- Duplicates of stored messages are found by the unique transactionId indexes while inserting:
-- the common push (no duplicate) inserts once and checks nothing else. When an index reports one,
-- the insert is undone (a subtransaction) and done again without the duplicates, which are
-- looked up; positions stay dense either way (a gap at the end of a partition would look like a
-- message still to come).
--
-- Locking (deadlock freedom): the counters of every partition touched are locked in number
-- order, then (only for queues with maxSize) the queue rows; nothing else waits. Pushes to one
-- partition are thereby serialised from here to commit, so positions follow commit order, and
-- the statements after the lock (with a snapshot taken after it) see every message committed
-- before. NO KEY UPDATE does not conflict with the KEY SHARE locks that cursor inserts take.
--
-- A message's created_at is the time its push took the locks, not its transaction's start:
-- a push that waited for a partition's lock is later in time as in position, so within a
-- partition created_at never decreases with the position (what the completed listing's jump
-- relies on; only a dead-letter retry moves an older message to a newer position, and it
-- records when in requeued_at).
--
-- Returns the duplicates only: (ord, the stored message's id); they are not stored again. With
-- p_strict (inside a transaction) a duplicate raises QU001 instead.
CREATE FUNCTION queen.push(
    p_parts bigint[],
    p_counts integer[],
    p_parts_sealed boolean[],
    p_pnums bigint[],
    p_ks integer[],
    p_ids uuid[],
    p_txuuids uuid[],
    p_txtexts text[],
    p_trace_ids uuid[],
    p_payloads text[],
    p_sealed bytea[],
    p_subs text[],
    p_strict boolean)
RETURNS TABLE (ord integer, message_id uuid)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_found integer;
    v_rules boolean;
    v_dup_o integer[];
    v_dup_id uuid[];
    v_now timestamptz;
BEGIN
    SELECT count(*), bool_or(q.encryption_enabled OR q.max_size > 0)
      INTO v_found, v_rules
      FROM (SELECT p.queue_id FROM queen.partitions p
             WHERE p.num = ANY (p_parts) ORDER BY p.num FOR NO KEY UPDATE) p
      JOIN queen.queues q ON q.id = p.queue_id;
    v_now := clock_timestamp();
    IF v_found < cardinality(p_parts) THEN
        RAISE EXCEPTION 'a partition of the push no longer exists' USING ERRCODE = 'QU006';
    END IF;
    IF v_rules THEN
        PERFORM queen.push_rules(p_parts, p_counts, p_parts_sealed);
    END IF;

    IF NOT p_strict THEN
        BEGIN
            WITH bumped AS (
                UPDATE queen.partitions p
                   SET last_position = p.last_position + c.n, last_message_at = v_now
                  FROM unnest(p_parts, p_counts) AS c(num, n)
                 WHERE p.num = c.num
                RETURNING p.num, p.last_position - c.n AS base
            )
            INSERT INTO queen.messages (pnum, position, id, created_at, txuuid, txtext, trace_id,
                                        producer_sub, payload, sealed)
            SELECT i.pnum, b.base + i.k, i.id, v_now, i.txuuid, i.txtext, i.trace_id, i.sub,
                   i.payload, i.sealed
              FROM unnest(p_pnums, p_ks, p_ids, p_txuuids, p_txtexts, p_trace_ids, p_subs,
                          p_payloads, p_sealed)
                   AS i(pnum, k, id, txuuid, txtext, trace_id, sub, payload, sealed)
              JOIN bumped b ON b.num = i.pnum;
            RETURN;
        EXCEPTION WHEN unique_violation THEN
            -- Some items are stored already: undone, and done again below without them.
        END;
    END IF;

    -- Duplicates of stored messages, by a probe per item.
    SELECT coalesce(array_agg(i.o::integer ORDER BY i.o), '{}'),
           coalesce(array_agg(m.id ORDER BY i.o), '{}')
      INTO v_dup_o, v_dup_id
      FROM unnest(p_pnums, p_txuuids, p_txtexts) WITH ORDINALITY AS i(pnum, txuuid, txtext, o)
     CROSS JOIN LATERAL (
           SELECT ms.id FROM queen.messages ms
            WHERE ms.pnum = i.pnum AND ms.txuuid = i.txuuid
           UNION ALL
           SELECT ms.id FROM queen.messages ms
            WHERE ms.pnum = i.pnum AND ms.txtext = i.txtext COLLATE "C") m;
    IF cardinality(v_dup_o) > 0 AND p_strict THEN
        RAISE EXCEPTION 'duplicate transactionId %',
            (SELECT queen.txid(p_txuuids[v_dup_o[1]], p_txtexts[v_dup_o[1]]))
            USING ERRCODE = 'QU001';
    END IF;
    WITH items AS (
        SELECT i.*, row_number() OVER (PARTITION BY i.pnum ORDER BY i.o) AS k
          FROM unnest(p_pnums, p_ids, p_txuuids, p_txtexts, p_trace_ids, p_subs, p_payloads,
                      p_sealed)
               WITH ORDINALITY AS i(pnum, id, txuuid, txtext, trace_id, sub, payload, sealed, o)
         WHERE NOT (i.o::integer = ANY (v_dup_o))
    ), counts AS (
        SELECT i.pnum, count(*) AS n FROM items i GROUP BY i.pnum
    ), bumped AS (
        UPDATE queen.partitions p
           SET last_position = p.last_position + c.n, last_message_at = v_now
          FROM counts c
         WHERE p.num = c.pnum
        RETURNING p.num, p.last_position - c.n AS base
    )
    INSERT INTO queen.messages (pnum, position, id, created_at, txuuid, txtext, trace_id,
                                producer_sub, payload, sealed)
    SELECT i.pnum, b.base + i.k, i.id, v_now, i.txuuid, i.txtext, i.trace_id, i.sub, i.payload,
           i.sealed
      FROM items i JOIN bumped b ON b.num = i.pnum;
    RETURN QUERY SELECT * FROM unnest(v_dup_o, v_dup_id);
END
$$;

-- The queue rules of a push, checked per queue of the batch whose queue encrypts or has a
-- maxSize (the common queue has neither and never gets here):
--   * encryptionEnabled: every payload must arrive sealed (QU004; the server seals, and a
--     server whose cache said "plaintext" refreshes it and retries);
--   * maxSize: pushes to the queue are serialised on its row (NO KEY UPDATE, after the
--     partition counters, in queue-id order) and refused when the unconsumed messages plus this
--     batch would exceed it (QU005). Unconsumed messages are counted by positions: per
--     partition, from above its least advanced cursor (or its oldest message) to its newest
--     position — no message scan, exact but for the gaps duplicates leave, which count.
CREATE FUNCTION queen.push_rules(p_parts bigint[], p_counts integer[], p_parts_sealed boolean[])
RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_q record;
    v_size bigint;
BEGIN
    FOR v_q IN
        SELECT q.id, q.name, q.max_size, q.encryption_enabled, sum(t.n) AS n,
               bool_and(t.sealed) AS sealed
          FROM unnest(p_parts, p_counts, p_parts_sealed) AS t(num, n, sealed)
          JOIN queen.partitions p ON p.num = t.num
          JOIN queen.queues q ON q.id = p.queue_id
         WHERE q.encryption_enabled OR q.max_size > 0
         GROUP BY q.id, q.name, q.max_size, q.encryption_enabled
         ORDER BY q.id
    LOOP
        IF v_q.encryption_enabled AND NOT v_q.sealed THEN
            RAISE EXCEPTION 'queue % requires encrypted payloads', v_q.name
                USING ERRCODE = 'QU004', DETAIL = v_q.name;
        END IF;
        CONTINUE WHEN v_q.max_size <= 0;
        PERFORM 1 FROM queen.queues q WHERE q.id = v_q.id FOR NO KEY UPDATE;
        SELECT coalesce(sum(greatest(p.last_position - greatest(c.pos, h.pos - 1), 0)), 0)
          INTO v_size
          FROM queen.partitions p
         CROSS JOIN LATERAL (SELECT coalesce(min(cu.position), 0) AS pos
                               FROM queen.cursors cu WHERE cu.partition_id = p.id) c
         CROSS JOIN LATERAL (SELECT coalesce(min(ms.position), p.last_position + 1) AS pos
                               FROM queen.messages ms WHERE ms.pnum = p.num) h
         WHERE p.queue_id = v_q.id;
        IF v_size + v_q.n > v_q.max_size THEN
            RAISE EXCEPTION 'queue % is full (maxSize %)', v_q.name, v_q.max_size
                USING ERRCODE = 'QU005', DETAIL = v_q.name;
        END IF;
    END LOOP;
END
$$;
