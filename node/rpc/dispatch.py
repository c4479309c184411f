"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification) over any transport: one body in,
one body (or nothing) out.

A body is handled in two phases. *Decode*: parse the JSON, check each call's envelope,
find its method, check authorisation and params (timed as the ``rpc_decode`` stage).
*Execute*: run the calls in order, one at a time, and build their responses. A batch is
answered with an array of the responses to its non-notification calls; a body of only
notifications is answered with nothing. Each call gets one canonical log line and one
``rpc_requests_total`` sample.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from node.metrics import UNKNOWN_METHOD_LABEL
from node.rpc.context import TRANSPORT_HTTP, CallContext, Connection, ServerContext, encode_json
from node.rpc.errors import (
    BatchTooLarge,
    InternalError,
    InvalidRequest,
    MethodNotFound,
    ParseError,
    RpcError,
    Unauthorized,
)
from node.rpc.registry import MethodSpec

JSONRPC_VERSION = "2.0"
# Unknown method names are quoted back (and logged) cut to this length.
METHOD_NAME_QUOTED_LENGTH_MAX = 64
OUTCOME_OK = "ok"


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """One call after the decode phase: ready to run, or already failed."""

    rpc_id: Any
    notification: bool
    method_label: str  # a registered name or "unknown": safe as a metrics label
    spec: MethodSpec | None = None
    params: dict[str, Any] | None = None
    error: RpcError | None = None


