"""Raw access to a data directory's LevelDB, below the store: keys and values exactly as
they lie in the files (sealed values with their checksums), no schema or chain check.

For looking at what a node really keeps on disk (the privacy scan of every value) and for
damaging it on purpose (the corruption and compaction tests). The node never uses it;
storage/ stays the only package that imports plyvel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import plyvel

from storage.database import DATABASE_DIRECTORY_NAME
from storage.errors import StorageError


class RawDatabase:
    def __init__(self, db: plyvel.DB) -> None:
        self._db = db

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)

    def keys(self, prefix: bytes = b"") -> list[bytes]:
        return list(self._db.iterator(prefix=prefix, include_value=False))

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """(key, value) in key order; values as LevelDB returns them (decompressed)."""
        yield from self._db.iterator(prefix=prefix)


@contextmanager
def open_raw(data_dir: str | os.PathLike[str], *, create: bool = False) -> Iterator[RawDatabase]:
    """The LevelDB of ``data_dir`` (``<data_dir>/ledger.db``), closed on exit. Fails if a
    node holds it; ``create`` makes an empty one (to plant a foreign database)."""
    path = Path(data_dir) / DATABASE_DIRECTORY_NAME
    try:
        db = plyvel.DB(str(path), create_if_missing=create)
    except plyvel.Error as error:
        raise StorageError(f"cannot open {path} raw: {error}") from None
    try:
        yield RawDatabase(db)
    finally:
        db.close()


def open_plain_leveldb(path: str | os.PathLike[str], options: Any) -> Any:
    """A plain plyvel LevelDB at ``path`` with the store's options (a DatabaseOptions) and
    none of its records or checks: the raw baseline scripts/bench-storage compares the
    store's apply path against. Close it when done."""
    return plyvel.DB(str(path), create_if_missing=True, **options.plyvel_arguments())
