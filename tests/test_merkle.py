"""Merkle roots and inclusion proofs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    MerkleProof,
    leaf_hash,
    merkle_proof,
    merkle_root,
    node_hash,
    verify_proof,
)

items_strategy = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40)


def test_small_trees_by_hand() -> None:
    a, b, c = (hashlib.sha256(bytes([i])).digest() for i in range(3))
    assert merkle_root([]) == EMPTY_ROOT
    assert merkle_root([a]) == leaf_hash(a)
    assert merkle_root([a, b]) == node_hash(leaf_hash(a), leaf_hash(b))
    # odd count: the last node is promoted, never duplicated
    assert merkle_root([a, b, c]) == node_hash(node_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])


def test_a_leaf_cannot_pose_as_a_node() -> None:
    a, b = bytes(32), bytes([1]) * 32
    inner = node_hash(leaf_hash(a), leaf_hash(b))
    assert merkle_root([inner]) != merkle_root([a, b])


@given(items_strategy)
def test_every_leaf_proof_verifies(items: list[bytes]) -> None:
    root = merkle_root(items)
    for index, item in enumerate(items):
        proof = merkle_proof(items, index)
        assert verify_proof(item, proof, root)
        assert MerkleProof.from_wire(proof.to_wire()) == proof


@given(items_strategy, st.data())
def test_tampered_proofs_fail(items: list[bytes], data: st.DataObject) -> None:
    root = merkle_root(items)
    index = data.draw(st.integers(0, len(items) - 1))
    proof = merkle_proof(items, index)
    item = items[index]
    other_item = bytes(32) if item != bytes(32) else bytes([1]) * 32
    assert not verify_proof(other_item, proof, root)
    if len(items) > 1:
        moved = MerkleProof((index + 1) % len(items), proof.size, proof.siblings)
        if items[moved.index] != item:
            assert not verify_proof(item, moved, root)
        position = data.draw(st.integers(0, len(proof.siblings) - 1))
        siblings = list(proof.siblings)
        siblings[position] = bytes(b ^ 0xFF for b in siblings[position])
        assert not verify_proof(item, MerkleProof(index, proof.size, tuple(siblings)), root)
        assert not verify_proof(item, MerkleProof(index, proof.size, proof.siblings[:-1]), root)
    assert not verify_proof(item, MerkleProof(index, proof.size, (*proof.siblings, root)), root)


def test_proof_index_out_of_range_fails() -> None:
    items = [bytes([i]) * 32 for i in range(5)]
    proof = merkle_proof(items, 4)
    assert not verify_proof(items[4], MerkleProof(5, 5, proof.siblings), merkle_root(items))
    with pytest.raises(AssertionError):
        merkle_proof(items, 5)
