"""The load test report: one JSON document, and a self-contained HTML page of it.

The HTML has no script and loads nothing: its charts are SVG drawn here (throughput over
time, the latency histogram, latency percentiles over time, node CPU over time), so it
opens anywhere, offline, and renders the same in a headless browser. Its tables give the
figures per tx type (sent, committed, invalid by reason, latency percentiles), the tx mix
that ran (and the configured types left out, with the reason), each node's CPU, memory
and open files from its /metrics, local processes from /proc, and the environment (the
load tester's and each node's software, the host's CPU); a chart gives the latency CDF.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHART_WIDTH_PIXELS = 880
CHART_HEIGHT_PIXELS = 260
MARGIN_LEFT_PIXELS = 64
MARGIN_RIGHT_PIXELS = 16
MARGIN_TOP_PIXELS = 16
MARGIN_BOTTOM_PIXELS = 40
TICKS = 5
LEGEND_LINE_PIXELS = 16
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")

Point = tuple[float, float]
NOTHING = "-"


def write_reports(report: dict[str, Any], directory: Path, name: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{name}.json"
    html_path = directory / f"{name}.html"
    json_path.write_text(json.dumps(report, indent=2, allow_nan=False, default=_json_default)
                         + "\n")
    html_path.write_text(render_html(report))
    return json_path, html_path


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return sorted(value)
    raise TypeError(type(value).__name__)


# ---- numbers ----------------------------------------------------------------------------------


def _nice_step(span: float) -> float:
    raw = span / TICKS if span > 0 else 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def _format(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NOTHING
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _decimals(step: float) -> int:
    """Digits after the point that tell ticks ``step`` apart."""
    if step >= 1:
        return 0 if float(step).is_integer() else 1
    return min(6, math.ceil(-math.log10(step)) + 1)


def _milliseconds(value: float | None) -> str:
    return NOTHING if value is None else f"{value * 1000:,.1f} ms"


# ---- SVG charts -------------------------------------------------------------------------------


def _frame(x_range: tuple[float, float], y_range: tuple[float, float], x_label: str,
           y_label: str, *, x_ticks: bool = True) -> tuple[list[str], Any]:
    plot_width = CHART_WIDTH_PIXELS - MARGIN_LEFT_PIXELS - MARGIN_RIGHT_PIXELS
    plot_height = CHART_HEIGHT_PIXELS - MARGIN_TOP_PIXELS - MARGIN_BOTTOM_PIXELS
    (x_low, x_high), (y_low, y_high) = x_range, y_range
    x_span, y_span = (x_high - x_low) or 1.0, (y_high - y_low) or 1.0

    def place(x: float, y: float) -> tuple[float, float]:
        return (MARGIN_LEFT_PIXELS + (x - x_low) / x_span * plot_width,
                MARGIN_TOP_PIXELS + plot_height - (y - y_low) / y_span * plot_height)

    parts = [
        f'<rect x="{MARGIN_LEFT_PIXELS}" y="{MARGIN_TOP_PIXELS}" width="{plot_width}" '
        f'height="{plot_height}" fill="#fbfbfb" stroke="#999"/>'
    ]
    step = _nice_step(y_span)
    tick = math.ceil(y_low / step) * step
    while tick <= y_high + step * 1e-9:
        _, y = place(x_low, tick)
        parts.append(f'<line x1="{MARGIN_LEFT_PIXELS}" x2="{MARGIN_LEFT_PIXELS + plot_width}" '
                     f'y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{MARGIN_LEFT_PIXELS - 6}" y="{y + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{_format(tick, _decimals(step))}</text>')
        tick += step
    x_step = _nice_step(x_span)
    tick = math.ceil(x_low / x_step) * x_step
    while x_ticks and tick <= x_high + x_step * 1e-9:
        x, _ = place(tick, y_low)
        parts.append(f'<text x="{x:.1f}" y="{MARGIN_TOP_PIXELS + plot_height + 16}" '
                     f'font-size="11" text-anchor="middle">{_format(tick, _decimals(x_step))}'
                     '</text>')
        tick += x_step
    parts.append(f'<text x="{MARGIN_LEFT_PIXELS + plot_width / 2}" '
                 f'y="{CHART_HEIGHT_PIXELS - 6}" font-size="12" text-anchor="middle">'
                 f'{html.escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{MARGIN_TOP_PIXELS + plot_height / 2}" font-size="12" '
                 f'text-anchor="middle" transform="rotate(-90 14 '
                 f'{MARGIN_TOP_PIXELS + plot_height / 2})">{html.escape(y_label)}</text>')
    return parts, place


def _svg(parts: Sequence[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH_PIXELS}" '
            f'height="{CHART_HEIGHT_PIXELS}" role="img" aria-label="{html.escape(title)}">'
            + "".join(parts) + "</svg>")


def line_chart(series: Sequence[tuple[str, Sequence[Point]]], *, title: str, x_label: str,
               y_label: str) -> str:
    """Lines over a shared x axis; None values break a line. A legend names each."""
    points = [point for _, line in series for point in line]
    if not points:
        return f'<p class="empty">{html.escape(title)}: no data</p>'
    x_range = (min(x for x, _ in points), max(x for x, _ in points))
    y_range = (0.0, max(max(y for _, y in points), 1e-9) * 1.05)
    parts, place = _frame(x_range, y_range, x_label, y_label)
    for index, (name, line) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (place(*point) for point in line))
        if path:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                         f'points="{path}"/>')
        legend_y = MARGIN_TOP_PIXELS + 6 + index * LEGEND_LINE_PIXELS
        parts.append(f'<rect x="{MARGIN_LEFT_PIXELS + 10}" y="{legend_y}" width="12" '
                     f'height="12" fill="{colour}"/>')
        parts.append(f'<text x="{MARGIN_LEFT_PIXELS + 26}" y="{legend_y + 10}" '
                     f'font-size="12">{html.escape(name)}</text>')
    return _svg(parts, title)


def bar_chart(labels: Sequence[str], counts: Sequence[int], *, title: str, x_label: str,
              y_label: str) -> str:
    if not counts:
        return f'<p class="empty">{html.escape(title)}: no data</p>'
    parts, place = _frame((0.0, float(len(counts))), (0.0, max(counts) * 1.05 or 1.0),
                          x_label, y_label, x_ticks=False)
    every = max(1, len(labels) // 10)
    for index, count in enumerate(counts):
        left, top = place(index + 0.1, count)
        right, bottom = place(index + 0.9, 0)
        parts.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" '
                     f'height="{bottom - top:.1f}" fill="{COLOURS[0]}"><title>'
                     f'{html.escape(labels[index])}: {count}</title></rect>')
        if index % every == 0:
            parts.append(f'<text x="{(left + right) / 2:.1f}" y="{bottom + 14:.1f}" '
                         f'font-size="10" text-anchor="middle">{html.escape(labels[index])}'
                         f'</text>')
    return _svg(parts, title)


# ---- the page ---------------------------------------------------------------------------------


def _pairs(xs: Sequence[float], ys: Sequence[float | None]) -> list[Point]:
    return [(float(x), float(y)) for x, y in zip(xs, ys, strict=True) if y is not None]


def _charts(report: dict[str, Any]) -> list[tuple[str, str]]:
    series = report.get("series", {})
    seconds = series.get("second", [])
    charts = [(
        "Throughput over time",
        line_chart([("submitted tx/s", _pairs(seconds, series.get("submitted", []))),
                    ("committed tx/s", _pairs(seconds, series.get("committed", [])))],
                   title="throughput", x_label="seconds into the measured round",
                   y_label="tx/s"),
    )]
    histogram = report.get("latency_histogram", {})
    edges = histogram.get("edges_seconds", [])
    labels = [f"{edge * 1000:,.0f}" if edge >= 0.1 else f"{edge * 1000:.3g}"
              for edge in edges[:-1]]
    charts.append(("Commit latency histogram", bar_chart(
        labels, histogram.get("counts", []), title="latency histogram",
        x_label="latency, ms (lower bin edge, logarithmic bins)", y_label="txs")))
    cdf = report.get("latency_cdf", [])
    if cdf:
        charts.append(("Commit latency CDF", line_chart(
            [("share of txs committed within", [(latency * 1000, share)
                                                for latency, share in cdf])],
            title="latency cdf", x_label="latency, ms", y_label="share of txs")))
    percentile_lines = [
        (name, [(x, y * 1000) for x, y in _pairs(seconds, series.get(key, []))])
        for name, key in (("p50", "latency_p50_seconds"), ("p95", "latency_p95_seconds"),
                          ("p99", "latency_p99_seconds"))
    ]
    charts.append(("Latency percentiles over time", line_chart(
        percentile_lines, title="latency percentiles",
        x_label="seconds into the measured round (by commit time)", y_label="latency, ms")))
    processes = [*report.get("resources", {}).get("series", []),
                 *report.get("nodes", {}).get("series", [])]
    cpu_lines = [(process["name"], _pairs(process["seconds"], process["cores"]))
                 for process in processes]
    if cpu_lines:
        charts.append(("CPU of each process over time", line_chart(
            cpu_lines, title="cpu", x_label="seconds since the warm-up started",
            y_label="cores used")))
    return charts


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    summary = report["summary"]
    latency = summary["latency_seconds"]
    check = report.get("chain_check", {})
    return [
        ("Send rate", f"{_format(summary['send_rate_tx_per_second'])} tx/s"),
        ("Committed throughput", f"{_format(summary['committed_tx_per_second'])} tx/s"),
        ("Latency p50 / p95 / p99", " / ".join(
            _milliseconds(latency[key]) for key in ("p50", "p95", "p99"))),
        ("Latency max", _milliseconds(latency["max"])),
        ("Submitted", str(summary["submitted"])),
        ("Committed (valid)", str(summary["committed"])),
        ("Committed, latency unknown", str(summary.get("committed_without_latency", 0))),
        ("Committed invalid", f"{summary['committed_invalid']} "
                              f"{json.dumps(summary['invalid_by_reason'])}"),
        ("Rejected at submit", f"{summary['rejected']} "
                               f"{json.dumps(summary['rejected_by_reason'])}"),
        ("Failed", str(summary["failed"])),
        ("Timed out", str(summary["timed_out"])),
        ("Chain check", str(check.get("status", "not run"))),
        ("Host", _host(report.get("resources", {}))),
    ]


def _host(resources: dict[str, Any]) -> str:
    """How busy the machine was: a shared host starves the nodes."""
    busy = resources.get("host_busy_cores")
    load = resources.get("load_average_before") or [None]
    return (f"{resources.get('cpus', '?')} cores, {_format(busy, 2)} busy (all processes), "
            f"load average {_format(load[0], 2)}")


def _resource_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for process in report.get("resources", {}).get("measured_window", []):
        rss = process.get("rss_bytes_max")
        rows.append([process["name"], str(process["pid"]), _format(process.get("cores_used"), 2),
                     _mebibytes(rss)])
    return rows


def _mebibytes(value: float | None) -> str:
    return NOTHING if value is None else f"{value / 2**20:,.0f} MiB"


def _share(value: float | None) -> str:
    return NOTHING if value is None else f"{value:.1%}"


def _mix_rows(report: dict[str, Any]) -> list[list[str]]:
    return [[row["tx_type"], str(row["weight"]), _share(row["configured_share"]),
             str(row["submitted"]), _share(row["submitted_share"]), str(row["committed"])]
            for row in report.get("mix", {}).get("by_type", [])]


def _left_out_rows(report: dict[str, Any]) -> list[list[str]]:
    return [[item["tx_type"], str(item["weight"]),
             "all" if item["all_lanes"] else ", ".join(str(lane) for lane in item["lanes"]),
             item["reason"]]
            for item in report.get("mix", {}).get("left_out", [])]


def _node_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for url, figures in report.get("nodes", {}).get("by_node", {}).items():
        per_tx = figures.get("cpu_seconds_per_committed_tx")
        rows.append([url, _format(figures.get("cpu_seconds"), 2),
                     _format(figures.get("cores_used"), 2),
                     NOTHING if per_tx is None else f"{per_tx * 1000:,.3f} ms",
                     _mebibytes(figures.get("rss_bytes_first")),
                     _mebibytes(figures.get("rss_bytes_last")),
                     _mebibytes(figures.get("rss_bytes_max")),
                     _format(figures.get("open_fds_max"), 0)])
    return rows


def _stage_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for url, stages in report.get("node_stages", {}).items():
        for stage, values in sorted(stages.items()):
            rows.append([url, stage, _format(values.get("seconds"), 2),
                         _format(values.get("count"), 0),
                         _milliseconds(values.get("mean_seconds"))])
    return rows


STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px;
       color: #222; max-width: 960px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
th { background: #f0f0f0; } .empty { color: #888; } pre { font-size: 12px; }
"""


