#!/usr/bin/env bash
# The raw PostgreSQL ceiling and the server's HTTP figures, in one run on one machine, so every
# HTTP figure is also a fraction of what PostgreSQL itself does with the same hardware.
#
#   benches/ceiling.sh [seconds per run, default 10]
#
# Starts a private, durable PostgreSQL (initdb defaults: fsync on, synchronous_commit on) on a
# free port in a temporary directory, then measures in this order:
#   1. insert ceiling: pgbench, 10 clients, each transaction one INSERT of 100 rows from unnest
#      into a table shaped like queen.messages (200-byte JSON payloads);
#   2. queen push: queen-load push, 10 connections, 100 messages per request;
#   3. pop ceiling: pgbench, 10 clients, each transaction one statement that reads the next 100
#      rows of a partition by position range and moves that partition's cursor past them;
#   4. queen consume: queen-load consume, 10 consumers, pop batch 100 + ack/batch, draining (2);
#   5. queen push 1 message per request over 50 connections, and e2e at 1,000 msg/s offered.
# Needs the PostgreSQL server binaries (pg_config --bindir, or /usr/lib/postgresql/*/bin) and
# python3. Run as root, PostgreSQL runs as the `postgres` user.
set -euo pipefail
SECS=${1:-10}
cd "$(dirname "$0")/.."
. benches/pg.sh
trap stop_all EXIT

cargo build --release --workspace --bins >/dev/null 2>&1
start_cluster queen-ceiling
PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qAt -v ON_ERROR_STOP=1 postgres)
PGBENCH=("$BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -M prepared -c 10 -j 2 -T "$SECS" postgres)
PAYLOAD=$(python3 -c 'print("{\"f\": \"" + "x" * 190 + "\"}")')

"${PSQL[@]}" <<SQL
CREATE TABLE raw (pid int NOT NULL, position bigint NOT NULL, id uuid NOT NULL, txid text NOT NULL,
                  payload jsonb, created_at timestamptz NOT NULL DEFAULT now(),
                  PRIMARY KEY (pid, position), UNIQUE (pid, txid));
CREATE SEQUENCE raw_pos;
CREATE TABLE raw_cursors (pid int PRIMARY KEY, position bigint NOT NULL DEFAULT 0) WITH (fillfactor = 50);
INSERT INTO raw_cursors SELECT g FROM generate_series(1, 10) g;
SQL
cat > "$WORK/insert.sql" <<SQL
\set p random(1, 10)
INSERT INTO raw (pid, position, id, txid, payload)
SELECT :p, nextval('raw_pos'), u.id, u.id::text, '$PAYLOAD'::jsonb
  FROM unnest(ARRAY(SELECT gen_random_uuid() FROM generate_series(1, 100))) AS u(id);
SQL
cat > "$WORK/pop.sql" <<SQL
\set p random(1, 10)
WITH m AS (SELECT r.position, r.payload FROM raw r
            WHERE r.pid = :p AND r.position > (SELECT c.position FROM raw_cursors c WHERE c.pid = :p)
            ORDER BY r.position LIMIT 100),
     u AS (UPDATE raw_cursors SET position = (SELECT max(position) FROM m)
            WHERE pid = :p AND EXISTS (SELECT 1 FROM m))
SELECT position, payload FROM m;
SQL
tps() { grep -Eo 'tps = [0-9.]+' | head -1 | cut -d' ' -f3; }
# queen-load --json prints {"runs": [[run, …] per server]}.

echo "machine: $(nproc) cores; PostgreSQL $("${PSQL[@]}" -c 'SHOW server_version'); synchronous_commit $("${PSQL[@]}" -c 'SHOW synchronous_commit'), fsync $("${PSQL[@]}" -c 'SHOW fsync'); payload ~200 bytes; ${SECS} s per run"

INSERT_TPS=$("${PGBENCH[@]}" -f "$WORK/insert.sql" 2>&1 | tps)
INSERT_MSGS=$(python3 -c "print(round($INSERT_TPS * 100))")

start_queen FILE_BUFFER_DIR="$WORK/buffer"
LOAD=(target/release/queen-load --url "127.0.0.1:$HTTP" --duration "$SECS" --json)
PUSH100=$("${LOAD[@]}" push --queue ceil --connections 10 --batch 100 --partitions 10 | load_rate push_msgs_per_sec)

BEFORE=$("${PSQL[@]}" -c "SELECT count(*) FROM raw")
"${PGBENCH[@]}" -f "$WORK/pop.sql" >/dev/null 2>&1
POPPED=$("${PSQL[@]}" -c "SELECT count(*) FROM raw r JOIN raw_cursors c ON c.pid = r.pid AND r.position <= c.position")
POP_MSGS=$(python3 -c "print(round($POPPED / $SECS))")

CONSUME=$("${LOAD[@]}" consume --queue ceil --consumers 10 --batch 100 | load_rate consume_msgs_per_sec)
PUSH1_JSON=$("${LOAD[@]}" push --connections 50 --batch 1)
E2E_JSON=$("${LOAD[@]}" e2e --rate 1000 --consumers 10 --connections 10)
RSS=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")

python3 - "$INSERT_MSGS" "$PUSH100" "$POP_MSGS" "$CONSUME" "$BEFORE" "$RSS" "$PUSH1_JSON" "$E2E_JSON" <<'PY'
import json, sys
ins, push100, pop, consume, backlog, rss = map(float, sys.argv[1:7])
p1, e2e = (json.loads(a)["runs"][0][0] for a in sys.argv[7:9])
print(f"| figure | measured | ceiling | fraction |\n|---|---:|---:|---:|")
print(f"| push, 100/request, 10 conns (msg/s) | {push100:,.0f} | {ins:,.0f} (pgbench unnest insert) | {push100/ins:.0%} |")
print(f"| consume, pop 100 + ack, 10 consumers (msg/s) | {consume:,.0f} | {pop:,.0f} (pgbench range pop, {backlog:,.0f} rows) | {consume/pop:.0%} |")
print(f"| push, 1/request, 50 conns (msg/s) | {p1['push_msgs_per_sec']:,.0f}, p99 {p1['request_latency']['p99_ms']} ms | {ins:,.0f} | {p1['push_msgs_per_sec']/ins:.0%} |")
print(f"| e2e at 1,000 msg/s: push->pop p50 / p99 (ms) | {e2e['e2e_latency']['p50_ms']} / {e2e['e2e_latency']['p99_ms']} | | |")
print(f"| server peak RSS (MiB) | {rss/1024:.1f} | | |")
PY
