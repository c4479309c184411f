"""Health that tells the truth (in process: one validator and one observer on the
in-memory transport, real LevelDB). An observer is ready only once a peer answered its
head and it is within a few blocks of it; its seconds_since_last_commit counts synced and
gossiped blocks; an observer that applies nothing while its peers advance is stalled
after ``[node] stall_timeout_s``: /healthz and /readyz then answer 503."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import trio

from consensus.state import Role
from ledger.bodies import PartyKind
from ledger.errors import RemoteError
from ledger.sdk.builders import TransactionBuilder
from ledger.sdk.devnet import devnet_admin_key
from node.clock import ManualClock
from node.config import load_config
from node.health import READY_LAG_BLOCKS_MAX
from node.p2p.memory import MemoryNetwork, MemoryTransport
from node.rpc.app import RpcApplication
from node.service import Node
from node.tools.devnet import create_devnet

CHAIN_ID = "medledger-health"
STALL_TIMEOUT_S = 30
TIMEOUT_S = 60


async def commit_blocks(validator: Node, builder: TransactionBuilder, first: int,
                        count: int) -> None:
    """``count`` txs, one block each (submitted one at a time, each awaited)."""
    for index in range(first, first + count):
        tx = builder.register_party(
            party_id=f"pat-health-{index}", kind=PartyKind.PATIENT,
            signing_key=hashlib.sha256(b"s%d" % index).digest(),
            encryption_key=hashlib.sha256(b"e%d" % index).digest())
        await validator.submit([tx.raw])
        while validator.tx_status(tx.tx_id).state != "committed":
            await trio.sleep(0.01)


class HealthView:
    """The RPC app's /healthz and /readyz answers, without an HTTP server."""

    def __init__(self, node: Node) -> None:
        server: Any = type("S", (), {"node": node, "log": None})()
        self._app: Any = RpcApplication.__new__(RpcApplication)
        self._app.server = server

    def healthz(self) -> tuple[int, dict[str, Any]]:
        return self._app._healthz()

    def readyz(self) -> tuple[int, dict[str, Any]]:
        return self._app._readyz()


async def test_an_observer_is_ready_only_near_its_peers_head_and_stalls_honestly(
        tmp_path: Path) -> None:
    nodes = create_devnet(tmp_path, validators=1, observers=1, rpc_port=0, chain_id=CHAIN_ID)
    environ = {"MEDLEDGER_BLOCK_INTERVAL_MS": "2",
               "MEDLEDGER_NODE_STALL_TIMEOUT_S": str(STALL_TIMEOUT_S)}
    configs = [load_config(tmp_path / node.name / "node.toml", environ=environ)
               for node in nodes]
    network = MemoryNetwork()
    validator = Node(configs[0], rpc_enabled=False,
                     transport_factory=lambda own: MemoryTransport(network, seed=own.key.seed))
    clock = ManualClock(monotonic=1_000.0)
    observer = Node(configs[1], rpc_enabled=False, clock=clock,
                    transport_factory=lambda own: MemoryTransport(
                        network, seed=own.key.seed, bootstrap=(validator.transport.peer_id,)
                        if validator.transport else ()))
    builder = TransactionBuilder(CHAIN_ID, devnet_admin_key("hospital-a"))
    view = HealthView(observer)
    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(validator.run)
            while validator.driver is None or validator.driver.role is not Role.LEADER:
                await trio.sleep(0.02)
            await commit_blocks(validator, builder, 0, READY_LAG_BLOCKS_MAX + 5)
            assert validator.ready()

            # Started far behind: not ready until it has caught up to its peer's head.
            await nursery.start(observer.run)
            assert not observer.ready() and view.readyz()[0] == 503
            while observer.chain is None or observer.chain.height < validator.chain.height:
                await trio.sleep(0.02)
            while not observer.ready():  # its next head poll sees it caught up
                await trio.sleep(0.05)
            assert observer.probes.behind() == 0 and view.readyz() == (200, {"ready": True})

            # Synced blocks count as progress, though they came from no raft of its own.
            clock.advance(STALL_TIMEOUT_S - 1)
            height = observer.chain.height
            await commit_blocks(validator, builder, 100, 1)
            while observer.chain.height == height:
                await trio.sleep(0.02)
            assert observer.health()["seconds_since_last_commit"] == 0.0

            # It stops applying while its peer goes on: stalled once the timeout passes.
            async def refuse(data: bytes) -> None:
                raise RemoteError("planted: this node applies nothing")

            observer.applier.apply_from_peer = refuse  # type: ignore[method-assign]
            await commit_blocks(validator, builder, 200, READY_LAG_BLOCKS_MAX + 2)
            while not observer.probes.behind():
                await trio.sleep(0.05)
            assert observer.ready() is (observer.probes.behind() <= READY_LAG_BLOCKS_MAX)
            assert not observer.probes.stalled() and view.healthz()[0] == 200
            clock.advance(STALL_TIMEOUT_S + 1)
            while observer.probes.behind() is None:  # the peer head is fresh again at the next poll
                await trio.sleep(0.05)
            assert observer.probes.stalled() and not observer.ready()
            status, body = view.healthz()
            assert status == 503 and body["status"] == "stalled"
            assert body["details"]["behind"] >= READY_LAG_BLOCKS_MAX + 2
            assert view.readyz() == (503, {"ready": False})
            nursery.cancel_scope.cancel()
