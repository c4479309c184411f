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

MEASUREMENTS.md lists 11 pitfalls of py-libp2p 0.8.1; each is mended here or in the
p2p_* modules, where the mend lives beside the code it concerns:
 1. Noise only in ``sec_opt`` (the default also offers plaintext, secio and TLS).
 2. ``ConnectionConfig(max_connections_per_peer=1)`` (a connect then takes ~5 ms, not
    250 ms).
 3. GossipSub tuned: spam protection and adaptive gossip off, 1 s heartbeat (p2p_gossip).
 4. Publishing paced on libp2p's own per-peer queue depth; subscriptions drained at once
    (p2p_gossip).
 5. Gossip over GOSSIP_MESSAGE_BYTES_MAX refused with MessageTooLargeError (p2p_gossip).
 6. Pubsub and GossipSub services are started before ``host.run()`` (``run`` below).
 7. Shutdown: publishing stops, raft links close and every peer is disconnected before
    the libp2p service contexts are left (``run`` below).
 8. Raft streams are supervised: write deadline, read inactivity with keepalives, resets;
    then disconnect, unblock and redial (p2p_raft).
 9. ``unblock_peer`` before every dial, so the 60 s failed-dial cache never refuses a
    known peer (``_dial`` below and p2p_raft).
10. ``PY_YAMUX_RELEASE_ON_READ=0`` is set in the environment below, before libp2p is
    imported, unless the operator set it (yamux reads it at call time).
11. Message ids stay from+seqno, which is sound with StrictSign on (p2p_gossip).
12. A connection whose close is cut short (a paused or vanished peer) stays in libp2p's
    registry, closed: ``connect`` then returns at once without dialing and every inbound
    connection from that peer is trimmed as a surplus, so the pair never reconnects.
    Closed connections are forgotten on every disconnect and before every dial, and a
    dropped connection leaves the registry even when its close times out
    (``drop_connection``). Half-open connections (no FIN, no RST) are found by pinging
    every kept peer (``_watch_connection``).
