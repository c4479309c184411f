"""A consortium of three validators set up the production way, as a new operator does it
(``medledger keygen`` for the members' admin keys, ``init`` with flags for each node, one
members file, ``genesis``, ``start``; no devnet tooling), and what an operator relies on:
a leader and a committed tx; a node on another genesis refused by its peers with one
ERROR line naming both genesis hashes, and not ready; a second node on a taken p2p port
refused in one line with exit code 2; one version everywhere; the node id on every log
line; a leader stopped with SIGTERM handing over before it exits.

Real processes on 127.0.0.1 with free ports; the test stops only the processes it
started, by their handles."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from node_harness import ROOT, NodeProcess, dump_logs, leader_of, wait_for
from test_node_integration import CHAIN_ID, TxFactory, submit

from ledger.app.layout import STATE_LAYOUT_VERSION
from node.keys import read_key_file
from node.p2p.hello import FOREIGN_REFUSAL_S
from node.tools.devnet import DevnetNode, free_port

pytestmark = pytest.mark.slow
# The operator's command, as installed beside this interpreter (`pip install -e .`).
MEDLEDGER = Path(sys.executable).with_name("medledger")
ORGS = ("hospital-a", "hospital-b", "lab")
GENESIS_TIME_MS = 1767225600000
# The dangerous other genesis: the same chain id and members, another genesis time.
OTHER_GENESIS_TIME_MS = GENESIS_TIME_MS + 1
REFUSED = "peer is on another chain: refused"
CLI_TIMEOUT_S = 60
LEADER_TIMEOUT_S = 60
COMMIT_TIMEOUT_S = 30
REFUSAL_TIMEOUT_S = 30
# How long the refused node is watched answering /readyz: it must never turn ready.
NOT_READY_WATCH_S = 4.0
PROBE_TIMEOUT_S = 2.0
STOP_TIMEOUT_S = 15
# One tx every this long keeps blocks coming (a block is cut only when txs are pending).
TRICKLE_INTERVAL_S = 0.1


def medledger(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MEDLEDGER), *arguments], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, cwd=ROOT)


def medledger_json(*arguments: str) -> Any:
    result = medledger(*arguments)
    assert result.returncode == 0, (arguments, result.stdout, result.stderr)
    return json.loads(result.stdout)


def make_genesis(members: Path, output: Path, *flags: str) -> str:
    """``medledger genesis``; returns the genesis hash it printed (hex, no 0x)."""
    result = medledger("genesis", "-m", str(members), "-o", str(output), *flags)
    assert result.returncode == 0, result.stderr
    printed_hash = result.stdout.strip().rsplit("hash ", 1)[-1]
    assert printed_hash.startswith("0x"), result.stdout
    return printed_hash.removeprefix("0x")


@dataclass
class Consortium:
    directory: Path
    admin_keys: dict[str, Path]
    validators: list[NodeProcess]
    genesis_hash: str

    @property
    def members_file(self) -> Path:
        return self.directory / "members.toml"


def init_node(directory: Path, name: str, p2p_port: int, *, genesis: Path,
              bootstrap: Sequence[str] = (), validator: bool = True) -> DevnetNode:
    """``medledger init`` with flags; the node as the harness runs it (``validator``: is
    its key a validator's in the members file)."""
    rpc_port = free_port()
    flags = [flag for address in bootstrap for flag in ("--bootstrap", address)]
    printed = medledger_json(
        "init", "--dir", str(directory / name), "--force",
        "--listen", f"/ip4/127.0.0.1/tcp/{p2p_port}", "--rpc-host", "127.0.0.1",
        "--rpc-port", str(rpc_port), "--genesis", str(genesis),
        "--data-dir", str(directory / name / "data"), *flags)
    assert printed["multiaddr"] == f"/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{printed['peer_id']}"
    return DevnetNode(name, validator, p2p_port, rpc_port, printed["node_public_key"],
                      printed["peer_id"])


def set_up(directory: Path) -> Consortium:
    """Each member: an admin key and a node (init, then init again with the others'
    multiaddrs); one members file; the genesis every member makes from it."""
    admin_keys = {org: directory / "admin" / f"{org}.key" for org in ORGS}
    admin_public = {org: medledger_json("keygen", "-o", str(path))["public_key"]
                    for org, path in admin_keys.items()}
    genesis = directory / "genesis.json"
    ports = {org: free_port() for org in ORGS}
    first = {org: init_node(directory, org, ports[org], genesis=genesis) for org in ORGS}
    nodes = [init_node(directory, org, ports[org], genesis=genesis,
                       bootstrap=[first[other].multiaddr for other in ORGS if other != org])
             for org in ORGS]
    assert [node.peer_id for node in nodes] == [first[org].peer_id for org in ORGS]
    lines = [f'chain_id = "{CHAIN_ID}"', f"genesis_time_ms = {GENESIS_TIME_MS}", ""]
    for org, node in zip(ORGS, nodes, strict=True):
        lines += ["[[member]]", f'org_id = "{org}"', 'kind = "provider"',
                  f'admin_key = "{admin_public[org]}"', f'node_key = "{node.public_key}"',
                  "validator = true", ""]
    (directory / "members.toml").write_text("\n".join(lines))
    genesis_hash = make_genesis(directory / "members.toml", genesis)
    return Consortium(directory, admin_keys, [NodeProcess(node, directory) for node in nodes],
                      genesis_hash)


def log_entries(process: NodeProcess) -> list[dict[str, Any]]:
    """The JSON lines of a node's log so far (a line still being written is skipped)."""
    entries = []
    for line in process.log_text().splitlines():
        with contextlib.suppress(ValueError):
            entries.append(json.loads(line))
    return entries


def refusals(process: NodeProcess, peer_id: str) -> list[dict[str, Any]]:
    return [entry for entry in log_entries(process)
            if entry.get("event") == REFUSED and entry.get("peer") == peer_id]


def committed_everywhere(processes: list[NodeProcess], tx_id: str) -> int:
    """The height ``tx_id`` committed at on every node (0 until it has on all)."""
    heights = set()
    for process in processes:
        found = process.try_call("chain_getTx", {"tx_id": tx_id})
        if not found or not found.get("height"):
            return 0
        heights.add(found["height"])
    assert len(heights) == 1, (tx_id, heights)
    return int(heights.pop())


def wait_for_leader(processes: list[NodeProcess]) -> NodeProcess:
    leader = wait_for(lambda: leader_of(processes), timeout_s=LEADER_TIMEOUT_S,
                      what="a leader")
    assert leader is not None
    return leader


def show_a_leader_and_a_commit(consortium: Consortium) -> None:
    validators = consortium.validators
    wait_for_leader(validators)
    clinic_admin = medledger_json("keygen", "-o", str(consortium.directory / "clinic.key"))
    evidence = consortium.directory / "clinic-accreditation.pdf"
    evidence.write_bytes(b"accreditation of the clinic, signed by the board")
    proposed = medledger_json(
        "member", "propose", "--rpc", validators[1].node.rpc_url,
        "--key", str(consortium.admin_keys["hospital-a"]), "--proposal-id", "add-clinic",
        "--org-id", "clinic", "--kind", "provider",
        "--admin-key", clinic_admin["public_key"], "--evidence-file", str(evidence))
    assert proposed["committed"] and proposed["result_name"] == "OK", proposed
    height = wait_for(lambda: committed_everywhere(validators, proposed["tx_id"]),
                      timeout_s=COMMIT_TIMEOUT_S, what="the proposal on every validator")
    assert height == proposed["height"], (height, proposed)


def show_one_version(consortium: Consortium) -> None:
    package = importlib.metadata.version("medledger")
    result = medledger("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"medledger {package}", result.stdout
    for process in consortium.validators:
        answer = httpx.get(process.node.rpc_url + "version", timeout=PROBE_TIMEOUT_S)
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == package, (process.node.name, answer.text)


def show_a_taken_p2p_port_refused(consortium: Consortium) -> NodeProcess:
    """A second node configured on a validator's p2p port (py-libp2p binds with
    SO_REUSEPORT, so the kernel would have let it share the port)."""
    taken = consortium.validators[0].node.p2p_port
    node = init_node(consortium.directory, "second-on-taken-port", taken,
                     genesis=consortium.directory / "genesis.json", validator=False)
    process = NodeProcess(node, consortium.directory)
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", "start", "-c",
         str(consortium.directory / node.name / "node.toml")],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, cwd=ROOT)
    process.log_path.write_text(result.stdout)  # its JSON log, for the node id check
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("medledger: ") and str(taken) in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    return process


