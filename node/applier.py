"""The applier: the one way into the chain.

Committed raft entries arrive in order on the apply channel; blocks fetched by sync or
received by gossip come through :meth:`Applier.apply_from_peer`. Each is applied off the
Trio thread, one at a time (the apply lock), through the full-disk guard, and then
published as one :class:`node.events.Applied` event. The applier tells raft what it
applied (``note_applied``) and knows nothing else of the node.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from node.chain import AppliedBlock, Chain
from node.diskfull import DiskFullGuard
from node.events import Applied, AppliedEvents
from node.p2p import wire
from node.raft_driver import ApplyItem, RaftDriver, SnapshotToRestore

T = TypeVar("T")

# Skip reasons that are part of normal operation (not worth a warning).
ROUTINE_SKIPS = (None, "no-op", "already applied")


class Applier:
    def __init__(self, *, chain: Chain, disk: DiskFullGuard, events: AppliedEvents,
                 log: Any, metrics: Any, driver: Callable[[], RaftDriver | None],
                 restore: Callable[[SnapshotToRestore], Awaitable[None]]) -> None:
        self._chain = chain
        self._disk = disk
        self._events = events
        self._log = log
        self._metrics = metrics
        self._driver = driver
        self._restore = restore
        self._lock = trio.Lock()
        self.entries_applied = 0
        self.blocks_from_peers = 0

    def statistics(self) -> dict[str, int]:
        return {"entries_applied": self.entries_applied,
                "blocks_from_peers": self.blocks_from_peers}

    async def run(self, receive: trio.MemoryReceiveChannel[ApplyItem], *,
                  task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for item in receive:
            if isinstance(item, SnapshotToRestore):
                await self._restore(item)
                continue
            started = time.perf_counter()
            result = await self.apply_in_thread(self._chain.apply_entry, item)
            if self._metrics is not None:
                self._metrics.observe_stage("apply", time.perf_counter() - started)
            self.entries_applied += 1
            if result.skipped_reason not in ROUTINE_SKIPS and result.applied is None:
                self._log.warning("committed entry skipped", index=result.index,
                                  reason=result.skipped_reason)
            driver = self._driver()
            if driver is not None:
                height, head_hash, _ = self._chain.head()
                driver.note_applied(result.index, functools.partial(_head_bytes, height,
                                                                    head_hash))
            self._events.publish(Applied(result.applied, result.index, result.skipped_reason))
        raise AssertionError("the apply channel should never close")

    async def apply_from_peer(self, data: bytes) -> AppliedBlock:
        """Apply a block a peer sent (sync or gossip). Raises DecodeError or RemoteError
        when the chain refuses it."""
        applied = await self.apply_in_thread(self._chain.apply_synced_block, data)
        self.blocks_from_peers += 1
        self._events.publish(Applied(applied, None))
        return applied

    async def apply_in_thread(self, function: Callable[[Any], T], argument: Any) -> T:
        """Every change to the chain goes through here: one at a time, off the Trio
        thread (raft entries, synced and gossiped blocks may all be arriving at once)."""
        async with self._lock:
            return await self._disk.run_in_thread(lambda: function(argument),
                                                  what="applying a block")


def _head_bytes(height: int, head_hash: bytes) -> bytes:
    """A raft snapshot's data: the chain head it was taken at."""
    return wire.Head(height, head_hash).encode()
