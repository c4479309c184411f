"""The node's Transport over py-libp2p 0.8.1: Noise + yamux on TCP, one supervised raft
stream per validator pair, GossipSub, and a request/response sync protocol.

Run it as a Trio service::

    transport = Libp2pTransport(seed=key.seed, listen="/ip4/127.0.0.1/tcp/0",
                                bootstrap=[...], open_for_observers=False,
                                validators={...})
    addresses = await nursery.start(transport.run)   # full multiaddrs with /p2p/<id>

Who may do what:
- A node whose own peer id is in the validator set is a validator: it keeps one raft
  stream to every other validator. Any other node is an observer: it gossips and syncs
  but sends no raft frames and refuses inbound raft streams.
- Raft streams are accepted only from validators.
- ``open_for_observers=False`` admits only validators at all: a gate inside the Noise
  handshake refuses every other peer (both directions), so an unknown peer never gets a
  connection, let alone a protocol. Per-protocol checks (gossip, sync) are a second wall.
- ``open_for_observers=True`` admits any peer that completes Noise to gossip and sync.

The py-libp2p 0.8.1 pitfalls this room mends are listed in the package docstring
(node/p2p/__init__.py).
"""

from __future__ import annotations

import os

# Pitfall 10: yamux sends a window update per read by default; off, it roughly doubles
# throughput (measured again here: 21 -> 30 MB/s for 1 MiB frames, 830 -> 1,040 small
# frames/s). Must be in the environment before libp2p's yamux runs; an operator's own
# value wins.
os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")

import contextlib
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p.custom_types import TProtocol
from libp2p.io.exceptions import IOException
from libp2p.peer.id import ID
from libp2p.stream_muxer.exceptions import MuxedConnError, MuxedStreamError
from libp2p.tools.anyio_service import background_trio_service

from node.logs import get_logger
from node.p2p.conduct import ConductStatistics, PeerConduct
from node.p2p.connectivity import ConnectionKeeper
from node.p2p.framing import (
    cleanup_scope,
    reset_quietly,
)
from node.p2p.gossip import Gossip, GossipStatistics
from node.p2p.hello import HELLO_PROTOCOL, HELLO_TIMEOUT_S, Greeter, Hello
from node.p2p.identity import peer_id_from_public_key, peer_id_from_seed
from node.p2p.libp2p_glue import (
    ConnectivityNotifee,
    LibP2PLogBridge,
    new_libp2p_host,
    parse_bootstrap,
)
from node.p2p.limits import (
    GOSSIP_MESSAGE_BYTES_MAX,
    RAFT_FRAME_BYTES_MAX,
    RAFT_PROTOCOL,
    REFUSAL_LOG_INTERVAL_S,
    REFUSAL_LOG_PEERS_MAX,
    SYNC_PROTOCOL,
    SYNC_REQUEST_BYTES_MAX,
    SYNC_RESPONSE_BYTES_MAX,
    Timings,
)
from node.p2p.raft_link import LinkStatistics, RaftLink
from node.p2p.streams import StreamOpener
from node.p2p.sync import SyncClient, SyncServer
from node.p2p.transport import (
    FrameHandler,
    GossipHandler,
    PeerState,
    RequestHandler,
    TransportClosedError,
    check_raft_frame,
)

__all__ = [
    "GOSSIP_MESSAGE_BYTES_MAX", "RAFT_FRAME_BYTES_MAX", "RAFT_PROTOCOL", "SYNC_PROTOCOL",
    "SYNC_REQUEST_BYTES_MAX", "SYNC_RESPONSE_BYTES_MAX", "Libp2pTransport", "Timings",
    "peer_id_from_public_key", "peer_id_from_seed"
]

# Errors a stream handler may meet when the connection or stream goes away under it:
# churn, not misbehaviour (anything else a handler raises on a peer's input is).
CHURN_ERRORS = (IOException, MuxedConnError, MuxedStreamError, trio.ClosedResourceError,
                trio.BrokenResourceError, EOFError, ConnectionError)




