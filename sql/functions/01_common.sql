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

-- RFC 3339 UTC with microseconds, as every API timestamp.
CREATE FUNCTION queen.ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The key of a transactionId stored as a UUID: its first 8 bytes as a signed big-endian integer
-- (time-ordered for UUIDv7). The server computes the same for the hot path; a test checks that
-- the two agree.
CREATE FUNCTION queen.uuid_key(u uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
    SELECT ('x' || encode(substring(uuid_send(u) FROM 1 FOR 8), 'hex'))::bit(64)::bigint
$$;

-- A transactionId as stored: (txkey, txuuid, txtext). A canonical UUID (lowercase, hyphenated,
-- as clients print them) is stored as uuid, anything else as text, so each prints back exactly
-- as it was given.
CREATE FUNCTION queen.split_txid(p_txid text, OUT txkey bigint, OUT txuuid uuid, OUT txtext text)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF p_txid ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        txuuid := p_txid::uuid;
        txkey := queen.uuid_key(txuuid);
    ELSE
        txtext := p_txid;
        txkey := hashtextextended(p_txid, 0);
    END IF;
END
$$;

-- The transactionId of a stored message.
CREATE FUNCTION queen.txid(p_txuuid uuid, p_txtext text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(p_txtext, p_txuuid::text)
$$;

-- The position of a partition's message with this transactionId (NULL when it has none).
CREATE FUNCTION queen.find_position(p_pnum bigint, p_txid text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT ms.position
      FROM queen.split_txid(p_txid) t
      JOIN queen.messages ms ON ms.pnum = p_pnum AND ms.txkey = t.txkey
     WHERE ms.txuuid IS NOT DISTINCT FROM t.txuuid AND ms.txtext IS NOT DISTINCT FROM t.txtext
     LIMIT 1
$$;
