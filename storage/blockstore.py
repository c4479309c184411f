"""Blocks, the transaction index, application state and the applied index, in LevelDB.

Blocks are opaque canonical bytes here (their format belongs to ``ledger``). Applying a
block writes, in ONE batch: the block, its hash -> height entry, one tx-index entry per
transaction (height, position, result code), the state writes, the head and the applied
Raft index (and the conf state when the block's entry changed it). A crash at any instant
leaves the block wholly applied or not at all; applying an applied height again is a
verified no-op, so restart is idempotent.

Integrity: every value carries a CRC-32 over key and payload (storage/keys.py) checked on
every read; a mismatch raises :class:`~storage.errors.ValueChecksumError` naming the key and
the value is never served. Because the block hash is ``ledger``'s (SHA-256 of the header,
not of the stored bytes), the checksum guards the stored bytes and an optional
``verify_block(block_hash, block_bytes) -> bool`` hook, given at construction, re-checks a
block against its hash on every read (:class:`~storage.errors.BlockHashMismatchError`).

Pruning (:meth:`BlockStore.prune_blocks_below`): an observer may delete old block bodies,
oldest first, in bounded batches; ``m oldest`` names the oldest block still held. Reading a
block below it raises :class:`~storage.errors.BlockPrunedError` naming that height; the
hash and tx-index entries of pruned blocks stay (storage/keys.py says why).

Duplicate tx ids: the index maps a tx id to its latest occurrence (within a block, the
last position). ``ledger`` refuses a tx whose id is already on chain (``DUPLICATE``) before
it enters a block, so this only matters for a byzantine proposer's block.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consensus.types import ConfState
from ledger import limits
from ledger.app.machine import state_digest
from ledger.evaluation import TX_LOCATION, tx_seen_key
from storage import keys
from storage.database import READ_ERRORS, Database, read_error, undecodable
from storage.errors import (
    BlockConflictError,
    BlockHashMismatchError,
    BlockPrunedError,
    CorruptionError,
)

# The first block of a chain (genesis). An empty store accepts only this height first
# (or any height after a state import).
GENESIS_HEIGHT = 0

# A state key is a short path of identifiers and hashes (ledger caps identifiers at 128
# characters); the cap bounds LevelDB keys and state-sync items.
STATE_KEY_BYTES_MAX = 1024

# A state value is one record derived from transactions (each at most 64 KiB); 1 MiB
# leaves room for aggregates and bounds one state-sync item.
STATE_VALUE_BYTES_MAX = 1024 * 1024

# State writes in one apply batch: the batch is built in memory (Python and LevelDB each
# hold a copy), so ~16 writes per tx of the largest block, at ~300 B each, is ~500 MB.
STATE_WRITES_PER_BATCH_MAX = 16 * limits.BLOCK_TXS_MAX

# Blocks returned by one range read, whatever their size: bounds the Python objects one
# sync request can make us build.
RANGE_BLOCKS_MAX = 1024

# Block bodies one pruning batch deletes: a few hundred tombstones (~10 B each, whatever
# the blocks' size), so one batch is a small, quick write that never holds up an apply
# for long, and a node pruning steadily writes one batch per this many blocks applied.
PRUNE_BATCH_BLOCKS_MAX = 256

# Items returned by one state page read.
STATE_PAGE_ITEMS_MAX = 4096

# The tx-index value: height, position, result code.
_HEAD = struct.Struct(">Q32s")
_crc32 = zlib.crc32
_pack_u32 = keys.pack_u32
_pack_u64 = keys.pack_u64



@dataclass(frozen=True, slots=True)
class ChainHead:
    height: int
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class StoredBlock:
    height: int
    block_hash: bytes
    block_bytes: bytes


@dataclass(frozen=True, slots=True)
class TxLocation:
    """Where a transaction landed: block height, position in the block, result code."""

    height: int
    position: int
    result: int


@dataclass(frozen=True, slots=True)
class StatePage:
    items: list[tuple[bytes, bytes]]
    # The key to start the next page at, or None when the range is exhausted.
    next_key: bytes | None


class BlockStore:
    """Block, tx-index and state reads and the atomic apply writes."""

    def __init__(
        self,
        database: Database,
        *,
        verify_block: Callable[[bytes, bytes], bool] | None = None,
    ) -> None:
        self._database = database
        self._verify_block = verify_block
        self._head: ChainHead | None = None
        self._load_records()
        # The state import in progress (storage.statesync.StateImport), if any: blocks
        # are not applied meanwhile.
        self.active_import: object | None = None
        if self._database.get(keys.META_IMPORT_KEY) is None:
            self.clear_generation(self.staging_generation)

    def _load_records(self) -> None:
        database = self._database
        payload = database.get(keys.META_HEAD_KEY)
        self._head = None
        if payload is not None:
            if len(payload) != _HEAD.size:
                raise undecodable(keys.META_HEAD_KEY, f"{len(payload)} bytes, expected 40")
            height, block_hash = _HEAD.unpack(payload)
            self._head = ChainHead(height, block_hash)
        payload = database.get(keys.META_OLDEST_BLOCK_KEY)
        self._oldest_held = GENESIS_HEIGHT
        if payload is not None:
            self._oldest_held = self._decode_u64(keys.META_OLDEST_BLOCK_KEY, payload)
        generation = database.get(keys.META_STATE_GENERATION_KEY)
        if generation not in keys.STATE_GENERATIONS:
            raise undecodable(keys.META_STATE_GENERATION_KEY, f"{generation!r}")
        assert generation is not None
        self._generation = generation
        self._state_prefix = keys.state_prefix(generation)

    def reload(self) -> None:
        """Read the head and state generation again (after :meth:`Database.reopen`)."""
        self._load_records()

    # ------------------------------------------------------------------ chain meta

    @property
    def chain_id(self) -> str:
        return self._database.chain_id

    def head(self) -> ChainHead | None:
        """Height and hash of the last applied block (None before genesis)."""
        return self._head

    def applied_index(self) -> int:
        """The last Raft index applied (a block or an entry without one)."""
        return self._database.applied_index

    def oldest_held_height(self) -> int:
        """The oldest block whose body this store holds: blocks below it were pruned
        (GENESIS_HEIGHT when none was; the genesis record itself is never pruned)."""
        return self._oldest_held

    # ------------------------------------------------------------------ writes

    def apply_block(
        self,
        *,
        height: int,
        block_hash: bytes,
        block_bytes: bytes,
        tx_ids: Sequence[bytes],
        tx_results: Sequence[int],
        state_writes: Mapping[bytes, bytes | None],
        applied_index: int,
        conf_state: ConfState | None = None,
        sync: bool = True,
    ) -> bool:
        """Apply one block atomically (see the module docstring). ``state_writes`` maps
        app keys to new values, None deleting. Returns False, writing nothing, when the
        height is already applied with this hash; a different hash raises
        BlockConflictError. Heights must follow the head (an assertion)."""
        assert self.active_import is None, "no blocks are applied during a state import"
        head = self._head
        if head is not None and height <= head.height:
            return self._check_reapplied(height, block_hash)
        self._assert_applicable(height, block_hash, block_bytes, tx_ids, tx_results,
                                state_writes, applied_index)
        database = self._database
        batch = database.batch(sync=sync)
        put = batch.put
        crc32 = _crc32
        pack_u32 = _pack_u32
        height_bytes = _pack_u64(height)

        key = keys.BLOCK_PREFIX + height_bytes
        put(key, pack_u32(crc32(block_bytes, crc32(block_hash, crc32(key)))) + block_hash
            + block_bytes)
        key = keys.BLOCK_HASH_PREFIX + block_hash
        put(key, pack_u32(crc32(height_bytes, crc32(key))) + height_bytes)

        # The hot loop: one LevelDB entry per state write (the tx index is state:
        # ledger.evaluation.tx_index_writes, among ``state_writes``).
        self._add_state_writes(batch, state_writes)

        new_head = ChainHead(height, block_hash)
        self.add_progress(batch, new_head, applied_index)
        database.write(
            batch,
            f"applying block {height}",
            conf_update=None if conf_state is None else (applied_index, conf_state),
        )
        self._head = new_head
        database.applied_index = applied_index
        return True

    def prune_blocks_below(
        self, keep_from: int, *, blocks_max: int = PRUNE_BATCH_BLOCKS_MAX
    ) -> int:
        """Delete the bodies of the oldest held blocks below ``keep_from``, at most
        ``blocks_max`` of them, in ONE unsynced batch that also moves ``m oldest`` past
        them. Returns the number of heights deleted (0: nothing left below
        ``keep_from``). The genesis record and the head are never pruned (assertions).
        Call it repeatedly to prune a longer range; the node runs it as a write, one at a
        time with applies.

        The marker goes in the same batch as the deletes, and that is what keeps a crash
        at any instant harmless: LevelDB writes a batch whole or not at all, so after a
        crash every block from ``m oldest`` to the head is stored and none below it is
        (readers trust ``m oldest``: a block missing above it would be reported as damage,
        not as pruned). Written after the deletes, a crash between the two would leave
        such a hole. Written before them, as a bound, it would be safe for readers, but
        the blocks a crash left below it would never be deleted: pruning restarts at the
        marker. Unsynced is enough: a batch lost with the OS is lost whole, marker
        included, and pruning simply does it again; the next synced write (every apply
        on an observer) makes it durable."""
        assert 0 < blocks_max <= PRUNE_BATCH_BLOCKS_MAX
        head = self._head
        assert head is not None and keep_from <= head.height, "the head is never pruned"
        previous = self._oldest_held
        # The first block stored at or above the marker: blocks below a state import's
        # height were never stored, and deleting their keys one by one would be waste.
        floor = max(previous, GENESIS_HEIGHT + 1)
        first = self._first_stored_height(floor, keep_from)
        end = min(keep_from, first + blocks_max)
        if end <= floor:
            return 0
        database = self._database
        batch = database.batch(sync=False)
        for height in range(first, end):
            batch.delete(keys.block_key(height))
        batch.put(keys.META_OLDEST_BLOCK_KEY,
                  keys.seal(keys.META_OLDEST_BLOCK_KEY, _pack_u64(end)))
        # Raised before the write: a reader that misses a block deleted now must see why.
        self._oldest_held = end
        try:
            database.write(batch, f"pruning blocks {first}..{end - 1}")
        except BaseException:
            self._oldest_held = previous  # a reopen reads what LevelDB really kept
            raise
        return end - first

    def _first_stored_height(self, start: int, stop: int) -> int:
        """The lowest stored block height in ``[start, stop)``, or ``stop`` if none."""
        if start >= stop:
            return stop
        for key, _ in self._database.iterate(
            start=keys.block_key(start), stop=keys.block_key(stop), include_value=False
        ):
            return int(keys.U64.unpack_from(key, 1)[0])
        return stop

    def _assert_applicable(
        self, height: int, block_hash: bytes, block_bytes: bytes, tx_ids: Sequence[bytes],
        tx_results: Sequence[int], state_writes: Mapping[bytes, bytes | None],
        applied_index: int,
    ) -> None:
        """The caller's contract for a block that follows the head (assertions: a
        violation is a bug here, never a peer's doing)."""
        assert len(block_hash) == keys.HASH_SIZE, "block hash is SHA-256"
        assert len(tx_ids) == len(tx_results), "one result per transaction"
        assert len(tx_ids) <= limits.BLOCK_TXS_MAX
        assert len(block_bytes) <= limits.BLOB_SIZE_BYTES_MAX
        assert len(state_writes) <= STATE_WRITES_PER_BATCH_MAX
        head = self._head
        expected_height = GENESIS_HEIGHT if head is None else head.height + 1
        assert height == expected_height, (
            f"block {height} does not follow the head {expected_height - 1}: "
            "blocks are applied in order"
        )
        applied = self._database.applied_index
        # The genesis record (height 0) is no raft entry: it is applied at index 0.
        genesis = height == GENESIS_HEIGHT and applied_index == 0 == applied
        assert genesis or applied_index > applied, (
            f"applied index {applied_index} does not advance past {applied}"
        )
        if tx_ids:
            assert min(map(len, tx_ids)) == max(map(len, tx_ids)) == keys.TX_ID_SIZE
        if state_writes:
            assert max(map(len, state_writes)) <= STATE_KEY_BYTES_MAX
            assert (
                max(map(len, filter(None, state_writes.values())), default=0)
                <= STATE_VALUE_BYTES_MAX
            )

    def record_applied_index(
        self, index: int, *, conf_state: ConfState | None = None, sync: bool = True
    ) -> bool:
        """Record a Raft entry applied that carries no block (a no-op, a conf change: pass
        its resulting ``conf_state``). Returns False, writing nothing, if ``index`` is
        already applied."""
        assert self.active_import is None, "no entries are applied during a state import"
        database = self._database
        if index <= database.applied_index:
            return False
        batch = database.batch(sync=sync)
        self.add_progress(batch, None, index)
        database.write(
            batch,
            f"recording applied index {index}",
            conf_update=None if conf_state is None else (index, conf_state),
        )
        database.applied_index = index
        return True

    # ------------------------------------------------------------------ block reads

    def block(self, height: int) -> StoredBlock | None:
        """Block ``height``, or None if it was never stored (above the head, or below a
        state import). A pruned one raises BlockPrunedError."""
        key = keys.block_key(height)
        try:
            value = self._database.db.get(key, verify_checksums=True)
        except READ_ERRORS as error:
            raise read_error(key, error) from None
        if value is None:
            self._raise_if_pruned(height)
            return None
        return self._decode_block(key, height, value)

    def _raise_if_pruned(self, height: int) -> None:
        # Read the marker after the miss: pruning raises it before it deletes, so a block
        # deleted under this read is reported as pruned, never as missing.
        oldest = self._oldest_held
        if GENESIS_HEIGHT < height < oldest:
            raise BlockPrunedError(height, oldest)

    def block_by_hash(self, block_hash: bytes) -> StoredBlock | None:
        payload = self._database.get(keys.block_hash_key(block_hash))
        if payload is None:
            return None
        height = self._decode_u64(keys.block_hash_key(block_hash), payload)
        block = self.block(height)
        if block is None or block.block_hash != block_hash:
            raise CorruptionError(
                f"{keys.describe_key(keys.block_hash_key(block_hash))} points at height "
                f"{height}, which holds {'no block' if block is None else 'another block'}"
            )
        return block

    def blocks(
        self, first_height: int, last_height: int, *, size_bytes_max: int
    ) -> list[StoredBlock]:
        """Blocks ``first_height ..= last_height`` in order: at least the first (if
        stored), then more while their total size stays within ``size_bytes_max``, at
        most RANGE_BLOCKS_MAX; stops early at the first missing height. A range that
        starts at a pruned block raises BlockPrunedError."""
        assert first_height <= last_height
        result: list[StoredBlock] = []
        total_bytes = 0
        expected = first_height
        stop_height = min(last_height, first_height + RANGE_BLOCKS_MAX - 1)
        key = keys.block_key(first_height)
        try:
            iterator = self._database.db.iterator(
                start=keys.block_key(first_height),
                stop=keys.block_key(stop_height + 1),
                verify_checksums=True,
            )
            with iterator:
                for key, value in iterator:
                    height = keys.U64.unpack_from(key, 1)[0]
                    if height != expected:
                        break
                    block = self._decode_block(key, height, value)
                    total_bytes += len(block.block_bytes)
                    if result and total_bytes > size_bytes_max:
                        break
                    result.append(block)
                    expected += 1
        except READ_ERRORS as error:
            raise read_error(key, error) from None
        if not result:
            self._raise_if_pruned(first_height)
        return result

    def transaction(self, tx_id: bytes) -> TxLocation | None:
        """Where a committed tx landed, from the state's tx index (evaluation.TX_SEEN)."""
        key = tx_seen_key(tx_id)
        payload = self.state_get(key)
        if payload is None:
            return None
        if len(payload) != TX_LOCATION.size:
            raise undecodable(self._state_prefix + key,
                              f"{len(payload)} bytes, expected {TX_LOCATION.size}")
        return TxLocation(*TX_LOCATION.unpack(payload))

    def transaction_block(self, tx_id: bytes) -> tuple[TxLocation, StoredBlock] | None:
        """The transaction's location and the block holding it."""
        location = self.transaction(tx_id)
        if location is None:
            return None
        block = self.block(location.height)
        if block is None:
            raise CorruptionError(
                f"the tx index entry of 0x{tx_id.hex()} points at block {location.height}, "
                "which is not stored"
            )
        return location, block

    # ------------------------------------------------------------------ state reads

    def state_get(self, key: bytes) -> bytes | None:
        return self._database.get(self._state_prefix + key)

    def state_page(
        self,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        items_max: int = STATE_PAGE_ITEMS_MAX,
        size_bytes_max: int = 1024 * 1024,
    ) -> StatePage:
        """State items whose key starts with ``prefix``, from ``start`` (a full key,
        inclusive; default the prefix itself), in key order: at least one if any, at
        most ``items_max``, stopping before ``size_bytes_max`` of keys and values is
        exceeded. ``next_key`` continues the iteration."""
        assert 0 < items_max <= STATE_PAGE_ITEMS_MAX
        base = self._state_prefix
        begin = base + (prefix if start is None else start)
        assert begin.startswith(base + prefix), "start must lie inside the prefix"
        items: list[tuple[bytes, bytes]] = []
        total_bytes = 0
        strip = len(base)
        for key, value in self._database.iterate(
            start=begin, stop=keys.prefix_end(base + prefix)
        ):
            app_key = key[strip:]
            total_bytes += len(app_key) + len(value)
            if len(items) == items_max or (items and total_bytes > size_bytes_max):
                return StatePage(items, app_key)
            items.append((app_key, value))
        return StatePage(items, None)

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every state item in key order, from one consistent LevelDB view."""
        strip = len(self._state_prefix)
        for key, value in self._database.iterate(
            start=self._state_prefix, stop=keys.prefix_end(self._state_prefix)
        ):
            yield key[strip:], value

    def state_digest(self) -> bytes:
        """The state digest (``ledger.app.machine.state_digest``) of every state item,
        each value's checksum verified on the way. Equal states, equal digests."""
        return state_digest(self.state_items())

    # ------------------------------------------------------------------ state generations
    # The state lives under one of two key prefixes (generations); storage.statesync
    # imports a peer's state into the other one and switches when it is complete. These
    # are the only ways it changes the store.

    @property
    def database(self) -> Database:
        return self._database

    @property
    def live_generation(self) -> bytes:
        return self._generation

    @property
    def staging_generation(self) -> bytes:
        first, second = keys.STATE_GENERATIONS
        return second if self._generation == first else first

    def switch_generation(self, generation: bytes) -> None:
        self._generation = generation
        self._state_prefix = keys.state_prefix(generation)

    def clear_generation(self, generation: bytes) -> None:
        prefix = keys.state_prefix(generation)
        self._database.clear_range(prefix, keys.prefix_end(prefix), "an old state generation")

    def _add_state_writes(self, batch: Any, state_writes: Mapping[bytes, bytes | None]) -> None:
        put = batch.put
        delete = batch.delete
        crc32 = _crc32
        pack_u32 = _pack_u32
        prefix = self._state_prefix
        for app_key, value in state_writes.items():
            key = prefix + app_key
            if value is None:
                delete(key)
            else:
                put(key, pack_u32(crc32(key + value)) + value)

    def add_progress(self, batch: Any, head: ChainHead | None, applied_index: int) -> None:
        if head is not None:
            batch.put(
                keys.META_HEAD_KEY,
                keys.seal(keys.META_HEAD_KEY, _HEAD.pack(head.height, head.block_hash)),
            )
        batch.put(
            keys.META_APPLIED_KEY, keys.seal(keys.META_APPLIED_KEY, _pack_u64(applied_index))
        )

    def store_imported_head_block(self, height: int, block_hash: bytes,
                                  block_bytes: bytes) -> None:
        """After a state import at ``height`` (state sync, a restored snapshot file): store
        the head block's body and hash entry (the chain reads the head block's header) and
        make it the oldest block held, in ONE synced batch. The blocks between the genesis
        record and it were never stored here (or, on a node that was behind, are deleted
        next: :meth:`delete_blocks_below_oldest`); with ``m oldest`` at the head, reading one of
        them, or a peer's range request for them, is answered as pruned, naming this height
        (as on a pruned observer), which keeps the pruning invariant: every block from
        ``m oldest`` to the head is stored. The caller checked that the bytes are the block
        of that hash (storage treats blocks as opaque)."""
        assert self.active_import is None, "the import is finished first"
        assert self._head == ChainHead(height, block_hash), "only the imported head's block"
        assert height > GENESIS_HEIGHT
        assert len(block_bytes) <= limits.BLOB_SIZE_BYTES_MAX
        database = self._database
        key = keys.block_key(height)
        assert database.get(key) is None, f"block {height} is stored already"
        batch = database.batch(sync=True)
        batch.put(key, keys.seal(key, block_hash + block_bytes))
        hash_key = keys.block_hash_key(block_hash)
        batch.put(hash_key, keys.seal(hash_key, _pack_u64(height)))
        batch.put(keys.META_OLDEST_BLOCK_KEY,
                  keys.seal(keys.META_OLDEST_BLOCK_KEY, _pack_u64(height)))
        database.write(batch, f"storing the imported head block {height}")
        self._oldest_held = height

    def delete_blocks_below_oldest(self, *, blocks_max: int = PRUNE_BATCH_BLOCKS_MAX) -> int:
        """Delete the bodies of blocks stored below ``m oldest``, at most ``blocks_max`` of
        them, in ONE unsynced batch; returns how many (0: none left). A node that held
        blocks 1..h and imported a state at S > h + 1 (a validator far behind, by state
        sync) holds them below its new oldest block, with a gap above them: nothing reads
        them any more (readers trust ``m oldest``), so a crash at any instant is harmless
        and the next call goes on. Call it until it returns 0."""
        assert 0 < blocks_max <= PRUNE_BATCH_BLOCKS_MAX
        stop = self._oldest_held
        first = self._first_stored_height(GENESIS_HEIGHT + 1, stop)
        end = min(stop, first + blocks_max)
        if first >= end:
            return 0
        batch = self._database.batch(sync=False)
        deleted = 0
        for key, _ in self._database.iterate(start=keys.block_key(first),
                                             stop=keys.block_key(end), include_value=False):
            batch.delete(key)
            deleted += 1
        self._database.write(batch, f"deleting blocks {first}..{end - 1} below the oldest held")
        return deleted

    def set_imported_head(self, head: ChainHead, applied_index: int) -> None:
        self._head = head
        self._database.applied_index = applied_index

    def _check_reapplied(self, height: int, block_hash: bytes) -> bool:
        key = keys.block_key(height)
        payload = self._database.get(key)
        if payload is None:
            return False  # below a state import's height: its effects are in the state
        stored_hash = payload[: keys.HASH_SIZE]
        if stored_hash != block_hash:
            raise BlockConflictError(
                f"block {height} is already stored with hash 0x{stored_hash.hex()}, "
                f"not 0x{block_hash.hex()}"
            )
        return False

    def _decode_block(self, key: bytes, height: int, value: bytes) -> StoredBlock:
        payload = keys.unseal(key, value)
        if len(payload) < keys.HASH_SIZE:
            raise undecodable(key, "shorter than a hash")
        block_hash = payload[: keys.HASH_SIZE]
        block_bytes = payload[keys.HASH_SIZE :]
        if self._verify_block is not None and not self._verify_block(block_hash, block_bytes):
            raise BlockHashMismatchError(key, keys.describe_key(key))
        return StoredBlock(height, block_hash, block_bytes)

    def _decode_u64(self, key: bytes, payload: bytes) -> int:
        if len(payload) != keys.U64.size:
            raise undecodable(key, f"{len(payload)} bytes, expected 8")
        return int(keys.U64.unpack(payload)[0])
