"""Rate controllers of the load tester: how many txs a worker may submit now.

Pure functions of (seconds since the round started, txs submitted so far, txs in flight):
no clock, no I/O, so a test drives them with made-up times. A worker asks
:meth:`RateController.allowance` before each batch and submits at most that many.

- :class:`FixedRate`: an open-loop schedule of ``tx_per_second`` (a worker that fell
  behind catches up, bounded by the in-flight cap; Caliper's fixed-rate).
- :class:`LinearRamp`: the rate moves linearly from ``from_tx_per_second`` to
  ``to_tx_per_second`` over ``ramp_seconds`` and stays at the end rate afterwards.
- :class:`MaximumRate`: closed loop; as many as the in-flight bound allows (submitted but
  not yet committed), i.e. the highest rate the system sustains at that concurrency.

Every controller also respects ``in_flight_txs_max``: an open-loop schedule against a
stalled node must not grow the node's filter sets and our memory without bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

# Named controller kinds (config values).
CONTROLLER_FIXED = "fixed"
CONTROLLER_RAMP = "ramp"
CONTROLLER_MAXIMUM = "maximum"
CONTROLLERS = (CONTROLLER_FIXED, CONTROLLER_RAMP, CONTROLLER_MAXIMUM)


class RateController(Protocol):
    def allowance(self, elapsed_seconds: float, submitted_txs: int, in_flight_txs: int) -> int:
        """Txs that may be submitted now (0 or more)."""
        ...

    def planned_txs(self, seconds: float) -> int:
        """Txs the schedule submits in the first ``seconds`` (for pre-generation sizing);
        the maximum-rate controller has no schedule and answers from its hint."""
        ...


def _room(in_flight_txs: int, in_flight_txs_max: int) -> int:
    return max(0, in_flight_txs_max - in_flight_txs)


@dataclass(frozen=True, slots=True)
class FixedRate:
    tx_per_second: float
    in_flight_txs_max: int

    def __post_init__(self) -> None:
        assert self.tx_per_second > 0, "a fixed rate is positive"
        assert self.in_flight_txs_max > 0, "the in-flight bound is positive"

    def planned_txs(self, seconds: float) -> int:
        return math.floor(self.tx_per_second * max(0.0, seconds))

    def allowance(self, elapsed_seconds: float, submitted_txs: int, in_flight_txs: int) -> int:
        due = self.planned_txs(elapsed_seconds) - submitted_txs
        return max(0, min(due, _room(in_flight_txs, self.in_flight_txs_max)))


@dataclass(frozen=True, slots=True)
class LinearRamp:
    from_tx_per_second: float
    to_tx_per_second: float
    ramp_seconds: float
    in_flight_txs_max: int

    def __post_init__(self) -> None:
        assert self.from_tx_per_second >= 0 and self.to_tx_per_second >= 0, "rates are >= 0"
        assert self.from_tx_per_second + self.to_tx_per_second > 0, "a ramp moves some txs"
        assert self.ramp_seconds > 0, "a ramp takes some time"
        assert self.in_flight_txs_max > 0, "the in-flight bound is positive"

    def rate_at(self, seconds: float) -> float:
        if seconds >= self.ramp_seconds:
            return self.to_tx_per_second
        fraction = max(0.0, seconds) / self.ramp_seconds
        return self.from_tx_per_second + (self.to_tx_per_second - self.from_tx_per_second) * (
            fraction
        )

    def planned_txs(self, seconds: float) -> int:
        """The integral of the rate from 0 to ``seconds``."""
        seconds = max(0.0, seconds)
        ramp = min(seconds, self.ramp_seconds)
        slope = (self.to_tx_per_second - self.from_tx_per_second) / self.ramp_seconds
        during = self.from_tx_per_second * ramp + slope * ramp * ramp / 2
        after = self.to_tx_per_second * max(0.0, seconds - self.ramp_seconds)
        # A hair of tolerance so that exact arithmetic (e.g. 7.5 * 2) is not floored to 14.
        return math.floor(during + after + 1e-9)

    def allowance(self, elapsed_seconds: float, submitted_txs: int, in_flight_txs: int) -> int:
        due = self.planned_txs(elapsed_seconds) - submitted_txs
        return max(0, min(due, _room(in_flight_txs, self.in_flight_txs_max)))


@dataclass(frozen=True, slots=True)
class MaximumRate:
    in_flight_txs_max: int
    # Only for sizing the pre-generated pool: the rate we expect at most.
    expected_tx_per_second: float

    def __post_init__(self) -> None:
        assert self.in_flight_txs_max > 0, "the in-flight bound is positive"
        assert self.expected_tx_per_second > 0, "the expected rate is positive"

    def planned_txs(self, seconds: float) -> int:
        return math.ceil(self.expected_tx_per_second * max(0.0, seconds))

    def allowance(self, elapsed_seconds: float, submitted_txs: int, in_flight_txs: int) -> int:
        return _room(in_flight_txs, self.in_flight_txs_max)


def split(controller: RateController, workers: int) -> RateController:
    """The share of one of ``workers`` equal workers (rates and bounds divided)."""
    assert workers >= 1
    if isinstance(controller, FixedRate):
        return FixedRate(controller.tx_per_second / workers,
                         max(1, controller.in_flight_txs_max // workers))
    if isinstance(controller, LinearRamp):
        return LinearRamp(controller.from_tx_per_second / workers,
                          controller.to_tx_per_second / workers, controller.ramp_seconds,
                          max(1, controller.in_flight_txs_max // workers))
    assert isinstance(controller, MaximumRate), f"unknown controller {controller!r}"
    return MaximumRate(max(1, controller.in_flight_txs_max // workers),
                       controller.expected_tx_per_second / workers)
