"""The CI simulator run: hundreds of seeds over 3, 5 and 7 nodes with every fault kind
(partitions including one-way ones, loss, duplication, reordering, crashes that lose
unsynced writes, restarts, membership changes) must find no violation at all.

Seeds run in two worker processes (this machine has two cores); on failure the message
carries each failing seed's replay command."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from consensus.sim.cli import replay_command
from consensus.sim.simulation import ALL_FAULTS, SimulationConfig, run_simulation

# 510 seeds: 170 for each cluster size. About 45 s on two idle cores (85 s on one).
SEEDS = 510
FIRST_SEED = 1_000
WORKERS = 2


def test_simulator_seeds_find_no_violation() -> None:
    configs = [
        SimulationConfig(seed=seed, node_count=(3, 5, 7)[seed % 3], faults=ALL_FAULTS)
        for seed in range(FIRST_SEED, FIRST_SEED + SEEDS)
    ]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=context) as executor:
        results = list(executor.map(run_simulation, configs, chunksize=15))
    failures = [
        f"{violation} -- replay: {replay_command(config)}"
        for config, result in zip(configs, results, strict=True)
        for violation in result.violations
    ]
    assert not failures, "\n".join(failures)
    assert len(results) == SEEDS
    # The faults really happened and the cluster still made progress.
    assert sum(result.crashes for result in results) > SEEDS
    assert sum(result.partitions for result in results) > SEEDS
    assert sum(result.membership_changes for result in results) > SEEDS // 2
    assert all(result.committed_entries > 20 for result in results)
    assert {result.node_count for result in results} == {3, 5, 7}


def test_a_leader_removed_before_the_others_learn_the_commit_hands_over() -> None:
    """Seed 615 of the long run (3 nodes): the leader applied its own removal and stepped
    down while the two remaining voters, still in the joint configuration and behind its
    log, needed its vote, which it refused. Nobody could be elected. A removed leader now
    hands leadership to the most up-to-date remaining voter before stepping down."""
    config = SimulationConfig(seed=615, node_count=3, faults=ALL_FAULTS, ticks=300,
                              proposal_rate=0.5)
    result = run_simulation(config)
    assert result.ok, f"{result.violations} -- replay: {replay_command(config)}"
    assert result.membership_changes >= 3
