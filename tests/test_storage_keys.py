"""Key layout, sealed values, and garbage collection resumed after a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_helpers import block_hash, commitment_entries, open_store

from consensus.types import Entry, EntryType
from storage import keys
from storage.errors import ValueChecksumError
from storage.raw import open_raw
from storage.statesync import StateImport, export_state


def test_integer_keys_sort_numerically() -> None:
    indices = [0, 1, 255, 256, 65_535, 2**40, 2**64 - 1]
    assert sorted(keys.entry_key(index) for index in indices) == [
        keys.entry_key(index) for index in indices
    ]
    assert sorted(keys.block_key(height) for height in indices) == [
        keys.block_key(height) for height in indices
    ]


def test_prefixes_are_distinct_single_bytes() -> None:
    prefixes = [keys.RAFT_PREFIX, keys.ENTRY_PREFIX, keys.BLOCK_PREFIX, keys.BLOCK_HASH_PREFIX,
                keys.STATE_PREFIX, keys.META_PREFIX]
    assert len(set(prefixes)) == len(prefixes)
    assert all(len(prefix) == 1 for prefix in prefixes)


def test_prefix_end() -> None:
    assert keys.prefix_end(b"s0") == b"s1"
    assert keys.prefix_end(b"a\xff") == b"b"
    assert keys.prefix_end(b"\xff\xff") is None


def test_seal_round_trip_and_key_binding() -> None:
    sealed = keys.seal(b"key", b"payload")
    assert keys.unseal(b"key", sealed) == b"payload"
    with pytest.raises(ValueChecksumError):
        keys.unseal(b"other key", sealed)  # a value moved under another key is caught
    with pytest.raises(ValueChecksumError):
        keys.unseal(b"key", b"\x00\x01")


def test_describe_key() -> None:
    assert keys.describe_key(keys.block_key(42)) == "block 42 (key 62000000000000002a)"
    assert keys.describe_key(keys.entry_key(7)).startswith("raft entry 7 ")
    assert keys.describe_key(keys.state_prefix(b"1") + b"consent/abc").startswith(
        "state[1] 'consent/abc'"
    )
    assert "state[0] 0x00ff" in keys.describe_key(keys.state_prefix(b"0") + b"\x00\xff")
    assert keys.describe_key(keys.META_HEAD_KEY).startswith("meta 'head'")


def test_hash_size_matches_ledger() -> None:
    from ledger.crypto import HASH_SIZE

    assert keys.HASH_SIZE == HASH_SIZE


class Crash(Exception):
    pass


def test_interrupted_log_compaction_resumes_on_open(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.raft.persist(
        hard_state=None,
        entries=[Entry(1, index, EntryType.NORMAL, b"x") for index in range(1, 101)],
        snapshot=None,
        sync=True,
    )

    def crash(*args: object) -> int:
        raise Crash

    store.database.clear_range = crash  # type: ignore[method-assign, assignment]
    with pytest.raises(Crash):
        store.raft.compact(90)  # the bounds are written, the deletes never happen
    store.close()
    with open_raw(tmp_path) as raw:
        assert raw.get(keys.entry_key(1)) is not None
    with open_store(tmp_path) as reopened:
        assert reopened.raft.first_index() == 91
    with open_raw(tmp_path) as raw:
        assert raw.keys(keys.ENTRY_PREFIX) == [keys.entry_key(index) for index in range(91, 101)]


def test_interrupted_old_generation_cleanup_resumes_on_open(tmp_path: Path) -> None:
    with open_store(tmp_path / "source") as source:
        state: dict[bytes, bytes | None] = {b"new/%d" % n: b"v" for n in range(10)}
        for height in range(2):
            source.blocks.apply_block(
                height=height, block_hash=block_hash(height), block_bytes=b"b", tx_ids=[],
                tx_results=[], state_writes={**state, **(
                    commitment_entries(state, height) if height else {})},
                applied_index=height + 1,
            )
        chunks = list(export_state(source.blocks, chunk_bytes_max=1 << 20))
    store = open_store(tmp_path / "target")
    store.blocks.apply_block(
        height=0, block_hash=block_hash(0), block_bytes=b"b", tx_ids=[], tx_results=[],
        state_writes={b"old/%d" % n: b"v" for n in range(10)}, applied_index=1,
    )
    old_prefix = keys.state_prefix(store.blocks.live_generation)
    importer = StateImport.begin(store.blocks,
        height=chunks[0].height, block_hash=chunks[0].block_hash,
        applied_index=chunks[0].applied_index,
    )
    for chunk in chunks:
        importer.add_chunk(chunk)

    def crash(generation: bytes) -> None:
        raise Crash

    store.blocks.clear_generation = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        importer.finish()  # switched, but the old generation is still on disk
    store.close()
    with open_raw(tmp_path / "target") as raw:
        assert raw.get(old_prefix + b"old/0") is not None
    with open_store(tmp_path / "target") as reopened:
        assert reopened.blocks.state_get(b"new/3") == b"v"
        assert reopened.blocks.state_get(b"old/3") is None
        assert reopened.blocks.head().height == 1  # type: ignore[union-attr]
    with open_raw(tmp_path / "target") as raw:
        assert raw.keys(old_prefix) == []
