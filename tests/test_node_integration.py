"""The node as users run it: real processes, real libp2p sockets, real LevelDB, on
127.0.0.1 with free ports. Each test stops exactly the processes it started, by pid."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from certificate_checks import check_certified_chain
from node_harness import ROOT, NodeProcess, dump_logs, leader_of, network, wait_for

from ledger.bodies import PartyKind, RegisterParty
from ledger.crypto import SigningKey
from ledger.merkle import MerkleProof, verify_proof
from ledger.sdk.devnet import devnet_admin_key
from ledger.tx import sign_transaction
from ledger.txtypes import TxType

pytestmark = pytest.mark.slow
CHAIN_ID = "medledger-test"
ADMIN = devnet_admin_key("hospital-a")


class TxFactory:
    """Valid REGISTER_PARTY txs from a member admin key, with increasing nonces."""

    def __init__(self, key: SigningKey = ADMIN, prefix: str = "pat") -> None:
        self.key = key
        self.prefix = prefix
        self.nonce = int(time.time() * 1000)
        self.count = 0

    def next(self) -> bytes:
        self.nonce += 1
        self.count += 1
        party_id = f"{self.prefix}-{self.count:06d}"
        party_key = hashlib.sha256(party_id.encode() + self.key.seed).digest()
        body = RegisterParty(party_id, PartyKind.PATIENT, party_key, party_key, (), False)
        return sign_transaction(self.key, chain_id=CHAIN_ID, tx_type=TxType.REGISTER_PARTY,
                                nonce=self.nonce, body=body).raw


def submit(process: NodeProcess, raw: bytes) -> str:
    answer = process.call("tx_submit", {"raw": "0x" + raw.hex()})
    assert answer["accepted"], answer
    return str(answer["tx_id"])


def committed_on(process: NodeProcess, tx_id: str) -> dict[str, Any] | None:
    found = process.try_call("chain_getTx", {"tx_id": tx_id})
    return found if found and found.get("height") else None


def wait_ready(processes: list[NodeProcess], timeout_s: float = 60.0) -> NodeProcess:
    try:
        wait_for(lambda: all(p.try_call("node_status") for p in processes),
                 timeout_s=timeout_s, what="every node's RPC")
        return wait_for(lambda: leader_of(processes), timeout_s=timeout_s, what="a leader")
    except AssertionError:
        print(dump_logs(processes))
        raise


def chain_hashes(process: NodeProcess, height: int) -> list[str]:
    return [process.call("chain_getBlock", {"height": h})["hash"] for h in range(1, height + 1)]


def test_tx_at_follower_and_observer_commits_everywhere_with_proofs(tmp_path: Path) -> None:
    with network(tmp_path) as processes:
        leader = wait_ready(processes)
        follower = next(p for p in processes[:3] if p is not leader)
        observer = processes[3]
        tx_ids = [submit(follower, TxFactory(ADMIN, "pat-a").next()),
                  submit(observer, TxFactory(devnet_admin_key("hospital-b"), "pat-b").next())]
        for tx_id in tx_ids:
            for process in processes:
                found = wait_for(lambda p=process, t=tx_id: committed_on(p, t), timeout_s=30,
                                 what=f"{tx_id} on {process.node.name}")
                assert found["code"] == 0, found
                block = process.call("chain_getBlock", {"height": found["height"]})
                header = block["header"]
                proof = found["proof"]
                assert proof["size"] == header["tx_count"]
                assert verify_proof(
                    bytes.fromhex(tx_id[2:]),
                    MerkleProof(proof["index"], proof["size"],
                                tuple(bytes.fromhex(s[2:]) for s in proof["siblings"])),
                    bytes.fromhex(header["tx_root"][2:]),
                )
        # the same chain everywhere
        height = min(p.call("chain_head")["height"] for p in processes)
        assert len({tuple(chain_hashes(p, height)) for p in processes}) == 1
        # every block from height 2 carries its predecessor's certificate, signed by a
        # majority of the validators (checked on the observer's copy, client-side)
        validators = [bytes.fromhex(p.node.public_key) for p in processes[:3]]
        assert check_certified_chain(observer, CHAIN_ID, validators) == [
            (1, sorted(validators))]
        head = leader.call("chain_head")["height"]
        pending = wait_for(lambda: leader.try_call("chain_getCertificate", {"height": head}),
                           timeout_s=10, what="the head's certificate from the votes")
        assert pending["in_block"] is None and len(pending["signatures"]) >= 2
    # Every line each node logged is JSON and names the node (an operator greps one
    # node's lines out of a shared log; libp2p's own warnings included).
    for process in processes:
        lines = process.log_text().splitlines()
        assert lines
        for line in lines:
            assert json.loads(line).get("node") == process.node.peer_id, line


def test_leader_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with network(tmp_path, validators=3, observers=0) as processes:
        leader = wait_ready(processes)
        followers = [p for p in processes if p is not leader]
        acknowledged: list[str] = []
        stop = threading.Event()
        # One signer per follower: nonces of one signer must reach the leader in order.
        factories = [TxFactory(ADMIN, "pat-a"),
                     TxFactory(devnet_admin_key("hospital-b"), "pat-b")]

        def stream() -> None:
            """Submit at the followers round-robin; a tx counts as acknowledged once a
            node reports it committed."""
            pending: list[tuple[str, NodeProcess]] = []
            turn = 0
            while not stop.is_set():
                target = followers[turn % 2]
                factory = factories[turn % 2]
                turn += 1
                try:
                    pending.append((submit(target, factory.next()), target))
                except Exception:
                    time.sleep(0.05)
                still = []
                for tx_id, node in pending:
                    if committed_on(node, tx_id):
                        acknowledged.append(tx_id)
                    else:
                        still.append((tx_id, node))
                pending = still[-500:]
                time.sleep(0.02)

        worker = threading.Thread(target=stream, daemon=True)
        worker.start()
        wait_for(lambda: len(acknowledged) >= 20, timeout_s=60, what="a steady stream")
        height_before = max(p.call("chain_head")["height"] for p in followers)
        killed_at = time.monotonic()
        leader.kill()

        def new_leader_committed() -> bool:
            heads = [p.try_call("chain_head") for p in followers]
            return any(h and h["height"] > height_before + 1 for h in heads) and bool(
                leader_of(followers))

        wait_for(new_leader_committed, timeout_s=30, interval_s=0.05,
                 what="a new leader committing")
        failover_s = time.monotonic() - killed_at
        print(f"FAILOVER: new leader committed {failover_s:.2f} s after SIGKILL")
        time.sleep(1.0)
        stop.set()
        worker.join(timeout=10)
        acknowledged_before_restart = list(acknowledged)
        leader.start()
        final = max(p.call("chain_head")["height"] for p in followers)
        wait_for(lambda: (leader.try_call("chain_head") or {}).get("height", 0) >= final,
                 timeout_s=60, what="the restarted node to catch up")
        for tx_id in acknowledged_before_restart:
            for process in processes:
                assert committed_on(process, tx_id), (tx_id, process.node.name)
        assert len({tuple(chain_hashes(p, final)) for p in processes}) == 1
        assert failover_s < 3.0, f"failover took {failover_s:.2f} s (goal: < 3 s)"


def test_a_leader_stopped_with_sigterm_hands_over_before_it_exits(tmp_path: Path) -> None:
    """etcd's behaviour: the stopping leader makes its most up-to-date peer leader, so the
    cluster has a leader when it exits (before, none for ~0.85 s: an election timeout).
    The gap from its exit to the next block is printed (the figure lives in the issue's
    closing note, measured over several runs; this test asserts the behaviour)."""
    with network(tmp_path, validators=3, observers=0) as processes:
        leader = wait_ready(processes)
        followers = [p for p in processes if p is not leader]
        stop = threading.Event()
        factory = TxFactory(ADMIN, "pat-term")

        def stream() -> None:  # blocks are cut only when there are txs
            while not stop.is_set():
                with contextlib.suppress(Exception):  # the old leader may be gone
                    submit(followers[0], factory.next())
                time.sleep(0.02)

        worker = threading.Thread(target=stream, daemon=True)
        worker.start()
        try:
            wait_for(lambda: followers[0].call("chain_head")["height"] >= 3, timeout_s=30,
                     what="blocks")
            assert leader.process is not None
            leader.process.send_signal(signal.SIGTERM)
            leader.process.wait(timeout=15)
            exited_at = time.monotonic()
            height_at_exit = followers[0].call("chain_head")["height"]
            new_leader = leader_of(followers)
            assert new_leader is not None, "no leader at the moment the old one exited"

            def next_block() -> bool:
                return followers[0].call("chain_head")["height"] > height_at_exit

            wait_for(next_block, timeout_s=10, interval_s=0.005, what="a block after the exit")
            gap_s = time.monotonic() - exited_at
        finally:
            stop.set()
            worker.join(timeout=10)
        print(f"SIGTERM HANDOVER: next block {gap_s:.3f} s after the old leader exited")
        log = leader.log_text()
        assert leader.process.returncode == 0, dump_logs(processes)
        assert '"leadership handed over"' in log, log[-3000:]
        assert '"node stopped cleanly"' in log.rstrip().splitlines()[-1], log[-2000:]


def test_wiped_observer_and_late_validator_catch_up_by_sync(tmp_path: Path) -> None:
    with network(tmp_path, validators=3, observers=1, start=False) as processes:
        # Snapshot and compact often, so the late validator needs a snapshot + block sync.
        for process in processes:
            config = process.directory / process.node.name / "node.toml"
            text = config.read_text().replace("snapshot_entries = 10000", "snapshot_entries = 8")
            config.write_text(text.replace("compaction_margin_entries = 1000",
                                           "compaction_margin_entries = 2"))
        late = processes[2]
        for process in processes:
            if process is not late:
                process.start()
        wait_ready([processes[0], processes[1], processes[3]])
        factory = TxFactory()
        first = [submit(processes[0], factory.next()) for _ in range(30)]
        for tx_id in first:
            wait_for(lambda t=tx_id: committed_on(processes[0], t), timeout_s=30, what=tx_id)
        observer = processes[3]
        observer.stop()
        shutil.rmtree(observer.directory / observer.node.name / "data")
        observer.start()
        late.start()
        head = processes[0].call("chain_head")["height"]
        for process in (observer, late):
            wait_for(lambda p=process: (p.try_call("chain_head") or {}).get("height", 0) >= head,
                     timeout_s=60, what=f"{process.node.name} to catch up")
        # ... and then follow
        later = submit(late, factory.next())
        for process in processes:
            wait_for(lambda p=process: committed_on(p, later), timeout_s=30,
                     what=f"new tx on {process.node.name}")
        assert "snapshot" in late.log_text()


def test_rogue_and_plaintext_peers_are_refused(tmp_path: Path) -> None:
    with network(tmp_path, validators=3, observers=0) as processes:
        wait_ready(processes)
        target = processes[0]
        term_before = target.call("node_status")["term"]
        script = ROOT / "tests" / "p2p_rogue.py"
        result = subprocess.run(
            [sys.executable, str(script), target.node.multiaddr],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["plaintext_connected"] is False, report
        time.sleep(1.0)
        status = target.call("node_status")
        # The rogue host asked for votes at term 10**6: had a frame been accepted, the
        # node's term would have jumped.
        assert status["term"] < 1000 and status["term"] >= term_before, status
        assert "raft" in report and report["raft"] in ("refused", "reset", "no-stream"), report


def test_json_rpc_errors_and_caps_on_a_real_node(tmp_path: Path) -> None:
    with network(tmp_path, validators=1, observers=0) as processes:
        wait_ready(processes)
        url = processes[0].node.rpc_url
        with httpx.Client(timeout=10) as http:
            def post(body: Any, raw: bytes | None = None) -> httpx.Response:
                if raw is not None:
                    return http.post(url, content=raw, headers={"content-type": "application/json"})
                return http.post(url, json=body)

            assert post(None, b"{not json").json()["error"]["code"] == -32700
            assert post({"jsonrpc": "2.0", "id": 1}).json()["error"]["code"] == -32600
            unknown = post({"jsonrpc": "2.0", "id": 1, "method": "no_such"}).json()
            assert unknown["error"]["code"] == -32601
            bad = post({"jsonrpc": "2.0", "id": 1, "method": "chain_getBlock",
                        "params": {"height": "ten"}}).json()["error"]
            assert bad["code"] == -32602 and "height" in bad["message"]
            huge = post(None, b'{"jsonrpc":"2.0","id":1,"method":"node_status","params":{"x":"'
                        + b"a" * (8 * 1024 * 1024) + b'"}}')
            assert huge.status_code == 413 or huge.json()["error"]["code"] == -32003
            batch = [{"jsonrpc": "2.0", "id": i, "method": "node_status"} for i in range(10_000)]
            assert post(batch).json()["error"]["code"] == -32004
            assert post({"jsonrpc": "2.0", "id": 2, "method": "node_status"}).json()["result"]
            # the application's queries are served (domain namespaces)
            members = post({"jsonrpc": "2.0", "id": 3, "method": "gov_members"}).json()
            assert "hospital-a" in json.dumps(members["result"]), members
            missing = post({"jsonrpc": "2.0", "id": 4, "method": "consent_get",
                            "params": {"consent_id": "no-such-consent"}}).json()
            assert missing.get("result") is None or missing["error"]["code"] == -32001
            bad_id = post({"jsonrpc": "2.0", "id": 5, "method": "consent_get",
                           "params": {"consent_id": "not an id!"}}).json()["error"]
            assert bad_id["code"] == -32602 and "consent_id" in bad_id["message"]


def test_devnet_command_and_tx_submit(tmp_path: Path) -> None:
    from node.tools.devnet import free_port

    base = free_port()
    for _ in range(50):  # four consecutive free ports
        if all(_port_free(base + offset) for offset in range(4)):
            break
        base = free_port()
    devnet = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "devnet", "--dir", str(tmp_path / "devnet"),
         "--rpc-port", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
    )
    output: list[str] = []
    try:
        assert devnet.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = devnet.stdout.readline().decode()
            output.append(line)
            if "devnet ready" in line or devnet.poll() is not None:
                break
        assert any("devnet ready" in line for line in output), "".join(output)
        # The devnet leaves its members' (public-seed) admin keys for signing with.
        key_file = tmp_path / "devnet" / "members" / "hospital-a.admin.key"
        assert key_file.read_text().strip() == ADMIN.seed.hex()
        body = json.dumps({"party_id": "pat-cli-1", "kind": "PATIENT",
                           "signing_key": "0x" + "11" * 32, "encryption_key": "0x" + "22" * 32,
                           "roles": [], "minor": False})
        submitted = subprocess.run(
            [sys.executable, "-m", "node.cli", "tx", "submit", "--rpc",
             f"http://127.0.0.1:{base + 1}/", "--key", str(key_file), "--type",
             "REGISTER_PARTY", "--body", body, "--wait", "30"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert json.loads(submitted.stdout)["committed"] is True
    finally:
        # What Ctrl-C does: SIGINT to the whole process group (devnet and its nodes);
        # the devnet then sends its nodes SIGTERM as well. Every node must still exit 0.
        os.killpg(devnet.pid, signal.SIGINT)
        try:
            devnet.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(devnet.pid, signal.SIGKILL)
            devnet.wait(timeout=10)
    assert devnet.stdout is not None
    output.append(devnet.stdout.read().decode())
    assert devnet.returncode == 0, "".join(output)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
