"""Where a node's CPU goes, by subsystem, while the load tester drives it.

Each node process is sampled by py-spy (``record --threads --nonblocking``: it never
pauses the node) for the profiled window, and its threads' CPU is read from
``/proc/<pid>/task/<tid>/stat`` before and after. Each Python thread's measured CPU is
split over subsystems in the proportion of its samples; a sample belongs to the subsystem
of its innermost frame that names one (a tx decoded inside apply is apply, the same
decode inside admission is admission; the shared storage layer, storage/database.py, is
its caller's: the raft log's or the block store's). Threads py-spy never saw run no
Python: LevelDB's background compaction and other native threads. The node's child
processes (the signature-check workers) are counted from /proc on their own. So the
rows add up to the CPU /proc measured, not to a sampling estimate.

py-spy is in the ``test`` extra; it needs ptrace rights over the node (root, or the
same user with ``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import LocalError
from node.loadtest.system import thread_cpu_seconds, tree_cpu_seconds

SAMPLE_RATE_HZ = 100
PY_SPY_STOP_TIMEOUT_S = 30.0

NATIVE = "native threads (LevelDB background, other C)"
WORKERS = "signature-check worker processes"
OTHER = "other Python"
# (subsystem, path fragments): the first rule a frame's file matches names it.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("raft log persistence", ("storage/raftlog.py",)),
    ("apply (rules, chain, storage)", (
        "node/chain.py", "node/applier.py", "node/follower.py", "ledger/app/",
        "ledger/evaluation.py", "ledger/block.py", "ledger/merkle.py",
        "storage/blockstore.py", "storage/store.py")),
    ("admission and signatures", (
        "node/admission.py", "ledger/validation.py", "ledger/crypto.py", "cryptography/",
        "nacl/", "concurrent/futures/")),
    ("mempool and forwarding", ("node/mempool.py", "node/forwarding.py")),
    ("raft", ("consensus/", "node/raft_driver.py", "node/p2p/raft_link.py")),
    ("gossip", ("node/p2p/gossip.py", "libp2p/pubsub/")),
    ("py-libp2p (noise, yamux, swarm)", ("libp2p/", "multiaddr/", "noise/")),
    ("p2p, ours (streams, sync, hello)", ("node/p2p/",)),
    ("rpc and json", ("node/rpc/", "node/feeds.py", "node/api.py", "json/", "h11/",
                      "wsproto/", "hypercorn/", "starlette/", "anyio/")),
    ("logs and metrics", ("structlog/", "logging/", "prometheus_client/", "node/logs.py",
                          "node/metrics.py")),
    ("trio scheduling", ("trio/", "outcome/", "sniffio/")),
)
CATEGORIES = (*[name for name, _ in RULES], OTHER, NATIVE, WORKERS)


class ProfileError(LocalError):
    """py-spy is missing or could not attach."""


def category_of(frames: Sequence[str]) -> str:
    """The subsystem of a stack (outermost frame first): its innermost named one."""
    for frame in reversed(frames):
        path = _path_of(frame)
        for name, fragments in RULES:
            if any(fragment in path for fragment in fragments):
                return name
    return OTHER


def _path_of(frame: str) -> str:
    """``func (path/file.py:123)`` -> ``path/file.py``."""
    start = frame.rfind(" (")
    if start < 0 or not frame.endswith(")"):
        return ""
    return frame[start + 2:-1].rsplit(":", 1)[0]


def parse_raw(lines: Iterable[str]) -> dict[int, Counter[str]]:
    """py-spy's ``--format raw --threads`` output -> thread id -> samples by subsystem."""
    threads: dict[int, Counter[str]] = {}
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack.startswith("thread (") or not count.isdigit():
            continue
        head, *frames = stack.split(";")
        tid = int(head[len("thread ("):head.index(")")])
        threads.setdefault(tid, Counter())[category_of(frames)] += int(count)
    return threads


def attribute(samples: dict[int, Counter[str]], thread_cpu: dict[int, float],
              workers_cpu: float) -> dict[str, float]:
    """CPU seconds by subsystem: each sampled thread's CPU split by its samples, the
    unsampled threads' as native, the child processes' as workers."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for tid, cpu in thread_cpu.items():
        counts = samples.get(tid)
        if not counts:
            totals[NATIVE] += cpu
            continue
        total = sum(counts.values())
        for name, count in counts.items():
            totals[name] += cpu * count / total
    totals[WORKERS] += max(workers_cpu, 0.0)
    return totals


def py_spy_path() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise ProfileError("py-spy is not installed: pip install 'medledger[test]'")
    return found


@dataclass(slots=True)
class NodeProfile:
    """One node's profile over a window: ``start()``, then ``stop()``."""

    name: str
    pid: int
    output: Path
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    _process: subprocess.Popen[bytes] | None = None
    _threads_before: dict[int, float] = field(default_factory=dict)
    _total_before: float = 0.0

    def start(self) -> None:
        self._process = subprocess.Popen(
            [py_spy_path(), "record", "--pid", str(self.pid), "--threads", "--nonblocking",
             "--rate", str(SAMPLE_RATE_HZ), "--format", "raw", "-o", str(self.output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._threads_before = thread_cpu_seconds(self.pid)
        self._total_before = tree_cpu_seconds(self.pid)

    def stop(self) -> None:
        threads_after = thread_cpu_seconds(self.pid)
        total_after = tree_cpu_seconds(self.pid)
        process = self._process
        assert process is not None, "start() first"
        process.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        try:
            _, errors = process.communicate(timeout=PY_SPY_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise ProfileError(f"py-spy on {self.name} did not stop") from None
        if not self.output.exists():
            raise ProfileError(f"py-spy on {self.name} (pid {self.pid}) wrote nothing: "
                               f"{errors.decode(errors='replace').strip()[-300:]}")
        threads = {tid: after - self._threads_before.get(tid, 0.0)
                   for tid, after in threads_after.items()}
        own = sum(threads.values())
        workers = (total_after - self._total_before) - own
        with self.output.open() as lines:
            samples = parse_raw(lines)
        self.samples = sum(sum(counts.values()) for counts in samples.values())
        self.cpu_seconds = attribute(samples, threads, workers)


@contextmanager
def profiling(nodes: Sequence[tuple[str, int]], directory: Path) -> Iterator[list[NodeProfile]]:
    """Profile ``nodes`` (name, pid) while the block runs."""
    profiles = [NodeProfile(name, pid, directory / f"{name}.pyspy.txt") for name, pid in nodes]
    for profile in profiles:
        profile.start()
    try:
        yield profiles
    finally:
        for profile in profiles:
            profile.stop()


def table(profiles: Sequence[NodeProfile], committed: int) -> dict[str, dict[str, float]]:
    """Per node: CPU µs per committed tx by subsystem, and the total."""
    result: dict[str, dict[str, float]] = {}
    for profile in profiles:
        per_tx = {name: round(seconds / committed * 1e6, 1) if committed else 0.0
                  for name, seconds in profile.cpu_seconds.items()}
        per_tx["total"] = round(sum(profile.cpu_seconds.values()) / committed * 1e6, 1) \
            if committed else 0.0
        result[profile.name] = per_tx
    return result


def render_table(per_node: dict[str, dict[str, float]]) -> str:
    names = list(per_node)
    rows = [("subsystem (CPU µs per committed tx)", *names)]
    for category in (*CATEGORIES, "total"):
        rows.append((category, *(f"{per_node[name].get(category, 0.0):,.1f}"
                                 for name in names)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                               for column, (cell, width) in enumerate(zip(row, widths,
                                                                          strict=True)))
                     for row in rows)
