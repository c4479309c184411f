"""What the nodes cost while the round runs: CPU, memory and open files of every target
node from its /metrics, CPU and memory of local processes from /proc, and the nodes' own
stage histograms from /metrics.

- :class:`NodeMetricsSampler` keeps each node's standard ``process_*`` metrics
  (``process_cpu_seconds_total``, ``process_resident_memory_bytes``,
  ``process_open_fds``) from its /metrics scrapes: any host, nothing local needed. They
  count the node process only, not its validation worker processes.
- :func:`pid_listening_on` finds the process that listens on a local TCP port (the RPC
  port of a target URL), so local targets need no ``--pid``.
- :class:`ProcessSampler` reads ``/proc/<pid>/stat`` (user + system CPU ticks, the
  process and its descendants, e.g. validation worker processes, which /metrics does not
  count) and ``/proc/<pid>/status`` (VmRSS) once per interval; and the load tester's own
  process and the host's busy CPU, which no /metrics has.
- :func:`stage_totals` reads ``/metrics`` into per-stage sums and counts; the difference
  of two scrapes is what the round cost each stage.

/metrics text is parsed by prometheus_client's parser.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

PROC = Path("/proc")
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# /proc/net/tcp state of a listening socket.
TCP_LISTEN = "0A"
# Samples kept per process: one per second for a day bounds the report.
SAMPLES_MAX = 86_400
# Descendants counted with one process (validation pools have a few).
DESCENDANTS_MAX = 1_000
# The standard process metrics of prometheus_client's ProcessCollector, which the node
# serves on /metrics.
CPU_SECONDS_METRIC = "process_cpu_seconds_total"
RESIDENT_MEMORY_METRIC = "process_resident_memory_bytes"
OPEN_FDS_METRIC = "process_open_fds"


def local_port(url: str) -> int | None:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    return parts.port or (443 if parts.scheme in ("https", "wss") else 80)


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def pid_listening_on(port: int) -> int | None:
    """The process (of ours: /proc/<pid>/fd must be readable) that listens on ``port``."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for descriptor in (entry / "fd").iterdir():
                if os.readlink(descriptor) in wanted:
                    return int(entry.name)
        except OSError:
            continue
    return None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return _after_name((PROC / str(pid) / "stat").read_text())
    except OSError:
        return None


def _process_tree() -> dict[int, list[int]]:
    """Parent pid -> child pids, of every process we can see."""
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _descendants(pid: int, tree: dict[int, list[int]], excluded: set[int]) -> list[int]:
    """``pid`` and its descendants, except ``excluded`` subtrees (processes sampled on
    their own: the nodes bench-cluster started are children of the load tester)."""
    found, stack = [pid], [child for child in tree.get(pid, []) if child not in excluded]
    while stack and len(found) < DESCENDANTS_MAX:
        child = stack.pop()
        found.append(child)
        stack.extend(grandchild for grandchild in tree.get(child, [])
                     if grandchild not in excluded)
    return found


def _after_name(stat_text: str) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    return stat_text[stat_text.rindex(")") + 2:].split()


def _cpu_of(fields: list[str]) -> float:
    # After the name: state(0) ppid(1) ... utime(11) stime(12), in clock ticks.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND


def cpu_seconds(pid: int) -> float | None:
    fields = _stat_fields(pid)
    return None if fields is None else _cpu_of(fields)


