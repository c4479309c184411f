"""A disk that fills under LevelDB: the write fails with DiskFullError, the handle takes no
more writes, and a reopen once space has returned keeps every write that returned.

The storage tests mount a small tmpfs (root only; skipped otherwise) and fill it with
another file while LevelDB writes, the way another process fills a shared disk: the
failure lands on a foreground log append or on a background flush, whichever comes
first. The guard tests drive :class:`node.diskfull.DiskFullGuard` with a write that fails
once and check that it waits for the writes in flight, reopens once and retries."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from node.diskfull import DiskFullGuard
from storage.database import DatabaseOptions
from storage.errors import DiskFullError
from storage.store import Store

CHAIN = "disk-full-test"
VALUE_BYTES = 4096


def fill(path: Path) -> int:
    """Write zeros to ``path`` until the file system is full; returns bytes written."""
    written = 0
    with open(path, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
                written += 65536
        except OSError:
            pass
    return written


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                   check=True, timeout=10)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=10)


def put(store: Store, index: int) -> None:
    batch = store.database.batch(sync=False)
    key = b"\x7ftest" + index.to_bytes(8, "big")
    batch.put(key, os.urandom(VALUE_BYTES))  # incompressible: fills the disk for real
    store.database.write(batch, f"test write {index}")


def test_a_failed_write_refuses_more_and_a_reopen_keeps_what_returned(
    small_disk: Path,
) -> None:
    options = DatabaseOptions(write_buffer_bytes=1 << 20, table_file_bytes_max=1 << 20)
    store = Store.open(small_disk / "node", chain_id=CHAIN, options=options)
    try:
        for index in range(100):
            put(store, index)
        # Another process takes all but a little of the disk; LevelDB's log and its
        # flushes run into the end of it.
        ballast = small_disk / "ballast"
        fill(ballast)
        with open(ballast, "r+b") as handle:
            handle.truncate(os.path.getsize(ballast) - (2 << 20))
        returned = 100
        with pytest.raises(DiskFullError):
            for index in range(100, 100_000):
                put(store, index)
                returned = index + 1
        assert store.database.failed_write is not None
        # Nothing more is written through the failed handle, even with space back.
        ballast.unlink()
        with pytest.raises(DiskFullError, match="reopen the database first"):
            put(store, returned)
        store.reopen()
        assert store.database.failed_write is None
        for index in range(returned):
            key = b"\x7ftest" + index.to_bytes(8, "big")
            value = store.database.db.get(key)
            assert value is not None and len(value) == VALUE_BYTES, index
        for index in range(returned, returned + 50):
            put(store, index)
    finally:
        store.close()
    # And the database opens cleanly afterwards (no torn record in the middle of a log).
    reopened = Store.open(small_disk / "node", chain_id=CHAIN, options=options)
    try:
        key = b"\x7ftest" + (returned + 49).to_bytes(8, "big")
        assert reopened.database.db.get(key) is not None
    finally:
        reopened.close()


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def error(self, event: str, **fields: object) -> None:
        self.lines.append(event)

    warning = info = error


def test_the_guard_waits_for_writes_in_flight_reopens_once_and_retries(
    tmp_path: Path,
) -> None:
    log = RecordingLog()
    guard = DiskFullGuard(tmp_path, log, reserve_bytes=0)
    events: list[str] = []
    attempts = {"a": 0, "b": 0}

    def reopen() -> None:
        events.append("reopen")

    guard.reopen = reopen

    def failing_once() -> str:
        attempts["a"] += 1
        if attempts["a"] == 1:
            raise DiskFullError("LevelDB ran out of space while testing")
        events.append("a written")
        return "a"

    def slow_write() -> str:
        import time

        attempts["b"] += 1
        time.sleep(0.3)  # still in flight when the other write fails
        events.append("b written")
        return "b"

    results: list[str] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            async def run(function: object, what: str) -> None:
                results.append(await guard.run_in_thread(function, what=what))  # type: ignore[arg-type]

            nursery.start_soon(run, slow_write, "b")
            await trio.sleep(0.05)
            nursery.start_soon(run, failing_once, "a")

    trio.run(main)
    assert sorted(results) == ["a", "b"]
    assert attempts == {"a": 2, "b": 1}
    # The reopen waited for the write in flight, and the failed write ran after it.
    assert events == ["b written", "reopen", "a written"], events
    assert guard.reopens == 1 and not guard.full
    assert "disk full: a write failed, reopening the database once space returns" in log.lines


def test_without_a_reopen_the_guard_passes_the_error_on(tmp_path: Path) -> None:
    guard = DiskFullGuard(tmp_path, RecordingLog(), reserve_bytes=0)

    def failing() -> None:
        raise DiskFullError("LevelDB ran out of space while testing")

    async def main() -> None:
        await guard.run_in_thread(failing, what="test")

    with pytest.raises(DiskFullError):
        trio.run(main)
