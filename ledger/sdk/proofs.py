"""Proofs a patient's app can check with no node: a tx's inclusion in a block whose header
a majority of the validators in force certified, the validator set followed from the
genesis file (ledger/certificate.py). What ``medledger proof tx`` writes and
``medledger verify`` checks.

A proof document is JSON (bytes as 0x-hex), ``format`` ``medledger-proof/1``:

- ``chain_id``;
- ``handovers``: every header, up to the proven block, whose ``next_validators_hash``
  differs from its ``validators_hash`` (a validator-set change), each with its
  certificate, in height order: the old set certifies the header that names the new one;
- ``validator_sets``: the keys of each set named (checked against its hash);
- ``block``: the proven block's header (canonical bytes) and certificate;
- ``tx``: the raw tx, its position and its Merkle proof against the header's tx root.

The verifier starts from the genesis set and walks the handovers: each header must name
the set in force, carry a certificate by a majority of it, and hands over to the next.
A handover left out shows as a header naming a set that is not in force. What it cannot
see: a majority of a *former* set signing a whole other chain after it was replaced
(every light client shares this; start from a recent checkpoint to narrow it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.block import BlockHeader
from ledger.certificate import (
    Certificate,
    certificate_problem,
    majority,
    validators_hash,
)
from ledger.codec import decode
from ledger.errors import DecodeError, MedledgerError
from ledger.merkle import MerkleProof, verify_proof
from ledger.tx import decode_transaction, tx_id_of

PROOF_FORMAT = "medledger-proof/1"
HEADER_BYTES_MAX = 4096
CERTIFICATE_BYTES_MAX = 64 * 1024


class ProofError(MedledgerError):
    """The proof does not hold; the message says which check failed."""


@dataclass(frozen=True, slots=True)
class ProvenTx:
    """What a tx proof established."""

    chain_id: str
    tx_id: bytes
    tx_type: str
    signer: bytes
    height: int
    position: int
    block_hash: bytes
    block_time_ms: int
    signers: int  # validators whose signatures certify the block
    validators: int  # the size of the set in force for it
    set_changes: int  # validator-set changes followed from genesis

    def statement(self) -> str:
        when = datetime.fromtimestamp(self.block_time_ms / 1000, tz=UTC)
        changes = ("no validator-set change" if self.set_changes == 0 else
                   f"{self.set_changes} validator-set change"
                   f"{'s' if self.set_changes != 1 else ''}")
        return (
            f"Proven: transaction 0x{self.tx_id.hex()} ({self.tx_type}, signed by "
            f"0x{self.signer.hex()}) is at position {self.position} of block "
            f"{self.height} of chain {self.chain_id!r}, made at "
            f"{when:%Y-%m-%d %H:%M:%S} UTC. {self.signers} of the {self.validators} "
            f"validators in force for that block signed its header (a majority), and that "
            f"set was followed from the genesis file through {changes}.")


def _bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ProofError(f"{what} is not 0x-hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ProofError(f"{what} is not 0x-hex") from None


def _header(data: Any, what: str) -> tuple[BlockHeader, bytes]:
    raw = _bytes(data, what)
    try:
        header = decode(BlockHeader, raw, size_bytes_max=HEADER_BYTES_MAX)
    except DecodeError as error:
        raise ProofError(f"{what} is not a block header: {error}") from None
    return header, hashlib.sha256(raw).digest()


def _certificate(data: Any, what: str) -> Certificate:
    try:
        return decode(Certificate, _bytes(data, what), size_bytes_max=CERTIFICATE_BYTES_MAX)
    except DecodeError as error:
        raise ProofError(f"{what} is not a certificate: {error}") from None


class _SetWalk:
    """The validator set in force, followed from genesis through handovers."""

    def __init__(self, genesis_validators: Sequence[bytes], sets: Mapping[str, Any],
                 chain_id: str) -> None:
        self.chain_id = chain_id
        self.current = validators_hash(genesis_validators)
        self.keys: dict[bytes, list[bytes]] = {self.current: sorted(genesis_validators)}
        self.changes = 0
        for name, keys in sets.items():
            set_hash = _bytes(name, "a validator set's hash")
            if not isinstance(keys, list):
                raise ProofError(f"validator set {name} is not a list of keys")
            members = [_bytes(key, f"a key of validator set {name}") for key in keys]
            if validators_hash(members) != set_hash:
                raise ProofError(f"validator set {name[:18]}…: its keys do not hash to it")
            self.keys[set_hash] = sorted(members)

    def certify(self, header: BlockHeader, header_hash: bytes, certificate: Certificate,
                what: str) -> list[bytes]:
        """Check ``header`` names the set in force and ``certificate`` certifies it by a
        majority of that set; returns the set's keys."""
        if header.chain_id != self.chain_id:
            raise ProofError(f"{what} is of chain {header.chain_id!r}, not {self.chain_id!r}")
        if header.validators_hash != self.current:
            raise ProofError(
                f"{what} (block {header.height}) names validator set "
                f"0x{header.validators_hash.hex()[:16]}…, but the set in force there is "
                f"0x{self.current.hex()[:16]}…: a validator-set change is missing from the "
                "proof, or the header is not the chain's")
        members = self.keys[self.current]
        problem = certificate_problem(certificate, chain_id=self.chain_id,
                                      height=header.height, block_hash=header_hash,
                                      members=members)
        if problem is not None:
            raise ProofError(f"{what} (block {header.height}) is not certified by the "
                             f"validators in force: {problem}")
        return members

    def hand_over(self, header: BlockHeader) -> None:
        following = header.next_validators_hash
        if following != self.current:
            if following not in self.keys:
                raise ProofError(f"block {header.height} hands over to validator set "
                                 f"0x{following.hex()[:16]}…, whose keys the proof lacks")
            self.current = following
            self.changes += 1


