"""The WebSocket outbox on its own: bounds in messages and bytes, order, waiting puts."""

from __future__ import annotations

import trio
import trio.testing

from node.rpc.subscriptions import CloseFrame, Outbox


async def test_put_nowait_respects_both_bounds_and_keeps_order() -> None:
    outbox = Outbox(messages_max=3, bytes_max=10)
    assert outbox.put_nowait("aaaa")
    assert outbox.put_nowait("bbbb")
    assert not outbox.put_nowait("ccc")  # 11 bytes > 10
    assert outbox.put_nowait("cc")
    assert not outbox.put_nowait("d")  # 3 messages
    assert outbox.statistics() == {"messages": 3, "bytes": 10}
    assert [await outbox.get() for _ in range(3)] == ["aaaa", "bbbb", "cc"]


async def test_one_message_of_any_size_fits_an_empty_outbox() -> None:
    outbox = Outbox(messages_max=1, bytes_max=4)
    assert outbox.put_nowait("x" * 100)
    assert await outbox.get() == "x" * 100


async def test_final_items_go_past_the_bounds_in_order() -> None:
    outbox = Outbox(messages_max=1, bytes_max=100)
    assert outbox.put_nowait("first")
    outbox.put_final("closing notice")
    outbox.put_final(CloseFrame(1001, "bye"))
    assert [await outbox.get() for _ in range(3)] == [
        "first", "closing notice", CloseFrame(1001, "bye")]


async def test_put_waits_for_room_and_get_waits_for_items() -> None:
    outbox = Outbox(messages_max=1, bytes_max=100)
    outbox.put_nowait("one")
    order: list[str] = []

    async def producer() -> None:
        await outbox.put("two")
        order.append("put two")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        assert order == []  # full: the put waits
        assert await outbox.get() == "one"
        await trio.testing.wait_all_tasks_blocked()
        assert order == ["put two"]
        assert await outbox.get() == "two"
        with trio.move_on_after(0.05):
            await outbox.get()
            raise AssertionError("get returned from an empty outbox")
