"""State sync: a new node joins from a verified state snapshot instead of replaying every
block; every node keeps its last few snapshots to serve.

**Serving** (:class:`Snapshots`, every node with ``[sync] snapshot_interval_blocks``): at
start and after applying a block whose height is a multiple of the interval, the node
takes a LevelDB snapshot (O(1); apply never waits) and keeps the last ``snapshots_kept``.
A snapshot's manifest (each chunk's first key and multiset hash) is computed in a worker
thread in the background; chunks are read from the held snapshot on demand.

**Joining** (:class:`StateSyncer`): a node whose chain is still at genesis, with ``[sync]
trust_height`` and ``trust_hash`` (a block its operator trusts, e.g. read off a node
they run or a consortium notice), or a validator that raft hands a snapshot far ahead of
its chain (its trust point is the leader's head the snapshot names). It asks every
connected peer for the snapshots it holds and takes the newest one above its own height
and below the trusted height. Nothing a peer says is taken on trust:

1. the blocks from the snapshot's height S to the trusted height T are fetched and hash-
   linked back from the trusted hash (each block names its predecessor's hash), which
   proves block S's hash and the header (in S+1..T) that commits to the state root of S;
2. the manifest must add up to that state root (ledger/commitment.py); a peer whose
   manifest does not is named in the log and ``medledger_statesync_bad_answers_total``
   and not asked again;
3. chunks are fetched from every peer holding the snapshot, a few at a time; each must
   equal its manifest entry (its items' multiset hash), or it is fetched again from
   another peer and the one that sent it is named the same way;
4. the import switches the state only when the whole adds up to the root
   (storage/statesync.py: a crash before that leaves the old state, and the next start
   begins again), then stores block S and applies S+1..T like any synced block, whose
   roots are checked as always. The node then follows the chain by block sync.

Heights below S are not held afterwards (queries for them answer as for pruned blocks; a
validator that was behind deletes the blocks it held below S).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from ledger.block import Block, decode_block
from ledger.errors import DecodeError, MedledgerError, RemoteError
from ledger.evaluation import Roots
from node.chain import Chain
from node.p2p import wire
from node.p2p.transport import Transport
from storage.errors import StateChunkError
from storage.statesync import (
    Manifest,
    ManifestPage,
    StateChunk,
    StateImport,
    StateSnapshot,
    export_chunks,
    interrupted_import,
    make_manifest,
    manifest_from_pages,
    verify_manifest,
)

T = TypeVar("T")

# Bytes of keys and values per chunk (a response carries one chunk).
CHUNK_BYTES_MAX = 512 * 1024
REQUEST_TIMEOUT_S = 20.0
# Chunk requests in flight per peer holding the snapshot.
CHUNKS_IN_FLIGHT_PER_PEER = 2
# How long a joining node waits for peers that hold a usable snapshot.
OFFERS_WAIT_S = 60.0
OFFERS_RETRY_S = 0.25


class StateSyncError(MedledgerError):
    """State sync could not complete (no usable snapshot, no honest peer)."""


@dataclass
class _Held:
    snapshot: StateSnapshot
    manifest: Manifest | None = None
    readers: int = 0  # worker threads reading it now: it is closed only when none is
    dropped: bool = False

    def release(self) -> None:
        self.readers -= 1
        if self.dropped and not self.readers:
            self.snapshot.close()

    def drop(self) -> None:
        self.dropped = True
        if not self.readers:
            self.snapshot.close()


class Snapshots:
    """The snapshots this node keeps and serves (see the module docstring)."""

    def __init__(self, chain: Chain, *, interval_blocks: int, kept: int, log: Any,
                 chunk_bytes_max: int = CHUNK_BYTES_MAX) -> None:
        assert interval_blocks >= 0 and kept >= 1
        self._chain = chain
        self._chunk_bytes_max = chunk_bytes_max
        self._interval = interval_blocks
        self._kept = min(kept, wire.SNAPSHOTS_OFFERED_MAX)
        self._log = log
        self._held: dict[int, _Held] = {}
        self._manifest_lock = trio.Lock()
        self._new_snapshot = trio.Event()
        self.taken = 0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Take a snapshot of the state the node starts with, then make each new
        snapshot's manifest in the background, so a joining node's first request does not
        wait for the O(state) pass.

        LevelDB snapshots do not survive a restart: without the one taken at start, a
        consortium whose nodes all restarted would serve no state sync until the next
        multiple of the interval (never, on an idle chain). It is usable as soon as a
        block commits to its state, i.e. after the next block."""
        if self._interval and self._chain.height > 0:
            self._take(self._chain.height)
        task_status.started()
        while True:
            await self._new_snapshot.wait()
            self._new_snapshot = trio.Event()
            for held in list(self._held.values()):
                if held.manifest is None and not held.dropped:
                    await self._manifest(held)

    def on_applied(self, event: Any) -> None:
        """Called on the event loop right after each apply, before the next one starts."""
        applied = getattr(event, "applied", None)
        if applied is None or not self._interval:
            return
        height = applied.block.header.height
        if height % self._interval == 0:
            self._take(height)

    def _take(self, height: int) -> None:
        snapshot = StateSnapshot(self._chain.blocks)
        if snapshot.height != height or height in self._held:  # not that state: skip it
            snapshot.close()
            return
        self._held[height] = _Held(snapshot)
        self.taken += 1
        self._new_snapshot.set()
        while len(self._held) > self._kept:
            self._held.pop(min(self._held)).drop()

    def close(self) -> None:
        for held in self._held.values():
            held.drop()
        self._held.clear()

    async def serve(self, request: wire.Request) -> bytes:
        kind = request.kind
        if kind is wire.RequestKind.GET_SNAPSHOTS:
            offers = []
            for height in sorted(self._held, reverse=True):
                held = self._held[height]
                count = 0 if held.manifest is None else len(held.manifest.start_keys)
                offers.append(wire.SnapshotOffer(height, held.snapshot.block_hash,
                                                 held.snapshot.applied_index, count))
            return wire.SnapshotOffers(tuple(offers)).encode()
        found = self._held.get(request.from_height)
        if found is None:
            raise RemoteError(f"no snapshot at height {request.from_height} here")
        held = found
        manifest = await self._manifest(held)
        if kind is wire.RequestKind.GET_SNAPSHOT_MANIFEST:
            pages = manifest.pages()
            if request.to_height >= len(pages):
                raise RemoteError(f"no manifest page {request.to_height}")
            return pages[request.to_height].encode()
        assert kind is wire.RequestKind.GET_SNAPSHOT_CHUNK
        sequence = request.to_height
        if sequence >= len(manifest.start_keys):
            raise RemoteError(f"no chunk {sequence} in the snapshot at {request.from_height}")
        start_key = manifest.start_keys[sequence]
        chunk = await self._reading(held, lambda: next(export_chunks(
            held.snapshot, self._chunk_bytes_max, start_key=start_key,
            first_sequence=sequence, hash_items=False)))
        # The manifest hashed these very items of this very snapshot: no second pass.
        return dataclasses.replace(chunk, accumulator=manifest.accumulators[sequence]).encode()

    async def _reading(self, held: _Held, read: Callable[[], T]) -> T:
        if held.dropped:
            raise RemoteError(f"the snapshot at {held.snapshot.height} was just dropped")
        held.readers += 1
        try:
            return await trio.to_thread.run_sync(read)
        finally:
            held.release()

    async def _manifest(self, held: _Held) -> Manifest:
        async with self._manifest_lock:  # one O(state) pass at a time
            if held.manifest is None:
                started = time.perf_counter()
                held.manifest = await self._reading(
                    held, lambda: make_manifest(held.snapshot, self._chunk_bytes_max))
                self._log.info("snapshot manifest made", height=held.snapshot.height,
                               chunks=len(held.manifest.start_keys),
                               seconds=round(time.perf_counter() - started, 3))
            return held.manifest


