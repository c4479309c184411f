"""What the node says of its own health: ``/readyz``, ``/healthz`` and ``node_health``.

Progress is any applied block, however it came (raft, block sync, block gossip). A node
knows how far it is *behind*: raft entries committed but not applied (validators), or
blocks below the highest head a peer on its chain answered lately (observers, from the
follower's head polls). It is *stalled* when it is behind and applied nothing for
``[node] stall_timeout_s``: ``/healthz`` then answers 503 and ``/readyz`` too. Ready means
a known leader (validators), or a fresh peer head at most READY_LAG_BLOCKS_MAX blocks
ahead (observers); never on a full disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from node.chain import Chain
from node.clock import Clock
from node.diskfull import DiskFullGuard
from node.events import Applied
from node.follower import Follower
from node.raft_driver import RaftDriver

# An observer this many blocks or fewer below its peers' highest head is ready.
READY_LAG_BLOCKS_MAX = 5
# A peer head answered longer ago than this says nothing about where the chain is.
PEER_HEAD_FRESH_S = 10.0


class Health:
    def __init__(self, *, clock: Clock, stall_timeout_s: float, chain: Chain,
                 follower: Follower, disk: DiskFullGuard,
                 driver: Callable[[], RaftDriver | None],
                 is_validator: Callable[[], bool]) -> None:
        self._clock = clock
        self._stall_timeout_s = stall_timeout_s
        self._chain = chain
        self._follower = follower
        self._disk = disk
        self._driver = driver
        self._is_validator = is_validator
        self.last_progress = clock.monotonic()

    def on_applied(self, event: Applied) -> None:
        if event.applied is not None:
            self.last_progress = self._clock.monotonic()

    def seconds_since_progress(self) -> float:
        return self._clock.monotonic() - self.last_progress

    def behind(self) -> int | None:
        """Raft entries committed but not applied (validators), or blocks below the
        highest head a peer answered lately (observers); None without a fresh head."""
        driver = self._driver()
        if driver is not None and self._is_validator():
            commit = driver.raw_node.status().hard_state.commit
            return max(0, commit - self._chain.applied_index())
        follower = self._follower
        seen_at = follower.peer_head_seen_at
        if (follower.peer_head_height is None or seen_at is None
                or self._clock.monotonic() - seen_at > PEER_HEAD_FRESH_S):
            return None
        return max(0, follower.peer_head_height - self._chain.height)

    def stalled(self, behind: int | None = None) -> bool:
        behind = self.behind() if behind is None else behind
        return bool(behind) and self.seconds_since_progress() > self._stall_timeout_s

    def ready(self) -> bool:
        if self._disk.full or self.stalled():
            return False
        driver = self._driver()
        if driver is not None and self._is_validator():
            return bool(driver.leader)
        behind = self.behind()
        return behind is not None and behind <= READY_LAG_BLOCKS_MAX

    def view(self) -> dict[str, Any]:
        behind = self.behind()
        return {"seconds_since_last_commit": round(self.seconds_since_progress(), 3),
                "disk_full": self._disk.full, "behind": behind,
                "stalled": self.stalled(behind)}
