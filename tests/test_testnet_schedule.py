"""node.testnet.schedule: one seed, one schedule; holds and gaps in range; kinds mixed."""

from __future__ import annotations

import itertools

from node.testnet.cluster import board_size
from node.testnet.schedule import KINDS, LEADER, Fault, make_schedule


def _schedule(seed: int, seconds: float = 300.0) -> list[Fault]:
    return make_schedule(seed, seconds=seconds, validators=["v0", "v1", "v2"],
                         observers=["o0"], disk_node="v2")


def test_same_seed_same_schedule_other_seed_other() -> None:
    assert _schedule(3) == _schedule(3)
    assert _schedule(3) != _schedule(4)


def test_holds_gaps_and_end_in_range() -> None:
    for seed in range(20):
        faults = _schedule(seed)
        assert faults
        for fault, following in itertools.pairwise(faults):
            assert 5.0 <= fault.hold_s <= 15.0
            assert 2.0 <= following.start_s - fault.end_s <= 5.0
        assert faults[-1].end_s <= 300.0 - 15.0
        for fault in faults:
            assert fault.target in ("v0", "v1", "v2", "o0", LEADER)


def test_a_long_run_has_every_kind_and_a_short_one_a_mix() -> None:
    assert {fault.kind for fault in _schedule(1)} == set(KINDS)
    assert len({fault.kind for fault in _schedule(1, seconds=60.0)}) >= 3


def test_board_and_insurer_outvote_the_lanes() -> None:
    for lanes in range(1, 8):
        voters = board_size(lanes) + 1
        active = lanes + voters
        assert voters * 3 > active * 2
