"""Evaluating a committed block: the deterministic part of applying it, pure.

Every node runs exactly these checks on exactly the same committed blocks, so a block that
fails one is skipped by all of them alike (:func:`rejection`):

- its proposer is not a current validator;
- it does not extend the head (height, previous hash), its timestamp does not increase,
  or its raft term/index are not those of the entry carrying it (a stale proposal of an
  earlier leader);
- it commits to the roots of a height not applied yet;
- it names another validator set than the rules give (ledger/certificate.py), or the
  certificate it carries does not certify its predecessor: a signature that does not
  verify, a signer outside the set in force, fewer than a majority.

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

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ledger import app as application
from ledger import smt, trails
from ledger.app.layout import MEMBER, table_prefix
from ledger.block import (
    GENESIS_RESULTS_ROOT,
    GENESIS_STATE_ROOT,
    Block,
    results_root,
)
from ledger.certificate import (
    certificate_problem,
    decode_validator_set,
    encode_validator_set,
    validators_hash,
)
from ledger.commitment import (
    accumulate,
    accumulator_of,
    decode_accumulator,
    encode_accumulator,
    state_root_of,
)
from ledger.errors import LocalError, RemoteError
from ledger.results import ResultCode
from ledger.tx import Transaction

# Node-owned keys inside the state key space; the application never writes under
# b"\xffnode/". Per-height results and state roots, which later headers commit to:
ROOTS_PREFIX = b"\xffnode/roots/"
# Every tx id a block carried (any result code), valued where it landed: TX_LOCATION
# (height u64, position u32, result code u32; a tx id twice in one block: the first). A tx
# id committed once is DUPLICATE ever after. In the state, so a node holding a verified
# state and no blocks decides DUPLICATE as every other does; it is the node's tx index too.
TX_SEEN_PREFIX = b"\xffnode/tx/"
TX_LOCATION = struct.Struct(">QII")
# The state commitment's accumulator (ledger.commitment) as of the head; not itself in it.
ACCUMULATOR_KEY = b"\xffnode/accumulator"
# The hash of each height's validator set (ledger/certificate.py), and each set by its
# hash (written when a set first appears, never removed): what a later header names as
# its next set, and the members a certificate is checked against.
VALIDATORS_AT_PREFIX = b"\xffnode/validators-at/"
VALIDATOR_SET_PREFIX = b"\xffnode/validator-set/"
# The heights whose validator set differs from the previous height's (and 0), valued with
# the new set's hash: where a verifier's chain of set handovers starts looking.
VALIDATOR_CHANGE_PREFIX = b"\xffnode/validator-change/"
_MEMBER_PREFIX = table_prefix(MEMBER)


class StateDivergenceError(LocalError):
    """Our results or state for a height differ from what the block's proposer computed."""


class BlockRejectedError(RemoteError):
    """A block from a peer that the chain's rules refuse (not a decoding failure)."""


def roots_key(height: int) -> bytes:
    return ROOTS_PREFIX + height.to_bytes(8, "big")


def tx_seen_key(tx_id: bytes) -> bytes:
    return TX_SEEN_PREFIX + tx_id


def validators_at_key(height: int) -> bytes:
    return VALIDATORS_AT_PREFIX + height.to_bytes(8, "big")


def validator_change_key(height: int) -> bytes:
    return VALIDATOR_CHANGE_PREFIX + height.to_bytes(8, "big")


def validator_set_key(set_hash: bytes) -> bytes:
    return VALIDATOR_SET_PREFIX + set_hash


def validator_set_writes(height: int, node_keys: Iterable[bytes],
                         known: Callable[[bytes], bool],
                         previous: bytes | None) -> dict[bytes, bytes]:
    """The state entries recording ``node_keys`` as the validator set of ``height``
    (the set itself, unless ``known`` says the state holds it already; a change entry
    when it is not ``previous``, the set of ``height - 1``)."""
    keys = list(node_keys)
    set_hash = validators_hash(keys)
    writes = {validators_at_key(height): set_hash}
    if not known(set_hash):
        writes[validator_set_key(set_hash)] = encode_validator_set(keys)
    if set_hash != previous:
        writes[validator_change_key(height)] = set_hash
    return writes


