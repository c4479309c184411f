"""``medledger testnet``: one seed of the chaos testnet, end to end (root only).

1. Hosts in namespaces (node.testnet.netns): one per node, and ``client``.
2. A consortium through the CLI (node.testnet.cluster); the disk node's data directory
   on a small tmpfs; one ``medledger start`` per node inside its namespace.
3. The client (node.testnet.client) in its namespace: preparation, then the workload and
   the monitor.
4. The seeded faults (node.testnet.schedule), each held and healed; then everything
   healed and a quiet period.
5. The client stops and reads every chain; the nodes are stopped; the history check
   (node.testnet.history), recovery times, one JSON line on stdout and the HTML report.

Everything made (namespaces, bridge, mounts, processes) is removed on the way out, also
on failure, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import MedledgerError
from node.testnet import schedule as faults_
from node.testnet.cluster import NodeProcesses, NodeSpec, create, governance_orgs, write_member_keys
from node.testnet.history import Ack, Block, NodeChain, check_history
from node.testnet.netns import Network, namespaces_supported
from node.testnet.report import write_report
from node.testnet.schedule import Fault, make_schedule
from node.testnet.timeline import (
    all_connected_end,
    connected_at,
    next_commit,
    recovery_stats,
)

CLIENT_HOST = "client"
DISK_BYTES = 128 * 1024 * 1024  # the disk node's tmpfs; a 300 s run stores ~30 MB
FILL_CHUNK_BYTES = 1024 * 1024
READY_TIMEOUT_S = 120.0  # nodes up, a leader, the preparation committed
CLIENT_FINISH_TIMEOUT_S = 180.0  # drain, then read every chain
POLL_S = 0.1
LEADER_WAIT_S = 5.0
FIRST_COMMIT_AFTER_HEAL_S_MAX = 5.0  # the bound
CONNECT_WAIT_S = 30.0  # how long we look for "all connected" after the final heal
LOG_TAIL_LINES = 15


@dataclass(frozen=True, slots=True)
class Options:
    validators: int = 3
    observers: int = 1
    seconds: float = 300.0
    seed: int = 1
    rate: float = 100.0
    directory: Path = Path("testnet-data")
    report_directory: Path = Path("reports")
    quiet_s: float = faults_.QUIET_S
    keep: bool = False
    plant: str | None = None  # a bug planted in the first validator (node.testnet.plants)

    def replay(self) -> str:
        return (f"medledger testnet --validators {self.validators} --observers {self.observers} "
                f"--seconds {self.seconds:g} --seed {self.seed} --rate {self.rate:g}"
                + (f" --plant {self.plant}" if self.plant else ""))


@dataclass(slots=True)
class FaultRecord:
    kind: str
    target: str
    start: float  # wall clock
    end: float = 0.0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Testnet:
    def __init__(self, options: Options, network: Network, nodes: list[NodeSpec],
                 run_dir: Path) -> None:
        self.options = options
        self.network = network
        self.nodes = nodes
        self.by_name = {node.name: node for node in nodes}
        self.validators = [node.name for node in nodes if node.validator]
        self.processes = NodeProcesses(network, nodes, plant=options.plant)
        self.run_dir = run_dir
        self.client_dir = run_dir / "client"
        self.crashes: list[dict[str, Any]] = []
        self.records: list[FaultRecord] = []
        self.fill_files: list[Path] = []
        self.newcomers = 0
        self.client: subprocess.Popen[bytes] | None = None

    # ---- helpers ----

    def client_args(self, mode: str, spec: dict[str, Any], name: str) -> list[str]:
        path = self.run_dir / f"{name}.json"
        path.write_text(json.dumps(spec))
        return self.network.exec_args(CLIENT_HOST, [sys.executable, "-m", "node.testnet.client",
                                                    mode, str(path)])

    def statuses(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.client_dir / "status.json").read_text()))
        except (OSError, ValueError):
            return {}

    def leader(self) -> str | None:
        """The validator most statuses name as leader (fresh within a few seconds)."""
        deadline = time.monotonic() + LEADER_WAIT_S
        ids = {node.peer_id: node.name for node in self.nodes}
        while time.monotonic() < deadline:
            fresh = [status for status in self.statuses().values()
                     if time.time() - status.get("t", 0) < 3 and status.get("role") == "leader"]
            if fresh:
                return ids.get(fresh[0]["node_id"])
            time.sleep(POLL_S * 3)
        return None

    def check_crashes(self) -> None:
        """Record and restart nodes that exited without us stopping them."""
        for name, code in self.processes.crashed():
            tail = _tail(self.by_name[name].log)
            self.crashes.append({"node": name, "exit_code": code, "t": time.time(),
                                 "log_tail": tail})
            self.processes.start(name)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.check_crashes()
            if self.client is not None and self.client.poll() is not None:
                raise RuntimeError(f"the testnet client exited with {self.client.returncode} "
                                   f"mid-run; see {self.run_dir / 'client.log'}")
            time.sleep(min(POLL_S * 5, max(0.0, deadline - time.monotonic())))

    # ---- faults ----

    def apply(self, fault: Fault) -> FaultRecord:
        target = fault.target
        if target == faults_.LEADER:
            target = self.leader() or self.validators[0]
        record = FaultRecord(fault.kind, target, time.time())
        if fault.kind == faults_.KILL:
            self.processes.kill(target)
        elif fault.kind == faults_.PAUSE:
            self.processes.pause(target)
        elif fault.kind == faults_.LINK_DOWN:
            self.network.link_down(target)
        elif fault.kind == faults_.BLACKHOLE:
            self.network.blackhole(target, fault.other)
            record.target = f"{target}<->{fault.other}"
        elif fault.kind == faults_.LEADER_CUT:
            for other in self.validators:
                if other != target:
                    self.network.blackhole(target, other)
        elif fault.kind == faults_.MEMBERSHIP:
            self.processes.pause(target)
            record.extra["process"] = self._start_membership()
        elif fault.kind == faults_.DISK_FULL:
            record.note = self._fill_disk(target)
        return record

    def heal(self, fault: Fault, record: FaultRecord) -> None:
        target = record.target.split("<->")[0]
        if fault.kind == faults_.KILL:
            self.processes.start(target)
        elif fault.kind == faults_.PAUSE:
            self.processes.resume(target)
        elif fault.kind == faults_.LINK_DOWN:
            self.network.link_up(target)
        elif fault.kind in (faults_.BLACKHOLE, faults_.LEADER_CUT):
            self.network.heal_all()
        elif fault.kind == faults_.MEMBERSHIP:
            self.processes.resume(target)
            record.note = self._finish_membership(record.extra.pop("process"))
        elif fault.kind == faults_.DISK_FULL:
            for path in self.fill_files:
                path.unlink(missing_ok=True)
            self.fill_files.clear()
        record.end = time.time()

    def _start_membership(self) -> subprocess.Popen[str]:
        self.newcomers += 1
        spec = {"urls": [node.rpc_url for node in self.nodes if node.validator],
                "chain_id": self.chain_id, "voters": governance_orgs(len(self.nodes)),
                "newcomer": f"newcomer-{self.newcomers}"}
        argv = self.client_args("membership", spec, f"membership-{self.newcomers}")
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    @staticmethod
    def _finish_membership(process: subprocess.Popen[str]) -> str:
        try:
            output, _ = process.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate(timeout=10)
            return "membership change timed out"
        return output.strip().splitlines()[-1] if output.strip() else f"exit {process.returncode}"

    def _fill_disk(self, name: str) -> str:
        path = self.by_name[name].data_dir / "testnet-fill.bin"
        self.fill_files.append(path)
        written = 0
        chunk = b"\0" * FILL_CHUNK_BYTES
        try:
            with open(path, "wb") as fill:
                for _ in range(DISK_BYTES // FILL_CHUNK_BYTES + 1):
                    fill.write(chunk)
                    fill.flush()
                    written += len(chunk)
        except OSError as error:
            return f"filled {written >> 20} MiB until {error.strerror}"
        return f"filled {written >> 20} MiB without the disk filling up"

    chain_id = ""


def run(options: Options) -> int:
    reason = namespaces_supported()
    if reason is not None:
        print(f"medledger testnet: needs root and network namespaces ({reason})", file=sys.stderr)
        return 2
    run_name = f"seed{options.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = options.directory.resolve() / run_name
    validators = [f"v{index}" for index in range(options.validators)]
    observers = [f"o{index}" for index in range(options.observers)]
    try:
        with Network([*validators, *observers, CLIENT_HOST]) as network:
            result = _run_in(network, options, run_dir, validators, observers)
    except (RuntimeError, MedledgerError, OSError, subprocess.SubprocessError) as error:
        # The run itself broke (setup, the client): no verdict on the history, a failure.
        print(json.dumps({"seed": options.seed, "pass": False, "error": str(error),
                          "replay": options.replay(), "run_dir": str(run_dir)}), flush=True)
        print(f"seed {options.seed} FAILED; replay: {options.replay()}", file=sys.stderr)
        return 1
    name = f"testnet-{run_name}"
    html_path = write_report(options.report_directory, name, result["full"],
                             result["acks"], result["origin"])
    line = result["line"]
    line["report"] = str(html_path)
    print(json.dumps(line), flush=True)
    if not line["pass"]:
        print(f"seed {options.seed} FAILED; replay: {options.replay()}", file=sys.stderr)
    elif not options.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if line["pass"] else 1


def _run_in(network: Network, options: Options, run_dir: Path, validators: list[str],
            observers: list[str]) -> dict[str, Any]:
    chain_id = f"medledger-testnet-{options.seed}"
    nodes = create(run_dir, network, validators=validators, observers=observers,
                   chain_id=chain_id)
    write_member_keys(run_dir, governance_orgs(len(nodes)))
    plan = make_schedule(options.seed, seconds=options.seconds, validators=validators,
                         observers=observers, disk_node=validators[-1], quiet_s=options.quiet_s)
    network.mount_tmpfs(run_dir / validators[-1] / "data", size_bytes=DISK_BYTES)
    testnet = Testnet(options, network, nodes, run_dir)
    testnet.chain_id = chain_id
    testnet.client_dir.mkdir(parents=True, exist_ok=True)
    client: subprocess.Popen[bytes] | None = None
    try:
        for node in nodes:
            testnet.processes.start(node.name)
        spec = {"out": str(testnet.client_dir), "chain_id": chain_id,
                "run_tag": f"s{options.seed}", "rate": options.rate,
                "seconds_max": options.seconds + 60,
                "lane_urls": [node.rpc_url for node in nodes],
                "nodes": {node.name: node.rpc_url for node in nodes}}
        with open(run_dir / "client.log", "ab") as client_log:
            client = subprocess.Popen(testnet.client_args("workload", spec, "workload"),
                                      stdout=client_log, stderr=subprocess.STDOUT)
        testnet.client = client
        origin = _wait_ready(testnet, client)
        final_heal = _play(testnet, plan, origin)
        testnet.sleep(options.quiet_s)
        (testnet.client_dir / "stop").touch()
        testnet.client = None
        _wait_client(client)
        client = None
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait(timeout=10)
        testnet.check_crashes()
        exit_codes = testnet.processes.stop_all()
    return _analyse(testnet, options, origin, final_heal, exit_codes)


def _wait_ready(testnet: Testnet, client: subprocess.Popen[bytes]) -> float:
    deadline = time.monotonic() + READY_TIMEOUT_S
    events = testnet.client_dir / "events.jsonl"
    while time.monotonic() < deadline:
        testnet.check_crashes()
        if client.poll() is not None:
            raise RuntimeError(f"the testnet client exited with {client.returncode} before "
                               f"the workload started; see {testnet.run_dir / 'client.log'}")
        for record in _read_jsonl(events):
            if record.get("kind") == "ready":
                return float(record["t"])
        time.sleep(POLL_S * 5)
    raise RuntimeError(f"the workload was not ready within {READY_TIMEOUT_S} s; "
                       f"see {testnet.run_dir}")


def _play(testnet: Testnet, plan: Sequence[Fault], origin: float) -> float:
    final_heal = time.time()
    for fault in plan:
        testnet.sleep(max(0.0, origin + fault.start_s - time.time()))
        record = testnet.apply(fault)
        testnet.sleep(fault.hold_s)
        testnet.heal(fault, record)
        testnet.records.append(record)
        final_heal = record.end
    testnet.network.heal_all()
    return final_heal


def _wait_client(client: subprocess.Popen[bytes]) -> None:
    try:
        client.wait(timeout=CLIENT_FINISH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        client.kill()
        client.wait(timeout=10)


# ---- analysis ---------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return records


def _tail(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return []


def _chains(client_dir: Path) -> list[NodeChain]:
    try:
        document = json.loads((client_dir / "chains.json").read_text())
    except (OSError, ValueError) as error:
        return [NodeChain("all", 0, {}, error=f"chains.json unreadable: {error}")]
    chains = []
    for name, chain in sorted(document.items()):
        blocks = {int(height): Block(int(height), block_hash, tuple(tx_ids))
                  for height, block_hash, tx_ids in chain["blocks"]}
        chains.append(NodeChain(name, int(chain["head"]), blocks, chain.get("error", "")))
    return chains


def _analyse(testnet: Testnet, options: Options, origin: float, final_heal: float,
             exit_codes: dict[str, int | None]) -> dict[str, Any]:
    client_dir = testnet.client_dir
    acks_raw = _read_jsonl(client_dir / "acks.jsonl")
    heads = sorted(_read_jsonl(client_dir / "heads.jsonl"), key=lambda item: item["t"])
    peers = _read_jsonl(client_dir / "peers.jsonl")
    events = _read_jsonl(client_dir / "events.jsonl")
    history = check_history(_chains(client_dir),
                            [Ack(ack["tx"], int(ack["h"]), int(ack["p"])) for ack in acks_raw])
    faults = []
    for index, record in enumerate(testnet.records):
        following = (testnet.records[index + 1].start if index + 1 < len(testnet.records)
                     else None)
        connected = connected_at([p for p in peers if following is None or p["t"] < following],
                                  testnet.nodes, record.end)
        faults.append({"kind": record.kind, "target": record.target,
                       "start_s": round(record.start - origin, 3),
                       "end_s": round(record.end - origin, 3),
                       "hold_s": round(record.end - record.start, 3),
                       "to_commit_s": next_commit(heads, record.start),
                       "heal_to_commit_s": next_commit(heads, record.end),
                       "heal_to_connected_s": connected, "note": record.note})
    first_commit = next_commit(heads, final_heal)
    connected_end = all_connected_end(peers, testnet.nodes)
    crashes = [crash for crash in testnet.crashes]
    crashes += [{"node": name, "exit_code": code, "at": "stop"}
                for name, code in exit_codes.items() if code not in (0, None, -9, -15)]
    codes: dict[str, int] = {}
    stale_in_order = 0
    for ack in acks_raw:
        codes[str(ack.get("code"))] = codes.get(str(ack.get("code")), 0) + 1
        if ack.get("code") == "NONCE_STALE" and not ack.get("submit_failed"):
            stale_in_order += 1
    criteria = {
        "no acknowledged tx lost": history.lost_txs == 0,
        "every acknowledged tx on every node (none lagging)": history.lagging_txs == 0,
        "no divergent heights": history.divergent_heights == 0,
        "no duplicates": history.duplicate_txs == 0,
        "no gaps and every chain readable": history.gaps == 0 and history.unreadable_nodes == 0,
        "no node crashes": not crashes,
        f"first commit after the final heal within {FIRST_COMMIT_AFTER_HEAL_S_MAX:g} s":
            first_commit is not None and first_commit <= FIRST_COMMIT_AFTER_HEAL_S_MAX,
        "every node connected to every validator at the end": connected_end,
        # Each lane's signers send increasing nonces to one node; a tx whose submit
        # failed or timed out is not counted (the node may have read it late).
        "no NONCE_STALE for in-order submissions": stale_in_order == 0,
    }
    passed = all(criteria.values())
    line = {
        "seed": options.seed, "pass": passed,
        "acknowledged": history.acknowledged, "lost": history.lost_txs,
        "lagging": history.lagging_txs,
        "divergent_heights": history.divergent_heights, "duplicates": history.duplicate_txs,
        "gaps": history.gaps, "unreadable_nodes": history.unreadable_nodes,
        "node_crashes": len(crashes), "first_commit_after_final_heal_s": first_commit,
        "all_connected_at_end": connected_end,
        "ack_codes": codes, "nonce_stale_in_order": stale_in_order,
        "submit_failures": sum(event.get("txs", 0) for event in events
                               if event.get("kind") == "submit-failed"),
        "faults": len(faults), "recovery": recovery_stats(faults),
        "failed_criteria": [name for name, ok in criteria.items() if not ok],
    }
    if not passed:
        line["replay"] = options.replay()
    full = {**line, "replay": options.replay(), "criteria": criteria, "faults": faults,
            "crashes": crashes, "history": asdict(history), "run_dir": str(testnet.run_dir),
            "final_status": testnet.statuses(),
            "node_log_tails": {node.name: _tail(node.log) for node in testnet.nodes}}
    return {"line": line, "full": full, "acks": acks_raw, "origin": origin}


def main_from_args(args: Any) -> int:
    options = Options(validators=args.validators, observers=args.observers,
                      seconds=args.seconds, seed=args.seed, rate=args.rate,
                      directory=Path(args.dir), report_directory=Path(args.report_dir),
                      keep=args.keep, plant=args.plant)
    if os.geteuid() != 0:
        print("medledger testnet: must run as root (it makes network namespaces)",
              file=sys.stderr)
        return 2
    return run(options)
