#!/usr/bin/env bash
# Ephemeral (in-memory) queues beside durable ones on the same server.
#
#   benches/ephemeral.sh [seconds per figure, default 10] [rounds, default 2]
#
# On a fresh, durable PostgreSQL, one `queen serve`: `queen-load e2e` (10 producers pushing 10
# messages per request over 100 partitions, 4 consumers popping 10 with long polls and acking
# every batch), once on a durable queue and once on an ephemeral one (`--ephemeral`), rounds
# alternating: at an offered 2,000 msg/s (push→pop latency; no request may fail) and as fast as
# they go (throughput: messages consumed per second). Unpaced, ephemeral producers outrun the
# consumers until the server's byte budget refuses pushes (503, counted as the load's errors):
# that is the backpressure working, so the figure is what the consumers got through. Prints
# each figure and the ratios. Needs the PostgreSQL server binaries and
# python3; run as root, PostgreSQL runs as `postgres`.
set -euo pipefail
SECS=${1:-10}
ROUNDS=${2:-2}
cd "$(dirname "$0")/.."
. benches/pg.sh
trap stop_all EXIT
cargo build --release --workspace --bins >/dev/null 2>&1
start_cluster queen-ephemeral
start_queen FILE_BUFFER_DIR="$WORK/buffer"
# run <queue> <rate> [--ephemeral]: "msg/s p50_ms p99_ms errors" of one e2e run on a queue of
# its own. An ephemeral queue is configured first with room for the backlog of an unpaced run
# (the default maxLength, 10,000, would refuse pushes with 429 once producers run ahead of the
# consumers), and deleted after it, so its backlog does not fill the next run's budget.
run() {
  local queue=$1 rate=$2; shift 2
  if [ "${1:-}" = --ephemeral ]; then
    curl -sf -XPOST "127.0.0.1:$HTTP/api/v1/ephemeral/configure" \
      -d "{\"queue\":\"$queue\",\"options\":{\"maxLength\":10000000,\"maxBytes\":268435456}}" >/dev/null
  fi
  target/release/queen-load --url "127.0.0.1:$HTTP" --json --duration "$SECS" e2e --queue "$queue" \
    --connections 10 --consumers 4 --batch 10 --partitions 100 --rate "$rate" "$@" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["runs"][0][0]; e=r["e2e_latency"]
assert r["duplicates"] == 0, r
print(round(r["consume_msgs_per_sec"]), e["p50_ms"], e["p99_ms"], r["errors"])'
  if [ "${1:-}" = --ephemeral ]; then
    curl -sf -XDELETE "127.0.0.1:$HTTP/api/v1/ephemeral/queue/$queue" >/dev/null
  fi
}
declare -A F
for r in $(seq "$ROUNDS"); do
  kinds=(durable ephemeral)
  [ $((r % 2)) = 0 ] && kinds=(ephemeral durable)
  for k in "${kinds[@]}"; do
    flag=(); [ "$k" = ephemeral ] && flag=(--ephemeral)
    F[$k-paced]+="$(run "paced-$r-$k" 2000 "${flag[@]}");"
    F[$k-max]+="$(run "max-$r-$k" 0 "${flag[@]}");"
  done
  echo "after round $r (msg/s, push->pop p50 and p99 in ms; paced at 2,000 msg/s; max):"
  for k in durable ephemeral; do echo "  $k: paced ${F[$k-paced]} max ${F[$k-max]}"; done
done
python3 - "${F[durable-paced]}" "${F[ephemeral-paced]}" "${F[durable-max]}" "${F[ephemeral-max]}" <<'PY'
import statistics, sys
def rows(s): return [list(map(float, x.split())) for x in s.split(";") if x]
dp, ep, dm, em = (rows(a) for a in sys.argv[1:5])
assert all(r[3] == 0 for r in dp + ep), "a paced run had failed requests"
med = lambda rs, i: statistics.median(r[i] for r in rs)
print(f"at 2,000 msg/s, push->pop p50: durable {med(dp,1):.2f} ms, ephemeral {med(ep,1):.2f} ms "
      f"({med(dp,1) / med(ep,1):.0f}x lower); p99 {med(dp,2):.2f} / {med(ep,2):.2f} ms")
print(f"as fast as they go, consumed: durable {med(dm,0):.0f} msg/s, ephemeral {med(em,0):.0f} "
      f"msg/s ({med(em,0) / med(dm,0):.2f}x); pushes refused by the byte budget: "
      f"{med(em,3):.0f} (ephemeral), {med(dm,3):.0f} (durable)")
PY
