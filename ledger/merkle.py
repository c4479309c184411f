"""Merkle trees over 32-byte hashes, with inclusion proofs.

Domain separation (RFC 6962 style): ``leaf = SHA-256(0x00 || item)``, ``node =
SHA-256(0x01 || left || right)``, so a node can never be passed off as a leaf. An odd node
at the end of a level is promoted unchanged to the next level (never duplicated, so no two
different lists share a root). The empty tree's root is ``SHA-256(0x02)``.

A proof is the list of sibling hashes from the leaf upwards; the verifier derives each
sibling's side from the leaf index and the tree size, so the index is bound by the proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ledger import limits
from ledger.codec import Bytes, ListOf, Struct, UInt

_sha256 = hashlib.sha256

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = _sha256(b"\x02").digest()

# log2(BLOCK_TXS_MAX) rounded up: no proof in a valid block is longer.
PROOF_LENGTH_MAX = 32


def leaf_hash(item: bytes) -> bytes:
    return _sha256(LEAF_PREFIX + item).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(NODE_PREFIX + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    pairs = len(level) // 2
    upper = [
        _sha256(NODE_PREFIX + level[2 * i] + level[2 * i + 1]).digest() for i in range(pairs)
    ]
    if len(level) % 2:
        upper.append(level[-1])
    return upper


def merkle_root(items: Sequence[bytes]) -> bytes:
    if not items:
        return EMPTY_ROOT
    level = [_sha256(LEAF_PREFIX + item).digest() for item in items]
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


@dataclass(frozen=True, slots=True)
class MerkleProof(Struct):
    index: int
    size: int
    siblings: tuple[bytes, ...]

    SCHEMA = (
        ("index", UInt(maximum=limits.BLOCK_TXS_MAX)),
        ("size", UInt(minimum=1, maximum=limits.BLOCK_TXS_MAX)),
        ("siblings", ListOf(Bytes(32), maximum=PROOF_LENGTH_MAX)),
    )


def merkle_proof(items: Sequence[bytes], index: int) -> MerkleProof:
    assert 0 <= index < len(items), "proof index out of range"
    level = [_sha256(LEAF_PREFIX + item).digest() for item in items]
    siblings: list[bytes] = []
    position = index
    while len(level) > 1:
        sibling = position ^ 1
        if sibling < len(level):
            siblings.append(level[sibling])
        level = _next_level(level)
        position //= 2
    return MerkleProof(index=index, size=len(items), siblings=tuple(siblings))


def verify_proof(item: bytes, proof: MerkleProof, root: bytes) -> bool:
    """True iff ``item`` is at ``proof.index`` of a tree of ``proof.size`` with ``root``.

    ``proof.size`` must be checked against an authenticated count (a block header's
    ``tx_count``): a promoted node looks like any subtree hash, so one proof can fit
    trees of more than one size.
    """
    if not 0 <= proof.index < proof.size:
        return False
    current = leaf_hash(item)
    position, size = proof.index, proof.size
    used = 0
    while size > 1:
        if position ^ 1 < size:  # has a sibling at this level (else promoted)
            if used >= len(proof.siblings):
                return False
            sibling = proof.siblings[used]
            used += 1
            current = node_hash(sibling, current) if position & 1 else node_hash(current, sibling)
        position //= 2
        size = (size + 1) // 2
    return used == len(proof.siblings) and current == root
