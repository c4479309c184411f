"""WebSocket sessions: the outbox of one connection and its subscriptions.

Every message to a client goes through its :class:`Outbox`, written by one sender task.
Responses wait for room in it (back-pressure on that client's own requests only).
Notifications never wait: a subscription's pump moves items from the node's bounded
subscription buffer to the outbox with :meth:`Outbox.put_nowait`, and when the outbox is
full the subscription is closed with -32005 (SubscriptionOverflow). The node therefore
never blocks on a subscriber, and a slow subscriber loses its subscription, not the node's
memory and not the other subscribers' deliveries.

Notifications::

    {"jsonrpc": "2.0", "method": "chain_subscription",
     "params": {"subscription": "0x…", "result": {...}}}

and, once, when a subscription is closed by the server::

    {"jsonrpc": "2.0", "method": "chain_subscription",
     "params": {"subscription": "0x…", "error": {"code": -32005, "message": "…"}}}
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from node.api import TxResultEvent
from node.jsonview import hex_bytes, result_code_name
from node.rpc.context import ServerContext, encode_json
from node.rpc.errors import (
    InvalidParams,
    NotFound,
    RpcError,
    SubscriptionOverflow,
    TooManySubscriptions,
)

TOPIC_NEW_BLOCKS = "newBlocks"
TOPIC_TX_RESULTS = "txResults"
TOPICS = (TOPIC_NEW_BLOCKS, TOPIC_TX_RESULTS)
NOTIFICATION_METHOD = "chain_subscription"
SUBSCRIPTION_ID_BYTES = 8
SUBSCRIPTION_ID_PATTERN = f"0x[0-9a-f]{{{2 * SUBSCRIPTION_ID_BYTES}}}"

# Results in one batched txResults notification: about 150 bytes each, so one message
# stays under 1 MiB (trio-websocket's and many clients' default message size cap).
RESULTS_PER_NOTIFICATION_MAX = 5_000

# A batched notification waits this long after its first result for the rest of the
# burst: a block's results are published together, and moving a thousand of them takes
# the reader well under this; delivery is delayed by at most this much.
BATCH_WINDOW_SECONDS = 0.005

# Closing a node-side iterator runs its cleanup (closing a memory channel): immediate,
# but bounded anyway because it runs shielded.
ITERATOR_CLOSE_TIMEOUT_SECONDS = 1.0

# WebSocket close codes (RFC 6455 section 7.4.1).
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """An outbox item: close the WebSocket after everything queued before it."""

    code: int
    reason: str


OutboxItem = str | CloseFrame


class Outbox:
    """Messages waiting to be written to one WebSocket, bounded in count and bytes."""

    def __init__(self, *, messages_max: int, bytes_max: int) -> None:
        self._items: deque[OutboxItem] = deque()
        self._bytes = 0
        self._messages_max = messages_max
        self._bytes_max = bytes_max
        self._readable = trio.lowlevel.ParkingLot()
        self._writable = trio.lowlevel.ParkingLot()

    def _has_room(self, size: int) -> bool:
        if not self._items:
            return True  # one message of any size may always be in flight
        return len(self._items) < self._messages_max and self._bytes + size <= self._bytes_max

    def _append(self, item: OutboxItem) -> None:
        self._items.append(item)
        if isinstance(item, str):
            self._bytes += len(item)
        self._readable.unpark()

    def put_nowait(self, message: str) -> bool:
        """Queue a notification; ``False`` (nothing queued) if the outbox is full."""
        if not self._has_room(len(message)):
            return False
        self._append(message)
        return True

    async def put(self, message: str) -> None:
        """Queue a response, waiting for room."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._has_room(len(message)):
            await self._writable.park()
        self._append(message)
        await trio.lowlevel.cancel_shielded_checkpoint()

    def put_final(self, item: OutboxItem) -> None:
        """Queue a last word past the bounds: a subscription's closing notice or a close
        frame. Bounded by the caller: at most one per subscription, one close frame."""
        self._append(item)

    async def get(self) -> OutboxItem:
        await trio.lowlevel.checkpoint()
        while not self._items:
            await self._readable.park()
        item = self._items.popleft()
        if isinstance(item, str):
            self._bytes -= len(item)
        self._writable.unpark_all()
        return item

    def statistics(self) -> dict[str, int]:
        return {"messages": len(self._items), "bytes": self._bytes}


