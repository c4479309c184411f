"""Stream opens keep their deadline when py-libp2p does not.

py-libp2p's ``new_stream`` resets a failed negotiation's stream in a shielded, unbounded
scope; on a wedged connection that waits for the socket. The fake host below does the
same (a shielded wait on an event the test sets), so these tests show the caller gets
its answer on time, the attempt is left behind and counted, and a stream it gets late is
reset, not leaked."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from node.logs import get_logger
from node.p2p.limits import SYNC_PROTOCOL, Timings
from node.p2p.streams import LINGERING_OPENS_PER_PEER_MAX, UNWIND_GRACE_S, StreamOpener
from node.p2p.sync import SyncClient
from node.p2p.transport import PeerUnreachableError, RequestTimeoutError

PEER = "12D3KooWM1yg7hbEBnqSTdf6FB2EQ2P1vyg94353UrQAiiZ44QeU"
DEADLINE_S = 0.3
# The caller's answer comes within its deadline, the unwind grace and scheduling slack.
ANSWER_WITHIN_S = DEADLINE_S + UNWIND_GRACE_S + 0.5


class FakeStream:
    def __init__(self) -> None:
        self.reset_called = False

    async def reset(self) -> None:
        self.reset_called = True


class WedgedHost:
    """new_stream hangs; cancelled, it 'resets' in a shielded scope until ``socket``."""

    def __init__(self, *, late_stream: bool = False) -> None:
        self.socket = trio.Event()
        self.late_stream = late_stream
        self.streams: list[FakeStream] = []
        self.calls = 0

    async def new_stream(self, peer_id: Any, protocols: Any) -> FakeStream:
        self.calls += 1
        try:
            await self.socket.wait()
        except trio.Cancelled:
            if not self.late_stream:
                with trio.CancelScope(shield=True):
                    await self.socket.wait()
                raise
        stream = FakeStream()
        self.streams.append(stream)
        return stream


class LateHost(WedgedHost):
    """new_stream ignores cancellation and returns a stream once ``socket`` is set."""

    async def new_stream(self, peer_id: Any, protocols: Any) -> FakeStream:
        self.calls += 1
        with trio.CancelScope(shield=True):
            await self.socket.wait()
        stream = FakeStream()
        self.streams.append(stream)
        return stream


def opener_on(host: Any, nursery: trio.Nursery) -> StreamOpener:
    opener = StreamOpener(get_logger())
    opener.host, opener.nursery = host, nursery
    return opener


async def test_an_open_stuck_in_a_shielded_reset_answers_at_its_deadline() -> None:
    host = WedgedHost()
    async with trio.open_nursery() as nursery:
        opener = opener_on(host, nursery)
        started = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            await opener.open(PEER, SYNC_PROTOCOL, timeout_s=DEADLINE_S)
        assert trio.current_time() - started < ANSWER_WITHIN_S
        assert opener.lingering(PEER) == 1 and opener.opens_left_behind == 1
        host.socket.set()  # the wedged socket gives way: the attempt ends
        await trio.testing.wait_all_tasks_blocked()
        assert opener.lingering(PEER) == 0


async def test_a_stream_that_arrives_after_its_caller_left_is_reset() -> None:
    host = LateHost()
    async with trio.open_nursery() as nursery:
        opener = opener_on(host, nursery)
        with pytest.raises(trio.TooSlowError):
            await opener.open(PEER, SYNC_PROTOCOL, timeout_s=DEADLINE_S)
        host.socket.set()
        await trio.testing.wait_all_tasks_blocked()
        assert [stream.reset_called for stream in host.streams] == [True]
        assert opener.lingering(PEER) == 0


async def test_opens_to_a_peer_with_too_many_stuck_ones_fail_at_once() -> None:
    host = WedgedHost()
    async with trio.open_nursery() as nursery:
        opener = opener_on(host, nursery)
        for _ in range(LINGERING_OPENS_PER_PEER_MAX):
            with pytest.raises(trio.TooSlowError):
                await opener.open(PEER, SYNC_PROTOCOL, timeout_s=0.05)
        calls = host.calls
        with pytest.raises(PeerUnreachableError, match="still stuck"):
            await opener.open(PEER, SYNC_PROTOCOL, timeout_s=DEADLINE_S)
        assert host.calls == calls  # not even tried
        host.socket.set()


async def test_a_request_keeps_its_timeout_on_a_wedged_connection() -> None:
    """The forward to the old leader that took 34 s with a 5 s timeout (seed 5)."""
    host = WedgedHost()
    timings = Timings()
    async with trio.open_nursery() as nursery:
        client = SyncClient(opener_on(host, nursery), timings=timings)
        started = trio.current_time()
        with pytest.raises(RequestTimeoutError):
            await client.request(PEER, b"forward", timeout_s=DEADLINE_S)
        assert trio.current_time() - started < ANSWER_WITHIN_S
        host.socket.set()


async def test_an_open_that_works_hands_over_its_stream() -> None:
    host = WedgedHost()
    host.socket.set()
    async with trio.open_nursery() as nursery:
        opener = opener_on(host, nursery)
        stream = await opener.open(PEER, SYNC_PROTOCOL, timeout_s=DEADLINE_S)
        assert stream is host.streams[0] and not stream.reset_called
        assert opener.lingering(PEER) == 0 and opener.opens_left_behind == 0
