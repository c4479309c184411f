"""The node: lifecycle, the services it is made of, and the NodeAPI the RPC serves.

::

    Node.run                       (one root nursery, each service started with .start)
     ├── transport     node/p2p: libp2p host (raft streams, gossip, sync)
     ├── raft driver   node/raft_driver: RawNode tick/step/propose -> persist, send,
     │                 hand committed entries to the applier, advance
     ├── applier       node/applier: committed entries and peers' blocks -> the chain,
     │                 one at a time; publishes an Applied event for each
     ├── builder       node/builder: leader only, cuts and proposes blocks (pipelined)
     ├── admission     node/admission: submit, check, admit; tx gossip in and out
     ├── forwarder     node/forwarding: this node's txs to the leader, in order
     ├── follower      node/follower: block sync and block gossip; serves peers' reads
     ├── pruner        node/pruning: observers with [storage] retain_blocks delete old
     │                 block bodies in the background, in bounded batches
     ├── membership    node/membership: the validator set; raft conf changes (leader)
     └── rpc server    node/rpc: JSON-RPC, WebSocket, /metrics, /healthz, /readyz

Applied blocks flow one way: the applier publishes, the mempool, builder, forwarder,
membership, block gossip, feeds and metrics listen (node/events). A service task that
returns or raises brings the whole node down (the nursery cancels the rest and the
exception propagates to ``medledger start``, which logs it and exits non-zero).
SIGTERM/SIGINT cancel the root scope; shutdown work is shielded and bounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import trio

from consensus.state import Role, SoftState
from ledger.app import Genesis
from ledger.block import Block
from ledger.errors import DecodeError, RemoteError
from ledger.merkle import merkle_proof
from node.admission import Admission
from node.api import (
    CertifiedBlock,
    Handover,
    NodeStatus,
    PeerInfo,
    SubmitResult,
    TxLocation,
    TxResultEvent,
    TxStatus,
)
from node.applier import Applier
from node.bootstrap import bootstrap_raft_log, make_driver, make_libp2p_transport, open_store
from node.builder import Builder
from node.certify import Certifier
from node.chain import Chain
from node.clock import Clock, SystemClock
from node.config import NodeConfig, trust_hash_bytes
from node.diskfull import DiskFullGuard, free_bytes
from node.events import Applied, AppliedEvents
from node.feeds import Feeds
from node.follower import Follower
from node.forwarding import Forwarder
from node.genesis import genesis_hash, load_genesis
from node.health import Health
from node.keys import raft_node_id, read_key_file
from node.logs import get_logger
from node.membership import Membership
from node.mempool import Mempool
from node.p2p import wire
from node.p2p.transport import Transport
from node.pruning import Pruner
from node.raft_driver import APPLY_QUEUE_ENTRIES_MAX, ApplyItem, RaftDriver, SnapshotToRestore
from node.snapshot_sessions import SnapshotChunkData, SnapshotOpened, SnapshotSessions
from node.statesync import Snapshots, StateSyncer
from node.trailproofs import TrailProof, TrailProofs
from node.version import VERSION
from storage.store import Store

# Grace period for in-flight work at shutdown.
SHUTDOWN_GRACE_SECONDS = 5.0


class Node:
    """A medledger node. Construct, then ``await nursery.start(node.run)``."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        transport_factory: Callable[[Node], Transport] | None = None,
        rpc_enabled: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.key = read_key_file(config.key_file)
        self.genesis: Genesis = load_genesis(config.genesis_file)
        self.chain_id = self.genesis.chain_id
        self.public_key = self.key.public_key
        self._transport_factory = transport_factory
        self._rpc_enabled = rpc_enabled
        self.clock: Clock = clock or SystemClock()
        self.mempool = Mempool(txs_max=config.mempool.max_txs, bytes_max=config.mempool.max_bytes)
        self.log = get_logger(chain=self.chain_id)
        self.disk = DiskFullGuard(config.data_dir, self.log)
        self.events = AppliedEvents()
        self.feeds = Feeds()
        self.store: Store | None = None
        self.chain: Chain | None = None
        self.transport: Transport | None = None
        self.driver: RaftDriver | None = None
        self.metrics: Any = None
        self.rpc_port: int | None = None
        self._executor: Executor | None = None
        self._nursery: trio.Nursery | None = None
        self._apply_send: trio.MemorySendChannel[ApplyItem] | None = None
        self._started = False

    @property
    def is_validator(self) -> bool:
        return self.membership.is_validator

    # ================================================================== lifecycle

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await self.disk.wait_for_space(what="opening the database")
        await trio.to_thread.run_sync(self._open_storage)
        assert self.store is not None and self.chain is not None
        self.disk.reopen = self._reopen_storage
        self._make_services(self.chain)
        # Validators' raft log is the write-ahead log of their applies; observers have
        # none and sync every apply (see Chain.sync_applies).
        self.chain.sync_applies = not self.is_validator
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

    def _open_storage(self) -> None:
        from node.metrics import Metrics

        self.metrics = Metrics()
        self.store = open_store(self.config.data_dir, self.genesis, self.config.genesis_file)
        workers = self.config.node.validation_workers
        if workers > 0:
            import multiprocessing

            self._executor = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("forkserver"))
        self.chain = Chain(chain_id=self.chain_id, store=self.store, executor=self._executor,
                           workers=max(2, workers), checked_lookup=self.mempool.get,
                           genesis_time_ms=self.genesis.genesis_time_ms, sync_applies=False)

    def _make_services(self, chain: Chain) -> None:
        driver = self._driver
        self.membership = Membership(chain=chain, public_key=self.public_key, log=self.log,
                                     driver=driver, start_consensus=self._start_consensus)
        self.admission = Admission(
            chain=chain, mempool=self.mempool, chain_id=self.chain_id, log=self.log,
            metrics=self.metrics, gossip_txs=self.config.p2p.gossip_txs,
            executor=self._executor, check_workers=max(2, self.config.node.validation_workers),
            clock=self.clock)
        self.forwarder = Forwarder(mempool=self.mempool, membership=self.membership,
                                   log=self.log, driver=driver, clock=self.clock)
        self.certifier = Certifier(chain=chain, key=self.key,
                                   log=self.log.bind(component="certify"),
                                   on_certificate=lambda: self.builder.wake(),
                                   validator_peers=lambda: self.membership.validator_peers())
        self.trail_proofs = TrailProofs(chain, self.certifier.certificate)
        self.builder = Builder(chain=chain, mempool=self.mempool, key=self.key,
                               config=self.config.block, log=self.log, metrics=self.metrics,
                               driver=driver, certificate=self.certifier.certificate,
                               clock=self.clock)
        self.applier = Applier(chain=chain, disk=self.disk, events=self.events, log=self.log,
                               metrics=self.metrics, driver=driver,
                               restore=lambda item: self.follower.restore_snapshot(item))
        sync = self.config.sync
        self.follower = Follower(chain=chain, applier=self.applier, membership=self.membership,
                                 chain_id=self.chain_id, log=self.log, driver=driver,
                                 clock=self.clock,
                                 state_sync=self._state_sync_to, trust=self._trust_point())
        self.state_snapshots = Snapshots(chain, interval_blocks=sync.snapshot_interval_blocks,
                                         kept=sync.snapshots_kept, log=self.log)
        self.events.subscribe(self.state_snapshots.on_applied)
        self.pruner: Pruner | None = None
        if self.config.storage.retain_blocks > 0:
            self.pruner = Pruner(chain=chain, applier=self.applier,
                                 retain_blocks=self.config.storage.retain_blocks,
                                 is_validator=lambda: self.is_validator, log=self.log)
            self.events.subscribe(self.pruner.on_applied)
        # Backups (`medledger snapshot save --rpc`): admin_snapshotBegin/Chunk/End.
        self.snapshot_sessions = SnapshotSessions(
            store=self._store, chain_id=self.chain_id, genesis_hash=genesis_hash(self.genesis),
            log=self.log.bind(component="snapshot_sessions"), clock=self.clock)
        self.probes = Health(clock=self.clock, stall_timeout_s=self.config.node.stall_timeout_s,
                             chain=chain, follower=self.follower, disk=self.disk,
                             driver=driver, is_validator=lambda: self.is_validator)
        self.admission.on_admitted += [self.builder.wake, self.forwarder.wake]
        for listener in (self.certifier.on_applied, self.trail_proofs.on_applied,
                         self.builder.on_applied,
                         self.admission.on_applied,
                         self.forwarder.on_applied, self._on_applied, self.feeds.on_applied,
                         self.membership.on_applied, self.follower.on_applied,
                         self.probes.on_applied):
            self.events.subscribe(listener)

    def _reopen_storage(self) -> None:
        """After a write failed for want of space (see node.diskfull)."""
        assert self.store is not None and self.chain is not None
        self.snapshot_sessions.close_all()
        self.state_snapshots.close()  # LevelDB snapshots do not survive a reopen
        self.trail_proofs.close()
        self.store.reopen()
        self.chain.storage_reopened()

    def _close(self) -> None:
        if getattr(self, "state_snapshots", None) is not None:
            self.state_snapshots.close()
        if getattr(self, "trail_proofs", None) is not None:
            self.trail_proofs.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        sessions: SnapshotSessions | None = getattr(self, "snapshot_sessions", None)
        if sessions is not None:
            sessions.close_all()
        if self.store is not None:
            self.store.close()

    async def _start_services(self, nursery: trio.Nursery) -> None:
        self.transport = self._make_transport()
        await nursery.start(self.transport.run)
        self.membership.attach(self.transport)
        self.transport.on_request(self._serve_request)
        self.admission.attach(self.transport)
        self.forwarder.attach(self.transport)
        self.follower.attach(self.transport)
        self.certifier.attach(self.transport)
        send_channel, receive_channel = trio.open_memory_channel[ApplyItem](
            APPLY_QUEUE_ENTRIES_MAX)
        self._nursery = nursery
        self._apply_send = send_channel
        if self.is_validator:
            await self._start_consensus()
        await nursery.start(self.applier.run, receive_channel)
        for service in (self.follower, self.admission, self.forwarder, self.membership,
                        self.state_snapshots, self.certifier):
            await nursery.start(service.run)
        if self.pruner is not None:
            await nursery.start(self.pruner.run)
        await nursery.start(self.snapshot_sessions.run)
        if self._rpc_enabled:
            from node.rpc.app_methods import app_method_specs
            from node.rpc.server import RpcServer

            server = RpcServer(self, metrics=self.metrics, host=self.config.rpc.host,
                               port=self.config.rpc.port,
                               admin_token=self.config.rpc.admin_token or None,
                               tls_files=self.config.rpc_tls_files,
                               log=self.log.bind(component="rpc"))
            server.register_app_methods(app_method_specs())
            self.rpc_port = await nursery.start(server.run)

    async def _start_consensus(self) -> None:
        """Run raft here: at start for a validator, or when governance made this node one
        (it then joins as a learner and is promoted once caught up)."""
        assert self._nursery is not None and self._apply_send is not None
        assert self.driver is None and self.store is not None
        self.driver = self._make_driver(self._apply_send)
        snapshot = self.store.raft.snapshot()
        if snapshot.metadata.index > self._chain().applied_index():
            # A snapshot was installed but the blocks up to it were not all applied
            # before a stop: finish catching up before anything later is applied.
            self._apply_send.send_nowait(
                SnapshotToRestore(snapshot.metadata.index, snapshot.data))
        self._transport().on_frame(self.driver.handle_frame)
        await self._nursery.start(self.driver.run)
        await self._nursery.start(self.builder.run)
        self.log.info("consensus started", raft_id=raft_node_id(self.public_key))

    def _make_transport(self) -> Transport:
        if self._transport_factory is not None:
            return self._transport_factory(self)
        return make_libp2p_transport(self.config, self.genesis, self.key.seed, self.log)

    def _make_driver(self, apply_channel: trio.MemorySendChannel[ApplyItem]) -> RaftDriver:
        assert self.store is not None
        bootstrap_raft_log(self.store, self.genesis, self.public_key)
        return make_driver(store=self.store, public_key=self.public_key,
                           config=self.config, membership=self.membership,
                           transport=self._transport(), apply_channel=apply_channel,
                           on_soft_state=self._on_soft_state, disk=self.disk,
                           metrics=self.metrics, log=self.log)

    # ================================================================== wiring

    def _driver(self) -> RaftDriver | None:
        return self.driver

    def _store(self) -> Store:
        assert self.store is not None, "storage is not open yet"
        return self.store

    def _chain(self) -> Chain:
        assert self.chain is not None, "storage is not open yet"
        return self.chain

    def _transport(self) -> Transport:
        assert self.transport is not None
        return self.transport

    def _on_soft_state(self, soft: SoftState) -> None:
        if self.metrics is not None:
            self.metrics.set_raft_role(soft.role.value)
        if soft.role is Role.LEADER:
            self.builder.wake()
        else:
            self.forwarder.wake()

    def _on_applied(self, event: Applied) -> None:
        applied = event.applied
        if applied is None:
            return
        if self.metrics is not None:
            self.metrics.block_applied(applied.block.header.height, len(applied.tx_ids),
                                       applied.codes)

    async def _serve_request(self, peer_id: str, data: bytes) -> bytes:
        try:
            request = wire.decode_message(wire.Request, data)
        except DecodeError as error:
            raise RemoteError(f"bad sync request: {error}") from None
        if request.kind is wire.RequestKind.FORWARD_TXS:
            return await self.admission.serve_forward(request)
        if request.kind is wire.RequestKind.VOTES:
            return await self.certifier.serve_votes(peer_id, request)
        if request.kind in (wire.RequestKind.GET_SNAPSHOTS, wire.RequestKind.GET_SNAPSHOT_MANIFEST,
                            wire.RequestKind.GET_SNAPSHOT_CHUNK):
            return await self.state_snapshots.serve(request)
        return await self.follower.serve(request)

    def _trust_point(self) -> tuple[int, bytes] | None:
        """``[sync] trust_height`` and ``trust_hash``, when set."""
        sync = self.config.sync
        trust_hash = trust_hash_bytes(sync)
        if not sync.trust_height or trust_hash is None:
            return None
        return sync.trust_height, trust_hash

    async def _state_sync_to(self, trust_height: int, trust_hash: bytes, wait_s: float) -> None:
        """Join from a verified snapshot below the trusted block (node.statesync); raises
        StateSyncError with the reason when no honest peer holds a usable one."""
        metrics = self.metrics
        syncer = StateSyncer(
            chain=self._chain(), transport=self._transport(), trust_height=trust_height,
            trust_hash=trust_hash, apply_block=self.applier.apply_from_peer,
            log=self.log.bind(component="statesync"), wait_s=wait_s,
            on_bad_answer=lambda peer: metrics.statesync_bad_answers_total.labels(
                peer=peer).inc())
        await syncer.run()

    # ================================================================== NodeAPI

    async def submit(self, raws: Sequence[bytes]) -> list[SubmitResult]:
        return await self.admission.submit(raws)

    def status(self) -> NodeStatus:
        chain = self._chain()
        driver = self.driver
        role, term, leader, commit = "observer", 0, None, chain.applied_index()
        behind = self.probes.behind()
        extra: dict[str, Any] = {"data_dir_free_bytes": free_bytes(self.config.data_dir),
                                 "behind": behind, "stalled": self.probes.stalled(behind),
                                 "oldest_block_height": chain.blocks.oldest_held_height()}
        if driver is not None:
            raft_status = driver.raw_node.status()
            role = raft_status.soft_state.role.value
            term = raft_status.hard_state.term
            commit = raft_status.hard_state.commit
            leader = self.membership.peer_of_raft(raft_status.soft_state.leader)
            conf = raft_status.conf_state
            if self.is_validator and raft_node_id(self.public_key) in conf.learners:
                role = "learner"
            names = {raft_id: peer for raft_id, peer in self.membership.validators.values()}
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
            validators=[peer for _, peer in self.membership.validators.values()],
            version=VERSION,
            extra=extra,
        )

    def health(self) -> dict[str, Any]:
        return {"started": self._started, "role": self.status().role, **self.probes.view()}

    def ready(self) -> bool:
        return self._started and self.probes.ready()

    async def hand_over_leadership(self) -> None:
        """Before a validator that leads stops (within two election timeouts)."""
        if self.driver is not None:
            consensus = self.config.consensus
            await self.driver.hand_over_leadership(
                timeout_s=2 * consensus.tick_ms * consensus.election_ticks / 1000)

    def statistics(self) -> dict[str, dict[str, int]]:
        """Each service's counters (for logs and tests)."""
        names = ("admission", "forwarder", "builder", "applier", "follower", "membership",
                 "feeds", "pruner", "snapshot_sessions")
        return {name: getattr(self, name).statistics() for name in names
                if getattr(self, name) is not None}

    def peers(self) -> Sequence[PeerInfo]:
        validator_peers = self.membership.validator_peers()
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

    def validator_handovers(self, up_to_height: int) -> list[Handover]:
        chain = self._chain()
        handovers: list[Handover] = []
        for change_height, set_hash in chain.validator_changes():
            if change_height == 0:
                continue  # the genesis set
            if change_height >= min(up_to_height, chain.height):
                break
            # The first header naming the new set as its successor's: the one naming
            # that state (headers name state heights one at a time, a few behind).
            for height in range(change_height + 1, min(up_to_height, chain.height) + 1):
                block = chain.block_by_height(height)
                assert block is not None
                if block.header.next_validators_hash == set_hash:
                    certified = self.certificate(height)
                    if certified is None:
                        return handovers  # its certificate is still being voted
                    handovers.append(Handover(block, certified.certificate,
                                              tuple(chain.validator_set(set_hash))))
                    break
        return handovers

    async def trail_proof(self, patient: str) -> TrailProof:
        return await trio.to_thread.run_sync(self.trail_proofs.prove, patient)

    def certificate(self, height: int) -> CertifiedBlock | None:
        chain = self._chain()
        if height < 1 or height > chain.height:
            return None
        block = chain.block_by_height(height)
        assert block is not None, "blocks are held from the oldest held one to the head"
        if height < chain.height:
            following = chain.block_by_height(height + 1)
            assert following is not None and following.certificate is not None
            certificate, in_block = following.certificate, height + 1
        else:
            pending = self.certifier.certificate(height, block.hash)
            if pending is None:
                return None
            certificate, in_block = pending, None
        set_hash = block.header.validators_hash
        return CertifiedBlock(certificate, set_hash, tuple(chain.validator_set(set_hash)),
                              in_block)

    def roots(self, height: int) -> tuple[bytes, bytes] | None:
        chain = self._chain()
        if height > chain.height:
            return None
        roots = chain.roots(height)
        return roots.results_root, roots.state_root

    async def snapshot_begin(self) -> SnapshotOpened:
        return await self.snapshot_sessions.begin()

    async def snapshot_chunk(self, session_id: str, sequence: int) -> SnapshotChunkData:
        return await self.snapshot_sessions.chunk(session_id, sequence)

    def snapshot_end(self, session_id: str) -> None:
        self.snapshot_sessions.end(session_id)

    def subscribe_blocks(self) -> AsyncIterator[Block]:
        return self.feeds.subscribe_blocks()

    def subscribe_tx_results(self) -> AsyncIterator[TxResultEvent]:
        return self.feeds.subscribe_tx_results()

    def app_query(self, method: str, params: dict[str, Any]) -> Any:
        from ledger.app import queries

        given = {name: value for name, value in params.items() if value is not None}
        # "Now" for a query is the last block's time: the ledger's clock, not this host's.
        return queries.run_query(self._chain().state, method, given,
                                 now_ms=self._chain().head_timestamp_ms)


__all__ = ["Node"]