def tx_index_writes(height: int, tx_ids: Sequence[bytes],
                    codes: Sequence[int]) -> dict[bytes, bytes]:
    """The tx index entries of a block's txs (the first position of a repeated id)."""
    writes: dict[bytes, bytes] = {}
    pack = TX_LOCATION.pack
    for position, (tx_id, code) in enumerate(zip(tx_ids, codes, strict=True)):
        key = TX_SEEN_PREFIX + tx_id
        if key not in writes:
            writes[key] = pack(height, position, code)
    return writes


def committed_items(items: Iterable[tuple[bytes, bytes]], height: int,
                    ) -> Iterator[tuple[bytes, bytes]]:
    """The items of the state at ``height`` that its state root commits to: all but the
    accumulator entry and the roots of ``height`` itself (ledger.commitment)."""
    own_roots = roots_key(height)
    for key, value in items:
        if key != ACCUMULATOR_KEY and key != own_roots:
            yield key, value


def genesis_state(writes: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The genesis state: the application's genesis writes and the accumulator over them
    (the genesis state root itself stays GENESIS_STATE_ROOT: the genesis hash commits
    to the genesis file, and so to this state)."""
    state = dict(writes)
    state.update(validator_set_writes(
        0, application.validator_node_keys(application.MemoryState(writes)), lambda set_hash: False,
        None))
    state[trails.trails_at_key(0)] = smt.EMPTY
    state[ACCUMULATOR_KEY] = encode_accumulator(accumulator_of(committed_items(
        state.items(), 0)))
    return state


def state_root_of_items(items: Iterable[tuple[bytes, bytes]], height: int) -> bytes:
    """The state root a whole state at ``height`` must have (a snapshot's check)."""
    return state_root_of(accumulator_of(committed_items(items, height)))


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
    """What a block is checked against: the head, the validator set in force (who may
    propose), the head's set (who certifies it: ``head_validators_hash``, None at
    genesis) and the set the head names for its successor (``next_validators_hash``)."""

    height: int
    head_hash: bytes
    head_timestamp_ms: int
    validators: Sequence[bytes]
    head_validators_hash: bytes | None
    next_validators_hash: bytes


@dataclass(frozen=True, slots=True)
class BlockOutcome:
    codes: list[int]
    writes: dict[bytes, bytes | None]
    events: tuple[object, ...]
    validator_changes: tuple[object, ...]


def rejection(block: Block, *, raft_term: int, raft_index: int, tip: ChainTip,
              roots_at: Callable[[int], Roots], state: application.StateReader,
              chain_id: str) -> str | None:
    """Why every node skips this committed block, or None when it applies. Raises
    StateDivergenceError when its roots differ from ours (``roots_at``: our roots of an
    applied height; ``state``: the state of the head it extends)."""
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
    if header.validators_hash != tip.next_validators_hash:
        return "names another validator set than its predecessor handed over to"
    if tip.head_validators_hash is not None:
        certificate = block.certificate
        assert certificate is not None, "decode_block: a block from height 2 carries one"
        members = validator_set(state, tip.head_validators_hash)
        problem = certificate_problem(certificate, chain_id=chain_id, height=tip.height,
                                      block_hash=tip.head_hash, members=members)
        if problem is not None:
            return problem
    ours = roots_at(header.state_height)
    if (header.results_root, header.state_root) != (ours.results_root, ours.state_root):
        raise StateDivergenceError(
            f"block {header.height} commits to roots of height {header.state_height} "
            f"that differ from ours: this node's state has diverged; it stops"
        )
    if header.trails_root != trails_root_at(state, header.state_height):
        raise StateDivergenceError(
            f"block {header.height} commits to a trails root of height "
            f"{header.state_height} that differs from ours: this node's state has diverged")
    if header.next_validators_hash != validators_hash_at(state, header.state_height):
        raise StateDivergenceError(
            f"block {header.height} names as the next validator set one that is not the "
            f"set of height {header.state_height} here: this node's state has diverged")
    return None


def validators_hash_at(state: application.StateReader, height: int) -> bytes:
    data = state.get(validators_at_key(height))
    assert data is not None, f"the validator set of applied height {height} is recorded"
    return data


def trails_root_at(state: application.StateReader, height: int) -> bytes:
    data = state.get(trails.trails_at_key(height))
    assert data is not None, f"the trails root of applied height {height} is recorded"
    return data


def validator_set(state: application.StateReader, set_hash: bytes) -> list[bytes]:
    data = state.get(validator_set_key(set_hash))
    assert data is not None, "every validator set a header named is recorded"
    return decode_validator_set(data)


def evaluate_block(block: Block, tx_ids: Sequence[bytes], checked: Sequence[Transaction | None],
                   check_codes: Sequence[int], *, state: application.StateReader,
                   previous_roots: Roots) -> BlockOutcome:
    """The outcome of a block that passed :func:`rejection`. ``checked`` and
    ``check_codes`` are each tx's stateless result (the tx, or None with its code);
    ``state`` is the state of the head the block extends and ``previous_roots`` its
    roots."""
    txs = list(checked)
    codes = [int(code) for code in check_codes]
    seen: set[bytes] = set()
    get = state.get
    for index, tx_id in enumerate(tx_ids):
        if codes[index] != ResultCode.OK:
            continue
        if tx_id in seen or get(TX_SEEN_PREFIX + tx_id) is not None:
            txs[index] = None
            codes[index] = int(ResultCode.DUPLICATE)
        seen.add(tx_id)
    header = block.header
    height = header.height
    context = application.BlockContext(
        height=height, timestamp_ms=header.timestamp_ms, proposer=header.proposer
    )
    outcome = application.apply_block(state, context, txs, codes)
    final_codes = [int(code) for code in outcome.codes]
    writes: dict[bytes, bytes | None] = dict(outcome.writes)
    writes.update(tx_index_writes(height, tx_ids, final_codes))
    # The validator set of this height (ledger/certificate.py): the previous one unless
    # the block wrote a member.
    if any(key.startswith(_MEMBER_PREFIX) for key in outcome.writes):
        overlay = application.Overlay(state)
        for key, value in writes.items():
            overlay.put(key, value)
        node_keys = application.validator_node_keys(overlay)
        writes.update(validator_set_writes(
            height, node_keys, lambda set_hash: get(validator_set_key(set_hash)) is not None,
            validators_hash_at(state, height - 1)))
    else:
        writes[validators_at_key(height)] = validators_hash_at(state, height - 1)
    # Each new audit entry extends its patient's trail; the tree of heads follows.
    trail_writes, trails_root = trails.block_writes(
        lambda key: writes[key] if key in writes else get(key), writes)
    writes.update(trail_writes)
    writes[trails.trails_at_key(height)] = (trails_root_at(state, height - 1)
                                            if trails_root is None else trails_root)
    # The commitment: each written item's hash in, the one it replaces out; the roots of
    # the previous height join now (they were the one item left out of its own root).
    stored = get(ACCUMULATOR_KEY)
    assert stored is not None, "the state has an accumulator from genesis on"
    added: list[tuple[bytes, bytes]] = []
    removed: list[tuple[bytes, bytes]] = []
    if height > 1:
        added.append((roots_key(height - 1), previous_roots.encode()))
    for key, value in writes.items():
        old = get(key)
        if old == value:
            continue
        if value is not None:
            added.append((key, value))
        if old is not None:
            removed.append((key, old))
    accumulator = accumulate(decode_accumulator(stored), added, removed)
    roots = Roots(results_root(tx_ids, final_codes), state_root_of(accumulator))
    writes[roots_key(height)] = roots.encode()
    writes[ACCUMULATOR_KEY] = encode_accumulator(accumulator)
    return BlockOutcome(final_codes, writes, tuple(outcome.events),
                        tuple(outcome.validator_changes))
