"""The state commitment: one value that commits to every state item, updated per write.

A header's ``state_root`` (state layout 3) is SHA-256 over a *multiset hash* of the whole
state: the sum, modulo 2^4096, of one 4096-bit hash per (key, value) item (AdHash,
Bellare and Micciancio, with SHAKE-256 as the item hash). A sum does not depend on the
order items were written, so

- applying a block updates it in O(writes): add the hash of each new item, subtract the
  hash of each item it replaces or deletes;
- anyone holding the items of a state, in any order, in any number of pieces, computes
  the same value, and a piece's sum can be checked on its own against a list of piece
  sums that adds up to it (state sync checks each chunk as it arrives).

Security: finding two different multisets with equal sums is the generalized birthday
problem in Z/2^n; Wagner's k-tree algorithm solves it in about 2^(2*sqrt(n)) work, so
n = 4096 gives about 2^128. (A rolling hash of each block's writes, the previous
commitment, commits to the history but a node holding only a state cannot check it.)

Which items: every state item except the node's bookkeeping of the commitment itself,
the accumulator entry (``evaluation.ACCUMULATOR_KEY``) and the roots of the height being
committed (``roots_key(h)`` holds ``state_root(h)``; it joins the sum at h + 1). Pure and
consensus-critical: the domains, the widths and the encoding below change only with the
state layout version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

ITEM_DOMAIN = b"medledger/state-item/v1\x00"
ROOT_DOMAIN = b"medledger/state/v2\x00"
ACCUMULATOR_BYTES = 512  # 4096 bits
_MODULUS_MASK = (1 << (8 * ACCUMULATOR_BYTES)) - 1
_shake = hashlib.shake_256
_from_bytes = int.from_bytes


def item_hash(key: bytes, value: bytes) -> int:
    """The 4096-bit hash of one state item (the key's length first: no item's key and
    value can be split another way)."""
    data = ITEM_DOMAIN + len(key).to_bytes(4, "big") + key + value
    return _from_bytes(_shake(data).digest(ACCUMULATOR_BYTES), "little")


def accumulate(accumulator: int, added: Iterable[tuple[bytes, bytes]] = (),
               removed: Iterable[tuple[bytes, bytes]] = ()) -> int:
    """``accumulator`` with the ``added`` items' hashes added and the ``removed`` ones'
    subtracted, modulo 2^4096."""
    total = accumulator
    for key, value in added:
        total += item_hash(key, value)
    for key, value in removed:
        total -= item_hash(key, value)
    return total & _MODULUS_MASK


def accumulator_of(items: Iterable[tuple[bytes, bytes]]) -> int:
    """The multiset hash of ``items`` (any order)."""
    return accumulate(0, items)


def combine(accumulators: Iterable[int]) -> int:
    """The multiset hash of the union of disjoint pieces, from each piece's."""
    total = 0
    for value in accumulators:
        total += value
    return total & _MODULUS_MASK


def encode_accumulator(accumulator: int) -> bytes:
    return accumulator.to_bytes(ACCUMULATOR_BYTES, "little")


def decode_accumulator(data: bytes) -> int:
    if len(data) != ACCUMULATOR_BYTES:
        raise ValueError(f"an accumulator is {ACCUMULATOR_BYTES} bytes, not {len(data)}")
    return _from_bytes(data, "little")


def state_root_of(accumulator: int) -> bytes:
    """The header's ``state_root`` for a state whose multiset hash is ``accumulator``."""
    return hashlib.sha256(ROOT_DOMAIN + encode_accumulator(accumulator)).digest()


__all__ = [
    "ACCUMULATOR_BYTES",
    "accumulate",
    "accumulator_of",
    "combine",
    "decode_accumulator",
    "encode_accumulator",
    "item_hash",
    "state_root_of",
]
