-- The analytics counters of queen.partitions (sql/migrations/0004_analytics_counters.sql),
-- kept by statement-level triggers on the rare paths: message deletes (retention, explicit
-- deletes) and dead-letter inserts and deletes. One UPDATE per statement and partition, never
-- one per row. Functions are re-created on every start (00_reset drops them with CASCADE,
-- which drops their triggers), so the triggers are re-created here with them.

CREATE FUNCTION queen.count_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE queen.partitions p SET removed = p.removed + o.n
      FROM (SELECT pnum, count(*) AS n FROM old_rows GROUP BY pnum) o
     WHERE p.num = o.pnum;
    RETURN NULL;
END
$$;

CREATE FUNCTION queen.count_dead_lettered() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE queen.partitions p SET dead_lettered = p.dead_lettered + d.n
          FROM (SELECT partition_id, count(*) AS n FROM new_rows GROUP BY partition_id) d
         WHERE p.id = d.partition_id;
    ELSE
        UPDATE queen.partitions p SET dead_lettered = greatest(p.dead_lettered - d.n, 0)
          FROM (SELECT partition_id, count(*) AS n FROM old_rows GROUP BY partition_id) d
         WHERE p.id = d.partition_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_removed AFTER DELETE ON queen.messages
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queen.count_removed();
CREATE TRIGGER dead_letters_added AFTER INSERT ON queen.dead_letters
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queen.count_dead_lettered();
CREATE TRIGGER dead_letters_removed AFTER DELETE ON queen.dead_letters
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queen.count_dead_lettered();
