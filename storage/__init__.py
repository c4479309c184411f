"""LevelDB storage: Raft log and hard state, blocks and tx index, application state.

The only package that imports plyvel. Entry point: :class:`storage.store.Store`.
"""

from storage.blockstore import BlockStore, ChainHead, StatePage, StoredBlock, TxLocation
from storage.database import SCHEMA_VERSION, Database, DatabaseOptions
from storage.raftlog import LevelDBRaftStorage
from storage.statesync import StateChunk, StateImport, StateItem
from storage.store import Store

__all__ = [
    "SCHEMA_VERSION",
    "BlockStore",
    "ChainHead",
    "Database",
    "DatabaseOptions",
    "LevelDBRaftStorage",
    "StateChunk",
    "StateImport",
    "StateItem",
    "StatePage",
    "Store",
    "StoredBlock",
    "TxLocation",
]
