"""The ASGI application: routes, HTTP bodies with a size cap, WebSocket sessions.

hypercorn parses HTTP/1.1 and WebSocket and calls this application once per request or
WebSocket connection; nothing here touches a socket.

=========  ===========  ==============================================================
method     path         answer
=========  ===========  ==============================================================
POST       /            JSON-RPC; 200 with the response, 204 when there is none (only
                        notifications), 413 with error -32003 over the body cap
GET        /ws          WebSocket: JSON-RPC, subscriptions
GET        /metrics     Prometheus text format
GET        /healthz     liveness: 200 {"status": "ok", "details": ...}; 503 when stalled
GET        /readyz      readiness: 200 {"ready": true} or 503 {"ready": false}
GET        /version     {"version": ..., "python": ..., "libp2p": ...}
GET        /logspec     {"level": "info"}: the log level in force (admin_setLogLevel sets it)
=========  ===========  ==============================================================
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
import trio

from node.jsonview import to_json_value
from node.logs import current_level
from node.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from node.rpc.context import (
    TRANSPORT_HTTP,
    TRANSPORT_WEBSOCKET,
    Connection,
    ServerContext,
    bearer_token,
    encode_json,
)
from node.rpc.dispatch import Dispatcher
from node.rpc.errors import RequestTooLarge
from node.rpc.limits import REQUEST_ID_LENGTH_MAX
from node.rpc.subscriptions import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY_VIOLATION,
    CloseFrame,
    Outbox,
    WebSocketSession,
)
from node.version import build_info

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_CONTENT_TYPE = b"application/json"
REQUEST_ID_PATTERN = re.compile(rf"[A-Za-z0-9._:-]{{1,{REQUEST_ID_LENGTH_MAX}}}")
REQUEST_ID_BYTES = 8
# After our close frame, the client has this long to answer it before we hang up.
CLOSE_HANDSHAKE_TIMEOUT_SECONDS = 2.0
# hypercorn refuses the upgrade with 403 when the application closes before accepting.
WEBSOCKET_PATH = "/ws"
PROBE_PATHS = ("/metrics", "/healthz", "/readyz", "/version", "/logspec")


class ClientDisconnected(Exception):
    """The HTTP client went away before sending its whole body."""


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-Id if it is short and plain, else a fresh one."""
    given = _header(scope, b"x-request-id")
    if given is not None:
        text = given.decode("latin-1")
        if REQUEST_ID_PATTERN.fullmatch(text):
            return text
    return secrets.token_hex(REQUEST_ID_BYTES)


async def respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = JSON_CONTENT_TYPE,
    request_id: str | None = None,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    response_headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *headers,
    ]
    if request_id is not None:
        response_headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})


