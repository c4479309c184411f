"""Keeping peers connected: one keeper per validator and bootstrap peer dials with backoff
for as long as the node runs, watches the connection (a ping every liveness interval
when no raft link vouches for it; late pongs are excused by other traffic, failed
stream opens never) and drops a connection whose peer answers nothing, so the keeper
dials afresh instead of trusting it forever (pitfall 12 in node.p2p.host)."""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Iterable
from typing import Any

import trio
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.io.utils import read_exactly
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from node.p2p.framing import cleanup_scope, close_quietly, reset_quietly
from node.p2p.libp2p_glue import resolve_host_names
from node.p2p.limits import Timings
from node.p2p.raft_link import Backoff, RaftLink
from node.p2p.streams import StreamOpener

# While a kept peer stays unreachable, its failed dials are logged at INFO this often.
DIAL_FAILURE_LOG_INTERVAL_S = 60.0
# A connection that lived this long was healthy: the keeper's backoff starts afresh.
STABLE_CONNECTION_S = 10.0
# The libp2p ping protocol's payload.
PING_PAYLOAD_BYTES = 32
# What ``_ping`` says when no pong came in time (the one miss other traffic can excuse).
PING_TIMED_OUT = "no pong in time"
# Dial backoff for peers we know no address of (they may still dial us).
NO_ADDRESS_RETRY_S = 5.0
# Closing a connection politely (yamux GoAway, Noise, TCP FIN) to a peer that stopped
# reading can block for as long as the peer sleeps; past this the connection is dropped
# from libp2p's registry unclosed and its socket goes with the garbage.
CONNECTION_CLOSE_S_MAX = 1.0


class DialLog:
    """The log of one kept peer's dials: the first failure of an outage at INFO, then one
    line per DIAL_FAILURE_LOG_INTERVAL_S with the count (a peer down for an hour was one
    line per 5 s backoff), the rest at DEBUG; the connection that ends it says how many
    dials failed."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self._failures = 0
        self._logged_at = -math.inf

    def failed(self, error: BaseException) -> None:
        self._failures += 1
        now = time.monotonic()
        if now - self._logged_at >= DIAL_FAILURE_LOG_INTERVAL_S:
            self._logged_at = now
            self.log.info("dial failed", error=repr(error), failed_dials=self._failures)
        else:
            self.log.debug("dial failed", error=repr(error), failed_dials=self._failures)

    def connected(self) -> None:
        self.log.info("peer connected", after_failed_dials=self._failures)
        self._failures = 0
        self._logged_at = -math.inf


class ConnectionKeeper:
    """The connectivity half of :class:`node.p2p.host.Libp2pTransport` (a mixin: it shares
    the transport's host, timings, links and log)."""

    _host: Any
    _opener: StreamOpener
    _timings: Timings
    _links: dict[str, RaftLink]
    _connectivity: trio.Event
    _admission: trio.Event
    _peer_id: str
    _validators: set[str]
    _bootstrap: dict[str, list[Any]]
    _rng: random.Random
    _heard_at: dict[str, float]
    log: Any
    connections_forgotten: int
    liveness_drops: int

    def admitted(self, peer_id: str) -> bool:
        raise NotImplementedError

    @property
    def is_validator(self) -> bool:
        raise NotImplementedError

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

    def connectivity_changed(self) -> None:
        self._connectivity.set()
        self._connectivity = trio.Event()

    def connection_closed(self, connection: Any) -> None:
        with contextlib.suppress(Exception):  # a connection without a peer id yet
            peer = connection.muxed_conn.peer_id
            self._forget_closed(peer)
            if not self.is_connected(peer.to_base58()):
                self.connection_gone(peer.to_base58())
        self.connectivity_changed()

    def connection_gone(self, peer_id: str) -> None:
        """The last connection to ``peer_id`` closed (the host forgets its hello)."""

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
        dials = DialLog(log)
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
                if not self.is_connected(peer_id) and not await self._dial(peer_id, dials):
                    await backoff.wait()
            elif not await self._dial(peer_id, dials):
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
        stream = await self._opener.open(peer_id, PING_PROTOCOL,
                                         timeout_s=self._timings.liveness_timeout_s)
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

    async def _dial(self, peer_id: str, dials: DialLog) -> bool:
        addresses = await resolve_host_names(self._dial_addresses(peer_id))
        if not addresses:
            dials.log.debug("no address to dial")
            await trio.sleep(NO_ADDRESS_RETRY_S)
            return False
        peer = ID.from_base58(peer_id)
        self._forget_closed(peer)  # pitfall 12
        self._host.get_network().unblock_peer(peer)  # pitfall 9
        try:
            with trio.fail_after(self._timings.dial_timeout_s):
                await self._host.connect(PeerInfo(peer, addresses))
        except Exception as error:  # refused, unreachable, timed out, handshake failed
            dials.failed(error)
            return False
        # connect() returns at once, without a checkpoint, while a closing connection is
        # still registered: only a live connection counts as success.
        await trio.lowlevel.checkpoint()
        if not self.is_connected(peer_id):
            return False
        dials.connected()
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
