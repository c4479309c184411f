"""The load tester's arithmetic: percentiles, per-second series, the latency histogram
and the round's summary. Pure: it reads records the runner collected and returns plain
dicts ready for JSON.

Definitions (Caliper's, with percentiles added):

- send rate: measured txs submitted / (last submit - first submit);
- committed throughput: measured txs committed valid / (last such commit - round start);
- latency: submit (the batch left the load tester) to commit (its txResults
  notification arrived), for every measured tx that was committed, valid or not.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Latency histogram: logarithmic bins, ten per decade from 1 ms to 100 s (anything outside
# goes to the first or the last bin): commit latencies span milliseconds to the tail of a
# stalled round, and a linear scale would hide one or the other.
HISTOGRAM_BINS_PER_DECADE = 10
HISTOGRAM_LOW_SECONDS = 0.001
HISTOGRAM_HIGH_SECONDS = 100.0
# Per-second series of a round this long at most (a day): bounds the report's size.
SERIES_SECONDS_MAX = 86_400
PERCENTILES = (50.0, 95.0, 99.0)


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """One measured tx that was committed: times in seconds since the round started."""

    submitted_seconds: float
    committed_seconds: float
    code_name: str  # "OK" or the reason it is invalid
    tx_type: str = ""  # the tx type's name, for the per-type table

    @property
    def latency_seconds(self) -> float:
        return self.committed_seconds - self.submitted_seconds


@dataclass(frozen=True, slots=True)
class RoundRecords:
    """What the runner saw of the measured round (warm-up excluded)."""

    duration_seconds: float  # the planned (or, if the pool ran out, actual) submit window
    submit_seconds: Sequence[float]  # every submitted tx's submit time
    commits: Sequence[CommitRecord]
    rejected: Counter[str]  # refused at submit, by reason
    failed: int  # submit calls that failed (transport, RPC error, timeout): their txs
    timed_out: int  # accepted but not committed before the drain deadline
    # Committed valid while the notifications were lost (found by tx_status): counted,
    # but not in the latency figures.
    committed_without_latency: int = 0


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN when empty."""
    assert 0.0 <= percent <= 100.0, f"percentile {percent} out of range"
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * percent / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    weight = position - lower
    return sorted_values[lower] * (1.0 - weight) + sorted_values[upper] * weight


def latency_summary(latencies_seconds: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(latencies_seconds)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None, "max": None, "min": None, "mean": None}
    summary: dict[str, float | None] = {
        f"p{percent:g}": percentile(ordered, percent) for percent in PERCENTILES
    }
    summary["max"] = ordered[-1]
    summary["min"] = ordered[0]
    summary["mean"] = math.fsum(ordered) / len(ordered)
    return summary


# The latency CDF: these percentiles (a point each), plus the tail in finer steps.
CDF_PERCENTILES = (*range(0, 100), 99.5, 99.9, 100)


def latency_cdf(latencies_seconds: Sequence[float]) -> list[list[float]]:
    """[latency seconds, fraction of txs at or below it] at each of CDF_PERCENTILES."""
    ordered = sorted(latencies_seconds)
    if not ordered:
        return []
    return [[percentile(ordered, float(percent)), percent / 100.0]
            for percent in CDF_PERCENTILES]


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def by_type(records: RoundRecords, submitted_by_type: Mapping[str, int],
            committed_by_type: Mapping[str, int]) -> list[dict[str, Any]]:
    """One row per tx type that ran: sent, committed valid (with those found by tx_status
    after a lost subscription), invalid by reason, and the latency percentiles of its
    notified commits (valid or not), in milliseconds."""
    commits: dict[str, list[CommitRecord]] = {}
    for commit in records.commits:
        commits.setdefault(commit.tx_type, []).append(commit)
    rows = []
    for tx_type in sorted(set(submitted_by_type) | set(commits)):
        own = commits.get(tx_type, [])
        invalid = Counter(commit.code_name for commit in own if commit.code_name != "OK")
        latency = latency_summary([commit.latency_seconds for commit in own])
        rows.append({
            "tx_type": tx_type,
            "submitted": submitted_by_type.get(tx_type, 0),
            "committed": committed_by_type.get(tx_type, 0),
            "invalid": sum(invalid.values()),
            "invalid_by_reason": dict(sorted(invalid.items())),
            **{f"{name}_ms": _milliseconds(latency[name]) for name in ("p50", "p95", "p99")},
        })
    return rows


