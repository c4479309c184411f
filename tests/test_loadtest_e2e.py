"""`medledger loadtest` end to end: a real one-validator node process on 127.0.0.1, a
5-second round at a fixed low rate of the healthcare mix; every submitted tx commits
valid, nothing fails, and the chain holds exactly the txs the load tester saw commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from node_harness import dump_logs, leader_of, network, wait_for

from node.loadtest.command import main

pytestmark = pytest.mark.slow
RATE_TX_PER_SECOND = 60
DURATION_SECONDS = 5


def test_fixed_rate_round_commits_everything_and_matches_the_chain(tmp_path: Path) -> None:
    with network(tmp_path / "net", validators=1, observers=0) as processes:
        try:
            wait_for(lambda: leader_of(processes), timeout_s=60, what="a leader")
        except AssertionError:
            print(dump_logs(processes))
            raise
        reports = tmp_path / "reports"
        code = main([
            "--url", processes[0].node.rpc_url, "--workers", "2",
            "--controller", "fixed", "--rate", str(RATE_TX_PER_SECOND),
            "--duration", str(DURATION_SECONDS), "--warmup", "1", "--batch", "50",
            "--drain-timeout", "20", "--report-dir", str(reports),
            "--report-name", "e2e", "--no-progress",
        ])
        report = json.loads((reports / "e2e.json").read_text())
    summary = report["summary"]
    assert code == 0, summary
    assert summary["submitted"] >= RATE_TX_PER_SECOND * DURATION_SECONDS * 0.9
    assert summary["committed"] == summary["submitted"], summary
    assert summary["failed"] == summary["rejected"] == summary["timed_out"] == 0
    assert summary["committed_invalid"] == 0, summary["invalid_by_reason"]
    assert 0 < summary["latency_seconds"]["p50"] <= summary["latency_seconds"]["p99"]
    check = report["chain_check"]
    assert check["status"] == "ok", check
    assert check["measured_txs_on_chain"] == summary["submitted"]
    assert report["resources"]["measured_window"][0]["cores_used"] is not None  # found by port
    # The devnet holds an insurer's key: nothing is left out, and the mix is what ran.
    assert report["mix"]["left_out"] == []
    by_type = {row["tx_type"]: row["submitted"] for row in report["mix"]["by_type"]}
    assert sum(by_type.values()) == summary["submitted"] and by_type["CLAIM_SUBMIT"] > 0
    # The node's own /metrics: its CPU per committed tx and its memory.
    node = report["nodes"]["by_node"][processes[0].node.rpc_url]
    assert node["cpu_seconds_per_committed_tx"] > 0 and node["rss_bytes_max"] > 10 * 2**20
    assert (reports / "e2e.html").read_text().count("<svg") >= 3


def test_the_console_command_passes_its_options_to_the_load_tester(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from node.cli import main as cli_main

    with pytest.raises(SystemExit) as exited:
        cli_main(["loadtest", "--help"])
    assert exited.value.code == 0
    assert "--controller" in capsys.readouterr().out
    missing = tmp_path / "absent.toml"
    assert cli_main(["loadtest", "-c", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
