"""Opening, checking and closing the one LevelDB of a data directory.

:meth:`Database.open` creates ``<data_dir>/ledger.db`` if needed, refuses a directory that
another process holds (LevelDB's lock), a database of another schema version or another
chain id, and a non-empty database that is not ours. Every plyvel error is turned into a
:class:`~ledger.errors.StorageError` here, at the edge, so no caller sees a plyvel type.

A :class:`Database` is used by one writer thread at a time (the node's Raft driver);
reads of blocks, transactions and state are safe from other threads (LevelDB is
thread-safe and the cached head / applied index are replaced as whole objects).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import plyvel

from consensus.types import ConfState
from ledger import limits
from ledger.codec import decode
from ledger.errors import DecodeError
from storage import keys
from storage.errors import (
    ChainMismatchError,
    CorruptionError,
    DataDirectoryInUseError,
    DiskFullError,
    SchemaMismatchError,
    StorageError,
)

# Bump on any change to the key space or a value format (storage/keys.py), or to the
# application's state layout (ledger/app/layout.py: state written by one layout has other
# roots under another); an older or newer database is refused rather than misread.
#   1: the first layout.
#   2: a consent pair's indexes in end order with their count (consent-live,
#      consent-deny, consent-count replace consent-pair): grants read O(1) state
#      (ledger.app.layout.STATE_LAYOUT_VERSION 2).
#   3: state layout 3: the state commitment's accumulator and the committed tx ids in the
#      state (ledger/evaluation.py), state roots of another meaning.
#   4: state layout 4: validator sets in the state, blocks of version 2 (quorum
#      certificates, ledger/certificate.py).
SCHEMA_VERSION = 4

DATABASE_DIRECTORY_NAME = "ledger.db"

# ---- LevelDB tuning (scripts/bench-storage measures the apply path with these) ----

# Memtable size, and table file size. Measured with scripts/bench-storage (1,000-tx blocks,
# sync): 8 MiB / 4 MiB applied 128k-156k tx/s, against 81k-137k with 32 / 16 MiB, 114k-144k
# with 16 / 8 MiB and 80k-110k with LevelDB's 4 / 2 MiB defaults: a smaller skiplist makes
# the ~2,000 random-key inserts of each block cheaper, and smaller level-0 files keep
# compaction from stalling writes. Two memtables may exist at once (one flushing).
WRITE_BUFFER_BYTES = 8 * 1024 * 1024
TABLE_FILE_BYTES_MAX = 4 * 1024 * 1024

# Block cache for reads (recent blocks, tx index and state pages).
READ_CACHE_BYTES = 64 * 1024 * 1024

# Bloom filter bits per key: tx-id, block-hash and state lookups are point reads of random
# keys, mostly misses for tx ids not yet seen; 10 bits gives ~1% false positives.
BLOOM_FILTER_BITS_PER_KEY = 10

# File descriptors LevelDB may keep open (tables); well under the usual 1024 soft limit so
# the node keeps room for sockets.
OPEN_FILES_MAX = 256

# Deletes per batch when clearing garbage (compacted raft entries, an old state
# generation): bounds the memory of one batch and the pause one batch causes.
GARBAGE_BATCH_KEYS_MAX = 4096


@dataclass(frozen=True, slots=True)
class DatabaseOptions:
    """LevelDB knobs; the defaults are the named constants above (tests shrink them)."""

    write_buffer_bytes: int = WRITE_BUFFER_BYTES
    table_file_bytes_max: int = TABLE_FILE_BYTES_MAX
    read_cache_bytes: int = READ_CACHE_BYTES
    bloom_filter_bits_per_key: int = BLOOM_FILTER_BITS_PER_KEY
    open_files_max: int = OPEN_FILES_MAX
    # Snappy skips incompressible data (block bytes are mostly hashes and signatures)
    # cheaply and shrinks state values; None turns it off.
    compression: str | None = "snappy"

    def plyvel_arguments(self) -> dict[str, Any]:
        """These options as plyvel.DB's keyword arguments."""
        return {
            "write_buffer_size": self.write_buffer_bytes,
            "max_file_size": self.table_file_bytes_max,
            "lru_cache_size": self.read_cache_bytes,
            "bloom_filter_bits": self.bloom_filter_bits_per_key,
            "max_open_files": self.open_files_max,
            "compression": self.compression,
        }


