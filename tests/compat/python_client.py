"""Queen's published Python client (queen-mq), unchanged, against this server.

Usage: python_client.py http://127.0.0.1:PORT
Exits non-zero (with the reason) on the first thing that does not behave as a Queen user expects.
"""

import asyncio
import sys

from queen import Queen


async def main(url: str) -> None:
    async with Queen(url) as queen:
        # Create a queue with options.
        await queen.queue("compat-tasks").config({"leaseTime": 60, "retryLimit": 2}).create()

        # Push to a partition, then pop with manual ack.
        await queen.queue("compat-tasks").partition("user-1").push(
            [{"data": {"n": 1}}, {"data": {"n": 2}}, {"data": {"n": 3}}]
        )
        messages = await queen.queue("compat-tasks").batch(10).pop()
        got = [m["data"]["n"] for m in messages]
        assert got == [1, 2, 3], f"pop returned {got}"
        for m in messages:
            res = await queen.ack(m, True)
            assert res.get("success", True) is not False, f"ack failed: {res}"
        again = await queen.queue("compat-tasks").batch(10).wait(False).pop()
        assert again == [], f"acked messages came back: {again}"

        # consume() with a handler: auto-ack on success, stops at the limit.
        await queen.queue("compat-work").push([{"data": {"i": i}} for i in range(5)])
        seen = []

        async def handler(batch):
            # The client hands over a list when the broker sizes the batch (autopilot).
            for message in batch if isinstance(batch, list) else [batch]:
                seen.append(message["data"]["i"])

        await queen.queue("compat-work").limit(5).consume(handler)
        assert sorted(seen) == [0, 1, 2, 3, 4], f"consume saw {seen}"

        # Consumer groups: each group reads every message.
        await queen.queue("compat-events").push([{"data": {"e": "a"}}, {"data": {"e": "b"}}])
        for group in ("billing", "analytics"):
            msgs = await queen.queue("compat-events").group(group).batch(10).pop()
            got = [m["data"]["e"] for m in msgs]
            assert got == ["a", "b"], f"group {group} got {got}"
            for m in msgs:
                await queen.ack(m, True, {"group": group})

        # Transaction: ack the input and push the output atomically.
        await queen.queue("compat-in").push([{"data": {"job": 7}}])
        msgs = await queen.queue("compat-in").pop()
        assert len(msgs) == 1, f"compat-in pop: {msgs}"
        result = await (
            queen.transaction().ack(msgs[0]).queue("compat-out").push([{"data": {"done": 7}}]).commit()
        )
        assert result.get("success") is True, f"transaction: {result}"
        out = await queen.queue("compat-out").pop()
        assert [m["data"] for m in out] == [{"done": 7}], f"compat-out: {out}"
        assert await queen.queue("compat-in").wait(False).pop() == [], "the input was acked by the transaction"

        # Dead letters, message inspection and retry, through the client's builders and admin.
        await queen.queue("compat-dlq").config({"retryLimit": 0}).create()
        await queen.queue("compat-dlq").push([{"data": {"bad": True}}])
        msgs = await queen.queue("compat-dlq").pop()
        await queen.ack(msgs[0], "dlq")
        dlq = await queen.queue("compat-dlq").dlq().get()
        assert dlq["total"] == 1, f"dlq: {dlq}"
        dead = dlq["messages"][0]
        assert dead["data"] == {"bad": True}, f"dlq message: {dead}"
        pid, tx = dead["partitionId"], dead["transactionId"]
        listed = await queen.admin.list_messages(queue="compat-dlq")
        assert [m["status"] for m in listed["messages"]] == ["dead_letter"], f"messages: {listed}"
        detail = await queen.admin.get_message(pid, tx)
        assert detail["payload"] == {"bad": True}, f"message detail: {detail}"
        await queen.admin.retry_message(pid, tx)
        again = await queen.queue("compat-dlq").pop()
        assert [m["data"] for m in again] == [{"bad": True}], f"retried message: {again}"
        await queen.ack(again[0], True)

        # Traces recorded by a consumer's message.trace(), read back through admin.
        await queen.queue("compat-traced").push([{"data": {"order": 42}}])

        trace_results = []

        async def traced(message):
            for m in message if isinstance(message, list) else [message]:
                # The client attaches trace() to each consumed message as a key.
                trace_results.append(await m["trace"]({"data": {"step": "charged"}, "traceName": "order-42"}))

        await queen.queue("compat-traced").limit(1).consume(traced)
        assert [r.get("success") for r in trace_results] == [True], f"trace(): {trace_results}"
        by_name = await queen.admin.get_traces_by_name("order-42")
        assert by_name["total"] == 1, f"traces by name: {by_name}"
        assert by_name["traces"][0]["data"] == {"step": "charged"}, f"trace: {by_name}"
        names = await queen.admin.get_trace_names()
        assert "order-42" in [n["trace_name"] for n in names["trace_names"]], f"names: {names}"

        # Consumer groups: listed, sought to the end, removed.
        groups = await queen.admin.list_consumer_groups()
        assert {"billing", "analytics"} <= {g["name"] for g in groups}, f"groups: {groups}"
        await queen.queue("compat-events").push([{"data": {"e": "c"}}])
        await queen.admin.seek_consumer_group("billing", "compat-events", {"toEnd": True})
        assert await queen.queue("compat-events").group("billing").wait(False).pop() == [], "seek to end"
        await queen.delete_consumer_group("analytics")
        groups = await queen.admin.list_consumer_groups()
        assert "analytics" not in {g["name"] for g in groups}, f"after delete: {groups}"
        status = await queen.admin.get_status()
        assert status["queues"] >= 7, f"status: {status}"

    print("python client compatibility: ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
