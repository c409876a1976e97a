#!/usr/bin/env bash
# queen-rs beside the leanest PostgreSQL queue (pgmq) and the raw insert ceiling, in one run.
#
#   benches/peers.sh [seconds per figure, default 10] [rounds, default 2]
#   PUSH_CONNECTIONS=20 benches/peers.sh …   the batch pushes (pgmq send_batch, the ceiling,
#                                           queen push 100) with that many clients, not 10
#
# Every system gets a fresh, durable PostgreSQL of its own (initdb defaults: fsync on,
# synchronous_commit on; same binaries, same settings), started and removed per system and
# round; the order of the systems alternates between rounds. Figures (messages per second):
#
#   pgmq      send_batch 100 per transaction (10 clients); send 1 per transaction (50 clients);
#             read 100 + delete per transaction (10 clients) from a prefilled queue — each
#             twice: driven as an application drives it (`queen-load pgmq-send` /
#             `pgmq-consume`: one connection per client, every message its own ~200-byte
#             payload passed as a parameter, so PostgreSQL parses each), and by pgbench with one
#             constant payload (`_pgbench`: the plan folds the constant, so no message is parsed
#             — a floor no client gets). pgmq is installed from its released SQL (the
#             `pgmq.sql` the `pgmq` crate ships), as its docs tell users without the extension
#             to do; it is fetched once into target/peers/.
#   ceiling   pgbench, 10 clients, each transaction one INSERT of 100 rows from unnest into a
#             table of queen's message shape (as benches/ceiling.sh).
#   queen     queen-load over HTTP, every item with its own transactionId (a time-ordered
#             UUIDv7, as Queen's clients make them; the two push 100 figures also with random
#             UUIDv4 ids, `_v4`, the worst case for the dedupe index): push 100 per request with each connection on its own partitions
#             (10 connections, 100 partitions), push 100 per request spread over partitions all
#             connections share (`--spread`), push 1 per request (50 connections), and pop 100
#             + ack (10 consumers) from a prefilled queue (300,000 messages per second of the
#             run, more than it drains).
#
# Prints each figure per round, then the medians and the ratios the storage targets are stated
# in. Needs the PostgreSQL server binaries, python3 and curl (for the pgmq crate); run as root,
# PostgreSQL runs as the `postgres` user.
set -euo pipefail
SECS=${1:-10}
ROUNDS=${2:-2}
PC=${PUSH_CONNECTIONS:-10}
cd "$(dirname "$0")/.."
PGMQ_VERSION=1.11.1     # the SQL inside pgmq crate 0.33.7
PGMQ_CRATE=0.33.7
CACHE=target/peers
. benches/pg.sh
tps() { grep -Eo 'tps = [0-9.]+' | head -1 | cut -d' ' -f3; }
RESULTS=$(mktemp /tmp/queen-peers.XXXXXX)
SERVER=""
trap 'stop_all; rm -f "$RESULTS"' EXIT

mkdir -p "$CACHE"
if [ ! -f "$CACHE/pgmq-$PGMQ_VERSION.sql" ]; then
  curl -sfL "https://static.crates.io/crates/pgmq/pgmq-$PGMQ_CRATE.crate" -o "$CACHE/pgmq.crate"
  tar -xzf "$CACHE/pgmq.crate" -C "$CACHE" "pgmq-$PGMQ_CRATE/src/install/embedded/sql/pgmq.sql"
  mv "$CACHE/pgmq-$PGMQ_CRATE/src/install/embedded/sql/pgmq.sql" "$CACHE/pgmq-$PGMQ_VERSION.sql"
  rm -rf "$CACHE/pgmq.crate" "$CACHE/pgmq-$PGMQ_CRATE"
fi
cargo build --release --workspace --bins >/dev/null 2>&1

