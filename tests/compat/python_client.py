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

    print("python client compatibility: ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
