"""Offline tx proofs (ledger/sdk/proofs.py): a proof built from a chain verifies against
the genesis validators alone; a proof of another chain, with a short or foreign
certificate, a missing validator set or malformed fields is refused, naming the check."""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
from factories import signed

from consensus.types import Entry, EntryType
from ledger.certificate import certify
from ledger.crypto import SigningKey
from ledger.merkle import merkle_proof
from ledger.sdk.devnet import devnet_genesis
from ledger.sdk.proofs import PROOF_FORMAT, ProofError, verify_tx_proof
from ledger.txtypes import TxType
from node.bootstrap import write_genesis_record
from node.chain import Chain
from storage.store import Store

CHAIN_ID = "medledger-proofs"
KEYS = [SigningKey(bytes([index + 11]) * 32) for index in range(3)]
MEMBERS = [key.public_key for key in KEYS]


def _document(tmp_path: Path) -> dict[str, Any]:
    genesis = devnet_genesis(CHAIN_ID, MEMBERS, genesis_time_ms=int(time.time() * 1000))
    store = Store.open(tmp_path / "data", chain_id=CHAIN_ID)
    write_genesis_record(store, genesis)
    chain = Chain(chain_id=CHAIN_ID, store=store, genesis_time_ms=genesis.genesis_time_ms,
                  sync_applies=False)
    txs = [signed(TxType.CONSENT_REVOKE, nonce=nonce, chain_id=CHAIN_ID) for nonce in (1, 2, 3)]
    for index in (1, 2):
        height, head_hash, head_ms = chain.head()
        block = chain.build_block(
            KEYS[0], txs if index == 2 else [], height=height + 1, previous_hash=head_hash,
            previous_timestamp_ms=head_ms, now_ms=head_ms + 1, raft_term=1, raft_index=index,
            previous_state_height=chain.named_state_height(),
            validators_hash=chain.head_validator_sets()[1],
            certificate=chain.certify_head(KEYS))
        result = chain.apply_entry(Entry(1, index, EntryType.NORMAL, block.encode()))
        assert result.applied is not None, result.skipped_reason
    proven = chain.block_by_height(2)
    assert proven is not None
    certificate = chain.certify_head(KEYS[:2])
    assert certificate is not None
    proof = merkle_proof(proven.tx_ids(), 1)
    store.close()
    return {
        "format": PROOF_FORMAT, "kind": "tx", "chain_id": CHAIN_ID, "handovers": [],
        "validator_sets": {},
        "block": {"header": "0x" + proven.header.encode().hex(),
                  "certificate": "0x" + certificate.encode().hex()},
        "tx": {"raw": "0x" + txs[1].raw.hex(), "position": 1,
               "proof": {"index": proof.index, "size": proof.size,
                         "siblings": ["0x" + sibling.hex() for sibling in proof.siblings]}},
    }


def test_a_proof_verifies_against_the_genesis_validators_alone(tmp_path: Path) -> None:
    document = _document(tmp_path)
    proven = verify_tx_proof(document, chain_id=CHAIN_ID, genesis_validators=MEMBERS)
    assert (proven.height, proven.position, proven.signers, proven.validators) == (2, 1, 2, 3)
    assert proven.tx_type == "CONSENT_REVOKE" and proven.set_changes == 0
    assert "2 of the 3 validators in force" in proven.statement()


def test_every_flaw_is_refused_naming_the_check(tmp_path: Path) -> None:
    original = _document(tmp_path)
    strangers = [SigningKey(bytes([index + 40]) * 32) for index in range(3)]
    header = bytes.fromhex(original["block"]["header"][2:])
    import hashlib

    from ledger.block import BlockHeader
    from ledger.codec import decode

    height = decode(BlockHeader, header, size_bytes_max=4096).height
    foreign = certify(strangers, chain_id=CHAIN_ID, height=height,
                      block_hash=hashlib.sha256(header).digest(),
                      members=[key.public_key for key in strangers])
    assert foreign is not None
    cases: list[tuple[str, Any, str]] = [
        ("format", lambda d: d.update(format="other/1"), "not a medledger tx proof"),
        ("chain", lambda d: d.update(chain_id="medledger-other"), "the proof is of chain"),
        ("hex", lambda d: d["block"].update(header="0xzz"), "is not 0x-hex"),
        ("header", lambda d: d["block"].update(header="0x00"), "is not a block header"),
        ("foreign", lambda d: d["block"].update(certificate="0x" + foreign.encode().hex()),
         "not a validator of the set"),
        ("short", lambda d: d["block"].update(certificate="0x" + dataclasses.replace(
            foreign, signatures=()).encode().hex()), "not certified"),
        ("position", lambda d: d["tx"].update(position=0), "not of its position"),
        ("tx", lambda d: d["tx"].update(raw="0x" + signed(
            TxType.CONSENT_REVOKE, nonce=9, chain_id=CHAIN_ID).raw.hex()), "is not in block"),
        ("proof", lambda d: d["tx"].update(proof={"index": "x"}), "malformed"),
    ]
    for name, tamper, expected in cases:
        document = copy.deepcopy(original)
        tamper(document)
        with pytest.raises(ProofError, match=expected):
            verify_tx_proof(document, chain_id=CHAIN_ID, genesis_validators=MEMBERS)
        assert name
    # Another genesis set: the header names a set that is not in force.
    with pytest.raises(ProofError, match="a validator-set change is missing"):
        verify_tx_proof(original, chain_id=CHAIN_ID,
                        genesis_validators=[key.public_key for key in strangers])
