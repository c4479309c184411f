"""The healthcare application: the deterministic state machine of DOMAIN.md.

Pure: no clock, no randomness, no I/O. The node calls it on every committed block.

Interface
=========

Reading state -- :class:`StateReader` (a Protocol)::

    get(key: bytes) -> bytes | None
    iterate(prefix: bytes, *, limit: int) -> Iterable[tuple[bytes, bytes]]   # sorted by key

The node implements it over LevelDB; :class:`MemoryState` is the in-memory one (with
``apply(writes)``, ``items()``, ``copy()``). The key layout is in :mod:`ledger.app.layout`;
values are canonical Structs of :mod:`ledger.app.model`.

Genesis -- :class:`Genesis` (a Struct: ``chain_id``, ``genesis_time_ms``, ``members`` of
:class:`GenesisMember` (org id, kind, admin key, node key or None, validator flag),
:class:`Parameters` (``btg_review_days``, ``btg_max_hours`` <= 24, ``consent_max_days``
<= 365)); ``Genesis.to_json()`` / ``Genesis.from_json()`` for files;
``genesis_writes(genesis) -> dict[bytes, bytes]`` is the initial state (ConfigError if the
genesis is inconsistent).

Applying a block::

    apply_block(state, BlockContext(height, timestamp_ms, proposer), txs, codes=None)
        -> BlockOutcome(codes, messages, writes, events, validator_changes)

``txs[i]`` is a decoded :class:`ledger.tx.Transaction`, or None for a tx that failed the
stateless check, whose code is then ``codes[i]`` (``codes`` lists OK for the others).
``writes`` maps key to value (None deletes), sorted by key; write it with the block in one
batch (ledger.evaluation folds them into the state commitment, ledger/commitment.py).
``events`` are frozen dataclasses of :mod:`ledger.app.events` (key grants, break-glass
open/close/review/flag, decided proposals, key rotations and revocations, revoked consents,
shredded records), each naming its tx id, height and position. ``validator_changes`` are
:class:`ValidatorChange` (org id, node key, ADD/REMOVE) in block order, from passed
proposals; ``validators(state)`` / ``validator_node_keys(state)`` read the current set.

Result codes: :class:`ledger.results.ResultCode`, application codes from 100, one per rule.

Time: only ``BlockContext.timestamp_ms``. Break-glass reviews are flagged deterministically
at the start of the first block whose timestamp is past the review due time (see
:mod:`ledger.app.machine`); queries additionally report a break-glass as overdue against
the time they are given.

Queries for the RPC layer: :mod:`ledger.app.queries` (``run_query(state, method, params,
now_ms=...)`` and the typed functions it dispatches to).
"""

from __future__ import annotations

from ledger.app.events import Event, ValidatorAction, ValidatorChange
from ledger.app.genesis import (
    Genesis,
    GenesisMember,
    Parameters,
    check_genesis,
    genesis_writes,
)
from ledger.app.machine import (
    FLAGS_PER_BLOCK_MAX,
    BlockOutcome,
    apply_block,
    state_digest,
    validator_node_keys,
    validators,
)
from ledger.app.scope import BlockContext, RuleViolation
from ledger.app.state import MemoryState, Overlay, StateReader

__all__ = [
    "FLAGS_PER_BLOCK_MAX",
    "BlockContext",
    "BlockOutcome",
    "Event",
    "Genesis",
    "GenesisMember",
    "MemoryState",
    "Overlay",
    "Parameters",
    "RuleViolation",
    "StateReader",
    "ValidatorAction",
    "ValidatorChange",
    "apply_block",
    "check_genesis",
    "genesis_writes",
    "state_digest",
    "validator_node_keys",
    "validators",
]
