"""The report: JSON and a self-contained HTML page built from a synthetic round, and the
page rendered by headless Chromium into a picture that is not blank."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from node.loadtest.chain import TargetInfo
from node.loadtest.command import Observation, build_report
from node.loadtest.config import LoadtestConfig
from node.loadtest.prepare import Prepared
from node.loadtest.render import chromium_path, ink_fraction, screenshot
from node.loadtest.report import render_html, write_reports
from node.loadtest.runner import PhaseCounts, RoundOutcome
from node.loadtest.stats import CommitRecord
from node.loadtest.system import ProcessSampler

# The screenshot is checked on its upper part only (pure-Python PNG decoding is slow): the
# summary table and the first two charts are there.
ROWS_CHECKED = 700
INK_FRACTION_MIN = 0.01


def synthetic_outcome(seed: int = 7) -> RoundOutcome:
    rng = random.Random(seed)
    commits, submits = [], []
    for index in range(3000):
        submitted = index / 300.0  # 300 tx/s for 10 s
        latency = rng.lognormvariate(-1.5, 0.5)
        submits.append(submitted)
        commits.append(CommitRecord(submitted, submitted + latency,
                                    "OK" if index % 500 else "NONCE_STALE"))
    ids = {f"0x{index:064x}" for index in range(3000)}
    measured = PhaseCounts(submitted=3000, committed=2994, invalid=Counter({"NONCE_STALE": 6}))
    return RoundOutcome(
        start=0.0, measured_start_seconds=2.0, submit_end_seconds=12.0, done_seconds=13.0,
        measured_submit_seconds=submits, measured_commits=commits, measured=measured,
        warmup=PhaseCounts(submitted=600, committed=600), submitted_ids=ids,
        committed_ids=ids, measured_ids=ids, highest_height=40, subscription_overflows=0,
        unknown_notifications=0, error_samples=[], pool_exhausted=False, stopped_workers=[],
    )


def synthetic_report() -> dict[str, Any]:
    sampler = ProcessSampler([("node0", 101), ("loadtest", 102)])
    for series in sampler.series:
        for second in range(14):
            series.seconds.append(float(second))
            series.cpu_seconds.append(second * (0.9 if series.name == "node0" else 0.1))
            series.rss_bytes.append(100 * 2**20 + second * 2**20)
    observation = Observation(sampler, metrics_before={"http://n/": ""}, metrics_after={
        "http://n/": 'medledger_stage_seconds_sum{stage="apply"} 3.0\n'
                     'medledger_stage_seconds_count{stage="apply"} 30.0\n'})
    report = build_report(
        LoadtestConfig(), "synthetic", [TargetInfo("http://n/", "chain", "leader", 1, "")],
        Prepared((), 10, (), 0), synthetic_outcome(), observation,
        {"status": "ok", "run_txs_on_chain": 3000}, signing_seconds=1.0, pool_txs=4000,
    )
    report["name"] = "synthetic"
    return report


def test_report_json_has_the_caliper_figures_with_percentiles(tmp_path: Path) -> None:
    report = synthetic_report()
    json_path, html_path = write_reports(report, tmp_path, "synthetic")
    loaded = json.loads(json_path.read_text())
    summary = loaded["summary"]
    assert summary["submitted"] == 3000 and summary["committed"] == 2994
    assert summary["invalid_by_reason"] == {"NONCE_STALE": 6}
    latency = summary["latency_seconds"]
    assert 0 < latency["p50"] < latency["p95"] < latency["p99"] <= latency["max"]
    assert 250 < summary["committed_tx_per_second"] < 310
    assert loaded["resources"]["measured_window"][0]["cores_used"] == pytest.approx(0.9)
    assert loaded["node_stages"]["http://n/"]["apply"]["mean_seconds"] == pytest.approx(0.1)
    assert loaded["chain_check"]["status"] == "ok"
    assert html_path.exists()


def test_html_is_self_contained() -> None:
    page = render_html(synthetic_report())
    assert page.startswith("<!DOCTYPE html>")
    for forbidden in ("<script", " src=", " href=", "@import", "url("):
        assert forbidden not in page
    assert page.count("<svg") == 4  # throughput, histogram, percentiles, cpu
    assert "Committed throughput" in page and "NONCE_STALE" in page


def test_html_without_data_still_renders() -> None:
    report = synthetic_report()
    report["series"] = {}
    report["latency_histogram"] = {}
    report["resources"] = {}
    page = render_html(report)
    assert "no data" in page


@pytest.mark.skipif(chromium_path() is None,
                    reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    _, html_path = write_reports(synthetic_report(), tmp_path, "synthetic")
    png = screenshot(html_path, tmp_path / "synthetic.png")
    assert ink_fraction(png, rows_max=ROWS_CHECKED) > INK_FRACTION_MIN
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    blank_png = screenshot(blank, tmp_path / "blank.png")
    assert ink_fraction(blank_png, rows_max=ROWS_CHECKED) < INK_FRACTION_MIN / 10
