"""The port between Raft and whatever keeps its log: one Protocol, two implementations.

``consensus.memory.MemoryStorage`` (simulated, in-process) and
``storage.raftlog.LevelDBRaftStorage`` (real, LevelDB) both implement :class:`RaftStorage`.

The read side is what the pure :class:`~consensus.raw_node.RawNode` calls. The write side
is what the shell calls while honouring a ``Ready``: persist (``persist``), then send, then
apply, then ``advance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from consensus.types import ConfState, Entry, HardState, Snapshot
from ledger.errors import LocalError


class CompactedError(LocalError):
    """The requested index is below the first index still in the log (it was compacted)."""


class UnavailableError(LocalError):
    """The requested index is above the last index in the log."""


class SnapshotOutOfDateError(LocalError):
    """A snapshot older than the one already held was offered."""


class RaftStorage(Protocol):
    # ---- read side, used by the RawNode ----
    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the configuration Raft starts from.

        Configuration changes take effect when they are applied (as in etcd), so this is
        the configuration in effect at the index the shell passes as
        ``Config.applied_index``: the latest snapshot's, plus every change the application
        applied since (recorded atomically with its applied index). Raft hands out again
        every committed entry after ``applied_index``, configuration changes included. A
        node that has applied nothing returns the bootstrap (genesis) configuration; so
        does a node joining an existing cluster (it is not in it, so it never campaigns,
        and it learns its membership from the log or a snapshot).
        """
        ...

    def entries(self, low: int, high: int, size_bytes_max: int) -> list[Entry]:
        """Entries in ``[low, high)``, at least one, stopping before ``size_bytes_max`` of
        data is exceeded. Raises CompactedError / UnavailableError out of range."""
        ...

    def term(self, index: int) -> int:
        """Term of the entry at ``index``; valid for ``first_index() - 1 <= index <=
        last_index()`` (the entry just before the first is the snapshot's)."""
        ...

    def first_index(self) -> int:
        """Index of the first entry still available (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot (may be empty)."""
        ...

    # ---- write side, used by the shell ----
    def persist(
        self,
        *,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        sync: bool,
    ) -> None:
        """Durably record a Ready in one atomic write: the snapshot (if any) first, then
        entries (truncating any conflicting suffix), then the hard state."""
        ...

    def compact(self, index: int) -> None:
        """Discard entries up to and including ``index`` (must be applied already)."""
        ...

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot of application state as of ``index``."""
        ...

    def set_conf_state(self, conf_state: ConfState, *, index: int, sync: bool) -> None:
        """Record the configuration in effect from raft index ``index`` on (the shell calls
        it after a committed conf change, before applying the entry); an older index than
        the one recorded is ignored. ``initial_state`` returns it once it is newer than
        the snapshot's."""
        ...


class RandomSource(Protocol):
    """Where Raft draws randomized election timeouts from: a seeded ``random.Random`` in
    the simulator and tests, any ``random.Random`` in the node."""

    def randrange(self, start: int, stop: int) -> int:
        """A uniformly chosen integer in ``[start, stop)``."""
        ...


class RaftLogger(Protocol):
    """The injected logger (a structlog ``BoundLogger`` fits). Raft logs only state
    transitions (elections, step-downs, configuration and snapshot changes), never per
    message, so logging costs nothing on the replication path."""

    def info(self, event: str, **fields: object) -> None: ...

    def warning(self, event: str, **fields: object) -> None: ...


class NullLogger:
    """A :class:`RaftLogger` that drops everything."""

    def info(self, event: str, **fields: object) -> None:
        pass

    def warning(self, event: str, **fields: object) -> None:
        pass
