-- The listings of the dashboard and the inspection routes, built so their cost follows the
-- page asked for, not the data stored (docs/storage.md, "Analytics"). Rows, not JSON: the
-- server shapes the answers.

-- Whether a partition (its name, its queue's name, namespace and task) is in a listing's
-- selection: each filter optional. Inlined into the caller.
CREATE FUNCTION queen.selected(q_name text, p_name text, q_ns text, q_task text,
                               p_queue text, p_partition text, p_ns text, p_task text)
RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT (p_queue IS NULL OR q_name = p_queue)
       AND (p_partition IS NULL OR p_name = p_partition)
       AND (p_ns IS NULL OR q_ns = p_ns)
       AND (p_task IS NULL OR q_task = p_task)
$$;

-- The partitions a listing selects, with their queue's names and the counters the listing
-- plans by.
CREATE FUNCTION queen.listed_partitions(p_queue text, p_partition text, p_ns text, p_task text)
RETURNS TABLE (num bigint, id uuid, name text, queue_name text, namespace text, task text,
               last_position bigint, removed bigint, created_at timestamptz,
               last_message_at timestamptz, dead_lettered bigint)
LANGUAGE sql STABLE AS $$
    SELECT p.num, p.id, p.name, q.name, q.namespace, q.task, p.last_position, p.removed,
           p.created_at, p.last_message_at, p.dead_lettered
      FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id
     WHERE queen.selected(q.name, p.name, q.namespace, q.task, p_queue, p_partition, p_ns, p_task)
$$;

-- The selected partitions with the position their messages are settled up to: the least
-- advanced cursor, 0 when no group reads the partition yet. Every message after it may be
-- pending or processing; none before it is. (Inlined into the caller: a probe of the cursors'
-- key per partition, planned once, not a function call each.)
CREATE FUNCTION queen.listed_tails(p_queue text, p_partition text, p_ns text, p_task text)
RETURNS TABLE (num bigint, last_position bigint, settled bigint)
LANGUAGE sql STABLE AS $$
    SELECT l.num, l.last_position, c.settled
      FROM queen.listed_partitions(p_queue, p_partition, p_ns, p_task) l
     CROSS JOIN LATERAL (SELECT coalesce(min(cu.position), 0) AS settled
                           FROM queen.cursors cu WHERE cu.partition_id = l.id) c
$$;

-- The partitions of a selection with unsettled positions (listed_tails) and their settled
-- positions, while a page read from them by key reads at most p_bound rows (NULLs past it: a
-- backlog over many partitions). A partition's page reads at most p_per_partition of its tail
-- (its newest, by position), so a long tail in a few partitions (a stuck consumer) counts
-- that, not its length. Counted partition by partition, so a backlog is told after the first
-- few partitions, not after a probe of every partition's cursors (at 10,000 partitions and
-- 10 groups: 100 ms for the whole sum, about 1 ms to pass the bound).
CREATE FUNCTION queen.short_tails(p_queue text, p_partition text, p_ns text, p_task text,
                                  p_bound bigint, p_per_partition bigint,
                                  OUT nums bigint[], OUT settled bigint[])
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_total bigint := 0;
    v_part record;
BEGIN
    nums := '{}';
    settled := '{}';
    FOR v_part IN SELECT t.num, t.settled, t.last_position - t.settled AS n
                    FROM queen.listed_tails(p_queue, p_partition, p_ns, p_task) t LOOP
        CONTINUE WHEN v_part.n <= 0;
        v_total := v_total + least(v_part.n, p_per_partition);
        IF v_total > p_bound THEN
            nums := NULL;
            settled := NULL;
            RETURN;
        END IF;
        nums := nums || v_part.num;
        settled := settled || v_part.settled;
    END LOOP;
END
$$;

-- Whether a message (its creation time, partition number and position) falls in a listing's
-- page: after the previous page's last row when a keyset is given, and within p_from..p_to.
-- Inlined into the caller.
CREATE FUNCTION queen.on_page(p_created_at timestamptz, p_pnum bigint, p_position bigint,
                              p_before_ts timestamptz, p_before_pnum bigint, p_before_pos bigint,
                              p_from timestamptz, p_to timestamptz)
RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT (p_before_ts IS NULL
            OR (p_created_at, p_pnum, p_position) < (p_before_ts, p_before_pnum, p_before_pos))
       AND (p_from IS NULL OR p_created_at >= p_from)
       AND (p_to IS NULL OR p_created_at <= p_to)
$$;

-- Messages matching the filters, newest first: (created_at, pnum, position) descending, after
-- the keyset (p_before_*) of the previous page's last row when given.
--
-- One partition selected: a backward walk of its primary key. Several: time windows walked
-- newest first over the BRIN index on created_at, each sized to hold about a page of the
-- selection at its average rate, so a page reads about a page of rows whatever the table holds.
-- A window that comes back short is followed by an older, wider one until the page is full or
-- the selection's oldest partition is passed.
--
-- Filtered by status, a walk by time (or down one partition's key) would read the whole
-- history for a page it cannot fill, so each status that can be found by key is:
--   processing   messages a live lease covers, read from the leased cursors: the cost follows
--                the messages in flight;
--   pending      messages after their partition's least advanced cursor (anywhere in a
--                partition no group reads yet). While consumers keep up those tails are short
--                and every older message is completed; a stuck consumer leaves a long tail in
--                a few partitions. Either way, when a page read from the tails (at most a
--                page's worth of each, its newest) reads at most 10,000 rows (counted
--                partition by partition, stopping once past the bound), the page is read from
--                the tails alone, by key. A backlog over many partitions fills a page from
--                the newest windows, and the walk serves it;
--   completed    messages at or before their partition's settled position: one partition's
--                walk starts there; a queue-wide walk that found none in two windows goes on
--                from the newest of them (below);
--   dead_letter  each partition's newest dead letters by position, from their table, while
--                a page of them reads at most 10,000 (counted on the partitions).
--
-- Sequential scans are off for the function: until autovacuum's analyze catches up with a bulk
-- load (tens of seconds after a million messages), the statistics of created_at end before the
-- newest window, and the planner read the whole table for it instead of the BRIN's few ranges
-- (130 ms against 8 ms at 1M messages). A window over most of the table reads it in order
-- through the BRIN anyway, so nothing is lost when the statistics are right.
CREATE FUNCTION queen.list_messages(
    p_queue text, p_partition text, p_ns text, p_task text, p_status text,
    p_from timestamptz, p_to timestamptz, p_limit integer,
    p_before_ts timestamptz, p_before_pnum bigint, p_before_pos bigint)
RETURNS TABLE (message_id uuid, transaction_id text, partition_id uuid, queue_name text,
               partition_name text, namespace text, task text, status text, trace_id uuid,
               producer_sub text, created_at timestamptz, lease_expires_at timestamptz,
               pnum bigint, pos bigint)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    v_count bigint;
    v_one bigint;
    v_stored bigint;
    v_floor timestamptz;
    v_hi timestamptz;
    v_lo timestamptz;
    v_width interval;
    v_got bigint := 0;
    v_n bigint;
    v_nums bigint[];
    v_after bigint[];
    v_upto bigint[];
    v_first_width interval;
    v_windows integer := 0;
    v_done timestamptz;
    v_settled_at jsonb;
    v_settled bigint;
    v_dead_page bigint;
