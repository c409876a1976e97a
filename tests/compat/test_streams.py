"""Queen's Python client (queen-mq, unchanged) on queen-rs's stream processing: `Stream`
pipelines run by the client's own runner against `/streams/v1/…`, as an application runs them.
The client ships no test file for this surface, so this one is ours; it runs beside the
client's own files with the same `client` fixture.

What is checked is what a stream promises: every source message is processed once (sink
counts and sums are exact), window state lives on the server and is gone once its window is
emitted, a changed operator chain is refused unless reset, and a cycle whose lease is gone
changes nothing. Queue and query names are unique per test: the suite runs against one server.
"""

import asyncio
import os
import time
import uuid

import httpx
import pytest

from queen.streams import Stream
from queen.streams.runtime.register import StreamsConfigHashMismatch

URL = os.environ["QUEEN_URL"]


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def drain(client, queue, want, timeout=30.0):
    """Pops `queue` (acking) until `want` messages came or the time is up; returns them."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        msgs = await client.queue(queue).batch(100).wait(True).timeout_millis(500).pop()
        for m in msgs:
            got.append(m)
            await client.ack(m, True)
    return got


async def settle(client, queue, timeout=3.0):
    """Pops `queue` for `timeout` more and returns what arrived (expected: nothing)."""
    return await drain(client, queue, 10**9, timeout)


async def post(path, body):
    async with httpx.AsyncClient(base_url=URL) as h:
        r = await h.post(path, json=body)
        return r.status_code, r.json()


@pytest.mark.asyncio
async def test_map_to_sink_processes_every_message_once(client):
    src, sink, query = name("st-src"), name("st-sink"), name("st-map")

    async def push(ns):
        for p in ("p0", "p1", "p2"):
            await client.queue(src).partition(p).push(
                [{"data": {"n": i}} for i in ns if f"p{i % 3}" == p]
            )

    await push(range(30))
    runner = await (
        Stream.from_(client.queue(src))
        .map(lambda m: {"n": m["data"]["n"], "double": m["data"]["n"] * 2})
        .to(client.queue(sink))
        .run(query, url=URL, batch_size=7, max_wait_millis=200)
    )
    try:
        await push(range(30, 60))
        out = await drain(client, sink, 60)
        out += await settle(client, sink)
    finally:
        await runner.stop()
    assert sorted(m["data"]["n"] for m in out) == list(range(60))
    assert all(m["data"]["double"] == 2 * m["data"]["n"] for m in out)
    # Output keeps each source partition's order (the sink partition is the source's name).
    for p in ("p0", "p1", "p2"):
        ns = [m["data"]["n"] for m in out if m["partition"] == p]
        assert ns == sorted(ns) and len(ns) == 20
    assert runner.metrics()["errorsTotal"] == 0
    # The source is consumed: the stream's group has committed every partition to its end and
    # holds no lease (the figures come from a snapshot at most about a second old).
    group = f"streams.{query}"
    deadline = time.monotonic() + 10.0
    while True:
        async with httpx.AsyncClient(base_url=URL) as h:
            parts = (await h.get(f"/api/v1/consumer-groups/{group}")).json().get(src, {})
        parts = parts.get("partitions", [])
        done = len(parts) == 3 and all(
            p["offsetLag"] == 0 and not p["leaseActive"] for p in parts
        )
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert done, parts


@pytest.mark.asyncio
async def test_tumbling_window_state_lives_on_the_server_and_is_emitted_once(client):
    src, sink, query = name("st-wsrc"), name("st-wsink"), name("st-win")
    await client.queue(src).partition("acct-1").push([{"data": {"v": i}} for i in range(1, 41)])
    runner = await (
        Stream.from_(client.queue(src))
        .window_tumbling(seconds=0.5, idle_flush_ms=100)
        .reduce(lambda acc, m: acc + m["v"], 0)
        .to(client.queue(sink))
        .run(query, url=URL, batch_size=9, max_wait_millis=200)
    )
    try:
        out = await drain(client, sink, 1, timeout=30)
        # Every window that held messages is emitted by the idle flush within a second or so.
        out += await settle(client, sink, timeout=3.0)
    finally:
        await runner.stop()
    sums = [m["data"]["value"] if "value" in m["data"] else m["data"] for m in out]
    assert sum(sums) == sum(range(1, 41)), out
    assert runner.metrics()["errorsTotal"] == 0
    # The emitted windows' state rows are gone from the server.
    qid = runner.metrics()["serverQueryId"]
    pid = (await client.queue(src).group("inspect").batch(1).pop())[0]["partitionId"]
    status, body = await post("/streams/v1/state/get", {"query_id": qid, "partition_id": pid})
    assert status == 200 and body["success"] is True
    assert body["rows"] == []


@pytest.mark.asyncio
async def test_a_changed_operator_chain_is_refused_unless_reset(client):
    src, query = name("st-hash"), name("st-hash-q")
    await client.queue(src).push([{"data": {"x": 1}}])
    first = await Stream.from_(client.queue(src)).map(lambda m: m).foreach(lambda v, ctx=None: None).run(
        query, url=URL, max_wait_millis=100
    )
    await first.stop()
    changed = Stream.from_(client.queue(src)).filter(lambda m: True).foreach(lambda v, ctx=None: None)
    with pytest.raises(StreamsConfigHashMismatch):
        await changed.run(query, url=URL, max_wait_millis=100)
    again = await changed.run(query, url=URL, max_wait_millis=100, reset=True)
    await again.stop()


@pytest.mark.asyncio
async def test_state_operations_and_cycles_over_http(client):
    """The three routes as the client's runtime calls them, including a cycle that must not
    commit (its lease is gone) and input the server refuses."""
    src, query = name("st-raw"), name("st-raw-q")
    await client.queue(src).partition("k").push([{"data": {"i": i}} for i in range(3)])
    status, reg = await post(
        "/streams/v1/queries", {"name": query, "source_queue": src, "config_hash": "h1"}
    )
    assert status == 200 and reg["fresh"] is True
    qid = reg["query_id"]
    group = f"streams.{query}"
    msgs = await client.queue(src).group(group).batch(3).pop()
    assert len(msgs) == 3
    pid, lease = msgs[0]["partitionId"], msgs[0]["leaseId"]
    ok_ack = {"transactionId": msgs[-1]["transactionId"], "leaseId": lease, "status": "completed", "count": 3}

    # A cycle naming a lease that is not live changes nothing.
    status, res = await post("/streams/v1/cycle", {
        "query_id": qid, "partition_id": pid, "consumer_group": group,
        "state_ops": [{"type": "upsert", "key": "w\u001f1", "value": {"acc": 1, "windowEnd": 10}}],
        "push_items": [{"queue": name("st-never"), "payload": {"x": 1}}],
        "ack": {**ok_ack, "leaseId": str(uuid.uuid4())},
    })
    assert status == 200 and res["success"] is False and res["error"]
    status, got = await post("/streams/v1/state/get", {"query_id": qid, "partition_id": pid})
    assert got["rows"] == []

    # The same cycle with the live lease commits state, push and ack together.
    sink = name("st-raw-sink")
    status, res = await post("/streams/v1/cycle", {
        "query_id": qid, "partition_id": pid, "consumer_group": group,
        "state_ops": [
            {"type": "upsert", "key": "w\u001f1", "value": {"acc": 1, "windowEnd": 10}},
            {"type": "upsert", "key": "w\u001f2", "value": {"acc": 2, "windowEnd": 20}},
            {"type": "upsert", "key": "other", "value": [1, "two"]},
        ],
        "push_items": [{"queue": sink, "partition": "k", "payload": {"out": 1}}],
        "ack": ok_ack,
    })
    assert status == 200 and res["success"] is True, res
    assert res["state_ops_applied"] == 3
    assert res["ack_result"]["success"] is True and res["ack_result"]["count"] == 3
    assert res["ack_result"]["lease_released"] is True
    assert [p["status"] for p in res["push_results"]] == ["queued"]
    assert await client.queue(src).group(group).batch(3).wait(False).pop() == []
    assert [m["data"] for m in await drain(client, sink, 1)] == [{"out": 1}]

    async def rows(**filters):
        status, body = await post(
            "/streams/v1/state/get", {"query_id": qid, "partition_id": pid, **filters}
        )
        assert status == 200, body
        return {r["key"]: r["value"] for r in body["rows"]}

    assert await rows() == {
        "other": [1, "two"], "w\u001f1": {"acc": 1, "windowEnd": 10},
        "w\u001f2": {"acc": 2, "windowEnd": 20},
    }
    assert list(await rows(keys=["other", "missing"])) == ["other"]
    assert list(await rows(key_prefix="w\u001f")) == ["w\u001f1", "w\u001f2"]
    assert list(await rows(key_prefix="w\u001f", ripe_at_or_before=15)) == ["w\u001f1"]

    # An idle-flush cycle (no ack): a delete and an upsert.
    status, res = await post("/streams/v1/cycle", {
        "query_id": qid, "partition_id": pid, "consumer_group": group,
        "state_ops": [{"type": "delete", "key": "w\u001f1"}, {"type": "upsert", "key": "other", "value": 3}],
        "push_items": [], "ack": None,
    })
    assert res["success"] is True and res["ack_result"] is None
    assert await rows() == {"other": 3, "w\u001f2": {"acc": 2, "windowEnd": 20}}

    # Refused input: a clear 400 (or 404 for a query the server does not know), never a 500.
    for body in [
        {"query_id": qid, "partition_id": "nope"},
        {"query_id": qid, "partition_id": pid, "state_ops": [{"type": "merge", "key": "a"}]},
        {"query_id": qid, "partition_id": pid, "state_ops": [{"type": "upsert", "key": ""}]},
        {"query_id": qid, "partition_id": pid, "state_ops": [{"type": "upsert", "key": "a", "value": "\u0000"}]},
        {"query_id": qid, "partition_id": pid, "ack": {"status": "completed"}},
        {"query_id": qid, "partition_id": pid, "ack": "yes"},
    ]:
        status, res = await post("/streams/v1/cycle", body)
        assert status == 400 and res["code"], (body, res)
    status, res = await post("/streams/v1/cycle", {"query_id": str(uuid.uuid4()), "partition_id": pid})
    assert status == 200 and res["success"] is False
    status, res = await post("/streams/v1/queries", {"name": query, "source_queue": src})
    assert status == 400


@pytest.mark.asyncio
async def test_a_stream_groups_expired_lease_is_not_a_failed_delivery(client):
    """A gate holds messages back by letting their lease run out (for a batch it denies whole
    the client sends nothing). For a registered query's group (`streams.<name>`) an expiry
    gives the batch back without counting against retryLimit, as in Queen; for any other
    group each expiry is a failed delivery, and past retryLimit the message leaves."""
    src, query = name("st-gate"), name("st-gate-q")
    status, _ = await post("/api/v1/configure", {"queue": src, "options": {"retryLimit": 1}})
    assert status in (200, 201)
    await client.queue(src).push([{"data": {"held": True}}])
    status, _ = await post(
        "/streams/v1/queries", {"name": query, "source_queue": src, "config_hash": "g"}
    )
    assert status == 200

    async def deliveries(group, rounds=4):
        """Pops with a 1 s lease and never acks; counts the deliveries until `rounds` or until
        the message stops coming back (none within 5 s of its lease's end)."""
        n = 0
        async with httpx.AsyncClient(base_url=URL) as h:
            while n < rounds:
                deadline = time.monotonic() + 5.0
                got = []
                while not got and time.monotonic() < deadline:
                    r = await h.get(
                        f"/api/v1/pop/queue/{src}",
                        params={"batch": 1, "consumerGroup": group, "leaseSeconds": 1},
                    )
                    got = r.json().get("messages", []) if r.status_code == 200 else []
                    if not got:
                        await asyncio.sleep(0.2)
                if not got:
                    return n
                n += 1
        return n

    assert await deliveries(f"streams.{query}") == 4
    # Another group: the first expiry is within retryLimit (1), the second drops the message.
    assert await deliveries("not-a-stream", rounds=3) == 2
