"""Shared helpers for the storage tests (tests/test_storage_*.py)."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

from ledger.commitment import accumulator_of, encode_accumulator, state_root_of
from ledger.evaluation import ACCUMULATOR_KEY, Roots, roots_key, tx_index_writes
from storage import DatabaseOptions, Store

CHAIN_ID = "medledger-test"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Small LevelDB buffers so tests reach table files and compactions quickly.
SMALL_OPTIONS = DatabaseOptions(
    write_buffer_bytes=256 * 1024,
    table_file_bytes_max=512 * 1024,
    read_cache_bytes=1024 * 1024,
)


def open_store(path: Path, **kwargs: object) -> Store:
    kwargs.setdefault("chain_id", CHAIN_ID)
    kwargs.setdefault("options", SMALL_OPTIONS)
    return Store.open(path, **kwargs)  # type: ignore[arg-type]


def block_hash(height: int) -> bytes:
    return hashlib.sha256(b"block %d" % height).digest()


def tx_id(height: int, position: int) -> bytes:
    return hashlib.sha256(struct.pack(">QI", height, position)).digest()


def tx_ids(height: int, count: int) -> list[bytes]:
    return [tx_id(height, position) for position in range(count)]


def indexed(height: int, ids: list[bytes], results: list[int],
            writes: dict[bytes, bytes | None] | None = None) -> dict[bytes, bytes | None]:
    """``writes`` with the tx index entries the chain writes with a block's state."""
    return {**(writes or {}), **tx_index_writes(height, ids, results)}


def commitment_entries(items: dict[bytes, bytes | None], height: int,
                       results_root: bytes = bytes(range(32))) -> dict[bytes, bytes | None]:
    """The node's entries that make ``items`` (the whole state, None: absent) a state a
    chain could hold at ``height``: its accumulator and its roots, as evaluate_block
    writes them."""
    accumulator = accumulator_of((key, value) for key, value in items.items()
                                 if value is not None)
    roots = Roots(results_root, state_root_of(accumulator))
    return {ACCUMULATOR_KEY: encode_accumulator(accumulator), roots_key(height): roots.encode()}


def block_bytes(height: int, txs: int, tx_bytes: int = 40) -> bytes:
    """Deterministic block content for ``height``: checkable after a crash."""
    seed = hashlib.sha256(b"content %d" % height).digest()
    body = (seed * (tx_bytes * txs // len(seed) + 1))[: tx_bytes * txs]
    return struct.pack(">QI", height, txs) + body


def subprocess_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), str(REPO_ROOT / "tests"), environment.get("PYTHONPATH", "")]
    )
    return environment
