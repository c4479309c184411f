"""The checkers can fail: each deliberately broken Raft (RaftBugs, test only) is caught by
the simulator, which prints the violation and a replay command that reproduces it."""

from __future__ import annotations

import io
import shlex

import pytest

from consensus.config import RaftBugs
from consensus.sim import cli
from consensus.sim.simulation import FaultKind, Simulation, SimulationConfig, SimulationResult

CHECKER_KINDS = {
    "election safety",
    "log matching",
    "leader completeness",
    "state-machine safety",
    "acknowledged proposal lost",
}


def first_failure(
    configs: list[SimulationConfig], kinds: set[str]
) -> tuple[SimulationConfig, SimulationResult]:
    for config in configs:
        result = Simulation(config).run()
        if result.violations and result.violations[0].kind in kinds:
            return config, result
    raise AssertionError(f"no seed among {len(configs)} showed any of {sorted(kinds)}")


def replay(config: SimulationConfig, result: SimulationResult) -> None:
    """The printed replay command reproduces the same violation and trace."""
    command = cli.replay_command(config)
    argv = shlex.split(command)
    assert argv[:2] == ["medledger", "simulate"]
    out = io.StringIO()
    status = cli.run_simulate(cli.build_parser().parse_args(argv[2:]), out)
    text = out.getvalue()
    assert status == 1
    assert f"FAIL seed={config.seed} nodes={config.node_count}" in text
    assert str(result.violations[0]) in text
    assert f"replay: {command}" in text
    assert result.trace_hash in text


def test_granting_two_votes_in_a_term_breaks_election_safety() -> None:
    bugs = RaftBugs(vote_twice=True)
    configs = [
        SimulationConfig(seed=seed, node_count=5, bugs=bugs, ticks=150) for seed in range(100)
    ]
    config, result = first_failure(configs, {"election safety"})
    assert "both lead term" in result.violations[0].description
    replay(config, result)


def test_committing_an_earlier_term_entry_by_counting_is_caught() -> None:
    # Raft's figure 8 needs a leader to commit an old entry by counting replicas, then crash
    # before its own term's entry spreads, and another node to win without the entry:
    # kill and isolate leaders often, and split appends to one entry per message.
    bugs = RaftBugs(commit_previous_term=True)
    configs = [
        SimulationConfig(
            seed=seed,
            node_count=3,
            faults=frozenset({FaultKind.CRASH, FaultKind.PARTITION}),
            fault_rate=0.5,
            fault_duration_ticks_max=15,
            message_size_bytes_max=1,
            proposal_rate=2.0,
            bugs=bugs,
        )
        for seed in range(400)
    ]
    config, result = first_failure(configs, {"leader completeness", "state-machine safety"})
    replay(config, result)


def test_the_correct_raft_survives_the_figure_8_hunt() -> None:
    configs = [
        SimulationConfig(
            seed=seed,
            node_count=3,
            faults=frozenset({FaultKind.CRASH, FaultKind.PARTITION}),
            fault_rate=0.5,
            fault_duration_ticks_max=15,
            message_size_bytes_max=1,
            proposal_rate=2.0,
        )
        for seed in range(40)
    ]
    for config in configs:
        result = Simulation(config).run()
        assert result.ok, f"{result.violations[0]} -- {cli.replay_command(config)}"


@pytest.mark.parametrize("kinds", [CHECKER_KINDS, {"assertion"}])
def test_releasing_before_sync_loses_promised_writes(kinds: set[str]) -> None:
    # Votes and acknowledgements go out before the writes are durable; crashes lose them.
    # The checkers see a lost committed entry, or Raft's own invariant (a commit index
    # beyond the log, "was the log lost?") fails an assertion.
    bugs = RaftBugs(release_before_sync=True)
    configs = [
        SimulationConfig(
            seed=seed,
            node_count=3,
            faults=frozenset({FaultKind.CRASH, FaultKind.PARTITION}),
            fault_rate=0.2,
            bugs=bugs,
        )
        for seed in range(80)
    ]
    config, result = first_failure(configs, kinds)
    replay(config, result)


def test_liveness_checker_reports_a_cluster_that_does_not_converge_in_time() -> None:
    # Two ticks after heavy faults stop is too short to elect, restart and catch up.
    configs = [
        SimulationConfig(seed=seed, node_count=5, ticks=100, fault_rate=0.5, liveness_ticks=2)
        for seed in range(20)
    ]
    config, result = first_failure(configs, {"liveness"})
    assert len(result.violations) == 1
    replay(config, result)