def _type_rows(report: dict[str, Any]) -> list[list[str]]:
    return [[row["tx_type"], str(row["submitted"]), str(row["committed"]), str(row["invalid"]),
             json.dumps(row["invalid_by_reason"]) if row["invalid_by_reason"] else NOTHING,
             *(_format(row.get(f"{name}_ms")) for name in ("p50", "p95", "p99"))]
            for row in report.get("by_type", [])]


def _environment_rows(report: dict[str, Any]) -> list[list[str]]:
    environment = report.get("environment") or {}
    if not environment:
        return []
    tester, host = environment.get("load_tester", {}), environment.get("host", {})
    memory = host.get("memory_bytes")
    rows = [["load tester", f"medledger {tester.get('version', '?')}, Python "
             f"{tester.get('python', '?')}, " + ", ".join(
                 f"{name} {version}" for name, version in tester.get("libraries", {}).items())],
            ["host", f"{host.get('cpu_model', '?')}, {host.get('cpus', '?')} CPUs, "
             f"{_mebibytes(memory)} memory, {host.get('system', '')} {host.get('kernel', '')}"]]
    for node in environment.get("nodes", []):
        software = (f"medledger {node['version']}, Python {node.get('python', '?')}, "
                    f"libp2p {node.get('libp2p', '?')}" if "version" in node
                    else f"/version failed: {node.get('error', '?')}")
        rows.append([f"node {node.get('url', '?')} ({node.get('role', '?')})", software])
    return rows


