"""Opening libp2p streams within a deadline that py-libp2p cannot stretch.

py-libp2p's ``BasicHost.new_stream`` resets the half-open stream of a failed or cancelled
protocol negotiation in a shielded, unbounded scope. On a wedged connection (a peer
paused, or cut by a blackhole route, with the send buffer full) that reset waits for the
socket: the chaos testnet's seed 5 at c9aabe2 saw a forward request with a 5 s timeout
come back after 34 s, during which the node forwarded nothing to the new leader. Every
stream this node opens (raft, request/response, ping) therefore opens through
:class:`StreamOpener`: the attempt runs as a task of the transport, the caller waits for
it at most its timeout, and an attempt that outlives its caller is cancelled and left to
finish on its own (a stream it still gets is reset, since nobody waits for it). Attempts
left this way are counted per peer; while a peer has ``LINGERING_OPENS_PER_PEER_MAX`` of
them, opens to it fail at once.
"""

from __future__ import annotations

import time
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from node.p2p.framing import cleanup_scope, reset_quietly
from node.p2p.transport import PeerUnreachableError

# Opens to a peer still stuck in py-libp2p after their callers gave up; at this many, a
# further open to that peer fails at once (the connection is wedged; a new one is needed).
LINGERING_OPENS_PER_PEER_MAX = 4
# How long a caller whose deadline passed waits for the cancelled attempt to unwind
# before leaving it behind (an attempt that honours cancellation unwinds at once).
UNWIND_GRACE_S = 0.2
# A stuck open is logged at most once per peer in this interval.
STUCK_LOG_INTERVAL_S = 60.0


class _Attempt:
    __slots__ = ("abandoned", "done", "error", "scope", "stream")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.scope = trio.CancelScope()
        self.stream: Any = None
        self.error: BaseException | None = None
        self.abandoned = False


class StreamOpener:
    def __init__(self, log: Any) -> None:
        self._log = log
        # The transport's libp2p host and nursery, while it runs.
        self.host: Any = None
        self.nursery: trio.Nursery | None = None
        self._lingering: dict[str, int] = {}
        self._stuck_logged_at: dict[str, float] = {}
        self.opens_left_behind = 0

    def lingering(self, peer_id: str) -> int:
        return self._lingering.get(peer_id, 0)

    async def open(self, peer_id: str, protocol: str, *, timeout_s: float) -> Any:
        """A stream to ``peer_id`` speaking ``protocol``, or ``trio.TooSlowError`` after
        ``timeout_s`` however py-libp2p behaves; its own errors pass through."""
        if self.nursery is None or self.host is None:
            raise PeerUnreachableError("the p2p transport is not running")
        if self.lingering(peer_id) >= LINGERING_OPENS_PER_PEER_MAX:
            raise PeerUnreachableError(
                f"{self.lingering(peer_id)} stream opens to {peer_id} are still stuck in "
                "py-libp2p (a wedged connection): not opening another")
        attempt = _Attempt()
        self.nursery.start_soon(self._run, attempt, peer_id, protocol)
        handed_over = False
        try:
            with trio.move_on_after(timeout_s):
                await attempt.done.wait()
            if attempt.done.is_set() and attempt.error is not None:
                raise attempt.error
            if attempt.stream is None:
                raise trio.TooSlowError
            handed_over = True
            return attempt.stream
        finally:
            if not attempt.done.is_set():  # the deadline passed, or our caller's did
                attempt.scope.cancel()
                with cleanup_scope(UNWIND_GRACE_S):
                    await attempt.done.wait()
            if not attempt.done.is_set():
                self._leave_behind(attempt, peer_id)
            elif attempt.stream is not None and not handed_over:
                await reset_quietly(attempt.stream)

    async def _run(self, attempt: _Attempt, peer_id: str, protocol: str) -> None:
        try:
            with attempt.scope:
                try:
                    stream = await self.host.new_stream(ID.from_base58(peer_id),
                                                         [TProtocol(protocol)])
                except Exception as error:  # SwarmException, StreamFailure, ...
                    attempt.error = error
                else:
                    if attempt.abandoned:
                        await reset_quietly(stream)
                    else:
                        attempt.stream = stream
        finally:
            if attempt.abandoned:
                self._lingering[peer_id] -= 1
                if not self._lingering[peer_id]:
                    del self._lingering[peer_id]
            attempt.done.set()

    def _leave_behind(self, attempt: _Attempt, peer_id: str) -> None:
        attempt.abandoned = True
        self._lingering[peer_id] = self._lingering.get(peer_id, 0) + 1
        self.opens_left_behind += 1
        now = time.monotonic()
        if now - self._stuck_logged_at.get(peer_id, -STUCK_LOG_INTERVAL_S) >= (
                STUCK_LOG_INTERVAL_S):
            self._stuck_logged_at[peer_id] = now
            self._log.warning("stream open stuck in py-libp2p past its deadline; left behind",
                              peer=peer_id, lingering=self._lingering[peer_id])
