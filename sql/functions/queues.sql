-- Queues and partitions: creation on first sight, configuration, deletion.

-- Creates queues and partitions seen for the first time (with queue defaults) and returns the
-- ids and numbers of every (queue, partition) asked for; each new partition gets its queue-mode
-- cursor.
CREATE FUNCTION queen.ensure_partitions(
    p_queues text[], p_partitions text[], p_queue_ids uuid[], p_partition_ids uuid[])
RETURNS TABLE (queue_name text, partition_name text, partition_id uuid, partition_num bigint,
               encrypted boolean)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    INSERT INTO queen.queues (id, name, namespace, task)
    SELECT DISTINCT ON (t.qn) t.qid, t.qn,
           CASE WHEN position('.' in t.qn) > 0 THEN split_part(t.qn, '.', 1) END,
           CASE WHEN position('.' in t.qn) > 0 THEN substr(t.qn, position('.' in t.qn) + 1) END
      FROM unnest(p_queues, p_queue_ids) AS t(qn, qid)
     ORDER BY t.qn
    ON CONFLICT (name) DO NOTHING;

    WITH created AS (
        INSERT INTO queen.partitions (id, queue_id, name)
        SELECT DISTINCT ON (q.id, t.pn) t.pid, q.id, t.pn
          FROM unnest(p_queues, p_partitions, p_partition_ids) AS t(qn, pn, pid)
          JOIN queen.queues q ON q.name = t.qn
         ORDER BY q.id, t.pn
        ON CONFLICT (queue_id, name) DO NOTHING
        RETURNING id
    )
    -- Every partition has its queue-mode cursor from the start (pops never create cursors).
    INSERT INTO queen.cursors (partition_id, consumer_group, position)
    SELECT c.id, '__QUEUE_MODE__', 0 FROM created c ORDER BY c.id
    ON CONFLICT DO NOTHING;

    RETURN QUERY
    SELECT DISTINCT q.name, p.name, p.id, p.num, q.encryption_enabled
      FROM unnest(p_queues, p_partitions) AS t(qn, pn)
      JOIN queen.queues q ON q.name = t.qn
      JOIN queen.partitions p ON p.queue_id = q.id AND p.name = t.pn;
END
$$;

-- Creates or updates a queue; options given as NULL keep their current value (or the default
-- for a new queue). Also creates the queue's Default partition.
CREATE FUNCTION queen.configure(
    p_id uuid, p_name text, p_namespace text, p_task text, p_partition_id uuid, p_options jsonb)
RETURNS SETOF queen.queues
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_id uuid;
    -- The options given, keyed by column name; absent or null keys keep the current value.
    o queen.queues := jsonb_populate_record(NULL::queen.queues, p_options);
BEGIN
    INSERT INTO queen.queues (id, name, namespace, task)
    VALUES (p_id, p_name,
            coalesce(p_namespace, CASE WHEN position('.' in p_name) > 0 THEN split_part(p_name, '.', 1) END),
            coalesce(p_task, CASE WHEN position('.' in p_name) > 0 THEN substr(p_name, position('.' in p_name) + 1) END))
    ON CONFLICT (name) DO NOTHING;
    UPDATE queen.queues q SET
        namespace = coalesce(p_namespace, q.namespace),
        task = coalesce(p_task, q.task),
        lease_time = coalesce(o.lease_time, q.lease_time),
        max_size = coalesce(o.max_size, q.max_size),
        ttl = coalesce(o.ttl, q.ttl),
        retry_limit = coalesce(o.retry_limit, q.retry_limit),
        retry_delay = coalesce(o.retry_delay, q.retry_delay),
        dead_letter_queue = coalesce(o.dead_letter_queue, q.dead_letter_queue),
        dlq_after_max_retries = coalesce(o.dlq_after_max_retries, q.dlq_after_max_retries),
        priority = coalesce(o.priority, q.priority),
        delayed_processing = coalesce(o.delayed_processing, q.delayed_processing),
        window_buffer = coalesce(o.window_buffer, q.window_buffer),
        retention_seconds = coalesce(o.retention_seconds, q.retention_seconds),
        completed_retention_seconds = coalesce(o.completed_retention_seconds, q.completed_retention_seconds),
        retention_enabled = coalesce(o.retention_enabled, q.retention_enabled),
        encryption_enabled = coalesce(o.encryption_enabled, q.encryption_enabled),
        max_wait_time_seconds = coalesce(o.max_wait_time_seconds, q.max_wait_time_seconds),
        updated_at = now()
     WHERE q.name = p_name
    RETURNING q.id INTO v_id;
    WITH created AS (
        INSERT INTO queen.partitions (id, queue_id, name) VALUES (p_partition_id, v_id, 'Default')
        ON CONFLICT (queue_id, name) DO NOTHING
        RETURNING id
    )
    INSERT INTO queen.cursors (partition_id, consumer_group, position)
    SELECT c.id, '__QUEUE_MODE__', 0 FROM created c
    ON CONFLICT DO NOTHING;
    RETURN QUERY SELECT * FROM queen.queues WHERE id = v_id;
END
$$;

-- Removes a queue with its partitions, messages, cursors, retries, dead letters and traces.
-- Returns whether it existed.
CREATE FUNCTION queen.delete_queue(p_name text)
RETURNS boolean
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_id uuid;
    v_parts uuid[];
    v_nums bigint[];
BEGIN
    SELECT id INTO v_id FROM queen.queues WHERE name = p_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- The lock order of pushes: partition counters (by number), then the queue row.
    SELECT coalesce(array_agg(id ORDER BY num), '{}'), coalesce(array_agg(num ORDER BY num), '{}')
      INTO v_parts, v_nums
      FROM (SELECT id, num FROM queen.partitions WHERE queue_id = v_id ORDER BY num FOR UPDATE) p;
    PERFORM 1 FROM queen.queues WHERE id = v_id FOR UPDATE;
    DELETE FROM queen.messages WHERE pnum = ANY (v_nums);
    DELETE FROM queen.retries WHERE partition_id = ANY (v_parts);
    DELETE FROM queen.dead_letters WHERE partition_id = ANY (v_parts);
    DELETE FROM queen.traces WHERE partition_id = ANY (v_parts);
    DELETE FROM queen.queues WHERE id = v_id;  -- partitions, cursors, subscriptions cascade
    RETURN true;
END
$$;

