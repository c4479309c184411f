"""One persistent raft stream per validator pair, supervised.

Of two validators the one with the smaller peer id (string order) *opens* the stream; the
other *accepts* it. Both ends then use the one stream in both directions: a writer task
drains the bounded outbound queue (coalescing queued frames into one write), a reader task
hands frames to the node in order. An empty frame is a keepalive, sent after
``raft_keepalive_interval_s`` without traffic.

The supervisor treats any of these as a dead or wedged stream: a write that outlives its
deadline, no bytes read for ``raft_read_inactivity_timeout_s``, a reset, EOF, a malformed
frame. It then resets the stream, drops the connection (disconnect + unblock_peer, so the
failed-dial cache does not refuse the redial, pitfalls 8 and 9) and starts over; the
connection keeper redials. While no stream is up, ``send_frame`` refuses frames at once
(raft retries on its own), so nothing stale piles up behind a dead peer.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from node.p2p.framing import (
    KEEPALIVE_FRAME,
    FrameReader,
    cleanup_scope,
    encode_frame,
    reset_quietly,
)
from node.p2p.limits import (
    RAFT_FRAME_BYTES_MAX,
    RAFT_QUEUE_BYTES_MAX,
    RAFT_QUEUE_FRAMES_MAX,
    RAFT_WRITE_BATCH_BYTES_MAX,
    Timings,
)

SUPERSEDED = "superseded by a newer stream from the peer"
STOPPED = "link stopped"
# Resetting a stream and dropping a connection are shielded from cancellation but bounded.
TEARDOWN_S_MAX = 2.0
# A session that lasted this long was healthy: the next failure starts the backoff afresh.
STABLE_SESSION_S = 10.0


class LinkHost(Protocol):
    """What a raft link needs from the host."""

    async def wait_connected(self, peer_id: str) -> None: ...

    async def open_raft_stream(self, peer_id: str) -> Any: ...

    async def drop_connection(self, peer_id: str) -> None: ...


class Backoff:
    """Exponential backoff with jitter: initial, 2x, 4x, ... up to the maximum."""

    def __init__(self, *, initial_s: float, maximum_s: float, rng: random.Random) -> None:
        self._initial_s = initial_s
        self._maximum_s = maximum_s
        self._rng = rng
        self._next_s = initial_s

    def reset(self) -> None:
        self._next_s = self._initial_s

    async def wait(self) -> None:
        delay = self._next_s * (0.5 + self._rng.random())
        self._next_s = min(self._next_s * 2, self._maximum_s)
        await trio.sleep(delay)


class FrameQueue:
    """Bounded by frames and by bytes; ``put_nowait`` refuses when either is reached."""

    def __init__(self, *, frames_max: int, bytes_max: int) -> None:
        self._frames: deque[bytes] = deque()
        self._frames_max = frames_max
        self._bytes_max = bytes_max
        self._bytes = 0
        self._not_empty = trio.Event()

    def __len__(self) -> int:
        return len(self._frames)

    def put_nowait(self, frame: bytes) -> bool:
        if len(self._frames) >= self._frames_max or self._bytes + len(frame) > self._bytes_max:
            return False
        self._frames.append(frame)
        self._bytes += len(frame)
        self._not_empty.set()
        return True

    async def get_batch(self, *, bytes_max: int, timeout_s: float) -> list[bytes]:
        """Frames up to ``bytes_max`` in total (at least one), or [] after ``timeout_s``."""
        if not self._frames:
            self._not_empty = trio.Event()
            with trio.move_on_after(timeout_s):
                await self._not_empty.wait()
        batch: list[bytes] = []
        size = 0
        while self._frames and (not batch or size + len(self._frames[0]) <= bytes_max):
            frame = self._frames.popleft()
            self._bytes -= len(frame)
            size += len(frame)
            batch.append(frame)
        return batch

    def clear(self) -> None:
        self._frames.clear()
        self._bytes = 0


@dataclass
class _Offer:
    """An inbound stream handed to an accepting link; the libp2p handler task that owns
    the stream waits on ``finished``."""

    stream: Any
    finished: trio.Event = field(default_factory=trio.Event)


@dataclass
class LinkStatistics:
    sessions: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    frames_refused: int = 0
    last_failure: str = ""


class RaftLink:
    def __init__(
        self,
        *,
        peer_id: str,
        opener: bool,
        host: LinkHost,
        deliver: Callable[[str, bytes], Awaitable[None]],
        timings: Timings,
        log: Any,
        rng: random.Random,
    ) -> None:
        self.peer_id = peer_id
        self.opener = opener
        self._host = host
        self._deliver = deliver
        self._timings = timings
        self._log = log.bind(peer=peer_id, role="opener" if opener else "acceptor")
        self._backoff = Backoff(initial_s=timings.redial_backoff_initial_s,
                                maximum_s=timings.redial_backoff_max_s, rng=rng)
        self.queue = FrameQueue(frames_max=RAFT_QUEUE_FRAMES_MAX, bytes_max=RAFT_QUEUE_BYTES_MAX)
        self.stream_up = False
        self.statistics = LinkStatistics()
        self._session_scope: trio.CancelScope | None = None
        self._failure: str | None = None
        self._offer: _Offer | None = None
        self._offer_arrived = trio.Event()

    # ------------------------------------------------------------------ callers

    def send_nowait(self, frame: bytes) -> bool:
        if not self.stream_up or not self.queue.put_nowait(frame):
            self.statistics.frames_refused += 1
            return False
        return True

    async def adopt(self, stream: Any) -> None:
        """Serve an inbound stream (acceptor only); returns when the link is done with it."""
        assert not self.opener, "an opening link never adopts an inbound stream"
        offer = _Offer(stream)
        previous, self._offer = self._offer, offer
        if previous is not None:  # never used: a newer stream replaced it at once
            previous.finished.set()
            await reset_quietly(previous.stream)
        self._offer_arrived.set()
        self._fail(SUPERSEDED)
        await offer.finished.wait()

    # ------------------------------------------------------------------ supervisor

    async def run(self) -> None:
        try:
            while True:
                offer = None if self.opener else await self._take_offer()
                stream = offer.stream if offer is not None else await self._open()
                if stream is None:
                    await self._backoff.wait()
                    continue
                await self._serve(stream, offer)
        finally:
            self.stream_up = False
            if self._offer is not None:
                self._offer.finished.set()

    async def _serve(self, stream: Any, offer: _Offer | None) -> None:
        reason = STOPPED
        started = trio.current_time()
        try:
            reason = await self._session(stream)
        finally:
            if offer is not None:
                offer.finished.set()
            await self._teardown(stream, reason)
        if trio.current_time() - started >= STABLE_SESSION_S:
            self._backoff.reset()
        if reason != SUPERSEDED and self.opener:
            await self._backoff.wait()

    async def _take_offer(self) -> _Offer:
        while self._offer is None:
            self._offer_arrived = trio.Event()
            await self._offer_arrived.wait()
        offer, self._offer = self._offer, None
        return offer

    async def _open(self) -> Any:
        await self._host.wait_connected(self.peer_id)
        try:
            with trio.fail_after(self._timings.stream_open_timeout_s):
                return await self._host.open_raft_stream(self.peer_id)
        except trio.TooSlowError:
            self._log.warning("raft stream open timed out: dropping the connection")
            await self._drop_connection()
        except Exception as error:  # libp2p raises many kinds: all mean "not now"
            self._log.info("raft stream open failed", error=repr(error))
        return None

    async def _session(self, stream: Any) -> str:
        self._failure = None
        self.queue.clear()
        self.stream_up = True
        self.statistics.sessions += 1
        self._log.info("raft stream up")
        try:
            async with trio.open_nursery() as nursery:
                self._session_scope = nursery.cancel_scope
                if self._failure is not None:  # superseded before we even started
                    nursery.cancel_scope.cancel()
                nursery.start_soon(self._write_loop, stream)
                nursery.start_soon(self._read_loop, stream)
        finally:
            self._session_scope = None
            self.stream_up = False
            self.queue.clear()
        return self._failure or STOPPED

    def _fail(self, reason: str) -> None:
        if self._session_scope is not None and self._failure is None:
            self._failure = reason
            self._session_scope.cancel()

    async def _write_loop(self, stream: Any) -> None:
        timings = self._timings
        try:
            while True:
                batch = await self.queue.get_batch(
                    bytes_max=RAFT_WRITE_BATCH_BYTES_MAX,
                    timeout_s=timings.raft_keepalive_interval_s,
                )
                data = (b"".join(encode_frame(frame) for frame in batch) if batch
                        else KEEPALIVE_FRAME)
                with trio.fail_after(timings.raft_write_deadline_s(len(data))):
                    await stream.write(data)
                self.statistics.frames_sent += len(batch)
        except trio.TooSlowError:
            self._fail("write timed out (wedged connection)")
        except Exception as error:
            self._fail(f"write failed: {error!r}")

    async def _read_loop(self, stream: Any) -> None:
        reader = FrameReader(stream, frame_bytes_max=RAFT_FRAME_BYTES_MAX)
        inactivity_s = self._timings.raft_read_inactivity_timeout_s
        while True:
            try:
                frame = await reader.read_frame(read_timeout_s=inactivity_s)
            except trio.TooSlowError:
                self._fail(f"nothing read for {inactivity_s} s (wedged connection)")
                return
            except Exception as error:
                self._fail(f"read failed: {error!r}")
                return
            if frame:  # empty frames are keepalives
                self.statistics.frames_received += 1
                await self._deliver(self.peer_id, frame)

    async def _teardown(self, stream: Any, reason: str) -> None:
        self.statistics.last_failure = reason
        if reason == STOPPED:
            self._log.info("raft stream closed", reason=reason)
        else:
            self._log.warning("raft stream down", reason=reason)
        await reset_quietly(stream)
        if reason not in (SUPERSEDED, STOPPED):
            await self._drop_connection()

    async def _drop_connection(self) -> None:
        with cleanup_scope(TEARDOWN_S_MAX):
            await self._host.drop_connection(self.peer_id)
