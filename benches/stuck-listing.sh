#!/usr/bin/env bash
# The message listing when one consumer is stuck: does a status page cost what it shows, or
# what lies beside it?
#
#   benches/stuck-listing.sh [calls per route, default 20]
#
# On a fresh, durable PostgreSQL: queue `stuck` gets 100 partitions by a push, then, written
# straight into its tables (a pushed and consumed million would take minutes here), 20,000
# messages two hours old in partition p0 that nobody has consumed, and 10,000 a partition over
# the last hour in the 99 others, every one consumed. Then each route is called in turn, the
# calls alternating: the pending page (p0's newest), the completed page, the unfiltered page
# (the newest window: the ceiling a status page can hope for) and the dead-letter page (none).
# Prints each route's median and worst time. Needs the PostgreSQL server binaries, curl and
# python3; run as root, PostgreSQL runs as `postgres`.
set -euo pipefail
CALLS=${1:-20}
cd "$(dirname "$0")/.."
. benches/pg.sh
trap stop_all EXIT
cargo build --release --workspace --bins >/dev/null 2>&1
start_cluster queen-stuck
start_queen FILE_BUFFER_DIR="$WORK/buffer"
PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qAt -v ON_ERROR_STOP=1 postgres)
python3 - "$HTTP" <<'PY'
import json, sys, urllib.request
items = [{"queue": "stuck", "partition": f"p{i}", "payload": i} for i in range(100)]
r = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/api/v1/push",
                           data=json.dumps({"items": items}).encode(),
                           headers={"content-type": "application/json"})
assert urllib.request.urlopen(r).status == 201
PY
"${PSQL[@]}" <<'SQL'
INSERT INTO queen.messages (pnum, position, id, txuuid, created_at, payload)
SELECT p.num, 1 + g, gen_random_uuid(), gen_random_uuid(),
       now() - interval '2 hours' + g * interval '1 ms', '{"stuck":true}'
  FROM queen.partitions p, generate_series(1, 20000) g WHERE p.name = 'p0';
INSERT INTO queen.messages (pnum, position, id, txuuid, created_at, payload)
SELECT p.num, 1 + g, gen_random_uuid(), gen_random_uuid(),
       now() - interval '1 hour' + g * interval '360 ms', '{"done":true}'
  FROM queen.partitions p, generate_series(1, 10000) g WHERE p.name <> 'p0';
UPDATE queen.partitions SET last_position = CASE name WHEN 'p0' THEN 20001 ELSE 10001 END,
                            created_at = now() - interval '3 hours';
UPDATE queen.cursors c SET position = 10001
  FROM queen.partitions p WHERE p.id = c.partition_id AND p.name <> 'p0';
VACUUM ANALYZE;
SQL
python3 - "$HTTP" "$CALLS" <<'PY'
import statistics, sys, time, urllib.request
port, calls = sys.argv[1], int(sys.argv[2])
routes = {"pending": "&status=pending", "completed": "&status=completed", "unfiltered": "",
          "dead_letter": "&status=dead_letter"}
times = {k: [] for k in routes}
for _ in range(calls):
    for name, q in routes.items():
        t = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/messages?queue=stuck&limit=50{q}",
                                    timeout=60) as r:
            assert r.status == 200, (name, r.status)
            r.read()
        times[name].append((time.perf_counter() - t) * 1000)
for name, ts in times.items():
    print(f"{name:12} p50 {statistics.median(ts):8.1f} ms   max {max(ts):8.1f} ms   ({len(ts)} calls)")
PY
