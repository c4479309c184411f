"""The follower: blocks from and to peers, outside raft.

Observers (and validators catching up past a raft snapshot) fetch blocks by sync from
the peers ahead of them, highest head first, and apply the next block when gossip brings
it. The leader gossips every block it applied, from its own task and queue (the apply
loop never waits on gossip; when gossip falls behind the oldest blocks are dropped and
observers sync them). Every node answers its peers' head and block-range requests.

A peer that pruned the blocks we need next (an observer with ``[storage] retain_blocks``)
answers a range request with an error naming the oldest block it holds; we then ask the
other peers, and skip that one until we reach its oldest block (or, in case it got its
blocks back, for at most PRUNED_PEER_MEMORY_SECONDS).
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from consensus.state import Role
from ledger.block import Block
from ledger.codec import decode
from ledger.errors import ConfigError, DecodeError, MedledgerError, RemoteError
from node.applier import Applier
from node.chain import Chain
from node.clock import Clock, SystemClock
from node.events import Applied
from node.membership import Membership
from node.p2p import wire
from node.p2p.transport import Transport, publish_quietly
from node.raft_driver import RaftDriver, SnapshotToRestore
from node.statesync import OFFERS_WAIT_S, StateSyncError, delete_blocks_below_oldest
from storage.errors import BlockPrunedError

# Applied blocks waiting for the leader's block gossip task; older ones are dropped
# when it falls behind (observers sync what they miss).
BLOCK_GOSSIP_QUEUE_MAX = 64
# A node at genesis that raft hands a snapshot this many blocks ahead joins by state sync
# (below, replaying is about as quick); how long it waits for peers' snapshot offers.
STATE_SYNC_MIN_BLOCKS = 100
RAFT_STATE_SYNC_WAIT_S = 10.0
# How often observers and lagging nodes ask peers for their head.
FOLLOW_INTERVAL_SECONDS = 1.0
HEAD_TIMEOUT_S = 3.0
BLOCKS_TIMEOUT_S = 30.0
# How long a peer's answer "pruned: my oldest block is H" keeps us from asking it for
# blocks below H again; then it is asked once more (its data directory may have changed).
PRUNED_PEER_MEMORY_SECONDS = 60.0


class Follower:
    def __init__(self, *, chain: Chain, applier: Applier, membership: Membership,
                 chain_id: str, log: Any, driver: Callable[[], RaftDriver | None],
                 clock: Clock | None = None,
                 state_sync: Callable[[int, bytes, float], Awaitable[None]] | None = None,
                 trust: tuple[int, bytes] | None = None) -> None:
        self._chain = chain
        # Join by state sync (node.statesync): at start from the configured trust point
        # when still at genesis, and when raft installs a snapshot on a node at genesis.
        self._state_sync = state_sync
        self._trust = trust
        self._clock: Clock = clock or SystemClock()
        # The highest head our peers answered in the last poll, and when (for health).
        self.peer_head_height: int | None = None
        self.peer_head_seen_at: float | None = None
        self._applier = applier
        self._membership = membership
        self._chain_id = chain_id
        self._log = log
        self._driver = driver
        self._transport: Transport | None = None
        self._wakeup = trio.Event()
        self._catching_up = False
        self._to_gossip: collections.deque[Block] = collections.deque(
            maxlen=BLOCK_GOSSIP_QUEUE_MAX)
        self._gossip_wakeup = trio.Event()
        self.sync_failures = 0
        # peer id -> (the oldest block it said it holds, when): peers that pruned what we
        # need next are skipped. One entry per peer at most, dropped when it leaves.
        self._pruned_peers: dict[str, tuple[int, float]] = {}

    def attach(self, transport: Transport) -> None:
        self._transport = transport
        transport.on_gossip(wire.topic_blocks(self._chain_id), self.on_block_gossip)

    def statistics(self) -> dict[str, int]:
        return {"sync_failures": self.sync_failures, "blocks_to_gossip": len(self._to_gossip),
                "pruned_peers_skipped": len(self._pruned_peers)}

    def _following(self) -> bool:
        """Validators apply through raft (and sync only to restore a snapshot)."""
        return self._driver() is None or not self._membership.is_validator

    # ------------------------------------------------------------------ tasks

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await delete_blocks_below_oldest(self._chain)  # what a crash there left behind
        if (self._state_sync is not None and self._trust is not None and self._following()
                and self._chain.height == 0):
            self._catching_up = True  # no gossiped block is applied meanwhile
            try:
                await self._state_sync(*self._trust, OFFERS_WAIT_S)
            except StateSyncError as error:
                raise ConfigError(f"state sync failed: {error}") from None
            finally:
                self._catching_up = False
            self._membership.refresh()  # the validator set of the imported state
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._gossip_loop)
            while True:
                with trio.move_on_after(FOLLOW_INTERVAL_SECONDS):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                if not self._following():
                    continue
                while await self.sync_once():
                    pass

    async def _gossip_loop(self) -> None:
        """Gossip the blocks the leader applied, in order."""
        while True:
            await self._gossip_wakeup.wait()
            self._gossip_wakeup = trio.Event()
            while self._to_gossip:
                block = self._to_gossip.popleft()
                data = block.encode()
                if len(data) > wire.GOSSIP_BYTES_MAX:
                    continue  # too big for one gossip message: peers sync it
                assert self._transport is not None
                await publish_quietly(self._transport, wire.topic_blocks(self._chain_id),
                                      data, self._log)

    def on_applied(self, event: Applied) -> None:
        driver = self._driver()
        if (event.applied is not None and event.from_raft and driver is not None
                and driver.role is Role.LEADER):
            self._to_gossip.append(event.applied.block)  # the oldest dropped when full
            self._gossip_wakeup.set()

    # ------------------------------------------------------------------ blocks in

    async def on_block_gossip(self, peer_id: str, data: bytes) -> bool:
        if not self._following():
            return True  # validators get blocks through raft
        try:
            block = decode(Block, data, size_bytes_max=wire.MESSAGE_BYTES_MAX)
        except DecodeError:
            return False
        height = self._chain.height
        if block.header.height == height + 1 and not self._catching_up:
            try:
                await self._applier.apply_from_peer(data)
            except (DecodeError, RemoteError) as error:
                self._log.info("gossiped block refused", error=str(error))
                return False
        elif block.header.height > height + 1:
            self._wakeup.set()
        return True

    async def sync_once(self, *, target_height: int | None = None) -> bool:
        """Fetch and apply one range of blocks from the best peer. True if it advanced."""
        assert self._transport is not None
        ahead: list[tuple[int, str]] = []
        heights: list[int] = []
        peers = [peer for peer in self._transport.peers() if peer.connected]
        self._forget_pruned_peers({peer.peer_id for peer in peers})
        for peer in peers:
            try:
                answer = await self._transport.request(
                    peer.peer_id, wire.Request(wire.RequestKind.GET_HEAD, 0, 0, ()).encode(),
                    timeout_s=HEAD_TIMEOUT_S)
                head = decode(wire.Head, answer, size_bytes_max=wire.HEAD_BYTES_MAX)
            except (MedledgerError, OSError, trio.TooSlowError):
                continue
            heights.append(head.height)
            if head.height > self._chain.height and not self._pruned_below_us(peer.peer_id):
                ahead.append((head.height, peer.peer_id))
        if heights:
            self.peer_head_height = max(heights)
            self.peer_head_seen_at = self._clock.monotonic()
        # The highest head first; when that peer fails the range, the next one (one peer
        # whose streams fail must not stop us following: it did, 700 blocks behind).
        for height, peer_id in sorted(ahead, reverse=True):
            goal = height if target_height is None else min(height, target_height)
            if await self._sync_range(peer_id, goal):
                return True
        return False

    async def _sync_range(self, peer_id: str, goal: int) -> bool:
        """Fetch and apply blocks from our height + 1 towards ``goal`` from one peer."""
        assert self._transport is not None
        if goal <= self._chain.height:
            return True  # gossip brought us there meanwhile (asking would be a bad range)
        request = wire.Request(wire.RequestKind.GET_BLOCKS, self._chain.height + 1, goal, ())
        self._catching_up = True
        try:
            answer = await self._transport.request(peer_id, request.encode(),
                                                   timeout_s=BLOCKS_TIMEOUT_S)
            blocks = wire.decode_message(wire.BlockRange, answer)
            for data in blocks.blocks:
                await self._applier.apply_from_peer(data)
        except (MedledgerError, OSError, trio.TooSlowError) as error:
            self.sync_failures += 1
            oldest = BlockPrunedError.oldest_height_in(str(error))
            if oldest is not None:
                self._pruned_peers[peer_id] = (oldest, self._clock.monotonic())
                self._log.info("peer pruned the blocks we need; asking other peers",
                               peer=peer_id, from_height=request.from_height,
                               peer_oldest_block_height=oldest)
            else:
                self._log.info("block sync failed", peer=peer_id, error=str(error))
            return False
        finally:
            self._catching_up = False
        return bool(blocks.blocks)

    def _pruned_below_us(self, peer_id: str) -> bool:
        """Whether the peer said it no longer holds the next block we need."""
        known = self._pruned_peers.get(peer_id)
        return known is not None and self._chain.height + 1 < known[0]

    def _forget_pruned_peers(self, connected: set[str]) -> None:
        now = self._clock.monotonic()
        for peer_id, (_, seen_at) in list(self._pruned_peers.items()):
            if peer_id not in connected or now - seen_at > PRUNED_PEER_MEMORY_SECONDS:
                del self._pruned_peers[peer_id]

    async def restore_snapshot(self, snapshot: SnapshotToRestore) -> None:
        """Raft installed a snapshot: sync the blocks up to the height it names."""
        head = decode(wire.Head, snapshot.data, size_bytes_max=wire.HEAD_BYTES_MAX)
        if (self._state_sync is not None
                and head.height - self._chain.height >= STATE_SYNC_MIN_BLOCKS):
            # A validator far behind (voted in late, its data lost, or down for long): the
            # raft snapshot names the leader's head, a block a validator of the set vouches
            # for, so it is the trust point of a state sync; block sync does the rest. A
            # validator that held blocks keeps none below the imported state's height.
            self._log.info("installing snapshot: joining by state sync",
                           target_height=head.height, index=snapshot.index,
                           height=self._chain.height)
            try:
                await self._state_sync(head.height, head.block_hash, RAFT_STATE_SYNC_WAIT_S)
                self._membership.refresh()
            except StateSyncError as error:
                self._log.warning("state sync for the raft snapshot failed; syncing blocks",
                                  error=str(error))
        self._log.info("installing snapshot: syncing blocks", target_height=head.height,
                       index=snapshot.index)
        while self._chain.height < head.height:
            if not await self.sync_once(target_height=head.height):
                await trio.sleep(FOLLOW_INTERVAL_SECONDS)
        self._chain.blocks.record_applied_index(snapshot.index)

    # ------------------------------------------------------------------ serving peers

    async def serve(self, request: wire.Request) -> bytes:
        """A peer's GET_HEAD or GET_BLOCKS request."""
        chain = self._chain
        if request.kind is wire.RequestKind.GET_HEAD:
            height, head_hash, _ = chain.head()
            return wire.Head(height, head_hash).encode()
        if request.from_height < 1 or request.to_height < request.from_height:
            raise RemoteError("bad block range")
        last = min(request.to_height,
                   request.from_height + wire.SYNC_BLOCKS_PER_RESPONSE_MAX - 1)
        # A range that starts at a block pruned here raises BlockPrunedError: the asker
        # gets it as the failure reason (naming our oldest block) and asks another peer.
        stored = await trio.to_thread.run_sync(
            lambda: chain.blocks.blocks(request.from_height, last,
                                        size_bytes_max=wire.SYNC_RESPONSE_BYTES_MAX)
        )
        return wire.BlockRange(tuple(block.block_bytes for block in stored)).encode()
