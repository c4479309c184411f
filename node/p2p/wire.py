"""The node's own wire messages (on the sync request/response protocol and gossip).

Canonical Structs like everything else; each request kind has its response. Sizes are
capped so one request never makes a node read or send without bound.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

from ledger import limits
from ledger.codec import Bytes, Enum, ListOf, Nested, Struct, Text, UInt, decode

# Blocks per sync response: bounded by count and by SYNC_RESPONSE_BYTES_MAX, whichever
# comes first (a block is at most block_max_bytes, 8 MiB by config validation).
SYNC_BLOCKS_PER_RESPONSE_MAX = 256
# State snapshots one node offers at most (it keeps its last few).
SNAPSHOTS_OFFERED_MAX = 16
SYNC_RESPONSE_BYTES_MAX = 4 * 1_048_576
# A forwarded tx batch is one block's worth at most.
FORWARD_TXS_MAX = 5_000
# Gossip messages must stay under libp2p's ~1 MiB silent-drop limit (MEASUREMENTS.md).
GOSSIP_BYTES_MAX = 900 * 1024
MESSAGE_BYTES_MAX = limits.BLOB_SIZE_BYTES_MAX
# A Head message (height, hash) with room to spare.
HEAD_BYTES_MAX = 1024
# A refusal reason in a ForwardResult is cut to this many characters.
FORWARD_MESSAGE_CHARS_MAX = 512


def topic_blocks(chain_id: str) -> str:
    """The gossip topic of a chain's applied blocks."""
    return f"/medledger/{chain_id}/blocks/1"


def topic_txs(chain_id: str) -> str:
    """The gossip topic of a chain's admitted txs."""
    return f"/medledger/{chain_id}/txs/1"


def topic_votes(chain_id: str) -> str:
    """The gossip topic of a chain's validator votes (ledger/certificate.py)."""
    return f"/medledger/{chain_id}/votes/1"


class RequestKind(enum.IntEnum):
    GET_HEAD = 1
    GET_BLOCKS = 2
    FORWARD_TXS = 3
    # State sync (node/statesync.py): the snapshots held; a page of one's manifest
    # (from_height: its height, to_height: the page); one chunk (to_height: its sequence).
    GET_SNAPSHOTS = 4
    GET_SNAPSHOT_MANIFEST = 5
    GET_SNAPSHOT_CHUNK = 6
    # Validator votes (node/certify.py), each an encoded Vote in ``txs``: sent straight to
    # every validator as well as gossiped (gossip meshes lag behind reconnections).
    VOTES = 7


@dataclass(frozen=True, slots=True)
class Request(Struct):
    kind: RequestKind
    from_height: int
    to_height: int
    txs: tuple[bytes, ...]

    SCHEMA = (
        ("kind", Enum(RequestKind)),
        ("from_height", UInt()),
        ("to_height", UInt()),
        ("txs", ListOf(Bytes(maximum=limits.TX_SIZE_BYTES_MAX), maximum=FORWARD_TXS_MAX)),
    )


@dataclass(frozen=True, slots=True)
class Head(Struct):
    height: int
    block_hash: bytes

    SCHEMA = (("height", UInt()), ("block_hash", Bytes(32)))


@dataclass(frozen=True, slots=True)
class SnapshotOffer(Struct):
    height: int
    block_hash: bytes
    applied_index: int
    chunk_count: int

    SCHEMA = (("height", UInt()), ("block_hash", Bytes(32)), ("applied_index", UInt()),
              ("chunk_count", UInt()))


@dataclass(frozen=True, slots=True)
class SnapshotOffers(Struct):
    offers: tuple[SnapshotOffer, ...]

    SCHEMA = (("offers", ListOf(Nested(SnapshotOffer), maximum=SNAPSHOTS_OFFERED_MAX)),)


@dataclass(frozen=True, slots=True)
class BlockRange(Struct):
    blocks: tuple[bytes, ...]

    SCHEMA = (
        ("blocks", ListOf(Bytes(maximum=limits.BLOB_SIZE_BYTES_MAX),
                          maximum=SYNC_BLOCKS_PER_RESPONSE_MAX)),
    )


@dataclass(frozen=True, slots=True)
class ForwardResult(Struct):
    codes: tuple[int, ...]
    messages: tuple[str, ...]

    SCHEMA = (
        ("codes", ListOf(UInt(maximum=65535), maximum=FORWARD_TXS_MAX)),
        ("messages", ListOf(Text(maximum=512), maximum=FORWARD_TXS_MAX)),
    )


@dataclass(frozen=True, slots=True)
class TxBatch(Struct):
    txs: tuple[bytes, ...]

    SCHEMA = (
        ("txs", ListOf(Bytes(maximum=limits.TX_SIZE_BYTES_MAX), maximum=FORWARD_TXS_MAX)),
    )


S = TypeVar("S", bound=Struct)


def decode_message(struct_class: type[S], data: bytes) -> S:
    """A message from a peer, bounded by MESSAGE_BYTES_MAX. Raises DecodeError."""
    return decode(struct_class, data, size_bytes_max=MESSAGE_BYTES_MAX)
