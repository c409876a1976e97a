#!/usr/bin/env bash
# Stream cycles (POST /streams/v1/cycle) against plain pushes of the same messages.
#
#   benches/streams.sh [seconds per figure, default 10] [rounds, default 2]
#
# On a fresh, durable PostgreSQL, one server: 10 clients each commit cycles on a source
# partition of their own, every cycle 10 state upserts and 10 messages pushed to a sink queue
# in one transaction (`queen-load cycle`); beside it, 10 clients pushing the same 10 messages
# per request to partitions of their own (`queen-load push`: one transaction each, no state).
# Rounds alternate the two. Prints messages per second and the ratio: what keeping a stream's
# state in the same transaction costs the messages it produces. Needs the PostgreSQL server
# binaries and python3; run as root, PostgreSQL runs as `postgres`.
set -euo pipefail
SECS=${1:-10}
ROUNDS=${2:-2}
cd "$(dirname "$0")/.."
. benches/pg.sh
trap stop_all EXIT
cargo build --release --workspace --bins >/dev/null 2>&1
start_cluster queen-streams
start_queen FILE_BUFFER_DIR="$WORK/buffer"
LOAD=(target/release/queen-load --url "127.0.0.1:$HTTP" --json --duration "$SECS" --connections 10 --batch 10)
cycle() { "${LOAD[@]}" cycle --queue "cycle$1" | load_rate push_msgs_per_sec; }
push() { "${LOAD[@]}" push --queue "push$1" --partitions 10 | load_rate push_msgs_per_sec; }
alternate "$ROUNDS" msg/s cycles cycle pushes push
