"""`medledger loadtest compare A.json B.json`: two load test reports side by side.

A is the baseline, B the candidate. Every figure that has a better direction is compared,
and a change for the worse of more than the threshold (10 % by default, CometBFT's QA
rule) is flagged as a regression: committed throughput, latency percentiles overall and
per tx type, the CPU the nodes spent per committed tx, and the counts that should stay at
zero (failed, timed out, invalid, rejected). Differences that make the runs incomparable
(rate controller, rate, workers, mix, host CPU, node versions) are listed as notes. The
exit status is 1 when anything regressed, 0 otherwise, 2 when a report cannot be read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_THRESHOLD_PERCENT = 10.0
HIGHER, LOWER = "higher", "lower"  # the better direction
# Config and environment fields that make two runs measure different things.
CONFIG_FIELDS = ("controller", "tx_per_second", "workers", "mix", "in_flight_txs_max",
                 "batch_txs_max", "duration_seconds")


class ReportError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    baseline: float | None
    candidate: float | None
    better: str
    change_percent: float | None  # candidate against baseline; None when not comparable
    regression: bool


@dataclass(frozen=True, slots=True)
class Comparison:
    rows: list[Row]
    notes: list[str]

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.regression]


def read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except OSError as error:
        raise ReportError(f"cannot read {path}: {error.strerror or error}") from error
    except ValueError as error:
        raise ReportError(f"{path} is not JSON: {error}") from error
    if not isinstance(report, dict) or not isinstance(report.get("summary"), dict):
        raise ReportError(f"{path} is not a load test report (no summary)")
    return report


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _row(figure: str, baseline: Any, candidate: Any, better: str, threshold: float) -> Row:
    a, b = _number(baseline), _number(candidate)
    change = None
    regression = False
    if a is not None and b is not None:
        if a != 0:
            change = (b - a) / abs(a) * 100.0
            worse = -change if better == HIGHER else change
            regression = worse > threshold
        else:  # from zero: any rise of a lower-is-better figure is a regression
            regression = better == LOWER and b > 0
    elif a is not None and b is None:
        regression = True  # B measured nothing where A did (no commits, no latency)
    return Row(figure, a, b, better, change, regression)


def _mean_cpu_per_tx(report: dict[str, Any]) -> float | None:
    figures = [_number(node.get("cpu_seconds_per_committed_tx"))
               for node in (report.get("nodes") or {}).get("by_node", {}).values()]
    known = [value for value in figures if value is not None]
    return sum(known) / len(known) if known else None


def compare(baseline: dict[str, Any], candidate: dict[str, Any], *,
            threshold_percent: float = DEFAULT_THRESHOLD_PERCENT) -> Comparison:
    a, b = baseline["summary"], candidate["summary"]
    rows = [_row("committed tx/s", a.get("committed_tx_per_second"),
                 b.get("committed_tx_per_second"), HIGHER, threshold_percent)]
    a_latency, b_latency = a.get("latency_seconds") or {}, b.get("latency_seconds") or {}
    for name in ("p50", "p95", "p99"):
        rows.append(_row(f"latency {name} (s)", a_latency.get(name), b_latency.get(name),
                         LOWER, threshold_percent))
    rows.append(_row("node CPU per committed tx (s, mean of nodes)", _mean_cpu_per_tx(baseline),
                     _mean_cpu_per_tx(candidate), LOWER, threshold_percent))
    for name in ("failed", "timed_out", "committed_invalid", "rejected"):
        rows.append(_row(name, a.get(name), b.get(name), LOWER, threshold_percent))
    a_types = {row["tx_type"]: row for row in baseline.get("by_type", [])}
    for row in candidate.get("by_type", []):
        before = a_types.get(row["tx_type"])
        if before is not None:
            rows.append(_row(f"{row['tx_type']} p99 (ms)", before.get("p99_ms"),
                             row.get("p99_ms"), LOWER, threshold_percent))
    notes = _notes(baseline, candidate)
    a_check = (baseline.get("chain_check") or {}).get("status")
    b_check = (candidate.get("chain_check") or {}).get("status")
    if a_check == "ok" and b_check != "ok":
        rows.append(Row("chain check ok", 1.0, 0.0, HIGHER, -100.0, True))
    return Comparison(rows, notes)


def _notes(baseline: dict[str, Any], candidate: dict[str, Any]) -> list[str]:
    notes = []
    a_config, b_config = baseline.get("config") or {}, candidate.get("config") or {}
    for name in CONFIG_FIELDS:
        if a_config.get(name) != b_config.get(name):
            notes.append(f"config {name}: {a_config.get(name)!r} -> {b_config.get(name)!r}")
    a_host = (baseline.get("environment") or {}).get("host") or {}
    b_host = (candidate.get("environment") or {}).get("host") or {}
    for name in ("cpu_model", "cpus"):
        if a_host.get(name) != b_host.get(name):
            notes.append(f"host {name}: {a_host.get(name)!r} -> {b_host.get(name)!r}")
    a_nodes = {node.get("version") for node in
               (baseline.get("environment") or {}).get("nodes", [])}
    b_nodes = {node.get("version") for node in
               (candidate.get("environment") or {}).get("nodes", [])}
    if a_nodes != b_nodes:
        notes.append(f"node versions: {sorted(map(str, a_nodes))} -> {sorted(map(str, b_nodes))}")
    if not baseline.get("environment") or not candidate.get("environment"):
        notes.append("a report has no environment section (made by an older load tester)")
    return notes


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def render(comparison: Comparison, names: tuple[str, str], threshold_percent: float) -> str:
    header = ("figure", f"A: {names[0]}", f"B: {names[1]}", "change", "")
    lines = [header]
    for row in comparison.rows:
        change = "-" if row.change_percent is None else f"{row.change_percent:+.1f}%"
        verdict = f"REGRESSION ({row.better} is better)" if row.regression else ""
        lines.append((row.figure, _cell(row.baseline), _cell(row.candidate), change, verdict))
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            .rstrip() for line in lines]
    text += [f"note: {note}" for note in comparison.notes]
    count = len(comparison.regressions)
    text.append(f"{count} regression(s) over {threshold_percent:g}%" if count
                else f"no regression over {threshold_percent:g}%")
    return "\n".join(text)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medledger loadtest compare",
        description="Compare two load test reports (JSON); exit 1 when B regressed.")
    parser.add_argument("baseline", type=Path, help="report A, the baseline")
    parser.add_argument("candidate", type=Path, help="report B, compared against A")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD_PERCENT,
                        help="percent change for the worse that counts as a regression")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    return parser


def main(argv: Sequence[str]) -> int:
    arguments = parser().parse_args(list(argv))
    if not arguments.threshold >= 0:
        print("medledger loadtest compare: --threshold must be >= 0", file=sys.stderr)
        return 2
    try:
        baseline = read_report(arguments.baseline)
        candidate = read_report(arguments.candidate)
    except ReportError as error:
        print(f"medledger loadtest compare: {error}", file=sys.stderr)
        return 2
    comparison = compare(baseline, candidate, threshold_percent=arguments.threshold)
    if arguments.json:
        print(json.dumps({"regressions": len(comparison.regressions),
                          "rows": [asdict(row) for row in comparison.rows],
                          "notes": comparison.notes}, allow_nan=False))
    else:
        print(render(comparison, (arguments.baseline.name, arguments.candidate.name),
                     arguments.threshold))
    return 1 if comparison.regressions else 0