def tree_cpu_seconds(pid: int) -> float:
    """CPU of the process and of its descendants (a node's signature-check workers)."""
    return sum(cpu_seconds(process) or 0.0
               for process in _descendants(pid, _process_tree(), set()))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU of every thread of ``pid`` (user + system), by thread id."""
    seconds: dict[int, float] = {}
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return seconds
    for task in tasks:
        try:
            seconds[int(task.name)] = _cpu_of(_after_name((task / "stat").read_text()))
        except OSError:
            continue  # the thread ended
    return seconds


def rss_bytes(pid: int) -> int | None:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass(slots=True)
class ProcessSeries:
    name: str
    pid: int | None  # None: a node seen through its /metrics
    seconds: list[float] = field(default_factory=list)  # since the round started
    cpu_seconds: list[float] = field(default_factory=list)  # cumulative, with descendants
    rss_bytes: list[int] = field(default_factory=list)  # with descendants
    open_fds: list[int] = field(default_factory=list)  # /metrics only; empty from /proc

    def window(self, start_seconds: float, end_seconds: float) -> dict[str, Any]:
        """Cores used (CPU seconds / wall seconds), memory and open files within a window,
        from its first to its last sample."""
        points = [index for index, moment in enumerate(self.seconds)
                  if start_seconds <= moment <= end_seconds]
        if len(points) < 2:
            return {"name": self.name, "pid": self.pid, "cores_used": None,
                    "cpu_seconds": None, "wall_seconds": None, "rss_bytes_max": None,
                    "rss_bytes_mean": None, "rss_bytes_first": None, "rss_bytes_last": None,
                    "open_fds_max": None}
        first, last = points[0], points[-1]
        cpu = self.cpu_seconds[last] - self.cpu_seconds[first]
        wall = self.seconds[last] - self.seconds[first]
        memory = [self.rss_bytes[index] for index in points]
        files = [self.open_fds[index] for index in points] if self.open_fds else []
        return {
            "name": self.name, "pid": self.pid, "cores_used": cpu / wall if wall > 0 else None,
            "cpu_seconds": cpu, "wall_seconds": wall, "rss_bytes_max": max(memory),
            "rss_bytes_mean": sum(memory) // len(memory), "rss_bytes_first": memory[0],
            "rss_bytes_last": memory[-1], "open_fds_max": max(files) if files else None,
        }

    def cores_series(self) -> list[float | None]:
        """Cores used between consecutive samples (the first sample has none)."""
        values: list[float | None] = [None] if self.seconds else []
        for index in range(1, len(self.seconds)):
            wall = self.seconds[index] - self.seconds[index - 1]
            cpu = self.cpu_seconds[index] - self.cpu_seconds[index - 1]
            values.append(cpu / wall if wall > 0 else None)
        return values


def host_busy_cpu_seconds() -> float | None:
    """CPU seconds every process on the machine spent busy (all cores): /proc/stat."""
    try:
        first = (PROC / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # cpu user nice system idle iowait irq softirq steal ...: busy = all but idle, iowait.
    values = [int(value) for value in first[1:9]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS_PER_SECOND


def load_average() -> list[float]:
    try:
        return [float(value) for value in (PROC / "loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


HOST_SERIES_NAME = "host (every process)"


class ProcessSampler:
    """Samples named processes (and their descendants), and the whole machine's busy CPU
    (how much the rest of the host took from the nodes); call :meth:`sample`
    periodically."""

    def __init__(self, processes: Sequence[tuple[str, int]]) -> None:
        self.series = [ProcessSeries(name, pid) for name, pid in processes]
        self.pids = [pid for _, pid in processes]
        self.host = ProcessSeries(HOST_SERIES_NAME, 0)

    def sample(self, seconds: float) -> None:
        busy = host_busy_cpu_seconds()
        if busy is not None and len(self.host.seconds) < SAMPLES_MAX:
            self.host.seconds.append(seconds)
            self.host.cpu_seconds.append(busy)
            self.host.rss_bytes.append(0)
        tree = _process_tree()
        sampled = set(self.pids)
        for series, root in zip(self.series, self.pids, strict=True):
            if len(series.seconds) >= SAMPLES_MAX:
                continue
            cpu_total, rss_total, alive = 0.0, 0, False
            for pid in _descendants(root, tree, sampled - {root}):
                cpu = cpu_seconds(pid)
                rss = rss_bytes(pid)
                if cpu is None or rss is None:
                    continue
                alive = alive or pid == root
                cpu_total += cpu
                rss_total += rss
            if alive:
                series.seconds.append(seconds)
                series.cpu_seconds.append(cpu_total)
                series.rss_bytes.append(rss_total)


def metric_samples(metrics_text: str) -> list[Sample]:
    """Every sample of a /metrics text; none when it is not Prometheus text (a proxy's
    error page, a truncated answer)."""
    try:
        return [sample for family in text_string_to_metric_families(metrics_text)
                for sample in family.samples]
    except ValueError:
        return []


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    """A node process's standard process metrics at one scrape."""

    cpu_seconds: float
    resident_memory_bytes: int
    open_fds: int


