"""Governance drives Raft membership on a running network: a fourth validator voted in
(it joins as a learner, is promoted once caught up), then a validator voted out; the
chain keeps committing throughout. Real processes on 127.0.0.1."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from certificate_checks import check_certified_chain
from node_harness import ROOT, NodeProcess, dump_logs, network, wait_for
from test_node_integration import CHAIN_ID, TxFactory, committed_on, submit, wait_ready

from ledger.block import BlockHeader
from ledger.bodies import MemberKind, ProposalAction, ProposeMember, Vote
from ledger.certificate import certify
from ledger.codec import Struct, decode
from ledger.crypto import SigningKey
from ledger.results import ResultCode
from ledger.sdk.devnet import devnet_admin_key
from ledger.tx import sign_transaction
from ledger.txtypes import TxType
from node.keys import raft_node_id, read_key_file

pytestmark = pytest.mark.slow
CLINIC_ADMIN = SigningKey(bytes([77]) * 32)
# A stall longer than this while membership changes fails the test: elections take about a
# second here; a removed leader hands over within a few.
STALL_SECONDS_MAX = 10.0


class Signers:
    """Nonces per key, allocated and submitted under one lock, so one key's txs reach the
    node in nonce order even when the background stream uses the same key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.nonces: dict[bytes, int] = {}

    def submit(self, node: NodeProcess, key: SigningKey, tx_type: TxType, body: Struct) -> str:
        with self.lock:
            nonce = max(self.nonces.get(key.public_key, 0) + 1, int(time.time() * 1000))
            self.nonces[key.public_key] = nonce
            raw = sign_transaction(key, chain_id=CHAIN_ID, tx_type=tx_type, nonce=nonce,
                                   body=body).raw
            return submit(node, raw)


def commit_ok(node: NodeProcess, tx_id: str) -> None:
    found = wait_for(lambda: committed_on(node, tx_id), timeout_s=30, what=f"commit of {tx_id}")
    assert found["code"] == ResultCode.OK, found


def propose_and_pass(node: NodeProcess, signers: Signers, body: ProposeMember,
                     voters: list[SigningKey]) -> None:
    commit_ok(node, signers.submit(node, voters[0], TxType.PROPOSE_MEMBER, body))
    for voter in voters:
        commit_ok(node, signers.submit(node, voter, TxType.VOTE, Vote(body.proposal_id, True)))


def test_validator_voted_in_then_out_while_the_chain_commits(tmp_path: Path) -> None:
    with network(tmp_path, validators=3, observers=1) as processes:
        wait_ready(processes)
        node0, node1, _, newcomer = processes
        signers = Signers()
        stop = threading.Event()
        heights: list[tuple[float, int]] = []
        factory = TxFactory(devnet_admin_key("lab"), "stream")

        def stream() -> None:
            while not stop.is_set():
                try:
                    submit(node0, factory.next())
                    head = node0.call("chain_head")
                    heights.append((time.monotonic(), head["height"]))
                except Exception:  # an election in progress
                    pass
                time.sleep(0.1)

        worker = threading.Thread(target=stream, daemon=True)
        worker.start()
        try:
            hospital_a, hospital_b = devnet_admin_key("hospital-a"), devnet_admin_key("hospital-b")
            insurer = devnet_admin_key("insurer")
            addition = ProposeMember(
                "add-clinic", ProposalAction.ADD_MEMBER, "clinic", MemberKind.PROVIDER,
                CLINIC_ADMIN.public_key, bytes.fromhex(newcomer.node.public_key), True,
                bytes(32), int(time.time() * 1000) + 3_600_000,
            )
            propose_and_pass(node0, signers, addition, [hospital_a, hospital_b, insurer])

            def raft_members(process: NodeProcess) -> tuple[list[str], list[str]]:
                extra = (process.try_call("node_status") or {}).get("extra", {})
                return extra.get("raft_voters", []), extra.get("raft_learners", [])

            def newcomer_votes() -> bool:
                voters, _ = raft_members(node0)
                mine, _ = raft_members(newcomer)
                return newcomer.node.peer_id in voters and newcomer.node.peer_id in mine

            wait_for(newcomer_votes, timeout_s=90, what="the new validator to become a voter")
            removal = ProposeMember(
                "remove-hospital-b", ProposalAction.REMOVE_MEMBER, "hospital-b",
                MemberKind.PROVIDER, hospital_b.public_key, None, False, bytes(32),
                int(time.time() * 1000) + 3_600_000,
            )
            propose_and_pass(node0, signers, removal,
                             [hospital_a, hospital_b, insurer, CLINIC_ADMIN])
            wait_for(lambda: node1.node.peer_id not in node0.call("node_status")["validators"],
                     timeout_s=30, what="hospital-b's node to leave the validator set")
            # A node outside the validator set shows in status by its bare raft id.
            removed = {node1.node.peer_id,
                       str(raft_node_id(bytes.fromhex(node1.node.public_key)))}

            def removal_applied(process: NodeProcess) -> bool:
                voters, learners = raft_members(process)
                return len(voters) == 3 and not (removed & set(voters + learners))

            wait_for(lambda: removal_applied(node0) and removal_applied(newcomer),
                     timeout_s=60, what="hospital-b's node to leave the raft configuration")
            voters, learners = raft_members(node0)
            assert len(voters) == 3 and not learners, (voters, learners)
            # the three remaining validators (one of them the newcomer) keep committing
            after = submit(newcomer, TxFactory(devnet_admin_key("hospital-a"), "after").next())
            for process in (node0, newcomer):
                commit_ok(process, after)
            # A few seconds of the stream after the changes, too.
            wait_for(lambda: len(heights) > 20, timeout_s=30, what="20 stream samples")
        except BaseException:
            print(dump_logs(processes, lines=60))
            raise
        finally:
            stop.set()
            worker.join(timeout=10)
        assert len(heights) > 20
        # Every block carries its predecessor's certificate by the set in force, and the
        # set followed the changes: hospital-b's node signs nothing after it left.
        genesis = json.loads((node0.directory / "genesis.json").read_text())
        original = [bytes.fromhex(member["node_key"].removeprefix("0x"))
                    for member in genesis["members"] if member.get("validator")]
        sets = check_certified_chain(node0, genesis["chain_id"], original)
        keys = [keys for _, keys in sets]
        hospital_b_node = bytes.fromhex(node1.node.public_key)
        newcomer_node = bytes.fromhex(newcomer.node.public_key)
        assert any(newcomer_node in members for members in keys), sets
        assert hospital_b_node in keys[0] and hospital_b_node not in keys[-1], sets
        _prove_offline(tmp_path, node0, after, processes, sets)
        stalled = 0.0
        longest = 0.0
        for earlier, later in itertools.pairwise(heights):
            stalled = stalled + (later[0] - earlier[0]) if later[1] == earlier[1] else 0.0
            longest = max(longest, stalled)
        print(f"GOVERNANCE: longest commit stall {longest:.2f} s over {len(heights)} samples")
        assert longest < STALL_SECONDS_MAX, longest


