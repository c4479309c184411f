"""The Ready contract, written once: the steps of one Ready, in the order they must be done.

A runner asks the RawNode for a Ready, then drives :func:`ready_steps` and carries out
each step it yields, in order, before taking the next (awaiting, in the node's Raft
driver; at once, in the simulator). When the generator is exhausted the RawNode has been
advanced. The order is the contract of :class:`consensus.raw_node.Ready`:

1. ``SoftStateChanged`` (role or leader changed: tell whoever cares);
2. ``Persist`` the snapshot, the entries and the hard state as one write (synced when
   ``sync``), and ``Restore`` the application from the snapshot if there is one;
3. ``Send`` the messages: only now, because they promise what step 2 made durable;
4. per committed entry, in order: for a CONF_CHANGE, the change is applied to the RawNode
   here and ``ConfChangeApplied`` says so (the runner records the new configuration
   before the entry is applied), then ``Apply`` the entry;
5. advance.

The node's driver and the simulator both run this generator, so the simulator checks the
loop the node runs, and a step taken out of order here is a bug both would show.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from consensus.confchange import ConfChangeError
from consensus.raw_node import RawNode, Ready
from consensus.state import SoftState
from consensus.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    Snapshot,
    decode_conf_change,
)
from ledger.errors import DecodeError


@dataclass(frozen=True, slots=True)
class SoftStateChanged:
    soft_state: SoftState


@dataclass(frozen=True, slots=True)
class Persist:
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    sync: bool


@dataclass(frozen=True, slots=True)
class Restore:
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class Send:
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class ConfChangeApplied:
    """A committed CONF_CHANGE entry was applied to the RawNode: ``conf_state`` is the new
    configuration, or None with ``refused`` saying why the entry changes nothing (it does
    not decode, or the configuration refuses it: alike on every node)."""

    entry: Entry
    conf_state: ConfState | None
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class Apply:
    entry: Entry


Step = SoftStateChanged | Persist | Restore | Send | ConfChangeApplied | Apply


def ready_steps(raw_node: RawNode, ready: Ready) -> Iterator[Step]:
    """The steps of ``ready`` in contract order; advances ``raw_node`` once all are done."""
    if ready.soft_state is not None:
        yield SoftStateChanged(ready.soft_state)
    if ready.entries or ready.hard_state is not None or ready.snapshot is not None:
        yield Persist(ready.hard_state, ready.entries, ready.snapshot, ready.must_sync)
    if ready.snapshot is not None and not ready.snapshot.is_empty:
        yield Restore(ready.snapshot)
    if ready.messages:
        yield Send(ready.messages)
    for entry in ready.committed_entries:
        if entry.type is EntryType.CONF_CHANGE:
            yield _apply_conf_change(raw_node, entry)
        yield Apply(entry)
    raw_node.advance(ready)


def _apply_conf_change(raw_node: RawNode, entry: Entry) -> ConfChangeApplied:
    try:
        change = decode_conf_change(entry.data)
    except DecodeError as error:
        return ConfChangeApplied(entry, None, f"undecodable: {error}")
    try:
        return ConfChangeApplied(entry, raw_node.apply_conf_change(change))
    except ConfChangeError as error:
        return ConfChangeApplied(entry, None, str(error))