def verify_tx_proof(document: Mapping[str, Any], *, chain_id: str,
                    genesis_validators: Sequence[bytes]) -> ProvenTx:
    """Check a tx proof against the genesis file's chain id and validator node keys;
    returns what it proves, or raises ProofError naming the check that failed."""
    if document.get("format") != PROOF_FORMAT or document.get("kind") != "tx":
        raise ProofError(f"not a medledger tx proof (format {PROOF_FORMAT})")
    if document.get("chain_id") != chain_id:
        raise ProofError(f"the proof is of chain {document.get('chain_id')!r}; the genesis "
                         f"file is of {chain_id!r}")
    walk = _SetWalk(genesis_validators, document.get("validator_sets") or {}, chain_id)
    block = document.get("block") or {}
    header, header_hash = _header(block.get("header"), "the block's header")
    previous = 0
    for number, handover in enumerate(document.get("handovers") or []):
        what = f"handover {number + 1}"
        handed, handed_hash = _header(handover.get("header"), f"{what}'s header")
        if handed.height <= previous or handed.height > header.height:
            raise ProofError(f"{what} (block {handed.height}) is out of order")
        previous = handed.height
        walk.certify(handed, handed_hash,
                     _certificate(handover.get("certificate"), f"{what}'s certificate"), what)
        if handed.height < header.height:
            walk.hand_over(handed)
    members = walk.certify(header, header_hash,
                           _certificate(block.get("certificate"), "the block's certificate"),
                           "the block's header")
    certificate = _certificate(block.get("certificate"), "the block's certificate")
    tx = document.get("tx") or {}
    raw = _bytes(tx.get("raw"), "the tx")
    try:
        decoded = decode_transaction(raw)
    except DecodeError as error:
        raise ProofError(f"the tx does not decode: {error}") from None
    if decoded.chain_id != chain_id:
        raise ProofError(f"the tx is of chain {decoded.chain_id!r}")
    proof = tx.get("proof") or {}
    try:
        merkle = MerkleProof(int(proof["index"]), int(proof["size"]), tuple(
            _bytes(sibling, "a Merkle sibling") for sibling in proof["siblings"]))
    except (KeyError, TypeError, ValueError):
        raise ProofError("the tx's Merkle proof is malformed") from None
    tx_id = tx_id_of(raw)
    if merkle.size != header.tx_count or tx.get("position") != merkle.index:
        raise ProofError("the tx's Merkle proof is not of its position in that block")
    if not verify_proof(tx_id, merkle, header.tx_root):
        raise ProofError(f"the tx 0x{tx_id.hex()[:16]}… is not in block {header.height}: "
                         "its Merkle proof does not lead to the header's tx root")
    assert len(certificate.signatures) >= majority(len(members))
    return ProvenTx(chain_id, tx_id, decoded.type.name, decoded.signer, header.height,
                    merkle.index, header_hash, header.timestamp_ms,
                    len(certificate.signatures), len(members), walk.changes)


__all__ = ["PROOF_FORMAT", "ProofError", "ProvenTx", "verify_tx_proof"]
