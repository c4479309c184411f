"""Quorum certificates: a majority of the validators in force attest to a block.

Every validator, once it has applied block H and found the roots H's header commits to
equal to its own (ledger.evaluation raises StateDivergenceError otherwise), signs a
:class:`Vote`: ``medledger/commit/v1`` over the chain id, H and H's header hash. So a
signature attests to the state, not only to the log position. A :class:`Certificate` of
H is the votes of a majority of ``V(H)``, the validator set H's header names
(``validators_hash``); block H + 1 carries it, and every node checks it before applying
H + 1 (ledger.evaluation.rejection), as CometBFT's LastCommit.

Which set certifies which block, so that a verifier holding only the genesis file can
follow the set (see :func:`validators_hash`):

- header H names ``validators_hash`` = V(H), which must equal header H - 1's
  ``next_validators_hash`` (for H = 1: the genesis set);
- header H names ``next_validators_hash`` = the validator set of the state at H's
  ``state_height`` (the state H's header commits to), which certifies H + 1.

A set change therefore first appears as a header's ``next_validators_hash``, certified
by the old set: the old set hands over to the new one. Pure and consensus-critical.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.codec import Bytes, ListOf, Nested, Struct, UInt
from ledger.crypto import HASH_SIZE, PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey, verify

DOMAIN_COMMIT = b"medledger/commit/v1"
VALIDATORS_DOMAIN = b"medledger/validators/v1\x00"
# More than the consortium can have validators (ledger.app.genesis.MEMBERS_MAX).
SIGNATURES_MAX = 256


def validators_hash(node_keys: Iterable[bytes]) -> bytes:
    """The hash a header names for a validator set: SHA-256 over the domain and the
    node keys in byte order (a set: order and repeats do not matter)."""
    keys = sorted(set(node_keys))
    assert all(len(key) == PUBLIC_KEY_SIZE for key in keys)
    return hashlib.sha256(VALIDATORS_DOMAIN + b"".join(keys)).digest()


def encode_validator_set(node_keys: Iterable[bytes]) -> bytes:
    """A validator set as the state holds it (keys in byte order, concatenated)."""
    return b"".join(sorted(set(node_keys)))


def decode_validator_set(data: bytes) -> list[bytes]:
    assert len(data) % PUBLIC_KEY_SIZE == 0, "a validator set is whole 32-byte keys"
    return [data[start:start + PUBLIC_KEY_SIZE]
            for start in range(0, len(data), PUBLIC_KEY_SIZE)]


def majority(members: int) -> int:
    """Signatures a certificate needs from a set of ``members``: more than half."""
    return members // 2 + 1


def commit_message(chain_id: str, height: int, block_hash: bytes) -> bytes:
    """What a vote signs (under DOMAIN_COMMIT): the chain id (length first), the height
    and the header hash."""
    name = chain_id.encode()
    return len(name).to_bytes(1, "big") + name + height.to_bytes(8, "big") + block_hash


@dataclass(frozen=True, slots=True)
class Vote(Struct):
    """One validator's attestation of one applied block (gossiped)."""

    height: int
    block_hash: bytes
    validator: bytes
    signature: bytes

    SCHEMA = (
        ("height", UInt()),
        ("block_hash", Bytes(HASH_SIZE)),
        ("validator", Bytes(PUBLIC_KEY_SIZE)),
        ("signature", Bytes(SIGNATURE_SIZE)),
    )

    def valid(self, chain_id: str) -> bool:
        return verify(DOMAIN_COMMIT, self.validator,
                      commit_message(chain_id, self.height, self.block_hash), self.signature)


def sign_vote(key: SigningKey, *, chain_id: str, height: int, block_hash: bytes) -> Vote:
    message = commit_message(chain_id, height, block_hash)
    return Vote(height, block_hash, key.public_key, key.sign(DOMAIN_COMMIT, message))


