"""Queen's Python client (queen-mq, unchanged) on queen-rs's ephemeral queues: every verb of
`client.ephemeral`, as an application calls it. The client ships no test file for this surface,
so this one is ours; it runs beside the client's own files with the same `client` fixture.

Queue names are unique per test: the suite runs against one server.
"""

import asyncio
import uuid

import pytest

from queen.errors import EphemeralError, EphemeralQueueNotFoundError


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.asyncio
async def test_push_pop_ack_round_trip_keeps_the_payload_as_sent(client):
    eph = client.ephemeral
    q = name("eph-round")
    assert await eph.push(q, [{"payload": {"b": 1, "a": [1, 2.5]}}, "text", {"payload": None}]) == {
        "pushed": 3
    }
    got = await eph.pop(q, batch=10)
    assert got["queue"] == q
    assert [m["payload"] for m in got["messages"]] == [{"b": 1, "a": [1, 2.5]}, "text", None]
    assert [m["attempts"] for m in got["messages"]] == [1, 1, 1]
    assert all(m["partition"] == "Default" for m in got["messages"])
    acked = await eph.ack(q, got["messages"])
    assert [r["outcome"] for r in acked["results"]] == ["acked"] * 3
    again = await eph.pop(q, batch=10)
    assert again == {"queue": q, "messages": []}


@pytest.mark.asyncio
async def test_partitions_are_fifo_and_groups_fan_out(client):
    eph = client.ephemeral
    q = name("eph-groups")
    # Both groups exist before the pushes: each gets everything.
    for g in ("a", "b"):
        assert (await eph.pop(q, group=g))["messages"] == []
    await eph.push(q, [1, 2, 3], partition="p1")
    await eph.push(q, [4, 5], partition="p2")
    for g in ("a", "b"):
        seen = []
        for _ in range(5):
            got = await eph.pop(q, group=g, batch=10)
            seen += [(m["partition"], m["payload"]) for m in got["messages"]]
            await eph.ack(q, got["messages"], group=g)
        assert sorted(seen) == [("p1", 1), ("p1", 2), ("p1", 3), ("p2", 4), ("p2", 5)]
        p1 = [p for part, p in seen if part == "p1"]
        assert p1 == [1, 2, 3], "FIFO within a partition"


@pytest.mark.asyncio
async def test_competing_consumers_of_one_group_share_the_work_exactly(client):
    eph = client.ephemeral
    q = name("eph-compete")
    await eph.push(q, list(range(200)))

    async def consumer():
        mine = []
        while True:
            got = await eph.pop(q, group="workers", batch=7)
            if not got["messages"]:
                return mine
            mine += [m["payload"] for m in got["messages"]]
            await eph.ack(q, got["messages"], group="workers")

    results = await asyncio.gather(*[consumer() for _ in range(5)])
    everything = sorted(p for r in results for p in r)
    assert everything == list(range(200)), "each message once"


@pytest.mark.asyncio
async def test_a_nack_redelivers_with_one_more_attempt(client):
    eph = client.ephemeral
    q = name("eph-nack")
    await eph.push(q, ["job"])
    first = (await eph.pop(q))["messages"]
    res = await eph.ack(q, first, status=False)
    assert res["results"][0]["outcome"] == "redelivered"
    second = (await eph.pop(q))["messages"]
    assert second[0]["attempts"] == 2
    assert second[0]["payload"] == "job"
    assert (await eph.ack(q, second))["results"][0]["outcome"] == "acked"
    # The first delivery's id was settled already.
    assert (await eph.ack(q, first))["results"][0]["outcome"] == "unknown"


@pytest.mark.asyncio
async def test_an_id_of_another_server_run_is_stale(client):
    eph = client.ephemeral
    q = name("eph-stale")
    await eph.push(q, ["x"])
    res = await eph.ack(q, [{"id": "e:1:Default:1"}, {"id": "not-an-id"}])
    assert [r["outcome"] for r in res["results"]] == ["stale", "unknown"]


