"""GossipSub over libp2p Pubsub, tuned and guarded (MEASUREMENTS.md, py-libp2p 0.8.1).

- Tuned router (pitfall 3): spam protection off (it silently drops beyond 10 messages/s per
  topic and sender, ourselves included), adaptive gossip off (it resets the heartbeat),
  ~1 s heartbeats (the default is 120 s). Eclipse protection is off too: it wants meshes
  spread over 3+ IP addresses, while a consortium's peers are known and authenticated and
  a devnet runs on one address. Peer exchange is off: we dial only configured peers.
- Signing on (StrictSign, pitfall 11): every message carries its origin's signature and
  Pubsub checks it before our validator runs.
- The registered GossipHandler *is* the topic validator: it is called once per message
  (concurrent copies of one message from two peers share one call) with the origin's peer
  id; False, an exception or a timeout rejects the message, which is then neither
  delivered to our subscription nor forwarded. Our own messages are not handed back.
- Subscriptions are drained at once by a task per topic (pitfall 4: libp2p buffers 32
  messages per subscription and drops the rest with a warning). The handler already ran,
  so draining only counts.
- publish refuses data over GOSSIP_MESSAGE_BYTES_MAX (pitfall 5: libp2p drops RPCs over
  1 MiB silently; the caller chunks) and is paced: one publisher at a time, and only while
  every peer's libp2p outbound queue has room (pitfall 4: 32 entries, then silent drops),
  except peers found stuck, which are not waited for again until their queue drains.
- Inbound pubsub streams from peers that are not admitted are reset (the connection gate
  already refuses them on a closed node; this is the second wall).
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerstore import env_to_send_in_RPC as _library_sender_record
from libp2p.pubsub import gossipsub as gossipsub_module
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub

from node.p2p.framing import reset_quietly
from node.p2p.limits import (
    GOSSIP_EQUIVOCATION_ENTRIES_MAX,
    GOSSIP_PEER_QUEUE_ENTRIES_PUBLISH_MAX,
    GOSSIP_RECENT_VALIDATIONS_MAX,
    Timings,
)
from node.p2p.transport import GossipHandler, check_gossip_message

# meshsub 1.1 and 1.0. Not 1.2: its IDONTWANT makes py-libp2p send one control RPC per
# received message to every mesh peer (go-libp2p only does so above 1 KiB), which roughly
# doubles the RPCs per message; delivery among 3 nodes fell from ~65 to ~30 messages/s
# (node/p2p_bench.py, same run). Nor the 1.3+ extensions, until something needs them.
GOSSIP_PROTOCOLS = (PROTOCOL_ID_V11, PROTOCOL_ID)
# Mesh degree: the GossipSub defaults (D=6, D_low=4, D_high=12).
MESH_DEGREE = 6
MESH_DEGREE_LOW = 4
MESH_DEGREE_HIGH = 12
# How often publish looks again at peers' outbound queues while they are full.
PUBLISH_POLL_S = 0.002
# GossipSub queues every message for each connected peer whose subscriptions it has not
# seen for the message's topic (py-libp2p 0.8.1: up to 100 messages for 30 s, then a
# warning per message): a peer that joins only the blocks topic made us hold every tx
# batch (~900 KiB each, ~90 MB) and log ~30 warnings a second. The queue exists for the
# moment between connect and the subscription exchange; a few seconds and a few messages
# cover that, and anything missed is recovered by gossip (IHAVE/IWANT) or block sync.
PENDING_MESSAGES_PER_PEER_MAX = 4
# A stuck peer (see _wait_for_queue_room) is paced for again once its queue is this short.
PEER_QUEUE_UNSTUCK_ENTRIES = 8
PENDING_MESSAGE_TTL_S = 3.0


class SerializedPubsub(Pubsub):
    """Pubsub whose writes to one stream never interleave. py-libp2p 0.8.1 writes to a
    peer's stream from several tasks (the peer queue's sender, GossipSub's pending-queue
    flush), and a yamux write larger than the send window goes out in several frames,
    each under the lock only for its own frame: two such writes interleave, and the peer
    reads a corrupt RPC (protobuf's DecodeError), seen 2-5 s after partitions healed,
    when windows are small and backlogs large. One lock per stream here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_locks: weakref.WeakKeyDictionary[Any, trio.Lock] = \
            weakref.WeakKeyDictionary()

    async def write_msg(self, stream: Any, rpc_msg: Any) -> bool:
        # No signed peer record in our RPCs: py-libp2p 0.8.1 attaches one to every RPC
        # and the receiver parses and verifies it (an Ed25519 check, a peerstore update)
        # per message; ~30% of a follower's event loop at 100 tx/s went to that and to
        # rebuilding our multiaddrs for it. We dial configured peers only and never read
        # the certified address book it feeds.
        if rpc_msg.HasField("senderRecord"):
            rpc_msg.ClearField("senderRecord")
        lock = self._write_locks.get(stream)
        if lock is None:
            lock = self._write_locks[stream] = trio.Lock()
        async with lock:
            return await super().write_msg(stream, rpc_msg)


_SENDER_RECORD_REUSE_S = 60.0
_sender_records: weakref.WeakKeyDictionary[Any, tuple[float, tuple[bytes, bool]]] = \
    weakref.WeakKeyDictionary()


def _reused_sender_record(host: Any) -> tuple[bytes, bool]:
    """GossipSub's ``env_to_send_in_RPC``, computed once a minute per host instead of per
    RPC. SerializedPubsub.write_msg drops the record before anything is sent, so only
    its cost matters; it stays a real, valid record all the same."""
    now = time.monotonic()
    cached = _sender_records.get(host)
    if cached is None or now - cached[0] > _SENDER_RECORD_REUSE_S:
        cached = (now, _library_sender_record(host))
        _sender_records[host] = cached
    return cached[1]


setattr(gossipsub_module, "env_to_send_in_RPC", _reused_sender_record)  # noqa: B010


class BoundedGossipSub(GossipSub):
    """GossipSub whose per-peer pending queue is bounded tightly and trimmed silently
    (counted in ``pending_dropped`` instead of a warning per message)."""

    pending_dropped = 0

    def _prune_pending_messages(self, peer_id: ID) -> None:
        queue = self._pending_messages.get(peer_id)
        if queue is None:
            return
        now = time.time()  # libp2p stamps the entries with wall-clock time
        kept = [entry for entry in queue if now - entry[0] <= PENDING_MESSAGE_TTL_S]
        # libp2p prunes, then appends one: leave room for it.
        kept = kept[len(kept) - (PENDING_MESSAGES_PER_PEER_MAX - 1):] if len(kept) >= \
            PENDING_MESSAGES_PER_PEER_MAX else kept
        self.pending_dropped += len(queue) - len(kept)
        if kept:
            queue[:] = kept
        else:
            del self._pending_messages[peer_id]

    def pending_messages_held(self) -> int:
        """Distinct messages held for peers (one message queued for many peers is one)."""
        return len({id(message) for queue in self._pending_messages.values()
                    for _, message in queue})


@dataclass
class _Validation:
    accepted: bool = False
    done: trio.Event = field(default_factory=trio.Event)


@dataclass
class GossipStatistics:
    published: int = 0
    delivered: int = 0
    accepted: int = 0
    rejected: int = 0
    publish_waits: int = 0
    peers_found_stuck: int = 0


class Gossip:
    def __init__(
        self,
        host: Any,
        *,
        timings: Timings,
        log: Any,
        is_admitted: Callable[[str], bool],
        on_heard: Callable[[str], None] = lambda peer_id: None,
    ) -> None:
        self._host = host
        self._on_heard = on_heard
        self._timings = timings
        self._log = log
        self._is_admitted = is_admitted
        self._self_id = host.get_id()
        self.router = BoundedGossipSub(
            protocols=[TProtocol(protocol) for protocol in GOSSIP_PROTOCOLS],
            degree=MESH_DEGREE,
            degree_low=MESH_DEGREE_LOW,
            degree_high=MESH_DEGREE_HIGH,
            heartbeat_initial_delay=0.1,
            heartbeat_interval=timings.gossip_heartbeat_interval_s,
            do_px=False,
            adaptive_gossip_enabled=False,
            spam_protection_enabled=False,
            eclipse_protection_enabled=False,
        )
        self.pubsub = SerializedPubsub(
            host,
            self.router,
            strict_signing=True,
            validation_timeout=timings.gossip_validation_timeout_s,
        )
        for protocol in self.router.get_protocols():  # replaces Pubsub's own handler
            host.set_stream_handler(protocol, self._gated_stream_handler)
        self._handlers: dict[str, GossipHandler] = {}
        self._recent: OrderedDict[bytes, _Validation] = OrderedDict()
        self._publish_lock = trio.Lock()
        self._stuck: set[ID] = set()
        self.statistics = GossipStatistics()

    # ------------------------------------------------------------------ handlers

    def set_handler(self, topic: str, handler: GossipHandler) -> None:
        self._handlers[topic] = handler

    async def subscribe_and_drain(self, topic: str) -> None:
        """Subscribe to ``topic`` and drain its subscription for as long as we run."""
        async def validator(forwarder: ID, message: Any) -> bool:
            with contextlib.suppress(Exception):  # liveness evidence only
                self._on_heard(forwarder.to_base58())
            return await self._validate(topic, message)

        self.pubsub.set_topic_validator(topic, validator, True)
        subscription = await self.pubsub.subscribe(topic)
        self._log.info("gossip topic subscribed", topic=topic)
        while True:
            await subscription.get()
            self.statistics.delivered += 1

    async def _validate(self, topic: str, message: Any) -> bool:
        self._bound_router_memory()
        try:
            origin = ID(message.from_id)
            message_id = self.pubsub.get_message_id(message)
        except Exception:  # a malformed origin: libp2p checked the signature, not this
            self.statistics.rejected += 1
            return False
        if origin == self._self_id:
            return True  # our own publish: not handed back to our handler
        earlier = self._recent.get(message_id)
        if earlier is not None:
            await earlier.done.wait()
            return earlier.accepted
        validation = _Validation()
        self._recent[message_id] = validation
        while len(self._recent) > GOSSIP_RECENT_VALIDATIONS_MAX:
            self._recent.popitem(last=False)
        try:
            validation.accepted = await self._call_handler(topic, origin.to_base58(), message.data)
        finally:
            validation.done.set()
        return validation.accepted

    async def _call_handler(self, topic: str, origin: str, data: bytes) -> bool:
        handler = self._handlers.get(topic)
        accepted = False
        if handler is not None:
            try:
                accepted = bool(await handler(origin, data))
            except Exception:  # a handler bug must not take libp2p's pubsub down
                self._log.exception("gossip handler failed", topic=topic, origin=origin)
        if accepted:
            self.statistics.accepted += 1
        else:
            self.statistics.rejected += 1
        return accepted

    async def _gated_stream_handler(self, stream: Any) -> None:
        peer_id = stream.muxed_conn.peer_id.to_base58()
        if not self._is_admitted(peer_id):
            self._log.warning("gossip stream from a peer not admitted refused", peer=peer_id)
            await reset_quietly(stream)
            return
        await self.pubsub.stream_handler(stream)

    # ------------------------------------------------------------------ publishing

    async def publish(self, topic: str, data: bytes) -> None:
        check_gossip_message(data)
        async with self._publish_lock:
            await self._wait_for_queue_room()
            self._bound_router_memory()
            await self.pubsub.publish(topic, data)
            self.statistics.published += 1

    async def _wait_for_queue_room(self) -> None:
        """Wait (at most ``gossip_publish_wait_s_max``) until every peer's libp2p queue has
        room. A peer whose queue stays full that long is *stuck* (paused, cut off, or too
        slow) and no longer paced for until its queue drains: libp2p drops what does not
        fit for it, and it catches up by sync. One absent peer must never hold up
        publishing to the others (it held the leader's apply loop for up to 5 s a block)."""
        queues = self.pubsub.peer_queues
        self._stuck = {peer for peer in self._stuck
                       if peer in queues and len(queues[peer]) >= PEER_QUEUE_UNSTUCK_ENTRIES}
        if not self._crowded(queues):
            return
        self.statistics.publish_waits += 1
        with trio.move_on_after(self._timings.gossip_publish_wait_s_max):
            while self._crowded(queues):
                await trio.sleep(PUBLISH_POLL_S)
            return
        stuck = self._crowded(queues)
        self._stuck |= stuck
        self.statistics.peers_found_stuck += len(stuck)
        self._log.warning("gossip peers' queues stayed full: publishing without them",
                          peers=sorted(peer.to_base58() for peer in stuck),
                          waited_s=self._timings.gossip_publish_wait_s_max)

    def _crowded(self, queues: dict[Any, Any]) -> set[Any]:
        return {peer for peer, queue in queues.items()
                if peer not in self._stuck and len(queue) >= GOSSIP_PEER_QUEUE_ENTRIES_PUBLISH_MAX}

    def _bound_router_memory(self) -> None:
        """Trim GossipSub's equivocation memory, which holds whole messages (see
        GOSSIP_EQUIVOCATION_ENTRIES_MAX); oldest first (dicts keep insertion order)."""
        remembered = self.router.equivocation_detection
        while len(remembered) > GOSSIP_EQUIVOCATION_ENTRIES_MAX:
            del remembered[next(iter(remembered))]

    # ------------------------------------------------------------------ views

    def mesh_peers(self, topic: str) -> set[str]:
        return {peer.to_base58() for peer in self.router.mesh.get(topic, set())}

    def topic_peers(self, topic: str) -> set[str]:
        return {peer.to_base58() for peer in self.pubsub.peer_topics.get(topic, set())}