def process_figures(metrics_text: str) -> ProcessFigures | None:
    """The node's process_* metrics, or None when the text lacks one of them."""
    values = {sample.name: sample.value for sample in metric_samples(metrics_text)
              if sample.name in (CPU_SECONDS_METRIC, RESIDENT_MEMORY_METRIC, OPEN_FDS_METRIC)}
    if len(values) < 3:
        return None
    return ProcessFigures(values[CPU_SECONDS_METRIC], int(values[RESIDENT_MEMORY_METRIC]),
                          int(values[OPEN_FDS_METRIC]))


class NodeMetricsSampler:
    """Each target node's process figures over time, from its /metrics scrapes; call
    :meth:`add` with every scrape."""

    def __init__(self) -> None:
        self.series: dict[str, ProcessSeries] = {}
        self.scrapes_without_figures: dict[str, int] = {}  # url -> scrapes

    def add(self, url: str, seconds: float, metrics_text: str) -> None:
        series = self.series.setdefault(url, ProcessSeries(f"node {url}", None))
        figures = process_figures(metrics_text)
        if figures is None:
            self.scrapes_without_figures[url] = self.scrapes_without_figures.get(url, 0) + 1
            return
        if len(series.seconds) >= SAMPLES_MAX:
            return
        # Scrapes run in more than one task (periodic, and at the round's start and end):
        # keep the series in time order.
        index = bisect.bisect_right(series.seconds, seconds)
        series.seconds.insert(index, seconds)
        series.cpu_seconds.insert(index, figures.cpu_seconds)
        series.rss_bytes.insert(index, figures.resident_memory_bytes)
        series.open_fds.insert(index, figures.open_fds)

    def figures(self, start_seconds: float, end_seconds: float,
                committed_txs: int) -> dict[str, dict[str, Any]]:
        """Per node url: its window figures and CPU seconds per committed tx."""
        result = {}
        for url, series in self.series.items():
            window = series.window(start_seconds, end_seconds)
            cpu = window["cpu_seconds"]
            window["cpu_seconds_per_committed_tx"] = (
                cpu / committed_txs if cpu is not None and committed_txs > 0 else None)
            window["scrapes_without_figures"] = self.scrapes_without_figures.get(url, 0)
            result[url] = window
        return result


def stage_totals(metrics_text: str) -> dict[str, dict[str, float]]:
    """{stage: {"sum_seconds", "count"}} from ``medledger_stage_seconds`` and the node's
    commit latency histogram (as stage ``commit_latency``)."""
    totals: dict[str, dict[str, float]] = {}
    for sample in metric_samples(metrics_text):
        name = sample.name
        if name.startswith("medledger_stage_seconds_") and "stage" in sample.labels:
            stage = sample.labels["stage"]
        elif name.startswith("medledger_commit_latency_seconds_"):
            stage = "commit_latency"
        else:
            continue
        if name.endswith("_sum"):
            totals.setdefault(stage, {})["sum_seconds"] = float(sample.value)
        elif name.endswith("_count"):
            totals.setdefault(stage, {})["count"] = float(sample.value)
    return totals


def stage_difference(before: dict[str, dict[str, float]],
                     after: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    """What happened between two scrapes: per stage seconds, count and mean."""
    difference: dict[str, dict[str, float | None]] = {}
    for stage, values in after.items():
        earlier = before.get(stage, {})
        seconds = values.get("sum_seconds", 0.0) - earlier.get("sum_seconds", 0.0)
        count = values.get("count", 0.0) - earlier.get("count", 0.0)
        difference[stage] = {
            "seconds": seconds, "count": count,
            "mean_seconds": seconds / count if count > 0 else None,
        }
    return difference
