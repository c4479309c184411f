"""Damaged values are never served: every read fails with CorruptionError naming the key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from storage_helpers import (
    SMALL_OPTIONS,
    block_bytes,
    block_hash,
    indexed,
    open_store,
    tx_ids,
)

from consensus.types import ConfState, Entry, EntryType, HardState
from ledger.errors import CorruptionError
from ledger.evaluation import tx_seen_key
from storage import Store, keys
from storage.errors import ValueChecksumError
from storage.raw import open_raw


def populate(path: Path) -> None:
    with open_store(path) as store:
        store.raft.persist(
            hard_state=HardState(2, 1, 3),
            entries=[Entry(2, index, EntryType.NORMAL, b"entry %d" % index) for index in
                     range(1, 6)],
            snapshot=None,
            sync=True,
        )
        store.raft.create_snapshot(2, ConfState(voters=(1, 2, 3)), b"snapshot data")
        for height in range(3):
            store.blocks.apply_block(
                height=height,
                block_hash=block_hash(height),
                block_bytes=block_bytes(height, 10),
                tx_ids=tx_ids(height, 10),
                tx_results=[0] * 10,
                state_writes=indexed(height, tx_ids(height, 10), [0] * 10,
                                     {b"patient/%d" % height: b"consent record %d" % height}),
                applied_index=height + 1,
            )


def flip(path: Path, key: bytes, offset: int = -1) -> None:
    """Flip one bit of the stored value under ``key``, leaving LevelDB's own checksums
    intact (as a bad disk sector under a rewritten block, or a memory error, would)."""
    with open_raw(path) as db:
        stored = db.get(key)
        assert stored is not None, key
        value = bytearray(stored)
        value[offset] ^= 0x01
        db.put(key, bytes(value))


def raw_state_key(app_key: bytes) -> bytes:
    return keys.state_prefix(b"0") + app_key


READS: list[tuple[str, bytes, Callable[[Store], object], str]] = [
    ("block", keys.block_key(1), lambda store: store.blocks.block(1), "block 1"),
    ("block payload", keys.block_key(2), lambda store: store.blocks.blocks(0, 2,
     size_bytes_max=1 << 20), "block 2"),
    ("block hash index", keys.block_hash_key(block_hash(1)),
     lambda store: store.blocks.block_by_hash(block_hash(1)), "block hash 0x"),
    ("tx index", raw_state_key(tx_seen_key(tx_ids(1, 10)[4])),
     lambda store: store.blocks.transaction(tx_ids(1, 10)[4]), "state[0] "),
    ("state", raw_state_key(b"patient/1"), lambda store: store.blocks.state_get(b"patient/1"),
     "state[0] 'patient/1'"),
    ("state page", raw_state_key(b"patient/2"), lambda store: store.blocks.state_page(b"patient/"),
     "state[0] 'patient/2'"),
    ("state digest", raw_state_key(b"patient/0"), lambda store: store.blocks.state_digest(),
     "state[0] 'patient/0'"),
    ("raft entry", keys.entry_key(4), lambda store: store.raft.entries(3, 6, 1 << 20),
     "raft entry 4"),
]


@pytest.mark.parametrize(("name", "key", "read", "named"), READS, ids=[r[0] for r in READS])
def test_flipped_value_is_never_served(
    tmp_path: Path, name: str, key: bytes, read: Callable[[Store], object], named: str
) -> None:
    populate(tmp_path)
    flip(tmp_path, key)
    with open_store(tmp_path) as store:
        with pytest.raises(ValueChecksumError) as caught:
            read(store)
        assert caught.value.key == key
        assert named in str(caught.value)
        assert key.hex() in str(caught.value)


@pytest.mark.parametrize(
    ("key", "named"),
    [
        (keys.META_HEAD_KEY, "meta 'head'"),
        (keys.META_APPLIED_KEY, "meta 'applied'"),
        (keys.META_CHAIN_KEY, "meta 'chain'"),
        (keys.RAFT_HARD_STATE_KEY, "raft hard state"),
        (keys.RAFT_LOG_BOUNDS_KEY, "raft log bounds"),
        (keys.CONF_STATE_KEY, "conf state"),
        (keys.RAFT_SNAPSHOT_KEY, "raft snapshot"),
    ],
)
def test_flipped_record_refuses_open(tmp_path: Path, key: bytes, named: str) -> None:
    populate(tmp_path)
    flip(tmp_path, key, offset=0)  # the checksum itself
    with pytest.raises(CorruptionError, match=named):
        open_store(tmp_path)


def test_truncated_value_is_corruption(tmp_path: Path) -> None:
    populate(tmp_path)
    with open_raw(tmp_path) as db:
        db.put(keys.block_key(0), b"\x00\x01")
    with open_store(tmp_path) as store, pytest.raises(CorruptionError, match="block 0"):
        store.blocks.block(0)


def test_flipped_byte_in_table_file(tmp_path: Path) -> None:
    """Damage a table file on disk (a bad sector): LevelDB's block checksum or ours
    catches it, and the error names the key that was read."""
    marker = b"MEDLEDGER-MARKER-VALUE-" * 40
    options = replace(SMALL_OPTIONS, compression=None)
    with open_store(tmp_path, options=options) as store:
        store.blocks.apply_block(
            height=0, block_hash=block_hash(0), block_bytes=b"genesis", tx_ids=[],
            tx_results=[],
            # Filler keys sort between the meta records and the marker, so the damaged
            # table block holds only state.
            state_writes={b"record/marker": marker,
                          **{b"filler/%03d" % n: b"f" * 200 for n in range(100)}},
            applied_index=1,
        )
        store.database.db.compact_range()  # push everything into table files
    damaged = 0
    for table in (tmp_path / "ledger.db").glob("*.ldb"):
        data = bytearray(table.read_bytes())
        position = data.find(marker)
        if position >= 0:
            data[position + len(marker) // 2] ^= 0x40
            table.write_bytes(bytes(data))
            damaged += 1
    assert damaged == 1
    with open_store(tmp_path, options=options) as store:
        assert store.blocks.state_get(b"filler/000") == b"f" * 200
        with pytest.raises(CorruptionError, match="state\\[0\\] 'record/marker'"):
            store.blocks.state_get(b"record/marker")