# A fresh cluster in $WORK; sets PORT and the PSQL / PGBENCH commands.
fresh_cluster() {
  start_cluster queen-peers-pg
  PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qAt -v ON_ERROR_STOP=1 postgres)
  PGBENCH=("$BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -M prepared -j 2 -T "$SECS" postgres)
}

record() { echo "$1 $2" >> "$RESULTS"; printf '  %-28s %12.0f msg/s\n' "$1" "$2"; }

PAYLOAD=$(python3 -c 'print("{\"f\": \"" + "x" * 190 + "\"}")')

run_pgmq() {
  fresh_cluster
  "${PSQL[@]}" -f "$CACHE/pgmq-$PGMQ_VERSION.sql" >/dev/null
  "${PSQL[@]}" -c "SELECT pgmq.create('bench')" >/dev/null
  cat > "$WORK/batch.sql" <<SQL
SELECT pgmq.send_batch('bench', array_fill('$PAYLOAD'::jsonb, ARRAY[100]));
SQL
  cat > "$WORK/one.sql" <<SQL
SELECT pgmq.send('bench', '$PAYLOAD'::jsonb);
SQL
  cat > "$WORK/read.sql" <<SQL
SELECT pgmq.delete('bench', ARRAY(SELECT msg_id FROM pgmq.read('bench', 30, 100)));
SQL
  local client=(target/release/queen-load --database-url "host=127.0.0.1 port=$PORT user=postgres dbname=postgres"
                --duration "$SECS" --json)
  record pgmq_send_batch_100 "$("${client[@]}" pgmq-send --connections "$PC" --batch 100 | load_rate push_msgs_per_sec)"
  record pgmq_send_1 "$("${client[@]}" pgmq-send --connections 50 --batch 1 | load_rate push_msgs_per_sec)"
  local t
  t=$("${PGBENCH[@]}" -c "$PC" -f "$WORK/batch.sql" 2>&1 | tps)
  record pgmq_send_batch_100_pgbench "$(python3 -c "print($t * 100)")"
  t=$("${PGBENCH[@]}" -c 50 -f "$WORK/one.sql" 2>&1 | tps)
  record pgmq_send_1_pgbench "$t"
  record pgmq_read_delete_100 "$("${client[@]}" pgmq-consume --consumers 10 --batch 100 | load_rate consume_msgs_per_sec)"
  local before after
  before=$("${PSQL[@]}" -c "SELECT count(*) FROM pgmq.q_bench")
  "${PGBENCH[@]}" -c 10 -f "$WORK/read.sql" >/dev/null 2>&1
  after=$("${PSQL[@]}" -c "SELECT count(*) FROM pgmq.q_bench")
  record pgmq_read_delete_100_pgbench "$(python3 -c "print(($before - $after) / $SECS)")"
  stop_all
}

run_ceiling() {
  fresh_cluster
  "${PSQL[@]}" <<SQL
CREATE TABLE raw (pid int NOT NULL, position bigint NOT NULL, id uuid NOT NULL, txid text NOT NULL,
                  payload jsonb, created_at timestamptz NOT NULL DEFAULT now(),
                  PRIMARY KEY (pid, position), UNIQUE (pid, txid));
CREATE SEQUENCE raw_pos;
SQL
  cat > "$WORK/insert.sql" <<SQL
\set p random(1, 10)
INSERT INTO raw (pid, position, id, txid, payload)
SELECT :p, nextval('raw_pos'), u.id, u.id::text, '$PAYLOAD'::jsonb
  FROM unnest(ARRAY(SELECT gen_random_uuid() FROM generate_series(1, 100))) AS u(id);
SQL
  local t
  t=$("${PGBENCH[@]}" -c "$PC" -f "$WORK/insert.sql" 2>&1 | tps)
  record ceiling_insert_100 "$(python3 -c "print($t * 100)")"
  stop_all
}

