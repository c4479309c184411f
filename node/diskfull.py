"""A full disk stalls the node's writes; it does not stop the node.

Before every LevelDB write that matters (raft persistence, applying a block) the guard
looks at the free space of the data directory's file system; below
``FREE_BYTES_RESERVE`` the write waits, retried each second, until space returns. Raft
persistence stalls before anything of its Ready is sent or applied, so the node simply
stops voting and acknowledging and the rest of the consortium goes on without it; a
stalled block leaves the chain as it was. The node keeps serving reads, reports
``disk_full`` in its health (not ready), and logs one line when the stall begins, one a
minute while it lasts, one when it ends. At start, the node waits for space before it
opens its database.

Why not simply retry a write that failed with ENOSPC: LevelDB may have appended part of
the record to its log, and records written after a torn one are unreadable at the next
open ("Corruption: checksum mismatch", seen in the chaos testnet), so writes acknowledged
after the retry could be lost. A write that fails for want of space anyway (the disk
filled between the check and the write) therefore still stops the node: LevelDB drops a
torn record at the end of its log when it reopens, and nothing after it was written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

T = TypeVar("T")

# Writes wait while the data directory's file system has less free space than this: a
# few blocks, a compaction's output and the raft log's growth in the meantime.
FREE_BYTES_RESERVE = 32 * 1024 * 1024
RETRY_INTERVAL_S = 1.0
LOG_INTERVAL_S = 60.0


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


class DiskFullGuard:
    """Shared by every writer of one node: ``full`` is what health reports."""

    def __init__(self, path: Path, log: Any, *,
                 reserve_bytes: int = FREE_BYTES_RESERVE) -> None:
        self._path = path
        self._log = log
        self._reserve_bytes = reserve_bytes
        self.full = False
        self.stalls = 0

    async def wait_for_space(self, *, what: str) -> None:
        """Return once the file system has the reserve free (at once, nearly always)."""
        stalled_at: float | None = None
        logged_at = 0.0
        while True:
            available = await trio.to_thread.run_sync(free_bytes, self._path)
            if available >= self._reserve_bytes:
                break
            now = trio.current_time()
            if stalled_at is None:
                stalled_at = now
                self.stalls += 1
                self.full = True
            if now - logged_at >= LOG_INTERVAL_S:
                logged_at = now
                self._log.error("disk full: writes stalled until space returns", what=what,
                                free_bytes=available, reserve_bytes=self._reserve_bytes,
                                stalled_s=round(now - stalled_at, 1), path=str(self._path))
            await trio.sleep(RETRY_INTERVAL_S)
        if stalled_at is not None:
            self.full = False
            self._log.warning("disk space available again: writes resumed", what=what,
                              stalled_s=round(trio.current_time() - stalled_at, 1))

    async def run_in_thread(self, function: Callable[[], T], *, what: str) -> T:
        """``trio.to_thread.run_sync(function)`` once the reserve is free."""
        await self.wait_for_space(what=what)
        return await trio.to_thread.run_sync(function)