@dataclass(eq=False, slots=True)
class Subscription:
    subscription_id: str
    topic: str
    full: bool = False  # newBlocks: full txs in each block
    tx_filter: set[bytes] | None = None  # txResults: only these (outstanding) tx ids
    batch: bool = False  # txResults: lists of results per notification
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    # Set once the response naming the subscription is queued: no notification before it.
    announced: trio.Event = field(default_factory=trio.Event)


def notification(subscription_id: str, result_json: str) -> str:
    return (
        '{"jsonrpc":"2.0","method":"' + NOTIFICATION_METHOD + '","params":{"subscription":"'
        + subscription_id + '","result":' + result_json + "}}"
    )


def error_notification(subscription_id: str, error: RpcError) -> str:
    return encode_json({
        "jsonrpc": "2.0",
        "method": NOTIFICATION_METHOD,
        "params": {"subscription": subscription_id, "error": error.to_json()},
    })


def tx_result_view(event: TxResultEvent) -> dict[str, Any]:
    return {
        "tx_id": hex_bytes(event.tx_id),
        "height": event.height,
        "position": event.position,
        "code": event.code,
        "code_name": result_code_name(event.code),
    }


class WebSocketSession:
    """The subscriptions of one WebSocket connection; pumps run in its nursery."""

    def __init__(self, server: ServerContext, nursery: trio.Nursery, outbox: Outbox) -> None:
        self._server = server
        self._nursery = nursery
        self._outbox = outbox
        self._subscriptions: dict[str, Subscription] = {}

    def __len__(self) -> int:
        return len(self._subscriptions)

    def subscribe_blocks(self, *, full: bool) -> str:
        subscription = self._new_subscription(TOPIC_NEW_BLOCKS, full=full)
        blocks = self._server.node.subscribe_blocks()
        server = self._server

        def render(block: Any) -> str:
            block_json = server.encoded_block(block, full=full)
            return notification(subscription.subscription_id, block_json)

        self._nursery.start_soon(self._pump, subscription, blocks, render)
        return subscription.subscription_id

    def subscribe_tx_results(self, *, tx_ids: Iterable[bytes] | None, batch: bool) -> str:
        """One notification per result or, with ``batch``, per run of results that arrived
        together (a list, in commit order): far fewer messages under load."""
        tx_filter = None if tx_ids is None else set(tx_ids)
        subscription = self._new_subscription(TOPIC_TX_RESULTS, tx_filter=tx_filter, batch=batch)
        results = self._server.node.subscribe_tx_results()

        def wanted(event: TxResultEvent) -> bool:
            if tx_filter is None:
                return True
            if event.tx_id not in tx_filter:
                return False
            tx_filter.discard(event.tx_id)  # a tx commits once: stop watching it
            return True

        def render(event: TxResultEvent) -> str | None:
            if not wanted(event):
                return None
            return notification(subscription.subscription_id, encode_json(tx_result_view(event)))

        def render_batch(events: list[TxResultEvent]) -> str | None:
            views = [tx_result_view(event) for event in events if wanted(event)]
            if not views:
                return None
            return notification(subscription.subscription_id, encode_json(views))

        if batch:
            self._nursery.start_soon(self._pump_batched, subscription, results, render_batch)
        else:
            self._nursery.start_soon(self._pump, subscription, results, render)
        return subscription.subscription_id

    def add_tx_filter(self, subscription_id: str, tx_ids: Iterable[bytes]) -> int:
        """Watch more tx ids on a filtered txResults subscription; the outstanding count."""
        subscription = self._get(subscription_id)
        tx_filter = subscription.tx_filter
        if subscription.topic != TOPIC_TX_RESULTS or tx_filter is None:
            raise NotFound(f"subscription {subscription_id} is not a filtered txResults one")
        additions = set(tx_ids) - tx_filter
        tx_filter_ids_max = self._server.limits.tx_filter_ids_max
        if len(tx_filter) + len(additions) > tx_filter_ids_max:
            raise InvalidParams(
                f"params.tx_ids: the filter would hold {len(tx_filter) + len(additions)} "
                f"outstanding tx ids, maximum {tx_filter_ids_max}"
            )
        tx_filter.update(additions)
        return len(tx_filter)

    def unsubscribe(self, subscription_id: str) -> None:
        subscription = self._get(subscription_id)
        self._forget(subscription)
        subscription.cancel_scope.cancel()

    def announce_pending(self) -> None:
        """The responses to this message are queued: notifications may follow them."""
        for subscription in self._subscriptions.values():
            subscription.announced.set()

    def close_all(self) -> None:
        for subscription in list(self._subscriptions.values()):
            self._forget(subscription)
            subscription.cancel_scope.cancel()

    def views(self) -> list[dict[str, Any]]:
        return [
            {
                "subscription": subscription.subscription_id,
                "topic": subscription.topic,
                "full": subscription.full,
                "batch": subscription.batch,
                "tx_filter_ids": (
                    None if subscription.tx_filter is None else len(subscription.tx_filter)
                ),
            }
            for subscription in self._subscriptions.values()
        ]

    # ---- internals -----------------------------------------------------------------------

    def _new_subscription(self, topic: str, **options: Any) -> Subscription:
        subscriptions_max = self._server.limits.subscriptions_per_connection_max
        if len(self._subscriptions) >= subscriptions_max:
            raise TooManySubscriptions(
                f"Too many subscriptions: maximum {subscriptions_max} per connection"
            )
        subscription_id = "0x" + secrets.token_hex(SUBSCRIPTION_ID_BYTES)
        subscription = Subscription(subscription_id, topic, **options)
        self._subscriptions[subscription_id] = subscription
        self._server.statistics.subscriptions += 1
        self._server.metrics.rpc_subscriptions.inc()
        return subscription

    def _get(self, subscription_id: str) -> Subscription:
        subscription = self._subscriptions.get(subscription_id)
        if subscription is None:
            raise NotFound(f"Not found: no subscription {subscription_id} on this connection")
        return subscription

    def _forget(self, subscription: Subscription) -> None:
        if self._subscriptions.pop(subscription.subscription_id, None) is not None:
            self._server.statistics.subscriptions -= 1
            self._server.metrics.rpc_subscriptions.dec()

    def _close_overflowed(self, subscription: Subscription) -> None:
        self._forget(subscription)
        self._server.statistics.subscription_overflows += 1
        self._server.metrics.subscription_overflowed()
        self._server.log.info(
            "subscription overflow", subscription=subscription.subscription_id,
            topic=subscription.topic, outbox=self._outbox.statistics(),
        )
        error = SubscriptionOverflow(
            "Subscriber too slow: subscription closed; subscribe again and read faster"
        )
        self._outbox.put_final(error_notification(subscription.subscription_id, error))

    async def _pump(
        self,
        subscription: Subscription,
        items: AsyncIterator[Any],
        render: Callable[[Any], str | None],
    ) -> None:
        try:
            with subscription.cancel_scope:
                await subscription.announced.wait()
                async for item in items:
                    message = render(item)
                    if message is not None and not self._outbox.put_nowait(message):
                        break
                # Our outbox is full, or the node ended the iterator because its own
                # buffer for us overflowed: either way this subscriber fell behind.
                self._close_overflowed(subscription)
        finally:
            await _close_iterator(items)

    async def _pump_batched(
        self,
        subscription: Subscription,
        items: AsyncIterator[Any],
        render_batch: Callable[[list[Any]], str | None],
    ) -> None:
        """A reader moves items to a bounded channel; a writer takes everything waiting
        there (up to a cap) and renders it as one notification."""
        send, receive = trio.open_memory_channel[Any](self._server.limits.outbox_messages_max)
        try:
            with subscription.cancel_scope:
                await subscription.announced.wait()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_forward, items, send)
                    await self._write_batches(receive, render_batch)
                    nursery.cancel_scope.cancel()
                self._close_overflowed(subscription)  # as in _pump: we fell behind
        finally:
            await _close_iterator(items)

    async def _write_batches(
        self,
        receive: trio.MemoryReceiveChannel[Any],
        render_batch: Callable[[list[Any]], str | None],
    ) -> None:
        while True:
            try:
                batch = [await receive.receive()]
            except trio.EndOfChannel:
                return
            # The reader moves one item per scheduling round: let it gather the burst.
            await trio.sleep(BATCH_WINDOW_SECONDS)
            while len(batch) < RESULTS_PER_NOTIFICATION_MAX:
                try:
                    batch.append(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            message = render_batch(batch)
            if message is not None and not self._outbox.put_nowait(message):
                return


async def _forward(items: AsyncIterator[Any], send: trio.MemorySendChannel[Any]) -> None:
    """Until the node ends the iterator or our channel is full; then end the channel."""
    async with send:
        async for item in items:
            try:
                send.send_nowait(item)
            except trio.WouldBlock:
                return


async def _close_iterator(items: AsyncIterator[Any]) -> None:
    close = getattr(items, "aclose", None)
    if close is not None:
        with trio.move_on_after(ITERATOR_CLOSE_TIMEOUT_SECONDS) as cleanup:
            cleanup.shield = True
            await close()
