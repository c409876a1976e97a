#!/usr/bin/env bash
# Does the hot path's cost grow with stored data? A fixed offered push rate with consumers for a
# long run on a fresh, durable PostgreSQL, with retention off (as by default), so completed
# messages accumulate; every minute it prints what queen-load saw in that minute (pushed,
# consumed, backlog, push->pop p50/p99/max) beside the CPU time PostgreSQL spent per 1,000
# messages pushed in it and the database size.
#
#   benches/storage-soak.sh [minutes, default 30] [rate msg/s, default 2000] [extra queen-load args]
#
# Shape (the operator's run this bench answers): 4 producer connections pushing 20 messages per
# request over 100 partitions, 4 consumers popping up to 50 with long polls and batch-acking
# with the lease; extra args override any of these. Offer more than the consumers can take (a
# higher rate, or fewer consumers via the extra args) to see whether any message waits far longer
# than the median: the table's "oldest waiting" is the age of the oldest message not yet
# delivered, sampled every 5 s, against the median push->pop wait of the run (fairness).
# With READS=N in the environment, a dashboard reads the server's analytics and listing routes
# beside the load (N requests a second, one route after another, as the console does): each
# minute's row then shows the reads' p99 and the run ends with every route's p50 / p99 / max and
# the count of answers other than 200.
# Needs the PostgreSQL server binaries and python3; run as root, PostgreSQL runs as `postgres`.
set -euo pipefail
MINUTES=${1:-30}
RATE=${2:-2000}
shift $(( $# > 2 ? 2 : $# ))
cd "$(dirname "$0")/.."
. benches/pg.sh
cleanup() {
  [ -n "${READER:-}" ] && kill "$READER" 2>/dev/null || true
  [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true
  [ -n "${OLDEST:-}" ] && kill "$OLDEST" 2>/dev/null || true
  stop_all
}
trap cleanup EXIT

cargo build --release --workspace --bins >/dev/null 2>&1
start_cluster queen-storage-soak
PM=$(head -1 "$WORK/pg/postmaster.pid")
start_queen

# CPU seconds of the whole cluster (postmaster and every backend, live or exited: the
# postmaster's cumulative children times count the exited ones), and the database size.
cpu() {
  python3 - "$PM" <<'PY'
import os, sys
pm = sys.argv[1]
tck = os.sysconf("SC_CLK_TCK")
def times(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12]), int(f[13]) + int(f[14])
own, children = times(pm)
total = own + children
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            if f[1] == pm:
                total += times(p)[0]
        except (OSError, IndexError):
            pass
print(total / tck)
PY
}
PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qAt -F ' ' postgres)
# One line of the CPU file: time, cluster CPU seconds, database MiB.
sample() { echo "$(date +%s) $(cpu) $("${PSQL[@]}" -c "select pg_database_size('postgres')/1048576")"; }
(while true; do
   sample
   sleep 60
 done) > "$WORK/cpu" &
SAMPLER=$!
# Fairness: every 5 s, the age of the oldest message still waiting for its first delivery (the
# message after the queue-mode cursor of each partition; a message under a live lease counts as
# waiting until acked, a bound above) and how many partitions have one waiting over 60 s.
(while true; do
   echo "$(date +%s) $("${PSQL[@]}" -c "
     SELECT coalesce(round(extract(epoch FROM max(now() - m.created_at))::numeric, 2), 0),
            count(*) FILTER (WHERE m.created_at < now() - interval '60 s')
       FROM queen.partitions p
       JOIN queen.queues q ON q.id = p.queue_id AND q.name = 'soak'
       JOIN queen.cursors c ON c.partition_id = p.id AND c.consumer_group = '__QUEUE_MODE__'
       JOIN queen.messages m ON m.pnum = p.num AND m.position = c.position + 1")"
   sleep 5
 done) > "$WORK/oldest" &
OLDEST=$!

# The dashboard (READS=N): one line per read: time, route, status, milliseconds.
if [ "${READS:-0}" -gt 0 ]; then
  python3 - "$HTTP" "$READS" > "$WORK/reads" <<'PY' &
import http.client, sys, time
port, rate = int(sys.argv[1]), float(sys.argv[2])
routes = ["/api/v1/resources/overview", "/api/v1/resources/queues", "/api/v1/resources/queues/soak",
          "/api/v1/status", "/api/v1/status/analytics", "/api/v1/status/queues",
          "/api/v1/status/queues/soak", "/api/v1/status/queues/soak/messages?limit=50",
          "/api/v1/messages?queue=soak&limit=50", "/api/v1/messages?queue=soak&status=pending&limit=50",
          "/api/v1/consumer-groups", "/api/v1/dlq?queue=soak&limit=50", "/api/v1/status/buffers",
          "/api/v1/resources/namespaces", "/api/v1/resources/tasks", "/api/v1/traces/names"]
time.sleep(2)  # the queue is created by the first push
conn, i, due = None, 0, time.monotonic()
while True:
    route = routes[i % len(routes)]
    i += 1
    t0 = time.monotonic()
    try:
        conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", route)
        r = conn.getresponse()
        r.read()
        status = r.status
    except Exception:
        conn, status = None, 0
    print(f"{time.time():.3f} {route} {status} {(time.monotonic() - t0) * 1000:.2f}", flush=True)
    due += 1 / rate
    time.sleep(max(0.0, due - time.monotonic()))
PY
  READER=$!
fi

target/release/queen-load e2e --url "127.0.0.1:$HTTP" --queue soak --rate "$RATE" \
  --connections 4 --consumers 4 --batch 20 --pop-batch 50 --partitions 100 \
  --duration $((MINUTES * 60)) --report-every 60 --json "$@" > "$WORK/load"
kill "$SAMPLER" "$OLDEST" ${READER:-} 2>/dev/null || true
sample >> "$WORK/cpu"
touch "$WORK/reads"

python3 - "$WORK/load" "$WORK/cpu" "$WORK/oldest" "$WORK/reads" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
minutes = [l for l in lines if "at_s" in l]
total = [l for l in lines if "runs" in l][-1]["runs"][0][0]
cpu = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 3]
oldest = [tuple(map(float, l.split())) for l in open(sys.argv[3]) if len(l.split()) == 3]
start = cpu[0][0]
def waiting(i):
    """The oldest waiting message's age (s) and partitions waiting > 60 s, worst in minute i."""
    w = [o for o in oldest if i * 60 <= o[0] - start < (i + 1) * 60]
    return (max(o[1] for o in w), int(max(o[2] for o in w))) if w else ("-", "-")
