"""`medledger loadtest compare`: a planted regression is flagged, noise under the
threshold is not, and a file that is no report is refused with a clear message."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from test_loadtest_report import synthetic_report

from node.loadtest.command import main as loadtest_main
from node.loadtest.compare import compare


def write(tmp_path: Path, name: str, report: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(report, default=sorted))
    return path


def scaled(report: dict[str, Any], factor: float) -> dict[str, Any]:
    changed = copy.deepcopy(report)
    changed["summary"]["committed_tx_per_second"] *= factor
    return changed


def test_a_planted_20_percent_throughput_drop_is_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = synthetic_report()
    a, b = write(tmp_path, "a", baseline), write(tmp_path, "b", scaled(baseline, 0.8))
    assert loadtest_main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    flagged = [line for line in out.splitlines() if "REGRESSION" in line]
    assert len(flagged) == 1 and flagged[0].startswith("committed tx/s")
    assert "-20.0%" in flagged[0] and "1 regression(s) over 10%" in out


def test_the_same_run_and_noise_under_the_threshold_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = synthetic_report()
    a = write(tmp_path, "a", baseline)
    for name, candidate in (("same", baseline), ("noise", scaled(baseline, 0.95))):
        assert loadtest_main(["compare", str(a), str(write(tmp_path, name, candidate))]) == 0
        assert "no regression over 10%" in capsys.readouterr().out


def test_slower_latency_per_type_failures_and_a_failed_chain_check_are_flagged() -> None:
    baseline = synthetic_report()
    candidate = copy.deepcopy(baseline)
    candidate["summary"]["latency_seconds"]["p99"] *= 1.3
    candidate["by_type"][0]["p99_ms"] *= 1.5
    candidate["summary"]["failed"] = 3  # from 0: any is a regression
    candidate["chain_check"]["status"] = "failed"
    candidate["summary"]["committed_tx_per_second"] *= 1.5  # better: not flagged
    flagged = {row.figure for row in compare(baseline, candidate).regressions}
    assert flagged == {"latency p99 (s)", f"{candidate['by_type'][0]['tx_type']} p99 (ms)",
                       "failed", "chain check ok"}


def test_runs_that_measured_different_things_are_noted() -> None:
    baseline = synthetic_report()
    candidate = copy.deepcopy(baseline)
    candidate["config"]["tx_per_second"] = 2000.0
    candidate["environment"]["host"]["cpus"] = 8
    notes = compare(baseline, candidate).notes
    assert any(note.startswith("config tx_per_second") for note in notes)
    assert any(note.startswith("host cpus: 2 -> 8") for note in notes)


def test_a_threshold_and_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = synthetic_report()
    a, b = write(tmp_path, "a", baseline), write(tmp_path, "b", scaled(baseline, 0.8))
    assert loadtest_main(["compare", str(a), str(b), "--threshold", "25", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["regressions"] == 0
    throughput = next(row for row in line["rows"] if row["figure"] == "committed tx/s")
    assert throughput["change_percent"] == pytest.approx(-20.0)


def test_a_file_that_is_no_report_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path, "a", synthetic_report())
    not_json = tmp_path / "notes.json"
    not_json.write_text("{half")
    other = write(tmp_path, "other", {"seed": 3})
    for bad, words in ((not_json, "is not JSON"), (other, "is not a load test report"),
                       (tmp_path / "missing.json", "cannot read")):
        assert loadtest_main(["compare", str(a), str(bad)]) == 2
        assert words in capsys.readouterr().err


def test_a_figure_the_candidate_lacks_is_a_regression() -> None:
    baseline = synthetic_report()
    candidate = copy.deepcopy(baseline)
    candidate["summary"]["committed_tx_per_second"] = None  # nothing committed
    flagged = {row.figure for row in compare(baseline, candidate).regressions}
    assert flagged == {"committed tx/s"}
