-- The dead-letter queue's retry.

-- Sends a dead-lettered message back to be delivered again: it moves to the tail of its
-- partition (a new position under the partition counter lock, as a push), its dead-letter and
-- retry rows go. The groups that dead-lettered it, the groups not past it yet and groups that
-- start later meet it there; the groups that had settled it are recorded in `settled_by` and
-- their pops step over it. Its ttl, maxWaitTimeSeconds and retention count from the retry
-- (`requeued_at`: the time it took the partition's lock, as a push's created_at). Returns the
-- message's queue (to wake its waiting pops), or NULL when the message is not in the
-- dead-letter queue.
CREATE FUNCTION queen.retry_dead_letter(p_partition_id uuid, p_txid text)
RETURNS text
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_pos bigint;
    v_new bigint;
    v_queue text;
    v_pnum bigint;
    v_at timestamptz;
BEGIN
    -- The partition's counter is locked first, as a push does, and the time taken after it.
    SELECT p.num INTO v_pnum FROM queen.partitions p WHERE p.id = p_partition_id
       FOR NO KEY UPDATE;
    v_at := clock_timestamp();
    v_pos := queen.find_position(v_pnum, p_txid);
    IF v_pos IS NULL OR NOT EXISTS (SELECT 1 FROM queen.dead_letters d
                                 WHERE d.partition_id = p_partition_id AND d.position = v_pos) THEN
        RETURN NULL;
    END IF;
    -- Its old position becomes a gap: counted as removed, so last_position - removed still
    -- counts the messages stored.
    UPDATE queen.partitions p SET last_position = p.last_position + 1, last_message_at = v_at,
                                  removed = p.removed + 1
     WHERE p.id = p_partition_id
    RETURNING p.last_position, (SELECT q.name FROM queen.queues q WHERE q.id = p.queue_id)
         INTO v_new, v_queue;
    -- Groups past it that did not dead-letter it have settled it: they do not get it again.
    -- Groups not past it yet (and groups that start later) meet it at its new place. Groups
    -- recorded by an earlier retry stay recorded, whether or not they have stepped over it yet.
    UPDATE queen.messages ms
       SET position = v_new,
           requeued_at = v_at,
           settled_by = (SELECT array_agg(DISTINCT s.g) FROM (
                            SELECT unnest(ms.settled_by) AS g
                            UNION ALL
                            SELECT c.consumer_group FROM queen.cursors c
                             WHERE c.partition_id = p_partition_id AND c.position >= v_pos
                               AND NOT EXISTS (SELECT 1 FROM queen.dead_letters d
                                                WHERE d.partition_id = p_partition_id
                                                  AND d.position = v_pos
                                                  AND d.consumer_group = c.consumer_group)) s)
     WHERE ms.pnum = v_pnum AND ms.position = v_pos;
    DELETE FROM queen.dead_letters d WHERE d.partition_id = p_partition_id AND d.position = v_pos;
    DELETE FROM queen.retries r WHERE r.partition_id = p_partition_id AND r.position = v_pos;
    RETURN v_queue;
END
$$;

