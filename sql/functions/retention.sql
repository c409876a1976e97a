-- Retention (docs/semantics.md, "Retention"), one small batch per call, on one server at a time: a caller that
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
CREATE FUNCTION queen.retention(p_batch integer)
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
        FOR p IN SELECT pp.id, pp.num FROM queen.partitions pp WHERE pp.queue_id = q.id ORDER BY pp.id LOOP
            EXIT WHEN v_left <= 0;
            IF q.retention_seconds > 0 THEN
                DELETE FROM queen.messages ms
                 WHERE ms.pnum = p.num
                   AND ms.position IN (
                        SELECT h.position
                          FROM (SELECT hh.position, coalesce(hh.requeued_at, hh.created_at) AS at
                                  FROM queen.messages hh
                                 WHERE hh.pnum = p.num ORDER BY hh.position LIMIT v_left) h
                         WHERE h.at < now() - make_interval(secs => q.retention_seconds));
                GET DIAGNOSTICS v_n = ROW_COUNT;
                deleted := deleted + v_n;
                v_left := v_left - v_n::integer;
            END IF;
            IF q.completed_retention_seconds > 0 AND v_left > 0 THEN
                DELETE FROM queen.messages ms
                 WHERE ms.pnum = p.num
                   AND ms.position IN (
                        SELECT h.position
                          FROM (SELECT hh.position, coalesce(hh.requeued_at, hh.created_at) AS at
                                  FROM queen.messages hh
                                 WHERE hh.pnum = p.num ORDER BY hh.position LIMIT v_left) h
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
                       AND NOT EXISTS (SELECT 1 FROM queen.messages ms WHERE ms.pnum = e.num)
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

