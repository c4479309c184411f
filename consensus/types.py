"""The values Raft persists and exchanges: entries, hard state, configuration, snapshots.

They are :class:`ledger.codec.Struct` values so the node can put them on the wire and on
disk unchanged, in the one canonical encoding.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ledger import limits
from ledger.codec import Bool, Bytes, Enum, ListOf, Nested, Struct, UInt

# Node ids are unsigned integers (0 means "none", as in etcd); the node maps them to
# libp2p peer ids through genesis and governance.
NO_NODE = 0


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


@dataclass(frozen=True, slots=True)
class Entry(Struct):
    term: int
    index: int
    type: EntryType
    data: bytes

    SCHEMA = (
        ("term", UInt()),
        ("index", UInt()),
        ("type", Enum(EntryType)),
        ("data", Bytes(maximum=limits.BLOB_SIZE_BYTES_MAX)),
    )


@dataclass(frozen=True, slots=True)
class HardState(Struct):
    """What must be on stable storage before any message that depends on it is sent."""

    term: int = 0
    vote: int = NO_NODE
    commit: int = 0

    SCHEMA = (("term", UInt()), ("vote", UInt()), ("commit", UInt()))


@dataclass(frozen=True, slots=True)
class ConfState(Struct):
    """The cluster configuration. ``voters_outgoing`` is non-empty only in joint consensus."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    voters_outgoing: tuple[int, ...] = ()
    learners_next: tuple[int, ...] = ()
    auto_leave: bool = False

    SCHEMA = (
        ("voters", ListOf(UInt())),
        ("learners", ListOf(UInt())),
        ("voters_outgoing", ListOf(UInt())),
        ("learners_next", ListOf(UInt())),
        ("auto_leave", Bool()),
    )


@dataclass(frozen=True, slots=True)
class SnapshotMetadata(Struct):
    index: int = 0
    term: int = 0
    conf_state: ConfState = ConfState()

    SCHEMA = (("index", UInt()), ("term", UInt()), ("conf_state", Nested(ConfState)))


@dataclass(frozen=True, slots=True)
class Snapshot(Struct):
    """Application state as of ``metadata.index``; ``data`` is opaque to Raft."""

    metadata: SnapshotMetadata = SnapshotMetadata()
    data: bytes = b""

    SCHEMA = (
        ("metadata", Nested(SnapshotMetadata)),
        ("data", Bytes(maximum=limits.BLOB_SIZE_BYTES_MAX)),
    )

    @property
    def is_empty(self) -> bool:
        return self.metadata.index == 0
