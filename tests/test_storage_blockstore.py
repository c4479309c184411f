"""BlockStore: atomic apply, idempotent re-apply, reads, tx index, state pages, digest."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import block_bytes, block_hash, indexed, open_store, tx_ids

from consensus.types import ConfState
from storage import ChainHead, Store, StoredBlock, TxLocation
from storage.blockstore import GENESIS_HEIGHT, RANGE_BLOCKS_MAX
from storage.errors import BlockConflictError, BlockHashMismatchError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "node") as opened:
        yield opened


def apply(store: Store, height: int, *, txs: int = 3, writes: dict[bytes, bytes | None] | None
          = None, applied_index: int | None = None, **kwargs: object) -> bool:
    return store.blocks.apply_block(
        height=height,
        block_hash=block_hash(height),
        block_bytes=block_bytes(height, txs),
        tx_ids=tx_ids(height, txs),
        tx_results=[position % 3 for position in range(txs)],
        state_writes=indexed(height, tx_ids(height, txs),
                             [position % 3 for position in range(txs)],
                             writes if writes is not None else {b"height": b"%d" % height}),
        applied_index=applied_index if applied_index is not None else height + 1,
        **kwargs,  # type: ignore[arg-type]
    )


def test_apply_and_read_back(store: Store, tmp_path: Path) -> None:
    blocks = store.blocks
    assert blocks.head() is None
    assert blocks.applied_index() == 0
    assert blocks.chain_id == "medledger-test"
    for height in range(GENESIS_HEIGHT, 5):
        assert apply(store, height)
    assert blocks.head() == ChainHead(4, block_hash(4))
    assert blocks.applied_index() == 5
    assert blocks.block(2) == StoredBlock(2, block_hash(2), block_bytes(2, 3))
    assert blocks.block(5) is None
    assert blocks.block_by_hash(block_hash(3)) == blocks.block(3)
    assert blocks.block_by_hash(block_hash(99)) is None
    assert blocks.transaction(tx_ids(3, 3)[2]) == TxLocation(3, 2, 2)
    assert blocks.transaction(hashlib.sha256(b"nope").digest()) is None
    location, block = blocks.transaction_block(tx_ids(1, 3)[1])  # type: ignore[misc]
    assert (location, block.height) == (TxLocation(1, 1, 1), 1)
    assert blocks.state_get(b"height") == b"4"
    store.close()
    with open_store(tmp_path / "node") as reopened:
        assert reopened.blocks.head() == ChainHead(4, block_hash(4))
        assert reopened.blocks.applied_index() == 5
        assert reopened.blocks.state_get(b"height") == b"4"


def test_reapply_is_idempotent_and_conflict_refused(store: Store) -> None:
    for height in range(3):
        apply(store, height)
    digest = store.blocks.state_digest()
    assert apply(store, 1, writes={b"other": b"x"}, applied_index=2) is False
    assert store.blocks.state_digest() == digest, "re-apply wrote nothing"
    with pytest.raises(BlockConflictError, match="block 1 is already stored"):
        store.blocks.apply_block(
            height=1, block_hash=block_hash(77), block_bytes=b"fork", tx_ids=[],
            tx_results=[], state_writes={}, applied_index=2,
        )


def test_gaps_and_stale_applied_index_are_programmer_errors(store: Store) -> None:
    with pytest.raises(AssertionError):
        apply(store, 1)  # genesis first
    apply(store, 0)
    with pytest.raises(AssertionError):
        apply(store, 2)
    with pytest.raises(AssertionError):
        apply(store, 1, applied_index=1)  # applied index must advance
    assert store.blocks.head() == ChainHead(0, block_hash(0))


def test_state_writes_and_deletes(store: Store) -> None:
    apply(store, 0, writes={b"a": b"1", b"b": b"2", b"c": b"3"})
    apply(store, 1, writes={b"b": None, b"c": b"33", b"d": b""})
    blocks = store.blocks
    assert [blocks.state_get(key) for key in (b"a", b"b", b"c", b"d")] == [
        b"1", None, b"33", b""
    ]


def test_record_applied_index_and_conf_state(store: Store, tmp_path: Path) -> None:
    apply(store, 0, applied_index=3)
    assert store.blocks.record_applied_index(4)
    assert store.blocks.record_applied_index(4) is False
    conf = ConfState(voters=(1, 2, 3), learners=(9,))
    assert store.blocks.record_applied_index(5, conf_state=conf)
    assert store.raft.initial_state()[1] == conf
    conf2 = ConfState(voters=(1, 2))
    apply(store, 1, applied_index=6, conf_state=conf2)
    store.close()
    with open_store(tmp_path / "node") as reopened:
        assert reopened.blocks.applied_index() == 6
        assert reopened.raft.initial_state()[1] == conf2
        assert reopened.database.conf_index == 6


def test_block_ranges(store: Store) -> None:
    for height in range(10):
        apply(store, height, txs=10)
    size = len(block_bytes(0, 10))
    blocks = store.blocks
    assert [b.height for b in blocks.blocks(2, 6, size_bytes_max=1 << 20)] == [2, 3, 4, 5, 6]
    assert [b.height for b in blocks.blocks(2, 6, size_bytes_max=2 * size)] == [2, 3]
    assert [b.height for b in blocks.blocks(2, 6, size_bytes_max=1)] == [2], "at least one"
    assert [b.height for b in blocks.blocks(8, 20, size_bytes_max=1 << 20)] == [8, 9]
    assert blocks.blocks(10, 20, size_bytes_max=1 << 20) == []
    assert RANGE_BLOCKS_MAX >= 10


def test_duplicate_tx_id_first_occurrence_wins(store: Store) -> None:
    duplicate = tx_ids(0, 1)[0]
    store.blocks.apply_block(
        height=0, block_hash=block_hash(0), block_bytes=b"0", tx_ids=[duplicate, duplicate],
        tx_results=[0, 6], state_writes=indexed(0, [duplicate, duplicate], [0, 6]),
        applied_index=1,
    )
    assert store.blocks.transaction(duplicate) == TxLocation(0, 0, 0)


def test_verify_block_hook(tmp_path: Path) -> None:
    calls: list[bytes] = []

    def verify(hash_: bytes, data: bytes) -> bool:
        calls.append(hash_)
        return data != b"tampered"

    with open_store(tmp_path / "node", verify_block=verify) as store:
        store.blocks.apply_block(
            height=0, block_hash=block_hash(0), block_bytes=b"fine", tx_ids=[], tx_results=[],
            state_writes={}, applied_index=1,
        )
        store.blocks.apply_block(
            height=1, block_hash=block_hash(1), block_bytes=b"tampered", tx_ids=[],
            tx_results=[], state_writes={}, applied_index=2,
        )
        assert store.blocks.block(0) is not None
        with pytest.raises(BlockHashMismatchError, match="block 1"):
            store.blocks.block(1)
        with pytest.raises(BlockHashMismatchError):
            store.blocks.blocks(0, 1, size_bytes_max=1 << 20)
        assert calls


def test_state_pages(store: Store) -> None:
    writes: dict[bytes, bytes | None] = {b"acct/%03d" % n: b"v%d" % n for n in range(50)}
    writes.update({b"consent/%03d" % n: b"c" * 100 for n in range(20)})
    apply(store, 0, writes=writes)
    blocks = store.blocks
    page = blocks.state_page(b"acct/", items_max=20)
    assert [key for key, _ in page.items] == [b"acct/%03d" % n for n in range(20)]
    assert page.next_key == b"acct/020"
    collected = list(page.items)
    while page.next_key is not None:
        page = blocks.state_page(b"acct/", start=page.next_key, items_max=20)
        collected += page.items
    assert collected == [(b"acct/%03d" % n, b"v%d" % n) for n in range(50)]
    page = blocks.state_page(b"consent/", size_bytes_max=350)
    assert len(page.items) == 3
    page = blocks.state_page(b"consent/", size_bytes_max=1)
    assert len(page.items) == 1, "at least one"
    assert blocks.state_page(b"zzz").items == []


def test_state_digest_is_order_and_history_independent(tmp_path: Path) -> None:
    with open_store(tmp_path / "one") as one, open_store(tmp_path / "two") as two:
        apply(one, 0, writes={b"a": b"1", b"b": b"2"})
        apply(one, 1, writes={b"c": b"3", b"a": None})
        apply(two, 0, writes={b"c": b"3", b"b": b"2", b"x": b"9"})
        apply(two, 1, writes={b"x": None})
        assert one.blocks.state_digest() == two.blocks.state_digest()
        apply(two, 2, writes={b"b": b"22"})
        assert one.blocks.state_digest() != two.blocks.state_digest()


def test_genesis_record_at_applied_index_zero(store: Store) -> None:
    """The node applies its genesis record (height 0) before any Raft entry exists."""
    assert apply(store, 0, applied_index=0)
    assert store.blocks.applied_index() == 0
    assert store.blocks.head() == ChainHead(0, block_hash(0))
    with pytest.raises(AssertionError):
        apply(store, 1, applied_index=0)
    assert apply(store, 1, applied_index=1)
