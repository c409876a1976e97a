-- Reads by offset and partition discovery (docs/api.md, "Reads by offset"): reads that take no
-- lease, move no cursor and need no ack, so every reader asking the same question gets the same
-- answer and no consumer group notices them.
--
-- Offsets are positions less one: a partition's first message has offset 0, and positions follow
-- commit order, so a reader that goes on from one past the last offset it read never misses a
-- message committed later. A partition's high watermark (the next offset it will assign) is its
-- counter; its log start (the oldest offset still stored) is its oldest message's, or the high
-- watermark when nothing is stored. Retention, message deletes and dead-letter retries leave
-- gaps: offsets there are simply absent.

-- Up to p_rows records per entry from its offset on, in offset order, read from the primary
-- key's range (the server trims them to the byte budgets). An entry whose queue or partition
-- does not exist answers one row with found = false; an entry whose offset is outside [log
-- start, high watermark], or that has nothing past its offset, one row with no record. Rows
-- come in entry order, records in offset order.
CREATE FUNCTION queen.fetch(
    p_queues text[], p_partitions text[], p_offsets bigint[], p_rows integer)
RETURNS TABLE (
    ord integer, found boolean, high_watermark bigint, log_start bigint, record_offset bigint,
    transaction_id text, payload text, sealed bytea, created_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT e.o::integer, p.num IS NOT NULL, coalesce(p.last_position, 0),
           coalesce(h.pos - 1, p.last_position, 0),
           r.position - 1, queen.txid(r.txuuid, r.txtext), r.payload, r.sealed, r.created_at
      FROM unnest(p_queues, p_partitions, p_offsets) WITH ORDINALITY AS e(queue, partition, off, o)
      LEFT JOIN queen.queues q ON q.name = e.queue
      LEFT JOIN queen.partitions p ON p.queue_id = q.id AND p.name = e.partition
      LEFT JOIN LATERAL (
            SELECT ms.position AS pos FROM queen.messages ms
             WHERE ms.pnum = p.num ORDER BY ms.position LIMIT 1) h ON true
      LEFT JOIN LATERAL (
            SELECT ms.position, ms.txuuid, ms.txtext, ms.payload, ms.sealed, ms.created_at
              FROM queen.messages ms
             WHERE ms.pnum = p.num AND ms.position > e.off
               AND e.off >= coalesce(h.pos - 1, p.last_position)
               AND e.off <= p.last_position
             ORDER BY ms.position
             LIMIT p_rows) r ON true
     ORDER BY e.o, r.position
$$;

-- A page of the partitions of a queue written at or after p_since (all of them when NULL), in
-- the order they were created (their number), after the number p_after. The answer's safe_time
-- is a time up to which every push is counted in it: one second before the start of the oldest
-- client transaction of the database in progress when the call began (or before the call
-- itself; autovacuum and other workers push nothing, and a long vacuum must not hold it back), so
-- a push that started earlier — its partition's last_message_at is its transaction's start —
-- has committed before the partitions are read, and is in the page. Passed back as the next
-- p_since, it lists again at most what was written in that second. Up to p_limit rows; when
-- none match, one row with no partition (num NULL) carries queue_found (false for a queue that
-- does not exist) and safe_time.
CREATE FUNCTION queen.changed_partitions(
    p_queue text, p_since timestamptz, p_after bigint, p_limit integer)
RETURNS TABLE (
    queue_found boolean, safe_time timestamptz, num bigint, id uuid, name text,
    last_position bigint, log_start bigint, last_message_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_safe timestamptz;
    v_qid uuid;
BEGIN
    -- Read before the partitions, in a statement (and snapshot) of its own.
    SELECT least(statement_timestamp(), min(a.xact_start)) - interval '1 second' INTO v_safe
      FROM pg_stat_activity a
     WHERE a.datname = current_database() AND a.backend_type = 'client backend'
       AND a.state IS DISTINCT FROM 'idle';
    SELECT qq.id INTO v_qid FROM queen.queues qq WHERE qq.name = p_queue;
    IF FOUND THEN
        RETURN QUERY
        SELECT true, v_safe, p.num, p.id, p.name, p.last_position,
               coalesce(h.pos - 1, p.last_position), p.last_message_at
          FROM queen.partitions p
          LEFT JOIN LATERAL (
                SELECT ms.position AS pos FROM queen.messages ms
                 WHERE ms.pnum = p.num ORDER BY ms.position LIMIT 1) h ON true
         WHERE p.queue_id = v_qid
           AND (p_after IS NULL OR p.num > p_after)
           AND (p_since IS NULL OR p.last_message_at >= p_since)
         ORDER BY p.num
         LIMIT p_limit;
    END IF;
    IF NOT FOUND THEN
        RETURN QUERY SELECT v_qid IS NOT NULL, v_safe, NULL::bigint, NULL::uuid, NULL::text,
                            NULL::bigint, NULL::bigint, NULL::timestamptz;
    END IF;
END
$$;
