"""The testnet's HTML report: the fault timeline drawn over throughput and commit latency,
the pass criteria, per-fault recovery, the history check's violations. Self-contained
(inline SVG, no script), in the load test report's style (node.loadtest.report).
"""

from __future__ import annotations

import html
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node.loadtest.report import COLOURS, STYLE, _frame, _svg, _table

FAULT_COLOURS = {"kill": "#d62728", "pause": "#ff7f0e", "link-down": "#9467bd",
                 "blackhole": "#8c564b", "leader-cut": "#e377c2", "membership": "#17becf",
                 "disk-full": "#7f7f7f"}
BIN_S = 1.0


def per_second(acks: Sequence[dict[str, Any]], origin: float,
               end_s: float) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(throughput tx/s, median latency ms) per one-second bin since ``origin``."""
    bins: dict[int, list[float]] = {}
    for ack in acks:
        latency_ms = (ack["t"] - ack["sent"]) * 1000
        bins.setdefault(int((ack["t"] - origin) // BIN_S), []).append(latency_ms)
    seconds = range(0, int(end_s) + 1)
    throughput = [(float(second), len(bins.get(second, [])) / BIN_S) for second in seconds]
    latency = [(float(second), statistics.median(bins[second])) for second in seconds
               if bins.get(second)]
    return throughput, latency


def timeline_chart(points: Sequence[tuple[float, float]], faults: Sequence[dict[str, Any]], *,
                   title: str, y_label: str, end_s: float) -> str:
    y_high = max([y for _, y in points] + [1.0]) * 1.1
    parts, place = _frame((0.0, max(end_s, 1.0)), (0.0, y_high),
                          "seconds since the workload started", y_label)
    for fault in faults:
        left, top = place(fault["start_s"], y_high)
        right, bottom = place(fault["end_s"], 0.0)
        colour = FAULT_COLOURS.get(fault["kind"], "#bbbbbb")
        parts.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{max(right - left, 1):.1f}" '
                     f'height="{bottom - top:.1f}" fill="{colour}" fill-opacity="0.18">'
                     f'<title>{html.escape(fault["kind"])} {html.escape(fault["target"])}'
                     '</title></rect>')
        parts.append(f'<text x="{left + 2:.1f}" y="{top + 12:.1f}" font-size="10" '
                     f'fill="{colour}">{html.escape(fault["kind"])}</text>')
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (place(*point) for point in points))
    if path:
        parts.append(f'<polyline fill="none" stroke="{COLOURS[0]}" stroke-width="1.5" '
                     f'points="{path}"/>')
    return _svg(parts, title)


def render_html(result: dict[str, Any], acks: Sequence[dict[str, Any]], origin: float) -> str:
    faults = result["faults"]
    end_s = max([fault["end_s"] for fault in faults] + [ack["t"] - origin for ack in acks] + [1.0])
    throughput, latency = per_second(acks, origin, end_s)
    title = f"medledger testnet seed {result['seed']}: {'PASS' if result['pass'] else 'FAIL'}"
    criteria = [(name, "ok" if ok else "FAILED") for name, ok in result["criteria"].items()]
    fault_rows = [[f"{fault['start_s']:.1f}", f"{fault['hold_s']:.1f}", fault["kind"],
                   fault["target"], _seconds(fault.get("to_commit_s")),
                   _seconds(fault.get("heal_to_commit_s")),
                   _seconds(fault.get("heal_to_connected_s")),
                   fault.get("note", "")] for fault in faults]
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Replay: <code>{html.escape(result['replay'])}</code></p>",
        "<h2>Pass criteria</h2>", _table(criteria, ("criterion", "result")),
        "<h2>Throughput (acknowledged tx/s) under the fault timeline</h2>",
        timeline_chart(throughput, faults, title="throughput", y_label="tx/s", end_s=end_s),
        "<h2>Commit latency (median per second, ms) under the fault timeline</h2>",
        timeline_chart(latency, faults, title="latency", y_label="ms", end_s=end_s),
        "<h2>Faults</h2>",
        _table(fault_rows, ("start s", "held s", "kind", "target", "to next commit s",
                            "heal to commit s", "heal to all connected s", "note")),
        "<h2>Result</h2>",
        f"<pre>{html.escape(json.dumps(result, indent=2, default=str))}</pre>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(sections) + "</body></html>\n")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_report(directory: Path, name: str, result: dict[str, Any],
                 acks: Sequence[dict[str, Any]], origin: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    path = directory / f"{name}.html"
    path.write_text(render_html(result, acks, origin))
    return path