def _mix_sections(report: dict[str, Any]) -> list[str]:
    """The tx types that ran (measured round), and the configured ones left out, why."""
    rows = _mix_rows(report)
    if not rows:
        return []
    sections = ["<h2>Transaction mix (measured round)</h2>",
                _table(rows, ("type", "weight", "configured share", "submitted",
                              "submitted share", "committed valid"))]
    left_out = _left_out_rows(report)
    if left_out:
        sections += ["<p>Configured types left out:</p>",
                     _table(left_out, ("type", "weight", "lanes", "reason"))]
    return sections


def render_html(report: dict[str, Any]) -> str:
    title = f"medledger load test {report.get('name', '')}"
    sections = [f"<h1>{html.escape(title)}</h1>",
                f"<p>{html.escape(report.get('description', ''))}</p>",
                "<h2>Summary (measured round)</h2>",
                _table(_summary_rows(report), ("measure", "value"))]
    for heading, chart in _charts(report):
        sections += [f"<h2>{html.escape(heading)}</h2>", chart]
    types = _type_rows(report)
    if types:
        sections += ["<h2>By transaction type (measured round)</h2>",
                     _table(types, ("type", "sent", "committed valid", "invalid",
                                    "invalid by reason", "p50 ms", "p95 ms", "p99 ms"))]
    sections += _mix_sections(report)
    nodes = _node_rows(report)
    if nodes:
        window = report["nodes"].get("window_seconds") or [None, None]
        sections += [
            "<h2>Nodes (from their /metrics)</h2>",
            f"<p>{html.escape(report['nodes'].get('source', ''))}; from "
            f"{_format(window[0])} s to {_format(window[1])} s (the measured round and the "
            f"drain), {report['nodes'].get('committed_txs', 0)} committed txs.</p>",
            _table(nodes, ("node", "CPU seconds", "cores used", "CPU per committed tx",
                           "RSS first", "RSS last", "RSS max", "open fds max"))]
    resources = _resource_rows(report)
    if resources:
        sections += ["<h2>Local processes during the measured round (/proc)</h2>",
                     _table(resources, ("process", "pid", "cores used", "RSS max"))]
    stages = _stage_rows(report)
    if stages:
        sections += ["<h2>Node pipeline stages during the measured round</h2>",
                     _table(stages, ("node", "stage", "seconds", "count", "mean"))]
    environment = _environment_rows(report)
    if environment:
        sections += ["<h2>Environment</h2>", _table(environment, ("what", "versions"))]
    sections += ["<h2>Configuration</h2>",
                 f"<pre>{html.escape(json.dumps(report.get('config', {}), indent=2))}</pre>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(sections) + "</body></html>\n")
