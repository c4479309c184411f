"""The node: one root nursery, every service started with ``nursery.start``.

::

    Node.run
     ├── transport (libp2p host: raft streams, gossip, sync)
     ├── raft driver (RawNode: tick/step/propose -> persist, send, hand off, advance)
     ├── apply task (committed entries -> ledger checks + app -> LevelDB, one batch each)
     ├── block builder (leader only: cut blocks by count, bytes or interval; pipelined)
     ├── forwarder (followers and observers: pending txs to the leader, again after a
     │   leader change)
     ├── follower (observers and lagging nodes: block sync from peers)
     └── rpc server (JSON-RPC, WebSocket, /metrics, /healthz, /readyz)

A service task that returns or raises brings the whole node down (the nursery cancels
the rest and the exception propagates to ``medledger start``, which logs it and exits
non-zero). SIGTERM/SIGINT cancel the root scope; shutdown work is shielded and bounded.
"""

from __future__ import annotations

import collections
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from consensus.config import Config as RaftConfig
from consensus.raw_node import RawNode
from consensus.state import Role, SoftState
from consensus.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMetadata,
)
from ledger import app as application
from ledger.app import Genesis
from ledger.block import ZERO_HASH, Block
from ledger.codec import decode
from ledger.errors import DecodeError, MedledgerError, RemoteError
from ledger.merkle import merkle_proof
from ledger.results import ResultCode
from ledger.tx import Transaction
from ledger.validation import check_batch
from node import wire
from node.api import NodeStatus, PeerInfo, SubmitResult, TxLocation, TxResultEvent, TxStatus
from node.chain import ApplyResult, Chain
from node.config import NodeConfig
from node.diskfull import DiskFullGuard
from node.genesis import genesis_hash, load_genesis
from node.keys import raft_node_id, read_key_file
from node.logs import get_logger
from node.mempool import Mempool
from node.raft_driver import APPLY_QUEUE_ENTRIES_MAX, ApplyItem, RaftDriver, SnapshotToRestore
from node.transport import Transport
from storage.store import Store

T = TypeVar("T")
VERSION = "0.1.0"
# Buffered events per subscriber before it is dropped as too slow.
SUBSCRIBER_BUFFER_EVENTS = 10_000
# A learner is promoted to voter when it is within this many entries of the leader.
LEARNER_CATCH_UP_ENTRIES = 64
# Followers re-forward txs still pending after this long (a forward may be lost).
REFORWARD_AFTER_SECONDS = 3.0
# Admitted batches waiting to be gossiped (each up to a tx_submitBatch's worth).
GOSSIP_QUEUE_BATCHES_MAX = 256
# Applied blocks waiting for the leader's block gossip task; older ones are dropped
# when it falls behind (observers sync what they miss).
BLOCK_GOSSIP_QUEUE_MAX = 64
# How long tx gossip waits to gather more admitted txs into one message.
GOSSIP_COALESCE_SECONDS = 0.02
# How often observers and lagging nodes ask peers for their head.
FOLLOW_INTERVAL_SECONDS = 1.0
# The bootstrap snapshot every genesis validator starts from (see _make_driver).
BOOTSTRAP_INDEX = 1
BOOTSTRAP_TERM = 1
# Grace period for in-flight work at shutdown.
SHUTDOWN_GRACE_SECONDS = 5.0


def topic_blocks(chain_id: str) -> str:
    return f"/medledger/{chain_id}/blocks/1"


def topic_txs(chain_id: str) -> str:
    return f"/medledger/{chain_id}/txs/1"


@dataclass(slots=True)
class Proposal:
    height: int
    block_hash: bytes
    timestamp_ms: int
    tx_ids: list[bytes]


@dataclass(slots=True)
class Subscribers:
    blocks: list[trio.MemorySendChannel[Block]] = field(default_factory=list)
    results: list[trio.MemorySendChannel[TxResultEvent]] = field(default_factory=list)