class RpcApplication:
    """ASGI 3 application of one RPC server."""

    def __init__(self, server: ServerContext) -> None:
        self.server = server
        self.dispatcher = Dispatcher(server)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    # ---- HTTP --------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.server.statistics.http_requests += 1
        request_id = request_id_of(scope)
        method, path = scope["method"], scope["path"]
        try:
            if path == "/" and method == "POST":
                await self._http_rpc(scope, receive, send, request_id)
            elif method == "GET" and path in PROBE_PATHS:
                await self._probe(path, send, request_id)
            elif path == "/" or path in PROBE_PATHS:
                allow = b"POST" if path == "/" else b"GET"
                body = encode_json({"error": f"method {method} not allowed"}).encode()
                await respond(send, 405, body, request_id=request_id,
                              headers=((b"allow", allow),))
            else:
                body = encode_json({"error": f"no route {path[:64]}"}).encode()
                await respond(send, 404, body, request_id=request_id)
        except ClientDisconnected:
            return

    async def _http_rpc(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        connection = Connection(TRANSPORT_HTTP, request_id)
        token = bearer_token(scope.get("headers", []))
        if token is not None:
            connection.authenticated = self.server.token_valid(token)
        body = await self._read_body(scope, receive)
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            if body is None:
                body_bytes_max = self.server.limits.request_body_bytes_max
                error = RequestTooLarge(
                    f"Request too large: maximum {body_bytes_max} bytes",
                    data={"bytes_max": body_bytes_max},
                )
                answer = self.dispatcher.refuse(error, connection)
                await respond(send, 413, answer.encode(), request_id=request_id)
                return
            response = await self.dispatcher.handle_message(body, connection)
        if response is None:
            await send({"type": "http.response.start", "status": 204,
                        "headers": [(b"x-request-id", request_id.encode())]})
            await send({"type": "http.response.body", "body": b""})
        else:
            await respond(send, 200, response.encode(), request_id=request_id)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None when it is over the cap (stop reading at once)."""
        body_bytes_max = self.server.limits.request_body_bytes_max
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > body_bytes_max:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > body_bytes_max:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _probe(self, path: str, send: Send, request_id: str) -> None:
        if path == "/metrics":
            await respond(send, 200, self._render_metrics(),
                          content_type=METRICS_CONTENT_TYPE.encode(), request_id=request_id)
            return
        if path == "/version":
            await respond(send, 200, encode_json(build_info()).encode(), request_id=request_id)
            return
        if path == "/logspec":
            await respond(send, 200, encode_json({"level": current_level()}).encode(),
                          request_id=request_id)
            return
        status, view = self._healthz() if path == "/healthz" else self._readyz()
        await respond(send, status, encode_json(view).encode(), request_id=request_id)

    def _render_metrics(self) -> bytes:
        try:
            self.server.metrics.update_from_status(self.server.node.status())
        except Exception:
            # A scrape still answers with what it has; the failure is for the logs.
            self.server.log.exception("metrics: node status failed")
        return self.server.metrics.render()

    def _healthz(self) -> tuple[int, dict[str, Any]]:
        try:
            details = to_json_value(self.server.node.health())
        except Exception:
            self.server.log.exception("healthz: node health failed")
            return 500, {"status": "error"}
        if isinstance(details, dict) and details.get("stalled"):
            return 503, {"status": "stalled", "details": details}
        return 200, {"status": "ok", "details": details}

    def _readyz(self) -> tuple[int, dict[str, Any]]:
        try:
            ready = bool(self.server.node.ready())
        except Exception:
            self.server.log.exception("readyz: node ready failed")
            ready = False
        return (200 if ready else 503), {"ready": ready}

    # ---- WebSocket ---------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "websocket.connect", message["type"]
        statistics = self.server.statistics
        if scope["path"] != WEBSOCKET_PATH or self.server.shutting_down.is_set():
            await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
            return
        if statistics.websocket_connections >= self.server.limits.websocket_connections_max:
            statistics.websocket_connections_refused += 1
            await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
            return
        connection = Connection(TRANSPORT_WEBSOCKET, request_id_of(scope))
        token = bearer_token(scope.get("headers", []))
        if token is not None:
            connection.authenticated = self.server.token_valid(token)
        await send({"type": "websocket.accept"})
        statistics.websocket_connections += 1
        self.server.metrics.rpc_websocket_connections.inc()
        try:
            await self._websocket_session(connection, receive, send)
        finally:
            statistics.websocket_connections -= 1
            self.server.metrics.rpc_websocket_connections.dec()

    async def _websocket_session(
        self, connection: Connection, receive: Receive, send: Send
    ) -> None:
        limits = self.server.limits
        outbox = Outbox(messages_max=limits.outbox_messages_max, bytes_max=limits.outbox_bytes_max)
        async with trio.open_nursery() as nursery:
            session = WebSocketSession(self.server, nursery, outbox)
            connection.session = session
            try:
                nursery.start_soon(_send_loop, outbox, send, nursery.cancel_scope)
                nursery.start_soon(self._close_on_shutdown, outbox)
                await self._receive_loop(connection, session, outbox, receive)
            finally:
                session.close_all()
                nursery.cancel_scope.cancel()

    async def _receive_loop(
        self, connection: Connection, session: WebSocketSession, outbox: Outbox, receive: Receive
    ) -> None:
        limits = self.server.limits
        closing = False
        sequence = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            body = message.get("text")
            if body is None:
                body = message.get("bytes")
            if body is None or closing:
                continue
            self.server.statistics.websocket_messages += 1
            sequence += 1
            message_id = f"{connection.request_id}-{sequence}"
            with structlog.contextvars.bound_contextvars(request_id=message_id):
                response = await self._answer(body, connection)
            if response is not None:
                await outbox.put(response)
            session.announce_pending()
            failures_max = limits.authentication_failures_per_connection_max
            if connection.authentication_failures >= failures_max:
                closing = True
                outbox.put_final(CloseFrame(CLOSE_POLICY_VIOLATION, "too many wrong tokens"))

    async def _answer(self, body: str | bytes, connection: Connection) -> str | None:
        message_bytes_max = self.server.limits.websocket_message_bytes_max
        if len(body) > message_bytes_max:  # hypercorn enforces it first; be sure anyway
            error = RequestTooLarge(f"Request too large: maximum {message_bytes_max} bytes")
            return self.dispatcher.refuse(error, connection)
        return await self.dispatcher.handle_message(body, connection)

    async def _close_on_shutdown(self, outbox: Outbox) -> None:
        await self.server.shutting_down.wait()
        outbox.put_final(CloseFrame(CLOSE_GOING_AWAY, "server shutting down"))


async def _send_loop(outbox: Outbox, send: Send, session_scope: trio.CancelScope) -> None:
    """The only writer of one WebSocket: queued messages in order, then a close frame."""
    while True:
        item = await outbox.get()
        if isinstance(item, CloseFrame):
            await send({"type": "websocket.close", "code": item.code, "reason": item.reason})
            await trio.sleep(CLOSE_HANDSHAKE_TIMEOUT_SECONDS)
            session_scope.cancel()
            return
        await send({"type": "websocket.send", "text": item})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
