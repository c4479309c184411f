"""A sparse Merkle tree over 256-bit keys, with leaf shortcuts: the authenticated map of
each patient's trail head (ledger/trails.py), whose root a header commits to.

A subtree holding no leaf hashes to ``EMPTY`` (32 zero bytes); a subtree holding exactly
one leaf *is* that leaf, at the depth where its path first parts from every other key's;
any other subtree is an internal node:

    leaf     = SHA-256(0x00 || key || value_hash)
    internal = SHA-256(0x01 || left || right)

Updating a key touches the nodes on its path only, about log2(leaves) of them. A proof
is the siblings on the path from the root down to where the key's path ends: the key's
own leaf (membership), or an empty subtree or another key's leaf (absence).

Nodes live in a key-value store (the state), each at its path: ``depth`` (one byte) and
the path's first ``depth`` bits (32 bytes, the rest zero). Pure and consensus-critical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

EMPTY = bytes(32)
KEY_BYTES = 32
_LEAF = b"\x00"
_INTERNAL = b"\x01"
_sha256 = hashlib.sha256


def leaf_hash(key: bytes, value_hash: bytes) -> bytes:
    return _sha256(_LEAF + key + value_hash).digest()


def internal_hash(left: bytes, right: bytes) -> bytes:
    if left == EMPTY and right == EMPTY:
        return EMPTY
    return _sha256(_INTERNAL + left + right).digest()


def _bit(key: bytes, depth: int) -> int:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


def _prefix(key: bytes, depth: int) -> bytes:
    """``key``'s first ``depth`` bits, the rest zero."""
    whole, rest = divmod(depth, 8)
    head = key[:whole]
    if rest:
        head += bytes([key[whole] & (0xFF << (8 - rest)) & 0xFF])
    return head + bytes(KEY_BYTES - len(head))


def node_path(key: bytes, depth: int) -> bytes:
    """Where the node at ``depth`` on ``key``'s path is stored."""
    return bytes([depth]) + _prefix(key, depth)


# A stored node: 0x00 || key || value_hash (a leaf) or 0x01 || left || right (internal).
Get = Callable[[bytes], bytes | None]


@dataclass(frozen=True, slots=True)
class SmtProof:
    """The siblings from the root down (``siblings[d]`` at depth d + 1 beside the path),
    and what ends the path: ``leaf`` (key, value_hash) or None for an empty subtree."""

    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, bytes] | None


def _node_hash(node: bytes | None) -> bytes:
    if node is None:
        return EMPTY
    if node[:1] == _LEAF:
        return leaf_hash(node[1:33], node[33:65])
    return internal_hash(node[1:33], node[33:65])


def root_of(get: Get) -> bytes:
    return _node_hash(get(node_path(EMPTY, 0)))


def update(get: Get, key: bytes, value_hash: bytes) -> tuple[dict[bytes, bytes | None], bytes]:
    """The node writes (path -> node, None: delete) that set ``key`` to ``value_hash``
    in the tree read through ``get``, and the new root."""
    assert len(key) == KEY_BYTES and len(value_hash) == 32
    number = int.from_bytes(key, "big")

    def at(depth: int) -> bytes:  # node_path(key, depth), from the key as a number
        shift = 256 - depth
        return bytes([depth]) + ((number >> shift) << shift).to_bytes(KEY_BYTES, "big")

    writes: dict[bytes, bytes | None] = {}
    path: list[tuple[int, bytes, bytes]] = []  # (depth, where, internal node), root down
    depth = 0
    while True:
        where = at(depth)
        node = get(where)
        if node is None or node[:1] == _LEAF:
            break
        path.append((depth, where, node))
        depth += 1
        assert depth < 256, "two keys share a 256-bit path: they are equal"
    leaf = _LEAF + key + value_hash
    mine = leaf_hash(key, value_hash)
    if node is not None and node[1:33] != key:
        # Another key's leaf ends the path here: push both down to where they part.
        other = node[1:33]
        parting = depth
        while _bit(other, parting) == (number >> (255 - parting)) & 1:
            parting += 1
        writes[node_path(other, parting + 1)] = node
        writes[at(parting + 1)] = leaf
        theirs = _node_hash(node)
        pair = (theirs, mine) if (number >> (255 - parting)) & 1 else (mine, theirs)
        writes[at(parting)] = _INTERNAL + pair[0] + pair[1]
        child = internal_hash(*pair)
        for level in range(parting - 1, depth - 1, -1):  # a chain of single children
            pair = (EMPTY, child) if (number >> (255 - level)) & 1 else (child, EMPTY)
            writes[at(level)] = _INTERNAL + pair[0] + pair[1]
            child = internal_hash(*pair)
    else:
        writes[at(depth)] = leaf
        child = mine
    for level, where, internal in reversed(path):
        if (number >> (255 - level)) & 1:
            left, right = internal[1:33], child
        else:
            left, right = child, internal[33:65]
        writes[where] = _INTERNAL + left + right
        child = internal_hash(left, right)
    return writes, child


def prove(get: Get, key: bytes) -> SmtProof:
    """The proof of ``key``'s value (or absence) in the tree read through ``get``."""
    siblings: list[bytes] = []
    depth = 0
    while True:
        node = get(node_path(key, depth))
        if node is None:
            return SmtProof(tuple(siblings), None)
        if node[:1] == _LEAF:
            return SmtProof(tuple(siblings), (node[1:33], node[33:65]))
        siblings.append(node[1:33] if _bit(key, depth) else node[33:65])
        depth += 1


def verify(root: bytes, key: bytes, value_hash: bytes | None, proof: SmtProof) -> bool:
    """True iff ``proof`` shows ``key`` holding ``value_hash`` (None: absent) under
    ``root``."""
    if len(key) != KEY_BYTES or len(proof.siblings) > 255:
        return False
    if proof.leaf is None:
        if value_hash is not None:
            return False
        node = EMPTY
    else:
        leaf_key, leaf_value = proof.leaf
        if len(leaf_key) != KEY_BYTES or len(leaf_value) != 32:
            return False
        if leaf_key == key:
            if value_hash != leaf_value:
                return False
        elif value_hash is not None or any(
                _bit(leaf_key, depth) != _bit(key, depth)
                for depth in range(len(proof.siblings))):
            return False  # another key's leaf proves absence only on the same path
        node = leaf_hash(leaf_key, leaf_value)
    for depth in range(len(proof.siblings) - 1, -1, -1):
        sibling = proof.siblings[depth]
        node = internal_hash(sibling, node) if _bit(key, depth) else internal_hash(node, sibling)
    return node == root


__all__ = ["EMPTY", "SmtProof", "node_path", "prove", "root_of", "update", "verify"]
