"""Limits of the RPC server, as named constants (units last, the reason beside each).

:class:`RpcLimits` carries them into one server, so a test can shrink a cap without
patching module state; the defaults are the constants.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ledger import limits as ledger_limits

# One HTTP body / WebSocket message. The largest legitimate request is a tx_submitBatch
# of typical txs (a few hundred bytes, twice that in hex): 1,000 of them fit in 1 MiB; 4 MiB
# leaves room for a batch of big claims and still bounds what a client makes us buffer.
REQUEST_BODY_BYTES_MAX = 4 * 1024 * 1024
WEBSOCKET_MESSAGE_BYTES_MAX = REQUEST_BODY_BYTES_MAX

# Calls in one JSON-RPC batch: enough for any client's pipelining; each call is answered
# in order by one task, so the cap also bounds how long one body holds that task.
BATCH_CALLS_MAX = 100

# Raw txs in one tx_submitBatch: the node checks a batch in parallel (ledger.validation),
# and 1,000 txs is a few block intervals of load-test traffic per call.
SUBMIT_BATCH_TXS_MAX = 1_000

# Subscriptions on one WebSocket connection: each holds a node-side buffer and a task.
SUBSCRIPTIONS_PER_CONNECTION_MAX = 16

# Outstanding tx ids one txResults subscription may filter on (a set lookup per result,
# 32 bytes plus set overhead each, about 10 MiB at the cap). Delivered ids leave the set,
# so a load tester that subscribes its txs as it submits them stays well below.
TX_FILTER_IDS_MAX = 100_000

# Messages waiting to be written to one WebSocket (responses and notifications). Past
# either bound a subscription's next notification closes it with -32005: a slow reader
# costs itself its subscription, never the node's memory or the other subscribers' time.
# One block's results arrive as one burst (block max_txs is 2,000 by default; a result
# notification is ~200 bytes): the count bound holds a few such bursts, and the byte
# bound is what caps memory (16 MiB per connection).
OUTBOX_MESSAGES_MAX = 65_536
OUTBOX_BYTES_MAX = 16 * 1024 * 1024

# Open WebSocket connections per server: each has tasks, an outbox and subscriptions.
WEBSOCKET_CONNECTIONS_MAX = 1_024

# Wrong tokens on one WebSocket before it is closed (slows token guessing down to one
# TCP + WebSocket handshake per few guesses).
AUTHENTICATION_FAILURES_PER_CONNECTION_MAX = 3

# How long one node call (tx admission, forwarding included) may take before the caller
# gets -32011; admission of a full batch is milliseconds when the node is healthy.
NODE_CALL_TIMEOUT_SECONDS = 10.0

# Graceful shutdown: in-flight requests get this long to finish, WebSockets are closed
# with 1001 (going away) right away.
SHUTDOWN_GRACE_SECONDS = 3.0

# Idle keep-alive HTTP connections are closed after this long (hypercorn's default).
KEEP_ALIVE_TIMEOUT_SECONDS = 5.0

# A connection that sends nothing for this long is closed: a slow-loris HTTP client, or a
# WebSocket client that stopped answering pings (a live one answers every ping), so dead
# subscribers do not hold connection slots forever. The cost: hypercorn's ping task sleeps
# through a close, so shutdown may wait up to min(grace, ping interval) for it. None
# disables both (then nothing but TCP notices a dead peer).
READ_TIMEOUT_SECONDS = 60
WEBSOCKET_PING_INTERVAL_SECONDS = 15.0

# A client's X-Request-Id is echoed and logged only if it is short and plain.
REQUEST_ID_LENGTH_MAX = 64

# A tx is at most this big (raw): tx_submit refuses larger hex before decoding it.
TX_SIZE_BYTES_MAX = ledger_limits.TX_SIZE_BYTES_MAX


@dataclass(frozen=True, slots=True)
class RpcLimits:
    request_body_bytes_max: int = REQUEST_BODY_BYTES_MAX
    websocket_message_bytes_max: int = WEBSOCKET_MESSAGE_BYTES_MAX
    batch_calls_max: int = BATCH_CALLS_MAX
    submit_batch_txs_max: int = SUBMIT_BATCH_TXS_MAX
    subscriptions_per_connection_max: int = SUBSCRIPTIONS_PER_CONNECTION_MAX
    tx_filter_ids_max: int = TX_FILTER_IDS_MAX
    outbox_messages_max: int = OUTBOX_MESSAGES_MAX
    outbox_bytes_max: int = OUTBOX_BYTES_MAX
    websocket_connections_max: int = WEBSOCKET_CONNECTIONS_MAX
    authentication_failures_per_connection_max: int = AUTHENTICATION_FAILURES_PER_CONNECTION_MAX
    node_call_timeout_seconds: float = NODE_CALL_TIMEOUT_SECONDS
    shutdown_grace_seconds: float = SHUTDOWN_GRACE_SECONDS
    keep_alive_timeout_seconds: float = KEEP_ALIVE_TIMEOUT_SECONDS
    read_timeout_seconds: int | None = READ_TIMEOUT_SECONDS
    websocket_ping_interval_seconds: float | None = WEBSOCKET_PING_INTERVAL_SECONDS

    def __post_init__(self) -> None:
        for limit in fields(self):
            value = getattr(self, limit.name)
            assert value is None or value > 0, f"RpcLimits.{limit.name} must be positive"
        if self.read_timeout_seconds is not None:
            ping_interval = self.websocket_ping_interval_seconds
            assert ping_interval is not None and ping_interval < self.read_timeout_seconds, (
                "idle WebSocket clients need a ping to answer before the read timeout"
            )
