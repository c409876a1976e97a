# Sourced by the shell benches: a private, durable PostgreSQL per run (initdb defaults: fsync on,
# synchronous_commit on), run as the `postgres` user when the bench runs as root.
#
#   start_cluster <prefix>   a fresh cluster in a new directory /tmp/<prefix>.XXXXXX: sets WORK
#                            (its directory; the data in $WORK/pg, the log in $WORK/pg.log) and
#                            PORT (TCP on 127.0.0.1, the socket in $WORK)
#   stop_cluster             stops it and removes $WORK (nothing when none is running)
#   start_queen [ENV=VALUE…] `queen serve` (the release build) on that cluster, with the
#                            settings given (and DB_OPTS, when set, appended to its connection
#                            string: `sslmode=require`, say): sets HTTP (its port) and SERVER
#                            (its pid) and returns once it answers /ready
#   stop_all                 stops the server start_queen started (if any), then the cluster:
#                            what a bench's EXIT trap runs
#   free_port                a free TCP port
#   as_pg <cmd…>             runs a command as `postgres` when root
#   load_rate <field>        reads `field` of the first run from `queen-load --json` on stdin
#   alternate <rounds> <unit> <label A> <fn A> <label B> <fn B>
#                            measures two figures (each fn prints one, given the round number)
#                            in alternating order, A first in odd rounds; prints every round,
#                            then both medians and the ratio A / B
BIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=""
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
load_rate() { python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0][0][sys.argv[1]])' "$1"; }
alternate() {
  local rounds=$1 unit=$2 la=$3 fa=$4 lb=$5 fb=$6 r a b A=() B=()
  for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then a=$("$fa" "$r"); b=$("$fb" "$r"); else b=$("$fb" "$r"); a=$("$fa" "$r"); fi
    A+=("$a"); B+=("$b")
    printf 'round %s: %s %.0f %s, %s %.0f %s\n' "$r" "$la" "$a" "$unit" "$lb" "$b" "$unit"
  done
  python3 - "$la" "$lb" "$unit" "${A[*]}" "${B[*]}" <<'PY'
import statistics, sys
la, lb, unit = sys.argv[1:4]
a = statistics.median(float(x) for x in sys.argv[4].split())
b = statistics.median(float(x) for x in sys.argv[5].split())
print(f"medians: {la} {a:.0f} {unit}, {lb} {b:.0f} {unit}, ratio {a / b:.2f}")
PY
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_cluster() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$WORK"
  if [ "$(id -u)" = 0 ]; then chown postgres "$WORK"; fi
  PORT=$(free_port)
  as_pg "$BIN/initdb" -D "$WORK/pg" -U postgres -A trust >/dev/null
  as_pg "$BIN/pg_ctl" -D "$WORK/pg" -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=200" \
    -l "$WORK/pg.log" -w start >/dev/null
}
stop_cluster() {
  if [ -n "$WORK" ]; then
    as_pg "$BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
  WORK=""
}
start_queen() {
  HTTP=$(free_port)
  env "$@" DATABASE_URL="host=127.0.0.1 port=$PORT user=postgres dbname=postgres ${DB_OPTS:-}" PORT="$HTTP" \
    HOST=127.0.0.1 LOG_LEVEL=warn target/release/queen serve &
  SERVER=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$HTTP/ready" >/dev/null 2>&1 && break; sleep 0.1; done
}
stop_all() {
  if [ -n "${SERVER:-}" ]; then
    kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  fi
  SERVER=""
  stop_cluster
}
