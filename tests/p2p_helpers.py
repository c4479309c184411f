"""Test harness for the transports: start, stop and restart nodes of either kind (real
libp2p hosts on 127.0.0.1 port 0, or the in-memory network) inside a test's nursery."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from node.p2p.identity import peer_id_from_seed
from node.p2p.limits import Timings
from node.p2p.memory import MemoryNetwork, MemoryTransport

KINDS = ("libp2p", "memory")

# Production timings scaled down so failure detection and redials fit in a test.
FAST_TIMINGS = Timings(
    dial_timeout_s=2.0,
    redial_backoff_initial_s=0.05,
    redial_backoff_max_s=0.5,
    acceptor_dial_delay_s=0.2,
    stream_open_timeout_s=2.0,
    raft_keepalive_interval_s=0.2,
    raft_read_inactivity_timeout_s=1.0,
    raft_write_timeout_s=1.0,
    gossip_publish_wait_s_max=2.0,
    shutdown_grace_s=1.0,
)


def seed(index: int) -> bytes:
    return hashlib.sha256(b"medledger/test-node/%d" % index).digest()


def peer(index: int) -> str:
    return peer_id_from_seed(seed(index))


def ordered_indexes(count: int, *, start: int = 0) -> list[int]:
    """Node indexes sorted by peer id (the raft stream opener is the smaller one)."""
    return sorted(range(start, start + count), key=peer)


@dataclass
class Node:
    index: int
    transport: Any
    scope: trio.CancelScope
    addresses: tuple[str, ...]
    frames: list[tuple[str, bytes]] = field(default_factory=list)
    finished: trio.Event = field(default_factory=trio.Event)

    @property
    def peer_id(self) -> str:
        return str(self.transport.peer_id)

    def frames_from(self, peer_id: str) -> list[bytes]:
        return [frame for sender, frame in self.frames if sender == peer_id]


class Harness:
    def __init__(self, kind: str, nursery: trio.Nursery) -> None:
        assert kind in KINDS
        self.kind = kind
        self._nursery = nursery
        self.network = MemoryNetwork(seed=7)

    async def start(
        self,
        index: int,
        *,
        validators: set[str] | frozenset[str] = frozenset(),
        bootstrap: tuple[str, ...] | list[str] = (),
        open_for_observers: bool = True,
        listen: str = "/ip4/127.0.0.1/tcp/0",
    ) -> Node:
        transport = self._make(index, validators, tuple(bootstrap), open_for_observers, listen)
        node = Node(index=index, transport=transport, scope=trio.CancelScope(), addresses=())

        async def record(sender: str, frame: bytes) -> None:
            node.frames.append((sender, frame))

        transport.on_frame(record)

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with node.scope:
                    await transport.run(task_status=task_status)
            finally:
                node.finished.set()

        node.addresses = await self._nursery.start(run)
        return node

    def _make(self, index: int, validators: Any, bootstrap: tuple[str, ...],
              open_for_observers: bool, listen: str) -> Any:
        if self.kind == "memory":
            return MemoryTransport(self.network, seed=seed(index), bootstrap=bootstrap,
                                   open_for_observers=open_for_observers, validators=validators)
        from node.p2p.host import Libp2pTransport

        return Libp2pTransport(seed=seed(index), listen=listen, bootstrap=bootstrap,
                               open_for_observers=open_for_observers, validators=validators,
                               timings=FAST_TIMINGS)

    async def stop(self, node: Node) -> None:
        node.scope.cancel()
        # run() returns once its shutdown (disconnects, libp2p services) is done
        with trio.fail_after(10):
            await node.finished.wait()

    async def cluster(self, count: int, *, open_for_observers: bool = True) -> list[Node]:
        """``count`` validators, each bootstrapped with the addresses of those started
        before it (so every pair has one side that can dial)."""
        validators = {peer(index) for index in range(count)}
        nodes: list[Node] = []
        for index in range(count):
            bootstrap = [address for node in nodes for address in node.addresses]
            nodes.append(await self.start(index, validators=validators, bootstrap=bootstrap,
                                          open_for_observers=open_for_observers))
        return nodes


async def wait_until(predicate: Callable[[], bool], *, timeout_s: float = 10.0,
                     what: str = "condition") -> None:
    try:
        with trio.fail_after(timeout_s):
            while not predicate():
                await trio.sleep(0.01)
    except trio.TooSlowError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


def raft_up(node: Node, peer_id: str) -> bool:
    return any(state.peer_id == peer_id and state.raft_stream for state in node.transport.peers())


def connected(node: Node, peer_id: str) -> bool:
    return any(state.peer_id == peer_id and state.connected for state in node.transport.peers())


async def wait_raft_mesh(nodes: list[Node], *, timeout_s: float = 10.0) -> None:
    await wait_until(
        lambda: all(raft_up(a, b.peer_id) for a in nodes for b in nodes if a is not b),
        timeout_s=timeout_s, what="raft streams between every pair",
    )


async def send_until_accepted(node: Node, peer_id: str, frame: bytes, *,
                              timeout_s: float = 10.0) -> None:
    with trio.fail_after(timeout_s):
        while not await node.transport.send_frame(peer_id, frame):
            await trio.sleep(0.02)


GossipLog = dict[str, list[tuple[str, bytes]]]


def gossip_recorder(log: list[tuple[str, bytes]],
                    accept: Callable[[bytes], bool] = lambda data: True
                    ) -> Callable[[str, bytes], Awaitable[bool]]:
    async def handler(origin: str, data: bytes) -> bool:
        log.append((origin, data))
        return accept(data)

    return handler


def raw_host(index: int, *, security: str = "noise") -> Any:
    """A bare libp2p host (no medledger logic) with the key of node ``index``: Noise and
    yamux like ours, or only the plaintext transport a careless or hostile peer offers."""
    from libp2p import new_host
    from libp2p.crypto.x25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.identity_utils import create_identity_from_seed
    from libp2p.network.config import ConnectionConfig
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux

    key_pair = create_identity_from_seed(seed(index))
    options: dict[Any, Any]
    if security == "noise":
        options = {TProtocol(NOISE_PROTOCOL_ID):
                   NoiseTransport(key_pair, noise_privkey=create_new_key_pair().private_key)}
    else:
        options = {TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)}
    return new_host(key_pair=key_pair, sec_opt=options,
                    muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
                    connection_config=ConnectionConfig(max_connections_per_peer=1,
                                                       min_connections=0, low_watermark=0))


def peer_info(address: str) -> Any:
    import multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr

    return info_from_p2p_addr(multiaddr.Multiaddr(address))