T = TypeVar("T")


# How LevelDB words a failed write for want of space (its IO errors carry strerror).
_NO_SPACE_MESSAGES = ("No space left on device", "Disk quota exceeded")


def _wrap_plyvel_errors(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except plyvel.CorruptionError as error:
        raise CorruptionError(f"LevelDB reports corruption while {what}: {error}") from None
    except plyvel.Error as error:
        message = str(error)
        if any(text in message for text in _NO_SPACE_MESSAGES):
            raise DiskFullError(f"LevelDB ran out of space while {what}: {message}") from None
        raise StorageError(f"LevelDB error while {what}: {message}") from None


class Database:
    """The open LevelDB handle plus the few records every part of storage shares."""

    def __init__(self, db: Any, path: Path, chain_id: str,
                 options: DatabaseOptions | None = None) -> None:
        # Use Database.open(); this constructor only wires an already-checked handle.
        self.db = db
        self.path = path
        self.chain_id = chain_id
        self._options = options or DatabaseOptions()
        # (Raft index it took effect at, conf state): replaced whole, under _conf_lock.
        self._conf: tuple[int, ConfState] = (0, ConfState())
        self._conf_lock = threading.Lock()
        # The last applied Raft index (``m applied``); the block store writes it.
        self.applied_index = 0
        self._closed = False
        # Set by the first write that fails: LevelDB may hold a torn record at the end of
        # its log, and a record appended after it would be unreadable at the next open,
        # so every later write is refused until :meth:`reopen`.
        self._failed_write: StorageError | None = None
        self._load_records()

    def _load_records(self) -> None:
        self._conf = (0, ConfState())
        self._load_conf_state()
        self.applied_index = 0
        payload = self.get(keys.META_APPLIED_KEY)
        if payload is not None:
            if len(payload) != keys.U64.size:
                raise undecodable(keys.META_APPLIED_KEY, f"{len(payload)} bytes, expected 8")
            self.applied_index = keys.U64.unpack(payload)[0]

    # ---- opening and closing ----

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        chain_id: str,
        options: DatabaseOptions | None = None,
    ) -> Database:
        assert chain_id, "chain id must not be empty"
        options = options or DatabaseOptions()
        directory = Path(data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create data directory {directory}: {error}") from None
        path = directory / DATABASE_DIRECTORY_NAME
        db = _open_leveldb(path, options)
        try:
            _check_or_initialise(db, path, chain_id)
            return cls(db, path, chain_id, options)
        except BaseException:
            db.close()
            raise

    def reopen(self) -> None:
        """Close and open LevelDB again, then reload the shared records: the one way out
        of a failed write (LevelDB keeps a failed background flush as a sticky error, and
        a torn record must not be followed by more). On opening, LevelDB replays its log
        up to the last whole record, so every write that returned is kept and the failed
        one is either whole or absent. Callers reload their own cached records after this
        (:meth:`storage.store.Store.reopen`); no write may run meanwhile."""
        assert not self._closed, "reopen an open database"
        self.db.close()
        db = _open_leveldb(self.path, self._options)
        try:
            _check_or_initialise(db, self.path, self.chain_id)
        except BaseException:
            db.close()
            self._closed = True
            raise
        self.db = db
        self._failed_write = None
        self._load_records()

    @property
    def failed_write(self) -> StorageError | None:
        """The error of the write that failed since the last open, if one did."""
        return self._failed_write

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.db.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- reads ----

    def get(self, key: bytes) -> bytes | None:
        """The payload stored under ``key`` (checksum verified), or None."""
        try:
            value = self.db.get(key, verify_checksums=True)
        except READ_ERRORS as error:
            raise read_error(key, error) from None
        return None if value is None else keys.unseal(key, value)

    def iterate(
        self,
        *,
        start: bytes,
        stop: bytes | None,
        include_value: bool = True,
        snapshot: Any = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, payload) pairs in ``[start, stop)``, checksums verified; payload is b""
        when ``include_value`` is false."""
        key = start
        try:
            source = self.db if snapshot is None else snapshot
            iterator = source.iterator(
                start=start, stop=stop, include_value=include_value, verify_checksums=True
            )
            with iterator:
                if include_value:
                    for key, value in iterator:
                        yield key, keys.unseal(key, value)
                else:
                    for key in iterator:
                        yield key, b""
        except READ_ERRORS as error:
            raise read_error(key, error) from None

    # ---- writes ----

    def batch(self, *, sync: bool) -> Any:
        """A fresh plyvel WriteBatch; write it with :meth:`write`."""
        return self.db.write_batch(sync=sync)

    def write(
        self, batch: Any, what: str, *, conf_update: tuple[int, ConfState] | None = None
    ) -> bool:
        """Write ``batch``. With ``conf_update`` (index, conf state), the conf state record
        joins the batch unless a newer one is stored; the check and the write are one step
        (the Raft driver and the applier may write from different threads). Returns
        whether the conf state was written."""
        if conf_update is None:
            self._write_batch(batch, what)
            return False
        index, conf_state = conf_update
        with self._conf_lock:
            newer = index >= self._conf[0]
            if newer:
                payload = keys.pack_u64(index) + conf_state.encode()
                batch.put(keys.CONF_STATE_KEY, keys.seal(keys.CONF_STATE_KEY, payload))
            self._write_batch(batch, what)
            if newer:
                self._conf = (index, conf_state)
        return newer

    def _write_batch(self, batch: Any, what: str) -> None:
        failed = self._failed_write
        if failed is not None:
            refusal = f"not {what}: an earlier write failed, reopen the database first ({failed})"
            raise (DiskFullError if isinstance(failed, DiskFullError) else StorageError)(
                refusal)
        try:
            _wrap_plyvel_errors(what, batch.write)
        except StorageError as error:
            self._failed_write = error
            raise

    @property
    def conf_index(self) -> int:
        """The Raft index the recorded configuration took effect at."""
        return self._conf[0]

    @property
    def conf_state(self) -> ConfState:
        """The recorded configuration (ConfState() if none yet)."""
        return self._conf[1]

    def clear_range(self, start: bytes, stop: bytes | None, what: str) -> int:
        """Delete every key in ``[start, stop)`` in bounded, unsynced batches (a later
        synced write orders them; a crash leaves a suffix of the range, which the caller
        clears again). Returns the number of keys deleted."""
        deleted = 0
        while True:
            batch = self.batch(sync=False)
            count = 0
            for key, _ in self.iterate(start=start, stop=stop, include_value=False):
                batch.delete(key)
                count += 1
                if count == GARBAGE_BATCH_KEYS_MAX:
                    start = key + b"\x00"
                    break
            if count:
                self.write(batch, f"clearing {what}")
            deleted += count
            if count < GARBAGE_BATCH_KEYS_MAX:
                return deleted

    # ---- internals ----

    def _load_conf_state(self) -> None:
        payload = self.get(keys.CONF_STATE_KEY)
        if payload is None:
            return
        if len(payload) < keys.U64.size:
            raise undecodable(keys.CONF_STATE_KEY, "too short")
        try:
            conf_state = decode(
                ConfState, payload[keys.U64.size :], size_bytes_max=limits.BLOB_SIZE_BYTES_MAX
            )
        except DecodeError as error:
            raise undecodable(keys.CONF_STATE_KEY, str(error)) from None
        self._conf = (keys.U64.unpack_from(payload)[0], conf_state)


def undecodable(key: bytes, reason: str) -> CorruptionError:
    return CorruptionError(f"stored value does not decode: {keys.describe_key(key)}: {reason}")


# What a read may raise: plyvel's errors, and RuntimeError from a handle closed by
# :meth:`Database.reopen` under a reader on another thread (it then simply fails).
READ_ERRORS: tuple[type[Exception], ...] = (plyvel.Error, RuntimeError)


def read_error(key: bytes, error: Exception) -> StorageError:
    if not isinstance(error, plyvel.Error):
        return StorageError(
            f"cannot read {keys.describe_key(key)}: the database was being reopened ({error})"
        )
    if isinstance(error, plyvel.CorruptionError):
        return CorruptionError(
            f"LevelDB reports corruption reading {keys.describe_key(key)}: {error}"
        )
    return StorageError(f"LevelDB error reading {keys.describe_key(key)}: {error}")


def _open_leveldb(path: Path, options: DatabaseOptions) -> Any:
    try:
        return plyvel.DB(
            str(path),
            create_if_missing=True,
            # Stop at the first sign of damage (e.g. a bad log record in the middle of the
            # write-ahead log) instead of silently dropping data: a ledger node must not
            # come up on a database it cannot trust.
            paranoid_checks=True,
            **options.plyvel_arguments(),
        )
    except plyvel.IOError as error:
        message = str(error)
        if "lock" in message.lower():
            raise DataDirectoryInUseError(
                f"data directory {path.parent} is in use by another process "
                f"(LevelDB lock held on {path / 'LOCK'}): {message}"
            ) from None
        raise StorageError(f"cannot open {path}: {message}") from None
    except plyvel.CorruptionError as error:
        raise CorruptionError(f"cannot open {path}: LevelDB reports corruption: {error}") from None
    except plyvel.Error as error:
        raise StorageError(f"cannot open {path}: {error}") from None


def _check_or_initialise(db: Any, path: Path, chain_id: str) -> None:
    def get(key: bytes) -> bytes | None:
        try:
            value = db.get(key, verify_checksums=True)
        except plyvel.Error as error:
            raise read_error(key, error) from None
        return None if value is None else keys.unseal(key, value)

    schema = get(keys.META_SCHEMA_KEY)
    if schema is None:
        first = _wrap_plyvel_errors(
            f"reading {path}", lambda: next(db.iterator(include_value=False), None)
        )
        if first is not None:
            raise SchemaMismatchError(
                f"{path} holds data but no medledger schema version: not a medledger "
                f"database (first key {keys.describe_key(first)})"
            )
        batch = db.write_batch(sync=True)
        for key, payload in (
            (keys.META_SCHEMA_KEY, keys.pack_u32(SCHEMA_VERSION)),
            (keys.META_CHAIN_KEY, chain_id.encode()),
            (keys.META_STATE_GENERATION_KEY, keys.STATE_GENERATIONS[0]),
        ):
            batch.put(key, keys.seal(key, payload))
        _wrap_plyvel_errors(f"initialising {path}", batch.write)
        return
    if len(schema) != keys.U32.size:
        raise undecodable(keys.META_SCHEMA_KEY, f"{len(schema)} bytes, expected 4")
    version = keys.U32.unpack(schema)[0]
    if version != SCHEMA_VERSION:
        raise SchemaMismatchError(
            f"{path} has storage schema version {version}, this medledger reads version "
            f"{SCHEMA_VERSION}: migrate it or use another data directory"
        )
    stored_chain = get(keys.META_CHAIN_KEY)
    if stored_chain is None:
        raise undecodable(keys.META_CHAIN_KEY, "missing")
    if stored_chain != chain_id.encode():
        raise ChainMismatchError(
            f"{path} belongs to chain {stored_chain.decode(errors='replace')!r}, "
            f"not {chain_id!r}: refusing to mix chains in one data directory"
        )