def histogram_edges_seconds() -> list[float]:
    decades = round(math.log10(HISTOGRAM_HIGH_SECONDS / HISTOGRAM_LOW_SECONDS))
    steps = decades * HISTOGRAM_BINS_PER_DECADE
    return [
        HISTOGRAM_LOW_SECONDS * 10 ** (step / HISTOGRAM_BINS_PER_DECADE)
        for step in range(steps + 1)
    ]


def latency_histogram(latencies_seconds: Sequence[float]) -> dict[str, list[float] | list[int]]:
    """Counts per logarithmic bin; bins outside the data's range are trimmed."""
    edges = histogram_edges_seconds()
    counts = [0] * (len(edges) - 1)
    log_low = math.log10(HISTOGRAM_LOW_SECONDS)
    for latency in latencies_seconds:
        if latency <= HISTOGRAM_LOW_SECONDS:
            index = 0
        else:
            index = math.floor((math.log10(latency) - log_low) * HISTOGRAM_BINS_PER_DECADE)
        counts[min(max(index, 0), len(counts) - 1)] += 1
    used = [index for index, count in enumerate(counts) if count]
    if not used:
        return {"edges_seconds": [], "counts": []}
    first, last = used[0], used[-1]
    return {"edges_seconds": edges[first: last + 2], "counts": counts[first: last + 1]}


def per_second_series(records: RoundRecords) -> dict[str, list[Any]]:
    """Submitted, committed (valid) and latency percentiles of each second of the round
    (a commit counts in the second it arrived; the series runs until the last commit)."""
    last_event = max(
        [records.duration_seconds]
        + [commit.committed_seconds for commit in records.commits]
        + list(records.submit_seconds[-1:])
    )
    seconds = min(SERIES_SECONDS_MAX, max(1, math.ceil(last_event)))
    submitted = [0] * seconds
    committed = [0] * seconds
    latencies: list[list[float]] = [[] for _ in range(seconds)]
    for moment in records.submit_seconds:
        submitted[min(seconds - 1, max(0, int(moment)))] += 1
    for commit in records.commits:
        index = min(seconds - 1, max(0, int(commit.committed_seconds)))
        if commit.code_name == "OK":
            committed[index] += 1
        latencies[index].append(commit.latency_seconds)
    series: dict[str, list[Any]] = {
        "second": list(range(seconds)),
        "submitted": submitted,
        "committed": committed,
    }
    for percent in PERCENTILES:
        series[f"latency_p{percent:g}_seconds"] = [
            None if not bucket else percentile(sorted(bucket), percent) for bucket in latencies
        ]
    return series


def summarize(records: RoundRecords) -> dict[str, Any]:
    """Counts, rates and latency of the measured round."""
    valid = [commit for commit in records.commits if commit.code_name == "OK"]
    invalid = Counter(commit.code_name for commit in records.commits if commit.code_name != "OK")
    submits = records.submit_seconds
    send_window = (submits[-1] - submits[0]) if len(submits) > 1 else 0.0
    last_commit = max((commit.committed_seconds for commit in valid), default=0.0)
    latencies = [commit.latency_seconds for commit in records.commits]
    committed = len(valid) + records.committed_without_latency
    return {
        "duration_seconds": records.duration_seconds,
        "submitted": len(submits),
        "committed": committed,
        "committed_without_latency": records.committed_without_latency,
        "committed_invalid": sum(invalid.values()),
        "invalid_by_reason": dict(sorted(invalid.items())),
        "rejected": sum(records.rejected.values()),
        "rejected_by_reason": dict(sorted(records.rejected.items())),
        "failed": records.failed,
        "timed_out": records.timed_out,
        "send_rate_tx_per_second": len(submits) / send_window if send_window > 0 else None,
        "committed_tx_per_second": committed / last_commit if last_commit > 0 else None,
        "latency_seconds": latency_summary(latencies),
    }
