"""MemoryStorage: the simulated RaftStorage, including losing unsynced writes on crash."""

from __future__ import annotations

import pytest

from consensus.memory import MemoryStorage
from consensus.ports import CompactedError, SnapshotOutOfDateError, UnavailableError
from consensus.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata


def entry(term: int, index: int, data: bytes = b"x") -> Entry:
    return Entry(term=term, index=index, type=EntryType.NORMAL, data=data)


def test_initial_state_is_the_bootstrap_configuration() -> None:
    storage = MemoryStorage(ConfState(voters=(1, 2, 3)))
    assert storage.initial_state() == (HardState(), ConfState(voters=(1, 2, 3)))
    assert (storage.first_index(), storage.last_index(), storage.term(0)) == (1, 0, 0)


def test_persist_appends_and_truncates_conflicts() -> None:
    storage = MemoryStorage()
    storage.persist(
        hard_state=HardState(1, 1, 0),
        entries=[entry(1, 1), entry(1, 2), entry(1, 3)],
        snapshot=None,
        sync=True,
    )
    storage.persist(hard_state=None, entries=[entry(2, 2, b"y")], snapshot=None, sync=True)
    assert storage.last_index() == 2
    assert storage.term(2) == 2
    assert [e.data for e in storage.entries(1, 3, 100)] == [b"x", b"y"]
    with pytest.raises(UnavailableError):
        storage.term(3)
    with pytest.raises(AssertionError):  # a gap is a programmer error
        storage.persist(hard_state=None, entries=[entry(2, 9)], snapshot=None, sync=True)


def test_entries_respect_the_size_limit_but_return_at_least_one() -> None:
    storage = MemoryStorage()
    storage.persist(
        hard_state=None,
        entries=[entry(1, index, b"12345") for index in range(1, 6)],
        snapshot=None,
        sync=True,
    )
    assert len(storage.entries(1, 6, 0)) == 1
    assert len(storage.entries(1, 6, 10)) == 2
    assert len(storage.entries(1, 6, 11)) == 2
    assert len(storage.entries(1, 6, 10**9)) == 5


def test_crash_loses_only_unsynced_writes() -> None:
    storage = MemoryStorage()
    storage.persist(hard_state=HardState(1, 1, 0), entries=[entry(1, 1)], snapshot=None, sync=True)
    storage.persist(hard_state=HardState(1, 1, 1), entries=[], snapshot=None, sync=False)
    storage.persist(hard_state=HardState(2, 0, 1), entries=[entry(2, 2)], snapshot=None, sync=False)
    assert storage.last_index() == 2
    storage.crash()
    assert storage.initial_state()[0] == HardState(1, 1, 0)
    assert storage.last_index() == 1
    # A later synced write makes earlier unsynced ones durable too (fsync semantics).
    storage.persist(hard_state=HardState(1, 1, 1), entries=[], snapshot=None, sync=False)
    storage.persist(hard_state=None, entries=[entry(1, 2)], snapshot=None, sync=True)
    storage.crash()
    assert storage.initial_state()[0] == HardState(1, 1, 1)
    assert storage.last_index() == 2


def test_snapshot_compaction_and_install() -> None:
    storage = MemoryStorage(ConfState(voters=(1,)))
    storage.persist(
        hard_state=None,
        entries=[entry(1, index) for index in range(1, 11)],
        snapshot=None,
        sync=True,
    )
    with pytest.raises(AssertionError):  # compaction needs a snapshot covering it
        storage.compact(5)
    snapshot = storage.create_snapshot(6, ConfState(voters=(1, 2)), b"state")
    assert snapshot.metadata.term == 1
    storage.compact(4)
    assert storage.first_index() == 5 and storage.term(4) == 1
    with pytest.raises(CompactedError):
        storage.entries(4, 6, 100)
    with pytest.raises(CompactedError):
        storage.term(3)
    with pytest.raises(SnapshotOutOfDateError):
        storage.create_snapshot(6, ConfState(voters=(1,)), b"")
    storage.crash()  # compaction and snapshots are durable
    assert storage.first_index() == 5 and storage.snapshot() == snapshot
    newer = Snapshot(SnapshotMetadata(20, 3, ConfState(voters=(1, 2, 3))), b"new")
    storage.persist(hard_state=HardState(3, 0, 20), entries=[], snapshot=newer, sync=True)
    assert (storage.first_index(), storage.last_index(), storage.term(20)) == (21, 20, 3)
    assert storage.initial_state()[1] == ConfState(voters=(1, 2, 3))


def test_a_recorded_configuration_is_the_initial_one_until_a_newer_snapshot() -> None:
    storage = MemoryStorage(ConfState(voters=(1, 2, 3)))
    storage.set_conf_state(ConfState(voters=(1, 2, 3), learners=(4,)), index=5, sync=True)
    assert storage.initial_state()[1] == ConfState(voters=(1, 2, 3), learners=(4,))
    storage.set_conf_state(ConfState(voters=(1, 2)), index=3, sync=True)  # older: ignored
    assert storage.initial_state()[1].learners == (4,)
    storage.set_conf_state(ConfState(voters=(1, 2, 3, 4)), index=8, sync=False)
    storage.crash()  # the unsynced record is gone with the crash
    assert storage.initial_state()[1] == ConfState(voters=(1, 2, 3), learners=(4,))