def observer_on_another_genesis(consortium: Consortium) -> tuple[NodeProcess, str]:
    """An observer made from the same members file with another genesis time: the same
    chain id, another genesis hash (returned)."""
    other_genesis = consortium.directory / "other-genesis.json"
    other_hash = make_genesis(consortium.members_file, other_genesis,
                              "--genesis-time-ms", str(OTHER_GENESIS_TIME_MS))
    assert other_hash != consortium.genesis_hash
    node = init_node(consortium.directory, "observer-other-genesis", free_port(),
                     genesis=other_genesis, validator=False,
                     bootstrap=[process.node.multiaddr for process in consortium.validators])
    return NodeProcess(node, consortium.directory), other_hash


def show_another_genesis_refused(consortium: Consortium, observer: NodeProcess,
                                 other_hash: str) -> None:
    observer.start()
    validators = consortium.validators
    peer_id = observer.node.peer_id
    wait_for(lambda: all(refusals(process, peer_id) for process in validators),
             timeout_s=REFUSAL_TIMEOUT_S, what="every validator to refuse the observer")
    for process in validators:
        (refusal,) = refusals(process, peer_id)
        assert refusal["level"] == "error", refusal
        assert refusal["ours"] == {"chain_id": CHAIN_ID, "genesis_hash": consortium.genesis_hash,
                                   "state_layout": STATE_LAYOUT_VERSION}, refusal
        assert refusal["theirs"] == {"chain_id": CHAIN_ID, "genesis_hash": other_hash,
                                     "state_layout": STATE_LAYOUT_VERSION}, refusal
    wait_for(lambda: observer.try_call("node_status"), timeout_s=REFUSAL_TIMEOUT_S,
             what="the observer's RPC")
    watch_until = time.monotonic() + NOT_READY_WATCH_S
    answers = []
    while time.monotonic() < watch_until:
        answer = httpx.get(observer.node.rpc_url + "readyz", timeout=PROBE_TIMEOUT_S)
        answers.append((answer.status_code, answer.json()))
        time.sleep(0.2)
    assert answers and all(answer == (503, {"ready": False}) for answer in answers), answers
    # Nothing of the other chain reached it.
    assert observer.call("chain_head")["height"] == 0


