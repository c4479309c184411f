"""The node's one handle on its data directory: the Raft log and the block store over one
LevelDB.

    store = Store.open(data_dir, chain_id="medledger-main", verify_block=ledger_check)
    try:
        hard_state, conf_state = store.raft.initial_state()
        ...
        store.blocks.apply_block(height=..., ...)
    finally:
        store.close()

``Store.open`` raises (all :class:`~ledger.errors.StorageError`):
:class:`~storage.errors.DataDirectoryInUseError` when another process holds the directory,
:class:`~storage.errors.SchemaMismatchError` for another schema version or a foreign
database, :class:`~storage.errors.ChainMismatchError` for another chain id, and
:class:`~ledger.errors.CorruptionError` when a record read at open fails its checksum.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType

from storage.blockstore import BlockStore
from storage.database import Database, DatabaseOptions
from storage.raftlog import LevelDBRaftStorage


class Store:
    def __init__(self, database: Database, raft: LevelDBRaftStorage, blocks: BlockStore) -> None:
        # Use Store.open().
        self.database = database
        self.raft = raft
        self.blocks = blocks

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        chain_id: str,
        verify_block: Callable[[bytes, bytes], bool] | None = None,
        options: DatabaseOptions | None = None,
    ) -> Store:
        """Open (creating if needed) ``<data_dir>/ledger.db``; finishes any interrupted
        garbage collection (compacted Raft entries, an old state generation) first."""
        database = Database.open(data_dir, chain_id=chain_id, options=options)
        try:
            raft = LevelDBRaftStorage(database)
            blocks = BlockStore(database, verify_block=verify_block)
        except BaseException:
            database.close()
            raise
        return cls(database, raft, blocks)

    @property
    def chain_id(self) -> str:
        return self.database.chain_id

    def reopen(self) -> None:
        """Recover from a failed write (:class:`~storage.errors.DiskFullError`): reopen
        LevelDB and reload every cached record. Run it with no write in progress and
        no other write started until it returns; reads on other threads meanwhile fail
        with a StorageError."""
        self.database.reopen()
        self.raft.reload()
        self.blocks.reload()

    def close(self) -> None:
        """Close LevelDB (idempotent). Every write already returned is in LevelDB's log."""
        self.database.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
