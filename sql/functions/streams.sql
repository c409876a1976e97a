-- Stream processing (docs/streams.md). Queen's clients run a stream's operators themselves;
-- the server registers the query, reads its state, and applies a cycle's state changes in the
-- transaction that also pushes the cycle's output and acks its input.

-- Registers a query by name, or finds it. A query registered before with another
-- config_hash (its operators changed) is refused (mismatch) unless p_reset, which drops its
-- state and takes the new hash. Concurrent registrations of one name serialise on its row.
CREATE FUNCTION queen.stream_register(
    p_name text, p_source text, p_sink text, p_hash text, p_reset boolean,
    OUT query_id uuid, OUT fresh boolean, OUT did_reset boolean, OUT mismatch boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_hash text;
BEGIN
    fresh := false;
    did_reset := false;
    mismatch := false;
    INSERT INTO queen.stream_queries (name, source_queue, sink_queue, config_hash)
    VALUES (p_name, p_source, p_sink, p_hash)
    ON CONFLICT (name) DO NOTHING
    RETURNING id INTO query_id;
    IF query_id IS NOT NULL THEN
        fresh := true;
        RETURN;
    END IF;
    SELECT q.id, q.config_hash INTO query_id, v_hash
      FROM queen.stream_queries q WHERE q.name = p_name FOR UPDATE;
    IF v_hash <> p_hash THEN
        IF NOT p_reset THEN
            mismatch := true;
            RETURN;
        END IF;
        DELETE FROM queen.stream_state s WHERE s.query_id = stream_register.query_id;
        did_reset := true;
    END IF;
    UPDATE queen.stream_queries q
       SET source_queue = p_source, sink_queue = p_sink, config_hash = p_hash, updated_at = now()
     WHERE q.id = stream_register.query_id;
END
$$;

-- The state rows of one (query, partition), by key: all of them, the keys named, those starting
-- with a prefix, and (p_ripe) only windows whose numeric `windowEnd` is at or before it. One
-- JSON array of {key, value, updated_at}, in key order.
CREATE FUNCTION queen.stream_state_get(
    p_query uuid, p_partition uuid, p_keys text[], p_prefix text, p_ripe bigint)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('key', s.key, 'value', s.value,
                                                 'updated_at', s.updated_at) ORDER BY s.key),
                    '[]')
      FROM queen.stream_state s
     WHERE s.query_id = p_query AND s.partition_id = p_partition
       AND (cardinality(p_keys) = 0 OR s.key = ANY (p_keys))
       AND (p_prefix IS NULL OR starts_with(s.key, p_prefix))
       AND (p_ripe IS NULL OR (jsonb_typeof(s.value -> 'windowEnd') = 'number'
                               AND (s.value ->> 'windowEnd')::numeric <= p_ripe))
$$;

-- Applies a cycle's state operations, in order: [{"type": "upsert", "key", "value"} |
-- {"type": "delete", "key"}] (validated by the server). Runs first in the cycle's transaction
-- and takes a transaction-level advisory lock on (query, partition), so a cycle and an idle
-- flush of the same partition (which carries no ack, so no lease fences it) apply one after
-- the other. A query or partition that no longer exists raises QU006 (the cycle rolls back).
CREATE FUNCTION queen.stream_state_apply(p_query uuid, p_partition uuid, p_ops jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_op jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('queen.streams'),
                                  hashtext(p_query::text || '/' || p_partition::text));
    IF NOT EXISTS (SELECT 1 FROM queen.stream_queries q WHERE q.id = p_query) THEN
        RAISE EXCEPTION 'stream query % is not registered', p_query USING ERRCODE = 'QU006';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM queen.partitions p WHERE p.id = p_partition) THEN
        RAISE EXCEPTION 'partition % does not exist', p_partition USING ERRCODE = 'QU006';
    END IF;
    FOR v_op IN SELECT * FROM jsonb_array_elements(p_ops) LOOP
        IF v_op ->> 'type' = 'upsert' THEN
            INSERT INTO queen.stream_state (query_id, partition_id, key, value)
            VALUES (p_query, p_partition, v_op ->> 'key', v_op -> 'value')
            ON CONFLICT (query_id, partition_id, key)
            DO UPDATE SET value = EXCLUDED.value, updated_at = now();
        ELSE
            DELETE FROM queen.stream_state s
             WHERE s.query_id = p_query AND s.partition_id = p_partition
               AND s.key = v_op ->> 'key';
        END IF;
    END LOOP;
END
$$;
