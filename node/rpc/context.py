"""What a method handler sees: the server (node, metrics, limits, registry, auth) and the
connection the call came on (transport, request id, authentication, WebSocket session)."""

from __future__ import annotations

import hmac
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import trio

from ledger.block import Block
from node.api import NodeAPI
from node.jsonview import block_view
from node.metrics import Metrics
from node.rpc.limits import RpcLimits
from node.rpc.registry import Registry

# Encoded block views kept for subscribers: they all sit at the head, so one encoding of
# each recent block serves every newBlocks subscription.
BLOCK_JSON_CACHE_ENTRIES_MAX = 8

TRANSPORT_HTTP = "http"
TRANSPORT_WEBSOCKET = "websocket"


def encode_json(value: Any) -> str:
    """Compact JSON; never NaN or Infinity (views hold no floats, but be sure)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(slots=True)
class RpcStatistics:
    """Counters of one server, for admin_rpcStatistics (metrics have the rates)."""

    http_requests: int = 0
    websocket_messages: int = 0
    calls: int = 0
    websocket_connections: int = 0
    websocket_connections_refused: int = 0
    subscriptions: int = 0
    subscription_overflows: int = 0


@dataclass(slots=True)
class ServerContext:
    node: NodeAPI
    metrics: Metrics
    limits: RpcLimits
    registry: Registry
    admin_token: bytes | None
    log: Any
    statistics: RpcStatistics = field(default_factory=RpcStatistics)
    shutting_down: trio.Event = field(default_factory=trio.Event)
    _block_json: OrderedDict[tuple[bytes, bool], str] = field(default_factory=OrderedDict)

    @property
    def admin_enabled(self) -> bool:
        return self.admin_token is not None

    def token_valid(self, candidate: str | None) -> bool:
        """Constant-time comparison with the configured admin token."""
        if self.admin_token is None or candidate is None:
            return False
        return hmac.compare_digest(candidate.encode("utf-8", "replace"), self.admin_token)

    def encoded_block(self, block: Block, *, full: bool) -> str:
        key = (block.hash, full)
        cached = self._block_json.get(key)
        if cached is None:
            cached = encode_json(block_view(block, full=full))
            self._block_json[key] = cached
            if len(self._block_json) > BLOCK_JSON_CACHE_ENTRIES_MAX:
                self._block_json.popitem(last=False)
        return cached


@dataclass(slots=True)
class Connection:
    """One HTTP request, or one WebSocket connection for its whole life."""

    transport: str
    request_id: str
    authenticated: bool = False
    authentication_failures: int = 0
    # A WebSocket connection's node.rpc.subscriptions.WebSocketSession (which builds on
    # this module, hence not named here); None for HTTP.
    session: object | None = None


@dataclass(frozen=True, slots=True)
class CallContext:
    server: ServerContext
    connection: Connection

    @property
    def node(self) -> NodeAPI:
        return self.server.node

    @property
    def limits(self) -> RpcLimits:
        return self.server.limits


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None
