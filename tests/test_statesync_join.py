"""Joining by state sync against peers that may lie: the snapshot, its manifest, each
chunk and the blocks up to the trusted one are verified; a liar is named and skipped."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
from app_world import clinic_world, node_keys, signing_key

from consensus.types import Entry, EntryType
from ledger.app import Genesis
from ledger.commitment import accumulator_of, encode_accumulator
from ledger.evaluation import committed_items, state_root_of_items
from ledger.validation import check_batch
from node.bootstrap import write_genesis_record
from node.chain import Chain
from node.p2p import wire
from node.statesync import Snapshots, StateSyncer, StateSyncError
from storage.statesync import StateChunk
from storage.store import Store

INTERVAL = 4
CHUNK_BYTES = 1024  # small chunks: a few dozen of them


def _chain(path: Path, genesis: Genesis) -> Chain:
    store = Store.open(path, chain_id=genesis.chain_id)
    write_genesis_record(store, genesis)
    return Chain(chain_id=genesis.chain_id, store=store,
                 genesis_time_ms=genesis.genesis_time_ms, sync_applies=False)


def _source(tmp_path: Path) -> tuple[Chain, Snapshots, Genesis]:
    """A chain of the clinic world's blocks (and a few more), snapshots every INTERVAL."""
    world = clinic_world()
    alice = world.parties["alice"].builder
    for number in range(6):
        world.ok(world.consent(alice, f"consent-{number}", "alice", "grey"))
    genesis = world.genesis
    chain = _chain(tmp_path / "source", genesis)
    snapshots = Snapshots(chain, interval_blocks=INTERVAL, kept=3, log=structlog.get_logger(),
                          chunk_bytes_max=CHUNK_BYTES)
    proposer = signing_key("node/" + next(m.org_id for m in genesis.members if m.validator))
    for index, committed in enumerate(world.ledger.blocks, start=1):
        raws = [raw for raw in committed.raws if raw]
        txs = [result.tx for result in check_batch(raws, chain.chain_id)]
        snapshots.on_applied(_append(chain, proposer, [tx for tx in txs if tx is not None],
                                     now_ms=committed.context.timestamp_ms, raft_index=index))
    assert chain.height >= 3 * INTERVAL
    return chain, snapshots, genesis


def _append(chain: Chain, proposer: Any, txs: list[Any], *, now_ms: int,
            raft_index: int) -> Any:
    height, head_hash, head_ms = chain.head()
    block = chain.build_block(proposer, txs, height=height + 1, previous_hash=head_hash,
                              previous_timestamp_ms=head_ms, now_ms=now_ms, raft_term=1,
                              raft_index=raft_index,
                              previous_state_height=chain.named_state_height(),
                              validators_hash=chain.head_validator_sets()[1],
                              certificate=chain.certify_head(node_keys()))
    result = chain.apply_entry(Entry(1, raft_index, EntryType.NORMAL, block.encode()))
    assert result.applied is not None
    return result


@dataclass
class _Peer:
    peer_id: str
    connected: bool = True


class _Network:
    """Peers answering from the source chain's snapshots and blocks; ``tamper`` alters
    what one of them answers."""

    def __init__(self, source: Chain, snapshots: Snapshots, peers: list[str],
                 tamper: dict[str, Any]) -> None:
        self._source = source
        self._snapshots = snapshots
        self._peers = [_Peer(peer) for peer in peers]
        self._tamper = tamper
        self.asked: dict[str, int] = {peer: 0 for peer in peers}

    def peers(self) -> list[_Peer]:
        return self._peers

    async def request(self, peer_id: str, data: bytes, *, timeout_s: float) -> bytes:
        await trio.sleep(0)
        self.asked[peer_id] += 1
        request = wire.decode_message(wire.Request, data)
        if request.kind is wire.RequestKind.GET_BLOCKS:
            stored = self._source.blocks.blocks(request.from_height, request.to_height,
                                                size_bytes_max=1 << 20)
            answer = wire.BlockRange(tuple(block.block_bytes for block in stored)).encode()
        else:
            answer = await self._snapshots.serve(request)
        tamper = self._tamper.get(peer_id)
        return answer if tamper is None else tamper(request, answer)


def _lie_in_chunks(recompute: bool) -> Any:
    """Every chunk this peer serves has one value altered."""
    def tamper(request: wire.Request, answer: bytes) -> bytes:
        if request.kind is not wire.RequestKind.GET_SNAPSHOT_CHUNK:
            return answer
        chunk = wire.decode_message(StateChunk, answer)
        item = chunk.items[0]
        items = (dataclasses.replace(item, value=item.value + b"!"), *chunk.items[1:])
        lie = dataclasses.replace(chunk, items=items)
        if recompute:  # a careful liar: the chunk's own hash matches its items
            lie = dataclasses.replace(lie, accumulator=encode_accumulator(accumulator_of(
                committed_items(((i.key, i.value) for i in items), chunk.height))))
        return lie.encode()
    return tamper


