"""Bringing a node's storage and raft up: the genesis record, the genesis validators'
bootstrap snapshot, and the RawNode over the raft log."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import trio

from consensus.config import Config as RaftConfig
from consensus.raw_node import RawNode
from consensus.state import SoftState
from consensus.types import ConfState, HardState, Snapshot, SnapshotMetadata
from ledger import app as application
from ledger.app import Genesis
from ledger.app.layout import STATE_LAYOUT_VERSION
from ledger.errors import ConfigError
from ledger.evaluation import genesis_state
from node.config import ConsensusSection, NodeConfig
from node.diskfull import DiskFullGuard
from node.genesis import genesis_hash
from node.keys import raft_node_id
from node.membership import Membership
from node.p2p import wire
from node.p2p.transport import Transport
from node.raft_driver import ApplyItem, RaftDriver
from storage.store import Store

# The bootstrap snapshot every genesis validator starts from.
BOOTSTRAP_INDEX = 1
BOOTSTRAP_TERM = 1


def open_store(data_dir: Any, genesis: Genesis, genesis_file: Any) -> Store:
    """The node's store, with the genesis record (height 0) written on first open; a
    data directory of another genesis is refused."""
    store = Store.open(data_dir, chain_id=genesis.chain_id)
    try:
        if store.blocks.head() is None:
            write_genesis_record(store, genesis)
        else:
            stored = store.blocks.block(0)
            if stored is not None and stored.block_hash != genesis_hash(genesis):
                raise ConfigError(
                    f"{data_dir} holds a chain of another genesis (hash "
                    f"{stored.block_hash.hex()}) than {genesis_file} (hash "
                    f"{genesis_hash(genesis).hex()}): use that chain's genesis file, or a new "
                    "[node] data_dir for this one")
    except BaseException:
        store.close()
        raise
    return store


def write_genesis_record(store: Store, genesis: Genesis) -> None:
    """Height 0, the genesis record: its hash is block 1's previous hash, its state is
    the consortium's initial members and parameters (with the state commitment's
    accumulator over them)."""
    store.blocks.apply_block(
        height=0, block_hash=genesis_hash(genesis), block_bytes=genesis.encode(),
        tx_ids=[], tx_results=[], state_writes=genesis_state(application.genesis_writes(genesis)),
        applied_index=0,
    )


def bootstrap_raft_log(store: Store, genesis: Genesis, public_key: bytes) -> None:
    """A genesis validator's fresh data directory: every genesis validator starts from the
    same snapshot at index 1 holding the genesis configuration (as etcd bootstraps). The
    log then starts at 2, so a node that joins later can only be brought up to date from
    a snapshot: it learns the configuration from it, and every conf change after it from
    the log."""
    raft_storage = store.raft
    _, conf_state = raft_storage.initial_state()
    genesis_validator = any(member.validator and member.node_key == public_key
                            for member in genesis.members)
    fresh = raft_storage.last_index() == 0 and raft_storage.snapshot().is_empty
    if not (fresh and not conf_state.voters and genesis_validator):
        return
    voters = tuple(sorted(raft_node_id(member.node_key) for member in genesis.members
                          if member.validator and member.node_key is not None))
    bootstrap = Snapshot(
        SnapshotMetadata(index=BOOTSTRAP_INDEX, term=BOOTSTRAP_TERM,
                         conf_state=ConfState(voters=voters)),
        wire.Head(0, genesis_hash(genesis)).encode(),
    )
    raft_storage.persist(
        hard_state=HardState(term=BOOTSTRAP_TERM, vote=0, commit=BOOTSTRAP_INDEX),
        entries=(), snapshot=bootstrap, sync=True,
    )


def make_libp2p_transport(config: NodeConfig, genesis: Genesis, seed: bytes,
                          log: Any) -> Transport:
    """The node's libp2p transport, which greets peers with the chain's id and genesis
    hash; a p2p port another process listens on is refused here, at start (py-libp2p
    itself would share it: SO_REUSEPORT)."""
    from node.p2p.hello import Hello
    from node.p2p.host import Libp2pTransport
    from node.p2p.libp2p_glue import refuse_port_in_use

    refuse_port_in_use(config.p2p.listen)
    return Libp2pTransport(seed=seed, listen=config.p2p.listen,
                           bootstrap=config.p2p.bootstrap,
                           open_for_observers=config.p2p.open_for_observers, log=log,
                           hello=Hello(genesis.chain_id, genesis_hash(genesis),
                                       STATE_LAYOUT_VERSION))


def make_driver(*, store: Store, public_key: bytes, config: NodeConfig,
                membership: Membership, transport: Transport,
                apply_channel: trio.MemorySendChannel[ApplyItem],
                on_soft_state: Callable[[SoftState], None], disk: DiskFullGuard,
                metrics: Any, log: Any) -> RaftDriver:
    """The raft driver of a validator, over its raft log and the transport."""
    consensus = config.consensus
    # Validators removed later stay reachable for the messages raft still sends them.
    by_raft_id = {raft_id: peer for raft_id, peer in membership.validators.values()}
    return RaftDriver(
        raw_node=make_raw_node(store, public_key, consensus, log),
        storage=store.raft,
        transport=transport,
        peer_of=lambda raft_id: membership.peer_of_raft(raft_id, by_raft_id),
        node_of=membership.raft_of_peer,
        tick_seconds=consensus.tick_ms / 1000,
        apply_channel=apply_channel,
        on_soft_state=on_soft_state,
        snapshot_entries=consensus.snapshot_entries,
        compaction_margin_entries=consensus.compaction_margin_entries,
        disk=disk,
        metrics=metrics,
        log=log,
    )


def make_raw_node(store: Store, public_key: bytes, consensus: ConsensusSection,
                  log: Any) -> RawNode:
    raft_storage = store.raft
    # Raft hands out committed entries after its applied index, which must lie in its
    # log: a node that followed by sync before joining has applied more than its
    # (empty) raft log holds; the chain skips entries it has applied already.
    snapshot_index = raft_storage.snapshot().metadata.index
    applied = max(snapshot_index,
                  min(store.blocks.applied_index(), raft_storage.last_index()))
    return RawNode(
        RaftConfig(
            node_id=raft_node_id(public_key),
            election_timeout_ticks=consensus.election_ticks,
            heartbeat_interval_ticks=consensus.heartbeat_ticks,
            applied_index=applied,
        ),
        raft_storage,
        random.Random(),  # election jitter only: any source of randomness will do
        _RaftLogger(log),
    )


class _RaftLogger:
    """The consensus core's log lines, in the node's log. The core names its node by raft
    id (``node``); the node's lines name it by peer id, so the core's is ``raft_id``."""

    def __init__(self, log: Any) -> None:
        self._log = log.bind(component="raft")

    def info(self, event: str, **fields: object) -> None:
        self._log.info(event, **_renamed(fields))

    def warning(self, event: str, **fields: object) -> None:
        self._log.warning(event, **_renamed(fields))


def _renamed(fields: dict[str, object]) -> dict[str, object]:
    if "node" in fields:
        fields["raft_id"] = fields.pop("node")
    return fields
