-- Locks and semaphores (docs/kv.md, "Locks"): leases with a fencing token, kept as rows of the
-- key/value store. A permit is the row "<name>#<slot>" of the namespace queen-locks, value
-- {"owner", "since"}; its version is the token (it rises at every acquire and renew, from the
-- store's one sequence), its expiry the end of the lease. A lock is a semaphore of one permit.
--
-- queen.locks_apply runs a batch of operations, each on its own lock, in order, in one
-- transaction; the server has checked them:
--   {"op": "acquire", "name", "ttl", "owner", "limit"}
--   {"op": "renew", "name", "token", "ttl", "owner"?, "slot"?}
--   {"op": "release", "name", "token", "slot"?}
--   {"op": "get", "name"}
-- Each operation first takes its lock name's advisory lock (the one queen.kv_apply takes for
-- the permits' keys), so it judges the permits as the previous writer left them. The locks are
-- taken in one global order before anything else, so batches never deadlock.
CREATE FUNCTION queen.locks_apply(p_ops jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_op jsonb;
    v_out jsonb := '[]';
    v_r jsonb;
    v_name text;
    v_holders jsonb;
    v_row queen.kv;
    v_slot integer;
    v_version bigint;
    v_owner text;
    v_token bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('queen.kv'), h)
       FROM (SELECT DISTINCT queen.kv_lock_key('queen-locks', o->>'name') AS h
               FROM jsonb_array_elements(p_ops) AS o) l
      ORDER BY h;

    FOR v_op IN SELECT o FROM jsonb_array_elements(p_ops) AS o LOOP
        v_r := NULL;
        v_name := v_op->>'name';
        v_owner := v_op->>'owner';
        v_token := (v_op->>'token')::bigint;
        v_slot := (v_op->>'slot')::integer;
        -- The live permits of the lock: its keys are one contiguous range ('#' is in no name).
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'slot', split_part(k.key, '#', 2)::integer, 'owner', k.value->>'owner',
                   'token', k.version, 'since', k.value->>'since',
                   'expiresAt', queen.ts(k.expires_at), 'renewedAt', queen.ts(k.updated_at))
                   ORDER BY split_part(k.key, '#', 2)::integer), '[]')
          INTO v_holders
          FROM queen.kv k
         WHERE k.ns = 'queen-locks' AND k.key > v_name || '#' AND k.key < v_name || '$'
           AND k.expires_at > now();

        CASE v_op->>'op'
        WHEN 'get' THEN
            v_r := jsonb_build_object('held', jsonb_array_length(v_holders) > 0,
                                      'holders', v_holders);

        WHEN 'acquire' THEN
            -- Sent again by its owner: the permit the first attempt took.
            SELECT h.value INTO v_r FROM jsonb_array_elements(v_holders) h
             WHERE h.value->>'owner' = v_owner LIMIT 1;
            IF v_r IS NOT NULL THEN
                v_r := jsonb_build_object('acquired', true, 'already', true,
                    'slot', v_r->'slot', 'token', v_r->'token', 'owner', v_owner,
                    'guard', queen.lock_guard(v_name, (v_r->>'slot')::integer,
                                              (v_r->>'token')::bigint));
            ELSE
                -- The lowest slot below the limit without a live permit.
                SELECT s INTO v_slot FROM generate_series(0, (v_op->>'limit')::integer - 1) s
                 WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v_holders) h
                                    WHERE (h.value->>'slot')::integer = s)
                 ORDER BY s LIMIT 1;
                IF v_slot IS NULL THEN
                    v_r := jsonb_build_object('acquired', false, 'reason', 'held',
                                              'holders', v_holders);
                ELSE
                    v_version := nextval('queen.kv_versions');
                    INSERT INTO queen.kv AS k (ns, key, value, version, expires_at, updated_at)
                    VALUES ('queen-locks', v_name || '#' || v_slot,
                            jsonb_build_object('owner', v_owner, 'since', queen.ts(now())),
                            v_version, now() + make_interval(secs => (v_op->>'ttl')::bigint),
                            now())
                    ON CONFLICT (ns, key) DO UPDATE
                       SET value = excluded.value, version = excluded.version,
                           expires_at = excluded.expires_at, updated_at = excluded.updated_at;
                    v_r := jsonb_build_object('acquired', true, 'slot', v_slot,
                        'token', v_version, 'owner', v_owner,
                        'guard', queen.lock_guard(v_name, v_slot, v_version));
                END IF;
            END IF;

        WHEN 'renew' THEN
            -- The permit named by its token, or (an answer that was lost) by its owner.
            SELECT k.* INTO v_row FROM queen.kv k
             WHERE k.ns = 'queen-locks' AND k.key > v_name || '#' AND k.key < v_name || '$'
               AND k.expires_at > now()
               AND (v_slot IS NULL OR k.key = v_name || '#' || v_slot)
               AND ((k.version = v_token AND (v_owner IS NULL OR k.value->>'owner' = v_owner))
                    OR k.value->>'owner' = v_owner)
             ORDER BY k.version = v_token DESC, k.key
             LIMIT 1;
            IF v_row.key IS NULL THEN
                v_r := jsonb_build_object('renewed', false, 'reason', 'lost',
                                          'holders', v_holders);
            ELSE
                v_version := nextval('queen.kv_versions');
                UPDATE queen.kv k
                   SET version = v_version, updated_at = now(),
                       expires_at = now() + make_interval(secs => (v_op->>'ttl')::bigint)
                 WHERE k.ns = 'queen-locks' AND k.key = v_row.key;
                v_slot := split_part(v_row.key, '#', 2)::integer;
                v_r := jsonb_build_object('renewed', true, 'slot', v_slot, 'token', v_version,
                    'owner', v_row.value->>'owner',
                    'guard', queen.lock_guard(v_name, v_slot, v_version));
            END IF;

        WHEN 'release' THEN
            DELETE FROM queen.kv k
             WHERE k.ns = 'queen-locks' AND k.key > v_name || '#' AND k.key < v_name || '$'
               AND k.version = v_token AND k.expires_at > now()
               AND (v_slot IS NULL OR k.key = v_name || '#' || v_slot);
            IF FOUND THEN
                v_r := jsonb_build_object('released', true);
            ELSE
                v_r := jsonb_build_object('released', false, 'reason', 'lost',
                                          'holders', v_holders);
            END IF;
        END CASE;
        v_out := v_out || jsonb_build_array(v_r || jsonb_build_object('name', v_name));
    END LOOP;
    RETURN v_out;
END
$$;

-- The key/value operation that holds while a permit is its holder's: a required check of the
-- permit's row at its token. Riding on a transaction, it makes the transaction commit only
-- while the lease is the holder's.
CREATE FUNCTION queen.lock_guard(p_name text, p_slot integer, p_token bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('op', 'check', 'ns', 'queen-locks', 'key', p_name || '#' || p_slot,
                              'expect', p_token, 'required', true)
$$;
