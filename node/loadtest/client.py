"""A JSON-RPC client over one WebSocket (trio-websocket), for the load tester.

Calls are matched to responses by id, so several may be outstanding; a reader task
dispatches responses and hands every notification to a callback at once (the commit
time of a tx is the moment its txResults notification is read). The node answers the
messages of one connection in order, so a JSON-RPC batch ``[chain_addTxFilter,
tx_submitBatch]`` watches the txs before they can commit.

::

    async with open_rpc(url, on_notification) as rpc:
        subscription = await rpc.call("chain_subscribe", {"topic": "txResults", ...})
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio
import trio_websocket

from ledger.errors import LocalError, RemoteError

# Our side of the message cap: a batch of 1,000 results and a burst of notifications
# are well under the node's 4 MiB; 16 MiB leaves room and still bounds our memory.
MESSAGE_BYTES_MAX = 16 * 1024 * 1024
# Messages read ahead of our reader task, and bytes per socket read: a burst of large
# messages (batch responses, notification lists) is read in few system calls.
MESSAGE_QUEUE_MESSAGES = 64
RECEIVE_BUFFER_BYTES = 256 * 1024
CONNECT_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 2.0
WEBSOCKET_PATH = "/ws"

NotificationHandler = Callable[[dict[str, Any], float], None]


class RpcCallError(RemoteError):
    """The node answered a call with a JSON-RPC error."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: RPC error {error.get('code')}: {error.get('message')}")
        self.code = int(error.get("code", 0))
        self.error = error


class RpcConnectionError(RemoteError):
    """The WebSocket could not be opened, or closed while calls were outstanding."""


class RpcTimeoutError(LocalError):
    """No answer within our own deadline."""


def websocket_url(url: str) -> str:
    """``http://host:port/`` -> ``ws://host:port/ws`` (a ws:// URL is kept as it is)."""
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss"):
        return url
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, WEBSOCKET_PATH, "", ""))


@dataclass(slots=True)
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    response: dict[str, Any] | None = None
    received_at: float = 0.0


class WebSocketRpc:
    def __init__(self, connection: trio_websocket.WebSocketConnection,
                 on_notification: NotificationHandler) -> None:
        self._connection = connection
        self._on_notification = on_notification
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._closed: str | None = None

    def new_id(self) -> int:
        return next(self._ids)

    @property
    def closed(self) -> str | None:
        """Why the connection is closed, or None while it is open."""
        return self._closed

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   timeout_seconds: float = 30.0) -> Any:
        request_id = self.new_id()
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        (response,) = await self.send([request_id], json.dumps(request),
                                      timeout_seconds=timeout_seconds)
        return result_of(method, response)

    async def send(self, request_ids: list[int], text: str, *,
                   timeout_seconds: float) -> list[dict[str, Any]]:
        """Send one message that carries the calls ``request_ids``; their responses, in
        that order."""
        if self._closed is not None:
            raise RpcConnectionError(self._closed)
        waiting = [_Pending() for _ in request_ids]
        self._pending.update(zip(request_ids, waiting, strict=True))
        try:
            with trio.fail_after(timeout_seconds):
                await self._connection.send_message(text)
                for pending in waiting:
                    await pending.done.wait()
        except trio.TooSlowError:
            raise RpcTimeoutError(f"no answer within {timeout_seconds} s") from None
        except trio_websocket.ConnectionClosed as closed:
            raise RpcConnectionError(f"connection closed: {closed.reason}") from None
        finally:
            for request_id in request_ids:
                self._pending.pop(request_id, None)
        responses = [pending.response for pending in waiting]
        if any(response is None for response in responses):
            raise RpcConnectionError(self._closed or "connection closed")
        return [response for response in responses if response is not None]

    async def read_forever(self) -> None:
        """The reader task: until the connection closes (then outstanding calls fail)."""
        try:
            while True:
                message = await self._connection.get_message()
                received_at = time.monotonic()
                self._dispatch(json.loads(message), received_at)
        except trio_websocket.ConnectionClosed as closed:
            self._closed = f"connection closed: {closed.reason}"
        finally:
            self._closed = self._closed or "connection closed"
            for pending in self._pending.values():
                pending.done.set()

    def _dispatch(self, message: Any, received_at: float) -> None:
        if isinstance(message, list):
            for item in message:
                self._dispatch(item, received_at)
            return
        if not isinstance(message, dict):
            return
        if "method" in message and "id" not in message:
            self._on_notification(message, received_at)
            return
        pending = self._pending.get(message.get("id"))  # type: ignore[arg-type]
        if pending is not None:
            pending.response = message
            pending.received_at = received_at
            pending.done.set()


def result_of(method: str, response: dict[str, Any]) -> Any:
    if "error" in response:
        raise RpcCallError(method, response["error"])
    return response.get("result")


@asynccontextmanager
async def open_rpc(url: str, on_notification: NotificationHandler) -> AsyncIterator[WebSocketRpc]:
    """A connection with its reader task running; closed (politely, within a bound) on
    exit."""
    async with trio.open_nursery() as nursery:
        try:
            with trio.fail_after(CONNECT_TIMEOUT_SECONDS):
                connection = await trio_websocket.connect_websocket_url(
                    nursery, websocket_url(url), max_message_size=MESSAGE_BYTES_MAX,
                    message_queue_size=MESSAGE_QUEUE_MESSAGES,
                    receive_buffer_size=RECEIVE_BUFFER_BYTES,
                )
        except (OSError, trio_websocket.HandshakeError, trio.TooSlowError) as error:
            raise RpcConnectionError(f"{url}: cannot open a WebSocket: {error!r}") from None
        rpc = WebSocketRpc(connection, on_notification)
        nursery.start_soon(rpc.read_forever)
        try:
            yield rpc
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT_SECONDS) as cleanup:
                cleanup.shield = True
                await connection.aclose()
            nursery.cancel_scope.cancel()