@dataclass(frozen=True)
class TrustedState:
    """What the hash chain from the trusted block proves about a snapshot's height."""

    offer: wire.SnapshotOffer
    blocks: list[bytes]  # the snapshot's height ..= the trusted height, as received
    roots: Roots  # the results and state roots of the snapshot's height


class _NotLinked(StateSyncError):
    """The blocks a peer sent do not link back from the trusted hash: it lied (or the
    trust hash is wrong)."""


def verify_trust_path(blocks: list[Block], raw: list[bytes], offers: list[wire.SnapshotOffer],
                      *, trust_height: int, trust_hash: bytes) -> TrustedState:
    """``blocks`` run from the lowest offered height to ``trust_height``: check they are
    linked by hashes back from ``trust_hash`` (each block names its predecessor's hash),
    then take the newest offer whose block is on that chain and whose state a later header
    commits to. _NotLinked if the blocks are not the trusted chain; StateSyncError if no
    offer can be verified from this trusted block."""
    first = min(offer.height for offer in offers)
    if [block.header.height for block in blocks] != list(range(first, trust_height + 1)):
        raise _NotLinked(f"blocks {first}..{trust_height} not all received in order")
    if blocks[-1].hash != trust_hash:
        raise _NotLinked(f"block {trust_height} is not the trusted block "
                         f"0x{trust_hash.hex()} (a peer lies, or the trust hash is wrong)")
    for earlier, later in itertools.pairwise(blocks):
        if later.header.previous_hash != earlier.hash:
            raise _NotLinked(f"block {later.header.height} does not link to block "
                             f"{earlier.header.height}")
    committed_to: dict[int, Roots] = {}
    for block in blocks:
        header = block.header
        committed_to.setdefault(header.state_height,
                                Roots(header.results_root, header.state_root))
    for offer in sorted(offers, key=lambda offer: offer.height, reverse=True):
        index = offer.height - first
        roots = committed_to.get(offer.height)
        if blocks[index].hash == offer.block_hash and roots is not None:
            return TrustedState(offer, raw[index:], roots)
    raise StateSyncError(
        f"no snapshot offered ({sorted(offer.height for offer in offers)}) is on the trusted "
        f"chain with a later block in ..{trust_height} committing to its state: choose a "
        "later trusted block")


