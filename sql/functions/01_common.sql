-- Helpers every other file uses.
--
-- Plans: every PL/pgSQL function runs with plan_cache_mode = force_generic_plan. Left to choose,
-- the plan cache planned their statements on every call (array and record parameters make a
-- custom plan look cheaper), and planning cost more than executing (docs/design-notes.md).
-- Lookups whose generic plan could turn into a scan are written as per-row probes
-- (LATERAL ... OFFSET 0).
--
-- Custom SQLSTATEs (class QU):
--   QU001 duplicate transactionId inside a transaction
--   QU002 a required lease is not live
--   QU003 an ack inside a transaction failed
--   QU004 a plaintext payload for a queue with encryptionEnabled (DETAIL: the queue)
--   QU005 the push would exceed the queue's maxSize (DETAIL: the queue)
--   QU006 a partition of the push no longer exists (the server's cache is stale)
--   QU007 a key/value operation marked required did not apply (DETAIL: JSON, see kv.sql)

-- RFC 3339 UTC with microseconds, as every API timestamp.
CREATE FUNCTION queen.ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- A transactionId as stored: (txuuid, txtext). A canonical UUID (lowercase, hyphenated, as
-- clients print them) is stored as uuid, anything else as text, so each prints back exactly as
-- it was given. The server splits the same way on the hot path (engine/src/txid.rs).
CREATE FUNCTION queen.split_txid(p_txid text, OUT txuuid uuid, OUT txtext text)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF p_txid ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        txuuid := p_txid::uuid;
    ELSE
        txtext := p_txid;
    END IF;
END
$$;

-- The transactionId of a stored message.
CREATE FUNCTION queen.txid(p_txuuid uuid, p_txtext text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(p_txtext, p_txuuid::text)
$$;

-- The position of a partition's message with this transactionId (NULL when it has none): a
-- probe of the unique index of the transactionId's form.
CREATE FUNCTION queen.find_position(p_pnum bigint, p_txid text) RETURNS bigint
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    t record;
    v_pos bigint;
BEGIN
    t := queen.split_txid(p_txid);
    IF t.txuuid IS NOT NULL THEN
        SELECT ms.position INTO v_pos FROM queen.messages ms
         WHERE ms.pnum = p_pnum AND ms.txuuid = t.txuuid;
    ELSE
        SELECT ms.position INTO v_pos FROM queen.messages ms
         WHERE ms.pnum = p_pnum AND ms.txtext = t.txtext COLLATE "C";
    END IF;
    RETURN v_pos;
END
$$;
