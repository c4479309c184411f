"""State export / import in bounded chunks, atomic swap, interrupted imports."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import block_hash, commitment_entries, open_store

from ledger.codec import decode
from ledger.commitment import (
    accumulator_of,
    combine,
    decode_accumulator,
    encode_accumulator,
    state_root_of,
)
from ledger.evaluation import Roots, roots_key
from storage import StateChunk, Store, keys
from storage.errors import StateChunkError
from storage.raw import open_raw
from storage.statesync import (
    STATE_CHUNK_ITEMS_MAX,
    ManifestPage,
    StateImport,
    StateSnapshot,
    export_chunks,
    export_state,
    interrupted_import,
    make_manifest,
    manifest_from_pages,
    verify_manifest,
)


def fill(store: Store, count: int, value_bytes: int = 50) -> None:
    writes: dict[bytes, bytes | None] = {
        b"key/%06d" % n: (b"%06d" % n) * (value_bytes // 6 + 1) for n in range(count)
    }
    store.blocks.apply_block(
        height=0, block_hash=block_hash(0), block_bytes=b"genesis", tx_ids=[], tx_results=[],
        state_writes=writes, applied_index=1,
    )
    final = {key: value for key, value in writes.items() if key != b"key/000000"}
    final[b"late"] = b"value"
    store.blocks.apply_block(
        height=1, block_hash=block_hash(1), block_bytes=b"one", tx_ids=[], tx_results=[],
        state_writes={b"key/000000": None, b"late": b"value", **committed(final, 1)},
        applied_index=4,
    )


def committed(items: dict[bytes, bytes | None], height: int) -> dict[bytes, bytes | None]:
    return commitment_entries(items, height, RESULTS_ROOT)


RESULTS_ROOT = bytes(range(32))


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "source") as store:
        fill(store, 3000)
        yield store


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "target") as store:
        yield store


def begin(target: Store, chunk: StateChunk):  # type: ignore[no-untyped-def]
    return StateImport.begin(target.blocks,
        height=chunk.height, block_hash=chunk.block_hash, applied_index=chunk.applied_index
    )


def test_export_chunks_are_bounded_and_add_up_to_the_state_root(source: Store) -> None:
    chunks = list(export_state(source.blocks, chunk_bytes_max=8 * 1024))
    assert len(chunks) > 10
    for chunk in chunks:
        size = sum(len(item.key) + len(item.value) for item in chunk.items)
        assert size <= 8 * 1024
        assert len(chunk.items) <= STATE_CHUNK_ITEMS_MAX
        assert (chunk.height, chunk.applied_index) == (1, 4)
    assert chunks[-1].done and not any(chunk.done for chunk in chunks[:-1])
    total = combine(decode_accumulator(chunk.accumulator) for chunk in chunks)
    assert state_root_of(total) == source_root(source)
    assert sum(len(chunk.items) for chunk in chunks) == 3000 + 2  # with the node's entries
    # Chunks are codec structs: they survive the wire unchanged.
    for chunk in chunks[:3]:
        assert decode(StateChunk, chunk.encode(), size_bytes_max=1 << 20) == chunk


def test_export_is_one_consistent_view(source: Store) -> None:
    exporter = export_state(source.blocks, chunk_bytes_max=4096)
    first = next(exporter)
    source.blocks.apply_block(
        height=2, block_hash=block_hash(2), block_bytes=b"two", tx_ids=[], tx_results=[],
        state_writes={b"key/002999": b"changed", b"aaa": b"new"}, applied_index=5,
    )
    rest = list(exporter)
    items = dict(item for chunk in [first, *rest] for item in
                 ((entry.key, entry.value) for entry in chunk.items))
    assert b"aaa" not in items
    assert items[b"key/002999"] != b"changed"
    assert rest[-1].height == 1


def test_import_round_trip(source: Store, target: Store, tmp_path: Path) -> None:
    chunks = list(export_state(source.blocks, chunk_bytes_max=16 * 1024))
    importer = begin(target, chunks[0])
    for chunk in chunks:
        importer.add_chunk(chunk)
    root = importer.finish(expected_state_root=source_root(source))
    assert root == source_root(source)
    assert target.blocks.state_digest() == source.blocks.state_digest()
    assert target.blocks.head() == source.blocks.head()
    assert target.blocks.applied_index() == 4
    assert target.blocks.state_get(b"late") == b"value"
    # The chain continues from the imported height.
    target.blocks.apply_block(
        height=2, block_hash=block_hash(2), block_bytes=b"two", tx_ids=[], tx_results=[],
        state_writes={b"after": b"import"}, applied_index=5,
    )
    target.close()
    with open_store(tmp_path / "target") as reopened:
        assert reopened.blocks.state_get(b"after") == b"import"
        assert reopened.blocks.state_get(b"key/000001") == source.blocks.state_get(b"key/000001")
        assert interrupted_import(reopened.blocks) is None


def test_import_replaces_existing_state_and_clears_old_generation(
    source: Store, tmp_path: Path
) -> None:
    path = tmp_path / "stale"
    with open_store(path) as stale:
        stale.blocks.apply_block(
            height=0, block_hash=block_hash(0), block_bytes=b"genesis", tx_ids=[],
            tx_results=[], state_writes={b"only-here": b"x", b"key/000005": b"old"},
            applied_index=1,
        )
        chunks = list(export_state(source.blocks, chunk_bytes_max=64 * 1024))
        importer = begin(stale, chunks[0])
        for chunk in chunks:
            importer.add_chunk(chunk)
        importer.finish()
        assert stale.blocks.state_get(b"only-here") is None
        assert stale.blocks.state_digest() == source.blocks.state_digest()
    with open_raw(path) as db:
        assert db.keys(keys.state_prefix(b"0")) == []


def test_bad_chunks_are_refused(source: Store, target: Store) -> None:
    chunks = list(export_state(source.blocks, chunk_bytes_max=16 * 1024))
    importer = begin(target, chunks[0])
    with pytest.raises(StateChunkError, match="expected chunk 0"):
        importer.add_chunk(chunks[1])
    tampered_item = dataclasses.replace(chunks[0].items[3], value=b"evil")
    tampered = dataclasses.replace(
        chunks[0], items=(*chunks[0].items[:3], tampered_item, *chunks[0].items[4:])
    )
    with pytest.raises(StateChunkError, match="does not match its items"):
        importer.add_chunk(tampered)
    # A liar who also recomputes the chunk's hash is caught by the manifest's (or, with
    # no manifest, by the state root at the end: test_a_consistent_lie_fails_the_root).
    recomputed = dataclasses.replace(tampered, accumulator=encode_accumulator(accumulator_of(
        (item.key, item.value) for item in tampered.items)))
    with pytest.raises(StateChunkError, match="not the manifest's"):
        importer.add_chunk(recomputed, expected_accumulator=chunks[0].accumulator)
    with pytest.raises(StateChunkError, match="not in strictly increasing order"):
        importer.add_chunk(dataclasses.replace(chunks[0], items=chunks[0].items[::-1]))
    with pytest.raises(StateChunkError, match="height"):
        importer.add_chunk(dataclasses.replace(chunks[0], height=7))
    importer.add_chunk(chunks[0])
    with pytest.raises(StateChunkError, match="incomplete"):
        importer.finish()
    for chunk in chunks[1:]:
        importer.add_chunk(chunk)
    with pytest.raises(StateChunkError, match="not the expected"):
        importer.finish(expected_state_root=bytes(32))
    assert target.blocks.head() is None, "nothing switched"
    importer.finish()
    assert target.blocks.state_digest() == source.blocks.state_digest()


def test_a_consistent_lie_fails_the_root(source: Store, target: Store) -> None:
    """A peer that alters an item and recomputes that chunk's hash: the sum no longer
    matches the root the state holds for its height (nor a trusted header's)."""
    chunks = list(export_state(source.blocks, chunk_bytes_max=16 * 1024))
    first = chunks[0]
    items = (*first.items[:3], dataclasses.replace(first.items[3], value=b"evil"),
             *first.items[4:])
    lie = dataclasses.replace(first, items=items, accumulator=encode_accumulator(
        accumulator_of((item.key, item.value) for item in items)))
    importer = begin(target, first)
    importer.add_chunk(lie)
    for chunk in chunks[1:]:
        importer.add_chunk(chunk)
    with pytest.raises(StateChunkError, match="is not the one it holds"):
        importer.finish()
    assert target.blocks.head() is None, "nothing switched"


def test_interrupted_import_is_detected_and_restartable(source: Store, tmp_path: Path) -> None:
    path = tmp_path / "target"
    chunks = list(export_state(source.blocks, chunk_bytes_max=16 * 1024))
    store = open_store(path)
    importer = begin(store, chunks[0])
    for chunk in chunks[:3]:
        importer.add_chunk(chunk)
    store.close()  # as good as a crash: the marker and staged chunks are on disk
    store = open_store(path)
    try:
        assert interrupted_import(store.blocks) == (1, block_hash(1), 4, 3)
        assert store.blocks.head() is None
        assert store.blocks.state_digest() == keys_empty_digest(store)
        importer = begin(store, chunks[0])
        for chunk in chunks:
            importer.add_chunk(chunk)
        importer.finish()
        assert interrupted_import(store.blocks) is None
        assert store.blocks.state_digest() == source.blocks.state_digest()
    finally:
        store.close()


def test_abort_leaves_live_state(source: Store, target: Store) -> None:
    target.blocks.apply_block(
        height=0, block_hash=block_hash(0), block_bytes=b"g", tx_ids=[], tx_results=[],
        state_writes={b"mine": b"1"}, applied_index=1,
    )
    digest = target.blocks.state_digest()
    chunks = list(export_state(source.blocks, chunk_bytes_max=16 * 1024))
    importer = begin(target, chunks[0])
    importer.add_chunk(chunks[0])
    importer.abort()
    assert interrupted_import(target.blocks) is None
    assert target.blocks.state_digest() == digest


def source_root(store: Store) -> bytes:
    data = store.blocks.state_get(roots_key(1))
    assert data is not None
    return Roots.decode(data).state_root


def keys_empty_digest(store: Store) -> bytes:
    from ledger.app.machine import state_digest

    return state_digest([])


def test_a_manifest_checks_every_chunk_alone_and_adds_up_to_the_root(source: Store) -> None:
    snapshot = StateSnapshot(source.blocks)
    try:
        whole = list(export_chunks(snapshot, 4096))
        manifest = make_manifest(snapshot, 4096)
        assert len(manifest.start_keys) == len(whole) > 10
        verify_manifest(manifest, source_root(source))
        # Any chunk can be served alone, from its manifest entry, equal to the whole run's.
        for sequence in (0, 5, len(whole) - 1):
            alone = next(export_chunks(snapshot, 4096, start_key=manifest.start_keys[sequence],
                                       first_sequence=sequence))
            assert alone == whole[sequence]
            assert alone.accumulator == manifest.accumulators[sequence]
        # Pages travel as codec structs and join back into the same manifest.
        pages = [decode(ManifestPage, page.encode(), size_bytes_max=1 << 22)
                 for page in manifest.pages()]
        assert manifest_from_pages(pages) == manifest
        # A manifest that lies about one chunk no longer adds up.
        lying = dataclasses.replace(manifest, accumulators=(
            whole[1].accumulator, *manifest.accumulators[1:]))
        with pytest.raises(StateChunkError, match="does not add up"):
            verify_manifest(lying, source_root(source))
        with pytest.raises(StateChunkError, match="increasing"):
            manifest_from_pages([dataclasses.replace(
                pages[0], start_keys=(b"", b"z", *pages[0].start_keys[2:]))])
    finally:
        snapshot.close()


def test_a_node_that_was_behind_deletes_the_blocks_below_the_imported_state(
    tmp_path: Path,
) -> None:
    """A validator far behind imports a state above its own head: the blocks it held are
    below the new oldest block, with a gap above them. They are deleted in bounded
    batches; the genesis record and the imported head block stay."""

    def chain_to(store: Store, height: int, final: dict[bytes, bytes]) -> None:
        for number in range(height + 1):
            writes: dict[bytes, bytes | None] = {}
            if number == height:
                writes = {**final, **committed(dict(final), height)}
            store.blocks.apply_block(
                height=number, block_hash=block_hash(number), block_bytes=b"block %d" % number,
                tx_ids=[], tx_results=[], state_writes=writes, applied_index=number + 1)

    with open_store(tmp_path / "source") as source, open_store(tmp_path / "behind") as behind:
        chain_to(source, 8, {b"k": b"v"})
        chain_to(behind, 5, {b"old": b"state"})
        chunks = list(export_state(source.blocks, chunk_bytes_max=16 * 1024))
        importer = begin(behind, chunks[0])
        for chunk in chunks:
            importer.add_chunk(chunk)
        roots = source.blocks.state_get(roots_key(8))
        assert roots is not None
        importer.finish(expected_state_root=Roots.decode(roots).state_root)
        behind.blocks.store_imported_head_block(8, block_hash(8), b"block 8")
        assert behind.blocks.oldest_held_height() == 8
        batches = []
        while deleted := behind.blocks.delete_blocks_below_oldest(blocks_max=2):
            batches.append(deleted)
        assert batches == [2, 2, 1]
        assert behind.blocks.state_get(b"k") == b"v" and behind.blocks.state_get(b"old") is None
    with open_raw(tmp_path / "behind") as db:
        prefix = keys.block_key(0)[:1]
        held = sorted(int(keys.U64.unpack_from(key, 1)[0]) for key in db.keys(prefix)
                      if len(key) == len(keys.block_key(0)))
        assert held == [0, 8]
