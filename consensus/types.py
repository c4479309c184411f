"""The values Raft persists and exchanges: entries, hard state, configuration, snapshots.

They are :class:`ledger.codec.Struct` values so the node can put them on the wire and on
disk unchanged, in the one canonical encoding.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ledger import limits
from ledger.codec import (
    Bool,
    Bytes,
    Enum,
    ListOf,
    Nested,
    Optional,
    Struct,
    UInt,
    decode,
    decode_tree,
    encode_tree,
)
from ledger.errors import DecodeError

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


# ---------------------------------------------------------------------------------------------
# Membership changes
# ---------------------------------------------------------------------------------------------


class ConfChangeType(enum.IntEnum):
    ADD_VOTER = 0
    # Removes the node whatever its role (voter or learner), as etcd's RemoveNode.
    REMOVE_NODE = 1
    ADD_LEARNER = 2


class ConfChangeTransition(enum.IntEnum):
    """How a change moves through joint consensus (etcd's ConfChangeTransition).

    ``AUTO``: a single change that alters at most one voter is applied directly; anything
    else enters a joint configuration that Raft leaves on its own once it is applied.
    ``JOINT_IMPLICIT``: always enter joint consensus, leave it automatically.
    ``JOINT_EXPLICIT``: always enter joint consensus; the application leaves it by proposing
    an empty ``ConfChange()``.
    """

    AUTO = 0
    JOINT_IMPLICIT = 1
    JOINT_EXPLICIT = 2


@dataclass(frozen=True, slots=True)
class ConfChangeSingle(Struct):
    type: ConfChangeType
    node_id: int

    SCHEMA = (("type", Enum(ConfChangeType)), ("node_id", UInt(minimum=1)))


@dataclass(frozen=True, slots=True)
class ConfChange(Struct):
    """A membership change, carried in the ``data`` of a ``CONF_CHANGE`` entry.

    An empty change (no ``changes``, ``AUTO``) means "leave the joint configuration".
    """

    changes: tuple[ConfChangeSingle, ...] = ()
    transition: ConfChangeTransition = ConfChangeTransition.AUTO
    context: bytes = b""

    SCHEMA = (
        ("changes", ListOf(Nested(ConfChangeSingle), maximum=limits.LIST_LENGTH_MAX)),
        ("transition", Enum(ConfChangeTransition)),
        ("context", Bytes(maximum=limits.BYTES_LENGTH_MAX)),
    )

    @property
    def leaves_joint(self) -> bool:
        return not self.changes and self.transition == ConfChangeTransition.AUTO

    @property
    def enters_joint(self) -> bool:
        return self.transition != ConfChangeTransition.AUTO or len(self.changes) > 1

    @property
    def auto_leave(self) -> bool:
        """Meaningful only when :attr:`enters_joint`."""
        return self.transition != ConfChangeTransition.JOINT_EXPLICIT


def decode_conf_change(data: bytes) -> ConfChange:
    """Strictly decode the data of a CONF_CHANGE entry. Raises DecodeError."""
    return decode(ConfChange, data, size_bytes_max=CONF_CHANGE_SIZE_BYTES_MAX)


# A conf change names a handful of nodes; 64 KiB bounds a hostile one with room to spare.
CONF_CHANGE_SIZE_BYTES_MAX = 64 * 1024


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


class MessageType(enum.IntEnum):
    """Raft message kinds (etcd's raftpb.MessageType, renamed without abbreviations)."""

    HUP = 0  # local: start an election
    BEAT = 1  # local: the leader's heartbeat tick
    PROPOSAL = 2  # a follower forwards proposals to the leader with this
    APPEND = 3
    APPEND_RESPONSE = 4
    VOTE = 5
    VOTE_RESPONSE = 6
    SNAPSHOT = 7
    HEARTBEAT = 8
    HEARTBEAT_RESPONSE = 9
    UNREACHABLE = 10  # local: the shell could not reach a peer
    SNAPSHOT_STATUS = 11  # local: the shell reports how sending a snapshot went
    CHECK_QUORUM = 12  # local: the leader checks it still hears from a quorum
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    PRE_VOTE = 15
    PRE_VOTE_RESPONSE = 16


# Generated and consumed inside one node; never accepted from the wire.
LOCAL_MESSAGE_TYPES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAPSHOT_STATUS,
        MessageType.CHECK_QUORUM,
    }
)

# Responses are only accepted from nodes in the current configuration.
RESPONSE_MESSAGE_TYPES = frozenset(
    {
        MessageType.APPEND_RESPONSE,
        MessageType.VOTE_RESPONSE,
        MessageType.HEARTBEAT_RESPONSE,
        MessageType.UNREACHABLE,
        MessageType.PRE_VOTE_RESPONSE,
    }
)

# A message's context is a short marker (campaign transfer, heartbeat tag).
MESSAGE_CONTEXT_SIZE_BYTES_MAX = 64