def exactly_one_refusal_per_validator(consortium: Consortium, peer_id: str) -> None:
    """Counted over the refusal period that began with each validator's first line."""
    for process in consortium.validators:
        lines = refusals(process, peer_id)
        assert lines, process.node.name
        first = datetime.fromisoformat(lines[0]["timestamp"])
        period = [line for line in lines if datetime.fromisoformat(line["timestamp"])
                  - first < timedelta(seconds=FOREIGN_REFUSAL_S)]
        assert len(period) == 1, (process.node.name, period)


def trickle(process: NodeProcess, factory: TxFactory, stop: threading.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):  # a tx lost in the handover is no matter
            submit(process, factory.next())
        stop.wait(TRICKLE_INTERVAL_S)


def first_block_by_another(process: NodeProcess, above: int, old_proposer: str) -> str | None:
    """The proposer (public key hex) of the first block above ``above`` that
    ``old_proposer`` did not propose, once ``process`` has one."""
    head = process.call("chain_head")["height"]
    for height in range(above + 1, head + 1):
        proposer = process.call("chain_getBlock", {"height": height})["header"]["proposer"]
        if proposer.removeprefix("0x") != old_proposer:
            return str(proposer.removeprefix("0x"))
    return None


def show_sigterm_handover(consortium: Consortium) -> None:
    validators = consortium.validators
    leader = wait_for_leader(validators)
    followers = [process for process in validators if process is not leader]
    watcher = followers[0]
    stop = threading.Event()
    factory = TxFactory(read_key_file(consortium.admin_keys["lab"]), "pat-term")
    worker = threading.Thread(target=trickle, args=(followers[1], factory, stop), daemon=True)
    worker.start()
    try:
        start_height = watcher.call("chain_head")["height"]
        wait_for(lambda: watcher.call("chain_head")["height"] >= start_height + 2,
                 timeout_s=COMMIT_TIMEOUT_S, what="blocks from the trickle")
        assert leader.process is not None
        leader.process.send_signal(signal.SIGTERM)
        leader.process.wait(timeout=STOP_TIMEOUT_S)
        exited_at = time.monotonic()
        height_at_exit = watcher.call("chain_head")["height"]
        wait_for(lambda: watcher.call("chain_head")["height"] > height_at_exit,
                 timeout_s=COMMIT_TIMEOUT_S, interval_s=0.005, what="a block after the exit")
        next_block_s = time.monotonic() - exited_at
        new_proposer = wait_for(
            lambda: first_block_by_another(watcher, height_at_exit, leader.node.public_key),
            timeout_s=COMMIT_TIMEOUT_S, interval_s=0.005, what="a block by a new leader")
        new_leader_block_s = time.monotonic() - exited_at
    finally:
        stop.set()
        worker.join(timeout=STOP_TIMEOUT_S)
    print(f"SIGTERM HANDOVER (consortium): next block {next_block_s:.3f} s, first block "
          f"by the new leader {new_leader_block_s:.3f} s after the old leader exited")
    entries = log_entries(leader)
    handed = [entry for entry in entries if entry.get("event") == "leadership handed over"]
    assert len(handed) == 1, leader.log_text()[-3000:]
    by_key = {process.node.public_key: process.node.peer_id for process in followers}
    assert handed[0]["to"] == by_key.get(str(new_proposer)), (handed[0], new_proposer)
    assert leader.process.returncode == 0, leader.log_text()[-3000:]
    assert entries[-1]["event"] == "node stopped cleanly", leader.log_text()[-2000:]


