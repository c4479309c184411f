"""An in-memory Transport for fast tests of the layers above the network.

It keeps the rules of the libp2p transport (node/p2p.py) and drops the sockets:

- peers connect to their bootstrap peers and validators through a shared
  :class:`MemoryNetwork`; a node with ``open_for_observers=False`` admits only validators
  (both ends must admit each other, like the gate in the Noise handshake);
- raft frames flow only between two validators, in order, through a bounded per-peer queue
  (``send_frame`` returns False when it is full or the peer is not reachable);
- gossip floods over connections with per-message dedup; a handler that returns False
  stops the message at that node (it is not forwarded); nodes not subscribed to a topic
  neither deliver nor forward it;
- requests are served only to admitted peers, with the same size caps and errors.

Faults, from a seeded RNG: ``loss_rate`` drops raft frames and gossip messages per hop;
``partition(...)`` cuts the network into groups (connections across groups drop at once,
as a real partition eventually does); ``heal()`` joins them again (keepers redial).
"""

from __future__ import annotations

import itertools
import random
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import trio

from ledger.errors import MedledgerError
from node.logs import get_logger
from node.p2p.identity import peer_id_from_seed
from node.p2p.limits import (
    GOSSIP_RECENT_VALIDATIONS_MAX,
    RAFT_QUEUE_BYTES_MAX,
    RAFT_QUEUE_FRAMES_MAX,
    SYNC_REQUEST_BYTES_MAX,
    SYNC_RESPONSE_BYTES_MAX,
)
from node.p2p.raft_link import FrameQueue
from node.p2p.transport import (
    FrameHandler,
    GossipHandler,
    MessageTooLargeError,
    PeerState,
    PeerUnreachableError,
    RequestFailedError,
    RequestHandler,
    RequestRefusedError,
    RequestTimeoutError,
    TransportClosedError,
    check_gossip_message,
    check_raft_frame,
)

# Frames handed to a peer's reader and not yet given to its handler (the "socket buffer").
MEMORY_INBOUND_FRAMES_MAX = 64
# Gossip messages waiting at a node to be validated and forwarded.
MEMORY_GOSSIP_INBOX_MAX = 1024
# A frame waits this long for room in the peer's inbound buffer before the link counts as
# wedged and the frame is dropped (the libp2p transport would reset the stream).
MEMORY_DELIVERY_TIMEOUT_S = 5.0
# Keepers dial again at most this often while a peer stays unreachable.
MEMORY_REDIAL_INTERVAL_S = 0.05


@dataclass(frozen=True, slots=True)
class _Gossip:
    message_id: tuple[str, int]
    topic: str
    origin: str
    data: bytes
    forwarder: str


class MemoryNetwork:
    def __init__(self, *, seed: int = 0, loss_rate: float = 0.0) -> None:
        assert 0.0 <= loss_rate < 1.0, "loss_rate is a probability below 1"
        self.loss_rate = loss_rate
        self._rng = random.Random(seed)
        self._running: dict[str, MemoryTransport] = {}
        self._group_of: dict[str, int] = {}
        self._changed = trio.Event()

    # ------------------------------------------------------------------ faults

    def partition(self, *groups: Iterable[str]) -> None:
        """Peers in different groups cannot reach each other; peers named in no group
        form one more group together."""
        self._group_of = {peer: index + 1 for index, group in enumerate(groups)
                          for peer in group}
        for transport in list(self._running.values()):
            for peer_id in list(transport.connections):
                if not self.reachable(transport.peer_id, peer_id):
                    self.disconnect(transport.peer_id, peer_id)
        self.changed()

    def heal(self) -> None:
        self._group_of = {}
        self.changed()

    def reachable(self, peer_a: str, peer_b: str) -> bool:
        return self._group_of.get(peer_a, 0) == self._group_of.get(peer_b, 0)

    def lose(self) -> bool:
        return self.loss_rate > 0 and self._rng.random() < self.loss_rate

    # ------------------------------------------------------------------ connections

    def transport(self, peer_id: str) -> MemoryTransport | None:
        return self._running.get(peer_id)

    def register(self, transport: MemoryTransport) -> None:
        assert transport.peer_id not in self._running, "one running transport per peer id"
        self._running[transport.peer_id] = transport
        self.changed()

    def unregister(self, transport: MemoryTransport) -> None:
        for peer_id in list(transport.connections):
            self.disconnect(transport.peer_id, peer_id)
        self._running.pop(transport.peer_id, None)
        self.changed()

    def connect(self, dialer: MemoryTransport, peer_id: str) -> bool:
        remote = self._running.get(peer_id)
        if remote is None or not self.reachable(dialer.peer_id, peer_id):
            return False
        if not (dialer.admitted(peer_id) and remote.admitted(dialer.peer_id)):
            return False
        dialer.connections.add(peer_id)
        remote.connections.add(dialer.peer_id)
        self.changed()
        return True

    def disconnect(self, peer_a: str, peer_b: str) -> None:
        for one, other in ((peer_a, peer_b), (peer_b, peer_a)):
            transport = self._running.get(one)
            if transport is not None:
                transport.connections.discard(other)
        self.changed()

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self, *, timeout_s: float) -> None:
        with trio.move_on_after(timeout_s):
            await self._changed.wait()


