"""A full disk stalls the node's writes; it does not stop the node.

When LevelDB cannot write because the disk is full (ENOSPC, or a quota), the write that
failed is retried until space returns: raft persistence (nothing is sent or acknowledged
before its Ready is durable, so the node simply stops voting and acknowledging, and the
rest of the consortium goes on without it) and block application (a failed batch leaves
the chain as it was: the apply path's cache is dropped and the head does not move). The
node keeps serving reads, reports ``disk_full`` in its health, and logs one line when the
stall begins, one a minute while it lasts, one when it ends.

Anything else a write raises is not retried: it propagates as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import trio

from ledger.errors import StorageError

T = TypeVar("T")

# What LevelDB's IO error says when the disk (or the user's quota) is full.
DISK_FULL_MESSAGES = ("No space left on device", "Disk quota exceeded")
RETRY_INTERVAL_S = 1.0
LOG_INTERVAL_S = 60.0


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, StorageError) and any(
        message in str(error) for message in DISK_FULL_MESSAGES)


class DiskFullGuard:
    """Shared by every writer of one node: ``full`` is what health reports."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self.full = False
        self.stalls = 0

    async def run_in_thread(self, function: Callable[[], T], *, what: str) -> T:
        """``trio.to_thread.run_sync(function)``, retried while the disk is full."""
        stalled_at: float | None = None
        logged_at = 0.0
        while True:
            try:
                result = await trio.to_thread.run_sync(function)
            except StorageError as error:
                if not is_disk_full(error):
                    raise
                now = trio.current_time()
                if stalled_at is None:
                    stalled_at = now
                    self.stalls += 1
                    self.full = True
                if now - logged_at >= LOG_INTERVAL_S:
                    logged_at = now
                    self._log.error("disk full: writes stalled, retrying", what=what,
                                    stalled_s=round(now - stalled_at, 1), error=str(error))
                await trio.sleep(RETRY_INTERVAL_S)
                continue
            if stalled_at is not None:
                self.full = False
                self._log.warning("disk space available again: writes resumed", what=what,
                                  stalled_s=round(trio.current_time() - stalled_at, 1))
            return result