def _prove_offline(tmp_path: Path, node: NodeProcess, tx_id: str,
                   processes: list[NodeProcess], sets: list[tuple[int, list[bytes]]]) -> None:
    """`medledger proof tx` on a tx committed after a member was voted in and another
    out; `medledger verify` checks it against the genesis file alone, and names the check
    that fails for a proof with a handover left out, a certificate signed with a removed
    validator's key, an altered header, or another tx."""
    genesis = node.directory / "genesis.json"
    proof = tmp_path / "tx-proof.json"

    def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "node.cli", *arguments], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)

    made = cli("proof", "tx", tx_id, "--rpc", node.node.rpc_url, "-o", str(proof))
    assert made.returncode == 0, made.stderr
    verified = cli("verify", str(proof), "--genesis", str(genesis))
    assert verified.returncode == 0, verified.stderr
    assert "Proven: transaction " + tx_id in verified.stdout
    # The changes in force by the tx's block (a set takes over a block or two after the
    # state changes it: the header hands over to the set of the state it names).
    height = int(node.call("chain_getTx", {"tx_id": tx_id})["height"])
    changes = sum(1 for first, _ in sets[1:] if first <= height)
    assert changes >= 1, sets
    assert f"{changes} validator-set change" in verified.stdout, (changes, verified.stdout)
    document = json.loads(proof.read_text())
    height = decode(BlockHeader, bytes.fromhex(document["block"]["header"][2:]),
                    size_bytes_max=4096).height
    old_keys = [read_key_file(p.directory / p.node.name / "node.key") for p in processes[:3]]
    old_members = [key.public_key for key in old_keys]
    target_hash = hashlib.sha256(bytes.fromhex(document["block"]["header"][2:])).digest()
    removed_signed = certify(old_keys, chain_id=document["chain_id"], height=height,
                             block_hash=target_hash, members=old_members)
    assert removed_signed is not None
    altered_header = bytearray.fromhex(document["block"]["header"][2:])
    altered_header[-40] ^= 1  # a byte of the header's hashes: it decodes, it is not signed

    def without_a_handover(doc: dict[str, Any]) -> None:
        del doc["handovers"][0]

    def signed_with_a_removed_key(doc: dict[str, Any]) -> None:
        doc["block"]["certificate"] = "0x" + removed_signed.encode().hex()

    def altered(doc: dict[str, Any]) -> None:
        doc["block"]["header"] = "0x" + altered_header.hex()

    def another_tx(doc: dict[str, Any]) -> None:
        raw = bytearray.fromhex(doc["tx"]["raw"][2:])
        raw[-1] ^= 1
        doc["tx"]["raw"] = "0x" + raw.hex()

    for tamper, expected in ((without_a_handover, "a validator-set change is missing"),
                             (signed_with_a_removed_key, "not a validator of the set"),
                             (altered, "is not certified by the validators in force"),
                             (another_tx, "")):
        doc = json.loads(proof.read_text())
        tamper(doc)
        bad = tmp_path / f"{tamper.__name__}.json"
        bad.write_text(json.dumps(doc))
        refused = cli("verify", str(bad), "--genesis", str(genesis))
        assert refused.returncode == 1, (tamper.__name__, refused.stdout, refused.stderr)
        assert "the proof does not hold: " in refused.stderr
        assert expected in refused.stderr, (tamper.__name__, refused.stderr)
