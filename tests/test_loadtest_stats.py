"""Percentiles, histograms, per-second series and the round summary; the configuration
file and options; /metrics parsing and /proc sampling."""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import ConfigError
from node.loadtest.config import LoadtestConfig, load
from node.loadtest.stats import (
    CommitRecord,
    RoundRecords,
    latency_histogram,
    per_second_series,
    percentile,
    summarize,
)
from node.loadtest.system import ProcessSampler, stage_difference, stage_totals


def test_percentile_interpolates_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


@given(st.lists(st.floats(0.0, 1e6), min_size=2, max_size=200))
def test_percentile_agrees_with_statistics_quantiles(values: list[float]) -> None:
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    for percent in (1, 50, 95, 99):
        assert percentile(ordered, percent) == pytest.approx(cuts[percent - 1], rel=1e-9,
                                                             abs=1e-9)


def test_histogram_bins_are_logarithmic_and_trimmed() -> None:
    histogram = latency_histogram([0.010, 0.011, 0.1, 0.5, 5000.0, 0.0])
    counts, edges = histogram["counts"], histogram["edges_seconds"]
    assert sum(counts) == 6
    assert len(edges) == len(counts) + 1
    assert edges[0] == pytest.approx(0.001)  # 0.0 went to the first bin
    assert edges[-1] == pytest.approx(100.0)  # 5000 s went to the last bin
    assert latency_histogram([]) == {"edges_seconds": [], "counts": []}


def records() -> RoundRecords:
    commits = [CommitRecord(second + 0.1, second + 0.3, "OK") for second in range(10)]
    commits += [CommitRecord(9.5, 11.5, "NONCE_STALE")]
    return RoundRecords(
        duration_seconds=10.0, submit_seconds=[c.submitted_seconds for c in commits] + [9.9],
        commits=commits, rejected=Counter({"MEMPOOL_FULL": 2}), failed=1, timed_out=1,
    )


def test_summary_counts_and_rates() -> None:
    summary = summarize(records())
    assert summary["submitted"] == 12
    assert summary["committed"] == 10
    assert summary["committed_invalid"] == 1
    assert summary["invalid_by_reason"] == {"NONCE_STALE": 1}
    assert summary["rejected_by_reason"] == {"MEMPOOL_FULL": 2}
    assert (summary["failed"], summary["timed_out"]) == (1, 1)
    assert summary["committed_tx_per_second"] == pytest.approx(10 / 9.3)
    assert summary["send_rate_tx_per_second"] == pytest.approx(12 / 9.8)
    assert summary["latency_seconds"]["max"] == pytest.approx(2.0)
    assert summary["latency_seconds"]["p50"] == pytest.approx(0.2)


def test_per_second_series_runs_until_the_last_commit() -> None:
    series = per_second_series(records())
    assert series["second"] == list(range(12))
    assert sum(series["submitted"]) == 12
    assert sum(series["committed"]) == 10  # valid only
    assert series["latency_p99_seconds"][11] == pytest.approx(2.0)
    assert series["latency_p50_seconds"][10] is None


def test_config_file_and_options(tmp_path: Path) -> None:
    path = tmp_path / "loadtest.toml"
    path.write_text('[target]\nurls = ["http://a:1/", "http://b:2/"]\n'
                    '[rate]\ncontroller = "ramp"\nramp_from_tx_per_second = 10\n'
                    '[workload]\nweights = { REGISTER_PARTY = 3, KEY_GRANT = 1 }\n')
    config = load(["-c", str(path), "--workers", "2", "--ramp-to", "99"])
    assert config.urls == ("http://a:1/", "http://b:2/")
    assert (config.controller, config.workers) == ("ramp", 2)
    assert (config.ramp_from_tx_per_second, config.ramp_to_tx_per_second) == (10.0, 99.0)
    assert config.weights == {"REGISTER_PARTY": 3, "KEY_GRANT": 1}
    assert load(["--", "--url", "http://c:3/"]).urls == ("http://c:3/",)


@pytest.mark.parametrize("text", [
    '[round]\nworkers = "3"\n',
    '[round]\nworkerz = 3\n',
    '[rates]\ncontroller = "fixed"\n',
    '[rate]\ncontroller = "fastest"\n',
    '[workload]\nweights = { CONSENT_REVOKE = 1 }\n',
    '[round]\nbatch_txs_max = 5000\n',
])
def test_bad_config_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load(["-c", str(path)])


METRICS = """# HELP medledger_stage_seconds Time spent in each pipeline stage.
medledger_stage_seconds_bucket{le="0.1",stage="apply"} 3.0
medledger_stage_seconds_sum{stage="apply"} 1.5
medledger_stage_seconds_count{stage="apply"} 4.0
medledger_stage_seconds_sum{stage="validation"} 0.25
medledger_stage_seconds_count{stage="validation"} 10.0
medledger_commit_latency_seconds_sum 12.0
medledger_commit_latency_seconds_count 100.0
"""


def test_stage_totals_and_their_difference() -> None:
    after = stage_totals(METRICS)
    assert after["apply"] == {"sum_seconds": 1.5, "count": 4.0}
    assert after["commit_latency"] == {"sum_seconds": 12.0, "count": 100.0}
    before = {"apply": {"sum_seconds": 0.5, "count": 2.0}}
    difference = stage_difference(before, after)
    assert difference["apply"] == {"seconds": 1.0, "count": 2.0, "mean_seconds": 0.5}
    assert difference["validation"]["mean_seconds"] == 0.025


def test_process_sampler_reads_this_process() -> None:
    sampler = ProcessSampler([("me", os.getpid())])
    sampler.sample(0.0)
    sum(index * index for index in range(200_000))  # burn a little CPU
    sampler.sample(1.0)
    window = sampler.series[0].window(0.0, 1.0)
    assert window["cpu_seconds"] is not None and window["cpu_seconds"] >= 0
    assert window["rss_bytes_max"] > 1_000_000
    assert sampler.series[0].cores_series()[0] is None


def test_the_example_config_loads() -> None:
    config = load(["-c", str(Path(__file__).resolve().parent.parent / "configs/loadtest.toml")])
    assert config.workers == 3 and len(config.urls) == 3
    assert sum(config.weights.values()) == 100


def test_progress_gives_the_time_left() -> None:
    from types import SimpleNamespace

    from node.loadtest.progress import eta

    def round_at(submitted: int = 0, deadline: float = math.inf) -> Any:
        tracker = SimpleNamespace(measured=SimpleNamespace(submitted=submitted))
        return SimpleNamespace(tracker=tracker, warmup_end=10.0, measured_end=40.0,
                               drain_deadline=deadline)

    by_time = LoadtestConfig(duration_seconds=30.0)
    assert eta(round_at(), by_time, 25.0, "measured") == "15 s"
    assert eta(round_at(), by_time, 4.0, "warm-up") == "36 s"
    assert eta(round_at(deadline=32.0), by_time, 25.0, "draining") == "<= 7 s"
    by_count = LoadtestConfig(tx_count=1000)
    # 250 txs in the first 5 measured seconds: 750 more at 50 tx/s.
    assert eta(round_at(submitted=250), by_count, 15.0, "measured") == "15 s"
    assert eta(round_at(), by_count, 4.0, "warm-up") == "-"
