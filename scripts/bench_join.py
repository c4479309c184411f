"""bench-join: how long a new observer takes to join a chain by state sync, against full
replay from the same peers, in the same run. Prints ONE JSON line:

``{"txs": …, "height": …, "statesync_seconds": …, "replay_seconds": …, "ratio": …,
"queries_compared": …, "query_mismatches": …, "target_met": …}``, with where the time went:
each observer's ``*_startup_seconds`` (process start to listening, the same work for both),
``statesync_import_seconds`` (fetching and checking the snapshot) and
``statesync_snapshot_height`` (the blocks above it up to the head are applied as usual).

A 3-validator devnet on 127.0.0.1 (one process per node, fresh data in a temp directory,
``[sync] snapshot_interval_blocks`` small enough for several snapshots) commits the load
tester's healthcare mix (``--txs``, default 20,000, at the maximum rate). Then, with the
validators idle, observer A starts with ``[sync] trust_height`` / ``trust_hash`` set to the
validators' head (state sync) and, after it, observer B with neither (full replay); each is
timed from its start to reaching that height. Every party, record, consent and claim the
workload created is then queried on a validator and on both observers: the answers must
be equal. Target: ratio (replay over state sync) >= 5, no mismatch, and both observers at
the head. Exit 0 when met, 1 when not, 2 when the cluster could not be run. Stops exactly
the processes it started, on failure too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench_cluster import run_benchmark, stop_nodes  # noqa: E402

from ledger.errors import MedledgerError  # noqa: E402
from ledger.tx import decode_transaction  # noqa: E402
from ledger.txtypes import TxType  # noqa: E402
from node.client import RpcClient  # noqa: E402
from node.loadtest.command import run  # noqa: E402
from node.loadtest.config import LoadtestConfig, validate  # noqa: E402
from node.tools.devnet import DevnetNode, create_devnet  # noqa: E402

CHAIN_ID = "medledger-bench-join"
VALIDATORS = 3
TARGET_RATIO = 5.0
READY_TIMEOUT_S = 90.0


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench-join", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--txs", type=int, default=20_000, help="workload txs (20,000)")
    parser.add_argument("--snapshot-interval", type=int, default=10,
                        help="[sync] snapshot_interval_blocks of the validators (10)")
    parser.add_argument("--no-replay", action="store_true",
                        help="skip observer B (full replay): state sync and queries only")
    parser.add_argument("--join-timeout", type=float, default=900.0,
                        help="seconds an observer may take to reach the head (900)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's directory")
    return parser.parse_args()


def _start(directory: Path, node: DevnetNode) -> subprocess.Popen[bytes]:
    with open(directory / node.name / "node.log", "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "node.cli", "start", "-c",
             str(directory / node.name / "node.toml")],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _call(node: DevnetNode, method: str, params: dict[str, Any] | None = None) -> Any:
    with RpcClient(node.rpc_url, timeout_s=10.0) as client:
        return client.call(method, params or {})


def _height(node: DevnetNode) -> int:
    try:
        return int(_call(node, "chain_head")["height"])
    except MedledgerError:
        return -1


def _wait(predicate: Any, timeout_s: float, what: str,
          process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the node exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s: {what}")
        time.sleep(0.2)


def _configure(directory: Path, node: DevnetNode, **sync: Any) -> None:
    path = directory / node.name / "node.toml"
    text = path.read_text()
    for key, value in sync.items():
        line = f"{key} = {json.dumps(value)}"
        prefix = f"{key} = "
        lines = [line if existing.startswith(prefix) else existing
                 for existing in text.splitlines()]
        assert line in lines, f"{key} not in {path}"
        text = "\n".join(lines) + "\n"
    path.write_text(text)


def _log_events(path: Path) -> dict[str, tuple[float, dict[str, Any]]]:
    """The first record of each event in a node's JSON log: (its time as a Unix
    timestamp, the record)."""
    events: dict[str, tuple[float, dict[str, Any]]] = {}
    for text in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(text)
            event = str(record["event"])
            if event.startswith("state sync: state imported"):
                event = "state sync: state imported"
            stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            continue
        events.setdefault(event, (stamp.timestamp(), record))
    return events


def _queries(node: DevnetNode, height: int) -> list[tuple[str, dict[str, Any]]]:
    """A query for every party, record, consent and claim the blocks up to ``height``
    created (and each patient's consents and claims)."""
    queries: list[tuple[str, dict[str, Any]]] = []
    patients: set[str] = set()
    with RpcClient(node.rpc_url, timeout_s=30.0) as client:
        for block_height in range(1, height + 1):
            block = client.call("chain_getBlock", {"height": block_height, "full": True})
            for tx in block.get("txs", []):
                decoded = decode_transaction(bytes.fromhex(tx["raw"].removeprefix("0x")))
                body = decoded.body
                if decoded.type is TxType.REGISTER_PARTY:
                    queries.append(("records_party", {"party_id": body.party_id}))
                elif decoded.type is TxType.ANCHOR_RECORD:
                    queries.append(("records_get", {"record_id": body.record_id}))
                    patients.add(body.patient)
                elif decoded.type is TxType.CONSENT_GRANT:
                    queries.append(("consent_get", {"consent_id": body.consent_id}))
                    patients.add(body.patient)
                elif decoded.type is TxType.CLAIM_SUBMIT:
                    queries.append(("claims_get", {"claim_id": body.claim_id}))
                    patients.add(body.patient)
    for patient in sorted(patients):
        queries.append(("consent_byPatient", {"patient": patient}))
        queries.append(("claims_byPatient", {"patient": patient}))
    return queries


def _answers(node: DevnetNode, queries: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    answers = []
    with RpcClient(node.rpc_url, timeout_s=30.0) as client:
        for method, params in queries:
            try:
                answers.append(client.call(method, params))
            except MedledgerError as error:
                answers.append({"error": str(error)})
    return answers


def bench(options: argparse.Namespace, directory: Path) -> dict[str, Any]:
    nodes = create_devnet(directory, validators=VALIDATORS, observers=2, rpc_port=0,
                          chain_id=CHAIN_ID)
    validators, (state_synced, replayed) = nodes[:VALIDATORS], nodes[VALIDATORS:]
    for node in validators:
        _configure(directory, node, snapshot_interval_blocks=options.snapshot_interval)
    processes = [_start(directory, node) for node in validators]
    try:
        for node, process in zip(validators, processes, strict=True):
            _wait(lambda node=node: _height(node) >= 0, READY_TIMEOUT_S,
                  f"{node.name} answering", process)
        config = LoadtestConfig(
            urls=tuple(node.rpc_url for node in validators), workers=3, tx_count=options.txs,
            duration_seconds=3600.0, warmup_seconds=0.0, controller="maximum",
            in_flight_txs_max=3000, expected_tx_per_second=1500.0,
            report_directory=str(directory / "reports"), report_name="bench-join")
        validate(config)
        report = run(config, stream=sys.stderr).report
        summary = report["summary"]
        head = _call(validators[0], "chain_head")
        height, head_hash = int(head["height"]), head["hash"]
        line: dict[str, Any] = {
            "benchmark": "bench-join", "txs": options.txs,
            "committed": summary.get("committed"), "height": height,
            "snapshot_interval_blocks": options.snapshot_interval}

        def join(node: DevnetNode, prefix: str) -> float:
            started_wall, started = time.time(), time.monotonic()
            process = _start(directory, node)
            processes.append(process)
            _wait(lambda: _height(node) >= height, options.join_timeout,
                  f"{node.name} to reach height {height}", process)
            took = time.monotonic() - started
            # Where the time went: starting the process (imports, keys, storage, listening)
            # is the same for both ways of joining.
            events = _log_events(directory / node.name / "node.log")
            if "node started" in events:
                line[f"{prefix}_startup_seconds"] = round(
                    events["node started"][0] - started_wall, 2)
            return took

        _configure(directory, state_synced, trust_height=height, trust_hash=head_hash)
        line["statesync_seconds"] = round(join(state_synced, "statesync"), 2)
        events = _log_events(directory / state_synced.name / "node.log")
        line["state_imported"] = "state sync: state imported" in events
        if line["state_imported"]:
            imported = events["state sync: state imported"][1]
            line["statesync_import_seconds"] = imported.get("seconds")
            line["statesync_snapshot_height"] = imported.get("height")
        compared = [state_synced]
        if not options.no_replay:
            line["replay_seconds"] = round(join(replayed, "replay"), 2)
            line["ratio"] = round(line["replay_seconds"] / line["statesync_seconds"], 2)
            compared.append(replayed)
        queries = _queries(validators[0], height)
        expected = _answers(validators[0], queries)
        mismatches = 0
        for node in compared:
            mismatches += sum(1 for mine, theirs in zip(_answers(node, queries), expected,
                                                        strict=True) if mine != theirs)
        line["queries_compared"] = len(queries) * len(compared)
        line["query_mismatches"] = mismatches
        line["target"] = f"ratio >= {TARGET_RATIO}, 0 query mismatches"
        line["target_met"] = bool(line["state_imported"] and mismatches == 0 and queries and (
            options.no_replay or line["ratio"] >= TARGET_RATIO))
        named = [*validators, state_synced, replayed]
        line["nodes_exited"] = {node.name: process.returncode
                                for node, process in zip(named, processes, strict=False)
                                if process.poll() is not None}
        line["nodes_signalled"] = {}
        return line
    finally:
        stop_nodes(processes)


def main() -> int:
    return run_benchmark("bench-join", arguments(), bench)


if __name__ == "__main__":
    sys.exit(main())