def parse_json(body: bytes | str) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity, bounded nesting (RecursionError)."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ParseError("Parse error: body is not valid UTF-8") from None
    except RecursionError:
        raise ParseError("Parse error: JSON nested too deeply") from None
    except ValueError as error:
        raise ParseError(f"Parse error: {error}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _valid_id(value: Any) -> bool:
    return value is None or (
        isinstance(value, str | int | float) and not isinstance(value, bool)
    )


def _loggable_id(rpc_id: Any) -> Any:
    if isinstance(rpc_id, str):
        return rpc_id[:METHOD_NAME_QUOTED_LENGTH_MAX]
    return rpc_id if isinstance(rpc_id, int | float) else None


def error_response(rpc_id: Any, error: RpcError) -> str:
    return encode_json({"jsonrpc": JSONRPC_VERSION, "id": rpc_id, "error": error.to_json()})


class Dispatcher:
    def __init__(self, server: ServerContext) -> None:
        self.server = server

    async def handle_message(self, body: bytes | str, connection: Connection) -> str | None:
        """Answer one HTTP body or WebSocket message; ``None`` means send nothing."""
        started = time.perf_counter()
        try:
            document = parse_json(body)
        except ParseError as error:
            return self._envelope_failure(error, connection, started)
        batch = isinstance(document, list)
        if batch:
            if not document:
                failure: RpcError = InvalidRequest("Invalid Request: empty batch")
                return self._envelope_failure(failure, connection, started)
            batch_calls_max = self.server.limits.batch_calls_max
            if len(document) > batch_calls_max:
                failure = BatchTooLarge(
                    f"Batch too large: {len(document)} calls, maximum {batch_calls_max}",
                    data={"calls": len(document), "calls_max": batch_calls_max},
                )
                return self._envelope_failure(failure, connection, started)
            calls = [self._prepare(item, connection) for item in document]
        else:
            calls = [self._prepare(document, connection)]
        self.server.metrics.observe_stage("rpc_decode", time.perf_counter() - started)
        responses = []
        for call in calls:
            response = await self._execute(call, connection)
            if response is not None:
                responses.append(response)
        if not responses:
            return None
        return "[" + ",".join(responses) + "]" if batch else responses[0]

    # ---- decode phase ------------------------------------------------------------------

    def _prepare(self, item: Any, connection: Connection) -> PreparedCall:
        if not isinstance(item, dict):
            return self._failed(None, InvalidRequest("Invalid Request: expected an object"))
        rpc_id = item.get("id")
        if not _valid_id(rpc_id):
            return self._failed(
                None, InvalidRequest("Invalid Request: id must be a string, number or null")
            )
        if item.get("jsonrpc") != JSONRPC_VERSION:
            return self._failed(rpc_id, InvalidRequest('Invalid Request: jsonrpc must be "2.0"'))
        method = item.get("method")
        if not isinstance(method, str):
            return self._failed(rpc_id, InvalidRequest("Invalid Request: method must be a string"))
        params = item.get("params")
        if "params" in item and not isinstance(params, dict | list):
            return self._failed(
                rpc_id, InvalidRequest("Invalid Request: params must be an object or an array")
            )
        notification = "id" not in item
        spec = self.server.registry.get(method)
        if spec is None:
            quoted = method[:METHOD_NAME_QUOTED_LENGTH_MAX]
            error: RpcError = MethodNotFound(f"Method not found: {quoted}")
            return self._failed(rpc_id, error, notification=notification)
        try:
            self._check_access(spec, connection)
            values = spec.parse_params(params)
        except RpcError as failure:
            return self._failed(rpc_id, failure, notification=notification, spec=spec)
        return PreparedCall(rpc_id, notification, spec.name, spec, values)

    def _check_access(self, spec: MethodSpec, connection: Connection) -> None:
        if spec.websocket_only and connection.transport == TRANSPORT_HTTP:
            raise MethodNotFound(f"{spec.name} is only available over WebSocket (/ws)")
        if spec.admin and not connection.authenticated:
            if not self.server.admin_enabled:
                raise Unauthorized("Unauthorized: admin methods are disabled on this node")
            raise Unauthorized("Unauthorized: admin methods need a valid bearer token")

    @staticmethod
    def _failed(
        rpc_id: Any,
        error: RpcError,
        *,
        notification: bool = False,
        spec: MethodSpec | None = None,
    ) -> PreparedCall:
        label = spec.name if spec is not None else UNKNOWN_METHOD_LABEL
        return PreparedCall(rpc_id, notification, label, spec, None, error)

    def refuse(self, error: RpcError, connection: Connection) -> str:
        """The response to a body refused before parsing (too large): logged and counted
        like any other failed call."""
        return self._envelope_failure(error, connection, time.perf_counter())

    def _envelope_failure(
        self, error: RpcError, connection: Connection, started: float
    ) -> str:
        self._record(UNKNOWN_METHOD_LABEL, None, error.name, started, connection)
        return error_response(None, error)

    # ---- execute phase -----------------------------------------------------------------

    async def _execute(self, call: PreparedCall, connection: Connection) -> str | None:
        started = time.perf_counter()
        response: str | None
        error: RpcError | None
        if call.error is not None:
            error = call.error
            response = error_response(call.rpc_id, error)
        else:
            error, response = await self._run(call, connection)
        outcome = OUTCOME_OK if error is None else error.name
        self._record(call.method_label, call.rpc_id, outcome, started, connection,
                     notification=call.notification)
        return None if call.notification else response

    async def _run(
        self, call: PreparedCall, connection: Connection
    ) -> tuple[RpcError | None, str]:
        assert call.spec is not None and call.params is not None
        try:
            result = await call.spec.handler(CallContext(self.server, connection), call.params)
            return None, encode_json({"jsonrpc": JSONRPC_VERSION, "id": call.rpc_id,
                                      "result": result})
        except RpcError as error:
            return error, error_response(call.rpc_id, error)
        except Exception:
            # A bug or a local failure: the traceback goes to the log, never to the client.
            self.server.log.exception(
                "rpc internal error", method=call.method_label,
                request_id=connection.request_id,
            )
            failure = InternalError(data={"request_id": connection.request_id})
            return failure, error_response(call.rpc_id, failure)

    def _record(
        self,
        method_label: str,
        rpc_id: Any,
        outcome: str,
        started: float,
        connection: Connection,
        *,
        notification: bool = False,
    ) -> None:
        seconds = time.perf_counter() - started
        self.server.statistics.calls += 1
        self.server.metrics.rpc_request(method_label, outcome, seconds)
        self.server.log.debug(  # an access line per call: DEBUG (metrics count them)
            "rpc call",
            method=method_label,
            rpc_id=_loggable_id(rpc_id),
            outcome=outcome,
            duration_ms=round(seconds * 1000, 3),
            transport=connection.transport,
            notification=notification,
            request_id=connection.request_id,
        )
