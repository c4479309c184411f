"""The Raft log, hard state and snapshots in LevelDB: the real ``RaftStorage``.

Semantics follow etcd's ``MemoryStorage``: the log holds entries ``start+1 .. last``
where ``start`` is the snapshot or compaction point and its term is kept (``term(start)``
answers); reads below it raise :class:`CompactedError`, above ``last`` raise
:class:`UnavailableError`.

What is on disk (storage/keys.py): the entries by index, and three small records written
in the same batch as any change to them — the hard state, the log bounds
``(start, start term, last)`` and the *term runs* ``[(first index, term), ...]``. So
opening reads three records and never scans the log, and ``term()``, ``first_index()`` and
``last_index()`` are answered from memory.

Entries below ``start`` may still exist physically for a while (after ``compact`` or after
installing a snapshot): they are deleted in bounded batches right after, and again on open
if a crash interrupted that. Entries above ``last`` never exist: a truncated suffix is
deleted in the same batch that truncates it.

Threads: one writer at a time; the node runs ``persist`` and ``compact`` in a worker
thread while the RawNode keeps reading on the event loop. Cached bounds are published as
one immutable :class:`LogBounds` after each write, and ``entries`` falls back to one
consistent LevelDB snapshot when its fast read raced a write (tested by
tests/test_storage_raftlog.py::test_reads_race_a_writer_thread_without_false_corruption).
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from consensus.ports import CompactedError, SnapshotOutOfDateError, UnavailableError
from consensus.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata
from ledger import limits
from ledger.codec import decode
from ledger.errors import CorruptionError, DecodeError
from storage import keys
from storage.database import READ_ERRORS, Database, read_error

_HARD_STATE = struct.Struct(">QQQ")
_LOG_BOUNDS = struct.Struct(">QQQ")
_TERM_RUN = struct.Struct(">QQ")
_ENTRY_HEADER = struct.Struct(">QB")
_ENTRY_TYPES = {int(member): member for member in EntryType}


class TermRuns:
    """Terms of consecutive log entries as runs: ``firsts[i]`` is the first index whose
    term is ``terms[i]``; firsts and terms strictly increase. One run per term in the log,
    so it stays tiny."""

    __slots__ = ("firsts", "terms")

    def __init__(self, firsts: list[int] | None = None, terms: list[int] | None = None) -> None:
        self.firsts = firsts if firsts is not None else []
        self.terms = terms if terms is not None else []

    def copy(self) -> TermRuns:
        return TermRuns(list(self.firsts), list(self.terms))

    def term(self, index: int) -> int:
        position = bisect_right(self.firsts, index) - 1
        assert position >= 0, f"no term run covers index {index}"
        return self.terms[position]

    def append(self, index: int, term: int) -> None:
        """Record that the entry at ``index`` (the new last) has ``term``."""
        if self.terms and self.terms[-1] == term:
            return
        assert not self.terms or self.terms[-1] < term, "terms must not decrease"
        assert not self.firsts or self.firsts[-1] < index
        self.firsts.append(index)
        self.terms.append(term)

    def truncate_after(self, index: int) -> None:
        """Forget entries above ``index``."""
        keep = bisect_right(self.firsts, index)
        del self.firsts[keep:], self.terms[keep:]

    def drop_through(self, index: int) -> None:
        """Forget entries up to and including ``index``."""
        position = bisect_right(self.firsts, index + 1) - 1
        if position < 0:
            return
        del self.firsts[:position], self.terms[:position]
        self.firsts[0] = max(self.firsts[0], index + 1)

    def encode(self) -> bytes:
        return b"".join(
            _TERM_RUN.pack(first, term) for first, term in zip(self.firsts, self.terms, strict=True)
        )

    @classmethod
    def decode(cls, payload: bytes) -> TermRuns:
        if len(payload) % _TERM_RUN.size:
            raise CorruptionError(
                f"stored value does not decode: {keys.describe_key(keys.RAFT_TERM_RUNS_KEY)}: "
                f"{len(payload)} bytes is not a whole number of runs"
            )
        runs = cls()
        for first, term in _TERM_RUN.iter_unpack(payload):
            runs.firsts.append(first)
            runs.terms.append(term)
        return runs

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TermRuns)
            and self.firsts == other.firsts
            and self.terms == other.terms
        )

    __hash__ = None  # type: ignore[assignment]


def encode_entry_value(key: bytes, entry: Entry) -> bytes:
    return keys.seal(key, _ENTRY_HEADER.pack(entry.term, entry.type) + entry.data)


def decode_entry(key: bytes, index: int, value: bytes) -> Entry:
    payload = keys.unseal(key, value)
    if len(payload) < _ENTRY_HEADER.size:
        raise CorruptionError(
            f"stored value does not decode: {keys.describe_key(key)}: too short"
        )
    term, type_code = _ENTRY_HEADER.unpack_from(payload)
    entry_type = _ENTRY_TYPES.get(type_code)
    if entry_type is None:
        raise CorruptionError(
            f"stored value does not decode: {keys.describe_key(key)}: "
            f"unknown entry type {type_code}"
        )
    return Entry(term=term, index=index, type=entry_type, data=payload[_ENTRY_HEADER.size :])


@dataclass(frozen=True, slots=True)
class LogBounds:
    """What the log holds: entries ``start+1 .. last``, ``start_term`` the term at
    ``start``, ``runs`` the terms of the entries. Replaced whole after every write (never
    mutated once published), so a reader on another thread sees one consistent view."""

    start: int = 0
    start_term: int = 0
    last: int = 0
    runs: TermRuns = field(default_factory=TermRuns)

    def term(self, index: int) -> int:
        if index < self.start:
            raise CompactedError(f"entry {index} is compacted (first index {self.start + 1})")
        if index > self.last:
            raise UnavailableError(f"entry {index} is beyond the last index {self.last}")
        if index == self.start:
            return self.start_term
        return self.runs.term(index)

    def check_consistent(self) -> None:
        runs = self.runs
        consistent = self.start <= self.last and (
            (self.last == self.start and not runs.firsts)
            or (bool(runs.firsts) and runs.firsts[0] == self.start + 1
                and runs.firsts[-1] <= self.last)
        )
        if not consistent:
            raise CorruptionError(
                f"raft log bounds (start {self.start}, last {self.last}) and term runs "
                f"{list(zip(runs.firsts, runs.terms, strict=True))} disagree"
            )


class _Inconsistent(Exception):
    """What the log read does not match the bounds it was read with."""


class LevelDBRaftStorage:
    """``consensus.ports.RaftStorage`` over a :class:`~storage.database.Database`.

    Threads: one writer at a time (``persist``, ``compact``, ``create_snapshot``,
    ``set_conf_state``), which may run in a worker thread while the RawNode reads on
    another: the cached bounds are published as one immutable :class:`LogBounds` after
    each write, and ``entries`` double-checks what it read (see there)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._hard_state = HardState()
        self._bounds = LogBounds()
        self._snapshot_metadata = SnapshotMetadata()
        self._load()
        # Lowest entry key physically present; below ``start + 1`` it is garbage.
        self._physical_first = self._find_physical_first()
        self._collect_garbage()

    def reload(self) -> None:
        """Read the hard state, bounds and snapshot metadata again (after
        :meth:`Database.reopen`: a write that failed may or may not be in the log)."""
        self._load()
        self._physical_first = self._find_physical_first()

    # ------------------------------------------------------------------ read side

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state, and the configuration as recorded last (by a snapshot,
        ``create_snapshot`` or ``set_conf_state`` after applying a conf change)."""
        return self._hard_state, self._database.conf_state

    def entries(self, low: int, high: int, size_bytes_max: int) -> list[Entry]:
        """Entries in ``[low, high)``; at least one; more only while the total of their
        ``data`` lengths stays within ``size_bytes_max``.

        Fast path: the cached bounds, then the entries as LevelDB holds them now. If a
        write on another thread raced with us (an entry missing, a term not the cached
        one), read again from one LevelDB snapshot together with the bounds stored in it:
        that answer is consistent, and a mismatch there is real corruption."""
        assert low < high, f"empty or inverted range [{low}, {high})"
        try:
            return self._read_entries(self._bounds, None, low, high, size_bytes_max)
        except _Inconsistent:
            pass
        snapshot = self._database.db.snapshot()
        try:
            bounds = self._stored_bounds(snapshot)
            try:
                return self._read_entries(bounds, snapshot, low, high, size_bytes_max)
            except _Inconsistent as error:
                raise CorruptionError(str(error)) from None
        finally:
            snapshot.close()

    def term(self, index: int) -> int:
        return self._bounds.term(index)

    def first_index(self) -> int:
        return self._bounds.start + 1

    def last_index(self) -> int:
        return self._bounds.last

    @property
    def bounds(self) -> LogBounds:
        return self._bounds

    def snapshot(self) -> Snapshot:
        payload = self._database.get(keys.RAFT_SNAPSHOT_KEY)
        if payload is None:
            return Snapshot()
        return _decode_snapshot(payload)

    # ------------------------------------------------------------------ write side

    def persist(
        self,
        *,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        sync: bool,
    ) -> None:
        """One atomic batch: the snapshot (replacing the whole log, as etcd's
        ``ApplySnapshot``; one older than the held snapshot raises SnapshotOutOfDateError;
        an empty one is ignored), then the entries (replacing any suffix from the first
        new index on), then the hard state."""
        old = self._bounds
        start, start_term, last, runs = old.start, old.start_term, old.last, old.runs
        batch = self._database.batch(sync=sync)
        conf_update: tuple[int, ConfState] | None = None
        snapshot_metadata = self._snapshot_metadata

        if snapshot is not None and not snapshot.is_empty:
            metadata = snapshot.metadata
            if metadata.index < snapshot_metadata.index:
                raise SnapshotOutOfDateError(
                    f"snapshot at {metadata.index} is older than the held one at "
                    f"{snapshot_metadata.index}"
                )
            assert len(snapshot.data) <= limits.BLOB_SIZE_BYTES_MAX
            for index in range(max(start, metadata.index) + 1, last + 1):
                batch.delete(keys.entry_key(index))
            start, start_term, last = metadata.index, metadata.term, metadata.index
            runs = TermRuns()
            batch.put(
                keys.RAFT_SNAPSHOT_KEY, keys.seal(keys.RAFT_SNAPSHOT_KEY, snapshot.encode())
            )
            snapshot_metadata = metadata
            conf_update = (metadata.index, metadata.conf_state)

        if entries:
            runs, last = self._add_entries(batch, entries, start, start_term, last, runs)

        if hard_state is not None and hard_state != self._hard_state:
            batch.put(
                keys.RAFT_HARD_STATE_KEY,
                keys.seal(
                    keys.RAFT_HARD_STATE_KEY,
                    _HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit),
                ),
            )
        if (start, start_term, last) != (old.start, old.start_term, old.last):
            self._put_bounds(batch, start, start_term, last)
        if runs is not old.runs and runs != old.runs:
            batch.put(keys.RAFT_TERM_RUNS_KEY, keys.seal(keys.RAFT_TERM_RUNS_KEY, runs.encode()))

        self._database.write(batch, "persisting raft state", conf_update=conf_update)

        if hard_state is not None:
            self._hard_state = hard_state
        self._bounds = LogBounds(start, start_term, last, runs)
        self._snapshot_metadata = snapshot_metadata
        if self._physical_first <= start:
            self._collect_garbage()

    def compact(self, index: int) -> None:
        """Discard entries through ``index``: the new bounds are written first, then the
        entries are deleted in bounded batches (resumed on open after a crash). Compacting
        at or below the current compaction point is a no-op, as in MemoryStorage."""
        old = self._bounds
        if index <= old.start:
            return
        assert index <= old.last, f"compact({index}) beyond the last index {old.last}"
        term = old.term(index)
        if index == old.last:
            runs = TermRuns()
        else:
            runs = old.runs.copy()
            runs.drop_through(index)
        batch = self._database.batch(sync=False)
        self._put_bounds(batch, index, term, old.last)
        batch.put(keys.RAFT_TERM_RUNS_KEY, keys.seal(keys.RAFT_TERM_RUNS_KEY, runs.encode()))
        self._database.write(batch, "compacting the raft log")
        self._bounds = LogBounds(index, term, old.last, runs)
        self._collect_garbage()

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record (synced) a snapshot of application state as of ``index``; also records
        ``conf_state`` as the configuration unless a newer one is already stored."""
        if index <= self._snapshot_metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {index} is not newer than the held one at "
                f"{self._snapshot_metadata.index}"
            )
        bounds = self._bounds
        assert index <= bounds.last, f"snapshot at {index} beyond the last index {bounds.last}"
        assert len(data) <= limits.BLOB_SIZE_BYTES_MAX
        metadata = SnapshotMetadata(index=index, term=bounds.term(index), conf_state=conf_state)
        snapshot = Snapshot(metadata=metadata, data=data)
        batch = self._database.batch(sync=True)
        batch.put(keys.RAFT_SNAPSHOT_KEY, keys.seal(keys.RAFT_SNAPSHOT_KEY, snapshot.encode()))
        self._database.write(
            batch, "recording a raft snapshot", conf_update=(index, conf_state)
        )
        self._snapshot_metadata = metadata
        return snapshot

    def set_conf_state(
        self, conf_state: ConfState, *, index: int | None = None, sync: bool = True
    ) -> None:
        """Record the configuration in effect from Raft index ``index`` on (default: the
        applied index recorded by the block store). The node calls this, or passes
        ``conf_state`` to the block store's apply calls so it lands in the apply batch,
        after applying a conf-change entry. An older index than the stored one is ignored."""
        if index is None:
            index = self._database.applied_index
        if index < self._database.conf_index:
            return
        batch = self._database.batch(sync=sync)
        self._database.write(batch, "recording the conf state", conf_update=(index, conf_state))

    # ------------------------------------------------------------------ internals

    def _read_entries(
        self, bounds: LogBounds, snapshot: Any, low: int, high: int, size_bytes_max: int
    ) -> list[Entry]:
        if low <= bounds.start:
            raise CompactedError(f"entry {low} is compacted (first index {bounds.start + 1})")
        if high > bounds.last + 1:
            raise UnavailableError(f"entry {high - 1} is beyond the last index {bounds.last}")
        result: list[Entry] = []
        total_bytes = 0
        expected = low
        runs_term = bounds.runs.term
        key = keys.entry_key(low)
        try:
            source = self._database.db if snapshot is None else snapshot
            iterator = source.iterator(
                start=keys.entry_key(low), stop=keys.entry_key(high), verify_checksums=True
            )
            with iterator:
                for key, value in iterator:
                    index = keys.U64.unpack_from(key, 1)[0]
                    if index != expected:
                        raise _Inconsistent(f"raft entry {expected} is missing from the log")
                    entry = decode_entry(key, index, value)
                    if entry.term != runs_term(index):
                        raise _Inconsistent(
                            f"raft entry {index} has term {entry.term} but the term runs "
                            f"say {runs_term(index)}"
                        )
                    total_bytes += len(entry.data)
                    if result and total_bytes > size_bytes_max:
                        break
                    result.append(entry)
                    expected += 1
        except READ_ERRORS as error:
            raise read_error(key, error) from None
        if not result or (expected < high and total_bytes <= size_bytes_max):
            raise _Inconsistent(f"raft entry {expected} is missing from the log")
        return result

    def _stored_bounds(self, source: Any) -> LogBounds:
        """The bounds and term runs as stored (in ``source``: the database or a snapshot)."""

        def get(key: bytes) -> bytes | None:
            try:
                value = source.get(key, verify_checksums=True)
            except READ_ERRORS as error:
                raise read_error(key, error) from None
            return None if value is None else keys.unseal(key, value)

        start = start_term = last = 0
        payload = get(keys.RAFT_LOG_BOUNDS_KEY)
        if payload is not None:
            _expect_size(keys.RAFT_LOG_BOUNDS_KEY, payload, _LOG_BOUNDS.size)
            start, start_term, last = _LOG_BOUNDS.unpack(payload)
        payload = get(keys.RAFT_TERM_RUNS_KEY)
        runs = TermRuns() if payload is None else TermRuns.decode(payload)
        bounds = LogBounds(start, start_term, last, runs)
        bounds.check_consistent()
        return bounds

    def _add_entries(
        self,
        batch: Any,
        entries: Sequence[Entry],
        start: int,
        start_term: int,
        last: int,
        runs: TermRuns,
    ) -> tuple[TermRuns, int]:
        """etcd ``MemoryStorage.Append`` into ``batch``: returns the new runs and last."""
        first_new = entries[0].index
        last_new = entries[-1].index
        assert last_new - first_new + 1 == len(entries), "entries are not contiguous"
        if last_new <= start:
            return runs, last  # all already compacted
        if first_new <= start:
            entries = entries[start + 1 - first_new :]
            first_new = start + 1
        assert first_new <= last + 1, f"missing log entries {last + 1}..{first_new - 1}"
        put = batch.put
        delete = batch.delete
        for index in range(last_new + 1, last + 1):
            delete(keys.entry_key(index))
        runs = runs.copy()
        runs.truncate_after(first_new - 1)
        previous_term = runs.terms[-1] if runs.terms else start_term
        expected = first_new
        for entry in entries:
            assert entry.index == expected, "entries are not contiguous"
            assert entry.term >= previous_term, "entry terms must not decrease"
            key = keys.entry_key(entry.index)
            put(key, encode_entry_value(key, entry))
            if entry.term != previous_term or not runs.terms:
                runs.append(entry.index, entry.term)
                previous_term = entry.term
            expected += 1
        return runs, last_new

    def _put_bounds(self, batch: Any, start: int, start_term: int, last: int) -> None:
        batch.put(
            keys.RAFT_LOG_BOUNDS_KEY,
            keys.seal(keys.RAFT_LOG_BOUNDS_KEY, _LOG_BOUNDS.pack(start, start_term, last)),
        )

    def _load(self) -> None:
        database = self._database
        payload = database.get(keys.RAFT_HARD_STATE_KEY)
        if payload is not None:
            _expect_size(keys.RAFT_HARD_STATE_KEY, payload, _HARD_STATE.size)
            term, vote, commit = _HARD_STATE.unpack(payload)
            self._hard_state = HardState(term=term, vote=vote, commit=commit)
        self._bounds = self._stored_bounds(self._database.db)
        payload = database.get(keys.RAFT_SNAPSHOT_KEY)
        if payload is not None:
            self._snapshot_metadata = _decode_snapshot(payload).metadata

    def _find_physical_first(self) -> int:
        for key, _ in self._database.iterate(
            start=keys.ENTRY_PREFIX, stop=keys.prefix_end(keys.ENTRY_PREFIX), include_value=False
        ):
            return int(keys.U64.unpack_from(key, 1)[0])
        return self._bounds.last + 1

    def _collect_garbage(self) -> None:
        """Delete entries below the first index, in bounded batches."""
        start = self._bounds.start
        if self._physical_first > start:
            return
        self._database.clear_range(
            keys.entry_key(self._physical_first),
            keys.entry_key(start + 1),
            "compacted raft entries",
        )
        self._physical_first = start + 1


def _expect_size(key: bytes, payload: bytes, size: int) -> None:
    if len(payload) != size:
        raise CorruptionError(
            f"stored value does not decode: {keys.describe_key(key)}: "
            f"{len(payload)} bytes, expected {size}"
        )


def _decode_snapshot(payload: bytes) -> Snapshot:
    try:
        return decode(Snapshot, payload, size_bytes_max=limits.BLOB_SIZE_BYTES_MAX + 4096)
    except DecodeError as error:
        raise CorruptionError(
            f"stored value does not decode: {keys.describe_key(keys.RAFT_SNAPSHOT_KEY)}: {error}"
        ) from None
