"""The key space of the one LevelDB per data directory, and the sealed value format.

Every key starts with a one-byte prefix naming what it holds. Integers in keys are
unsigned big-endian and fixed-width, so LevelDB's byte order is numeric order and a range
of indices or heights is one contiguous key range.

=========================  ================================  ==================================
key                        holds                             value payload (after the checksum)
=========================  ================================  ==================================
``r h``                    Raft hard state                   term u64, vote u64, commit u64
``r l``                    Raft log bounds: the log holds    start index u64, start term u64,
                           ``start+1 .. last``; ``start`` is last index u64
                           the snapshot / compaction point
``r t``                    Raft term runs of the log         n x (first index u64, term u64)
``r s``                    latest Raft snapshot              canonical ``Snapshot`` encoding
``r c``                    cluster configuration and the     index u64, canonical
                           Raft index it took effect at      ``ConfState`` encoding
``e`` index u64            Raft log entry                    term u64, type u8, data
``b`` height u64           block                             block hash (32 B), block bytes
``h`` block hash (32 B)    block hash -> height              height u64
``s`` generation, app key  application state (with the node  the value bytes
                           keys under ``\xffnode/``: roots,
                           the state commitment, and the tx
                           index, ledger/evaluation.py)
``m schema``               schema version                    u32
``m chain``                chain id                          UTF-8
``m head``                 chain head                        height u64, block hash (32 B)
``m applied``              last applied Raft index           u64
``m state``                live state generation             one byte, ``0`` or ``1``
``m import``               a state import in progress        target height u64, block hash,
                                                             applied index u64, chunks u64
``m oldest``               the oldest block whose body is    height u64
                           held (absent: none was pruned)
=========================  ================================  ==================================

Application state lives under one of two *generations* (``s0`` / ``s1``): ``m state`` names
the live one. A state import writes the other generation and switches ``m state`` in one
small batch, so the swap is atomic; the old generation is then deleted in bounded batches.

Pruning (an observer's ``[storage] retain_blocks``) deletes the ``b`` entries (block bodies)
below ``m oldest``, in the same batch that moves ``m oldest``. The ``h`` entries and the tx
index (state) of pruned blocks stay: the tx index is what tells a replayed tx apart
(``DUPLICATE``, a rule every node must apply alike), and both let a query for pruned data
say it was pruned rather than that it never existed.

Sealed values: every stored value is ``crc32(key + payload)`` (4 bytes, big-endian)
followed by the payload. The checksum covers the key, so a value that lands under the wrong
key is caught too. zlib's CRC-32 costs ~0.4 µs per 250 B value and ~100 µs per 250 KB
block here (SHA-256 is 4x slower on small values); it detects every burst error up to 32
bits and random damage with probability 1 - 2**-32, which is what a checksum against disk
and memory faults needs (blocks are additionally verified against their hash).
"""

from __future__ import annotations

import struct
import zlib

from storage.errors import ValueChecksumError

# ---- prefixes ----
RAFT_PREFIX = b"r"
RAFT_HARD_STATE_KEY = b"rh"
RAFT_LOG_BOUNDS_KEY = b"rl"
RAFT_TERM_RUNS_KEY = b"rt"
RAFT_SNAPSHOT_KEY = b"rs"
CONF_STATE_KEY = b"rc"
ENTRY_PREFIX = b"e"
BLOCK_PREFIX = b"b"
BLOCK_HASH_PREFIX = b"h"
STATE_PREFIX = b"s"
META_PREFIX = b"m"

META_SCHEMA_KEY = b"mschema"
META_CHAIN_KEY = b"mchain"
META_HEAD_KEY = b"mhead"
META_APPLIED_KEY = b"mapplied"
META_STATE_GENERATION_KEY = b"mstate"
META_IMPORT_KEY = b"mimport"
META_OLDEST_BLOCK_KEY = b"moldest"

STATE_GENERATIONS = (b"0", b"1")

# SHA-256, as ledger.crypto.HASH_SIZE (not imported: storage treats blocks as opaque bytes
# and should not pull in the signature library to open a database).
HASH_SIZE = 32
TX_ID_SIZE = HASH_SIZE

CHECKSUM_SIZE = 4

# ---- fixed-width integers ----
U64 = struct.Struct(">Q")
U32 = struct.Struct(">I")
pack_u64 = U64.pack
pack_u32 = U32.pack
_unpack_u32 = U32.unpack_from

_crc32 = zlib.crc32


def entry_key(index: int) -> bytes:
    return ENTRY_PREFIX + pack_u64(index)


def block_key(height: int) -> bytes:
    return BLOCK_PREFIX + pack_u64(height)


def block_hash_key(block_hash: bytes) -> bytes:
    return BLOCK_HASH_PREFIX + block_hash


def state_prefix(generation: bytes) -> bytes:
    assert generation in STATE_GENERATIONS, generation
    return STATE_PREFIX + generation


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


# ---- sealed values ----


def seal(key: bytes, payload: bytes) -> bytes:
    """The stored form of ``payload`` under ``key``: checksum then payload."""
    return pack_u32(_crc32(payload, _crc32(key))) + payload


def unseal(key: bytes, value: bytes) -> bytes:
    """The payload of a stored value, or ValueChecksumError naming ``key``."""
    payload = value[CHECKSUM_SIZE:]
    # One crc32 over a joined copy is twice as fast as chaining two calls on small values
    # (the hot case: tx-index and state reads); for a block the copy is ~10% of the CRC.
    if len(value) < CHECKSUM_SIZE or _unpack_u32(value)[0] != _crc32(key + payload):
        raise ValueChecksumError(key, describe_key(key))
    return payload


# ---- describing keys in errors and logs ----

_TEXT_KEY_BYTES_SHOWN_MAX = 80  # enough for any state key path; longer keys are elided


def _readable(data: bytes) -> str:
    shown = data[:_TEXT_KEY_BYTES_SHOWN_MAX]
    if all(32 <= byte < 127 for byte in shown):
        text = repr(shown.decode("ascii"))
    else:
        text = "0x" + shown.hex()
    return text + ("..." if len(data) > len(shown) else "")


def describe_key(key: bytes) -> str:
    """A readable name for ``key``, always ending with its hex, e.g.
    ``block 42 (key 62000000000000002a)``."""
    suffix = f" (key {key[:_TEXT_KEY_BYTES_SHOWN_MAX].hex()})"
    prefix, rest = key[:1], key[1:]
    if prefix == ENTRY_PREFIX and len(rest) == U64.size:
        return f"raft entry {U64.unpack(rest)[0]}" + suffix
    if prefix == BLOCK_PREFIX and len(rest) == U64.size:
        return f"block {U64.unpack(rest)[0]}" + suffix
    if prefix == BLOCK_HASH_PREFIX:
        return f"block hash 0x{rest.hex()}" + suffix
    if prefix == STATE_PREFIX and rest[:1] in STATE_GENERATIONS:
        return f"state[{rest[:1].decode()}] {_readable(rest[1:])}" + suffix
    names = {
        RAFT_HARD_STATE_KEY: "raft hard state",
        RAFT_LOG_BOUNDS_KEY: "raft log bounds",
        RAFT_TERM_RUNS_KEY: "raft term runs",
        RAFT_SNAPSHOT_KEY: "raft snapshot",
        CONF_STATE_KEY: "conf state",
    }
    if key in names:
        return names[key] + suffix
    if prefix == META_PREFIX:
        return f"meta {_readable(rest)}" + suffix
    return f"unknown key {_readable(key)}" + suffix
