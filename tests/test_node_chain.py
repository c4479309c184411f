"""node.chain.Chain on a real store: the leader's proposal commits to the roots of the
height it names, even when the apply thread moves the head while the block is built."""

from __future__ import annotations

import time
from pathlib import Path

from consensus.types import Entry, EntryType
from ledger.block import decode_block
from ledger.crypto import SigningKey
from ledger.sdk.devnet import devnet_genesis
from node.bootstrap import write_genesis_record
from node.chain import Chain, Roots
from storage.store import Store

CHAIN_ID = "medledger-chain-unit"
# The genesis time a devnet takes: now.
GENESIS_TIME_MS = int(time.time() * 1000)
KEYS = [SigningKey(bytes([index + 1]) * 32) for index in range(3)]


def _chain(tmp_path: Path) -> Chain:
    genesis = devnet_genesis(CHAIN_ID, [key.public_key for key in KEYS],
                             genesis_time_ms=GENESIS_TIME_MS)
    store = Store.open(tmp_path / "data", chain_id=CHAIN_ID)
    write_genesis_record(store, genesis)
    return Chain(chain_id=CHAIN_ID, store=store, genesis_time_ms=genesis.genesis_time_ms,
                 sync_applies=False)


def _build(chain: Chain, index: int) -> bytes:
    height, head_hash, timestamp_ms = chain.head()
    block = chain.build_block(KEYS[0], [], height=height + 1, previous_hash=head_hash,
                              previous_timestamp_ms=timestamp_ms, now_ms=timestamp_ms + 1,
                              raft_term=1, raft_index=index,
        previous_state_height=chain.named_state_height(),
        validators_hash=chain.head_validator_sets()[1], certificate=chain.certify_head(KEYS))
    return block.encode()


def test_a_head_that_moves_during_building_does_not_split_height_and_roots(
    tmp_path: Path,
) -> None:
    chain = _chain(tmp_path)
    for index in (1, 2):
        result = chain.apply_entry(Entry(1, index, EntryType.NORMAL, _build(chain, index)))
        assert result.applied is not None, result
    assert chain.height == 2
    roots_of_2 = chain.roots(2)
    original_roots = chain.roots
    moved: list[int] = []

    def roots_then_the_apply_thread_moves_the_head(height: int) -> Roots:
        answer = original_roots(height)
        if not moved:  # as if block 3 were applied right after this read
            moved.append(height)
            _, head_hash, timestamp_ms = chain.head()
            chain._head = (3, head_hash, timestamp_ms)
        return answer

    chain.roots = roots_then_the_apply_thread_moves_the_head  # type: ignore[method-assign]
    block = decode_block(_build(chain, 3), chain_id=CHAIN_ID)
    assert moved == [2]
    assert block.header.state_height == 2
    assert (block.header.results_root, block.header.state_root) == (
        roots_of_2.results_root, roots_of_2.state_root)


class _CountingReader:
    def __init__(self, values: dict[bytes, bytes]) -> None:
        self.values = values
        self.reads: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        self.reads.append(key)
        return self.values.get(key)

    def iterate(self, prefix: bytes, *, limit: int) -> list[tuple[bytes, bytes]]:
        return sorted(item for item in self.values.items() if item[0].startswith(prefix))[:limit]


def test_the_apply_state_cache_serves_hits_and_misses_and_follows_writes() -> None:
    from node.chain import CachedStateReader

    reader = _CountingReader({b"a": b"1", b"b": b"2"})
    cache = CachedStateReader(reader, entries_max=2)  # type: ignore[arg-type]
    assert [cache.get(b"a"), cache.get(b"a"), cache.get(b"x"), cache.get(b"x")] == [
        b"1", b"1", None, None]
    assert reader.reads == [b"a", b"x"]  # a hit and a cached miss read nothing
    # LevelDB took a block's writes: cached keys follow them (a miss becomes a value).
    reader.values.update({b"a": b"9", b"x": b"7"})
    del reader.values[b"b"]
    cache.written({b"a": b"9", b"x": b"7", b"b": None})
    assert [cache.get(b"a"), cache.get(b"x")] == [b"9", b"7"]
    assert reader.reads == [b"a", b"x"]
    # Bounded: a third key evicts the oldest entry, which is then read again.
    assert cache.get(b"b") is None
    assert cache.get(b"a") == b"9"
    assert reader.reads == [b"a", b"x", b"b", b"a"]
    cache.clear()
    assert cache.get(b"x") == b"7"
    assert reader.reads[-1] == b"x"
