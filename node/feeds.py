"""Feeds: applied blocks and tx results to whoever subscribed (the RPC's WebSocket
subscriptions), each through a bounded channel; a subscriber that falls
SUBSCRIBER_BUFFER_EVENTS behind is dropped, never waited for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import trio

from ledger.block import Block
from node.api import TxResultEvent
from node.events import Applied

# Buffered events per subscriber before it is dropped as too slow.
SUBSCRIBER_BUFFER_EVENTS = 10_000

E = TypeVar("E")


class Feeds:
    def __init__(self) -> None:
        self._blocks: list[trio.MemorySendChannel[Block]] = []
        self._results: list[trio.MemorySendChannel[TxResultEvent]] = []
        self.subscribers_dropped = 0

    def subscribe_blocks(self) -> AsyncIterator[Block]:
        send, receive = trio.open_memory_channel[Block](SUBSCRIBER_BUFFER_EVENTS)
        self._blocks.append(send)
        return _iterate(receive)

    def subscribe_tx_results(self) -> AsyncIterator[TxResultEvent]:
        send, receive = trio.open_memory_channel[TxResultEvent](SUBSCRIBER_BUFFER_EVENTS)
        self._results.append(send)
        return _iterate(receive)

    def statistics(self) -> dict[str, int]:
        return {"block_subscribers": len(self._blocks),
                "result_subscribers": len(self._results),
                "subscribers_dropped": self.subscribers_dropped}

    def on_applied(self, event: Applied) -> None:
        applied = event.applied
        if applied is None:
            return
        block = applied.block
        self._send_all(self._blocks, block)
        if self._results:
            for position, (tx_id, code) in enumerate(zip(applied.tx_ids, applied.codes,
                                                         strict=True)):
                self.send_result(TxResultEvent(tx_id, block.header.height, position, code))

    def send_result(self, event: TxResultEvent) -> None:
        self._send_all(self._results, event)

    def _send_all(self, channels: list[trio.MemorySendChannel[E]], item: E) -> None:
        for channel in list(channels):
            try:
                channel.send_nowait(item)
            except (trio.WouldBlock, trio.BrokenResourceError):
                channels.remove(channel)
                channel.close()
                self.subscribers_dropped += 1


async def _iterate(receive: trio.MemoryReceiveChannel[Any]) -> AsyncIterator[Any]:
    async with receive:
        async for item in receive:
            yield item
