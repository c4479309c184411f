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
TYPES = ("CONSENT_GRANT", "CLAIM_SUBMIT")
# The parts added for load testers (per-type table, latency CDF, environment) are drawn
# below the fold: the whole page is taken, in a window this tall.
TALL_WINDOW = "1200,5000"
ENVIRONMENT = {
    "load_tester": {"version": "0.1.0", "python": "3.11.2", "libp2p": "0.4",
                    "libraries": {"trio": "0.30.0"}},
    "host": {"cpu_model": "Test CPU", "cpus": 2, "memory_bytes": 8 * 2**30,
             "kernel": "6.1", "system": "Linux", "machine": "x86_64"},
    "nodes": [{"url": "http://n/", "role": "leader", "version": "0.1.0", "python": "3.11.2",
               "libp2p": "0.4"}],
}
NEW_PARTS = ("by_type", "latency_cdf", "environment")


def synthetic_outcome(seed: int = 7) -> RoundOutcome:
    rng = random.Random(seed)
    commits, submits = [], []
    for index in range(3000):
        submitted = index / 300.0  # 300 tx/s for 10 s
        latency = rng.lognormvariate(-1.5, 0.5)
        submits.append(submitted)
        # Claims take twice as long as consents: the per-type table must tell them apart.
        tx_type = TYPES[index % 2]
        latency *= 2 if tx_type == "CLAIM_SUBMIT" else 1
        commits.append(CommitRecord(submitted, submitted + latency,
                                    "OK" if index % 500 else "NONCE_STALE", tx_type))
    ids = {f"0x{index:064x}" for index in range(3000)}
    measured = PhaseCounts(submitted=3000, committed=2994, invalid=Counter({"NONCE_STALE": 6}),
                           submitted_by_type=Counter({TYPES[0]: 1500, TYPES[1]: 1500}),
                           committed_by_type=Counter({TYPES[0]: 1494, TYPES[1]: 1500}))
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
    report["environment"] = ENVIRONMENT
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
    assert page.count("<svg") == 5  # throughput, histogram, cdf, percentiles, cpu
    assert "Committed throughput" in page and "NONCE_STALE" in page
    assert "By transaction type" in page and "Test CPU" in page


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


def test_report_has_per_type_figures_and_a_latency_cdf() -> None:
    report = synthetic_report()
    rows = {row["tx_type"]: row for row in report["by_type"]}
    assert set(rows) == set(TYPES)
    consent, claim = rows["CONSENT_GRANT"], rows["CLAIM_SUBMIT"]
    assert (consent["submitted"], consent["committed"], consent["invalid"]) == (1500, 1494, 6)
    assert consent["invalid_by_reason"] == {"NONCE_STALE": 6} and claim["invalid"] == 0
    for row in (consent, claim):
        assert 0 < row["p50_ms"] < row["p95_ms"] < row["p99_ms"]
    assert 1.6 < claim["p50_ms"] / consent["p50_ms"] < 2.5  # claims were made twice as slow
    cdf = report["latency_cdf"]
    latencies = [latency for latency, _ in cdf]
    shares = [share for _, share in cdf]
    assert latencies == sorted(latencies) and shares == sorted(shares)
    assert shares[0] == 0.0 and shares[-1] == 1.0
    assert latencies[-1] == pytest.approx(report["summary"]["latency_seconds"]["max"])
    assert latencies[50] == pytest.approx(report["summary"]["latency_seconds"]["p50"])


@pytest.mark.skipif(chromium_path() is None,
                    reason="chromium is not installed (apt-get install -y chromium)")
def test_the_parts_for_load_testers_render_in_headless_chromium(tmp_path: Path) -> None:
    report = synthetic_report()
    without = {key: value for key, value in report.items() if key not in NEW_PARTS}
    _, full_html = write_reports(report, tmp_path, "full")
    _, bare_html = write_reports(without, tmp_path, "bare")
    full = ink_fraction(screenshot(full_html, tmp_path / "full.png", window_size=TALL_WINDOW))
    bare = ink_fraction(screenshot(bare_html, tmp_path / "bare.png", window_size=TALL_WINDOW))
    # The CDF chart alone is 880 x 260 pixels of frame, grid and text on a 1200 x 5000 page.
    assert full - bare > INK_FRACTION_MIN / 2, (full, bare)
