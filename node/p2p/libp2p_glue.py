"""py-libp2p glue for the node's host: the log bridge, the admitting Noise transport, the
auto-connector we switch off, the connectivity notifee and bootstrap parsing."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INotifee
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.identity_utils import create_identity_from_seed
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.exceptions import HandshakeFailure
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from ledger.errors import ConfigError
from node.logs import get_logger
from node.p2p.framing import STREAM_CLEANUP_S_MAX, cleanup_scope
from node.p2p.limits import CONNECTIONS_MAX


class Gatekeeper(Protocol):
    """What the admitting Noise transport asks of the host."""

    def admitted(self, peer_id: str) -> bool: ...

    def log_refusal(self, peer_id: str, direction: str) -> None: ...


class ConnectivityListener(Protocol):
    """What the notifee tells the host."""

    def connectivity_changed(self) -> None: ...

    def connection_opened(self, connection: Any) -> None: ...

    def connection_closed(self, connection: Any) -> None: ...

# A libp2p warning repeated with the same template and first argument (the peer) is
# logged at most once in this interval; the keys remembered are bounded.
LIBP2P_LOG_REPEAT_S = 60.0
LIBP2P_LOG_KEYS_MAX = 4096


class LibP2PLogBridge(logging.Handler):
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


class AdmittingNoise(NoiseTransport):
    """Noise with a gate after the handshake: the remote peer id is authenticated there,
    so a peer that is not admitted is refused before any muxer or protocol runs."""

    def __init__(self, key_pair: Any, transport: Gatekeeper) -> None:
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


def new_libp2p_host(*, seed: bytes, listen: str, dial_timeout_s: float,
                    gatekeeper: Gatekeeper, contain: Callable[[Any], Any]) -> Any:
    """py-libp2p's host as the node runs it: Noise behind the admission gate, yamux, one
    connection per peer, no auto-dialing, and every protocol handler (libp2p's own too)
    wrapped by ``contain``."""
    key_pair = create_identity_from_seed(seed)
    host = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): AdmittingNoise(key_pair, gatekeeper)},  # pitfall 1
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[multiaddr.Multiaddr(listen)],
        connection_config=ConnectionConfig(
            max_connections_per_peer=1,  # pitfall 2
            max_connections=CONNECTIONS_MAX,
            high_watermark=CONNECTIONS_MAX,
            # No dialing of peer store entries to reach a minimum (see NoAutoConnector).
            min_connections=0,
            low_watermark=0,
            # A duplicate connection (both ends dialed at once) is trimmed at once.
            grace_period=0.0,
            dial_timeout=dial_timeout_s,
        ),
    )
    network: Any = host.get_network()  # the Swarm, whose extras the interface lacks
    network.set_stream_handler(contain(network.common_stream_handler))
    network.auto_connector = NoAutoConnector(
        swarm=network, auto_connect_interval=network.connection_config.auto_connect_interval
    )
    return host


class NoAutoConnector(AutoConnector):
    """libp2p's auto-connector dials peers from the peer store until it holds (low +
    high watermark) / 2 connections, 128 here, whatever the watermarks say, while the
    pruner needs the high watermark; we dial exactly the configured peers ourselves."""

    async def maybe_connect(self) -> None:
        return None


class ConnectivityNotifee(INotifee):
    def __init__(self, transport: ConnectivityListener) -> None:
        self._transport = transport

    async def connected(self, network: Any, conn: Any) -> None:
        self._transport.connection_opened(conn)
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


def parse_bootstrap(entries: Iterable[str], own_peer_id: str) -> dict[str, list[Any]]:
    """Bootstrap multiaddrs by peer id; entries naming ourselves are skipped (a devnet may
    hand every node the same list). Host names (/dns4, /dns6, /dns) stay names here and
    are resolved at every dial (:func:`resolve_host_names`)."""
    by_peer: dict[str, list[Any]] = {}
    for entry in entries:
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(entry))
        except Exception as error:
            raise ConfigError(
                f"bootstrap address {entry!r} is not a multiaddr with /p2p/<peer id>: {error}"
            ) from None
        if entry.startswith("/dnsaddr/"):
            raise ConfigError(
                f"bootstrap address {entry!r}: /dnsaddr (DNS TXT records) is not supported; "
                "name the host with /dns4, /dns6 or /dns and its /tcp port")
        peer_id = info.peer_id.to_base58()
        if peer_id != own_peer_id:
            by_peer.setdefault(peer_id, []).extend(info.addrs)
    return by_peer


def refuse_port_in_use(listen: str) -> None:
    """Raise ConfigError if the TCP port of ``listen`` (an /ip4|ip6/.../tcp/PORT multiaddr)
    is taken. py-libp2p binds with SO_REUSEPORT, so a second node on the same port would
    start and share it; a bind without it first finds any socket listening there."""
    try:
        address = multiaddr.Multiaddr(listen)
        port = int(address.value_for_protocol("tcp"))
        family, host = ((socket.AF_INET6, address.value_for_protocol("ip6"))
                        if "/ip6/" in listen else
                        (socket.AF_INET, address.value_for_protocol("ip4")))
    except Exception as error:
        raise ConfigError(f"[p2p] listen {listen!r} is not an /ip4|ip6/.../tcp/PORT "
                          f"multiaddr: {error}") from None
    if port == 0:
        return
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: our own connections of a moment ago (TIME_WAIT after a restart)
        # do not count; a socket listening there still does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(f"[p2p] listen {listen}: cannot use port {port} "
                              f"({error.strerror}; another process listens there?): "
                              "choose another [p2p] listen port") from None


# Host-name protocols of a multiaddr and the address family each resolves to.
HOST_NAME_FAMILIES = {"dns4": socket.AF_INET, "dns6": socket.AF_INET6, "dns": socket.AF_UNSPEC}
# A name lookup (the system resolver: /etc/hosts, then DNS) longer than this fails the
# dial; the keeper retries with its backoff, so a slow resolver delays, never wedges, it.
HOST_NAME_LOOKUP_S_MAX = 5.0
# Addresses taken from one name (a round-robin name may list many; we dial them in turn).
HOST_NAME_ADDRESSES_MAX = 8


async def resolve_host_names(addresses: Iterable[Any], *,
                             timeout_s: float = HOST_NAME_LOOKUP_S_MAX) -> list[Any]:
    """``addresses`` with every /dns4, /dns6 or /dns host name replaced by the /ip4 or
    /ip6 addresses the system resolver gives for it now (py-libp2p's own resolver asks
    DNS servers only, and left such bootstrap entries undialled). Others pass as they
    are; a name that does not resolve in ``timeout_s`` is left out and logged."""
    resolved: list[Any] = []
    for address in addresses:
        text = str(address)
        parts = text.split("/", 3)  # "", protocol, host, the rest ("tcp/30333")
        family = HOST_NAME_FAMILIES.get(parts[1]) if len(parts) >= 3 else None
        if family is None:
            resolved.append(address)
            continue
        host = parts[2]
        remainder = "/" + parts[3] if len(parts) == 4 else ""
        found: list[Any] = []
        with trio.move_on_after(timeout_s):
            try:
                infos = await trio.socket.getaddrinfo(host, None, family=family,
                                                      type=socket.SOCK_STREAM)
            except OSError as error:  # socket.gaierror: no such name, no resolver
                get_logger(component="p2p").info("host name not resolved", address=text,
                                                  error=str(error))
                continue
            for info_family, _, _, _, socket_address in infos:
                protocol_name = "ip4" if info_family == socket.AF_INET else "ip6"
                candidate = multiaddr.Multiaddr(f"/{protocol_name}/{socket_address[0]}"
                                                f"{remainder}")
                if candidate not in found:
                    found.append(candidate)
        if not found:
            get_logger(component="p2p").info("host name not resolved", address=text,
                                              timeout_s=timeout_s)
        resolved.extend(found[:HOST_NAME_ADDRESSES_MAX])
    return resolved
