-- The key/value store (docs/kv.md).
--
-- The advisory lock that serialises the writers of a key: (hashtext('queen.kv'), this). A
-- lock's permits (namespace queen-locks, keys "<name>#<slot>", sql/functions/locks.sql) all
-- share their lock name's, so an acquire that looks at every slot of a semaphore takes one lock.
CREATE FUNCTION queen.kv_lock_key(p_ns text, p_key text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtext(p_ns || '/' || CASE WHEN p_ns = 'queen-locks' AND strpos(p_key, '#') > 0
                                        THEN split_part(p_key, '#', 1) ELSE p_key END)
$$;

-- queen.kv_apply runs a batch of operations in order, in one transaction, and answers one
-- result per operation, index-aligned. The server has validated every operation (names, the
-- expiry rule, types), so what reaches here is well formed:
--   {"op": "get", "ns", "key"}
--   {"op": "getMany", "ns", "keys": [..]}
--   {"op": "getPrefix", "ns", "prefix", "after"?, "limit", "keysOnly"}
--   {"op": "put", "ns", "key", "value", "ttl"?: seconds (absent: forever), "expect"?, "required"}
--       (putIfAbsent arrives as put with expect 0)
--   {"op": "delete", "ns", "key", "expect"?, "required"}
--   {"op": "check", "ns", "key", "expect", "required"}
--   {"op": "incr", "ns", "key", "delta", "min"?, "max"?, "ttl"?, "required"}
--
-- Serial point: before anything else, the batch takes a transaction-level advisory lock per
-- key it writes or checks, in one global order (by the lock's number), so concurrent batches
-- judge their conditions one after the other against what the previous one left, and never
-- deadlock. Reads take no lock.
--
-- A row past its expiry is absent to every operation (the truth is the predicate, not the
-- presence of the row); a write over it starts a new lineage.
--
-- An operation with "required" that does not apply raises QU007 (DETAIL: a JSON object with its
-- index, the reason, and the key's version and value as a reader sees them): the whole batch is
-- rolled back, and with it the transaction the batch rides in.
CREATE FUNCTION queen.kv_apply(p_ops jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_op jsonb;
    v_i integer := -1;
    v_out jsonb := '[]';
    v_r jsonb;
    v_ns text;
    v_key text;
    v_row queen.kv;
    v_live boolean;
    v_expect bigint;
    v_held boolean;
    v_missed text;
    v_applied boolean;
    v_reason text;
    v_version bigint;
    v_expires timestamptz;
    v_base numeric;
    v_new numeric;
    v_rows jsonb;
    v_limit integer;
    v_n integer;
    v_more boolean;
    v_k record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('queen.kv'), h)
       FROM (SELECT DISTINCT queen.kv_lock_key(o->>'ns', o->>'key') AS h
               FROM jsonb_array_elements(p_ops) AS o
              WHERE o->>'op' IN ('put', 'delete', 'check', 'incr')) l
      ORDER BY h;

    FOR v_op IN SELECT o FROM jsonb_array_elements(p_ops) AS o LOOP
        v_i := v_i + 1;
        v_ns := v_op->>'ns';
        v_key := v_op->>'key';
        v_applied := NULL;
        v_reason := NULL;
        v_r := NULL;
        IF v_op->>'op' IN ('get', 'put', 'delete', 'check', 'incr') THEN
            SELECT * INTO v_row FROM queen.kv k WHERE k.ns = v_ns AND k.key = v_key;
            v_live := FOUND AND (v_row.expires_at IS NULL OR v_row.expires_at > now());
        END IF;
        -- The condition an `expect` states (put, delete, check), judged against the row.
        v_expect := (v_op->>'expect')::bigint;
        IF v_expect = 0 THEN
            v_held := NOT v_live;
            v_missed := 'exists';
        ELSIF v_expect IS NOT NULL THEN
            v_held := v_live AND v_row.version = v_expect;
            v_missed := CASE WHEN v_live THEN 'version' ELSE 'absent' END;
        ELSE
            v_held := true;
            v_missed := NULL;
        END IF;
        v_expires := now() + make_interval(secs => (v_op->>'ttl')::bigint);

        CASE v_op->>'op'
        WHEN 'get' THEN
            IF v_live THEN
                v_r := jsonb_build_object('found', true, 'key', v_key, 'value', v_row.value,
                    'version', v_row.version, 'expiresAt', queen.ts(v_row.expires_at),
                    'updatedAt', queen.ts(v_row.updated_at));
            ELSE
                v_r := jsonb_build_object('found', false, 'key', v_key);
            END IF;

        WHEN 'getMany' THEN
            SELECT coalesce(jsonb_agg(jsonb_build_object('key', k.key, 'value', k.value,
                       'version', k.version, 'expiresAt', queen.ts(k.expires_at),
                       'updatedAt', queen.ts(k.updated_at)) ORDER BY w.o)
                       FILTER (WHERE k.key IS NOT NULL), '[]'),
                   coalesce(jsonb_agg(w.key ORDER BY w.o) FILTER (WHERE k.key IS NULL), '[]')
              INTO v_rows, v_r
              FROM jsonb_array_elements_text(v_op->'keys') WITH ORDINALITY AS w(key, o)
              LEFT JOIN queen.kv k
                ON k.ns = v_ns AND k.key = w.key COLLATE "C"
               AND (k.expires_at IS NULL OR k.expires_at > now());
            v_r := jsonb_build_object('rows', v_rows, 'missing', v_r, 'truncated', false);

        WHEN 'getPrefix' THEN
            -- The keys with the prefix are one contiguous range in byte order: walk it from
            -- the prefix (or past `after`) and stop at the first key outside it.
            v_limit := (v_op->>'limit')::integer;
            v_rows := '[]';
            v_n := 0;
            v_more := false;
            FOR v_k IN
                SELECT k.* FROM queen.kv k
                 WHERE k.ns = v_ns
                   AND k.key >= (v_op->>'prefix') COLLATE "C"
                   AND (v_op->>'after' IS NULL OR k.key > (v_op->>'after') COLLATE "C")
                 ORDER BY k.key
            LOOP
                EXIT WHEN NOT starts_with(v_k.key, v_op->>'prefix');
                CONTINUE WHEN v_k.expires_at IS NOT NULL AND v_k.expires_at <= now();
                IF v_n = v_limit THEN
                    v_more := true;
                    EXIT;
                END IF;
                v_n := v_n + 1;
                v_rows := v_rows || jsonb_build_array(
                    jsonb_build_object('key', v_k.key, 'version', v_k.version,
                        'expiresAt', queen.ts(v_k.expires_at),
                        'updatedAt', queen.ts(v_k.updated_at))
                    || CASE WHEN (v_op->>'keysOnly')::boolean THEN '{}'::jsonb
                            ELSE jsonb_build_object('value', v_k.value) END);
            END LOOP;
            v_r := jsonb_build_object('rows', v_rows, 'truncated', v_more,
                'nextAfter', CASE WHEN v_more THEN v_rows->(v_n - 1)->'key' END);

        WHEN 'put' THEN
            v_applied := v_held;
            v_reason := v_missed;
            IF v_applied THEN
                v_version := nextval('queen.kv_versions');
                INSERT INTO queen.kv (ns, key, value, version, expires_at, updated_at)
                VALUES (v_ns, v_key, v_op->'value', v_version, v_expires, now())
                ON CONFLICT (ns, key) DO UPDATE
                   SET value = excluded.value, version = excluded.version,
                       expires_at = excluded.expires_at, updated_at = excluded.updated_at;
                v_r := jsonb_build_object('applied', true, 'key', v_key, 'value', v_op->'value',
                    'version', v_version, 'expiresAt', queen.ts(v_expires));
            END IF;

        WHEN 'delete' THEN
            v_applied := v_live AND v_held;
            v_reason := CASE WHEN v_live THEN v_missed ELSE 'absent' END;
            -- A live row that applies goes; so does an expired one nobody can see.
            IF v_row.key IS NOT NULL AND (v_applied OR NOT v_live) THEN
                DELETE FROM queen.kv k WHERE k.ns = v_ns AND k.key = v_key;
            END IF;
            IF v_applied THEN
                v_r := jsonb_build_object('applied', true, 'key', v_key,
                    'version', v_row.version);
            END IF;

        WHEN 'check' THEN
            v_applied := v_held;
            v_reason := v_missed;
            IF v_applied THEN
                v_r := jsonb_build_object('applied', true, 'key', v_key,
                    'version', CASE WHEN v_live THEN v_row.version ELSE 0 END);
            END IF;

        WHEN 'incr' THEN
            -- A live number grows and keeps its expiry; an absent or expired key counts as 0
            -- and starts with this operation's expiry. The bounds refuse, never saturate.
            IF v_live AND jsonb_typeof(v_row.value) <> 'number' THEN
                v_applied := false;
                v_reason := 'type';
            ELSE
                v_base := CASE WHEN v_live THEN (v_row.value #>> '{}')::numeric ELSE 0 END;
                v_new := v_base + (v_op->>'delta')::numeric;
                v_applied := (v_op->>'max' IS NULL OR v_new <= (v_op->>'max')::numeric)
                         AND (v_op->>'min' IS NULL OR v_new >= (v_op->>'min')::numeric);
                v_reason := 'limit';
            END IF;
            IF v_applied THEN
                v_version := nextval('queen.kv_versions');
                IF v_live THEN
                    UPDATE queen.kv k
                       SET value = to_jsonb(v_new), version = v_version, updated_at = now()
                     WHERE k.ns = v_ns AND k.key = v_key
                    RETURNING k.expires_at INTO v_expires;
                ELSE
                    INSERT INTO queen.kv (ns, key, value, version, expires_at, updated_at)
                    VALUES (v_ns, v_key, to_jsonb(v_new), v_version, v_expires, now())
                    ON CONFLICT (ns, key) DO UPDATE
                       SET value = excluded.value, version = excluded.version,
                           expires_at = excluded.expires_at, updated_at = excluded.updated_at;
                END IF;
                v_r := jsonb_build_object('applied', true, 'key', v_key,
                    'value', to_jsonb(v_new), 'version', v_version,
                    'expiresAt', queen.ts(v_expires));
            ELSIF v_reason = 'limit' THEN
                -- What a reader sees: the current count (0 for an absent key).
                v_r := jsonb_build_object('applied', false, 'reason', v_reason, 'key', v_key,
                    'value', to_jsonb(v_base),
                    'version', CASE WHEN v_live THEN v_row.version ELSE 0 END);
            END IF;
        END CASE;

        IF v_applied IS NOT NULL AND NOT v_applied THEN
            IF (v_op->>'required')::boolean THEN
                RAISE EXCEPTION 'operation % (%) did not apply: %', v_i, v_op->>'op', v_reason
                    USING ERRCODE = 'QU007',
                          DETAIL = jsonb_build_object('index', v_i, 'reason', v_reason,
                              'version', CASE WHEN v_live THEN v_row.version ELSE 0 END,
                              'value', CASE WHEN v_live THEN v_row.value END)::text;
            END IF;
            -- A refusal answers what a reader would see, so the loser needs no second call.
            v_r := coalesce(v_r, jsonb_build_object('applied', false, 'reason', v_reason,
                'key', v_key,
                'version', CASE WHEN v_live THEN v_row.version ELSE 0 END)
                || CASE WHEN v_live THEN jsonb_build_object('value', v_row.value,
                        'expiresAt', queen.ts(v_row.expires_at)) ELSE '{}'::jsonb END);
        END IF;
        v_out := v_out || jsonb_build_array(jsonb_build_object('index', v_i) || v_r);
    END LOOP;
    RETURN v_out;
END
$$;

-- Deletes up to p_limit rows past their expiry (they are already absent to every operation);
-- answers how many.
CREATE FUNCTION queen.kv_prune(p_limit integer) RETURNS integer
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM queen.kv k
         WHERE (k.ns, k.key) IN (SELECT e.ns, e.key FROM queen.kv e
                                  WHERE e.expires_at <= now()
                                  ORDER BY e.expires_at LIMIT p_limit
                                    FOR UPDATE SKIP LOCKED)
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;
