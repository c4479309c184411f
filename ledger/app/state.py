"""Reading state, and the overlays that make a block and each of its txs atomic.

``StateReader`` is the port the node implements over LevelDB (``node.chain``).
:class:`MemoryState` is the in-memory implementation for tests, the simulator and the
in-process SDK client. :class:`Overlay` buffers writes over a reader: ``apply_block`` runs
each tx in an overlay over the block's overlay over the state, and keeps a tx's writes only
if every rule passed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, TypeVar

import msgpack

from ledger import limits
from ledger.app.layout import SEPARATOR
from ledger.codec import Struct
from ledger.errors import CorruptionError, DecodeError

S = TypeVar("S", bound=Struct)
_unpackb = msgpack.unpackb

# A state value is one Struct: a claim with 50 lines and its history, a remittance with
# 1,000 allocations. Nothing legitimate comes near this; it bounds what decoding may cost.
STATE_VALUE_SIZE_BYTES_MAX = limits.TX_SIZE_BYTES_MAX * 4


class StateReader(Protocol):
    """Read access to the application state (keys and values are bytes)."""

    def get(self, key: bytes) -> bytes | None: ...

    def iterate(self, prefix: bytes, *, limit: int) -> Iterable[tuple[bytes, bytes]]:
        """The first ``limit`` items whose key starts with ``prefix``, sorted by key."""
        ...


Writes = Mapping[bytes, "bytes | None"]


def load(reader: StateReader, key: bytes, struct_class: type[S]) -> S | None:
    data = reader.get(key)
    if data is None:
        return None
    return decode_value(key, data, struct_class)


def decode_value(key: bytes, data: bytes, struct_class: type[S]) -> S:
    """Decode a state value. Only the application writes state, always canonical Structs
    (and storage checksums every value), so the schema is checked but the canonical
    re-encoding is not: that halves the cost of the reads every tx makes. A value that
    does not decode is damage."""
    try:
        return struct_class.from_wire(_unpackb(data, raw=False, use_list=True))
    except (DecodeError, ValueError, TypeError, msgpack.UnpackException) as error:
        raise CorruptionError(f"state value under {key!r} does not decode: {error}") from None


class MemoryState:
    """A dict-backed StateReader with sorted iteration, and a way to apply writes."""

    def __init__(self, items: Mapping[bytes, bytes] | None = None) -> None:
        self._items: dict[bytes, bytes] = dict(items or {})
        self._sorted_keys: list[bytes] | None = None

    def get(self, key: bytes) -> bytes | None:
        return self._items.get(key)

    def iterate(self, prefix: bytes, *, limit: int) -> Iterator[tuple[bytes, bytes]]:
        assert limit >= 0
        keys = self._keys()
        index = bisect.bisect_left(keys, prefix)
        count = 0
        while index < len(keys) and count < limit and keys[index].startswith(prefix):
            key = keys[index]
            yield key, self._items[key]
            index += 1
            count += 1

    def apply(self, writes: Writes) -> None:
        for key, value in writes.items():
            if value is None:
                self._items.pop(key, None)
            else:
                self._items[key] = value
        self._sorted_keys = None

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value), sorted by key."""
        return [(key, self._items[key]) for key in self._keys()]

    def copy(self) -> MemoryState:
        return MemoryState(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def _keys(self) -> list[bytes]:
        if self._sorted_keys is None:
            self._sorted_keys = sorted(self._items)
        return self._sorted_keys


class Overlay:
    """Buffered writes over a StateReader; itself a StateReader that sees them.

    Iteration merges the buffer with the reader below. To find the buffered keys under a
    prefix without scanning the whole buffer, every buffered key is filed under each of its
    NUL-terminated prefixes (keys are ``table NUL part NUL ...``, see ledger.app.layout);
    rules only iterate such prefixes. Any other prefix falls back to a scan.
    """

    __slots__ = ("_base", "_changes", "_decoded", "_groups")

    def __init__(self, base: StateReader) -> None:
        self._base = base
        self._changes: dict[bytes, bytes | None] = {}
        self._groups: dict[bytes, list[bytes]] = {}
        # Values read through this overlay, decoded once per block (a block's txs read the
        # same members, keys and records over and over); dropped when the key is written.
        self._decoded: dict[bytes, Struct] = {}

    @property
    def changes(self) -> Mapping[bytes, bytes | None]:
        """Buffered writes in the order they were first made (None deletes)."""
        return self._changes

    def get(self, key: bytes) -> bytes | None:
        if key in self._changes:
            return self._changes[key]
        return self._base.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        if key not in self._changes:
            self._file(key)
        self._changes[key] = value
        self._decoded.pop(key, None)

    def store(self, key: bytes, value: Struct) -> None:
        self.put(key, value.encode())

    def delete(self, key: bytes) -> None:
        self.put(key, None)

    def load(self, key: bytes, struct_class: type[S]) -> S | None:
        if key not in self._changes and isinstance(self._base, Overlay):
            return self._base.load(key, struct_class)  # the block overlay caches it
        cached = self._decoded.get(key)
        if cached is not None:
            assert type(cached) is struct_class, f"{key!r} read as two types"
            return cached
        value = load(self, key, struct_class)
        if value is not None:
            self._decoded[key] = value
        return value

    def merge(self, other: Overlay) -> None:
        """Take ``other``'s writes (a tx overlay over this one) as ours."""
        assert other._base is self, "merge only a child overlay"
        for key, value in other._changes.items():
            self.put(key, value)

    def iterate(self, prefix: bytes, *, limit: int) -> list[tuple[bytes, bytes]]:
        assert limit >= 0
        if prefix.endswith(SEPARATOR):
            buffered = self._groups.get(prefix, [])
        else:
            buffered = [key for key in self._changes if key.startswith(prefix)]
        if not buffered:
            return list(self._base.iterate(prefix, limit=limit))
        # At most len(buffered) items below are hidden or replaced by the buffer, so
        # reading that many more from below still yields the first ``limit`` merged items.
        merged = dict(self._base.iterate(prefix, limit=limit + len(buffered)))
        for key in buffered:
            value = self._changes[key]
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return sorted(merged.items())[:limit]

    def _file(self, key: bytes) -> None:
        end = key.find(SEPARATOR)
        while end != -1:
            self._groups.setdefault(key[: end + 1], []).append(key)
            end = key.find(SEPARATOR, end + 1)
