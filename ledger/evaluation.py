"""Evaluating a committed block: the deterministic part of applying it, pure.

Every node runs exactly these checks on exactly the same committed blocks, so a block that
fails one is skipped by all of them alike (:func:`rejection`):

- its proposer is not a current validator;
- it does not extend the head (height, previous hash), its timestamp does not increase,
  or its raft term/index are not those of the entry carrying it (a stale proposal of an
  earlier leader);
- it commits to the roots of a height not applied yet.

A block whose header commits to roots (of ``state_height``) that differ from this node's
own means this node's state diverged: :class:`StateDivergenceError`, the node stops.

A block that passes is evaluated (:func:`evaluate_block`): each tx gets its stateless
result (checked by the caller, possibly in parallel: a leader is not trusted with
signatures), txs already committed or repeated in the block are DUPLICATE, the
application runs the rest, and the outcome holds the codes, the state writes (the
block's results and state roots among them, under the node-owned ``ROOTS_PREFIX``) and
the application's events. Writing it is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ledger import app as application
from ledger.block import (
    GENESIS_RESULTS_ROOT,
    GENESIS_STATE_ROOT,
    Block,
    next_state_root,
    results_root,
)
from ledger.errors import LocalError, RemoteError
from ledger.results import ResultCode
from ledger.tx import Transaction

# Node-owned keys inside the state key space: per-height results and state roots, which
# later headers commit to. The application never writes under this prefix.
ROOTS_PREFIX = b"\xffnode/roots/"


class StateDivergenceError(LocalError):
    """Our results or state for a height differ from what the block's proposer computed."""


class BlockRejectedError(RemoteError):
    """A block from a peer that the chain's rules refuse (not a decoding failure)."""


def roots_key(height: int) -> bytes:
    return ROOTS_PREFIX + height.to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class Roots:
    results_root: bytes
    state_root: bytes

    def encode(self) -> bytes:
        return self.results_root + self.state_root

    @classmethod
    def decode(cls, data: bytes) -> Roots:
        assert len(data) == 64, "roots record is 64 bytes"
        return cls(data[:32], data[32:])


GENESIS_ROOTS = Roots(GENESIS_RESULTS_ROOT, GENESIS_STATE_ROOT)


@dataclass(frozen=True, slots=True)
class ChainTip:
    """What a block is checked against: the head and the validator set in force."""

    height: int
    head_hash: bytes
    head_timestamp_ms: int
    validators: Sequence[bytes]


@dataclass(frozen=True, slots=True)
class BlockOutcome:
    codes: list[int]
    writes: dict[bytes, bytes | None]
    events: tuple[object, ...]
    validator_changes: tuple[object, ...]


def rejection(block: Block, *, raft_term: int, raft_index: int, tip: ChainTip,
              roots_at: Callable[[int], Roots]) -> str | None:
    """Why every node skips this committed block, or None when it applies. Raises
    StateDivergenceError when its roots differ from ours (``roots_at``: our roots of an
    applied height)."""
    header = block.header
    if header.proposer not in tip.validators:
        return "proposer is not a validator"
    if header.height != tip.height + 1 or header.previous_hash != tip.head_hash:
        return f"does not extend the head (height {header.height}, head {tip.height})"
    if header.timestamp_ms <= tip.head_timestamp_ms:
        return "timestamp does not increase"
    if header.raft_index != raft_index or header.raft_term != raft_term:
        return "raft term/index differ from the entry carrying it (stale proposal)"
    if header.state_height > tip.height:
        return "commits to the state of a height not applied yet"
    ours = roots_at(header.state_height)
    if (header.results_root, header.state_root) != (ours.results_root, ours.state_root):
        raise StateDivergenceError(
            f"block {header.height} commits to roots of height {header.state_height} "
            f"that differ from ours: this node's state has diverged; it stops"
        )
    return None


def evaluate_block(block: Block, tx_ids: Sequence[bytes], checked: Sequence[Transaction | None],
                   check_codes: Sequence[int], *, committed: Callable[[bytes], bool],
                   state: application.StateReader, previous_roots: Roots) -> BlockOutcome:
    """The outcome of a block that passed :func:`rejection`. ``checked`` and
    ``check_codes`` are each tx's stateless result (the tx, or None with its code);
    ``committed`` says whether a tx id is already on chain; ``previous_roots`` are the
    roots of the head the block extends."""
    txs = list(checked)
    codes = [int(code) for code in check_codes]
    seen: set[bytes] = set()
    for index, tx_id in enumerate(tx_ids):
        if codes[index] != ResultCode.OK:
            continue
        if tx_id in seen or committed(tx_id):
            txs[index] = None
            codes[index] = int(ResultCode.DUPLICATE)
        seen.add(tx_id)
    header = block.header
    context = application.BlockContext(
        height=header.height, timestamp_ms=header.timestamp_ms, proposer=header.proposer
    )
    outcome = application.apply_block(state, context, txs, codes)
    final_codes = [int(code) for code in outcome.codes]
    writes = dict(outcome.writes)
    roots = Roots(
        results_root(tx_ids, final_codes),
        next_state_root(previous_roots.state_root, application.writes_digest(outcome.writes)),
    )
    writes[roots_key(header.height)] = roots.encode()
    return BlockOutcome(final_codes, writes, tuple(outcome.events),
                        tuple(outcome.validator_changes))
