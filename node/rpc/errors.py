"""JSON-RPC error codes: the standard ones and medledger's application codes.

Every error the RPC layer returns is one of the classes below; each carries its code, so
the OpenRPC document, the metrics outcome label and the wire response cannot disagree.

======  =========================  ==========================================================
code    name                       meaning
======  =========================  ==========================================================
-32700  parse_error                the body (or WebSocket message) is not valid JSON
-32600  invalid_request            not a JSON-RPC 2.0 request object (or an empty batch)
-32601  method_not_found           no such method (or not available on this transport)
-32602  invalid_params             a parameter is missing, unknown or malformed; the message
                                   names it, e.g. ``params.height: expected non-negative
                                   integer``
-32603  internal_error             a bug or a local failure; details are logged with the
                                   request id (``data.request_id``), never returned
-32000  tx_rejected                the tx was refused before the mempool; ``data`` is
                                   ``{code, reason, message, tx_id}`` (``reason`` is the
                                   ResultCode name, e.g. ``BAD_SIGNATURE``)
-32001  not_found                  no block / tx / subscription with that key
-32002  unauthorized               admin method without a valid bearer token (or admin
                                   methods disabled: no token configured)
-32003  request_too_large          HTTP body or WebSocket message above the cap (HTTP 413)
-32004  batch_too_large            more calls in one batch than the cap
-32005  subscription_overflow      the subscriber read too slowly; the subscription is
                                   closed (sent as a ``chain_subscription`` notification
                                   with an ``error`` member), the connection stays open
-32006  too_many_subscriptions     the per-connection subscription cap is reached
-32010  not_ready                  the node cannot serve this now: every snapshot session
                                   is in use, or no block to snapshot yet
                                   (admin_snapshotBegin). Txs sent to a node without a
                                   leader are admitted and forwarded later, not refused.
-32011  timeout                    the node did not answer within the call's deadline
-32012  pruned                     the block (or the tx's block) is older than the oldest
                                   block this node holds: it keeps only recent blocks
                                   (``[storage] retain_blocks``); ``data`` is ``{height,
                                   oldest_height}``. Ask a validator or an unpruned node.
======  =========================  ==========================================================
"""

from __future__ import annotations

from typing import Any, ClassVar

from ledger.errors import LocalError, MedledgerError, RemoteError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
TX_REJECTED = -32000
NOT_FOUND = -32001
UNAUTHORIZED = -32002
REQUEST_TOO_LARGE = -32003
BATCH_TOO_LARGE = -32004
SUBSCRIPTION_OVERFLOW = -32005
TOO_MANY_SUBSCRIPTIONS = -32006
NOT_READY = -32010
TIMEOUT = -32011
PRUNED = -32012


class RpcError(MedledgerError):
    """An error answered to a JSON-RPC caller. Subclasses fix ``code`` and ``name``."""

    code: ClassVar[int]
    name: ClassVar[str]  # snake_case: the metrics outcome label and the OpenRPC error name
    default_message: ClassVar[str]

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        self.message = message if message is not None else self.default_message
        self.data = data
        super().__init__(f"{self.code} {self.message}")

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(RpcError, RemoteError):
    code, name, default_message = PARSE_ERROR, "parse_error", "Parse error"


class InvalidRequest(RpcError, RemoteError):
    code, name, default_message = INVALID_REQUEST, "invalid_request", "Invalid Request"


class MethodNotFound(RpcError, RemoteError):
    code, name, default_message = METHOD_NOT_FOUND, "method_not_found", "Method not found"


class InvalidParams(RpcError, RemoteError):
    code, name, default_message = INVALID_PARAMS, "invalid_params", "Invalid params"


class InternalError(RpcError, LocalError):
    code, name, default_message = INTERNAL_ERROR, "internal_error", "Internal error"


class TxRejected(RpcError, RemoteError):
    code, name, default_message = TX_REJECTED, "tx_rejected", "Transaction rejected"


class NotFound(RpcError, RemoteError):
    code, name, default_message = NOT_FOUND, "not_found", "Not found"


class Unauthorized(RpcError, RemoteError):
    code, name, default_message = UNAUTHORIZED, "unauthorized", "Unauthorized"


class RequestTooLarge(RpcError, RemoteError):
    code, name, default_message = REQUEST_TOO_LARGE, "request_too_large", "Request too large"


class BatchTooLarge(RpcError, RemoteError):
    code, name, default_message = BATCH_TOO_LARGE, "batch_too_large", "Batch too large"


class SubscriptionOverflow(RpcError, RemoteError):
    code, name, default_message = (
        SUBSCRIPTION_OVERFLOW,
        "subscription_overflow",
        "Subscriber too slow; subscription closed",
    )


class TooManySubscriptions(RpcError, RemoteError):
    code, name, default_message = (
        TOO_MANY_SUBSCRIPTIONS,
        "too_many_subscriptions",
        "Too many subscriptions on this connection",
    )


class NotReady(RpcError, LocalError):
    code, name, default_message = NOT_READY, "not_ready", "Node not ready"


class Timeout(RpcError, LocalError):
    code, name, default_message = TIMEOUT, "timeout", "The node did not answer in time"


class Pruned(RpcError, LocalError):
    code, name, default_message = (
        PRUNED,
        "pruned",
        "Pruned: older than the oldest block this node holds",
    )


ERROR_CLASSES: tuple[type[RpcError], ...] = (
    ParseError,
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    InternalError,
    TxRejected,
    NotFound,
    Unauthorized,
    RequestTooLarge,
    BatchTooLarge,
    SubscriptionOverflow,
    TooManySubscriptions,
    NotReady,
    Timeout,
    Pruned,
)
assert len({error.code for error in ERROR_CLASSES}) == len(ERROR_CLASSES), "codes are unique"

# Errors any call may return: the envelope ones and the internal error.
COMMON_ERRORS: tuple[type[RpcError], ...] = (InvalidParams, InternalError)
