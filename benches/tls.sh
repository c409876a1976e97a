#!/usr/bin/env bash
# What TLS to the database costs the hot path: the same server and load on a cluster that
# offers TLS, with the server's connections plaintext (`sslmode=disable`) and encrypted
# (`sslmode=require`), alternating over rounds; a fresh cluster and server per figure set.
#
#   benches/tls.sh [seconds per figure, default 10] [rounds, default 2]
#
# The clusters are durable (initdb defaults). Figures (msg/s, `queen-load`): push 100 per
# request (10 connections, each on its own partitions, UUIDv7 transactionIds), push 1 per
# request (50 connections), pop 100 + ack (10 consumers) from a prefilled queue. Needs the
# PostgreSQL server binaries, openssl and python3.
set -euo pipefail
SECS=${1:-10}
ROUNDS=${2:-2}
cd "$(dirname "$0")/.."
. benches/pg.sh
RESULTS=$(mktemp /tmp/queen-tls.XXXXXX)
trap 'stop_all; rm -f "$RESULTS"' EXIT
cargo build --release --workspace --bins >/dev/null 2>&1

# A fresh cluster offering TLS: a self-signed certificate made by `openssl`.
tls_cluster() {
  start_cluster queen-tls
  as_pg openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$WORK/pg/server.key" -out "$WORK/pg/server.crt" 2>/dev/null
  chmod 600 "$WORK/pg/server.key"
  "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qAt -c "ALTER SYSTEM SET ssl = on" postgres
  "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qAt -c "SELECT pg_reload_conf()" postgres >/dev/null
  sleep 1
}

run() {
  local mode=$1
  tls_cluster
  DB_OPTS="sslmode=$mode" start_queen FILE_BUFFER_DIR="$WORK/buffer"
  local load=(target/release/queen-load --url "127.0.0.1:$HTTP" --duration "$SECS" --json)
  local encrypted
  encrypted=$("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qAt -c \
    "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) FROM pg_stat_activity a
       JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'queen'" postgres)
  echo "  $mode: server sessions encrypted $encrypted"
  local p100 p1 pop
  p100=$("${load[@]}" --txids=v7 push --connections 10 --batch 100 --partitions 100 | load_rate push_msgs_per_sec)
  p1=$("${load[@]}" --txids=v7 push --connections 50 --batch 1 --partitions 100 | load_rate push_msgs_per_sec)
  pop=$("${load[@]}" consume --consumers 10 --batch 100 --partitions 100 --connections 10 \
    --prefill $((SECS * 300000)) | load_rate consume_msgs_per_sec)
  printf '%s push_100 %s\n%s push_1 %s\n%s pop_100_ack %s\n' \
    "$mode" "$p100" "$mode" "$p1" "$mode" "$pop" >> "$RESULTS"
  printf '  %-8s push 100 %9.0f  push 1 %8.0f  pop 100 + ack %9.0f msg/s\n' "$mode" "$p100" "$p1" "$pop"
  stop_all
}

echo "machine: $(nproc) cores; PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'); ${SECS} s per figure; $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then ORDER=(disable require); else ORDER=(require disable); fi
  echo "round $round: ${ORDER[*]}"
  for mode in "${ORDER[@]}"; do run "$mode"; done
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    mode, fig, v = line.split()
    runs.setdefault(fig, {}).setdefault(mode, []).append(float(v))
print("\n| figure | plaintext | TLS (require) | TLS / plaintext |\n|---|---:|---:|---:|")
for fig, by in runs.items():
    p, t = statistics.median(by["disable"]), statistics.median(by["require"])
    print(f"| {fig} | {p:,.0f} | {t:,.0f} | {t / p:.2f}× |")
PY