class _MemoryLink:
    """One side of a raft link: our outbound queue and the buffer the peer writes into."""

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self.outbound = FrameQueue(frames_max=RAFT_QUEUE_FRAMES_MAX, bytes_max=RAFT_QUEUE_BYTES_MAX)
        self.inbound_send, self.inbound_receive = trio.open_memory_channel[bytes](
            MEMORY_INBOUND_FRAMES_MAX
        )


class MemoryTransport:
    def __init__(
        self,
        network: MemoryNetwork,
        *,
        seed: bytes,
        bootstrap: Iterable[str] = (),
        open_for_observers: bool = True,
        validators: Iterable[str] = (),
    ) -> None:
        self._network = network
        self._peer_id = peer_id_from_seed(seed)
        self._bootstrap = {entry.rsplit("/p2p/", 1)[-1] for entry in bootstrap} - {self._peer_id}
        self._open_for_observers = open_for_observers
        self._validators = set(validators)
        self.log = get_logger(component="p2p", node=self._peer_id, transport="memory")
        self.connections: set[str] = set()
        self._frame_handler: FrameHandler | None = None
        self._gossip_handlers: dict[str, GossipHandler] = {}
        self._request_handler: RequestHandler | None = None
        self._links: dict[str, _MemoryLink] = {}
        self._task_scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._sequence = itertools.count()
        self._gossip_send, self._gossip_receive = trio.open_memory_channel[_Gossip](
            MEMORY_GOSSIP_INBOX_MAX
        )
        self.frames_refused = 0
        self.gossip_dropped = 0

    # ================================================================ Transport

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def listen_addresses(self) -> tuple[str, ...]:
        return (f"/memory/p2p/{self._peer_id}",) if self._nursery is not None else ()

    @property
    def is_validator(self) -> bool:
        return self._peer_id in self._validators

    def admitted(self, peer_id: str) -> bool:
        return self._open_for_observers or peer_id in self._validators

    def set_validators(self, peer_ids: set[str]) -> None:
        self._validators = set(peer_ids)
        if not self._open_for_observers:
            for peer_id in list(self.connections - self._validators):
                self.log.info("disconnecting a peer no longer admitted", peer=peer_id)
                self._network.disconnect(self._peer_id, peer_id)
        self._reconcile()
        self._network.changed()

    async def send_frame(self, peer_id: str, frame: bytes) -> bool:
        check_raft_frame(frame)
        link = self._links.get(peer_id)
        if link is None or not self._raft_stream_up(peer_id):
            self.frames_refused += 1
            return False
        if not link.outbound.put_nowait(frame):
            self.frames_refused += 1
            return False
        return True

    def on_frame(self, handler: FrameHandler) -> None:
        self._frame_handler = handler

    async def publish(self, topic: str, data: bytes) -> None:
        if self._nursery is None:
            raise TransportClosedError("the memory transport is not running")
        check_gossip_message(data)
        message = _Gossip((self._peer_id, next(self._sequence)), topic, self._peer_id, data,
                          self._peer_id)
        self._remember(message.message_id)
        self._forward(message)
        await trio.lowlevel.checkpoint()

    def on_gossip(self, topic: str, handler: GossipHandler) -> None:
        self._gossip_handlers[topic] = handler

    async def request(self, peer_id: str, data: bytes, *, timeout_s: float = 10.0) -> bytes:
        if self._nursery is None:
            raise TransportClosedError("the memory transport is not running")
        if len(data) > SYNC_REQUEST_BYTES_MAX:
            raise MessageTooLargeError(
                f"request of {len(data)} bytes > {SYNC_REQUEST_BYTES_MAX}: split it"
            )
        if peer_id not in self.connections and not self._network.connect(self, peer_id):
            raise PeerUnreachableError(f"cannot reach {peer_id}")
        remote = self._network.transport(peer_id)
        assert remote is not None, "a connected peer is running"
        try:
            with trio.fail_after(timeout_s):
                return await remote.serve_request(self._peer_id, data)
        except trio.TooSlowError:
            raise RequestTimeoutError(f"no answer from {peer_id} in {timeout_s} s") from None

    def on_request(self, handler: RequestHandler) -> None:
        self._request_handler = handler

    def peers(self) -> list[PeerState]:
        known = (self._validators | self._bootstrap | self.connections) - {self._peer_id}
        return [
            PeerState(
                peer_id=peer_id,
                addresses=(f"/memory/p2p/{peer_id}",),
                connected=peer_id in self.connections,
                raft_stream=peer_id in self._links and self._raft_stream_up(peer_id),
            )
            for peer_id in sorted(known)
        ]

    def gossip_topic_peers(self, topic: str) -> set[str]:
        """Connected peers subscribed to ``topic`` (they would get our messages)."""
        return {
            peer_id for peer_id in self.connections
            if (remote := self._network.transport(peer_id)) is not None
            and remote.subscribes_to(topic)
        }

    def subscribes_to(self, topic: str) -> bool:
        return topic in self._gossip_handlers

    gossip_mesh_peers = gossip_topic_peers

    # ================================================================ service

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Join the network; ``task_status.started`` gets the listen addresses."""
        assert self._nursery is None, "a transport runs once at a time"
        self._network.register(self)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._process_gossip)
                self._reconcile()
                task_status.started(self.listen_addresses)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._links.clear()
            self._task_scopes.clear()
            self._network.unregister(self)

    def _reconcile(self) -> None:
        if self._nursery is None:
            return
        others = self._validators - {self._peer_id}
        wanted_links = others if self.is_validator else set()
        for peer_id in set(self._links) - wanted_links:
            del self._links[peer_id]
            self._task_scopes.pop(f"link:{peer_id}").cancel()
        for peer_id in sorted(wanted_links - set(self._links)):
            self._links[peer_id] = link = _MemoryLink(peer_id)
            self._start(f"link:{peer_id}", self._run_link, link)
        wanted_keepers = others | self._bootstrap
        for key in [key for key in self._task_scopes if key.startswith("keeper:")]:
            if key.removeprefix("keeper:") not in wanted_keepers:
                self._task_scopes.pop(key).cancel()
        for peer_id in sorted(wanted_keepers):
            if f"keeper:{peer_id}" not in self._task_scopes:
                self._start(f"keeper:{peer_id}", self._keep_connected, peer_id)

    def _start(self, key: str, function: Any, *args: Any) -> None:
        assert self._nursery is not None
        scope = self._task_scopes[key] = trio.CancelScope()

        async def scoped() -> None:
            with scope:
                await function(*args)

        self._nursery.start_soon(scoped)

    async def _keep_connected(self, peer_id: str) -> None:
        while True:
            if peer_id not in self.connections:
                self._network.connect(self, peer_id)
            await self._network.wait_changed(timeout_s=MEMORY_REDIAL_INTERVAL_S)

    # ================================================================ raft

    def _raft_stream_up(self, peer_id: str) -> bool:
        remote = self._network.transport(peer_id)
        return (
            peer_id in self.connections
            and remote is not None
            and remote.raft_link_from(self._peer_id) is not None
        )

    def raft_link_from(self, peer_id: str) -> _MemoryLink | None:
        """Our link to ``peer_id`` if we accept raft frames from it (both validators)."""
        return self._links.get(peer_id)

    async def _run_link(self, link: _MemoryLink) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_frames, link)
            nursery.start_soon(self._read_frames, link)

    async def _write_frames(self, link: _MemoryLink) -> None:
        while True:
            batch = await link.outbound.get_batch(bytes_max=RAFT_QUEUE_BYTES_MAX, timeout_s=1.0)
            for frame in batch:
                await self._transmit(link.peer_id, frame)

    async def _transmit(self, peer_id: str, frame: bytes) -> None:
        remote = self._network.transport(peer_id)
        remote_link = remote.raft_link_from(self._peer_id) if remote is not None else None
        if remote_link is None or peer_id not in self.connections:
            self.log.info("raft frame dropped: no raft stream", peer=peer_id)
            return
        if self._network.lose():
            return
        try:
            with trio.fail_after(MEMORY_DELIVERY_TIMEOUT_S):
                await remote_link.inbound_send.send(frame)
        except trio.TooSlowError:
            self.log.warning("raft frame dropped: peer not reading", peer=peer_id)

    async def _read_frames(self, link: _MemoryLink) -> None:
        async for frame in link.inbound_receive:
            handler = self._frame_handler
            if handler is not None and link.peer_id in self.connections:
                await handler(link.peer_id, frame)

    # ================================================================ gossip

    def _remember(self, message_id: tuple[str, int]) -> bool:
        """True when the message is new."""
        if message_id in self._seen:
            return False
        self._seen[message_id] = None
        while len(self._seen) > GOSSIP_RECENT_VALIDATIONS_MAX:
            self._seen.popitem(last=False)
        return True

    def _forward(self, message: _Gossip) -> None:
        for peer_id in sorted(self.connections - {message.forwarder, message.origin}):
            remote = self._network.transport(peer_id)
            if remote is None or self._network.lose():
                continue
            remote.receive_gossip(_Gossip(message.message_id, message.topic, message.origin,
                                          message.data, self._peer_id))

    def receive_gossip(self, message: _Gossip) -> None:
        try:
            self._gossip_send.send_nowait(message)
        except trio.WouldBlock:  # like libp2p's full per-peer queue: dropped
            self.gossip_dropped += 1

    async def _process_gossip(self) -> None:
        async for message in self._gossip_receive:
            handler = self._gossip_handlers.get(message.topic)
            if handler is None or not self._remember(message.message_id):
                continue
            try:
                accepted = bool(await handler(message.origin, message.data))
            except Exception:  # as in the libp2p transport: logged, the message rejected
                self.log.exception("gossip handler failed", topic=message.topic)
                accepted = False
            if accepted:
                self._forward(message)

    # ================================================================ sync

    async def serve_request(self, peer_id: str, data: bytes) -> bytes:
        if not self.admitted(peer_id) or peer_id not in self.connections:
            self.log.warning("sync request from a peer not admitted refused", peer=peer_id)
            raise RequestRefusedError(f"{self._peer_id} refused the request")
        handler = self._request_handler
        if handler is None:
            raise RequestFailedError(f"{self._peer_id} failed the request: no request handler")
        try:
            response = await handler(peer_id, data)
        except MedledgerError as error:
            raise RequestFailedError(f"{self._peer_id} failed the request: {error}") from None
        except Exception:
            self.log.exception("sync request handler crashed")
            raise RequestFailedError(f"{self._peer_id} failed the request: internal error") \
                from None
        if len(response) > SYNC_RESPONSE_BYTES_MAX:
            raise RequestFailedError(f"{self._peer_id} failed the request: response too large")
        return response

