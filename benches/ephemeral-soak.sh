#!/usr/bin/env bash
# Ephemeral queues under mixed traffic for a while, on one server: what must stay flat.
#
#   benches/ephemeral-soak.sh [seconds, default 600]
#
# On a fresh, durable PostgreSQL, one `queen serve` with EPHEMERAL_IDLE_SECONDS=30, three loads
# at once:
#   * durable:   queen-load e2e, 4 producers / 4 consumers, 10 a push over 100 partitions,
#                1,000 msg/s;
#   * ephemeral: the same through the ephemeral queues at 5,000 msg/s;
#   * inboxes:   a request/reply loop (python3, one connection): push one message to a new
#                queue `inbox-<n>`, pop it with autoAck, 50 ms pause — a new implicit queue per
#                request, collected once idle for 30 s.
# Every 30 s it prints the server's RSS and the ephemeral queues and bytes it holds; at the end
# each load's summary. Needs the PostgreSQL server binaries, python3 and curl; run as root,
# PostgreSQL runs as `postgres`.
set -euo pipefail
SECS=${1:-600}
cd "$(dirname "$0")/.."
. benches/pg.sh
trap stop_all EXIT
cargo build --release --workspace --bins >/dev/null 2>&1
start_cluster queen-ephemeral-soak
start_queen FILE_BUFFER_DIR="$WORK/buffer" EPHEMERAL_IDLE_SECONDS=30
L=(target/release/queen-load --url "127.0.0.1:$HTTP" --duration "$SECS")
"${L[@]}" e2e --queue durable --connections 4 --consumers 4 --batch 10 --partitions 100 \
  --rate 1000 > "$WORK/durable.log" 2>&1 &
D=$!
"${L[@]}" e2e --queue eph --ephemeral --connections 4 --consumers 4 --batch 10 --partitions 100 \
  --rate 5000 > "$WORK/ephemeral.log" 2>&1 &
E=$!
python3 - "$HTTP" "$SECS" > "$WORK/inboxes.log" 2>&1 <<'PY' &
import http.client, json, sys, time
port, secs = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
end = time.time() + secs
i = bad = 0
while time.time() < end:
    q = f"inbox-{i}"
    c.request("POST", "/api/v1/ephemeral/push",
              json.dumps({"queue": q, "messages": [{"payload": {"reply": i}}]}),
              {"Content-Type": "application/json"})
    r = c.getresponse(); r.read(); bad += r.status != 201
    c.request("GET", f"/api/v1/ephemeral/pop?queue={q}&autoAck=true")
    r = c.getresponse(); body = json.loads(r.read())
    bad += len(body["messages"]) != 1
    i += 1
    time.sleep(0.05)
print(f"inboxes: {i} answered, {bad} failures")
PY
C=$!
for t in $(seq 0 30 "$SECS"); do
  rss=$(awk '/VmRSS/{print $2}' "/proc/$SERVER/status")
  eph=$(curl -s "127.0.0.1:$HTTP/metrics" |
    python3 -c 'import json,sys; m=json.load(sys.stdin)["ephemeral"]; print(m["queues"], "queues,", m["bytes"], "bytes")')
  echo "t=${t}s rss=${rss} KiB ephemeral: $eph"
  sleep 30
done
wait "$D" "$E" "$C"
echo "durable:   $(grep -E '^e2e|push->pop' "$WORK/durable.log" | tr '\n' ' ')"
echo "ephemeral: $(grep -E '^e2e|push->pop' "$WORK/ephemeral.log" | tr '\n' ' ')"
cat "$WORK/inboxes.log"
