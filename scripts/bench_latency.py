"""scripts/bench-latency: commit latency at fixed rates on a 3-validator cluster; prints
ONE JSON line on stdout (progress and report paths on stderr).

Starts the cluster as bench-cluster does (one process per node, fresh data in a temp
directory, 127.0.0.1), then drives it with the load tester's fixed-rate controller at
each rate in turn (default 100, 500, 1,000 and 2,000 tx/s; a warm-up, then the measured
seconds), submitting to every node, and reports per rate:
``"rate_100": {"p50_ms", "p95_ms", "p99_ms", "committed_tx_per_second", ...}``.
Targets: at 100 tx/s p50 <= 50 ms and p99 <= 150 ms; at 1,000 tx/s p99 <= 300 ms; nothing
failed and the chain check ok at every rate. Exit 0 when met, 1 when not, 2 when the
cluster could not be run. Stops exactly the processes it started, on failure too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench_cluster import (
    CHAIN_ID,
    ROOT,
    VALIDATORS,
    run_benchmark,
    signalled_nodes,
    start_nodes,
    stop_nodes,
    wait_for_leader,
)

from node.loadtest.command import run
from node.loadtest.config import LoadtestConfig, validate
from node.tools.devnet import create_devnet

RATES_DEFAULT = (100, 500, 1000, 2000)
# rate -> (p50 ms at most or None, p99 ms at most)
TARGETS_MS: dict[int, tuple[float | None, float | None]] = {
    100: (50.0, 150.0), 1000: (None, 300.0)}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench-latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--rates", default=",".join(map(str, RATES_DEFAULT)),
        help="comma-separated fixed rates, tx/s (100,500,1000,2000)")
    add("--duration", type=float, default=20.0, help="measured seconds per rate (20)")
    add("--warmup", type=float, default=5.0, help="warm-up seconds per rate (5)")
    add("--workers", type=int, default=3, help="submitters, spread over the nodes (3)")
    add("--batch", type=int, default=50, help="largest tx_submitBatch (50)")
    add("--report-dir", default=str(ROOT / "reports"))
    add("--keep", action="store_true", help="keep the cluster's directory (logs, data)")
    return parser.parse_args()


def config_for(options: argparse.Namespace, urls: list[str], rate: int) -> LoadtestConfig:
    config = LoadtestConfig(
        urls=tuple(urls), workers=options.workers, duration_seconds=options.duration,
        warmup_seconds=options.warmup, batch_txs_max=options.batch, controller="fixed",
        tx_per_second=float(rate), in_flight_txs_max=max(1000, rate * 5),
        report_directory=options.report_dir,
        report_name=f"bench-latency-{rate}-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    validate(config)
    return config


def figures(report: dict[str, Any]) -> dict[str, Any]:
    summary = report["summary"]
    latency = summary["latency_seconds"]

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {
        "p50_ms": ms(latency["p50"]), "p95_ms": ms(latency["p95"]), "p99_ms": ms(latency["p99"]),
        "max_ms": ms(latency["max"]),
        "committed_tx_per_second": round(summary["committed_tx_per_second"] or 0.0, 1),
        "send_tx_per_second": round(summary["send_rate_tx_per_second"] or 0.0, 1),
        "failed": summary["failed"], "timed_out": summary["timed_out"],
        "invalid": summary["committed_invalid"], "rejected": summary["rejected"],
        "chain_check": report["chain_check"]["status"],
        "host_busy_cores": report["resources"]["host_busy_cores"],
    }


def met(rate: int, row: dict[str, Any]) -> bool:
    ok: bool = row["failed"] == 0 and row["chain_check"] == "ok"
    p50_max, p99_max = TARGETS_MS.get(rate, (None, None))
    if p50_max is not None:
        ok = ok and row["p50_ms"] is not None and row["p50_ms"] <= p50_max
    if p99_max is not None:
        ok = ok and row["p99_ms"] is not None and row["p99_ms"] <= p99_max
    return ok


def bench(options: argparse.Namespace, directory: Path) -> dict[str, Any]:
    rates = [int(rate) for rate in options.rates.split(",")]
    nodes = create_devnet(directory, validators=VALIDATORS, observers=0, rpc_port=0,
                          chain_id=CHAIN_ID)
    processes = start_nodes(directory, nodes)
    try:
        wait_for_leader(nodes, processes)
        urls = [node.rpc_url for node in nodes]
        named = [(node.name, process.pid) for node, process in zip(nodes, processes,
                                                                    strict=True)]
        line: dict[str, Any] = {"benchmark": "bench-latency", "validators": VALIDATORS,
                                "duration_seconds": options.duration}
        all_met = True
        for rate in rates:
            print(f"bench-latency: {rate} tx/s", file=sys.stderr)
            result = run(config_for(options, urls, rate), stream=sys.stderr, processes=named)
            row = figures(result.report)
            row["report_json"] = str(result.json_path)
            line[f"rate_{rate}"] = row
            all_met = met(rate, row) and all_met
        exited = {node.name: process.returncode for node, process in zip(nodes, processes,
                                                                         strict=True)
                  if process.poll() is not None}
        line["nodes_exited"] = exited
        line["nodes_signalled"] = signalled_nodes(directory, nodes)
        line["target"] = ("100 tx/s: p50 <= 50 ms, p99 <= 150 ms; 1,000 tx/s: p99 <= 300 ms; "
                          "0 failed, chain check ok")
        line["target_met"] = all_met and not exited
        return line
    finally:
        stop_nodes(processes)


def main() -> int:
    return run_benchmark("bench-latency", arguments(), bench)


if __name__ == "__main__":
    sys.exit(main())
