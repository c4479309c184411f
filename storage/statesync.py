"""Application state export and import in bounded chunks (InstallSnapshot, state sync).

Export reads one consistent LevelDB snapshot: the head, applied index and every state item
as of one instant, while the node keeps applying blocks. Each :class:`StateChunk` carries
the items from ``start_key`` (inclusive) up to ``next_key`` (exclusive), its sequence number
and the multiset hash of its items (``ledger.commitment``; the items a state root commits
to, ``ledger.evaluation.committed_items``). The chunks' hashes add up to the state's, so a
receiver checks each chunk's hash against its items (and, given a list of them from a
manifest, against that), and the whole import against the state root of a trusted header at
:meth:`StateImport.finish`. Chunks are ``ledger.codec`` structs: the node puts them on the
wire as they are.

Import is atomic by *generation swap* (storage/keys.py): state lives under ``s0`` or
``s1`` and ``m state`` names the live one. ``import_state_begin`` writes a marker
(``m import``: target height, hash, applied index, chunks written) and clears the other
generation; each chunk is one batch into that generation (with the marker's progress);
``finish`` checks the final digest and, in ONE synced batch, switches ``m state``, sets the
head and applied index and drops the marker. The old generation is then deleted in bounded
batches (and again on open if a crash interrupted that).

A crash mid-import is detectable (``interrupted_import(store)`` returns the marker)
and restartable: calling ``import_state_begin`` again clears the partial staging data and
starts from the first chunk. It does not resume from the middle (the running SHA-256 state
cannot be saved); the live state, head and applied index are untouched until ``finish``.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ledger import limits
from ledger.codec import Bool, Bytes, ListOf, Nested, Struct, UInt
from ledger.commitment import (
    ACCUMULATOR_BYTES,
    accumulator_of,
    combine,
    decode_accumulator,
    encode_accumulator,
    state_root_of,
)
from ledger.evaluation import ACCUMULATOR_KEY, Roots, committed_items, roots_key
from storage import keys
from storage.blockstore import (
    STATE_KEY_BYTES_MAX,
    STATE_VALUE_BYTES_MAX,
    BlockStore,
    ChainHead,
)
from storage.errors import CorruptionError, StateChunkError

# Items in one chunk: the codec's list cap, so every chunk we export decodes at the peer.
STATE_CHUNK_ITEMS_MAX = limits.LIST_LENGTH_MAX
# Chunk entries in one manifest page (a manifest of a million chunks is a thousand pages).
MANIFEST_PAGE_MAX = limits.LIST_LENGTH_MAX

_IMPORT_MARKER = struct.Struct(">Q32sQQ")  # height, block hash, applied index, chunks


@dataclass(frozen=True, slots=True)
class StateItem(Struct):
    key: bytes
    value: bytes

    SCHEMA = (
        ("key", Bytes(maximum=STATE_KEY_BYTES_MAX)),
        ("value", Bytes(maximum=STATE_VALUE_BYTES_MAX)),
    )


@dataclass(frozen=True, slots=True)
class StateChunk(Struct):
    """One piece of an exported state, as of block ``height`` / Raft ``applied_index``."""

    height: int
    block_hash: bytes
    applied_index: int
    sequence: int
    start_key: bytes  # b"" for the first chunk, else the previous chunk's next_key
    items: tuple[StateItem, ...]
    next_key: bytes  # first key of the next chunk; b"" when done
    done: bool
    accumulator: bytes  # the multiset hash of the committed items among ``items``

    SCHEMA = (
        ("height", UInt()),
        ("block_hash", Bytes(keys.HASH_SIZE)),
        ("applied_index", UInt()),
        ("sequence", UInt()),
        ("start_key", Bytes(maximum=STATE_KEY_BYTES_MAX)),
        ("items", ListOf(Nested(StateItem), maximum=STATE_CHUNK_ITEMS_MAX)),
        ("next_key", Bytes(maximum=STATE_KEY_BYTES_MAX)),
        ("done", Bool()),
        ("accumulator", Bytes(ACCUMULATOR_BYTES)),
    )


class StateSnapshot:
    """One consistent LevelDB view of the state and the head it belongs to, held open
    (a validator keeps the last few to serve state sync; holding one costs LevelDB the
    files it pins, never a stall of apply). ``close`` releases it."""

    def __init__(self, store: BlockStore) -> None:
        self._database = store.database
        self._snapshot = self._database.db.snapshot()
        head_payload = _snapshot_get(self._snapshot, keys.META_HEAD_KEY)
        assert head_payload is not None, "nothing to export before the genesis block"
        self.height: int = keys.U64.unpack_from(head_payload)[0]
        self.block_hash: bytes = head_payload[keys.U64.size :]
        applied_payload = _snapshot_get(self._snapshot, keys.META_APPLIED_KEY)
        self.applied_index = 0 if applied_payload is None else keys.U64.unpack(applied_payload)[0]
        generation = _snapshot_get(self._snapshot, keys.META_STATE_GENERATION_KEY)
        assert generation is not None
        self._prefix = keys.state_prefix(generation)

    def items(self, start_key: bytes = b"", stop_key: bytes | None = None,
              ) -> Iterator[tuple[bytes, bytes]]:
        """State items (app key, value) in key order from ``start_key`` up to ``stop_key``
        (exclusive; None: the end)."""
        prefix = self._prefix
        strip = len(prefix)
        stop = keys.prefix_end(prefix) if stop_key is None else prefix + stop_key
        for key, value in self._database.iterate(start=prefix + start_key, stop=stop,
                                                 snapshot=self._snapshot):
            yield key[strip:], value

    def get(self, key: bytes) -> bytes | None:
        """The state item ``key`` in this view."""
        return _snapshot_get(self._snapshot, self._prefix + key)

    def close(self) -> None:
        self._snapshot.close()


def export_state(store: BlockStore, chunk_bytes_max: int) -> Iterator[StateChunk]:
    """Chunks of at most ``chunk_bytes_max`` bytes of keys and values (always at least
    one item, so a single huge item still travels) and at most STATE_CHUNK_ITEMS_MAX
    items. An empty state is one empty, done chunk."""
    snapshot = StateSnapshot(store)
    try:
        yield from export_chunks(snapshot, chunk_bytes_max)
    finally:
        snapshot.close()


def export_chunks(snapshot: StateSnapshot, chunk_bytes_max: int, *, start_key: bytes = b"",
                  first_sequence: int = 0, hash_items: bool = True) -> Iterator[StateChunk]:
    """The chunks of ``snapshot`` from ``start_key`` on (numbered from ``first_sequence``):
    the same boundaries whatever chunk one starts at, so chunk N can be served alone.
    ``hash_items`` False leaves ``accumulator`` empty (a server that has the manifest
    fills it in from there instead of hashing the items again)."""
    assert chunk_bytes_max > 0
    height = snapshot.height
    sequence = first_sequence
    items: list[tuple[bytes, bytes]] = []
    size = 0

    def chunk(next_key: bytes, done: bool) -> StateChunk:
        return StateChunk(
            height=height,
            block_hash=snapshot.block_hash,
            applied_index=snapshot.applied_index,
            sequence=sequence,
            start_key=start_key,
            items=tuple(StateItem(key, value) for key, value in items),
            next_key=next_key,
            done=done,
            accumulator=(encode_accumulator(accumulator_of(committed_items(items, height)))
                         if hash_items else b""),
        )

    for app_key, value in snapshot.items(start_key):
        item_size = len(app_key) + len(value)
        if items and (size + item_size > chunk_bytes_max or len(items) == STATE_CHUNK_ITEMS_MAX):
            yield chunk(app_key, False)
            sequence += 1
            start_key = app_key
            items = []
            size = 0
        items.append((app_key, value))
        size += item_size
    yield chunk(b"", True)


@dataclass(frozen=True, slots=True)
class ManifestPage(Struct):
    """Part of a snapshot's manifest: where chunks ``first_sequence ..`` start and each
    one's multiset hash. A whole manifest (all ``chunk_count`` entries) is verified once
    against a trusted state root (:func:`verify_manifest`); each chunk is then checked
    against its entry as it arrives, so a bad chunk is known at once, and from whom."""

    height: int
    block_hash: bytes
    applied_index: int
    chunk_count: int
    first_sequence: int
    start_keys: tuple[bytes, ...]
    accumulators: tuple[bytes, ...]

    SCHEMA = (
        ("height", UInt()),
        ("block_hash", Bytes(keys.HASH_SIZE)),
        ("applied_index", UInt()),
        ("chunk_count", UInt()),
        ("first_sequence", UInt()),
        ("start_keys", ListOf(Bytes(maximum=STATE_KEY_BYTES_MAX), maximum=MANIFEST_PAGE_MAX)),
        ("accumulators", ListOf(Bytes(ACCUMULATOR_BYTES), maximum=MANIFEST_PAGE_MAX)),
    )


@dataclass(frozen=True, slots=True)
class Manifest:
    height: int
    block_hash: bytes
    applied_index: int
    start_keys: tuple[bytes, ...]
    accumulators: tuple[bytes, ...]

    def pages(self) -> list[ManifestPage]:
        count = len(self.start_keys)
        return [ManifestPage(self.height, self.block_hash, self.applied_index, count, first,
                             self.start_keys[first:first + MANIFEST_PAGE_MAX],
                             self.accumulators[first:first + MANIFEST_PAGE_MAX])
                for first in range(0, max(count, 1), MANIFEST_PAGE_MAX)]


def make_manifest(snapshot: StateSnapshot, chunk_bytes_max: int) -> Manifest:
    """Reads the whole snapshot once (in a worker thread: O(state))."""
    start_keys: list[bytes] = []
    accumulators: list[bytes] = []
    for chunk in export_chunks(snapshot, chunk_bytes_max):
        start_keys.append(chunk.start_key)
        accumulators.append(chunk.accumulator)
    return Manifest(snapshot.height, snapshot.block_hash, snapshot.applied_index,
                    tuple(start_keys), tuple(accumulators))


def manifest_from_pages(pages: list[ManifestPage]) -> Manifest:
    """Join pages in order; StateChunkError if they do not make one whole manifest."""
    if not pages:
        raise StateChunkError("no manifest pages")
    first = pages[0]
    start_keys: list[bytes] = []
    accumulators: list[bytes] = []
    for page in pages:
        if (page.height, page.block_hash, page.applied_index, page.chunk_count) != (
                first.height, first.block_hash, first.applied_index, first.chunk_count):
            raise StateChunkError("manifest pages of different snapshots")
        if page.first_sequence != len(start_keys) or len(page.start_keys) != len(
                page.accumulators):
            raise StateChunkError("manifest pages out of order or malformed")
        start_keys.extend(page.start_keys)
        accumulators.extend(page.accumulators)
    if len(start_keys) != first.chunk_count or not start_keys or start_keys[0] != b"":
        raise StateChunkError("the manifest pages do not cover the snapshot")
    if any(later <= earlier for earlier, later in itertools.pairwise(start_keys)):
        raise StateChunkError("the manifest's chunk keys are not in increasing order")
    return Manifest(first.height, first.block_hash, first.applied_index, tuple(start_keys),
                    tuple(accumulators))


def verify_manifest(manifest: Manifest, state_root: bytes) -> None:
    """StateChunkError unless the chunks' multiset hashes add up to ``state_root``."""
    total = combine(decode_accumulator(value) for value in manifest.accumulators)
    if state_root_of(total) != state_root:
        raise StateChunkError(
            f"the manifest of the snapshot at height {manifest.height} does not add up to "
            f"its state root 0x{state_root.hex()}")


