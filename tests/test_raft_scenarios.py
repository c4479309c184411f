"""Scripted Raft scenarios (tests/raft_scenarios/*.txt), etcd datadriven style.

Set RAFT_SCENARIO_REWRITE=1 to rewrite the expected outputs from what the code does (then
review the diff by hand: the files state the correct Raft behaviour, not whatever the code
printed)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from consensus.sim.script import run_script

SCENARIOS = sorted((Path(__file__).parent / "raft_scenarios").glob("*.txt"))
REWRITE = os.environ.get("RAFT_SCENARIO_REWRITE") == "1"


def test_there_are_scenarios() -> None:
    names = {path.stem for path in SCENARIOS}
    assert {
        "election",
        "prevote_disruptive_rejoin",
        "check_quorum_step_down",
        "log_divergence_repair",
        "snapshot_install",
        "leadership_transfer",
        "joint_consensus",
    } <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=[path.stem for path in SCENARIOS])
def test_scenario(path: Path) -> None:
    text = path.read_text()
    actual = run_script(text)
    if REWRITE:
        if actual != text:
            path.write_text(actual)
        return
    if actual != text:
        diff = "".join(
            difflib.unified_diff(
                text.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{path.name} (expected)",
                tofile=f"{path.name} (actual)",
            )
        )
        pytest.fail(f"scenario output differs:\n{diff}")
