"""LevelDBRaftStorage: etcd MemoryStorage semantics, durability across reopen, and a
randomised comparison against consensus.memory.MemoryStorage."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import open_store

from consensus.memory import MemoryStorage
from consensus.ports import CompactedError, SnapshotOutOfDateError, UnavailableError
from consensus.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMetadata,
)
from storage import Store, keys
from storage.raw import open_raw


def entry(index: int, term: int, data: bytes | None = None) -> Entry:
    return Entry(
        term=term,
        index=index,
        type=EntryType.NORMAL,
        data=data if data is not None else b"entry %d/%d" % (index, term),
    )


def entries(first: int, last: int, term: int) -> list[Entry]:
    return [entry(index, term) for index in range(first, last + 1)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "node") as opened:
        yield opened


def reopen(store: Store, path: Path) -> Store:
    store.close()
    return open_store(path)


def test_empty_log(store: Store) -> None:
    raft = store.raft
    assert raft.initial_state() == (HardState(), ConfState())
    assert raft.first_index() == 1
    assert raft.last_index() == 0
    assert raft.term(0) == 0
    assert raft.snapshot() == Snapshot()
    with pytest.raises(UnavailableError):
        raft.term(1)
    with pytest.raises(UnavailableError):
        raft.entries(1, 2, 100)


def test_append_read_and_size_limit(store: Store) -> None:
    raft = store.raft
    log = entries(1, 10, term=1)
    raft.persist(hard_state=HardState(1, 2, 3), entries=log, snapshot=None, sync=True)
    assert raft.entries(1, 11, 1 << 20) == log
    assert raft.entries(4, 7, 1 << 20) == log[3:6]
    each = len(log[0].data)
    assert raft.entries(1, 11, 3 * each) == log[:3]
    assert raft.entries(1, 11, 3 * each - 1) == log[:2]
    assert raft.entries(1, 11, 0) == log[:1], "always at least one entry"
    with pytest.raises(UnavailableError):
        raft.entries(1, 12, 1 << 20)
    with pytest.raises(CompactedError):
        raft.entries(0, 5, 1 << 20)


def test_conflicting_suffix_is_truncated_and_survives_reopen(store: Store, tmp_path: Path) -> None:
    raft = store.raft
    raft.persist(hard_state=None, entries=entries(1, 10, term=1), snapshot=None, sync=True)
    raft.persist(hard_state=None, entries=entries(6, 7, term=3), snapshot=None, sync=True)
    assert raft.last_index() == 7
    assert [raft.term(index) for index in range(0, 8)] == [0, 1, 1, 1, 1, 1, 3, 3]
    store = reopen(store, tmp_path / "node")
    raft = store.raft
    assert raft.last_index() == 7
    assert [raft.term(index) for index in range(0, 8)] == [0, 1, 1, 1, 1, 1, 3, 3]
    assert raft.entries(1, 8, 1 << 20) == entries(1, 5, 1) + entries(6, 7, 3)
    store.close()
    # Nothing above the last index remains on disk.
    with open_raw(tmp_path / "node") as db:
        assert db.get(keys.entry_key(8)) is None


def test_gap_is_a_programmer_error(store: Store) -> None:
    store.raft.persist(hard_state=None, entries=entries(1, 3, 1), snapshot=None, sync=True)
    with pytest.raises(AssertionError):
        store.raft.persist(hard_state=None, entries=entries(5, 6, 1), snapshot=None, sync=True)


def test_hard_state_survives_reopen(store: Store, tmp_path: Path) -> None:
    store.raft.persist(hard_state=HardState(7, 2, 0), entries=[], snapshot=None, sync=True)
    store = reopen(store, tmp_path / "node")
    assert store.raft.initial_state()[0] == HardState(7, 2, 0)
    store.close()


def test_compact_deletes_entries_and_keeps_term(store: Store, tmp_path: Path) -> None:
    raft = store.raft
    raft.persist(hard_state=None, entries=entries(1, 5, 1) + entries(6, 20, 2), snapshot=None,
                 sync=True)
    raft.create_snapshot(12, ConfState(voters=(1, 2, 3)), b"state at 12")
    raft.compact(12)
    assert raft.first_index() == 13
    assert raft.term(12) == 2
    with pytest.raises(CompactedError):
        raft.term(11)
    with pytest.raises(CompactedError):
        raft.entries(12, 14, 1 << 20)
    raft.compact(10)  # at or below the compaction point: no-op
    assert raft.entries(13, 21, 1 << 20) == entries(13, 20, 2)
    store = reopen(store, tmp_path / "node")
    raft = store.raft
    assert (raft.first_index(), raft.last_index(), raft.term(12)) == (13, 20, 2)
    assert raft.snapshot().metadata == SnapshotMetadata(12, 2, ConfState(voters=(1, 2, 3)))
    assert raft.initial_state()[1] == ConfState(voters=(1, 2, 3))
    store.close()
    with open_raw(tmp_path / "node") as db:
        assert db.keys(keys.ENTRY_PREFIX) == [keys.entry_key(index) for index in range(13, 21)]


def test_compact_everything(store: Store, tmp_path: Path) -> None:
    raft = store.raft
    raft.persist(hard_state=None, entries=entries(1, 5, 2), snapshot=None, sync=True)
    raft.compact(5)
    assert (raft.first_index(), raft.last_index(), raft.term(5)) == (6, 5, 2)
    store = reopen(store, tmp_path / "node")
    assert (store.raft.first_index(), store.raft.last_index(), store.raft.term(5)) == (6, 5, 2)
    store.raft.persist(hard_state=None, entries=entries(6, 7, 3), snapshot=None, sync=True)
    assert store.raft.entries(6, 8, 1 << 20) == entries(6, 7, 3)
    store.close()


def test_large_compaction_runs_in_bounded_batches(store: Store) -> None:
    raft = store.raft
    for first in range(1, 10_001, 1000):
        raft.persist(hard_state=None, entries=entries(first, first + 999, 1), snapshot=None,
                     sync=False)
    raft.compact(9_990)
    assert raft.first_index() == 9_991
    assert raft.entries(9_991, 10_001, 1 << 20) == entries(9_991, 10_000, 1)


def test_install_snapshot_replaces_log(store: Store, tmp_path: Path) -> None:
    raft = store.raft
    raft.persist(hard_state=None, entries=entries(1, 30, 1), snapshot=None, sync=True)
    conf = ConfState(voters=(1, 2), learners=(4,))
    snapshot = Snapshot(SnapshotMetadata(index=20, term=5, conf_state=conf), data=b"app@20")
    raft.persist(hard_state=HardState(5, 0, 20), entries=entries(21, 22, 5), snapshot=snapshot,
                 sync=True)
    assert (raft.first_index(), raft.last_index()) == (21, 22)
    assert raft.term(20) == 5
    assert raft.snapshot() == snapshot
    assert raft.initial_state() == (HardState(5, 0, 20), conf)
    with pytest.raises(SnapshotOutOfDateError):
        raft.persist(
            hard_state=None,
            entries=[],
            snapshot=Snapshot(SnapshotMetadata(index=10, term=1)),
            sync=True,
        )
    store = reopen(store, tmp_path / "node")
    raft = store.raft
    assert (raft.first_index(), raft.last_index(), raft.term(20)) == (21, 22, 5)
    assert raft.entries(21, 23, 1 << 20) == entries(21, 22, 5)
    assert raft.snapshot() == snapshot
    store.close()
    with open_raw(tmp_path / "node") as db:
        assert db.keys(keys.ENTRY_PREFIX) == [keys.entry_key(21), keys.entry_key(22)]


def test_create_snapshot_rules(store: Store) -> None:
    raft = store.raft
    raft.persist(hard_state=None, entries=entries(1, 10, 3), snapshot=None, sync=True)
    snapshot = raft.create_snapshot(8, ConfState(voters=(1,)), b"data")
    assert snapshot.metadata == SnapshotMetadata(8, 3, ConfState(voters=(1,)))
    assert raft.snapshot() == snapshot
    with pytest.raises(SnapshotOutOfDateError):
        raft.create_snapshot(8, ConfState(), b"")
    with pytest.raises(AssertionError):
        raft.create_snapshot(11, ConfState(), b"")


def test_conf_state_newest_index_wins(store: Store, tmp_path: Path) -> None:
    raft = store.raft
    raft.set_conf_state(ConfState(voters=(1, 2, 3)), index=0)  # bootstrap
    assert raft.initial_state()[1] == ConfState(voters=(1, 2, 3))
    raft.persist(hard_state=None, entries=entries(1, 10, 1), snapshot=None, sync=True)
    raft.set_conf_state(ConfState(voters=(1, 2, 3, 4)), index=9)
    # A snapshot at an older index does not roll the configuration back.
    raft.create_snapshot(5, ConfState(voters=(1, 2, 3)), b"")
    assert raft.initial_state()[1] == ConfState(voters=(1, 2, 3, 4))
    store = reopen(store, tmp_path / "node")
    assert store.raft.initial_state()[1] == ConfState(voters=(1, 2, 3, 4))
    store.close()


# ---- randomised comparison with the simulated storage ----


def _random_operations(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    path = tmp_path / f"model-{seed}"
    model = MemoryStorage()
    store = open_store(path)
    term = 1
    try:
        for _ in range(120):
            raft = store.raft
            choice = rng.random()
            last = model.last_index()
            if choice < 0.55:
                # Append, possibly overwriting a suffix from a random point.
                # Never below the snapshot: snapshots cover committed entries only.
                floor = max(model.first_index(), model.snapshot().metadata.index + 1, last - 5)
                first_new = rng.randint(min(floor, last + 1), last + 1)
                if rng.random() < 0.3:
                    term += 1
                count = rng.randint(1, 8)
                new = [
                    entry(index, term, bytes([rng.randrange(256)]) * rng.randint(0, 40))
                    for index in range(first_new, first_new + count)
                ]
                hard_state = HardState(term, rng.randint(0, 3), rng.randint(0, first_new))
                for storage in (model, raft):
                    storage.persist(hard_state=hard_state, entries=new, snapshot=None, sync=True)
            elif choice < 0.65 and last >= model.first_index():
                index = rng.randint(model.first_index(), last)
                if index > model.snapshot().metadata.index:
                    conf = ConfState(voters=tuple(range(1, rng.randint(2, 5))))
                    for storage in (model, raft):
                        storage.create_snapshot(index, conf, b"snap %d" % index)
            elif choice < 0.75:
                index = rng.randint(model.first_index() - 1, model.snapshot().metadata.index)
                if index >= model.first_index() - 1:
                    model.compact(index)
                    raft.compact(index)
            elif choice < 0.82:
                index = rng.randint(model.snapshot().metadata.index + 1, last + 10)
                term += 1
                snapshot = Snapshot(
                    SnapshotMetadata(index, term, ConfState(voters=(1, 2, 3))), b"remote"
                )
                for storage in (model, raft):
                    storage.persist(hard_state=HardState(term, 0, index), entries=[],
                                    snapshot=snapshot, sync=True)
            else:
                store.close()
                store = open_store(path)
                raft = store.raft
            _compare(model, store)
    finally:
        store.close()


def _compare(model: MemoryStorage, store: Store) -> None:
    raft = store.raft
    assert raft.first_index() == model.first_index()
    assert raft.last_index() == model.last_index()
    assert raft.initial_state()[0] == model.initial_state()[0]
    assert raft.snapshot() == model.snapshot()
    for index in range(model.first_index() - 1, model.last_index() + 1):
        assert raft.term(index) == model.term(index)
    if model.last_index() >= model.first_index():
        low, high = model.first_index(), model.last_index() + 1
        assert raft.entries(low, high, 1 << 30) == model.entries(low, high, 1 << 30)
        assert raft.entries(low, high, 50) == model.entries(low, high, 50)


@pytest.mark.parametrize("seed", range(12))
def test_matches_memory_storage(seed: int, tmp_path: Path) -> None:
    _random_operations(seed, tmp_path)


# ---- a writer thread racing the RawNode's reads ----


def test_reads_race_a_writer_thread_without_false_corruption(tmp_path: Path) -> None:
    """The node persists and compacts in a worker thread while the RawNode reads on its
    own: reads must see a consistent log (or Compacted/Unavailable), never a spurious
    CorruptionError."""
    import threading
    import time

    store = open_store(tmp_path / "node")
    raft = store.raft
    raft.persist(hard_state=None, entries=entries(1, 50, 1), snapshot=None, sync=False)
    stop = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        rng = random.Random(7)
        term = 1
        try:
            while not stop.is_set():
                last = raft.last_index()
                if rng.random() < 0.2:
                    term += 1
                    first_new = max(raft.first_index(), last - 3)
                else:
                    first_new = last + 1
                raft.persist(hard_state=None, entries=entries(first_new, first_new + 9, term),
                             snapshot=None, sync=False)
                if rng.random() < 0.1:
                    raft.compact(max(raft.first_index(), raft.last_index() - 40))
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    deadline = time.monotonic() + 1.5
    rng = random.Random(3)
    try:
        while time.monotonic() < deadline:
            bounds = raft.bounds
            if bounds.last <= bounds.start + 1:
                continue
            low = rng.randint(bounds.start + 1, bounds.last)
            high = rng.randint(low + 1, bounds.last + 1)
            try:
                got = raft.entries(low, high, 1 << 20)
            except (CompactedError, UnavailableError):
                continue
            assert [e.index for e in got] == list(range(low, low + len(got)))
            for e in got:
                assert e.data == b"entry %d/%d" % (e.index, e.term)
            assert [e.term for e in got] == sorted(e.term for e in got)
            reads += 1
    finally:
        stop.set()
        writer.join(timeout=30)
        store.close()
    assert not failures, failures
    assert reads > 100
