"""Complete trails (ledger/trails.py, ledger/smt.py): each patient's audit entries form a
hash chain whose head the trails root in a certified header commits to; a trail proof
verifies offline (ledger/sdk/proofs.py), and one with an entry left out, reordered or
altered, or a header not certified by the set in force, fails naming the check."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from app_world import World, clinic_world, digest, node_keys, replay_chain

from consensus.types import Entry, EntryType
from ledger import bodies as b
from ledger import trails
from ledger.app import layout
from ledger.crypto import SigningKey
from ledger.evaluation import trails_root_at
from ledger.sdk.proofs import PROOF_FORMAT, ProofError, verify_trail_proof
from ledger.validation import check_batch
from node.chain import Chain


def _world() -> World:
    world = clinic_world()
    alice, lab = world.parties["alice"].builder, world.members["lab"]
    world.ok(world.consent(alice, "c-1", "alice", "grey"))
    world.ok(world.grant(lab, "g-1", "rec-lab", "grey", "c-1"))
    world.ok(world.parties["ross"].builder.btg_open(
        btg_id="btg-1", patient="alice", records=["rec-lab"], hours=4,
        justification_hash=digest("justification")))
    world.ok(world.grant(lab, "g-2", "rec-lab", "ross", "btg-1",
                         basis=b.GrantBasis.BREAK_GLASS))
    world.ok(world.parties["ross"].builder.btg_close("btg-1"))
    world.ok(world.grant(lab, "g-3", "rec-lab", "grey", "c-1"))
    return world


def _append(chain: Chain, proposer: SigningKey, txs: list[Any], *, now_ms: int,
            index: int) -> None:
    height, head_hash, head_ms = chain.head()
    block = chain.build_block(
        proposer, txs, height=height + 1, previous_hash=head_hash,
        previous_timestamp_ms=head_ms, now_ms=now_ms, raft_term=1, raft_index=index,
        previous_state_height=chain.named_state_height(),
        validators_hash=chain.head_validator_sets()[1], certificate=chain.certify_head(node_keys()))
    result = chain.apply_entry(Entry(1, index, EntryType.NORMAL, block.encode()))
    assert result.applied is not None, result.skipped_reason


def _proof(tmp_path: Path) -> tuple[dict[str, Any], World, list[bytes]]:
    """A chain of the world's blocks, one more block naming their state, and the proof
    of alice's trail against its header."""
    world = _world()
    genesis = world.genesis
    chain, proposer = replay_chain(world, tmp_path / "data")
    index = 0
    for committed in world.ledger.blocks:
        index += 1
        txs = [result.tx for result in check_batch([raw for raw in committed.raws if raw],
                                                   chain.chain_id)]
        _append(chain, proposer, [tx for tx in txs if tx is not None],
                now_ms=committed.context.timestamp_ms, index=index)
    proven_state = chain.height
    _append(chain, proposer, [], now_ms=chain.head()[2] + 1, index=index + 1)
    block = chain.block_by_height(chain.height)
    assert block is not None and block.header.state_height == proven_state
    assert trails_root_at(chain.state, chain.height) == block.header.trails_root
    certificate = chain.certify_head(node_keys())
    assert certificate is not None
    count, head, tree = trails.prove_head(chain.state.get, "alice")
    entries = list(chain.state.iterate(layout.audit_prefix("alice"), limit=1000))
    assert (count, head) == trails.chain_of(entries) and count == len(entries) == 5
    validators = [m.node_key for m in genesis.members if m.validator and m.node_key]
    document = {
        "format": PROOF_FORMAT, "kind": "trail", "chain_id": genesis.chain_id,
        "patient": "alice", "handovers": [], "validator_sets": {},
        "block": {"header": "0x" + block.header.encode().hex(),
                  "certificate": "0x" + certificate.encode().hex()},
        "trail": {"count": count, "head": "0x" + head.hex(),
                  "tree": {"siblings": ["0x" + s.hex() for s in tree.siblings],
                           "leaf": None if tree.leaf is None else [
                               "0x" + tree.leaf[0].hex(), "0x" + tree.leaf[1].hex()]},
                  "entries": [{"key": "0x" + k.hex(), "value": "0x" + v.hex()}
                              for k, v in entries]},
    }
    chain.store.close()
    return document, world, validators  # type: ignore[return-value]


def test_alices_whole_trail_verifies_offline(tmp_path: Path) -> None:
    document, world, validators = _proof(tmp_path)
    proven = verify_trail_proof(document, chain_id=world.genesis.chain_id,
                                genesis_validators=validators)
    kinds = [entry.kind.name for entry in proven.entries]
    assert kinds == ["KEY_GRANT", "BTG_OPEN", "KEY_GRANT", "BTG_CLOSE", "KEY_GRANT"], kinds
    assert [entry.recipient for entry in proven.entries if entry.kind.name == "KEY_GRANT"] \
        == ["grey", "ross", "grey"]
    text = proven.statement()
    assert "has 5 entries, none left out, reordered or altered" in text
    assert text.count("\n") == 5


def test_a_trail_left_out_reordered_or_altered_fails_naming_the_check(
        tmp_path: Path) -> None:
    original, world, validators = _proof(tmp_path)

    def dropped(doc: dict[str, Any]) -> None:
        del doc["trail"]["entries"][2]

    def reordered(doc: dict[str, Any]) -> None:
        entries = doc["trail"]["entries"]
        entries[1], entries[2] = entries[2], entries[1]

    def altered(doc: dict[str, Any]) -> None:
        entry = doc["trail"]["entries"][3]
        value = bytearray.fromhex(entry["value"][2:])
        value[-1] ^= 1
        entry["value"] = "0x" + value.hex()

    def another_patient(doc: dict[str, Any]) -> None:
        doc["patient"] = "bob"

    def uncertified(doc: dict[str, Any]) -> None:
        strangers = [SigningKey(bytes([n + 50]) * 32) for n in range(3)]
        from hashlib import sha256

        from ledger.block import BlockHeader
        from ledger.certificate import certify
        from ledger.codec import decode

        raw = bytes.fromhex(doc["block"]["header"][2:])
        header = decode(BlockHeader, raw, size_bytes_max=4096)
        forged = certify(strangers, chain_id=header.chain_id, height=header.height,
                         block_hash=sha256(raw).digest(),
                         members=[key.public_key for key in strangers])
        assert forged is not None
        doc["block"]["certificate"] = "0x" + forged.encode().hex()

    cases = [(dropped, "4 entries given, but the trail block .*commits to has 5"),
             (reordered, "out of chain order"),
             (altered, "an entry was altered"),
             (another_patient, "is not an entry of 'bob'"),
             (uncertified, "not certified by the validators in force")]
    for tamper, expected in cases:
        document = copy.deepcopy(original)
        tamper(document)
        with pytest.raises(ProofError, match=expected):
            verify_trail_proof(document, chain_id=world.genesis.chain_id,
                               genesis_validators=validators)
