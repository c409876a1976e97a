#!/usr/bin/env bash
# Reads by offset (POST /api/v1/fetch): does their cost grow with stored data, and how close do
# they come to reading the same rows in SQL?
#
#   benches/reads.sh [seconds per figure, default 10]
#
# On a fresh, durable PostgreSQL: queue `small` gets 100,000 messages over 100 partitions
# (1,000 each) and is read by 2 readers (the inspection pool's default connections, where
# fetches run), each call one partition from a random offset, ~500 records (`queen-load
# fetch`); then queue `big` gets 1,000,000 messages (10,000 a partition), and both are read
# again, alternating. Beside them, the ceiling: pgbench (2 clients) reading the same rows (500
# from a random offset of a random partition of `small`) straight from the message table.
# Prints records per second and the ratios. Needs the PostgreSQL server
# binaries and python3; run as root, PostgreSQL runs as `postgres`.
set -euo pipefail
SECS=${1:-10}
cd "$(dirname "$0")/.."
. benches/pg.sh
trap stop_all EXIT
cargo build --release --workspace --bins >/dev/null 2>&1
start_cluster queen-reads
start_queen FILE_BUFFER_DIR="$WORK/buffer"
PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qAt -v ON_ERROR_STOP=1 postgres)
LOAD=(target/release/queen-load --url "127.0.0.1:$HTTP" --json fetch --consumers 2 --batch 500
      --partitions 100 --connections 10)
rate() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["runs"][0][0]["consume_msgs_per_sec"]))'; }
fetch() { "${LOAD[@]}" --queue "$1" --duration "$SECS" --prefill "${2:-0}" | rate; }

"${LOAD[@]}" --queue small --duration 1 --prefill 100000 >/dev/null
"${PSQL[@]}" -c "VACUUM ANALYZE queen.messages"
read -r LO HI < <("${PSQL[@]}" -F' ' -c "SELECT min(p.num), max(p.num) FROM queen.partitions p
  JOIN queen.queues q ON q.id = p.queue_id WHERE q.name = 'small' AND p.name <> 'Default'")
cat > "$WORK/read.sql" <<SQL
\set p random($LO, $HI)
\set o random(0, 500)
SELECT position, id, txuuid, payload, created_at FROM queen.messages
 WHERE pnum = :p AND position > :o ORDER BY position LIMIT 500;
SQL
ceiling() {
  "$BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -M prepared -c 2 -j 2 -T "$SECS" \
    -f "$WORK/read.sql" postgres 2>&1 | grep -Eo 'tps = [0-9.]+' | awk '{printf "%.0f\n", $3 * 500}'
}
S1=$(fetch small); C1=$(ceiling)
echo "stored 100,000:   fetch small $S1 records/s, SQL ceiling $C1"
"${LOAD[@]}" --queue big --duration 1 --prefill 1000000 >/dev/null
"${PSQL[@]}" -c "VACUUM ANALYZE queen.messages"
S2=$(fetch small); B1=$(fetch big); C2=$(ceiling); S3=$(fetch small); B2=$(fetch big)
echo "stored 1,100,000: fetch small $S2 / $S3, fetch big $B1 / $B2 records/s, SQL ceiling $C2"
python3 - "$S1" "$S2" "$S3" "$B1" "$B2" "$C1" "$C2" <<'PY'
import statistics, sys
s1, s2, s3, b1, b2, c1, c2 = map(float, sys.argv[1:])
print(f"small after the fill / before: {statistics.median([s2, s3]) / s1:.2f}")
print(f"big (10,000 a partition) / small (1,000): {statistics.median([b1, b2]) / statistics.median([s2, s3]):.2f}")
print(f"fetch / SQL ceiling: {s1 / c1:.2f} (100,000 stored), {statistics.median([s2, s3]) / c2:.2f} (1,100,000)")
PY