@dataclass(frozen=True, slots=True)
class CommitSignature(Struct):
    validator: bytes
    signature: bytes

    SCHEMA = (
        ("validator", Bytes(PUBLIC_KEY_SIZE)),
        ("signature", Bytes(SIGNATURE_SIZE)),
    )


@dataclass(frozen=True, slots=True)
class Certificate(Struct):
    """Votes of a majority of V(height) for the block ``block_hash`` at ``height``, in
    validator key order, one per validator."""

    height: int
    block_hash: bytes
    signatures: tuple[CommitSignature, ...]

    SCHEMA = (
        ("height", UInt()),
        ("block_hash", Bytes(HASH_SIZE)),
        ("signatures", ListOf(Nested(CommitSignature), maximum=SIGNATURES_MAX)),
    )

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    def signers(self) -> list[bytes]:
        return [signature.validator for signature in self.signatures]


def make_certificate(votes: Iterable[Vote], members: Sequence[bytes]) -> Certificate | None:
    """The certificate of the votes' block from the (already checked) votes of members,
    or None when they are not a majority of ``members``. Every vote names one block."""
    member_set = set(members)
    chosen: dict[bytes, Vote] = {}
    for vote in votes:
        if vote.validator in member_set:
            chosen.setdefault(vote.validator, vote)
    if len(chosen) < majority(len(member_set)):
        return None
    first = next(iter(chosen.values()))
    assert all((vote.height, vote.block_hash) == (first.height, first.block_hash)
               for vote in chosen.values()), "votes of one block"
    return Certificate(first.height, first.block_hash, tuple(
        CommitSignature(key, chosen[key].signature) for key in sorted(chosen)))


def certify(keys: Iterable[SigningKey], *, chain_id: str, height: int, block_hash: bytes,
            members: Sequence[bytes]) -> Certificate | None:
    """The certificate the ``keys`` among ``members`` sign for a block, or None when they
    are not a majority: for tools and tests that play every validator (a running node
    collects votes: node/certify.py)."""
    member_set = set(members)
    votes = [sign_vote(key, chain_id=chain_id, height=height, block_hash=block_hash)
             for key in keys if key.public_key in member_set]
    return make_certificate(votes, members)


def certificate_problem(certificate: Certificate, *, chain_id: str, height: int,
                        block_hash: bytes, members: Sequence[bytes]) -> str | None:
    """Why ``certificate`` does not certify block ``block_hash`` at ``height`` for the
    validator set ``members``, or None when it does: it names another block, a signer
    is not a member (a removed validator, say) or signs twice, signers are out of order,
    a signature does not verify, or fewer than a majority signed."""
    if certificate.height != height or certificate.block_hash != block_hash:
        return (f"certificate is of block {certificate.height} "
                f"0x{certificate.block_hash.hex()[:16]}…, not of block {height} "
                f"0x{block_hash.hex()[:16]}…")
    member_set = set(members)
    signers = certificate.signers()
    if any(later <= earlier for earlier, later in itertools.pairwise(signers)):
        return "certificate signers are not in key order, or one signs twice"
    outsiders = [key for key in signers if key not in member_set]
    if outsiders:
        return (f"certificate signed by 0x{outsiders[0].hex()[:16]}…, not a validator of the "
                "set in force for that block")
    needed = majority(len(member_set))
    if len(signers) < needed:
        return (f"certificate has {len(signers)} signatures of {len(member_set)} validators; "
                f"{needed} needed")
    message = commit_message(chain_id, height, block_hash)
    for signature in certificate.signatures:
        if not verify(DOMAIN_COMMIT, signature.validator, message, signature.signature):
            return (f"certificate signature of 0x{signature.validator.hex()[:16]}… does not "
                    "verify")
    return None


__all__ = [
    "DOMAIN_COMMIT",
    "SIGNATURES_MAX",
    "Certificate",
    "CommitSignature",
    "Vote",
    "certificate_problem",
    "certify",
    "commit_message",
    "decode_validator_set",
    "encode_validator_set",
    "majority",
    "make_certificate",
    "sign_vote",
    "validators_hash",
]
