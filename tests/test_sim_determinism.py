"""The simulator is deterministic (one seed, one trace) and its command line behaves."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from consensus.sim import cli
from consensus.sim.simulation import Simulation, SimulationConfig

ROOT = Path(__file__).resolve().parent.parent


def test_same_seed_same_trace_different_seed_different_trace() -> None:
    first = Simulation(SimulationConfig(seed=42, node_count=5)).run()
    second = Simulation(SimulationConfig(seed=42, node_count=5)).run()
    other = Simulation(SimulationConfig(seed=43, node_count=5)).run()
    assert first == second
    assert first.trace_hash != other.trace_hash
    assert len(first.trace_hash) == 64


def test_trace_does_not_depend_on_hash_randomization() -> None:
    def run(hash_seed: str) -> dict[str, object]:
        environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
        completed = subprocess.run(
            [sys.executable, "-m", "consensus.sim.cli", "--seed", "9", "--nodes", "7", "--json"],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(completed.stdout)  # type: ignore[no-any-return]

    assert run("1") == run("2")


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = cli.run_simulate(cli.build_parser().parse_args(list(argv)), out)
    return status, out.getvalue()


def test_cli_summary_line_and_json() -> None:
    status, text = run_cli("--seeds", "3", "--first-seed", "5", "--nodes", "3,5", "--ticks", "80")
    assert status == 0
    (line,) = text.splitlines()
    assert line.startswith("simulate: seeds=3 nodes=3,5 ticks=")
    assert "violations=0 trace=" in line
    status, text = run_cli("--seed", "5", "--nodes", "3", "--ticks", "80", "--json")
    summary = json.loads(text)
    assert status == 0
    assert summary["seeds"] == 1 and summary["violations"] == []
    assert summary["committed_entries"] > 0 and len(summary["trace_hash"]) == 64


def test_cli_faults_off_and_lists() -> None:
    status, text = run_cli("--seed", "1", "--faults", "off", "--ticks", "60", "--json")
    summary = json.loads(text)
    assert status == 0 and summary["crashes"] == 0 and summary["partitions"] == 0
    status, text = run_cli("--seed", "1", "--faults", "crash,one-way", "--ticks", "60")
    assert status == 0


def test_cli_rejects_bad_arguments() -> None:
    assert run_cli("--seed", "1", "--faults", "meteor")[0] == 2
    assert run_cli("--seed", "1", "--nodes", "0")[0] == 2
    assert run_cli("--seeds", "0")[0] == 2


def test_replay_command_round_trips_every_option() -> None:
    config = SimulationConfig(
        seed=77,
        node_count=7,
        ticks=123,
        proposal_rate=1.5,
        fault_rate=0.25,
        fault_duration_ticks_max=9,
        message_size_bytes_max=3,
        liveness_ticks=321,
    )
    argv = cli.replay_command(config).split()[2:]
    (parsed,) = cli.configs_from_arguments(cli.build_parser().parse_args(argv))
    assert parsed == config
