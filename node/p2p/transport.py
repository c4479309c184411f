"""The port between the node and its network: small Protocols, a libp2p implementation
(node/p2p.py) and an in-memory one for tests.

Frames are opaque bytes to the transport (the node batches raft messages into one frame).
Peers are named by their libp2p peer id string (base58).

Both implementations are Trio services: ``await nursery.start(transport.run)`` starts one
and returns its listen addresses; cancelling ``run`` stops it within a bounded grace
period. Handlers may be registered before or after the start.

Operating errors raised by a transport are the typed ones below (all under
:class:`ledger.errors.MedledgerError`): ``Local*`` when the caller misused the port
(a message too large, the transport closed), ``Remote*`` when the peer refused, failed or
was too slow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ledger.errors import LocalError, MedledgerError, RemoteError
from node.p2p.limits import GOSSIP_MESSAGE_BYTES_MAX, RAFT_FRAME_BYTES_MAX

# A request handler for the request/response protocol: request bytes in, response out.
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
# A gossip handler: (sender peer id, message data). Return False to reject (not forwarded).
GossipHandler = Callable[[str, bytes], Awaitable[bool]]
# Inbound raft frame handler: (sender peer id, frame).
FrameHandler = Callable[[str, bytes], Awaitable[None]]


class TransportClosedError(LocalError):
    """The transport is not running (not started yet, or shutting down)."""


class MessageTooLargeError(LocalError):
    """A frame, gossip message or request is over the transport's named size limit: the
    caller must batch smaller or chunk."""


def check_raft_frame(frame: bytes) -> None:
    """What every transport refuses to send as a raft frame."""
    if len(frame) > RAFT_FRAME_BYTES_MAX:
        raise MessageTooLargeError(
            f"raft frame of {len(frame)} bytes > {RAFT_FRAME_BYTES_MAX}: batch smaller"
        )
    assert frame, "an empty frame is the keepalive: raft frames are never empty"


def check_gossip_message(data: bytes) -> None:
    """What every transport refuses to publish."""
    if len(data) > GOSSIP_MESSAGE_BYTES_MAX:
        raise MessageTooLargeError(
            f"gossip message of {len(data)} bytes > {GOSSIP_MESSAGE_BYTES_MAX}: chunk it"
        )


class GossipBackpressureError(LocalError):
    """Gossip could not be published in time because peers' outbound queues stayed full
    (publishing faster than the network moves messages)."""


class PeerUnreachableError(RemoteError):
    """No connection to the peer could be made (unknown address, dial failed, refused)."""


class RequestRefusedError(RemoteError):
    """The peer refused the request (we are not admitted) or reset the stream."""


class RequestFailedError(RemoteError):
    """The peer accepted the request but its handler failed, or the answer was malformed
    or too large."""


class RequestTimeoutError(RemoteError):
    """The peer did not answer within the request's timeout."""


@dataclass(frozen=True, slots=True)
class PeerState:
    peer_id: str
    addresses: tuple[str, ...]
    connected: bool
    raft_stream: bool


class Transport(Protocol):
    async def run(self, *, task_status: Any = ...) -> None:
        """Listen, dial and serve until cancelled; ``task_status.started`` gets the
        listen addresses."""
        ...

    @property
    def peer_id(self) -> str: ...

    @property
    def listen_addresses(self) -> tuple[str, ...]:
        """Full multiaddrs including /p2p/<peer id>, once listening."""
        ...

    def set_validators(self, peer_ids: set[str]) -> None:
        """Only these peers may send raft frames (others are refused and disconnected,
        unless they only use gossip/sync and the node is open for observers)."""
        ...

    async def send_frame(self, peer_id: str, frame: bytes) -> bool:
        """Queue a raft frame to a validator over its persistent stream. Never blocks for
        long: returns False if the peer's bounded queue is full or it is unreachable (raft
        retries on its own). A frame over the transport's frame size limit raises
        MessageTooLargeError (the sender must batch smaller)."""
        ...

    def on_frame(self, handler: FrameHandler) -> None: ...

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip ``data`` (< 1 MiB; the caller chunks) on ``topic``, paced. Raises
        MessageTooLargeError, GossipBackpressureError or TransportClosedError."""
        ...

    def on_gossip(self, topic: str, handler: GossipHandler) -> None: ...

    async def request(self, peer_id: str, data: bytes, *, timeout_s: float = 10.0) -> bytes:
        """One request/response exchange on the sync protocol. Raises
        PeerUnreachableError, RequestRefusedError, RequestFailedError, RequestTimeoutError,
        MessageTooLargeError or TransportClosedError."""
        ...

    def on_request(self, handler: RequestHandler) -> None: ...

    def peers(self) -> list[PeerState]: ...


async def publish_quietly(transport: Transport, topic: str, data: bytes, log: Any) -> None:
    """Gossip ``data``; a failure is logged, never raised (gossip is best effort)."""
    try:
        await transport.publish(topic, data)
    except (MedledgerError, OSError) as error:
        log.info("gossip publish failed", topic=topic, error=str(error))