@pytest.mark.asyncio
async def test_auto_ack_commits_at_delivery(client):
    eph = client.ephemeral
    q = name("eph-auto")
    await eph.push(q, ["once"])
    got = (await eph.pop(q, commit_on_delivery=True))["messages"]
    assert [m["payload"] for m in got] == ["once"]
    assert (await eph.ack(q, got))["results"][0]["outcome"] == "unknown"
    depth = await eph.depth(q)
    assert depth["pending"] == 0


@pytest.mark.asyncio
async def test_a_waiting_pop_is_answered_by_a_push(client):
    eph = client.ephemeral
    q = name("eph-wait")
    waiting = asyncio.ensure_future(eph.pop(q, wait=True, timeout=10000))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await eph.push(q, ["ping"])
    got = await asyncio.wait_for(waiting, 5)
    assert [m["payload"] for m in got["messages"]] == ["ping"]


@pytest.mark.asyncio
async def test_an_empty_waiting_pop_times_out_with_an_empty_list(client):
    got = await client.ephemeral.pop(name("eph-empty"), wait=True, timeout=200)
    assert got["messages"] == []


@pytest.mark.asyncio
async def test_configure_bounds_the_queue_and_the_listing_shows_it(client):
    eph = client.ephemeral
    q = name("eph-bounded")
    with pytest.raises(ValueError):
        await eph.configure(q, ttl_second=1)  # the client refuses unknown options itself
    declared = await eph.configure(q, max_length=2, policy="reject", lease_seconds=10)
    assert declared["options"]["maxLength"] == 2
    await eph.push(q, [1, 2])
    with pytest.raises(EphemeralError) as refused:
        await eph.push(q, [3])
    assert refused.value.code == "queue_full"

    await eph.configure(q, max_length=2, policy="dropOldest")
    await eph.push(q, [3])
    got = await eph.pop(q, batch=10)
    assert [m["payload"] for m in got["messages"]] == [2, 3]

    listed = {row["queue"]: row for row in (await eph.queues())["queues"]}
    assert listed[q]["tier"] == "declared"
    assert listed[q]["drops"]["bounds"] == 1
    assert listed[q]["options"]["policy"] == "dropOldest"


@pytest.mark.asyncio
async def test_a_window_buffer_fattens_a_waiting_pop(client):
    eph = client.ephemeral
    q = name("eph-window")
    await eph.configure(q, window_buffer={"count": 3, "ms": 5000})
    waiting = asyncio.ensure_future(eph.pop(q, wait=True, timeout=10000, batch=10))
    for i in range(3):
        await asyncio.sleep(0.05)
        await eph.push(q, [i])
    got = await asyncio.wait_for(waiting, 5)
    assert [m["payload"] for m in got["messages"]] == [0, 1, 2]


@pytest.mark.asyncio
async def test_depth_reset_and_delete(client):
    eph = client.ephemeral
    q = name("eph-admin")
    with pytest.raises(EphemeralQueueNotFoundError) as missing:
        await eph.depth(q)
    assert missing.value.code == "ephemeral_queue_not_found"

    await eph.push(q, ["a", "b"], partition="p")
    depth = await eph.depth(q)
    assert depth["pending"] == 2
    assert depth["partitions"][0]["partition"] == "p"
    assert (await eph.reset(q))["dropped"] == 2
    assert (await eph.reset(name("eph-never")))["dropped"] == 0

    deleted = await eph.delete(q)
    assert deleted["deleted"] is True and deleted["declared"] is False
    assert (await eph.delete(q))["deleted"] is False


@pytest.mark.asyncio
async def test_a_buffered_push_arrives_once_flushed(client):
    eph = client.ephemeral
    q = name("eph-buffered")
    for i in range(5):
        res = await eph.push(q, [i], buffered={"message_count": 100, "time_millis": 60000})
        assert res == {"buffered": True, "count": 1}
    await eph.flush(q)
    got = await eph.pop(q, batch=10)
    assert [m["payload"] for m in got["messages"]] == [0, 1, 2, 3, 4]