async def _join(tmp_path: Path, tamper: dict[str, Any]) -> tuple[Chain, Chain, StateSyncer]:
    source, snapshots, genesis = _source(tmp_path)
    target = _chain(tmp_path / "target", genesis)
    syncer = await _sync(target, _Network(source, snapshots, ["honest", "liar"], tamper),
                         source)
    return source, target, syncer


async def _sync(target: Chain, network: _Network, source: Chain) -> StateSyncer:
    """``target`` joins by state sync from ``network``, trusting ``source``'s head."""
    height, head_hash, _ = source.head()

    async def apply(data: bytes) -> None:
        await trio.to_thread.run_sync(target.apply_synced_block, data)

    syncer = StateSyncer(chain=target, transport=network,  # type: ignore[arg-type]
                         trust_height=height, trust_hash=head_hash, apply_block=apply,
                         log=structlog.get_logger(), wait_s=2.0)
    await syncer.run()
    return syncer


def _same_state(source: Chain, target: Chain) -> None:
    assert target.head() == source.head()
    height = source.height
    source_items = dict(source.blocks.state_items())
    target_items = dict(target.blocks.state_items())
    assert target_items == source_items
    assert state_root_of_items(target_items.items(), height) == target.roots(height).state_root


@pytest.mark.parametrize("recompute", [False, True])
async def test_a_tampered_chunk_is_refetched_and_its_sender_named(
        tmp_path: Path, recompute: bool) -> None:
    source, target, syncer = await _join(tmp_path, {"liar": _lie_in_chunks(recompute)})
    _same_state(source, target)
    assert syncer.bad_peers == {"liar"}
    # Below the snapshot's height no block is held (queries say so, as after pruning).
    assert target.blocks.oldest_held_height() % INTERVAL == 0
    assert target.blocks.oldest_held_height() < source.height


async def test_honest_peers_join_without_blame(tmp_path: Path) -> None:
    source, target, syncer = await _join(tmp_path, {})
    _same_state(source, target)
    assert syncer.bad_peers == set()
    assert syncer.chunks_fetched >= 1


async def test_a_lying_manifest_is_refused(tmp_path: Path) -> None:
    def lie(request: wire.Request, answer: bytes) -> bytes:
        if request.kind is wire.RequestKind.GET_SNAPSHOT_MANIFEST:
            from storage.statesync import ManifestPage

            page = wire.decode_message(ManifestPage, answer)
            wrong = bytes(len(page.accumulators[0]))
            return dataclasses.replace(page, accumulators=(wrong, *page.accumulators[1:]),
                                       ).encode()
        return answer

    source, target, syncer = await _join(tmp_path, {"honest": lie})
    # "honest" lied about the manifest; the other peer's was used.
    assert "honest" in syncer.bad_peers
    _same_state(source, target)


async def test_a_wrong_trust_hash_stops_the_join_and_changes_nothing(tmp_path: Path) -> None:
    source, snapshots, genesis = _source(tmp_path)
    target = _chain(tmp_path / "target", genesis)
    network = _Network(source, snapshots, ["a", "b"], {})

    async def apply(data: bytes) -> None:
        raise AssertionError("nothing is applied")

    syncer = StateSyncer(chain=target, transport=network,  # type: ignore[arg-type]
                         trust_height=source.height, trust_hash=bytes(32), apply_block=apply,
                         log=structlog.get_logger(), wait_s=2.0)
    with pytest.raises(StateSyncError, match="trusted block"):
        await syncer.run()
    assert target.height == 0


async def test_a_restarted_node_serves_the_state_it_started_with(tmp_path: Path) -> None:
    """LevelDB snapshots do not survive a restart: a node takes one of the state it starts
    with, so a consortium whose nodes all restarted still serves state sync (from the
    next block on, which commits to that state) instead of none until the next multiple
    of the interval."""
    source, snapshots, genesis = _source(tmp_path)
    snapshots.close()  # the restart: what the process held is gone
    started_at = source.height
    restarted = Snapshots(source, interval_blocks=1000, kept=3, log=structlog.get_logger(),
                          chunk_bytes_max=CHUNK_BYTES)
    proposer = signing_key("node/" + next(m.org_id for m in genesis.members if m.validator))
    target = _chain(tmp_path / "target", genesis)
    async with trio.open_nursery() as nursery:
        await nursery.start(restarted.run)
        offers = wire.decode_message(wire.SnapshotOffers, await restarted.serve(
            wire.Request(wire.RequestKind.GET_SNAPSHOTS, 0, 0, ())))
        assert [offer.height for offer in offers.offers] == [started_at]
        _, _, head_ms = source.head()
        for number in range(2):  # the next blocks commit to the state it started with
            restarted.on_applied(_append(source, proposer, [], now_ms=head_ms + 1000 + number,
                                         raft_index=1000 + number))
        await _sync(target, _Network(source, restarted, ["a", "b"], {}), source)
        nursery.cancel_scope.cancel()
    _same_state(source, target)
    assert target.blocks.oldest_held_height() == started_at