run_queen() {
  fresh_cluster
  start_queen FILE_BUFFER_DIR="$WORK/buffer"
  local load=(target/release/queen-load --url "127.0.0.1:$HTTP" --duration "$SECS" --json)
  record queen_push_100_own "$("${load[@]}" --txids=v7 push --connections "$PC" --batch 100 --partitions 100 | load_rate push_msgs_per_sec)"
  record queen_push_100_spread "$("${load[@]}" --txids=v7 push --connections "$PC" --batch 100 --partitions 100 --spread | load_rate push_msgs_per_sec)"
  record queen_push_100_own_v4 "$("${load[@]}" --txids=v4 push --connections "$PC" --batch 100 --partitions 100 | load_rate push_msgs_per_sec)"
  record queen_push_100_spread_v4 "$("${load[@]}" --txids=v4 push --connections "$PC" --batch 100 --partitions 100 --spread | load_rate push_msgs_per_sec)"
  record queen_push_1 "$("${load[@]}" --txids=v7 push --connections 50 --batch 1 --partitions 100 | load_rate push_msgs_per_sec)"
  # The prefill must outlast the run: a queue drained before the deadline would turn the
  # figure into prefill / seconds. Refused rather than recorded when it happens.
  local prefill=$((SECS * 300000)) out consumed
  out=$("${load[@]}" consume --consumers 10 --batch 100 --partitions 100 --connections 10 \
    --prefill "$prefill")
  consumed=$(echo "$out" | load_rate consumed)
  if [ "$consumed" -ge "$prefill" ]; then
    echo "queen_pop_100_ack drained its $prefill prefilled messages: raise the prefill" >&2
    exit 1
  fi
  record queen_pop_100_ack "$(echo "$out" | load_rate consume_msgs_per_sec)"
  stop_all
}

echo "machine: $(nproc) cores; PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'); fsync and synchronous_commit on; payload ~200 bytes; ${SECS} s per figure; $ROUNDS rounds; batch pushes by $PC clients"
SYSTEMS=(pgmq ceiling queen)
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 0 ]; then ORDER=(queen ceiling pgmq); else ORDER=("${SYSTEMS[@]}"); fi
  echo "round $round: ${ORDER[*]}"
  for sys in "${ORDER[@]}"; do "run_$sys"; done
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    runs.setdefault(k, []).append(float(v))
m = {k: statistics.median(v) for k, v in runs.items()}
print("\n| figure | msg/s (median) | rounds |\n|---|---:|---|")
for k, v in runs.items():
    print(f"| {k} | {m[k]:,.0f} | {' · '.join(f'{x:,.0f}' for x in v)} |")
def ratio(a, b, target):
    if a in m and b in m:
        r = m[a] / m[b]
        print(f"| {a} / {b} | {r:.2f} | target ≥ {target} |")
print("\n| ratio | value | target |\n|---|---:|---|")
ratio("queen_push_100_own", "pgmq_send_batch_100", 0.8)
ratio("queen_push_100_spread", "pgmq_send_batch_100", 0.8)
ratio("queen_push_100_own_v4", "pgmq_send_batch_100", 0.8)
ratio("queen_push_100_spread_v4", "pgmq_send_batch_100", 0.8)
ratio("queen_pop_100_ack", "pgmq_read_delete_100", 2)
ratio("queen_push_1", "pgmq_send_1", 5)
print("\n| ratio to pgbench's constant payload (no message parsed) | value | target |\n|---|---:|---|")
ratio("queen_push_100_own", "pgmq_send_batch_100_pgbench", "-")
ratio("queen_push_100_spread", "pgmq_send_batch_100_pgbench", "-")
ratio("queen_pop_100_ack", "pgmq_read_delete_100_pgbench", "-")
ratio("queen_push_1", "pgmq_send_1_pgbench", "-")
print("\n| ratio to the raw insert ceiling | value | target |\n|---|---:|---|")
ratio("queen_push_100_own", "ceiling_insert_100", "-")
ratio("queen_push_100_spread", "ceiling_insert_100", "-")
PY
