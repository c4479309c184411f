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

from ledger import smt, trails
from ledger.app.model import AuditEntry
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


def _certified_header(document: Mapping[str, Any], *, chain_id: str,
                      genesis_validators: Sequence[bytes]
                      ) -> tuple[BlockHeader, bytes, Certificate, list[bytes], int]:
    """The proven block's header, its hash and certificate, the keys of the set in force
    for it and the set changes followed: the walk from genesis both proofs share."""
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
    certificate = _certificate(block.get("certificate"), "the block's certificate")
    members = walk.certify(header, header_hash, certificate, "the block's header")
    return header, header_hash, certificate, members, walk.changes


def verify_tx_proof(document: Mapping[str, Any], *, chain_id: str,
                    genesis_validators: Sequence[bytes]) -> ProvenTx:
    """Check a tx proof against the genesis file's chain id and validator node keys;
    returns what it proves, or raises ProofError naming the check that failed."""
    if document.get("format") != PROOF_FORMAT or document.get("kind") != "tx":
        raise ProofError(f"not a medledger tx proof (format {PROOF_FORMAT})")
    header, header_hash, certificate, members, changes = _certified_header(
        document, chain_id=chain_id, genesis_validators=genesis_validators)
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
                    len(certificate.signatures), len(members), changes)


@dataclass(frozen=True, slots=True)
class ProvenTrail:
    """What a trail proof established: the patient's whole access trail as of a state a
    certified header commits to."""

    chain_id: str
    patient: str
    height: int  # the certified block
    state_height: int  # the state its header commits to
    entries: tuple[AuditEntry, ...]
    signers: int
    validators: int
    set_changes: int

    def statement(self) -> str:
        lines = [
            f"Proven: the access trail of patient {self.patient!r} on chain "
            f"{self.chain_id!r}, as of block {self.state_height}, has {len(self.entries)} "
            f"entr{'y' if len(self.entries) == 1 else 'ies'}, none left out, reordered or "
            f"altered. Block {self.height}'s header commits to it; {self.signers} of the "
            f"{self.validators} validators in force signed that header, a set followed from "
            f"the genesis file through {self.set_changes} change"
            f"{'' if self.set_changes == 1 else 's'}."]
        for number, entry in enumerate(self.entries, start=1):
            when = datetime.fromtimestamp(entry.time_ms / 1000, tz=UTC)
            what = entry.kind.name.lower().replace("_", " ")
            detail = [f"by {entry.actor}"]
            if entry.record_id is not None:
                detail.append(f"record {entry.record_id}")
            if entry.recipient is not None:
                detail.append(f"to {entry.recipient}")
            if entry.basis_id is not None:
                detail.append(f"under {entry.basis_id}")
            lines.append(f"  {number}. {when:%Y-%m-%d %H:%M:%S} UTC  {what}  "
                         f"{', '.join(detail)}  (block {entry.height})")
        return "\n".join(lines)


def verify_trail_proof(document: Mapping[str, Any], *, chain_id: str,
                       genesis_validators: Sequence[bytes]) -> ProvenTrail:
    """Check a patient's trail proof against the genesis file's chain id and validator
    node keys: the certified header, the patient's chain head in its trails root, and
    every entry of the chain. ProofError names the check that failed."""
    if document.get("format") != PROOF_FORMAT or document.get("kind") != "trail":
        raise ProofError(f"not a medledger trail proof (format {PROOF_FORMAT})")
    header, _, certificate, members, changes = _certified_header(
        document, chain_id=chain_id, genesis_validators=genesis_validators)
    patient = document.get("patient")
    if not isinstance(patient, str) or not patient:
        raise ProofError("the proof names no patient")
    trail = document.get("trail") or {}
    raw_entries = trail.get("entries")
    if not isinstance(raw_entries, list):
        raise ProofError("the trail's entries are not a list")
    entries: list[tuple[bytes, bytes]] = []
    for number, item in enumerate(raw_entries, start=1):
        if not isinstance(item, dict):
            raise ProofError(f"entry {number} is not an object")
        key = _bytes(item.get("key"), f"entry {number}'s key")
        value = _bytes(item.get("value"), f"entry {number}'s value")
        if not key.startswith(trails.AUDIT_PREFIX) or trails.patient_of(key) != patient:
            raise ProofError(f"entry {number} is not an entry of {patient!r}'s trail")
        if entries and key <= entries[-1][0]:
            raise ProofError(f"entry {number} is out of chain order (entries reordered)")
        entries.append((key, value))
    tree = trail.get("tree") or {}
    try:
        siblings = tuple(_bytes(sibling, "a tree sibling") for sibling in tree["siblings"])
        leaf = tree.get("leaf")
        proof = smt.SmtProof(siblings, None if leaf is None else (
            _bytes(leaf[0], "the tree leaf's key"), _bytes(leaf[1], "the tree leaf's value")))
    except (KeyError, TypeError, IndexError):
        raise ProofError("the trail's tree proof is malformed") from None
    count, head = trails.chain_of(entries)
    key = trails.patient_key(patient)
    if not smt.verify(header.trails_root, key, trails.head_value_hash(count, head), proof):
        leaf = proof.leaf
        held = leaf[1] if leaf is not None and leaf[0] == key else None
        if not smt.verify(header.trails_root, key, held, proof):
            raise ProofError("the trail's tree proof does not lead to the trails root block "
                             f"{header.height}'s header commits to")
        # The committed head, when the proof states it truly (it hashes to the leaf).
        stated_count, stated_head = trail.get("count"), trail.get("head")
        if (held is not None and isinstance(stated_count, int) and 0 <= stated_count < 2**64
                and trails.head_value_hash(stated_count, _bytes(stated_head, "the head"))
                == held and stated_count != count):
            raise ProofError(
                f"{count} entries given, but the trail block {header.height}'s header "
                f"commits to has {stated_count}: entries were left out or added")
        raise ProofError(f"the {count} entries do not chain to the head block "
                         f"{header.height}'s header commits to: an entry was altered, "
                         "reordered or replaced")
    decoded = []
    for number, (_, value) in enumerate(entries, start=1):
        try:
            decoded.append(decode(AuditEntry, value, size_bytes_max=HEADER_BYTES_MAX))
        except DecodeError as error:
            raise ProofError(f"entry {number} is not an audit entry: {error}") from None
    return ProvenTrail(chain_id, patient, header.height, header.state_height, tuple(decoded),
                       len(certificate.signatures), len(members), changes)


__all__ = [
    "PROOF_FORMAT",
    "ProofError",
    "ProvenTrail",
    "ProvenTx",
    "verify_trail_proof",
    "verify_tx_proof",
]