BEGIN
    SELECT count(*), min(t.num), sum(t.last_position - t.removed), min(t.created_at),
           max(t.last_message_at), sum(least(t.dead_lettered, p_limit))
      INTO v_count, v_one, v_stored, v_floor, v_hi, v_dead_page
      FROM queen.listed_partitions(p_queue, p_partition, p_ns, p_task) t;
    IF v_count = 0 OR coalesce(v_stored, 0) <= 0 THEN
        RETURN;
    END IF;
    -- The statuses found by key: candidate ranges of positions, (after, upto] of a partition
    -- (upto NULL: to its end), each read by key in the one statement below.
    IF p_status = 'processing' THEN
        -- What live leases cover, from the leased cursors (a partial index holds only those):
        -- the cost follows the messages in flight, never the backlog or the history (a walk by
        -- time read all 1M messages of a queue with a backlog and no lease: 10 s).
        SELECT coalesce(array_agg(t.num), '{}'), coalesce(array_agg(c.position), '{}'),
               coalesce(array_agg(c.lease_end), '{}')
          INTO v_nums, v_after, v_upto
          FROM (SELECT c.partition_id, c.position, c.lease_end FROM queen.cursors c
                 WHERE c.lease_id IS NOT NULL AND c.lease_expires_at > now()
                OFFSET 0) c
          JOIN queen.listed_partitions(p_queue, p_partition, p_ns, p_task) t
            ON t.id = c.partition_id;
    ELSIF p_status = 'pending' THEN
        -- The tails after each partition's settled position, unless a page of them would
        -- read more than 10,000 rows (NULL).
        SELECT t.nums, t.settled INTO v_nums, v_after
          FROM queen.short_tails(p_queue, p_partition, p_ns, p_task, 10000, p_limit) t;
    ELSIF p_status = 'dead_letter' AND v_dead_page <= 10000 THEN
        -- Each partition's newest dead letters by position, a page's worth (and those of
        -- messages a retry moved, whose time is older than their position says), while such
        -- a page reads at most 10,000 (counted on the partitions, no probe): a range of one
        -- position each.
        SELECT coalesce(array_agg(t.num), '{}'), coalesce(array_agg(d.position - 1), '{}'),
               coalesce(array_agg(d.position), '{}')
          INTO v_nums, v_after, v_upto
          FROM queen.listed_partitions(p_queue, p_partition, p_ns, p_task) t
         CROSS JOIN LATERAL (
               (SELECT DISTINCT d.position FROM queen.dead_letters d
                 WHERE d.partition_id = t.id
                   AND NOT EXISTS (SELECT 1 FROM queen.messages m
                                    WHERE m.pnum = t.num AND m.position = d.position
                                      AND m.requeued_at IS NOT NULL)
                 ORDER BY d.position DESC LIMIT p_limit)
               UNION
               SELECT m.position FROM queen.messages m
                WHERE m.pnum = t.num AND m.requeued_at IS NOT NULL
                  AND EXISTS (SELECT 1 FROM queen.dead_letters d
                               WHERE d.partition_id = t.id AND d.position = m.position)) d
         WHERE t.dead_lettered > 0;
    END IF;
    IF v_nums IS NOT NULL THEN
        -- A message in two ranges (two groups' leases) is listed once.
        RETURN QUERY
        SELECT x.id, queen.txid(x.txuuid, x.txtext), x.partition_id, x.queue_name,
               x.partition_name, x.namespace, x.task, s.status, x.trace_id, x.producer_sub,
               x.created_at, s.lease_expires_at, x.pnum, x.position
          FROM (SELECT DISTINCT ON (m.created_at, m.pnum, m.position)
                       m.*, p.id AS partition_id, p.name AS partition_name,
                       q.name AS queue_name, q.namespace, q.task
                  FROM unnest(v_nums, v_after, v_upto) AS t(num, after, upto)
                  JOIN queen.partitions p ON p.num = t.num
                  JOIN queen.queues q ON q.id = p.queue_id
                 CROSS JOIN LATERAL (
                       -- A range's newest messages by key: within a partition a message's
                       -- time never decreases with its position, but for the messages a
                       -- dead-letter retry moved there, added from their own index.
                       (SELECT w.* FROM queen.messages w
                         WHERE w.pnum = t.num AND w.position > t.after
                           AND w.position <= coalesce(t.upto, 9223372036854775807)
                           AND w.requeued_at IS NULL
                           AND queen.on_page(w.created_at, w.pnum, w.position, p_before_ts,
                                             p_before_pnum, p_before_pos, p_from, p_to)
                           AND (SELECT st.status FROM queen.message_status(p.id, w.position) st)
                               = p_status
                         ORDER BY w.position DESC
                         LIMIT p_limit)
                       UNION ALL
                       (SELECT w.* FROM queen.messages w
                         WHERE w.pnum = t.num AND w.position > t.after
                           AND w.position <= coalesce(t.upto, 9223372036854775807)
                           AND w.requeued_at IS NOT NULL
                           AND queen.on_page(w.created_at, w.pnum, w.position, p_before_ts,
                                             p_before_pnum, p_before_pos, p_from, p_to)
                           AND (SELECT st.status FROM queen.message_status(p.id, w.position) st)
                               = p_status
                         ORDER BY w.created_at DESC, w.position DESC
                         LIMIT p_limit)) m
                 ORDER BY m.created_at DESC, m.pnum DESC, m.position DESC
                 LIMIT p_limit) x
         CROSS JOIN LATERAL queen.message_status(x.partition_id, x.position) s
         ORDER BY x.created_at DESC, x.pnum DESC, x.position DESC;
        RETURN;
    END IF;
    -- Partitions whose messages came without a push (restored or copied in) have no time of
    -- their newest message: walk from now.
    v_hi := coalesce(v_hi, now());
    IF v_count = 1 THEN
        -- Pending messages with a long tail: the walk stops at the tail's start. Completed ones
        -- (every cursor past them): it starts there.
        SELECT t.settled INTO v_settled
          FROM queen.listed_tails(p_queue, p_partition, p_ns, p_task) t;
        RETURN QUERY
        SELECT m.id, queen.txid(m.txuuid, m.txtext), p.id, q.name, p.name, q.namespace, q.task,
               s.status, m.trace_id, m.producer_sub, m.created_at, s.lease_expires_at,
               m.pnum, m.position
          FROM queen.messages m
          JOIN queen.partitions p ON p.num = m.pnum
          JOIN queen.queues q ON q.id = p.queue_id
         CROSS JOIN LATERAL queen.message_status(p.id, m.position) s
         WHERE m.pnum = v_one
           AND (p_status IS DISTINCT FROM 'pending' OR m.position > v_settled)
           AND (p_status IS DISTINCT FROM 'completed' OR m.position <= v_settled)
           AND (p_before_pos IS NULL OR m.position < p_before_pos)
           AND (p_from IS NULL OR m.created_at >= p_from)
           AND (p_to IS NULL OR m.created_at <= p_to)
           AND (p_status IS NULL OR s.status = p_status)
         ORDER BY m.position DESC
         LIMIT p_limit;
        RETURN;
    END IF;
    v_hi := least(v_hi, coalesce(p_before_ts, 'infinity'), coalesce(p_to, 'infinity'));
    v_floor := greatest(v_floor, coalesce(p_from, '-infinity'));
    -- About two pages of the selection at its average rate since its oldest partition began.
    v_width := greatest((v_hi - v_floor) * least(2.0 * p_limit / v_stored, 1.0),
                        interval '1 millisecond');
    v_first_width := v_width;
    LOOP
        v_lo := v_hi - v_width;
        -- The window first, on its own (OFFSET 0 keeps it a subquery): the planner must not
        -- turn it into a walk of every selected partition's key filtered by time, which it did
        -- when the partition statistics were stale (0.5 s at 10,000 partitions). A message's
        -- status (a look at its partition's cursors) is computed for the page only, unless the
        -- page is filtered by it.
        RETURN QUERY
        SELECT x.id, queen.txid(x.txuuid, x.txtext), x.partition_id, x.queue_name,
               x.partition_name, x.namespace, x.task, s.status, x.trace_id, x.producer_sub,
               x.created_at, s.lease_expires_at, x.pnum, x.position
          FROM (SELECT m.*, p.id AS partition_id, p.name AS partition_name,
                       q.name AS queue_name, q.namespace, q.task
                  FROM (SELECT * FROM queen.messages w
                         WHERE w.created_at > v_lo AND w.created_at <= v_hi
                           AND queen.on_page(w.created_at, w.pnum, w.position, p_before_ts,
                                             p_before_pnum, p_before_pos, p_from, p_to)
                        OFFSET 0) m
                  JOIN queen.partitions p ON p.num = m.pnum
                  JOIN queen.queues q ON q.id = p.queue_id
                 WHERE queen.selected(q.name, p.name, q.namespace, q.task,
                                      p_queue, p_partition, p_ns, p_task)
                   AND (v_settled_at IS NULL
                        OR (v_settled_at ->> m.pnum::text)::bigint >= m.position)
                   AND (p_status IS NULL
                        OR (SELECT st.status FROM queen.message_status(p.id, m.position) st)
                           = p_status)
                 ORDER BY m.created_at DESC, m.pnum DESC, m.position DESC
                 LIMIT p_limit - v_got) x
         CROSS JOIN LATERAL queen.message_status(x.partition_id, x.position) s
         ORDER BY x.created_at DESC, x.pnum DESC, x.position DESC;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_got := v_got + v_n;
        EXIT WHEN v_got >= p_limit OR v_lo < v_floor;
        v_hi := v_lo;
        v_width := v_width * 4;
        v_windows := v_windows + 1;
        IF p_status = 'completed' AND v_got = 0 AND v_windows = 2 THEN
            -- Two windows (about ten pages' worth of rows) and no completed message: a backlog
            -- lies over them. Every completed message is at or before its partition's
            -- settled position, so the walk goes on from the newest of those (a probe per
            -- partition), not through the backlog (10 s, the statement timeout, at 1M
            -- messages). Within a partition a message's time (taken at its push's lock, or at
            -- the retry that moved it: requeued_at) never decreases with its position, so the
            -- newest settled message's time bounds every completed one of its partition; a
            -- second above it covers a clock stepped back.
            -- The settled positions are kept (by partition number) to pass over the backlog's
            -- rows before their status is looked at.
            SELECT max(m.at), jsonb_object_agg(t.num, t.settled) INTO v_done, v_settled_at
              FROM queen.listed_tails(p_queue, p_partition, p_ns, p_task) t
             CROSS JOIN LATERAL (SELECT greatest(w.created_at, w.requeued_at) AS at
                                   FROM queen.messages w
                                  WHERE w.pnum = t.num AND w.position <= t.settled
                                  ORDER BY w.position DESC LIMIT 1) m
             WHERE t.settled > 0;
            EXIT WHEN v_done IS NULL;
            v_hi := least(v_hi, v_done + interval '1 second');
            v_width := v_first_width;
        END IF;
    END LOOP;
END
$$;

-- Summarises the page ranges of the time index (messages_created_at, 16 pages a range) that
-- are full and not summarised; returns where it got to and how many it summarised. A range not
-- summarised matches every window of the listing above, so until autovacuum gets to it (its
-- naptime, a minute by default; after a bulk load, the end of its vacuum) every listing reads
-- it whole: ~1,100 pages after 30 s at 1,000 msg/s took a listing from ~8 to ~20 ms.
--
-- The caller keeps the walk's state between calls (NULLs the first time): ranges below p_top
-- and from p_low up have been seen. A call summarises the ranges filled since (from p_top up)
-- and then goes on down from p_low into the ranges not seen yet, newest first, p_budget
-- ranges at most each way, so a large table is walked once, a little per call. The range
-- being filled is left alone (inserts into a summarised range widen its summary). The table
-- lock the summaries take (SHARE UPDATE EXCLUSIVE, as VACUUM's) is asked for without waiting,
-- so a running vacuum or analyze is neither waited for nor cancelled: the call returns the
-- state it was given and the next one catches up.
CREATE FUNCTION queen.summarize_time_index(p_top bigint, p_low bigint, p_budget integer)
RETURNS TABLE (top bigint, low bigint, summarised integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_pages constant bigint := 16;
    v_full bigint := pg_relation_size('queen.messages')
                     / current_setting('block_size')::bigint / v_pages;
    v_top bigint := least(coalesce(p_top, v_full), v_full);
    v_low bigint := least(coalesce(p_low, v_full), v_full);
    v_end bigint;
BEGIN
    summarised := 0;
    BEGIN
        LOCK TABLE queen.messages IN SHARE UPDATE EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        top := p_top; low := p_low;
        RETURN NEXT;
        RETURN;
    END;
    v_end := least(v_full, v_top + p_budget);
    WHILE v_top < v_end LOOP
        summarised := summarised + brin_summarize_range('queen.messages_created_at',
                                                        v_top * v_pages);
        v_top := v_top + 1;
    END LOOP;
    v_end := greatest(v_low - p_budget, 0);
    WHILE v_low > v_end LOOP
        v_low := v_low - 1;
        summarised := summarised + brin_summarize_range('queen.messages_created_at',
                                                        v_low * v_pages);
    END LOOP;
    top := v_top; low := v_low;
    RETURN NEXT;
END
$$;

-- Dead letters matching the filters, newest first (by id), after p_before_id when given. An
-- offset is honoured for clients that page by it (each page then reads the rows it skips).
CREATE FUNCTION queen.list_dead_letters(
    p_queue text, p_group text, p_partition text, p_from timestamptz, p_to timestamptz,
    p_limit integer, p_offset integer, p_before_id bigint)
RETURNS TABLE (id bigint, message_id uuid, transaction_id text, partition_id uuid,
               queue_name text, partition_name text, consumer_group text, error_message text,
               retry_count integer, created_at timestamptz, failed_at timestamptz,
               payload text, sealed bytea)
LANGUAGE sql STABLE AS $$
    SELECT d.id, d.message_id, d.transaction_id, d.partition_id, q.name, p.name,
           d.consumer_group, d.error_message, d.retry_count, m.created_at, d.failed_at,
           m.payload, m.sealed
      FROM queen.dead_letters d
      JOIN queen.partitions p ON p.id = d.partition_id
      JOIN queen.queues q ON q.id = p.queue_id
      LEFT JOIN queen.messages m ON m.pnum = p.num AND m.position = d.position
     WHERE (p_queue IS NULL OR q.name = p_queue)
       AND (p_group IS NULL OR d.consumer_group = p_group)
       AND (p_partition IS NULL OR p.name = p_partition)
       AND (p_from IS NULL OR d.failed_at >= p_from)
       AND (p_to IS NULL OR d.failed_at <= p_to)
       AND (p_before_id IS NULL OR d.id < p_before_id)
     ORDER BY d.id DESC
     LIMIT p_limit OFFSET p_offset
$$;

-- How many dead letters the filters match: the partitions' counters when only the queue or
-- partition is filtered, a count of the matching rows otherwise (the dead-letter queue is the
-- rare path; its rows are few next to the messages).
CREATE FUNCTION queen.count_dead_letters(
    p_queue text, p_group text, p_partition text, p_from timestamptz, p_to timestamptz)
RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_n bigint;
BEGIN
    IF p_group IS NULL AND p_from IS NULL AND p_to IS NULL THEN
        SELECT coalesce(sum(p.dead_lettered), 0) INTO v_n
          FROM queen.partitions p JOIN queen.queues q ON q.id = p.queue_id
         WHERE (p_queue IS NULL OR q.name = p_queue)
           AND (p_partition IS NULL OR p.name = p_partition);
    ELSE
        SELECT count(*) INTO v_n
          FROM queen.dead_letters d
          JOIN queen.partitions p ON p.id = d.partition_id
          JOIN queen.queues q ON q.id = p.queue_id
         WHERE (p_queue IS NULL OR q.name = p_queue)
           AND (p_group IS NULL OR d.consumer_group = p_group)
           AND (p_partition IS NULL OR p.name = p_partition)
           AND (p_from IS NULL OR d.failed_at >= p_from)
           AND (p_to IS NULL OR d.failed_at <= p_to);
    END IF;
    RETURN v_n;
END
$$;