def every_line_names_its_node(processes: list[NodeProcess]) -> None:
    for process in processes:
        for line in process.log_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"{process.node.name}: not JSON: {line!r}") from None
            assert entry.get("node") == process.node.peer_id, (process.node.name, line)


def test_a_consortium_set_up_the_production_way_does_what_operators_rely_on(
        tmp_path: Path) -> None:
    consortium = set_up(tmp_path)
    started: list[NodeProcess] = list(consortium.validators)
    try:
        for process in consortium.validators:
            process.start()
        show_a_leader_and_a_commit(consortium)
        show_one_version(consortium)
        started.append(show_a_taken_p2p_port_refused(consortium))
        observer, other_hash = observer_on_another_genesis(consortium)
        started.append(observer)
        show_another_genesis_refused(consortium, observer, other_hash)
        show_sigterm_handover(consortium)
        exactly_one_refusal_per_validator(consortium, observer.node.peer_id)
        for process in started:
            process.stop(timeout_s=STOP_TIMEOUT_S)
        every_line_names_its_node(started)
        assert all(process.log_text() for process in [*consortium.validators, observer])
    except Exception as error:  # a failed check or a timed-out wait: with the log tails
        raise AssertionError(f"{error!r}\n{dump_logs(started)}") from error
    finally:
        for process in started:
            process.stop(timeout_s=STOP_TIMEOUT_S)
            process.client.close()
