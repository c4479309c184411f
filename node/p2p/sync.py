"""The request/response protocol (/medledger/sync/1.0.0): exchanges on reused streams.

The client writes one request frame and reads one response frame: a status byte, then
the payload (the handler's answer, or a UTF-8 reason when the handler failed). A stream
carries one exchange at a time and many in turn: the client keeps one idle stream per
peer and reuses it while it has been idle less than ``SYNC_STREAM_REUSE_S``; the server
answers frame after frame until the client closes (a client that half-closes after its
request gets the one answer) or nothing comes for ``sync_read_inactivity_timeout_s``. A
peer that is not admitted gets its stream reset without a word.

A stream open costs ~4 ms of both event loops here (multistream negotiation; MEASUREMENTS.md:
~250 exchanges/s against ~1,100/s on a reused stream), and forwards to the leader run at
the clients' submission rate: at 100 tx/s, opening a stream per forward took a fifth of the
leader's event loop. A request that fails on a reused stream before any answer came
(the server had just closed it, the connection was replaced) is sent once more on a new
stream: requests (block ranges, forwarded txs) are idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from libp2p.network.stream.exceptions import StreamReset

from ledger.errors import MedledgerError
from node.p2p.framing import (
    FrameError,
    FrameReader,
    StreamEndedError,
    close_quietly,
    encode_frame,
    reset_quietly,
)
from node.p2p.limits import (
    SYNC_PROTOCOL,
    SYNC_REQUEST_BYTES_MAX,
    SYNC_REQUESTS_CONCURRENT_MAX,
    SYNC_REQUESTS_PER_PEER_MAX,
    SYNC_RESPONSE_BYTES_MAX,
    Timings,
)
from node.p2p.streams import StreamOpener
from node.p2p.transport import (
    MessageTooLargeError,
    PeerUnreachableError,
    RequestFailedError,
    RequestHandler,
    RequestRefusedError,
    RequestTimeoutError,
)

STATUS_OK = 0
STATUS_FAILED = 1


# An idle stream older than this is closed, not reused: well below the server's
# ``sync_read_inactivity_timeout_s``, after which it closes a stream nothing came on.
SYNC_STREAM_REUSE_S = 5.0


class _StaleStream(Exception):
    """A reused stream failed before any answer: send again on a new one."""


class SyncClient:
    def __init__(self, opener: StreamOpener, *, timings: Timings) -> None:
        self._opener = opener
        self._timings = timings
        # peer id -> (stream, when it became idle): at most one idle stream per peer.
        self._idle: dict[str, tuple[Any, float]] = {}
        self.streams_opened = 0

    async def request(self, peer_id: str, data: bytes, *, timeout_s: float) -> bytes:
        if len(data) > SYNC_REQUEST_BYTES_MAX:
            raise MessageTooLargeError(
                f"request of {len(data)} bytes > {SYNC_REQUEST_BYTES_MAX}: split it"
            )
        try:
            with trio.fail_after(timeout_s):
                reused = await self._take_idle(peer_id)
                if reused is not None:
                    try:
                        answer = await self._exchange_on(peer_id, reused, data, reused=True)
                        return _unwrap(peer_id, answer)
                    except _StaleStream:
                        pass
                stream = await self._open(peer_id, timeout_s)
                self.streams_opened += 1
                answer = await self._exchange_on(peer_id, stream, data, reused=False)
        except trio.TooSlowError:
            raise RequestTimeoutError(f"no answer from {peer_id} in {timeout_s} s") from None
        return _unwrap(peer_id, answer)

    async def _take_idle(self, peer_id: str) -> Any:
        idle = self._idle.pop(peer_id, None)
        if idle is None:
            return None
        stream, since = idle
        if trio.current_time() - since > SYNC_STREAM_REUSE_S:
            await close_quietly(stream)
            return None
        return stream

    async def _exchange_on(self, peer_id: str, stream: Any, data: bytes, *,
                           reused: bool) -> bytes:
        """One exchange; the stream goes back to the idle slot after a whole answer and
        is reset after anything else (a cancelled exchange leaves it mid-frame)."""
        try:
            answer = await self._exchange(stream, data, stale_possible=reused)
        except BaseException:
            with trio.CancelScope(shield=True):
                await reset_quietly(stream)
            raise
        if peer_id not in self._idle:
            self._idle[peer_id] = (stream, trio.current_time())
        else:
            await close_quietly(stream)
        return answer

    async def _open(self, peer_id: str, timeout_s: float) -> Any:
        try:
            return await self._opener.open(peer_id, SYNC_PROTOCOL, timeout_s=timeout_s)
        except trio.TooSlowError:
            raise
        except Exception as error:  # libp2p: SwarmException, StreamFailure, ...
            raise PeerUnreachableError(f"no sync stream to {peer_id}: {error!r}") from error

    async def _exchange(self, stream: Any, data: bytes, *, stale_possible: bool) -> bytes:
        answered = False
        try:
            await stream.write(encode_frame(data))
            reader = FrameReader(stream, frame_bytes_max=SYNC_RESPONSE_BYTES_MAX + 1)
            answer = await reader.read_frame(
                read_timeout_s=self._timings.sync_read_inactivity_timeout_s
            )
            answered = True
            return answer
        except trio.TooSlowError:
            raise
        except Exception as error:
            if stale_possible and not answered:
                raise _StaleStream() from error
            if isinstance(error, StreamReset):
                raise RequestRefusedError(
                    f"the peer reset the request stream: {error}") from error
            if isinstance(error, FrameError):
                raise RequestFailedError(f"malformed answer: {error}") from error
            if isinstance(error, StreamEndedError):
                raise RequestFailedError(
                    "the peer closed the stream without answering") from error
            # any other stream failure of libp2p
            raise RequestRefusedError(f"request stream failed: {error!r}") from error


def _unwrap(peer_id: str, answer: bytes) -> bytes:
    if not answer:
        raise RequestFailedError(f"empty answer from {peer_id}")
    status, payload = answer[0], answer[1:]
    if status == STATUS_OK:
        return payload
    if status == STATUS_FAILED:
        reason = payload.decode("utf-8", errors="replace")
        raise RequestFailedError(f"{peer_id} failed the request: {reason}")
    raise RequestFailedError(f"unknown answer status {status} from {peer_id}")


class SyncServer:
    def __init__(
        self, *, timings: Timings, log: Any, is_admitted: Callable[[str], bool]
    ) -> None:
        self._timings = timings
        self._log = log
        self._is_admitted = is_admitted
        self._limiter = trio.CapacityLimiter(SYNC_REQUESTS_CONCURRENT_MAX)
        self._in_flight: dict[str, int] = {}
        self.handler: RequestHandler | None = None
        # Told of every admitted peer that sends a request (liveness evidence).
        self.on_heard: Callable[[str], None] = lambda peer_id: None
        self.served = 0
        self.refused = 0
        self.busy = 0
        self.write_timeouts = 0

    async def handle_stream(self, stream: Any) -> None:
        """libp2p stream handler; never raises (that would tear the connection down)."""
        peer_id = stream.muxed_conn.peer_id.to_base58()
        log = self._log.bind(peer=peer_id)
        if self._is_admitted(peer_id):
            self.on_heard(peer_id)
        if not self._is_admitted(peer_id):
            self.refused += 1
            log.warning("sync request from a peer not admitted refused")
            await reset_quietly(stream)
            return
        if self._in_flight.get(peer_id, 0) >= SYNC_REQUESTS_PER_PEER_MAX:
            # Its earlier requests are still being served (or stuck writing to it): one
            # peer never holds more than its share of the slots.
            self.busy += 1
            await reset_quietly(stream)
            return
        self._in_flight[peer_id] = self._in_flight.get(peer_id, 0) + 1
        try:
            reader = FrameReader(stream, frame_bytes_max=SYNC_REQUEST_BYTES_MAX)
            while True:
                try:
                    request = await reader.read_frame(
                        read_timeout_s=self._timings.sync_read_inactivity_timeout_s)
                except (StreamEndedError, trio.TooSlowError) as ended:
                    if isinstance(ended, StreamEndedError) and str(ended) != "EOF":
                        raise
                    await close_quietly(stream)  # the asker is done, or idle too long
                    return
                async with self._limiter:
                    answer = encode_frame(await self._answer(peer_id, request, log))
                    # Bounded: an asker behind a wedged connection (nothing it reads, a
                    # full TCP buffer) would hold this slot until the connection died.
                    written = False
                    with trio.move_on_after(
                            self._timings.sync_write_deadline_s(len(answer))):
                        await stream.write(answer)
                        written = True
                if not written:
                    self.write_timeouts += 1
                    log.info("sync answer not taken in time; stream reset",
                             bytes=len(answer))
                    await reset_quietly(stream)
                    return
                self.served += 1
        except Exception as error:  # the peer went away, sent garbage or was too slow
            log.info("sync request failed", error=repr(error))
            await reset_quietly(stream)
        finally:
            left = self._in_flight.pop(peer_id, 1) - 1
            if left > 0:
                self._in_flight[peer_id] = left

    async def _answer(self, peer_id: str, request: bytes, log: Any) -> bytes:
        handler = self.handler
        if handler is None:
            return bytes([STATUS_FAILED]) + b"no request handler registered"
        try:
            response = await handler(peer_id, request)
        except MedledgerError as error:
            return bytes([STATUS_FAILED]) + str(error).encode()
        except Exception:
            log.exception("sync request handler crashed")
            return bytes([STATUS_FAILED]) + b"internal error"
        if len(response) > SYNC_RESPONSE_BYTES_MAX:
            log.error("sync response over the limit", size=len(response))
            return bytes([STATUS_FAILED]) + b"response over the size limit"
        return bytes([STATUS_OK]) + response
