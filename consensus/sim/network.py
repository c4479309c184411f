"""A simulated network: per-link delay, loss, duplication, reordering and partitions.

Time is in simulation steps. Every random choice comes from the one seeded
``random.Random`` the simulation hands in, so a seed replays exactly.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from consensus.types import Message


@dataclass(frozen=True, slots=True)
class LinkQuality:
    """How one directed link behaves. Delays are uniform in [min, max] steps, so messages
    on one link overtake each other whenever the range is wider than their spacing."""

    delay_steps_min: int = 1
    delay_steps_max: int = 8
    loss_probability: float = 0.0
    duplicate_probability: float = 0.0

    def __post_init__(self) -> None:
        assert 1 <= self.delay_steps_min <= self.delay_steps_max
        assert 0.0 <= self.loss_probability < 1.0
        assert 0.0 <= self.duplicate_probability < 1.0


@dataclass(slots=True)
class NetworkStatistics:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    blocked: int = 0


class Network:
    def __init__(self, random_source: random.Random, quality: LinkQuality) -> None:
        self.random = random_source
        self.default_quality = quality
        self.quality = quality
        # Per directed link (from, to) overrides of ``quality``.
        self.link_quality: dict[tuple[int, int], LinkQuality] = {}
        # Directed links that drop everything (a partition is blocked both ways).
        self.blocked: set[tuple[int, int]] = set()
        self._queue: list[tuple[int, int, Message]] = []
        self._sequence = 0
        self.statistics = NetworkStatistics()

    def send(self, message: Message, now: int) -> None:
        statistics = self.statistics
        statistics.sent += 1
        link = (message.from_, message.to)
        if link in self.blocked:
            statistics.blocked += 1
            return
        quality = self.link_quality.get(link, self.quality)
        rng = self.random
        if quality.loss_probability and rng.random() < quality.loss_probability:
            statistics.lost += 1
            return
        copies = 1
        if quality.duplicate_probability and rng.random() < quality.duplicate_probability:
            copies = 2
            statistics.duplicated += 1
        for _ in range(copies):
            delay = rng.randint(quality.delay_steps_min, quality.delay_steps_max)
            self._sequence += 1
            heapq.heappush(self._queue, (now + delay, self._sequence, message))

    def due(self, now: int) -> list[Message]:
        """Messages that arrive at ``now`` (in arrival order), minus those a partition that
        began while they were in flight cuts off."""
        queue = self._queue
        arrived: list[Message] = []
        blocked = self.blocked
        while queue and queue[0][0] <= now:
            message = heapq.heappop(queue)[2]
            if blocked and (message.from_, message.to) in blocked:
                self.statistics.blocked += 1
                continue
            arrived.append(message)
        self.statistics.delivered += len(arrived)
        return arrived

    def in_flight(self) -> int:
        return len(self._queue)

    def partition(self, group: set[int], everyone: set[int]) -> None:
        """Cut ``group`` off from the rest, both directions."""
        for inside in group:
            for outside in everyone - group:
                self.blocked.add((inside, outside))
                self.blocked.add((outside, inside))

    def heal(self) -> None:
        self.blocked.clear()
        self.link_quality.clear()
        self.quality = self.default_quality
