"""Rate controllers: schedules, catch-up, the in-flight bound, and splitting among workers
(pure: made-up times, no clock)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.loadtest.rate import FixedRate, LinearRamp, MaximumRate, split


def drive(controller: FixedRate | LinearRamp, seconds: float, step: float,
          in_flight: int = 0) -> list[int]:
    """Submit everything allowed every ``step`` seconds; the allowance of each step."""
    submitted, allowances = 0, []
    moment = 0.0
    while moment <= seconds + 1e-9:
        allowed = controller.allowance(moment, submitted, in_flight)
        allowances.append(allowed)
        submitted += allowed
        moment += step
    return allowances


def test_fixed_rate_submits_its_rate_evenly() -> None:
    controller = FixedRate(100.0, in_flight_txs_max=10_000)
    allowances = drive(controller, seconds=10.0, step=0.05)
    assert sum(allowances) == 1000
    assert max(allowances) <= 6  # 5 per 50 ms, +1 from rounding


def test_fixed_rate_catches_up_after_a_stall_but_not_past_the_in_flight_bound() -> None:
    controller = FixedRate(100.0, in_flight_txs_max=50)
    assert controller.allowance(2.0, 0, 0) == 50  # 200 due, room for 50
    assert controller.allowance(2.0, 0, 30) == 20
    assert controller.allowance(2.0, 200, 0) == 0  # on schedule: nothing more


def test_linear_ramp_integrates_its_rate() -> None:
    ramp = LinearRamp(100.0, 300.0, ramp_seconds=10.0, in_flight_txs_max=100_000)
    assert ramp.rate_at(0.0) == 100.0
    assert ramp.rate_at(5.0) == 200.0
    assert ramp.rate_at(20.0) == 300.0
    assert ramp.planned_txs(10.0) == 2000  # (100 + 300) / 2 * 10
    assert ramp.planned_txs(12.0) == 2600  # then 300/s
    allowances = drive(ramp, seconds=10.0, step=0.1)
    assert sum(allowances) == 2000
    # the second half of the ramp sends more than the first
    half = len(allowances) // 2
    assert sum(allowances[half:]) > sum(allowances[:half]) * 1.5


def test_ramp_down() -> None:
    ramp = LinearRamp(300.0, 0.0, ramp_seconds=3.0, in_flight_txs_max=10_000)
    assert ramp.planned_txs(3.0) == 450
    assert ramp.planned_txs(100.0) == 450


def test_maximum_rate_is_the_in_flight_room() -> None:
    controller = MaximumRate(in_flight_txs_max=1000, expected_tx_per_second=5000.0)
    assert controller.allowance(0.0, 0, 0) == 1000
    assert controller.allowance(9.0, 123_456, 999) == 1
    assert controller.allowance(9.0, 123_456, 1000) == 0
    assert controller.allowance(9.0, 123_456, 1500) == 0
    assert controller.planned_txs(2.0) == 10_000


def test_split_shares_rates_and_bounds() -> None:
    fixed = split(FixedRate(300.0, 900), 3)
    assert isinstance(fixed, FixedRate)
    assert (fixed.tx_per_second, fixed.in_flight_txs_max) == (100.0, 300)
    ramp = split(LinearRamp(30.0, 60.0, 5.0, 9), 3)
    assert isinstance(ramp, LinearRamp)
    assert (ramp.from_tx_per_second, ramp.to_tx_per_second, ramp.ramp_seconds) == (10, 20, 5)
    maximum = split(MaximumRate(10, 100.0), 4)
    assert isinstance(maximum, MaximumRate)
    assert maximum.in_flight_txs_max == 2  # floored, at least 1


@given(rate=st.floats(1.0, 50_000.0), step=st.floats(0.001, 0.5), seconds=st.floats(0.0, 20.0))
def test_fixed_rate_never_runs_ahead_of_its_schedule(rate: float, step: float,
                                                       seconds: float) -> None:
    controller = FixedRate(rate, in_flight_txs_max=10**9)
    submitted = sum(drive(controller, seconds, step))
    assert submitted <= rate * (seconds + step) + 1


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_a_fixed_rate_is_positive(bad: float) -> None:
    with pytest.raises(AssertionError):
        FixedRate(bad, 10)
