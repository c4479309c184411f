"""Storage's operating errors, under ledger.errors' one root.

Local causes (our disk, our data directory) are :class:`StorageError`s; a stored value that
fails its checksum is a :class:`CorruptionError` and names the key. Bytes a peer sent us
for state sync that do not add up are a :class:`RemoteError`. A block this node pruned on
purpose is a :class:`BlockPrunedError` (our configuration, not damage).
"""

from __future__ import annotations

import re

from ledger.errors import CorruptionError, LocalError, RemoteError, StorageError

__all__ = [
    "BlockConflictError",
    "BlockHashMismatchError",
    "BlockPrunedError",
    "ChainMismatchError",
    "CorruptionError",
    "DataDirectoryInUseError",
    "DiskFullError",
    "ForeignSnapshotError",
    "SchemaMismatchError",
    "SnapshotFileError",
    "StateChunkError",
    "StorageError",
    "ValueChecksumError",
]


class DataDirectoryInUseError(StorageError):
    """Another process (or another open Store in this one) holds the LevelDB lock."""


class DiskFullError(StorageError):
    """A write failed for want of space (ENOSPC, EDQUOT), in the foreground or in a
    LevelDB background flush. Nothing more is written through this handle: the database
    must be reopened (:meth:`storage.store.Store.reopen`) once space has returned, and the
    write retried."""


class SchemaMismatchError(StorageError):
    """The database was written by a different schema version, or is not ours at all."""


class ChainMismatchError(StorageError):
    """The database belongs to a different chain id than the node is configured for."""


class BlockConflictError(StorageError):
    """A different block is already stored at this height: the chain forked under us or
    our data directory is not the one we think it is. Never resolved automatically."""


class ValueChecksumError(CorruptionError):
    """A stored value's checksum does not match: it is never served."""

    def __init__(self, key: bytes, description: str) -> None:
        super().__init__(f"stored value fails its checksum: {description}")
        self.key = key


class BlockHashMismatchError(CorruptionError):
    """A stored block's bytes do not match its hash (the caller's ``verify_block`` said no)."""

    def __init__(self, key: bytes, description: str) -> None:
        super().__init__(f"stored block does not match its hash: {description}")
        self.key = key


class SnapshotFileError(StorageError):
    """A snapshot (backup) file that cannot be used: unreadable, truncated, damaged, of
    another format, or whose state does not add up to its root. The message names the file
    and what is wrong; nothing was restored from it."""


class ForeignSnapshotError(SnapshotFileError):
    """A sound snapshot file of another chain than the genesis file given (the message
    names both chains)."""


class StateChunkError(RemoteError):
    """A state chunk or a state import that fails its checks (order, key range, its
    multiset hash, or the state root the whole must add up to)."""


class BlockPrunedError(LocalError):
    """Block ``height`` (or a range starting at it) lies below the oldest block whose body
    this store holds: it was pruned (``[storage] retain_blocks``). Not damage, and not a
    StorageError: the store is fine, the data was deleted on purpose."""

    def __init__(self, height: int, oldest_height: int) -> None:
        super().__init__(
            f"block {height} is pruned on this node: the oldest block it holds is "
            f"{oldest_height}"
        )
        self.height = height
        self.oldest_height = oldest_height

    @staticmethod
    def oldest_height_in(message: str) -> int | None:
        """The oldest height a BlockPrunedError's message names, wherever it is quoted
        (a peer's sync answer carries it as text), or None."""
        found = _PRUNED_MESSAGE.search(message)
        return None if found is None else int(found[1])


# What BlockPrunedError says, for reading it back out of a peer's answer (at most 20 digits:
# a u64).
_PRUNED_MESSAGE = re.compile(r"is pruned on this node: the oldest block it holds is ([0-9]{1,20})")
