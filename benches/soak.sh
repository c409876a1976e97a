#!/usr/bin/env bash
# A mixed soak against a running server: queen-load e2e (pushes, long-poll pops, batch acks at a
# fixed offered rate) beside an inspection trickle of one request a second cycling through the
# dashboard's routes, while the server's RSS is sampled every 10 s.
#
#   benches/soak.sh <host:port> <server pid> [seconds, default 600] [queue to inspect, default bench.routes]
#
# Fill the inspected queue first for a large data set, e.g.
#   queen-load routes --url HOST:PORT --queue bench.routes --fill 1000000 --partitions 10000 \
#     --groups 10 --duration 1 --rounds 1
# Prints the load's report, the trickle's status counts and slowest answers, and RSS min/max.
set -euo pipefail
ADDR=${1:?host:port}
PID=${2:?server pid}
SECS=${3:-600}
QUEUE=${4:-bench.routes}
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /tmp/queen-soak.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

(while kill -0 "$PID" 2>/dev/null; do
   echo "$(date +%s) $(awk '/VmRSS/ {print $2}' /proc/"$PID"/status)"
   sleep 10
 done) > "$WORK/rss" &

ROUTES=(
  "/api/v1/messages?queue=$QUEUE&limit=50"
  "/api/v1/resources/overview"
  "/api/v1/status/queues/$QUEUE"
  "/api/v1/dlq?limit=50"
  "/api/v1/consumer-groups"
  "/api/v1/consumer-groups/g1"
  "/api/v1/messages?queue=$QUEUE&status=pending&limit=50"
  "/api/v1/status"
)
(end=$(( $(date +%s) + SECS )); i=0
 while [ "$(date +%s)" -lt "$end" ]; do
   r=${ROUTES[$((i % ${#ROUTES[@]}))]}
   curl -s -o /dev/null -w "%{http_code} %{time_total} $r\n" "http://$ADDR$r" || echo "000 0 $r"
   i=$((i + 1)); sleep 1
 done) > "$WORK/trickle" &
TRICKLE=$!

target/release/queen-load e2e --url "$ADDR" --queue "soak.$(date +%s)" --rate 1000 \
  --connections 4 --consumers 4 --batch 10 --partitions 100 --duration "$SECS"
wait "$TRICKLE"
echo "trickle: status counts"
awk '{print $1}' "$WORK/trickle" | sort | uniq -c
echo "trickle: slowest answers (s)"
# awk, not head: head closing the pipe early fails the pipeline under pipefail.
sort -k2 -n -r "$WORK/trickle" | awk 'NR <= 5'
awk '{print $2 * 1000}' "$WORK/trickle" | sort -n | awk '{v[NR] = $1}
  END {if (NR) {p99 = int(NR * 0.99); if (p99 < 1) p99 = 1
       printf "trickle: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d answers)\n",
              v[int((NR + 1) / 2)], v[p99], v[NR], NR}}'
awk '{print $2}' "$WORK/rss" | sort -n | awk 'NR==1 {min=$1} {max=$1} END {print "server RSS KiB: min " min ", max " max}'
rm -rf "$WORK"
