-- Inspection and operations (docs/api.md, "Inspection"): message detail and deletes, traces,
-- consumer group changes. Not on the hot path. The listings and figures are in analytics.sql.
-- Payloads travel as the stored JSON text or as the sealed bytes the server decrypts.

-- A message's status as the groups reading its partition see it: dead_letter when some group
-- dead-lettered it, completed when every group reading the partition committed it, processing
-- when a live lease covers it, pending otherwise.
CREATE FUNCTION queen.message_status(p_partition_id uuid, p_position bigint)
RETURNS TABLE (status text, lease_expires_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT CASE
             WHEN EXISTS (SELECT 1 FROM queen.dead_letters d
                           WHERE d.partition_id = p_partition_id AND d.position = p_position)
               THEN 'dead_letter'
             WHEN count(c.*) > 0 AND bool_and(c.position >= p_position) THEN 'completed'
             WHEN bool_or(c.lease_id IS NOT NULL AND c.lease_expires_at > now()
                          AND p_position > c.position AND p_position <= c.lease_end) THEN 'processing'
             ELSE 'pending'
           END,
           max(c.lease_expires_at) FILTER (WHERE c.lease_id IS NOT NULL AND c.lease_expires_at > now()
                          AND p_position > c.position AND p_position <= c.lease_end)
      FROM queen.cursors c
     WHERE c.partition_id = p_partition_id
$$;

-- One message with its state: a row, or none when it does not exist. The consumer groups
-- reading its partition come as three arrays of one element a group (ordered by name): the
-- group, whether it committed the message, and the expiry of a live lease covering it.
CREATE FUNCTION queen.message_detail(p_partition_id uuid, p_txid text)
RETURNS TABLE (message_id uuid, transaction_id text, partition_id uuid, queue_name text,
               partition_name text, namespace text, task text, status text, trace_id uuid,
               producer_sub text, created_at timestamptz, lease_expires_at timestamptz,
               retry_count integer, error_message text, group_names text[],
               group_consumed boolean[], group_leases timestamptz[], payload text, sealed bytea)
LANGUAGE sql STABLE AS $$
    SELECT m.id, queen.txid(m.txuuid, m.txtext), p.id, q.name, p.name, q.namespace, q.task,
           s.status, m.trace_id, m.producer_sub, m.created_at, s.lease_expires_at,
           coalesce((SELECT max(r.failures) FROM queen.retries r
                      WHERE r.partition_id = p.id AND r.position = m.position),
                    (SELECT max(d.retry_count) FROM queen.dead_letters d
                      WHERE d.partition_id = p.id AND d.position = m.position), 0),
           coalesce((SELECT d.error_message FROM queen.dead_letters d
                      WHERE d.partition_id = p.id AND d.position = m.position
                      ORDER BY d.failed_at DESC LIMIT 1),
                    (SELECT r.last_error FROM queen.retries r
                      WHERE r.partition_id = p.id AND r.position = m.position
                      LIMIT 1)),
           coalesce(g.names, '{}'), coalesce(g.consumed, '{}'), coalesce(g.leases, '{}'),
           m.payload, m.sealed
      FROM queen.partitions p
      JOIN queen.messages m ON m.pnum = p.num AND m.position = queen.find_position(p.num, p_txid)
      JOIN queen.queues q ON q.id = p.queue_id
     CROSS JOIN LATERAL queen.message_status(p.id, m.position) s
     CROSS JOIN LATERAL (
           SELECT array_agg(c.consumer_group ORDER BY c.consumer_group) AS names,
                  array_agg(c.position >= m.position ORDER BY c.consumer_group) AS consumed,
                  array_agg(CASE WHEN c.lease_id IS NOT NULL AND c.lease_expires_at > now()
                                  AND m.position > c.position AND m.position <= c.lease_end
                                 THEN c.lease_expires_at END ORDER BY c.consumer_group) AS leases
             FROM queen.cursors c WHERE c.partition_id = p.id) g
     WHERE p.id = p_partition_id
$$;

-- Deletes one message with its retry, dead-letter and trace rows. Returns whether it existed.
CREATE FUNCTION queen.delete_message(p_partition_id uuid, p_txid text)
RETURNS boolean
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_pos bigint;
BEGIN
    DELETE FROM queen.messages m
     USING queen.partitions p
     WHERE p.id = p_partition_id AND m.pnum = p.num
       AND m.position = queen.find_position(p.num, p_txid)
    RETURNING m.position INTO v_pos;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM queen.retries r WHERE r.partition_id = p_partition_id AND r.position = v_pos;
    DELETE FROM queen.dead_letters d WHERE d.partition_id = p_partition_id AND d.position = v_pos;
    DELETE FROM queen.traces t WHERE t.partition_id = p_partition_id AND t.transaction_id = p_txid;
    RETURN true;
END
$$;

-- Records a trace event on a message; false when the message does not exist.
CREATE FUNCTION queen.add_trace(
    p_id uuid, p_partition_id uuid, p_txid text, p_group text, p_event text, p_data jsonb,
    p_worker text, p_names text[])
RETURNS boolean
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF (SELECT queen.find_position(p.num, p_txid) FROM queen.partitions p
         WHERE p.id = p_partition_id) IS NULL THEN
        RETURN false;
    END IF;
    INSERT INTO queen.traces (id, partition_id, transaction_id, consumer_group, event_type, data,
                              worker_id, trace_names)
    VALUES (p_id, p_partition_id, p_txid, p_group, p_event, p_data, p_worker, p_names);
    RETURN true;
END
$$;

-- Trace listings. Each answers rows of traces; the paged ones also the total count, on every
-- row, and one row of NULL trace columns when the page is empty (so the total still comes).
CREATE FUNCTION queen.message_traces(p_partition_id uuid, p_txid text)
RETURNS SETOF queen.traces
LANGUAGE sql STABLE AS $$
    SELECT t.* FROM queen.traces t
     WHERE t.partition_id = p_partition_id AND t.transaction_id = p_txid
     ORDER BY t.created_at, t.id
$$;

CREATE FUNCTION queen.traces_by_name(p_name text, p_limit integer, p_offset integer)
RETURNS TABLE (total bigint, id uuid, transaction_id text, partition_id uuid, event_type text,
               data jsonb, consumer_group text, worker_id text, created_at timestamptz,
               trace_names text[])
LANGUAGE sql STABLE AS $$
    SELECT n.total, t.id, t.transaction_id, t.partition_id, t.event_type, t.data,
           t.consumer_group, t.worker_id, t.created_at, t.trace_names
      FROM (SELECT count(*) AS total FROM queen.traces t WHERE t.trace_names @> ARRAY[p_name]) n
      LEFT JOIN LATERAL (
            SELECT * FROM queen.traces t
             WHERE t.trace_names @> ARRAY[p_name]
             ORDER BY t.created_at DESC, t.id
             LIMIT p_limit OFFSET p_offset) t ON true
     ORDER BY t.created_at DESC, t.id
$$;

CREATE FUNCTION queen.trace_names(p_limit integer, p_offset integer)
RETURNS TABLE (total bigint, trace_name text, trace_count bigint, message_count bigint,
               last_seen timestamptz)
LANGUAGE sql STABLE AS $$
    WITH names AS (
        SELECT n AS trace_name, count(*) AS trace_count,
               count(DISTINCT (t.partition_id, t.transaction_id)) AS message_count,
               max(t.created_at) AS last_seen
          FROM queen.traces t CROSS JOIN LATERAL unnest(t.trace_names) n
         GROUP BY n)
    SELECT c.total, x.trace_name, x.trace_count, x.message_count, x.last_seen
      FROM (SELECT count(*) AS total FROM names) c
      LEFT JOIN LATERAL (
            SELECT * FROM names ORDER BY last_seen DESC, trace_name
             LIMIT p_limit OFFSET p_offset) x ON true
     ORDER BY x.last_seen DESC, x.trace_name
$$;

-- Removes a group's cursors (and retry rows) on every queue, or on one; with p_metadata, or for
-- one queue, also its subscriptions. Returns the cursors removed.
CREATE FUNCTION queen.delete_consumer_group(p_group text, p_queue text, p_metadata boolean)
RETURNS bigint
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_parts uuid[];
    v_n bigint;
BEGIN
    SELECT coalesce(array_agg(p.id), '{}') INTO v_parts
      FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id
     WHERE p_queue IS NULL OR q.name = p_queue;
    DELETE FROM queen.cursors c WHERE c.consumer_group = p_group AND c.partition_id = ANY (v_parts);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    DELETE FROM queen.retries r WHERE r.consumer_group = p_group AND r.partition_id = ANY (v_parts);
    IF p_metadata OR p_queue IS NOT NULL THEN
        DELETE FROM queen.subscriptions s
         WHERE s.consumer_group = p_group
           AND (p_queue IS NULL OR s.queue_id = (SELECT id FROM queen.queues WHERE name = p_queue));
    END IF;
    RETURN v_n;
END
$$;

-- Where a group starts on partitions it has not read yet, on every queue it is subscribed to.
CREATE FUNCTION queen.set_subscription(p_group text, p_from timestamptz)
RETURNS bigint
LANGUAGE sql AS $$
    WITH u AS (
        UPDATE queen.subscriptions s SET mode = 'timestamp', from_ts = p_from
         WHERE s.consumer_group = p_group RETURNING 1)
    SELECT count(*) FROM u
$$;

-- Moves a group's cursors on a queue (or one partition of it): to the end, or to just before
-- the first message created at or after p_ts. Live leases are dropped (their acks then fail
-- the lease check); retry rows go. Returns the partitions moved; NULL when the queue (or the
-- partition) does not exist.
CREATE FUNCTION queen.seek(p_group text, p_queue text, p_partition text,
                                      p_to_end boolean, p_ts timestamptz)
RETURNS bigint
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    p record;
    v_pos bigint;
    v_n bigint := 0;
    v_found boolean := false;
BEGIN
    FOR p IN
        SELECT pp.id, pp.num, pp.last_position FROM queen.partitions pp JOIN queen.queues q ON q.id = pp.queue_id
         WHERE q.name = p_queue AND (p_partition IS NULL OR pp.name = p_partition)
         ORDER BY pp.id
    LOOP
        v_found := true;
        IF p_to_end THEN
            v_pos := p.last_position;
        ELSE
            SELECT coalesce(max(m.position), 0) INTO v_pos FROM queen.messages m
             WHERE m.pnum = p.num AND m.created_at < p_ts;
        END IF;
        INSERT INTO queen.cursors AS c (partition_id, consumer_group, position)
        VALUES (p.id, p_group, v_pos)
        ON CONFLICT (partition_id, consumer_group) DO UPDATE
           SET position = EXCLUDED.position, lease_id = NULL, lease_expires_at = NULL,
               lease_end = NULL, not_before = NULL;
        DELETE FROM queen.retries r WHERE r.partition_id = p.id AND r.consumer_group = p_group;
        v_n := v_n + 1;
    END LOOP;
    RETURN CASE WHEN v_found THEN v_n END;
END
$$;
