"""MemoryStorage: the in-memory, simulated implementation of :class:`RaftStorage`.

Used by tests and the simulator. It models a disk with a volatile cache: ``persist`` with
``sync=False`` changes what reads return but is lost by :meth:`MemoryStorage.crash`;
``sync=True`` (like fsync) makes it and every earlier write durable. ``compact`` and
``create_snapshot`` are durable at once (they sync first), as a real snapshot file is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from consensus.ports import CompactedError, SnapshotOutOfDateError, UnavailableError
from consensus.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata


@dataclass(frozen=True, slots=True)
class _Write:
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    # (index, configuration in effect from it), recorded by ``set_conf_state``.
    conf: tuple[int, ConfState] | None = None


class _Contents:
    """One copy of what storage holds: a snapshot, then entries from ``first``."""

    __slots__ = ("before_first_term", "conf", "entries", "first", "hard_state", "snapshot")

    def __init__(self, snapshot: Snapshot) -> None:
        self.hard_state = HardState()
        self.conf: tuple[int, ConfState] | None = None
        self.snapshot = snapshot
        self.entries: list[Entry] = []
        self.first = snapshot.metadata.index + 1
        # Term of the entry at first - 1 (the last compacted one, or the snapshot's).
        self.before_first_term = snapshot.metadata.term

    def copy(self) -> _Contents:
        other = _Contents(self.snapshot)
        other.hard_state = self.hard_state
        other.conf = self.conf
        other.entries = list(self.entries)
        other.first = self.first
        other.before_first_term = self.before_first_term
        return other

    def last_index(self) -> int:
        return self.first + len(self.entries) - 1

    def term(self, index: int) -> int:
        if index < self.first - 1:
            raise CompactedError(f"index {index} is compacted (first is {self.first})")
        if index == self.first - 1:
            return self.before_first_term
        if index > self.last_index():
            raise UnavailableError(f"index {index} is beyond {self.last_index()}")
        return self.entries[index - self.first].term

    def write(self, write: _Write) -> None:
        if write.snapshot is not None:
            self._install(write.snapshot)
        if write.entries:
            self._append(write.entries)
        if write.hard_state is not None:
            self.hard_state = write.hard_state
        if write.conf is not None and (self.conf is None or write.conf[0] >= self.conf[0]):
            self.conf = write.conf

    def conf_state(self) -> ConfState:
        """The recorded configuration if newer than the snapshot's, else the snapshot's."""
        conf, snapshot = self.conf, self.snapshot.metadata
        return conf[1] if conf is not None and conf[0] > snapshot.index else snapshot.conf_state

    def _install(self, snapshot: Snapshot) -> None:
        if snapshot.metadata.index < self.snapshot.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {snapshot.metadata.index} is older than the one held "
                f"({self.snapshot.metadata.index})"
            )
        self.snapshot = snapshot
        self.entries = []
        self.first = snapshot.metadata.index + 1
        self.before_first_term = snapshot.metadata.term

    def _append(self, entries: Sequence[Entry]) -> None:
        start = entries[0].index
        if start < self.first:
            # Entries below the first are compacted (hence committed and identical).
            entries = entries[self.first - start :]
            if not entries:
                return
            start = self.first
        assert start <= self.last_index() + 1, (
            f"gap in the log: appending at {start} after {self.last_index()}"
        )
        del self.entries[start - self.first :]
        self.entries.extend(entries)

    def compact(self, index: int) -> None:
        assert self.first - 1 <= index <= self.last_index(), (
            f"compact at {index} outside [{self.first - 1}, {self.last_index()}]"
        )
        if index < self.first:
            return
        self.before_first_term = self.term(index)
        del self.entries[: index + 1 - self.first]
        self.first = index + 1


class MemoryStorage:
    """An in-memory :class:`~consensus.ports.RaftStorage` with a simulated crash."""

    def __init__(self, conf_state: ConfState | None = None) -> None:
        """Start empty, with ``conf_state`` as the bootstrap configuration (the initial
        voters of a new cluster; none for a node that will be added later)."""
        metadata = SnapshotMetadata(index=0, term=0, conf_state=conf_state or ConfState())
        initial = Snapshot(metadata=metadata)
        self._volatile = _Contents(initial)
        self._durable = _Contents(initial)
        self._unsynced: list[_Write] = []
        self.synced_writes = 0
        self.unsynced_writes = 0

    # ---- read side ----

    def initial_state(self) -> tuple[HardState, ConfState]:
        contents = self._volatile
        return contents.hard_state, contents.conf_state()

    def entries(self, low: int, high: int, size_bytes_max: int) -> list[Entry]:
        contents = self._volatile
        if low < contents.first:
            raise CompactedError(f"index {low} is compacted (first is {contents.first})")
        if high > contents.last_index() + 1:
            raise UnavailableError(f"index {high - 1} is beyond {contents.last_index()}")
        first = contents.first
        result = contents.entries[low - first : high - first]
        total = 0
        for position, entry in enumerate(result):
            total += len(entry.data)
            if total > size_bytes_max and position > 0:
                return result[:position]
        return result

    def term(self, index: int) -> int:
        return self._volatile.term(index)

    def first_index(self) -> int:
        return self._volatile.first

    def last_index(self) -> int:
        return self._volatile.last_index()

    def snapshot(self) -> Snapshot:
        return self._volatile.snapshot

    # ---- write side ----

    def persist(
        self,
        *,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        sync: bool,
    ) -> None:
        write = _Write(hard_state, tuple(entries), snapshot)
        self._volatile.write(write)
        self._unsynced.append(write)
        if sync:
            self.sync()
            self.synced_writes += 1
        else:
            self.unsynced_writes += 1

    def set_conf_state(self, conf_state: ConfState, *, index: int, sync: bool) -> None:
        """Record the configuration in effect from ``index`` on (see the port)."""
        write = _Write(None, (), None, (index, conf_state))
        self._volatile.write(write)
        self._unsynced.append(write)
        if sync:
            self.sync()

    def sync(self) -> None:
        """Make every earlier write durable (fsync)."""
        for write in self._unsynced:
            self._durable.write(write)
        self._unsynced.clear()

    def compact(self, index: int) -> None:
        """Discard entries up to ``index``, which a snapshot must already cover."""
        assert index <= self._volatile.snapshot.metadata.index, (
            f"compact at {index} beyond the snapshot at "
            f"{self._volatile.snapshot.metadata.index}: create a snapshot first"
        )
        self.sync()
        self._volatile.compact(index)
        self._durable.compact(index)

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        contents = self._volatile
        if index <= contents.snapshot.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {index} is not newer than {contents.snapshot.metadata.index}"
            )
        assert index <= contents.last_index(), f"snapshot at {index} beyond the log"
        snapshot = Snapshot(
            metadata=SnapshotMetadata(
                index=index, term=contents.term(index), conf_state=conf_state
            ),
            data=data,
        )
        self.sync()
        self._volatile.snapshot = snapshot
        self._durable.snapshot = snapshot
        return snapshot

    # ---- simulation ----

    def crash(self) -> None:
        """Power loss: every write since the last sync is gone."""
        self._unsynced.clear()
        self._volatile = self._durable.copy()

    def durable_hard_state(self) -> HardState:
        return self._durable.hard_state

    def unsynced_count(self) -> int:
        return len(self._unsynced)
