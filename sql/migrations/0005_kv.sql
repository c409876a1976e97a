-- The key/value store (docs/kv.md): small JSON values under (namespace, key), each with a
-- version and an optional expiry, written by `POST /api/v1/kv`.
--
-- * version: drawn from one sequence for every key, so a key deleted and written again never
--   repeats a version an old writer may still hold (`expect` cannot be fooled by a new lineage).
-- * expires_at: NULL means forever. A row past it is absent to every operation at once; the
--   server deletes such rows later, in small batches (queen.kv_prune).
-- * The C collation orders keys byte by byte, so the keys with a given prefix are one
--   contiguous range of the primary key.

CREATE SEQUENCE queen.kv_versions;

CREATE TABLE queen.kv (
    ns text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value jsonb NOT NULL,
    version bigint NOT NULL,
    expires_at timestamptz,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (ns, key)
);

CREATE INDEX kv_expiry ON queen.kv (expires_at) WHERE expires_at IS NOT NULL;
