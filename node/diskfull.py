"""A full disk stalls the node's writes; it does not stop the node.

Before every LevelDB write that matters (raft persistence, applying a block, snapshots)
the guard looks at the free space of the data directory's file system; below
``FREE_BYTES_RESERVE`` the write waits, retried each second, until space returns. Raft
persistence stalls before anything of its Ready is sent or applied, so the node simply
stops voting and acknowledging and the rest of the consortium goes on without it; a
stalled block leaves the chain as it was. The node keeps serving reads, reports
``disk_full`` in its health (not ready), and logs one line when the stall begins, one a
minute while it lasts, one when it ends. At start, the node waits for space before it
opens its database.

The disk can still fill between the check and the write, or under one of LevelDB's
background flushes (another process filling the disk at once). Such a write fails with
:class:`~storage.errors.DiskFullError`, and the handle takes no more writes: LevelDB keeps
a failed flush as a sticky error, and a record appended after a torn one would be
unreadable at the next open ("Corruption: checksum mismatch", seen in the chaos testnet).
The guard then recovers the way a restart would, without one: it stops new writes, lets
those in flight finish, waits for space, reopens the database (LevelDB replays its log up
to the last whole record, so every write that returned is kept and the failed one is
whole or absent) and retries the failed write, which is idempotent (raft persistence of
the same Ready, an apply of a block that is either applied or not).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from storage.errors import DiskFullError

T = TypeVar("T")

# Writes wait while the data directory's file system has less free space than this: a
# few blocks, a compaction's output and the raft log's growth in the meantime.
FREE_BYTES_RESERVE = 32 * 1024 * 1024
RETRY_INTERVAL_S = 1.0
LOG_INTERVAL_S = 60.0


class _NoSpace:
    """What a write's thread answers when the reserve was not free (the write not done)."""


NO_SPACE = _NoSpace()


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


class DiskFullGuard:
    """Shared by every writer of one node: ``full`` is what health reports.

    ``reopen`` (set once the database is open) closes and opens it again; it runs on the
    Trio thread, so the event loop's own reads (the raft log) never see it half done."""

    def __init__(self, path: Path, log: Any, *,
                 reserve_bytes: int = FREE_BYTES_RESERVE) -> None:
        self._path = path
        self._log = log
        self._reserve_bytes = reserve_bytes
        self.full = False
        self.stalls = 0
        self.reopens = 0
        self.reopen: Callable[[], None] | None = None
        self._writes_in_flight = 0
        self._writes_done = trio.Event()
        self._reopen_needed = False
        self._recovery_lock = trio.Lock()

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

    def _call_with_space(self, function: Callable[[], T]) -> T | _NoSpace:
        """In the worker thread: ``function()`` if the reserve is free, else NO_SPACE.
        The check rides the write's own thread hop (one per write, not two: the hop
        costs the event loop more than the statvfs)."""
        if free_bytes(self._path) < self._reserve_bytes:
            return NO_SPACE
        return function()

    async def run_in_thread(self, function: Callable[[], T], *, what: str) -> T:
        """``trio.to_thread.run_sync(function)`` once the reserve is free; after a failed
        write for want of space, reopen the database and run ``function`` again."""
        while True:
            while self._reopen_needed:
                await self._recover(what=what)
            if self.full:  # stalled already: wait here, not one thread hop per retry
                await self.wait_for_space(what=what)
                continue
            self._writes_in_flight += 1
            result: T | _NoSpace = NO_SPACE
            try:
                result = await trio.to_thread.run_sync(self._call_with_space, function)
            except DiskFullError as error:
                if self.reopen is None:
                    raise
                if not self._reopen_needed:
                    self._reopen_needed = True
                    self.full = True
                    self._log.error("disk full: a write failed, reopening the database "
                                    "once space returns", what=what, error=str(error))
                continue
            finally:
                self._writes_in_flight -= 1
                if self._writes_in_flight == 0:
                    self._writes_done.set()
                    self._writes_done = trio.Event()
            if isinstance(result, _NoSpace):
                await self.wait_for_space(what=what)  # logs the stall, waits it out
                continue
            return result

    async def _recover(self, *, what: str) -> None:
        async with self._recovery_lock:
            if not self._reopen_needed:
                return  # another writer recovered meanwhile
            while self._writes_in_flight:
                await self._writes_done.wait()
            await self.wait_for_space(what=what)
            assert self.reopen is not None
            started = trio.current_time()
            self.reopen()  # on the Trio thread: see the class docstring
            self.reopens += 1
            self._reopen_needed = False
            self.full = False
            self._log.warning("database reopened after a failed write; writes resumed",
                              what=what, reopen_s=round(trio.current_time() - started, 3))