class Node:
    """A medledger node. Construct, then ``await nursery.start(node.run)``."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        transport_factory: Callable[[Node], Transport] | None = None,
        rpc_enabled: bool = True,
    ) -> None:
        self.config = config
        self.key = read_key_file(config.key_file)
        self.genesis: Genesis = load_genesis(config.genesis_file)
        self.chain_id = self.genesis.chain_id
        self.public_key = self.key.public_key
        self._transport_factory = transport_factory
        self._rpc_enabled = rpc_enabled
        self.mempool = Mempool(max_txs=config.mempool.max_txs, max_bytes=config.mempool.max_bytes)
        self.log = get_logger(chain=self.chain_id)
        self.store: Store | None = None
        self.chain: Chain | None = None
        self.transport: Transport | None = None
        self.driver: RaftDriver | None = None
        self.metrics: Any = None
        self.rpc_port: int | None = None
        self._executor: Executor | None = None
        self._proposals: dict[int, Proposal] = {}
        self._proposed_head: tuple[int, bytes, int] | None = None
        self._builder_wakeup = trio.Event()
        # Txs enter the mempool in the order they reached this node, whichever batch is
        # checked first: a client pipelining one signer's txs in several batches must
        # not see a later nonce included first (nonces only increase: the earlier tx
        # would then be NONCE_STALE). trio.Lock is FIFO.
        self._admission = trio.Lock()
        # Admitted txs on their way to gossip, in admission order, published by one task
        # (so the order holds on the wire too, and no submit waits on gossip pacing).
        self._gossip_send, self._gossip_receive = trio.open_memory_channel[list[bytes]](
            GOSSIP_QUEUE_BATCHES_MAX
        )
        self._forward_wakeup = trio.Event()
        self._forward_peer: str | None = None
        self._last_proposer: bytes | None = None  # of the newest block applied
        self._follow_wakeup = trio.Event()
        # Blocks the leader applied, waiting for the block gossip task: the apply loop
        # never waits on gossip (one slow or absent peer must not stall commits).
        self._blocks_to_gossip: collections.deque[Block] = collections.deque(
            maxlen=BLOCK_GOSSIP_QUEUE_MAX)
        self._block_gossip_wakeup = trio.Event()
        self._subscribers = Subscribers()
        self._submitted_at: dict[bytes, float] = {}
        self._forwarded_at: dict[bytes, float] = {}
        self._validators: dict[bytes, tuple[int, str]] = {}  # node key -> (raft id, peer id)
        self._last_commit_monotonic = time.monotonic()
        self._started = False
        self._catching_up = False
        self._nursery: trio.Nursery | None = None
        self._apply_lock = trio.Lock()
        self.disk = DiskFullGuard(config.data_dir, self.log)
        self._apply_send: trio.MemorySendChannel[ApplyItem] | None = None

    # ================================================================== lifecycle

    @property
    def is_validator(self) -> bool:
        return self.public_key in self._validators

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await self.disk.wait_for_space(what="opening the database")
        await trio.to_thread.run_sync(self._open_storage)
        assert self.store is not None and self.chain is not None
        self.disk.reopen = self._reopen_storage
        try:
            async with trio.open_nursery() as nursery:
                await self._start_services(nursery)
                self._started = True
                task_status.started(self)
                self.log.info("node started", validator=self.is_validator,
                              height=self.chain.height, rpc_port=self.rpc_port)
        finally:
            with trio.move_on_after(SHUTDOWN_GRACE_SECONDS) as cleanup:
                cleanup.shield = True
                await trio.to_thread.run_sync(self._close)

    def _reopen_storage(self) -> None:
        """After a write failed for want of space (see node.diskfull)."""
        assert self.store is not None and self.chain is not None
        self.store.reopen()
        self.chain.storage_reopened()

    def _open_storage(self) -> None:
        from node.metrics import Metrics

        self.metrics = Metrics()
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store.open(self.config.data_dir, chain_id=self.chain_id)
        if store.blocks.head() is None:
            # Height 0 is the genesis record: its hash is block 1's previous hash, its
            # state writes are the consortium's initial members and parameters.
            store.blocks.apply_block(
                height=0, block_hash=genesis_hash(self.genesis),
                block_bytes=self.genesis.encode(), tx_ids=[], tx_results=[],
                state_writes=application.genesis_writes(self.genesis), applied_index=0,
            )
        elif store.blocks.block(0) is not None and (
            store.blocks.block(0).block_hash != genesis_hash(self.genesis)  # type: ignore[union-attr]
        ):
            from ledger.errors import ConfigError

            raise ConfigError(
                f"{self.config.data_dir} holds a chain of another genesis than "
                f"{self.config.genesis_file}"
            )
        self.store = store
        if self.config.node.validation_workers > 0:
            import multiprocessing

            self._executor = ProcessPoolExecutor(
                self.config.node.validation_workers,
                mp_context=multiprocessing.get_context("forkserver"),
            )
        self.chain = Chain(
            chain_id=self.chain_id,
            store=store,
            executor=self._executor,
            workers=max(2, self.config.node.validation_workers),
            checked_lookup=self.mempool.get,
            genesis_time_ms=self.genesis.genesis_time_ms,
            sync_applies=False,
        )
        self._refresh_validators()
        self.chain.sync_applies = not self.is_validator

    def _close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self.store is not None:
            self.store.close()

    async def _start_services(self, nursery: trio.Nursery) -> None:
        self.transport = self._make_transport()
        await nursery.start(self.transport.run)
        self.transport.set_validators({peer for _, peer in self._validators.values()})
        self.transport.on_request(self._serve_request)
        self.transport.on_gossip(topic_blocks(self.chain_id), self._on_block_gossip)
        self.transport.on_gossip(topic_txs(self.chain_id), self._on_tx_gossip)
        send_channel, receive_channel = trio.open_memory_channel[ApplyItem](
            APPLY_QUEUE_ENTRIES_MAX
        )
        self._nursery = nursery
        self._apply_send = send_channel
        if self.is_validator:
            await self._start_consensus()
        nursery.start_soon(self._apply_loop, receive_channel)
        nursery.start_soon(self._follow_loop)
        nursery.start_soon(self._tx_gossip_loop)
        nursery.start_soon(self._block_gossip_loop)
        nursery.start_soon(self._forward_loop)
        if self._rpc_enabled:
            from node.rpc.server import RpcServer

            server = RpcServer(self, metrics=self.metrics, host=self.config.rpc.host,
                               port=self.config.rpc.port,
                               admin_token=self.config.rpc.admin_token or None,
                               log=self.log.bind(component="rpc"))
            server.register_app_methods(app_method_specs())
            self.rpc_port = await nursery.start(server.run)

    async def _start_consensus(self) -> None:
        """Run raft here: at start for a validator, or when governance made this node one
        (it then joins as a learner and is promoted once caught up)."""
        assert self._nursery is not None and self._apply_send is not None
        assert self.driver is None
        self.driver = self._make_driver(self._apply_send)
        snapshot = self._store().raft.snapshot()
        if snapshot.metadata.index > self._chain().applied_index():
            # A snapshot was installed but the blocks up to it were not all applied
            # before a stop: finish catching up before anything later is applied.
            self._apply_send.send_nowait(
                SnapshotToRestore(snapshot.metadata.index, snapshot.data))
        self._transport().on_frame(self.driver.handle_frame)
        await self._nursery.start(self.driver.run)
        self._nursery.start_soon(self._builder_loop)
        self.log.info("consensus started", raft_id=raft_node_id(self.public_key))

    def _make_transport(self) -> Transport:
        if self._transport_factory is not None:
            return self._transport_factory(self)
        from node.p2p import Libp2pTransport

        return Libp2pTransport(
            seed=self.key.seed,
            listen=self.config.p2p.listen,
            bootstrap=self.config.p2p.bootstrap,
            open_for_observers=self.config.p2p.open_for_observers,
        )

    def _make_driver(self, apply_channel: trio.MemorySendChannel[ApplyItem]) -> RaftDriver:
        assert self.store is not None
        raft_storage = self.store.raft
        _, conf_state = raft_storage.initial_state()
        genesis_validator = any(
            member.validator and member.node_key == self.public_key
            for member in self.genesis.members
        )
        fresh = raft_storage.last_index() == 0 and raft_storage.snapshot().is_empty
        if fresh and not conf_state.voters and genesis_validator:
            # A genesis validator's fresh data directory: every genesis validator starts
            # from the same snapshot at index 1 holding the genesis configuration (as
            # etcd bootstraps). The log then starts at 2, so a node that joins later
            # can only be brought up to date from a snapshot: it learns the
            # configuration from it, and every conf change after it from the log.
            voters = tuple(sorted(
                raft_node_id(member.node_key) for member in self.genesis.members
                if member.validator and member.node_key is not None
            ))
            bootstrap = Snapshot(
                SnapshotMetadata(index=BOOTSTRAP_INDEX, term=BOOTSTRAP_TERM,
                                 conf_state=ConfState(voters=voters)),
                wire.Head(0, genesis_hash(self.genesis)).encode(),
            )
            raft_storage.persist(
                hard_state=HardState(term=BOOTSTRAP_TERM, vote=0, commit=BOOTSTRAP_INDEX),
                entries=(), snapshot=bootstrap, sync=True,
            )
        # Raft hands out committed entries after its applied index, which must lie in its
        # log: a node that followed by sync before joining has applied more than its
        # (empty) raft log holds; the chain skips entries it has applied already.
        snapshot_index = raft_storage.snapshot().metadata.index
        applied = max(snapshot_index,
                      min(self._store().blocks.applied_index(), raft_storage.last_index()))
        consensus = self.config.consensus
        raw_node = RawNode(
            RaftConfig(
                node_id=raft_node_id(self.public_key),
                election_timeout_ticks=consensus.election_ticks,
                heartbeat_interval_ticks=consensus.heartbeat_ticks,
                applied_index=applied,
            ),
            raft_storage,
            random.Random(),  # election jitter only: any source of randomness will do
            _RaftLogger(self.log),
        )
        by_raft_id = {raft_id: peer for raft_id, peer in self._validators.values()}
        by_peer = {peer: raft_id for raft_id, peer in self._validators.values()}
        return RaftDriver(
            raw_node=raw_node,
            storage=raft_storage,
            transport=self._transport(),
            peer_of=lambda raft_id: self._peer_of_raft(raft_id, by_raft_id),
            node_of=lambda peer: self._raft_of_peer(peer, by_peer),
            tick_seconds=consensus.tick_ms / 1000,
            apply_channel=apply_channel,
            on_soft_state=self._on_soft_state,
            snapshot_entries=consensus.snapshot_entries,
            compaction_margin_entries=consensus.compaction_margin_entries,
            disk=self.disk,
            metrics=self.metrics,
        )

    def _peer_of_raft(self, raft_id: int, cache: dict[int, str]) -> str | None:
        for known_raft_id, peer in self._validators.values():
            if known_raft_id == raft_id:
                return peer
        return cache.get(raft_id)  # a validator just removed: still reachable

    def _raft_of_peer(self, peer: str, cache: dict[str, int]) -> int | None:
        for raft_id, known_peer in self._validators.values():
            if known_peer == peer:
                return raft_id
        return None

    def _store(self) -> Store:
        assert self.store is not None, "storage is not open yet"
        return self.store

    def _transport(self) -> Transport:
        assert self.transport is not None
        return self.transport

    def _refresh_validators(self) -> None:
        from node.p2p_identity import peer_id_from_public_key

        assert self.chain is not None
        self._validators = {
            key: (raft_node_id(key), peer_id_from_public_key(key))
            for key in self.chain.validator_keys()
        }
        if self.transport is not None:
            self.transport.set_validators({peer for _, peer in self._validators.values()})

    async def _validators_changed(self) -> None:
        self._refresh_validators()
        if self.is_validator and self.driver is None and self._nursery is not None:
            await self._start_consensus()

    # ================================================================== raft events

    def _on_soft_state(self, soft: SoftState) -> None:
        if self.metrics is not None:
            self.metrics.set_raft_role(soft.role.value)
        if soft.role is Role.LEADER:
            self._builder_wakeup.set()
        else:
            self._forward_wakeup.set()

    # ================================================================== applying

    async def _apply_loop(self, receive: trio.MemoryReceiveChannel[ApplyItem]) -> None:
        chain = self._chain()
        async for item in receive:
            if isinstance(item, SnapshotToRestore):
                await self._restore_snapshot(item)
                continue
            started = time.perf_counter()
            result = await self._apply_in_thread(chain.apply_entry, item)
            if self.metrics is not None:
                self.metrics.observe_stage("apply", time.perf_counter() - started)
            await self._after_apply(result)
        raise AssertionError("the apply channel should never close")

    async def _apply_in_thread(self, function: Callable[[Any], T], argument: Any) -> T:
        """Every change to the chain goes through here: one at a time, off the Trio
        thread (raft entries, synced and gossiped blocks may all be arriving at once)."""
        async with self._apply_lock:
            return await self.disk.run_in_thread(lambda: function(argument),
                                                 what="applying a block")

    async def _after_apply(self, result: ApplyResult) -> None:
        chain = self._chain()
        self._resolve_proposals(result)
        if result.applied is not None:
            applied = result.applied
            self.mempool.remove_committed(applied.tx_ids)
            self._last_commit_monotonic = time.monotonic()
            self._publish_applied(applied.block, applied.tx_ids, applied.codes)
            if applied.validator_changes:
                await self._validators_changed()
            if self.driver is not None and self.driver.role is Role.LEADER:
                self._blocks_to_gossip.append(applied.block)  # oldest dropped when full
                self._block_gossip_wakeup.set()
        elif result.skipped_reason not in (None, "no-op", "already applied"):
            self.log.warning("committed entry skipped", index=result.index,
                             reason=result.skipped_reason)
        if self.driver is not None:
            height, head_hash, _ = chain.head()
            self.driver.note_applied(
                result.index, lambda: wire.Head(height, head_hash).encode()
            )
            if self.driver.role is Role.LEADER:
                self._reconcile_membership()
        self._builder_wakeup.set()

    def _resolve_proposals(self, result: ApplyResult) -> None:
        proposal = self._proposals.pop(result.index, None)
        if proposal is None:
            return
        applied = result.applied
        if applied is not None and applied.block.hash == proposal.block_hash:
            return
        # Our block at this index was not applied: it and everything pipelined on it
        # return to the pool, and the next block builds on the real head.
        released = self.mempool.release_inflight(proposal.tx_ids)
        for later in list(self._proposals.values()):
            released += self.mempool.release_inflight(later.tx_ids)
        self._proposals.clear()
        self._proposed_head = None
        self.log.info("proposal not applied; txs back in the pool", index=result.index,
                      released=released)

    def _forward_target(self) -> str | None:
        driver = self.driver
        if driver is not None and self.is_validator:
            if driver.role is Role.LEADER or not driver.leader:
                return None
            return self._peer_of_raft(driver.leader, {})
        transport = self._transport()
        connected = {state.peer_id for state in transport.peers() if state.connected}
        proposer = self._validators.get(self._last_proposer or b"")
        if proposer is not None and proposer[1] in connected:
            return proposer[1]
        return min((peer for _, peer in self._validators.values() if peer in connected),
                   default=None)

    def _publish_applied(self, block: Block, tx_ids: list[bytes], codes: list[int]) -> None:
        now = time.monotonic()
        self._last_proposer = block.header.proposer
        if self.metrics is not None:
            self.metrics.block_applied(block.header.height, len(tx_ids), codes)
        for block_channel in list(self._subscribers.blocks):
            try:
                block_channel.send_nowait(block)
            except (trio.WouldBlock, trio.BrokenResourceError):
                self._subscribers.blocks.remove(block_channel)
                block_channel.close()
        for position, (tx_id, code) in enumerate(zip(tx_ids, codes, strict=True)):
            submitted = self._submitted_at.pop(tx_id, None)
            self._forwarded_at.pop(tx_id, None)
            if submitted is not None and self.metrics is not None:
                self.metrics.observe_commit_latency(now - submitted)
            if self._subscribers.results:
                event = TxResultEvent(tx_id, block.header.height, position, code)
                for channel in list(self._subscribers.results):
                    try:
                        channel.send_nowait(event)
                    except (trio.WouldBlock, trio.BrokenResourceError):
                        self._subscribers.results.remove(channel)
                        channel.close()

    async def _restore_snapshot(self, snapshot: SnapshotToRestore) -> None:
        head = decode(wire.Head, snapshot.data, size_bytes_max=1024)
        self.log.info("installing snapshot: syncing blocks", target_height=head.height,
                      index=snapshot.index)
        while self._chain().height < head.height:
            if not await self._sync_once(target_height=head.height):
                await trio.sleep(FOLLOW_INTERVAL_SECONDS)
        self._chain().blocks.record_applied_index(snapshot.index)

    # ================================================================== building

    async def _builder_loop(self) -> None:
        block_config = self.config.block
        interval_seconds = block_config.interval_ms / 1000
        last_block = time.monotonic()
        while True:
            with trio.move_on_after(interval_seconds):
                await self._builder_wakeup.wait()
            self._builder_wakeup = trio.Event()
            if not self._may_build():
                continue
            pending = self.mempool.pending_count()
            if pending == 0:
                last_block = time.monotonic()
                continue
            waited = time.monotonic() - last_block
            if pending < block_config.max_txs and waited < interval_seconds:
                await trio.sleep(interval_seconds - waited)
            if not self._may_build():
                continue
            self._build_and_propose()
            last_block = time.monotonic()

    def _may_build(self) -> bool:
        driver = self.driver
        if driver is None or driver.role is not Role.LEADER:
            return False
        if self._chain().applied_index() < driver.term_start_index:
            return False  # entries of earlier terms are still being applied
        return len(self._proposals) < self.config.block.max_inflight

    def _build_and_propose(self) -> None:
        chain, driver = self._chain(), self.driver
        assert driver is not None
        started = time.perf_counter()
        block_config = self.config.block
        txs = self.mempool.select(max_txs=block_config.max_txs,
                                  max_bytes=block_config.max_bytes - 4096,
                                  now=time.monotonic())
        if not txs:
            return
        if self._proposed_head is None:
            self._proposed_head = chain.head()
        height, previous_hash, previous_timestamp = self._proposed_head
        status = driver.raw_node.status()
        raft_index = status.last_index + 1
        block = chain.build_block(
            self.key, txs, height=height + 1, previous_hash=previous_hash,
            previous_timestamp_ms=previous_timestamp, now_ms=int(time.time() * 1000),
            raft_term=status.hard_state.term, raft_index=raft_index,
        )
        tx_ids = [tx.tx_id for tx in txs]
        outcome = driver.propose(block.encode())
        if self.metrics is not None:
            self.metrics.observe_stage("block_build", time.perf_counter() - started)
        if outcome.value != "appended":
            self.mempool.release_inflight(tx_ids)
            self.log.info("block proposal dropped", reason=outcome.value)
            return
        assert driver.raw_node.status().last_index == raft_index, "proposal index moved"
        self._proposals[raft_index] = Proposal(
            block.header.height, block.hash, block.header.timestamp_ms, tx_ids
        )
        self._proposed_head = (block.header.height, block.hash, block.header.timestamp_ms)

    # ================================================================== membership

    def _reconcile_membership(self) -> None:
        """Leader: move the raft configuration one step towards the validator set that
        governance decided (learner first, promoted once caught up; removals)."""
        driver = self.driver
        assert driver is not None
        status = driver.raw_node.status()
        conf = status.conf_state
        if conf.voters_outgoing:
            return  # in joint consensus: raft leaves it on its own first
        # (Raft itself refuses a change while an earlier one is not applied yet.)
        wanted = {raft_id for raft_id, _ in self._validators.values()}
        voters, learners = set(conf.voters), set(conf.learners)
        matches = {peer.node_id: peer.match for peer in status.peers}
        change: ConfChangeSingle | None = None
        for raft_id in sorted(wanted - voters - learners):
            change = ConfChangeSingle(ConfChangeType.ADD_LEARNER, raft_id)
            break
        if change is None:
            for raft_id in sorted(learners & wanted):
                if matches.get(raft_id, 0) + LEARNER_CATCH_UP_ENTRIES >= status.last_index:
                    change = ConfChangeSingle(ConfChangeType.ADD_VOTER, raft_id)
                    break
        if change is None:
            for raft_id in sorted((voters | learners) - wanted):
                change = ConfChangeSingle(ConfChangeType.REMOVE_NODE, raft_id)
                break
        if change is None:
            return
        outcome = driver.propose_conf_change(
            ConfChange(changes=(change,), transition=ConfChangeTransition.JOINT_IMPLICIT)
        )
        if outcome.accepted:
            self.log.info("membership change proposed", change=change.type.name,
                          raft_id=change.node_id, outcome=outcome.value)

    # ================================================================== txs in

    async def submit(self, raws: Sequence[bytes]) -> list[SubmitResult]:
        started = time.perf_counter()
        # The same bytes are the same tx: one already pending is not checked again (a tx
        # forwarded to the leader that gossip delivered first, a client's retry).
        tx_ids = [_tx_id(raw) for raw in raws]
        async with self._admission:
            # Txs here already (from gossip, held) are not checked again; _admit releases
            # them in this batch's order, once the fresh ones are checked.
            fresh = [index for index, tx_id in enumerate(tx_ids) if tx_id not in self.mempool]
            checked = await self._check([raws[index] for index in fresh])
            if self.metrics is not None:
                self.metrics.observe_stage("validation", time.perf_counter() - started)
            results: list[Any] = [_PendingResult(self.mempool, tx_id) for tx_id in tx_ids]
            for index, result in zip(fresh, checked, strict=True):
                results[index] = result
            admitted = time.perf_counter()
            answers, accepted = self._admit(results)
            if accepted and self.config.p2p.gossip_txs:
                try:
                    self._gossip_send.send_nowait([tx.raw for tx in accepted])
                except trio.WouldBlock:
                    # Gossip lags far behind: these txs still reach the leader by
                    # forwarding; only other followers' mempools miss them.
                    self.log.info("tx gossip queue full; batch not gossiped",
                                  txs=len(accepted))
        if self.metrics is not None:
            self.metrics.observe_stage("mempool", time.perf_counter() - admitted)
        if accepted:
            now = time.monotonic()
            for tx in accepted:
                self._submitted_at[tx.tx_id] = now
            self._builder_wakeup.set()
            self._forward_wakeup.set()
        return answers

    async def _check(self, raws: Sequence[bytes]) -> list[Any]:
        if len(raws) < 16:
            return check_batch(raws, self.chain_id)
        return await trio.to_thread.run_sync(
            lambda: check_batch(raws, self.chain_id, executor=self._executor,
                                workers=max(2, self.config.node.validation_workers))
        )

    def _admit(self, results: Sequence[Any], *, held_since: float | None = None,
               ) -> tuple[list[SubmitResult], list[Transaction]]:
        blocks = self._chain().blocks
        answers: list[SubmitResult] = []
        accepted: list[Transaction] = []
        for result in results:
            tx = result.tx
            if tx is None:
                answers.append(SubmitResult(None, result.code, result.message))
                if self.metrics is not None:
                    self.metrics.tx_rejected(result.code.name.lower())
                continue
            if blocks.transaction(tx.tx_id) is not None:
                answers.append(SubmitResult(tx.tx_id, ResultCode.DUPLICATE, "already committed"))
                continue
            code = self.mempool.add(tx, held_since=held_since)
            if code is ResultCode.OK:
                accepted.append(tx)
                answers.append(SubmitResult(tx.tx_id, ResultCode.OK))
            elif code is ResultCode.DUPLICATE:
                answers.append(SubmitResult(tx.tx_id, ResultCode.OK, "already pending"))
            else:
                answers.append(SubmitResult(tx.tx_id, code, "mempool is full; retry later"))
                if self.metrics is not None:
                    self.metrics.tx_rejected(code.name.lower())
        if self.metrics is not None:
            self.metrics.set_mempool(len(self.mempool), self.mempool.size_bytes)
        return answers, accepted

    async def _forward_loop(self) -> None:
        """Send this node's pending txs (not the held ones) to the leader, in arrival
        order; all of them again when the target changes, and again if still pending
        after REFORWARD_AFTER_SECONDS. Validators send to their leader; observers to the
        validator that proposed the newest block (most likely the leader), or else to any
        validator they are connected to, which forwards them on in the same order."""
        while True:
            with trio.move_on_after(REFORWARD_AFTER_SECONDS / 3):
                await self._forward_wakeup.wait()
            self._forward_wakeup = trio.Event()
            leader_peer = self._forward_target()
            if leader_peer != self._forward_peer:
                # Txs forwarded to the old target may be lost with it: all go again, at
                # once and in order. (Waiting out the re-forward delay let newer txs,
                # forwarded at once, reach the new leader first: the older ones then
                # committed as NONCE_STALE.)
                self._forward_peer = leader_peer
                self._forwarded_at.clear()
            if leader_peer is None:
                continue
            now = time.monotonic()
            pending = self.mempool.forwardable(now)
            # From the oldest tx that is due on, everything: a tx is never sent ahead of an
            # older one that needs sending again (the leader would commit it first, and
            # the older one would then be NONCE_STALE). Duplicates cost the leader little.
            first_due = next((index for index, tx in enumerate(pending) if now - (
                self._forwarded_at.get(tx.tx_id, -math.inf)) >= REFORWARD_AFTER_SECONDS), None)
            if first_due is None:
                continue
            due = pending[first_due:first_due + wire.FORWARD_TXS_MAX]
            for tx in due:
                self._forwarded_at[tx.tx_id] = now
            request = wire.Request(wire.RequestKind.FORWARD_TXS, 0, 0,
                                   tuple(tx.raw for tx in due))
            try:
                answer = await self._transport().request(leader_peer, request.encode(),
                                                         timeout_s=5.0)
                refused = [tx for tx, code in zip(
                    due, decode(wire.ForwardResult, answer,
                                size_bytes_max=wire.MESSAGE_BYTES_MAX).codes, strict=False)
                    if code not in (ResultCode.OK, ResultCode.DUPLICATE)]
            except (MedledgerError, OSError, trio.TooSlowError) as error:
                self.log.info("forward to leader failed", error=str(error))
                refused = due
            for tx in refused:  # due again at once (a full mempool there, say)
                self._forwarded_at.pop(tx.tx_id, None)
            if len(due) == wire.FORWARD_TXS_MAX:
                self._forward_wakeup.set()

    # ================================================================== gossip and sync

    async def _tx_gossip_loop(self) -> None:
        """Publish admitted txs in admission order, coalescing what a short wait gathers:
        py-libp2p's gossipsub costs about as much per message as per kilobyte, and clients
        at a steady rate submit many small batches. (The leader does not wait for gossip:
        followers forward their txs to it directly.)"""
        async for raws in self._gossip_receive:
            batch = list(raws)
            await trio.sleep(GOSSIP_COALESCE_SECONDS)
            while True:
                try:
                    batch.extend(self._gossip_receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._gossip_txs(batch)

    async def _gossip_txs(self, raws: list[bytes]) -> None:
        batch: list[bytes] = []
        size = 0
        for raw in raws:
            if batch and (size + len(raw) > wire.GOSSIP_BYTES_MAX
                          or len(batch) >= wire.FORWARD_TXS_MAX):
                await self._publish(topic_txs(self.chain_id), wire.TxBatch(tuple(batch)).encode())
                batch, size = [], 0
            batch.append(raw)
            size += len(raw) + 4
        if batch:
            await self._publish(topic_txs(self.chain_id), wire.TxBatch(tuple(batch)).encode())

    async def _block_gossip_loop(self) -> None:
        """Gossip the blocks the leader applied, in order. When gossip falls behind, the
        oldest blocks are dropped from the queue: observers that miss one sync it."""
        while True:
            await self._block_gossip_wakeup.wait()
            self._block_gossip_wakeup = trio.Event()
            while self._blocks_to_gossip:
                await self._gossip_block(self._blocks_to_gossip.popleft())

    async def _gossip_block(self, block: Block) -> None:
        data = block.encode()
        if len(data) <= wire.GOSSIP_BYTES_MAX:
            await self._publish(topic_blocks(self.chain_id), data)
        else:  # too big for one gossip message: announce the head, peers sync the block
            self._follow_wakeup.set()

    async def _publish(self, topic: str, data: bytes) -> None:
        try:
            await self._transport().publish(topic, data)
        except (MedledgerError, OSError) as error:
            self.log.info("gossip publish failed", topic=topic, error=str(error))

    async def _on_tx_gossip(self, peer_id: str, data: bytes) -> bool:
        try:
            batch = decode(wire.TxBatch, data, size_bytes_max=wire.MESSAGE_BYTES_MAX)
        except DecodeError:
            return False
        async with self._admission:
            fresh = [raw for raw in batch.txs if _tx_id(raw) not in self.mempool]
            if fresh:  # held: their owner forwards them to the leader, in order
                self._admit(await self._check(fresh), held_since=time.monotonic())
                self._builder_wakeup.set()
        return True

    async def _on_block_gossip(self, peer_id: str, data: bytes) -> bool:
        if self.driver is not None and self.is_validator:
            return True  # validators get blocks through raft
        chain = self._chain()
        try:
            block = decode(Block, data, size_bytes_max=wire.MESSAGE_BYTES_MAX)
        except DecodeError:
            return False
        if block.header.height == chain.height + 1 and not self._catching_up:
            try:
                applied = await self._apply_in_thread(chain.apply_synced_block, data)
            except (DecodeError, RemoteError) as error:
                self.log.info("gossiped block refused", error=str(error))
                return False
            self._publish_applied(applied.block, applied.tx_ids, applied.codes)
            self.mempool.remove_committed(applied.tx_ids)
            if applied.validator_changes:
                await self._validators_changed()
        elif block.header.height > chain.height + 1:
            self._follow_wakeup.set()
        return True

    async def _serve_request(self, peer_id: str, data: bytes) -> bytes:
        try:
            request = decode(wire.Request, data, size_bytes_max=wire.MESSAGE_BYTES_MAX)
        except DecodeError as error:
            raise RemoteError(f"bad sync request: {error}") from None
        chain = self._chain()
        if request.kind is wire.RequestKind.GET_HEAD:
            height, head_hash, _ = chain.head()
            return wire.Head(height, head_hash).encode()
        if request.kind is wire.RequestKind.GET_BLOCKS:
            if request.from_height < 1 or request.to_height < request.from_height:
                raise RemoteError("bad block range")
            last = min(request.to_height,
                       request.from_height + wire.SYNC_BLOCKS_PER_RESPONSE_MAX - 1)
            stored = await trio.to_thread.run_sync(
                lambda: chain.blocks.blocks(request.from_height, last,
                                            size_bytes_max=wire.SYNC_RESPONSE_BYTES_MAX)
            )
            return wire.BlockRange(tuple(block.block_bytes for block in stored)).encode()
        answers = await self.submit(request.txs)
        return wire.ForwardResult(
            tuple(int(answer.code) for answer in answers),
            tuple(answer.message[:512] for answer in answers),
        ).encode()

    async def _follow_loop(self) -> None:
        """Observers (and validators that fell behind a snapshot) fetch blocks by sync."""
        while True:
            with trio.move_on_after(FOLLOW_INTERVAL_SECONDS):
                await self._follow_wakeup.wait()
            self._follow_wakeup = trio.Event()
            if self.driver is not None and self.is_validator:
                continue  # validators apply through raft (and sync only for snapshots)
            while await self._sync_once():
                pass

    async def _sync_once(self, *, target_height: int | None = None) -> bool:
        """Fetch and apply one range of blocks from the best peer. True if it advanced."""
        chain = self._chain()
        ahead: list[tuple[int, str]] = []
        for peer in self._transport().peers():
            if not peer.connected:
                continue
            try:
                answer = await self._transport().request(
                    peer.peer_id, wire.Request(wire.RequestKind.GET_HEAD, 0, 0, ()).encode(),
                    timeout_s=3.0)
                head = decode(wire.Head, answer, size_bytes_max=1024)
            except (MedledgerError, OSError, trio.TooSlowError):
                continue
            if head.height > chain.height:
                ahead.append((head.height, peer.peer_id))
        # The highest head first; when that peer fails the range, the next one (one peer
        # whose streams fail must not stop us following: it did, 700 blocks behind).
        for height, peer_id in sorted(ahead, reverse=True):
            goal = height if target_height is None else min(height, target_height)
            if await self._sync_range(peer_id, goal):
                return True
        return False

    async def _sync_range(self, peer_id: str, goal: int) -> bool:
        """Fetch and apply blocks from our height + 1 towards ``goal`` from one peer."""
        chain = self._chain()
        if goal <= chain.height:
            return True  # gossip brought us there meanwhile (asking would be a bad range)
        request = wire.Request(wire.RequestKind.GET_BLOCKS, chain.height + 1, goal, ())
        self._catching_up = True
        try:
            answer = await self._transport().request(peer_id, request.encode(), timeout_s=30.0)
            blocks = decode(wire.BlockRange, answer, size_bytes_max=wire.MESSAGE_BYTES_MAX)
            for data in blocks.blocks:
                applied = await self._apply_in_thread(chain.apply_synced_block, data)
                self._publish_applied(applied.block, applied.tx_ids, applied.codes)
                self.mempool.remove_committed(applied.tx_ids)
                if applied.validator_changes:
                    await self._validators_changed()
        except (MedledgerError, OSError, trio.TooSlowError) as error:
            self.log.info("block sync failed", peer=peer_id, error=str(error))
            return False
        finally:
            self._catching_up = False
        return bool(blocks.blocks)

    # ================================================================== NodeAPI

    def _chain(self) -> Chain:
        assert self.chain is not None, "storage is not open yet"
        return self.chain

    def status(self) -> NodeStatus:
        chain = self._chain()
        driver = self.driver
        role, term, leader, commit = "observer", 0, None, chain.applied_index()
        if driver is not None:
            raft_status = driver.raw_node.status()
            role = raft_status.soft_state.role.value
            term = raft_status.hard_state.term
            commit = raft_status.hard_state.commit
            leader = self._peer_of_raft(raft_status.soft_state.leader, {})
            if self.public_key in self._validators and raft_node_id(self.public_key) in (
                raft_status.conf_state.learners
            ):
                role = "learner"
        extra: dict[str, Any] = {}
        if driver is not None:
            conf = driver.raw_node.status().conf_state
            names = {raft_id: peer for raft_id, peer in self._validators.values()}
            extra["raft_voters"] = sorted(names.get(i, str(i)) for i in conf.voters)
            extra["raft_learners"] = sorted(names.get(i, str(i)) for i in conf.learners)
        return NodeStatus(
            node_id=self._transport().peer_id,
            chain_id=self.chain_id,
            role=role,
            term=term,
            leader_id=leader,
            height=chain.height,
            head_hash=chain.head_hash,
            applied_index=chain.applied_index(),
            commit_index=commit,
            mempool_txs=len(self.mempool),
            mempool_bytes=self.mempool.size_bytes,
            peers=sum(1 for peer in self._transport().peers() if peer.connected),
            validators=[peer for _, peer in self._validators.values()],
            version=VERSION,
            extra=extra,
        )

    def health(self) -> dict[str, Any]:
        return {
            "started": self._started,
            "seconds_since_last_commit": round(time.monotonic() - self._last_commit_monotonic, 3),
            "role": self.status().role,
            "disk_full": self.disk.full,
        }

    def ready(self) -> bool:
        if not self._started or self.disk.full:
            return False
        if self.driver is None:
            return any(peer.connected for peer in self._transport().peers())
        return bool(self.driver.leader)

    def peers(self) -> Sequence[PeerInfo]:
        validator_peers = {peer for _, peer in self._validators.values()}
        return [
            PeerInfo(state.peer_id, state.addresses, state.peer_id in validator_peers,
                     state.connected, state.raft_stream)
            for state in self._transport().peers()
        ]

    def head(self) -> tuple[int, bytes]:
        height, head_hash, _ = self._chain().head()
        return height, head_hash

    def block_by_height(self, height: int) -> Block | None:
        return self._chain().block_by_height(height)

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        chain = self._chain()
        stored = chain.blocks.block_by_hash(block_hash)
        return None if stored is None else chain.block_by_height(stored.height)

    def tx(self, tx_id: bytes) -> TxLocation | None:
        chain = self._chain()
        found = chain.blocks.transaction(tx_id)
        if found is None:
            return None
        height, position, code = found.height, found.position, found.result
        block = chain.block_by_height(height)
        assert block is not None, f"tx index points at missing block {height}"
        return TxLocation(tx_id, block.txs[position], height, position, code, block,
                          merkle_proof(block.tx_ids(), position))

    def tx_status(self, tx_id: bytes) -> TxStatus:
        found = self._chain().blocks.transaction(tx_id)
        if found is not None:
            return TxStatus(tx_id, "committed", found.height, found.result)
        if tx_id in self.mempool:
            return TxStatus(tx_id, "pending")
        return TxStatus(tx_id, "unknown")

    def subscribe_blocks(self) -> AsyncIterator[Block]:
        send, receive = trio.open_memory_channel[Block](SUBSCRIBER_BUFFER_EVENTS)
        self._subscribers.blocks.append(send)
        return _iterate(receive)

    def subscribe_tx_results(self) -> AsyncIterator[TxResultEvent]:
        send, receive = trio.open_memory_channel[TxResultEvent](SUBSCRIBER_BUFFER_EVENTS)
        self._subscribers.results.append(send)
        return _iterate(receive)

    def app_query(self, method: str, params: dict[str, Any]) -> Any:
        from ledger.app import queries

        given = {name: value for name, value in params.items() if value is not None}
        # "Now" for a query is the last block's time: the ledger's clock, not this host's.
        return queries.run_query(self._chain().state, method, given,
                                 now_ms=self._chain().head_timestamp_ms)


def app_method_specs() -> list[Any]:
    """The application's queries as RPC method specs (params typed for validation and for
    the OpenRPC document)."""
    from ledger.app.queries import QUERY_METHODS
    from node.rpc.app_methods import app_method_from_description

    type_names = {str: "identifier", int: "integer", bytes: "bytes", bool: "boolean"}
    specs = []
    for name, method in QUERY_METHODS.items():
        params = [
            {"name": param, "type": type_names[param_type],
             "required": param not in method.optional}
            for param, param_type in method.params.items()
        ]
        summary = name.split("_", 1)[1]
        specs.append(app_method_from_description(
            {"name": name, "summary": f"application query {summary}", "params": params,
             "result": "JSON view of the ledger state, or null when not found"}))
    return specs


class _PendingResult:
    """Stands for a check result of a tx already in the mempool (admitted before)."""

    __slots__ = ("code", "message", "tx")

    def __init__(self, mempool: Mempool, tx_id: bytes) -> None:
        self.tx = mempool.get(tx_id)
        # Gone from the mempool since: it was committed meanwhile.
        self.code = ResultCode.OK if self.tx is not None else ResultCode.DUPLICATE
        self.message = "" if self.tx is not None else "already committed"


async def _iterate(receive: trio.MemoryReceiveChannel[Any]) -> AsyncIterator[Any]:
    async with receive:
        async for item in receive:
            yield item


def _tx_id(raw: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(raw).digest()


class _RaftLogger:
    def __init__(self, log: Any) -> None:
        self._log = log.bind(component="raft")

    def info(self, event: str, **fields: object) -> None:
        self._log.info(event, **fields)

    def warning(self, event: str, **fields: object) -> None:
        self._log.warning(event, **fields)


__all__ = ["ZERO_HASH", "Entry", "Node"]
