#!/usr/bin/env bash
# The key/value store (POST /api/v1/kv) against the same work in SQL.
#
#   benches/kv.sh [seconds per figure, default 10] [rounds, default 2]
#
# On a fresh, durable PostgreSQL: 20 clients each call `incr` of one random key among 10,000
# (`queen-load kv`, one operation per call, each call its own transaction as the API makes
# it), and beside it the ceiling: pgbench, 20 clients, each transaction the same
# `queen.kv_apply` call on a random key — the store's own function without HTTP, the engine or
# the server's checks. Rounds alternate the two. Prints operations per second and the ratio.
# Needs the PostgreSQL server binaries and python3; run as root, PostgreSQL runs as `postgres`.
set -euo pipefail
SECS=${1:-10}
ROUNDS=${2:-2}
cd "$(dirname "$0")/.."
. benches/pg.sh
trap stop_all EXIT
cargo build --release --workspace --bins >/dev/null 2>&1
start_cluster queen-kv
start_queen FILE_BUFFER_DIR="$WORK/buffer"
cat > "$WORK/incr.sql" <<'SQL'
\set k random(0, 9999)
SELECT queen.kv_apply(('[{"op": "incr", "ns": "sql", "key": "k' || :k || '", "delta": 1, "min": null, "max": null, "ttl": null, "required": false}]')::jsonb);
SQL
http() {
  target/release/queen-load --url "127.0.0.1:$HTTP" --json kv --queue http --connections 20 \
    --batch 1 --partitions 10000 --duration "$SECS" | load_rate push_msgs_per_sec
}
ceiling() {
  "$BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -M prepared -c 20 -j 2 -T "$SECS" \
    -f "$WORK/incr.sql" postgres 2>&1 | grep -Eo 'tps = [0-9.]+' | awk '{printf "%.0f\n", $3}'
}
alternate "$ROUNDS" ops/s "HTTP incr" http "SQL ceiling" ceiling