class StateSyncer:
    """One node's join by state sync (see the module docstring)."""

    def __init__(self, *, chain: Chain, transport: Transport, trust_height: int,
                 trust_hash: bytes, apply_block: Callable[[bytes], Any], log: Any,
                 on_bad_answer: Callable[[str], None] = lambda peer: None,
                 wait_s: float = OFFERS_WAIT_S) -> None:
        self._chain = chain
        self._transport = transport
        self._trust_height = trust_height
        self._trust_hash = trust_hash
        self._apply_block = apply_block
        self._log = log
        self._on_bad_answer = on_bad_answer
        self._wait_s = wait_s
        self.bad_peers: set[str] = set()
        self.chunks_fetched = 0
        self.seconds = 0.0

    def _bad(self, peer_id: str, what: str, **details: Any) -> None:
        self.bad_peers.add(peer_id)
        self._on_bad_answer(peer_id)
        self._log.warning("state sync: a peer answered falsely; not asked again",
                          peer=peer_id, what=what, **details)

    async def _ask(self, peer_id: str, kind: wire.RequestKind, first: int = 0,
                   second: int = 0) -> bytes:
        request = wire.Request(kind, first, second, ())
        return await self._transport.request(peer_id, request.encode(),
                                             timeout_s=REQUEST_TIMEOUT_S)

    async def run(self) -> None:
        started = time.perf_counter()
        interrupted = interrupted_import(self._chain.blocks)
        if interrupted is not None:
            self._log.warning("state sync: an import was interrupted; starting again",
                              height=interrupted[0], chunks_written=interrupted[3])
        offers = await self._offers()
        trusted = await self._trusted_state(offers)
        offer = trusted.offer
        holders = offers[offer]
        self._log.info("state sync: snapshot chosen", height=offer.height, peers=len(holders),
                       trust_height=self._trust_height)
        manifest = await self._manifest(offer, holders, trusted.roots.state_root)
        await self._import(offer, manifest, holders, trusted)
        self.seconds = time.perf_counter() - started
        self._log.info("state sync: state imported; applying the blocks up to the trusted one",
                       height=offer.height, chunks=len(manifest.start_keys),
                       seconds=round(self.seconds, 2), bad_peers=sorted(self.bad_peers))
        for data in trusted.blocks[1:]:
            await self._apply_block(data)

    async def _offers(self) -> dict[wire.SnapshotOffer, list[str]]:
        """The snapshots below the trusted height that peers hold, and who holds each."""
        deadline = trio.current_time() + self._wait_s
        while True:
            offers: dict[wire.SnapshotOffer, list[str]] = {}
            for peer in self._transport.peers():
                if not peer.connected or peer.peer_id in self.bad_peers:
                    continue
                try:
                    answer = await self._ask(peer.peer_id, wire.RequestKind.GET_SNAPSHOTS)
                    offered = wire.decode_message(wire.SnapshotOffers, answer)
                except (MedledgerError, OSError, trio.TooSlowError):
                    continue
                for offer in offered.offers:
                    if self._chain.height < offer.height < self._trust_height:
                        key = wire.SnapshotOffer(offer.height, offer.block_hash,
                                                 offer.applied_index, 0)
                        offers.setdefault(key, []).append(peer.peer_id)
            if offers:
                return offers
            if trio.current_time() > deadline:
                raise StateSyncError(
                    f"no peer holds a snapshot below the trusted height {self._trust_height} "
                    f"(waited {self._wait_s:.0f} s)")
            await trio.sleep(OFFERS_RETRY_S)

    async def _trusted_state(self, offers: dict[wire.SnapshotOffer, list[str]]
                             ) -> TrustedState:
        first = min(offer.height for offer in offers)
        holders = {peer for peers in offers.values() for peer in peers}
        peers = sorted(holders) + [peer.peer_id for peer in self._transport.peers()
                                   if peer.connected and peer.peer_id not in holders]
        failures: list[str] = []
        for peer_id in peers:
            if peer_id in self.bad_peers:
                continue
            raw: list[bytes] = []
            try:
                while len(raw) < self._trust_height - first + 1:
                    answer = await self._ask(peer_id, wire.RequestKind.GET_BLOCKS,
                                             first + len(raw), self._trust_height)
                    got = wire.decode_message(wire.BlockRange, answer).blocks
                    if not got:
                        raise _NotLinked(f"no blocks from {first + len(raw)}")
                    raw.extend(got)
                blocks = [decode_block(data, chain_id=self._chain.chain_id) for data in raw]
                return verify_trust_path(blocks, raw, list(offers),
                                         trust_height=self._trust_height,
                                         trust_hash=self._trust_hash)
            except (_NotLinked, DecodeError) as error:
                self._bad(peer_id, "blocks to the trusted one", error=str(error))
                failures.append(str(error))
            except (MedledgerError, OSError, trio.TooSlowError) as error:
                if isinstance(error, StateSyncError):
                    raise  # no offer is verifiable from this trust point: not a peer's lie
                failures.append(f"{peer_id}: {error}")
        raise StateSyncError("no peer served the blocks from the snapshot to the trusted "
                             f"block: {'; '.join(failures[-3:])}")

    async def _manifest(self, offer: wire.SnapshotOffer, holders: list[str],
                        state_root: bytes) -> Manifest:
        for peer_id in holders:
            if peer_id in self.bad_peers:
                continue
            try:
                pages: list[ManifestPage] = []
                while not pages or len(pages) * len(pages[0].start_keys) < pages[0].chunk_count:
                    answer = await self._ask(peer_id, wire.RequestKind.GET_SNAPSHOT_MANIFEST,
                                             offer.height, len(pages))
                    pages.append(wire.decode_message(ManifestPage, answer))
                manifest = manifest_from_pages(pages)
                if (manifest.height, manifest.block_hash, manifest.applied_index) != (
                        offer.height, offer.block_hash, offer.applied_index):
                    raise StateChunkError("the manifest is of another snapshot")
                verify_manifest(manifest, state_root)
                return manifest
            except (StateChunkError, DecodeError) as error:
                self._bad(peer_id, "manifest", error=str(error))
            except (MedledgerError, OSError, trio.TooSlowError) as error:
                self._log.info("state sync: manifest request failed", peer=peer_id,
                               error=str(error))
        raise StateSyncError(f"no peer served a true manifest of the snapshot at "
                             f"{offer.height}")

    async def _import(self, offer: wire.SnapshotOffer, manifest: Manifest, holders: list[str],
                      trusted: TrustedState) -> None:
        blocks = self._chain.blocks
        importer = await trio.to_thread.run_sync(lambda: StateImport.begin(
            blocks, height=offer.height, block_hash=offer.block_hash,
            applied_index=offer.applied_index))
        try:
            await self._fetch_chunks(importer, manifest, holders)
            await trio.to_thread.run_sync(
                lambda: importer.finish(expected_state_root=trusted.roots.state_root))
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(importer.abort)
            raise
        await trio.to_thread.run_sync(
            blocks.store_imported_head_block, offer.height, offer.block_hash, trusted.blocks[0])
        self._chain.storage_reopened()  # the head moved under it
        await delete_blocks_below_oldest(self._chain)

    async def _fetch_chunks(self, importer: StateImport, manifest: Manifest,
                            holders: list[str]) -> None:
        """Fetch chunks from every holder, a few at a time each, and stage them in order.
        Each is checked on arrival against its manifest entry, and its items against
        that entry as it is staged (one hashing pass); a chunk failing either is fetched
        again from another peer and its sender named."""
        count = len(manifest.start_keys)
        arrived: dict[int, tuple[StateChunk, str]] = {}
        pending: deque[int] = deque(range(count))
        arrived_max = 2 * CHUNKS_IN_FLIGHT_PER_PEER * max(1, len(holders))
        staged = 0
        failure: list[StateSyncError] = []
        progress = trio.Condition()

        def honest_left() -> bool:
            return any(peer not in self.bad_peers for peer in holders)

        async def notify() -> None:
            async with progress:
                progress.notify_all()

        async def worker(peer_id: str) -> None:
            while staged < count and peer_id not in self.bad_peers:
                async with progress:
                    while staged < count and peer_id not in self.bad_peers and (
                            not pending or len(arrived) >= arrived_max):
                        await progress.wait()
                if staged >= count or peer_id in self.bad_peers:
                    return
                sequence = pending.popleft()
                try:
                    answer = await self._ask(peer_id, wire.RequestKind.GET_SNAPSHOT_CHUNK,
                                             manifest.height, sequence)
                    chunk = wire.decode_message(StateChunk, answer)
                    _check_against_manifest(chunk, manifest, sequence)
                except (StateChunkError, DecodeError) as error:
                    self._bad(peer_id, f"chunk {sequence}", error=str(error))
                    pending.appendleft(sequence)
                    await notify()
                    return
                except (MedledgerError, OSError, trio.TooSlowError) as error:
                    self._log.info("state sync: chunk request failed", peer=peer_id,
                                   chunk=sequence, error=str(error))
                    pending.appendleft(sequence)
                    await notify()
                    await trio.sleep(OFFERS_RETRY_S)
                    continue
                self.chunks_fetched += 1
                arrived[sequence] = (chunk, peer_id)
                await notify()

        async def stager(scope: trio.CancelScope) -> None:
            nonlocal staged
            while staged < count:
                async with progress:
                    while staged not in arrived:
                        if not honest_left():
                            failure.append(StateSyncError(
                                f"no honest peer left holding the snapshot at "
                                f"{manifest.height}: bad peers {sorted(self.bad_peers)}"))
                            scope.cancel()
                            return
                        await progress.wait()
                chunk, sender = arrived.pop(staged)
                expected = manifest.accumulators[staged]
                try:
                    await trio.to_thread.run_sync(functools.partial(
                        importer.add_chunk, chunk, expected_accumulator=expected))
                except StateChunkError as error:
                    self._bad(sender, f"chunk {staged}", error=str(error))
                    pending.appendleft(staged)
                else:
                    staged += 1
                await notify()
            scope.cancel()  # every chunk staged: the workers may stop waiting

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stager, nursery.cancel_scope)
            for peer_id in holders:
                for _ in range(CHUNKS_IN_FLIGHT_PER_PEER):
                    nursery.start_soon(worker, peer_id)
        if failure:
            raise failure[0]
        assert staged == count