def _snapshot_get(snapshot: Any, key: bytes) -> bytes | None:
    value = snapshot.get(key)
    return None if value is None else keys.unseal(key, value)


def decode_import_marker(payload: bytes) -> tuple[int, bytes, int, int]:
    if len(payload) != _IMPORT_MARKER.size:
        raise CorruptionError(
            f"stored value does not decode: {keys.describe_key(keys.META_IMPORT_KEY)}: "
            f"{len(payload)} bytes, expected {_IMPORT_MARKER.size}"
        )
    height, block_hash, applied_index, chunks = _IMPORT_MARKER.unpack(payload)
    return height, block_hash, applied_index, chunks


class StateImport:
    """Replace the state with chunks from a peer, atomically at :meth:`finish`."""

    def __init__(
        self, store: BlockStore, *, height: int, block_hash: bytes, applied_index: int
    ) -> None:
        # Use BlockStore.import_state_begin().
        self._store = store
        self.height = height
        self.block_hash = block_hash
        self.applied_index = applied_index
        self._generation = store.staging_generation
        self._prefix = keys.state_prefix(self._generation)
        self._accumulator = 0  # the sum of the staged chunks' multiset hashes
        self._own_accumulator: bytes | None = None  # the state's ACCUMULATOR_KEY item
        self._own_roots: bytes | None = None  # the state's roots_key(height) item
        self._sequence = 0
        self._next_key = b""
        self._done = False
        self._closed = False

    @classmethod
    def begin(
        cls, store: BlockStore, *, height: int, block_hash: bytes, applied_index: int
    ) -> StateImport:
        assert store.active_import is None, "one state import at a time"
        assert len(block_hash) == keys.HASH_SIZE
        head = store.head()
        assert head is None or height > head.height, (
            f"importing state at height {height} would not move past the head {head.height}"
        )
        assert applied_index > store.applied_index()
        importer = cls(store, height=height, block_hash=block_hash, applied_index=applied_index)
        importer._write_marker(chunks=0, sync=True)
        store.clear_generation(importer._generation)
        store.active_import = importer
        return importer

    @property
    def chunks_received(self) -> int:
        return self._sequence

    def add_chunk(self, chunk: StateChunk, *, expected_accumulator: bytes | None = None) -> None:
        """Check ``chunk`` (target, order, key range, its multiset hash against its items
        and, from a verified manifest, against ``expected_accumulator``) and stage its
        items. A bad chunk raises StateChunkError and stages nothing."""
        assert not self._closed, "import already finished or aborted"
        self._check_chunk(chunk)
        pairs = [(item.key, item.value) for item in chunk.items]
        accumulator = accumulator_of(committed_items(pairs, self.height))
        if encode_accumulator(accumulator) != chunk.accumulator:
            raise StateChunkError(
                f"state chunk {chunk.sequence}: its multiset hash does not match its items")
        if expected_accumulator is not None and chunk.accumulator != expected_accumulator:
            raise StateChunkError(
                f"state chunk {chunk.sequence}: its multiset hash is not the manifest's")
        own_roots = roots_key(self.height)
        for key, value in pairs:
            if key == ACCUMULATOR_KEY:
                self._own_accumulator = value
            elif key == own_roots:
                self._own_roots = value
        database = self._store.database
        batch = database.batch(sync=False)
        put = batch.put
        prefix = self._prefix
        for app_key, value in pairs:
            key = prefix + app_key
            put(key, keys.seal(key, value))
        self._write_marker(chunks=self._sequence + 1, sync=False, batch=batch)
        database.write(batch, f"staging state chunk {chunk.sequence}")
        self._accumulator = combine((self._accumulator, accumulator))
        self._sequence += 1
        self._next_key = chunk.next_key
        self._done = chunk.done

    def finish(self, *, expected_state_root: bytes | None = None) -> bytes:
        """Switch to the imported state in one synced batch (with the head and applied
        index of the import). Returns the imported state's root. It must be the state
        root the state holds for its own height (and the state's accumulator entry its
        multiset hash), and, when given, ``expected_state_root`` (from a trusted header):
        else StateChunkError is raised and nothing changes."""
        assert not self._closed, "import already finished or aborted"
        if not self._done:
            raise StateChunkError(
                f"state import incomplete: {self._sequence} chunks received, no final chunk"
            )
        root = state_root_of(self._accumulator)
        if self.height > 0:
            if self._own_roots is None or len(self._own_roots) != 64:
                raise StateChunkError(
                    f"the imported state holds no roots of its height {self.height}")
            if Roots.decode(self._own_roots).state_root != root:
                raise StateChunkError(
                    f"the imported state's root 0x{root.hex()} is not the one it holds for "
                    f"height {self.height}")
        if (self._own_accumulator is None
                or decode_accumulator(self._own_accumulator) != self._accumulator):
            raise StateChunkError("the imported state's accumulator entry is not the sum of "
                                  "its items' hashes")
        if expected_state_root is not None and root != expected_state_root:
            raise StateChunkError(
                f"imported state root 0x{root.hex()} is not the expected "
                f"0x{expected_state_root.hex()}"
            )
        store = self._store
        database = store.database
        head = ChainHead(self.height, self.block_hash)
        batch = database.batch(sync=True)
        batch.put(
            keys.META_STATE_GENERATION_KEY,
            keys.seal(keys.META_STATE_GENERATION_KEY, self._generation),
        )
        store.add_progress(batch, head, self.applied_index)
        batch.delete(keys.META_IMPORT_KEY)
        database.write(batch, "switching to the imported state")
        old_generation = store.live_generation
        assert old_generation != self._generation
        store.switch_generation(self._generation)
        store.set_imported_head(head, self.applied_index)
        self._closed = True
        store.active_import = None
        store.clear_generation(old_generation)
        return root

    def abort(self) -> None:
        """Drop the staged items and the marker; the live state was never touched."""
        if self._closed:
            return
        self._closed = True
        store = self._store
        store.active_import = None
        store.clear_generation(self._generation)
        batch = store.database.batch(sync=True)
        batch.delete(keys.META_IMPORT_KEY)
        store.database.write(batch, "aborting a state import")

    def _check_chunk(self, chunk: StateChunk) -> None:
        where = f"state chunk {chunk.sequence}"
        if (chunk.height, chunk.block_hash, chunk.applied_index) != (
            self.height,
            self.block_hash,
            self.applied_index,
        ):
            raise StateChunkError(
                f"{where} is for height {chunk.height} / applied index "
                f"{chunk.applied_index}, not the import's {self.height} / {self.applied_index}"
            )
        if self._done:
            raise StateChunkError(f"{where} arrived after the final chunk")
        if chunk.sequence != self._sequence:
            raise StateChunkError(f"{where} arrived, expected chunk {self._sequence}")
        if chunk.start_key != self._next_key:
            raise StateChunkError(f"{where} starts at the wrong key")
        previous = None
        for item in chunk.items:
            if item.key < chunk.start_key or (previous is not None and item.key <= previous):
                raise StateChunkError(f"{where}: keys are not in strictly increasing order")
            previous = item.key
        if chunk.done:
            if chunk.next_key:
                raise StateChunkError(f"{where} is final but names a next key")
        elif not chunk.items or not chunk.next_key > chunk.items[-1].key:
            raise StateChunkError(f"{where}: next key does not follow its items")

    def _write_marker(self, *, chunks: int, sync: bool, batch: Any = None) -> None:
        database = self._store.database
        own_batch = batch is None
        if own_batch:
            batch = database.batch(sync=sync)
        payload = _IMPORT_MARKER.pack(self.height, self.block_hash, self.applied_index, chunks)
        batch.put(keys.META_IMPORT_KEY, keys.seal(keys.META_IMPORT_KEY, payload))
        if own_batch:
            database.write(batch, "recording a state import")


def interrupted_import(store: BlockStore) -> tuple[int, bytes, int, int] | None:
    """(height, block hash, applied index, chunks written) of a state import that a crash
    or an abandoned import left unfinished, or None."""
    payload = store.database.get(keys.META_IMPORT_KEY)
    return None if payload is None else decode_import_marker(payload)
