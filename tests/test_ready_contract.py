"""The Ready contract is written once (consensus.ready) and both the node's Raft driver and
the simulator run it; the simulator, crashing nodes between the steps of a Ready, fails
a loop that sends before it persists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import consensus.ready
import consensus.sim.simulation as simulation
import node.raft_driver
from consensus.ready import Persist, Send, Step, ready_steps

SEEDS = range(20)
MID_READY_CRASH_RATE = 0.02


def run_seeds() -> list[int]:
    """Seeds whose run found a violation."""
    failed = []
    for seed in SEEDS:
        result = simulation.run_simulation(
            simulation.SimulationConfig(seed=seed, crash_mid_ready_rate=MID_READY_CRASH_RATE))
        if not result.ok:
            failed.append(seed)
    return failed


def test_the_node_and_the_simulator_run_the_same_loop() -> None:
    # (looked up in each module's namespace: the loop each of them calls)
    assert vars(node.raft_driver)["ready_steps"] is consensus.ready.ready_steps
    assert vars(simulation)["ready_steps"] is consensus.ready.ready_steps


def test_the_contract_holds_under_crashes_between_steps() -> None:
    assert run_seeds() == []


def test_sending_before_persisting_fails_in_the_simulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def send_first(raw_node: Any, ready: Any) -> Iterator[Step]:
        """The contract broken: each Ready's messages go out before its write."""
        held: Persist | None = None
        for step in ready_steps(raw_node, ready):
            if isinstance(step, Persist):
                held = step
                continue
            yield step
            if held is not None and isinstance(step, Send):
                yield held
                held = None
        if held is not None:
            yield held

    monkeypatch.setattr(simulation, "ready_steps", send_first)
    assert run_seeds() != []
