"""The port between the node and its network: small Protocols, a libp2p implementation
(node/p2p.py) and an in-memory one for tests.

Frames are opaque bytes to the transport (the node batches raft messages into one frame).
Peers are named by their libp2p peer id string (base58).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

# A request handler for the request/response protocol: request bytes in, response out.
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
# A gossip handler: (sender peer id, message data). Return False to reject (not forwarded).
GossipHandler = Callable[[str, bytes], Awaitable[bool]]
# Inbound raft frame handler: (sender peer id, frame).
FrameHandler = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PeerState:
    peer_id: str
    addresses: tuple[str, ...]
    connected: bool
    raft_stream: bool


class Transport(Protocol):
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
        retries on its own)."""
        ...

    def on_frame(self, handler: FrameHandler) -> None: ...

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip ``data`` (< 1 MiB; the caller chunks) on ``topic``, paced."""
        ...

    def on_gossip(self, topic: str, handler: GossipHandler) -> None: ...

    async def request(self, peer_id: str, data: bytes, *, timeout_s: float = 10.0) -> bytes:
        """One request/response exchange on the sync protocol."""
        ...

    def on_request(self, handler: RequestHandler) -> None: ...

    def peers(self) -> list[PeerState]: ...