# Entries in one append message. The sender caps a message at this count as well as at
# Config.message_size_bytes_max, so it never produces one the receiver refuses; entries are
# whole blocks, so even the cap on bytes reaches this only with tiny entries.
MESSAGE_ENTRIES_MAX = 4096


@dataclass(frozen=True, slots=True)
class Message(Struct):
    """One Raft message, put on the wire unchanged (``from_`` because ``from`` is reserved)."""

    type: MessageType
    to: int
    from_: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""

    SCHEMA = (
        ("type", Enum(MessageType)),
        ("to", UInt()),
        ("from_", UInt()),
        ("term", UInt()),
        ("log_term", UInt()),
        ("index", UInt()),
        ("entries", ListOf(Nested(Entry), maximum=MESSAGE_ENTRIES_MAX)),
        ("commit", UInt()),
        ("reject", Bool()),
        ("reject_hint", UInt()),
        ("snapshot", Optional(Nested(Snapshot))),
        ("context", Bytes(maximum=MESSAGE_CONTEXT_SIZE_BYTES_MAX)),
    )


# Version of the batch framing below; a receiver refuses any other.
MESSAGE_BATCH_VERSION = 1

# Messages in one wire frame. The node batches every message for one peer from one Ready;
# a Ready to one peer holds a handful (append, heartbeat, vote), so 4096 is generous and
# still bounds what one frame can make us allocate.
MESSAGE_BATCH_MESSAGES_MAX = 4096

# Bytes in one wire frame: a snapshot (up to BLOB_SIZE_BYTES_MAX) plus appends around it.
MESSAGE_BATCH_SIZE_BYTES_MAX = 2 * limits.BLOB_SIZE_BYTES_MAX


# Upper bounds of the encoding's own bytes around a message and around an entry (header
# fields, lengths, a snapshot's metadata), for splitting batches before encoding them.
MESSAGE_OVERHEAD_BYTES_MAX = 1024
ENTRY_OVERHEAD_BYTES_MAX = 64


def message_size_bytes_bound(message: Message) -> int:
    """At least the bytes ``message`` takes in a frame."""
    size = MESSAGE_OVERHEAD_BYTES_MAX + len(message.context)
    for entry in message.entries:
        size += ENTRY_OVERHEAD_BYTES_MAX + len(entry.data)
    if message.snapshot is not None:
        size += MESSAGE_OVERHEAD_BYTES_MAX + len(message.snapshot.data)
    return size


def message_batches(
    messages: Sequence[Message], *, bytes_max: int, messages_max: int = MESSAGE_BATCH_MESSAGES_MAX
) -> Iterator[Sequence[Message]]:
    """``messages`` in order, in batches of at most ``messages_max`` whose size bound stays
    within ``bytes_max`` (a message larger than that alone goes in a batch of its own)."""
    assert 0 < messages_max <= MESSAGE_BATCH_MESSAGES_MAX
    start, size = 0, 0
    for position, message in enumerate(messages):
        message_bytes = message_size_bytes_bound(message)
        if position > start and (size + message_bytes > bytes_max
                                 or position - start >= messages_max):
            yield messages[start:position]
            start, size = position, 0
        size += message_bytes
    if start < len(messages):
        yield messages[start:]


def encode_messages(messages: Sequence[Message]) -> bytes:
    """Encode a batch of messages as one frame: ``[version, [message, ...]]``."""
    assert len(messages) <= MESSAGE_BATCH_MESSAGES_MAX, "split the batch before encoding"
    return encode_tree([MESSAGE_BATCH_VERSION, [message.to_wire() for message in messages]])


def decode_messages(
    data: bytes, *, size_bytes_max: int = MESSAGE_BATCH_SIZE_BYTES_MAX
) -> tuple[Message, ...]:
    """Strictly decode one frame made by :func:`encode_messages`. Raises DecodeError."""
    tree = decode_tree(data, size_bytes_max=size_bytes_max, what="MessageBatch")
    if type(tree) is not list or len(tree) != 2:
        raise DecodeError("MessageBatch: expected [version, messages]")
    version, items = tree
    if version != MESSAGE_BATCH_VERSION or type(version) is not int:
        raise DecodeError(f"MessageBatch: unsupported version {version!r}")
    if type(items) is not list:
        raise DecodeError("MessageBatch.messages: expected array")
    if len(items) > MESSAGE_BATCH_MESSAGES_MAX:
        raise DecodeError(
            f"MessageBatch.messages: {len(items)} items exceeds {MESSAGE_BATCH_MESSAGES_MAX}"
        )
    messages = []
    for position, item in enumerate(items):
        try:
            messages.append(Message.from_wire(item))
        except DecodeError as error:
            raise DecodeError(f"MessageBatch.messages[{position}]: {error}") from None
    return tuple(messages)
