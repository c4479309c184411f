"""Opening a data directory: creation, schema and chain-id checks, the LevelDB lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from storage_helpers import CHAIN_ID, REPO_ROOT, open_store, subprocess_environment

from ledger.errors import StorageError
from storage import SCHEMA_VERSION, keys
from storage.errors import (
    ChainMismatchError,
    DataDirectoryInUseError,
    SchemaMismatchError,
)
from storage.raw import open_raw


def test_creates_directory_and_records_schema_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b"
    with open_store(path) as store:
        assert store.chain_id == CHAIN_ID
    assert (path / "ledger.db").is_dir()
    with open_raw(path) as db:
        schema = keys.unseal(keys.META_SCHEMA_KEY, db.get(keys.META_SCHEMA_KEY))
        assert keys.U32.unpack(schema)[0] == SCHEMA_VERSION
        assert keys.unseal(keys.META_CHAIN_KEY, db.get(keys.META_CHAIN_KEY)) == CHAIN_ID.encode()


def test_other_chain_id_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    with pytest.raises(ChainMismatchError, match="belongs to chain 'medledger-test', not 'other'"):
        open_store(tmp_path, chain_id="other")
    open_store(tmp_path).close()  # the refusal released the lock


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    with open_raw(tmp_path) as db:
        db.put(keys.META_SCHEMA_KEY,
               keys.seal(keys.META_SCHEMA_KEY, keys.pack_u32(SCHEMA_VERSION + 1)))
    with pytest.raises(SchemaMismatchError, match=f"schema version {SCHEMA_VERSION + 1}"):
        open_store(tmp_path)


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    with open_raw(tmp_path, create=True) as db:
        db.put(b"someone", b"else's data")
    with pytest.raises(SchemaMismatchError, match="not a medledger database"):
        open_store(tmp_path)


def test_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="cannot create data directory"):
        open_store(tmp_path / "file")


def test_second_open_in_same_process_is_refused(tmp_path: Path) -> None:
    with open_store(tmp_path), pytest.raises(DataDirectoryInUseError, match="in use"):
        open_store(tmp_path)


def test_directory_held_by_another_process_is_refused(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tests" / "storage_lock_holder.py"), str(tmp_path),
         CHAIN_ID],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=subprocess_environment(),
        cwd=REPO_ROOT,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"ready\n"
        with pytest.raises(DataDirectoryInUseError) as caught:
            open_store(tmp_path)
        message = str(caught.value)
        assert f"data directory {tmp_path} is in use by another process" in message
        assert "LevelDB lock held" in message
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    open_store(tmp_path).close()  # free again once the holder exits
