"""scripts/bench-cluster: a 3-validator cluster on 127.0.0.1 under the load tester at
maximum rate; prints ONE JSON line on stdout (report paths and progress on stderr).

Starts every node as its own process (``python -m node.cli start -c node.toml``, the
command the integration tests use) with fresh data directories in a temp directory,
waits for a leader, runs ``medledger loadtest`` (warm-up, then the measured round at the
maximum rate the in-flight bound allows) against all nodes, checks the chain, and stops
exactly the processes it started (SIGTERM, then SIGKILL), on failure too.

Exit status: 0 when the target is met (committed tx/s and p99 latency, nothing failed,
chain check ok), 1 when it is not, 2 when the cluster could not be run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger.errors import MedledgerError  # noqa: E402
from node.client import RpcClient  # noqa: E402
from node.loadtest.command import operating_error, run  # noqa: E402
from node.loadtest.config import LoadtestConfig, validate  # noqa: E402
from node.loadtest.profile import NodeProfile, profiling, render_table  # noqa: E402
from node.loadtest.profile import table as profile_table  # noqa: E402
from node.tools.devnet import DevnetNode, create_devnet  # noqa: E402

CHAIN_ID = "medledger-bench"
VALIDATORS = 3
TARGET_TX_PER_SECOND = 3_000
TARGET_P99_SECONDS = 1.0
READY_TIMEOUT_SECONDS = 90.0
STOP_GRACE_SECONDS = 15.0
KILL_WAIT_SECONDS = 10.0
# At the target (3,000 tx/s, p99 <= 1 s) Little's law puts about 3,000 txs in flight:
# a deeper bound only queues txs in the mempool and adds latency, not throughput.
IN_FLIGHT_TXS_DEFAULT = 3_000
# Pre-signed txs per second of warm-up + round: above what this machine commits today;
# the report says when the pool ran out (the round then ends early, measured honestly).
EXPECTED_TX_PER_SECOND_DEFAULT = 4_000.0


class Stop(Exception):
    """SIGTERM or SIGINT: unwind, stopping the cluster on the way out."""


def _on_signal(number: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(number).name)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench-cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--duration", type=float, default=30.0, help="measured seconds (30)")
    add("--warmup", type=float, default=5.0, help="warm-up seconds (5)")
    add("--workers", type=int, default=3, help="submitters, spread over the nodes (3)")
    add("--in-flight", type=int, default=IN_FLIGHT_TXS_DEFAULT,
        help=f"bound on submitted, uncommitted txs ({IN_FLIGHT_TXS_DEFAULT})")
    add("--expected-rate", type=float, default=EXPECTED_TX_PER_SECOND_DEFAULT,
        help="txs pre-signed per second of the round")
    add("--mix", default="healthcare", choices=("healthcare", "register-party"))
    add("--targets", default="all", choices=("all", "leader"),
        help="submit to every node (default) or only to the leader")
    add("--batch", type=int, default=500, help="txs per tx_submitBatch")
    add("--report-dir", default=str(ROOT / "reports"))
    add("--keep", action="store_true", help="keep the cluster's directory (logs, data)")
    add("--profile", action="store_true",
        help="sample each node with py-spy during the measured round and print its CPU "
             "per committed tx by subsystem (stderr; 'profile' in the JSON line)")
    return parser.parse_args()


def start_nodes(directory: Path, nodes: list[DevnetNode]) -> list[subprocess.Popen[bytes]]:
    processes = []
    for node in nodes:
        with open(directory / node.name / "node.log", "ab") as log_file:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "node.cli", "start", "-c",
                 str(directory / node.name / "node.toml")],
                stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            ))
    return processes


def stop_nodes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process we started, then SIGKILL what outlives the grace period."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=KILL_WAIT_SECONDS)


def wait_for_leader(nodes: list[DevnetNode], processes: list[subprocess.Popen[bytes]]) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for node, process in zip(nodes, processes, strict=True):
            if process.poll() is not None:
                raise RuntimeError(f"{node.name} exited with {process.returncode}")
        leaders = set()
        for node in nodes:
            try:
                with RpcClient(node.rpc_url, timeout_s=2.0) as client:
                    leaders.add(client.call("node_status").get("leader_id"))
            except MedledgerError:  # not up yet
                leaders.add(None)
        if None not in leaders and len(leaders) == 1:
            return str(leaders.pop())
        time.sleep(0.5)
    raise RuntimeError(f"no leader within {READY_TIMEOUT_SECONDS} s")


def signalled_nodes(directory: Path, nodes: list[DevnetNode]) -> dict[str, str]:
    """Nodes that logged a shutdown signal (someone else stopped them mid-run)."""
    found = {}
    for node in nodes:
        for text in (directory / node.name / "node.log").read_text(errors="replace").splitlines():
            if '"shutting down"' not in text:
                continue
            try:
                found[node.name] = str(json.loads(text).get("signal"))
            except ValueError:
                found[node.name] = "unknown"
    return found


def leader_url(nodes: list[DevnetNode]) -> str:
    for node in nodes:
        with RpcClient(node.rpc_url, timeout_s=5.0) as client:
            if client.call("node_status").get("role") == "leader":
                return node.rpc_url
    raise RuntimeError("the leader went away")


def loadtest_config(options: argparse.Namespace, urls: list[str]) -> LoadtestConfig:
    config = LoadtestConfig(
        urls=tuple(urls), workers=options.workers, duration_seconds=options.duration,
        warmup_seconds=options.warmup, batch_txs_max=options.batch, controller="maximum",
        in_flight_txs_max=options.in_flight, expected_tx_per_second=options.expected_rate,
        mix=options.mix, report_directory=options.report_dir,
        report_name=f"bench-cluster-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    validate(config)
    return config


def result_line(report: dict[str, Any], nodes: list[DevnetNode],
                paths: tuple[Path, Path]) -> dict[str, Any]:
    summary = report["summary"]
    latency = summary["latency_seconds"]
    windows = {window["name"]: window for window in report["resources"]["measured_window"]}
    cores = {node.name: windows.get(node.name, {}).get("cores_used") for node in nodes}
    throughput = summary["committed_tx_per_second"] or 0.0
    p99 = latency["p99"]
    met = (throughput >= TARGET_TX_PER_SECOND and p99 is not None
           and p99 <= TARGET_P99_SECONDS and summary["failed"] == 0
           and report["chain_check"]["status"] == "ok")
    return {
        "benchmark": "bench-cluster", "validators": VALIDATORS,
        "mix": report["config"]["mix"], "workers": report["config"]["workers"],
        "in_flight_txs_max": report["config"]["in_flight_txs_max"],
        "duration_seconds": summary["duration_seconds"],
        "committed_tx_per_second": round(throughput, 1),
        "send_tx_per_second": summary["send_rate_tx_per_second"],
        "latency_p50_seconds": latency["p50"], "latency_p99_seconds": p99,
        "latency_max_seconds": latency["max"],
        "submitted": summary["submitted"], "committed": summary["committed"],
        "invalid": summary["committed_invalid"], "rejected": summary["rejected"],
        "failed": summary["failed"], "timed_out": summary["timed_out"],
        "cores_used": cores,
        # CPU the three nodes spent per committed tx: what a tx costs the cluster, which
        # with the host's cores bounds the rate on an idle machine.
        "node_cpu_milliseconds_per_tx": (
            round(sum(value for value in cores.values() if value) * 1000 / throughput, 3)
            if throughput else None),
        "loadtest_cores_used": windows.get("loadtest", {}).get(
            "cores_used"),
        "host_cpus": report["resources"]["cpus"],
        "host_busy_cores": report["resources"]["host_busy_cores"],
        "host_load_average_1m": (report["resources"]["load_average_before"] or [None])[0],
        "pool_exhausted": report["pool"]["exhausted"],
        "chain_check": report["chain_check"]["status"],
        "target": f">= {TARGET_TX_PER_SECOND} tx/s, p99 <= {TARGET_P99_SECONDS} s, 0 failed",
        "target_met": met, "report_json": str(paths[0]), "report_html": str(paths[1]),
    }


def bench(options: argparse.Namespace, directory: Path) -> dict[str, Any]:
    nodes = create_devnet(directory, validators=VALIDATORS, observers=0, rpc_port=0,
                          chain_id=CHAIN_ID)
    processes = start_nodes(directory, nodes)
    try:
        wait_for_leader(nodes, processes)
        print(f"bench-cluster: {VALIDATORS} validators up in {directory}", file=sys.stderr)
        urls = ([leader_url(nodes)] if options.targets == "leader"
                else [node.rpc_url for node in nodes])
        named = [(node.name, process.pid) for node, process in zip(nodes, processes,
                                                                    strict=True)]
        profiles: list[NodeProfile] = []

        @contextmanager
        def around_measure() -> Iterator[None]:
            if not options.profile:
                yield
                return
            with profiling(named, directory) as started:
                profiles.extend(started)
                yield

        result = run(loadtest_config(options, urls), stream=sys.stderr, processes=named,
                     around_measure=around_measure)
        print(f"bench-cluster: reports {result.json_path} {result.html_path}",
              file=sys.stderr)
        line = result_line(result.report, nodes, (result.json_path, result.html_path))
        exited = {node.name: process.returncode for node, process in zip(nodes, processes,
                                                                         strict=True)
                  if process.poll() is not None}
        if profiles:
            per_node = profile_table(profiles, result.report["summary"]["committed"])
            print("bench-cluster: node CPU by subsystem over the measured round and the "
                  "drain (py-spy samples split each thread's /proc CPU)\n"
                  + render_table(per_node), file=sys.stderr)
            line["profile_cpu_us_per_tx"] = per_node
            line["profile_samples"] = {profile.name: profile.samples for profile in profiles}
        line["nodes_exited"] = exited  # a node that died under load (see its node.log)
        line["nodes_signalled"] = signalled_nodes(directory, nodes)  # not by us: we stop later
        line["target_met"] = line["target_met"] and not exited
        return line
    finally:
        stop_nodes(processes)


def run_benchmark(name: str, options: argparse.Namespace,
                  bench_in: Callable[[argparse.Namespace, Path], dict[str, Any]]) -> int:
    """Run ``bench_in(options, directory)`` in a fresh temp directory, stopping on SIGTERM
    or SIGINT; print its JSON line (or the error's); keep the directory on failure or
    ``--keep``. Exit 0 when the line's target was met, 1 when not, 2 when it could not run."""
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _on_signal)
    directory = Path(tempfile.mkdtemp(prefix=f"medledger-{name}-"))
    failed = True
    try:
        line = bench_in(options, directory)
        failed = bool(line["nodes_exited"] or line["nodes_signalled"] or line.get("failed")
                      or line.get("chain_check", "ok") != "ok")
    except (Stop, RuntimeError, OSError, MedledgerError, BaseExceptionGroup) as error:
        cause = operating_error(error) if isinstance(error, BaseExceptionGroup) else error
        if cause is None:
            raise
        print(json.dumps({"benchmark": name, "error": str(cause),
                          "directory": str(directory)}))
        return 2
    finally:
        if options.keep or failed:
            print(f"{name}: cluster directory kept: {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(line))
    return 0 if line["target_met"] else 1


def main() -> int:
    return run_benchmark("bench-cluster", arguments(), bench)


if __name__ == "__main__":
    sys.exit(main())