@dataclass(frozen=True, slots=True)
class TransportStatistics:
    links: dict[str, LinkStatistics]
    gossip: GossipStatistics
    sync_served: int
    sync_refused: int
    sync_busy: int  # refused: that peer already had its share of requests in flight
    sync_write_timeouts: int  # answers the asker did not take in time (wedged)
    frames_without_handler: int
    conduct: ConductStatistics
    connections_forgotten: int
    liveness_drops: int


class Libp2pTransport(ConnectionKeeper):
    def __init__(
        self,
        *,
        seed: bytes,
        listen: str = "/ip4/127.0.0.1/tcp/0",
        bootstrap: Iterable[str] = (),
        open_for_observers: bool = True,
        validators: Iterable[str] = (),
        timings: Timings | None = None,
        rng: random.Random | None = None,
        log: Any = None,
        hello: Hello | None = None,
    ) -> None:
        self._seed = seed
        self._peer_id = peer_id_from_seed(seed)
        self._listen = listen
        self._bootstrap = parse_bootstrap(bootstrap, self._peer_id)
        self._open_for_observers = open_for_observers
        self._validators = set(validators)
        self._timings = timings or Timings()
        self._rng = rng or random.Random()
        # The node's logger when it runs in a node; its own (naming it) in tests.
        self.log = (log if log is not None
                    else get_logger(node=self._peer_id)).bind(component="p2p")
        self._frame_handler: FrameHandler | None = None
        self._gossip_handlers: dict[str, GossipHandler] = {}
        self._request_handler: RequestHandler | None = None
        self._host: Any = None
        self._gossip: Gossip | None = None
        self._sync_client: SyncClient | None = None
        self._opener = StreamOpener(self.log)
        # The chain handshake, when the node names its chain (tests may run without).
        self._greeter = None if hello is None else Greeter(
            hello, opener=self._opener, log=self.log, is_connected=self.is_connected,
            on_greeted=self.connectivity_changed, drop=self._drop_foreign)
        self._sync_server: SyncServer | None = None
        # peer id -> trio time it was last heard from (answers, requests, gossip).
        self._heard_at: dict[str, float] = {}
        self._nursery: trio.Nursery | None = None
        self._links: dict[str, RaftLink] = {}
        self._link_scopes: dict[str, trio.CancelScope] = {}
        self._keeper_scopes: dict[str, trio.CancelScope] = {}
        self._subscribed: set[str] = set()
        self._connectivity = trio.Event()
        self._admission = trio.Event()
        self._frames_without_handler = 0
        self._refusals_logged: dict[str, float] = {}
        self._conduct = PeerConduct(log=self.log, is_validator=self._validators.__contains__)
        self.connections_forgotten = 0
        self.liveness_drops = 0

    # ================================================================ Transport

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def listen_addresses(self) -> tuple[str, ...]:
        if self._host is None or self._nursery is None:
            return ()
        return tuple(str(address) for address in self._host.get_addrs())

    @property
    def is_validator(self) -> bool:
        return self._peer_id in self._validators

    def admitted(self, peer_id: str) -> bool:
        """May ``peer_id`` connect, gossip and sync with us?"""
        if self._greeter is not None and self._greeter.is_foreign(peer_id):
            return False
        if peer_id in self._validators:
            return True
        return self._open_for_observers and not self._conduct.banned(peer_id)

    def log_refusal(self, peer_id: str, direction: str) -> None:
        """Log a refused connection, at most once per peer per REFUSAL_LOG_INTERVAL_S."""
        now = time.monotonic()
        if now - self._refusals_logged.get(peer_id, -REFUSAL_LOG_INTERVAL_S) < \
                REFUSAL_LOG_INTERVAL_S:
            return
        if len(self._refusals_logged) >= REFUSAL_LOG_PEERS_MAX:
            self._refusals_logged.clear()
        self._refusals_logged[peer_id] = now
        self.log.warning("connection refused: peer not admitted", peer=peer_id,
                         direction=direction)

    def set_validators(self, peer_ids: set[str]) -> None:
        self._validators.clear()  # in place: the conduct record reads this set
        self._validators.update(peer_ids)
        self._admission.set()
        self._admission = trio.Event()
        self._reconcile()

    async def send_frame(self, peer_id: str, frame: bytes) -> bool:
        check_raft_frame(frame)
        link = self._links.get(peer_id)
        return link is not None and link.send_nowait(frame)

    def on_frame(self, handler: FrameHandler) -> None:
        self._frame_handler = handler

    async def publish(self, topic: str, data: bytes) -> None:
        if self._gossip is None or self._nursery is None:
            raise TransportClosedError("the p2p transport is not running")
        await self._gossip.publish(topic, data)

    def on_gossip(self, topic: str, handler: GossipHandler) -> None:
        self._gossip_handlers[topic] = handler
        if self._gossip is not None:
            self._gossip.set_handler(topic, handler)
        self._subscribe_pending()

    async def request(self, peer_id: str, data: bytes, *, timeout_s: float = 10.0) -> bytes:
        if self._sync_client is None or self._nursery is None:
            raise TransportClosedError("the p2p transport is not running")
        answer = await self._sync_client.request(peer_id, data, timeout_s=timeout_s)
        self._heard_from(peer_id)
        return answer

    def _heard_from(self, peer_id: str) -> None:
        """``peer_id`` just answered a request, sent a request or relayed gossip: its
        connection is alive whatever a late pong says (see ``_watch_connection``)."""
        self._heard_at[peer_id] = trio.current_time()

    def on_request(self, handler: RequestHandler) -> None:
        self._request_handler = handler
        if self._sync_server is not None:
            self._sync_server.handler = handler

    def peers(self) -> list[PeerState]:
        known = (self._validators | set(self._bootstrap) | self._connected_peers()) - {
            self._peer_id
        }
        states = []
        for peer_id in sorted(known):
            link = self._links.get(peer_id)
            states.append(PeerState(
                peer_id=peer_id,
                addresses=tuple(str(address) for address in self._dial_addresses(peer_id)),
                connected=self.is_connected(peer_id) and self.greeted(peer_id),
                raft_stream=link is not None and link.stream_up,
            ))
        return states

    # ================================================================ views for operators

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            links={peer: link.statistics for peer, link in self._links.items()},
            gossip=self._gossip.statistics if self._gossip else GossipStatistics(),
            sync_served=self._sync_server.served if self._sync_server else 0,
            sync_refused=self._sync_server.refused if self._sync_server else 0,
            sync_busy=self._sync_server.busy if self._sync_server else 0,
            sync_write_timeouts=self._sync_server.write_timeouts if self._sync_server else 0,
            frames_without_handler=self._frames_without_handler,
            conduct=self._conduct.statistics(),
            connections_forgotten=self.connections_forgotten,
            liveness_drops=self.liveness_drops,
        )

    def gossip_mesh_peers(self, topic: str) -> set[str]:
        return self._gossip.mesh_peers(topic) if self._gossip else set()

    def gossip_topic_peers(self, topic: str) -> set[str]:
        return self._gossip.topic_peers(topic) if self._gossip else set()

    # ================================================================ service

    async def run(
        self, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, dial, serve; ``task_status.started`` gets the listen addresses (full
        multiaddrs with /p2p/<peer id>). Cancel to stop: peers are disconnected within
        ``timings.shutdown_grace_s``."""
        assert self._host is None, "a transport runs once"
        LibP2PLogBridge.install()
        host = self._host = self._build_host()
        gossip = self._gossip = Gossip(host, timings=self._timings, log=self.log,
                                       on_heard=self._heard_from,
                                       is_admitted=self.admitted)
        for topic, handler in self._gossip_handlers.items():
            gossip.set_handler(topic, handler)
        self._opener.host = host
        self._sync_client = SyncClient(self._opener, timings=self._timings)
        self._sync_server = SyncServer(timings=self._timings, log=self.log,
                                       is_admitted=self.admitted)
        self._sync_server.handler = self._request_handler
        self._sync_server.on_heard = self._heard_from
        host.set_stream_handler(TProtocol(RAFT_PROTOCOL), self._handle_raft_stream)
        host.set_stream_handler(TProtocol(SYNC_PROTOCOL), self._sync_server.handle_stream)
        if self._greeter is not None:
            host.set_stream_handler(TProtocol(HELLO_PROTOCOL), self._greeter.handle_stream)
        host.get_network().register_notifee(ConnectivityNotifee(self))
        # Pitfall 6: Pubsub and GossipSub run before the host listens.
        async with (
            background_trio_service(gossip.pubsub),
            background_trio_service(gossip.router),
            host.run([multiaddr.Multiaddr(self._listen)]),
        ):
            await gossip.pubsub.wait_until_ready()
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = self._opener.nursery = nursery
                    self._subscribe_pending()
                    self._reconcile()
                    self.log.info("p2p transport listening", addresses=self.listen_addresses,
                                  validator=self.is_validator,
                                  open_for_observers=self._open_for_observers)
                    task_status.started(self.listen_addresses)
                    await trio.sleep_forever()
            finally:
                self._nursery = self._opener.nursery = None
                await self._disconnect_all()
        self.log.info("p2p transport stopped")

    def _build_host(self) -> Any:
        return new_libp2p_host(seed=self._seed, listen=self._listen,
                               dial_timeout_s=self._timings.dial_timeout_s,
                               gatekeeper=self, contain=self._contained)

    def _contained(self, inner: Any) -> Any:
        """Wrap libp2p's stream dispatcher: an exception from any protocol handler would
        otherwise leave libp2p's connection task and stop the node (a 16-byte frame of
        0xff on /meshsub did: protobuf's DecodeError, which pubsub does not catch)."""

        async def contained(stream: Any) -> None:
            try:
                await inner(stream)
            except CHURN_ERRORS as error:
                self.log.debug("stream handler: connection gone", error=repr(error))
                await reset_quietly(stream)
            except Exception as error:
                await self._stream_offence(stream, error)

        return contained

    async def _stream_offence(self, stream: Any, error: Exception) -> None:
        try:
            peer_id = stream.muxed_conn.peer_id.to_base58()
            protocol = str(stream.get_protocol())
        except Exception:  # a stream torn down before it knew its peer
            peer_id, protocol = "", "unknown"
        await reset_quietly(stream)
        if not peer_id:
            return
        self._conduct.offence(peer_id, protocol=protocol, error=error)
        if self._nursery is not None:
            self._start_task(self._drop_offender, peer_id)

    async def _drop_offender(self, peer_id: str) -> None:
        with trio.move_on_after(self._timings.shutdown_grace_s):
            await self.drop_connection(peer_id)

    async def _disconnect_all(self) -> None:
        """Pitfall 7: with our tasks gone (no publishing, links closed), disconnect every
        peer before libp2p's service contexts are left, shielded but bounded."""
        with cleanup_scope(self._timings.shutdown_grace_s) as scope:
            async with trio.open_nursery() as nursery:  # each disconnect sleeps 0.1 s
                for peer_id in self._connected_peers():
                    nursery.start_soon(self._disconnect_quietly, peer_id)
        if scope.cancelled_caught:
            self.log.warning("p2p shutdown grace period ran out while disconnecting")

    async def _disconnect_quietly(self, peer_id: str) -> None:
        try:
            await self._host.disconnect(ID.from_base58(peer_id))
        except Exception as error:  # the connection may be closing already
            self.log.debug("disconnect at shutdown failed", peer=peer_id, error=repr(error))

    # ================================================================ raft links

    def _reconcile(self) -> None:
        """Start and stop raft links and connection keepers to match the validator set."""
        if self._nursery is None:
            return
        others = self._validators - {self._peer_id}
        wanted_links = others if self.is_validator else set()
        for peer_id in set(self._links) - wanted_links:
            self._link_scopes.pop(peer_id).cancel()
            del self._links[peer_id]
            self.log.info("raft link removed", peer=peer_id)
        for peer_id in sorted(wanted_links - set(self._links)):
            self._start_link(peer_id)
        wanted_keepers = others | set(self._bootstrap)
        for peer_id in set(self._keeper_scopes) - wanted_keepers:
            self._keeper_scopes.pop(peer_id).cancel()
        for peer_id in sorted(wanted_keepers - set(self._keeper_scopes)):
            self._keeper_scopes[peer_id] = self._start_task(self._keep_connected, peer_id)
        if not self._open_for_observers:
            for peer_id in self._connected_peers() - self._validators:
                self._start_task(self._drop_not_admitted, peer_id)

    def _start_link(self, peer_id: str) -> None:
        link = RaftLink(
            peer_id=peer_id,
            opener=self._peer_id < peer_id,
            host=self,
            deliver=self._deliver_frame,
            timings=self._timings,
            log=self.log,
            rng=self._rng,
        )
        self._links[peer_id] = link
        self._link_scopes[peer_id] = self._start_task(link.run)

    def _start_task(self, function: Any, *args: Any) -> trio.CancelScope:
        assert self._nursery is not None
        scope = trio.CancelScope()

        async def scoped() -> None:
            with scope:
                await function(*args)

        self._nursery.start_soon(scoped)
        return scope

    async def _deliver_frame(self, peer_id: str, frame: bytes) -> None:
        handler = self._frame_handler
        if handler is None:
            self._frames_without_handler += 1
            return
        await handler(peer_id, frame)

    async def _handle_raft_stream(self, stream: Any) -> None:
        peer_id = stream.muxed_conn.peer_id.to_base58()
        with trio.move_on_after(HELLO_TIMEOUT_S):
            while not self.greeted(peer_id):  # its hello and this stream may cross
                await self._connectivity.wait()
        if not self.greeted(peer_id):
            self.log.warning("raft stream refused", peer=peer_id, reason="no hello")
            await reset_quietly(stream)
            return
        link = self._links.get(peer_id)
        if link is None or link.opener:
            reason = ("we open raft streams to this peer" if link is not None
                      else "not a validator" if self.is_validator else "we are an observer")
            self.log.warning("raft stream refused", peer=peer_id, reason=reason)
            await reset_quietly(stream)
            return
        await link.adopt(stream)

    # ---------------------------------------------------------------- LinkHost

    async def wait_connected(self, peer_id: str) -> None:
        while not (self.is_connected(peer_id) and self.greeted(peer_id)):
            await self._connectivity.wait()

    # ================================================================ chain handshake

    def greeted(self, peer_id: str) -> bool:
        """Has ``peer_id`` said it is on our chain, on its current connection?"""
        return self._greeter is None or self._greeter.is_greeted(peer_id)

    def connection_opened(self, connection: Any) -> None:
        if self._greeter is None or self._nursery is None:
            return
        with contextlib.suppress(Exception):  # a connection without a peer id yet
            peer_id = connection.muxed_conn.peer_id.to_base58()
            if self._greeter.should_greet(peer_id):
                self._start_task(self._greeter.greet, peer_id)

    def connection_gone(self, peer_id: str) -> None:
        if self._greeter is not None:
            self._greeter.forget(peer_id)

    def _drop_foreign(self, peer_id: str) -> None:
        if self._nursery is not None:
            self._start_task(self._drop_offender, peer_id)

    async def open_raft_stream(self, peer_id: str) -> Any:
        return await self._opener.open(peer_id, RAFT_PROTOCOL,
                                       timeout_s=self._timings.stream_open_timeout_s)

    # ================================================================ gossip topics

    def _subscribe_pending(self) -> None:
        if self._nursery is None or self._gossip is None:
            return
        for topic in sorted(set(self._gossip_handlers) - self._subscribed):
            self._subscribed.add(topic)
            self._nursery.start_soon(self._gossip.subscribe_and_drain, topic)
