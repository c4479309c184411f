"""The sparse Merkle tree (ledger/smt.py): the root depends only on the map, not on the
order of updates; membership and absence proofs verify, and nothing else does."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import smt


def _key(number: int) -> bytes:
    return hashlib.sha256(b"patient %d" % number).digest()


def _value(number: int, version: int) -> bytes:
    return hashlib.sha256(b"head %d %d" % (number, version)).digest()


def _reference_root(items: dict[bytes, bytes], depth: int = 0) -> bytes:
    """The tree's definition, recursively: empty, a single leaf, or an internal node."""
    if not items:
        return smt.EMPTY
    if len(items) == 1:
        (key, value), = items.items()
        return smt.leaf_hash(key, value)
    left = {k: v for k, v in items.items() if not (k[depth >> 3] >> (7 - (depth & 7))) & 1}
    right = {k: v for k, v in items.items() if k not in left}
    return smt.internal_hash(_reference_root(left, depth + 1), _reference_root(right, depth + 1))


def _apply(store: dict[bytes, bytes], key: bytes, value: bytes) -> bytes:
    writes, root = smt.update(store.get, key, value)
    for path, node in writes.items():
        if node is None:
            store.pop(path, None)
        else:
            store[path] = node
    return root


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), min_size=1, max_size=60),
       st.randoms(use_true_random=False))
def test_roots_follow_the_definition_in_any_order_and_proofs_verify(
        updates: list[tuple[int, int]], random: object) -> None:
    store: dict[bytes, bytes] = {}
    expected: dict[bytes, bytes] = {}
    root = smt.EMPTY
    for number, version in updates:
        root = _apply(store, _key(number), _value(number, version))
        expected[_key(number)] = _value(number, version)
        assert root == _reference_root(expected) == smt.root_of(store.get)
    # The same final map inserted in another order: the same root.
    shuffled = list(expected.items())
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    other: dict[bytes, bytes] = {}
    for key, value in shuffled:
        other_root = _apply(other, key, value)
    assert other_root == root and other == store
    for number in range(45):
        key = _key(number)
        proof = smt.prove(store.get, key)
        held = expected.get(key)
        assert smt.verify(root, key, held, proof)
        assert not smt.verify(root, key, _value(number, 99), proof)
        if held is not None:
            assert not smt.verify(root, key, None, proof)
            if proof.siblings:  # an altered sibling breaks it
                bent = smt.SmtProof((bytes(32), *proof.siblings[1:]) if proof.siblings[0]
                                    != bytes(32) else (b"\x01" * 32, *proof.siblings[1:]),
                                    proof.leaf)
                assert not smt.verify(root, key, held, bent)
