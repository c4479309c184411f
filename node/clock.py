"""The Clock port: where the node's services read time.

``monotonic()`` (seconds, for durations: hold times, re-forward delays, the block
interval, health) and ``wall_ms()`` (milliseconds since the epoch: the leader's block
timestamps, the one wall-clock value that reaches the ledger, as an explicit input). The
node runs on :class:`SystemClock`; tests hand a :class:`ManualClock`. Trio's own sleeps
and timeouts run on Trio's clock (``trio.testing.MockClock`` in tests).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall_ms(self) -> int: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return int(time.time() * 1000)


class ManualClock:
    """A clock that moves only when told (tests)."""

    def __init__(self, *, monotonic: float = 0.0, wall_ms: int = 0) -> None:
        self._monotonic = monotonic
        self._wall_ms = wall_ms

    def monotonic(self) -> float:
        return self._monotonic

    def wall_ms(self) -> int:
        return self._wall_ms

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a clock does not go back"
        self._monotonic += seconds
        self._wall_ms += round(seconds * 1000)