async def delete_blocks_below_oldest(chain: Chain) -> None:
    """The blocks a node that was behind held below the state it imported (a validator far
    behind): deleted in bounded batches in a worker thread."""
    while await trio.to_thread.run_sync(chain.blocks.delete_blocks_below_oldest):
        await trio.sleep(0)


def _check_against_manifest(chunk: StateChunk, manifest: Manifest, sequence: int) -> None:
    if (chunk.height, chunk.block_hash, chunk.applied_index, chunk.sequence) != (
            manifest.height, manifest.block_hash, manifest.applied_index, sequence):
        raise StateChunkError(f"chunk {sequence} is not the one asked for")
    if chunk.start_key != manifest.start_keys[sequence]:
        raise StateChunkError(f"chunk {sequence} starts at the wrong key")
    last = sequence == len(manifest.start_keys) - 1
    expected_next = b"" if last else manifest.start_keys[sequence + 1]
    if chunk.next_key != expected_next or chunk.done != last:
        raise StateChunkError(f"chunk {sequence} does not end where the manifest says")
    if chunk.accumulator != manifest.accumulators[sequence]:
        raise StateChunkError(f"chunk {sequence}'s multiset hash is not the manifest's")


__all__ = [
    "Snapshots",
    "StateSyncError",
    "StateSyncer",
    "TrustedState",
    "delete_blocks_below_oldest",
    "verify_trust_path",
]