reads = []
for l in open(sys.argv[4]):
    f = l.split()
    if len(f) == 4:
        reads.append((float(f[0]), f[1], int(f[2]), float(f[3])))
def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))] if xs else "-"
def reads_p99(i):
    return p99([r[3] for r in reads if i * 60 <= r[0] - start < (i + 1) * 60])
print("| minute | pushed | consumed | backlog | push→pop p50 ms | p99 ms | max ms | oldest waiting s | partitions waiting > 60 s | PG CPU s / 1,000 msgs | DB MiB | reads p99 ms |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
per = []
for i, m in enumerate(minutes):
    lat = m["e2e_latency"] or {}
    c = (cpu[i + 1][1] - cpu[i][1]) / max(m["pushed"], 1) * 1000 if i + 1 < len(cpu) else None
    per.append(c)
    size = int(cpu[i + 1][2]) if i + 1 < len(cpu) else "-"
    old, starved = waiting(i)
    print(f"| {i + 1} | {m['pushed']} | {m['consumed']} | {m['backlog']} | {lat.get('p50_ms', '-')} | {lat.get('p99_ms', '-')} | {lat.get('max_ms', '-')} | {old} | {starved} | {c if c is None else round(c, 3)} | {size} | {reads_p99(i)} |")
known = [c for c in per if c is not None]
if len(known) >= 10:
    first, last = sum(known[:5]) / 5, sum(known[-5:]) / 5
    print(f"\nPostgreSQL CPU per 1,000 messages: first 5 minutes {first:.3f} s, last 5 {last:.3f} s: {last / first:.2f}x")
lat = total["e2e_latency"] or {}
if oldest and lat.get("p50_ms"):
    worst = max(o[1] for o in oldest)
    print(f"oldest waiting message over the run: {worst:.2f} s = {worst * 1000 / lat['p50_ms']:.1f}x the median push->pop wait ({lat['p50_ms']} ms)")
print(f"whole run: pushed {total['pushed']}, consumed {total['consumed']}, errors {total['errors']}, duplicates {total['duplicates']}, push->pop p50 {lat.get('p50_ms')} ms, p99.9 {lat.get('p999_ms')} ms")
if reads:
    print(f"\nreads: {len(reads)}, answers other than 200: {sum(1 for r in reads if r[2] != 200)}")
    print("| route | reads | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for route in dict.fromkeys(r[1] for r in reads):
        ms = [r[3] for r in reads if r[1] == route]
        print(f"| `{route}` | {len(ms)} | {statistics.median(ms):.1f} | {p99(ms):.1f} | {max(ms):.1f} |")
PY