"""

from __future__ import annotations

import os

# Pitfall 10: yamux sends a window update per read by default; off, it roughly doubles
# throughput (measured again here: 21 -> 30 MB/s for 1 MiB frames, 830 -> 1,040 small
# frames/s). Must be in the environment before libp2p's yamux runs; an operator's own
# value wins.
os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")

import contextlib
import logging
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INotifee
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.identity_utils import create_identity_from_seed
from libp2p.io.exceptions import IOException
from libp2p.io.utils import read_exactly
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.exceptions import HandshakeFailure
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.exceptions import MuxedConnError, MuxedStreamError
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from ledger.errors import ConfigError
from node.logs import get_logger
from node.p2p_conduct import ConductStatistics, PeerConduct
from node.p2p_framing import (
    STREAM_CLEANUP_S_MAX,
    cleanup_scope,
    close_quietly,
    reset_quietly,
)
from node.p2p_gossip import Gossip, GossipStatistics
from node.p2p_identity import peer_id_from_public_key, peer_id_from_seed
from node.p2p_limits import (
    CONNECTIONS_MAX,
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
from node.p2p_raft import Backoff, LinkStatistics, RaftLink
from node.p2p_sync import SyncClient, SyncServer
from node.transport import (
    FrameHandler,
    GossipHandler,
    PeerState,
    RequestHandler,
    TransportClosedError,
    check_raft_frame,
)

__all__ = [
    "GOSSIP_MESSAGE_BYTES_MAX",
    "RAFT_FRAME_BYTES_MAX",
    "RAFT_PROTOCOL",
    "SYNC_PROTOCOL",
    "SYNC_REQUEST_BYTES_MAX",
    "SYNC_RESPONSE_BYTES_MAX",
    "Libp2pTransport",
    "Timings",
    "peer_id_from_public_key",
    "peer_id_from_seed",
]

# A libp2p warning repeated with the same template and first argument (the peer) is
# logged at most once in this interval; the keys remembered are bounded.
LIBP2P_LOG_REPEAT_S = 60.0
LIBP2P_LOG_KEYS_MAX = 4096
# A connection that lived this long was healthy: the keeper's backoff starts afresh.
STABLE_CONNECTION_S = 10.0
# The libp2p ping protocol's payload.
PING_PAYLOAD_BYTES = 32
# What ``_ping`` says when no pong came in time (the one miss other traffic can excuse).
PING_TIMED_OUT = "no pong in time"
# Dial backoff for peers we know no address of (they may still dial us).
NO_ADDRESS_RETRY_S = 5.0
# Errors a stream handler may meet when the connection or stream goes away under it:
# churn, not misbehaviour (anything else a handler raises on a peer's input is).
CHURN_ERRORS = (IOException, MuxedConnError, MuxedStreamError, trio.ClosedResourceError,
                trio.BrokenResourceError, EOFError, ConnectionError)
# Closing a connection politely (yamux GoAway, Noise, TCP FIN) to a peer that stopped
# reading can block for as long as the peer sleeps; past this the connection is dropped
# from libp2p's registry unclosed and its socket goes with the garbage.
CONNECTION_CLOSE_S_MAX = 1.0


class _LibP2PLogBridge(logging.Handler):
    """py-libp2p logs through stdlib logging with propagation off and no handler, so its
    warnings and errors would reach stderr as bare lines; this sends them to structlog.
    Installed once per process, on the first transport's start.

    Repeats are rate-limited: one line per (logger, message template, first argument,
    which is the peer in nearly all of libp2p's messages) per LIBP2P_LOG_REPEAT_S, with
    the count suppressed since; a peer that provokes a warning per message cannot flood
    the log."""

    installed = False

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._log = get_logger(component="libp2p")
        self._last: dict[tuple[str, str, str], tuple[float, int]] = {}

    @classmethod
    def install(cls) -> None:
        if not cls.installed:
            logging.getLogger("libp2p").addHandler(cls())
            cls.installed = True

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        key = (record.name, str(record.msg)[:200], str(args[0])[:100] if args else "")
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < LIBP2P_LOG_REPEAT_S:
            self._last[key] = (last[0], last[1] + 1)
            return
        if len(self._last) >= LIBP2P_LOG_KEYS_MAX:
            self._last.clear()
        self._last[key] = (now, 0)
        # Always a warning: libp2p logs ordinary churn (a stream that fails to open while
        # a duplicate connection is trimmed) at ERROR; its own level is kept as a field.
        self._log.warning(record.getMessage(), logger=record.name,
                          libp2p_level=record.levelname, exc_info=record.exc_info,
                          suppressed_since_last=0 if last is None else last[1])


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    links: dict[str, LinkStatistics]
    gossip: GossipStatistics
    sync_served: int
    sync_refused: int
    frames_without_handler: int
    conduct: ConductStatistics
    connections_forgotten: int
    liveness_drops: int


class _AdmittingNoise(NoiseTransport):
    """Noise with a gate after the handshake: the remote peer id is authenticated there,
    so a peer that is not admitted is refused before any muxer or protocol runs."""

    def __init__(self, key_pair: Any, transport: Libp2pTransport) -> None:
        super().__init__(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        self._transport = transport

    async def secure_inbound(self, conn: Any) -> Any:
        secured = await super().secure_inbound(conn)
        await self._admit(secured, "inbound")
        return secured

    async def secure_outbound(self, conn: Any, peer_id: Any) -> Any:
        secured = await super().secure_outbound(conn, peer_id)
        await self._admit(secured, "outbound")
        return secured

    async def _admit(self, secured: Any, direction: str) -> None:
        peer_id = secured.get_remote_peer().to_base58()
        if self._transport.admitted(peer_id):
            return
        self._transport.log_refusal(peer_id, direction)
        with cleanup_scope(STREAM_CLEANUP_S_MAX), contextlib.suppress(Exception):
            await secured.close()  # the socket may already be gone
        raise HandshakeFailure(f"peer {peer_id} is not admitted")


class _NoAutoConnector(AutoConnector):
    """libp2p's auto-connector dials peers from the peer store until it holds (low +
    high watermark) / 2 connections, 128 here, whatever the watermarks say, while the
    pruner needs the high watermark; we dial exactly the configured peers ourselves."""

    async def maybe_connect(self) -> None:
        return None


class _ConnectivityNotifee(INotifee):
    def __init__(self, transport: Libp2pTransport) -> None:
        self._transport = transport

    async def connected(self, network: Any, conn: Any) -> None:
        self._transport.connectivity_changed()

    async def disconnected(self, network: Any, conn: Any) -> None:
        self._transport.connection_closed(conn)

    async def opened_stream(self, network: Any, stream: Any) -> None:
        pass

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def listen(self, network: Any, multiaddr: Any) -> None:
        pass

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        pass


class Libp2pTransport:
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
    ) -> None:
        self._seed = seed
        self._peer_id = peer_id_from_seed(seed)
        self._listen = listen
        self._bootstrap = _parse_bootstrap(bootstrap, self._peer_id)
        self._open_for_observers = open_for_observers
        self._validators = set(validators)
        self._timings = timings or Timings()
        self._rng = rng or random.Random()
        self.log = get_logger(component="p2p", node=self._peer_id)
        self._frame_handler: FrameHandler | None = None
        self._gossip_handlers: dict[str, GossipHandler] = {}
        self._request_handler: RequestHandler | None = None
        self._host: Any = None
        self._gossip: Gossip | None = None
        self._sync_client: SyncClient | None = None
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
                connected=self.is_connected(peer_id),
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
        _LibP2PLogBridge.install()
        host = self._host = self._build_host()
        gossip = self._gossip = Gossip(host, timings=self._timings, log=self.log,
                                       on_heard=self._heard_from,
                                       is_admitted=self.admitted)
        for topic, handler in self._gossip_handlers.items():
            gossip.set_handler(topic, handler)
        self._sync_client = SyncClient(host, timings=self._timings)
        self._sync_server = SyncServer(timings=self._timings, log=self.log,
                                       is_admitted=self.admitted)
        self._sync_server.handler = self._request_handler
        self._sync_server.on_heard = self._heard_from
        host.set_stream_handler(TProtocol(RAFT_PROTOCOL), self._handle_raft_stream)
        host.set_stream_handler(TProtocol(SYNC_PROTOCOL), self._sync_server.handle_stream)
        host.get_network().register_notifee(_ConnectivityNotifee(self))
        # Pitfall 6: Pubsub and GossipSub run before the host listens.
        async with (
            background_trio_service(gossip.pubsub),
            background_trio_service(gossip.router),
            host.run([multiaddr.Multiaddr(self._listen)]),
        ):
            await gossip.pubsub.wait_until_ready()
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._subscribe_pending()
                    self._reconcile()
                    self.log.info("p2p transport listening", addresses=self.listen_addresses,
                                  validator=self.is_validator,
                                  open_for_observers=self._open_for_observers)
                    task_status.started(self.listen_addresses)
                    await trio.sleep_forever()
            finally:
                self._nursery = None
                await self._disconnect_all()
        self.log.info("p2p transport stopped")

    def _build_host(self) -> Any:
        key_pair = create_identity_from_seed(self._seed)
        host = new_host(
            key_pair=key_pair,
            sec_opt={TProtocol(NOISE_PROTOCOL_ID): _AdmittingNoise(key_pair, self)},  # pitfall 1
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            listen_addrs=[multiaddr.Multiaddr(self._listen)],
            connection_config=ConnectionConfig(
                max_connections_per_peer=1,  # pitfall 2
                max_connections=CONNECTIONS_MAX,
                high_watermark=CONNECTIONS_MAX,
                # No dialing of peer store entries to reach a minimum (see _NoAutoConnector).
                min_connections=0,
                low_watermark=0,
                # A duplicate connection (both ends dialed at once) is trimmed at once.
                grace_period=0.0,
                dial_timeout=self._timings.dial_timeout_s,
            ),
        )
        network: Any = host.get_network()  # the Swarm, whose extras the interface lacks
        # Every protocol handler, libp2p's own included, runs inside this containment.
        network.set_stream_handler(self._contained(network.common_stream_handler))
        network.auto_connector = _NoAutoConnector(
            swarm=network, auto_connect_interval=network.connection_config.auto_connect_interval
        )
        return host

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
        while not self.is_connected(peer_id):
            await self._connectivity.wait()

    async def open_raft_stream(self, peer_id: str) -> Any:
        return await self._host.new_stream(ID.from_base58(peer_id), [TProtocol(RAFT_PROTOCOL)])

    async def drop_connection(self, peer_id: str) -> None:
        """Disconnect and clear the failed-dial cache, so the keeper redials at once
        (pitfalls 8 and 9). Closing a connection to a peer that stopped reading can outlast
        any bound we give it; the connection leaves libp2p's registry either way, or it
        would refuse every fresh connection to that peer (pitfall 12)."""
        peer = ID.from_base58(peer_id)
        network = self._host.get_network()
        # Only the connections there now: the peer may dial us afresh while these close,
        # and that new connection must survive (libp2p's own disconnect forgets every
        # connection of the peer once its closes return, the new one included).
        doomed = list(network.get_connections(peer))
        with cleanup_scope(CONNECTION_CLOSE_S_MAX):
            for connection in doomed:
                try:
                    await connection.close()
                except Exception as error:  # already closing
                    self.log.debug("disconnect failed", peer=peer_id, error=repr(error))
        self._forget(doomed)
        network.unblock_peer(peer)
        self.connectivity_changed()

    def _forget(self, connections: Iterable[Any]) -> None:
        """Remove connections from libp2p's registry (pitfall 12: a connection whose close
        was cut short stays registered though closed; ``connect`` then returns at once
        without dialing, and every inbound connection from the peer is trimmed as the
        per-peer surplus)."""
        network = self._host.get_network()
        for connection in connections:
            if connection in network.get_connections(connection.muxed_conn.peer_id):
                network.remove_conn(connection)
                self.connections_forgotten += 1

    def _forget_closed(self, peer: Any) -> None:
        network = self._host.get_network()
        self._forget([connection for connection in network.get_connections(peer)
                      if connection.is_closed])

    # ================================================================ connectivity

    def connectivity_changed(self) -> None:
        self._connectivity.set()
        self._connectivity = trio.Event()

    def connection_closed(self, connection: Any) -> None:
        with contextlib.suppress(Exception):  # a connection without a peer id yet
            self._forget_closed(connection.muxed_conn.peer_id)
        self.connectivity_changed()

    def is_connected(self, peer_id: str) -> bool:
        if self._host is None:
            return False
        try:
            connections = self._host.get_network().get_connections(ID.from_base58(peer_id))
        except Exception:  # not a peer id libp2p can parse
            return False
        return any(not connection.is_closed for connection in connections)

    def _connected_peers(self) -> set[str]:
        if self._host is None:
            return set()
        return {peer.to_base58() for peer in self._host.get_connected_peers()}

    async def _keep_connected(self, peer_id: str) -> None:
        """Keep a connection to ``peer_id`` (a bootstrap peer or a validator): dial with
        backoff while it is down."""
        backoff = Backoff(initial_s=self._timings.redial_backoff_initial_s,
                          maximum_s=self._timings.redial_backoff_max_s, rng=self._rng)
        log = self.log.bind(peer=peer_id)
        while True:
            if not self.admitted(peer_id):
                await self._admission.wait()
            elif self.is_connected(peer_id):
                connected_at = trio.current_time()
                reason = await self._watch_connection(peer_id)
                log.info("peer disconnected", reason=reason)
                if trio.current_time() - connected_at >= STABLE_CONNECTION_S:
                    backoff.reset()
                await backoff.wait()
            elif self._dials_second(peer_id):
                await trio.sleep(self._timings.acceptor_dial_delay_s)
                if not self.is_connected(peer_id) and not await self._dial(peer_id, log):
                    await backoff.wait()
            elif not await self._dial(peer_id, log):
                await backoff.wait()

    async def _watch_connection(self, peer_id: str) -> str:
        """Return once ``peer_id`` is no longer connected, with the reason. A connection
        that answers no ping for ``liveness_failures_max`` probes in a row is half-open
        (the peer's host vanished without a FIN or RST, or the peer is paused): it is
        dropped, so the keeper dials afresh instead of trusting it forever."""
        timings = self._timings
        failures = 0
        while self.is_connected(peer_id):
            with trio.move_on_after(timings.liveness_interval_s):
                while self.is_connected(peer_id):
                    await self._connectivity.wait()
                return "closed"
            link = self._links.get(peer_id)
            if link is not None and link.stream_up:
                # A raft link that is up watches the connection itself (keepalives, a
                # 5 s read deadline): no ping, which a busy host could answer too late.
                failures = 0
                continue
            miss = await self._ping(peer_id)
            if miss is None:
                failures = 0
                continue
            if miss == PING_TIMED_OUT and (trio.current_time() - self._heard_at.get(
                    peer_id, -math.inf) <= timings.liveness_timeout_s + 1.0):
                # Late, not dead: a busy peer (an observer applying a burst, a leader
                # under load) answered requests or relayed gossip meanwhile. Dropping it
                # made the pair flap every 6 s for minutes in the chaos testnet. A ping
                # whose stream cannot open is never excused.
                failures = 0
                continue
            failures += 1
            self.log.info("ping unanswered", peer=peer_id, failures=failures, reason=miss)
            if failures >= timings.liveness_failures_max:
                self.log.warning("peer answers no ping: dropping the connection",
                                 peer=peer_id, failures=failures)
                self.liveness_drops += 1
                await self.drop_connection(peer_id)
                return "no answer to ping"
        return "closed"

    async def _ping(self, peer_id: str) -> str | None:
        """None when the pong came; else why not: no pong within the timeout, or the ping
        stream cannot even be opened (a connection that fails every stream is as dead as
        a silent one)."""
        with trio.move_on_after(self._timings.liveness_timeout_s):
            try:
                return await self._ping_once(peer_id)
            except Exception as error:  # refused, reset, no stream: no pong
                return f"{type(error).__name__}: {error}"[:300]
        return PING_TIMED_OUT

    async def _ping_once(self, peer_id: str) -> str | None:
        """One ping on a fresh stream (the libp2p ping protocol: 32 bytes echoed), which
        is closed or reset however this ends. (py-libp2p's PingService keeps one stream
        per peer and, when a ping is cancelled, keeps the dead one: every later ping to
        that peer then failed at once, and the liveness check dropped a healthy
        connection every 6 s for the rest of the run.)"""
        assert self._host is not None
        stream = await self._host.new_stream(ID.from_base58(peer_id), [PING_PROTOCOL])
        try:
            payload = os.urandom(PING_PAYLOAD_BYTES)
            await stream.write(payload)
            if await read_exactly(stream, PING_PAYLOAD_BYTES) != payload:
                return "pong does not match the ping"
        except BaseException:
            await reset_quietly(stream)
            raise
        await close_quietly(stream)
        return None

    def _dials_second(self, peer_id: str) -> bool:
        """Of two validators, the one that accepts the raft stream dials after a delay."""
        return self.is_validator and peer_id in self._validators and peer_id < self._peer_id

    async def _dial(self, peer_id: str, log: Any) -> bool:
        addresses = self._dial_addresses(peer_id)
        if not addresses:
            log.debug("no address to dial")
            await trio.sleep(NO_ADDRESS_RETRY_S)
            return False
        peer = ID.from_base58(peer_id)
        self._forget_closed(peer)  # pitfall 12
        self._host.get_network().unblock_peer(peer)  # pitfall 9
        try:
            with trio.fail_after(self._timings.dial_timeout_s):
                await self._host.connect(PeerInfo(peer, addresses))
        except Exception as error:  # refused, unreachable, timed out, handshake failed
            log.info("dial failed", error=repr(error))
            return False
        # connect() returns at once, without a checkpoint, while a closing connection is
        # still registered: only a live connection counts as success.
        await trio.lowlevel.checkpoint()
        if not self.is_connected(peer_id):
            return False
        log.info("peer connected")
        return True

    def _dial_addresses(self, peer_id: str) -> list[Any]:
        addresses = list(self._bootstrap.get(peer_id, ()))
        if self._host is not None:
            try:
                known = self._host.get_peerstore().addrs(ID.from_base58(peer_id))
            except Exception:  # libp2p raises when the peer store has no entry
                known = []
            addresses.extend(address for address in known if address not in addresses)
        return addresses

    async def _drop_not_admitted(self, peer_id: str) -> None:
        self.log.info("disconnecting a peer no longer admitted", peer=peer_id)
        with trio.move_on_after(self._timings.shutdown_grace_s):
            await self.drop_connection(peer_id)

    # ================================================================ gossip topics

    def _subscribe_pending(self) -> None:
        if self._nursery is None or self._gossip is None:
            return
        for topic in sorted(set(self._gossip_handlers) - self._subscribed):
            self._subscribed.add(topic)
            self._nursery.start_soon(self._gossip.subscribe_and_drain, topic)


def _parse_bootstrap(entries: Iterable[str], own_peer_id: str) -> dict[str, list[Any]]:
    """Bootstrap multiaddrs by peer id; entries naming ourselves are skipped (a devnet may
    hand every node the same list)."""
    by_peer: dict[str, list[Any]] = {}
    for entry in entries:
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(entry))
        except Exception as error:
            raise ConfigError(
                f"bootstrap address {entry!r} is not a multiaddr with /p2p/<peer id>: {error}"
            ) from None
        peer_id = info.peer_id.to_base58()
        if peer_id != own_peer_id:
            by_peer.setdefault(peer_id, []).extend(info.addrs)
    return by_peer
