"""The sync server never lets one peer's wedged connection starve the others.

Chaos seed 3 (campaign at 4025c41): a follower behind a wedged connection kept retrying
its block-range requests; the leader's answers to it could not be written (nothing read
them) and each held one of the server's slots with no deadline, until every slot was
taken and the leader answered no healthy follower's forwarded txs for 20 s. Here the
streams are fakes: an answer write to the wedged peer blocks until the test ends, as a
write into a full TCP buffer does."""

from __future__ import annotations

import trio
import trio.testing

from node.logs import get_logger
from node.p2p.framing import encode_frame
from node.p2p.limits import SYNC_REQUESTS_CONCURRENT_MAX, SYNC_REQUESTS_PER_PEER_MAX, Timings
from node.p2p.sync import STATUS_OK, SyncServer

WEDGED = "12D3KooWM1yg7hbEBnqSTdf6FB2EQ2P1vyg94353UrQAiiZ44QeU"
HEALTHY = "12D3KooWGjbJVWP3qoY1W5iW9fV7jZf3dGN9puToLJhnyjscAVaJ"
WRITE_TIMEOUT_S = 0.3
TIMINGS = Timings(sync_write_timeout_s=WRITE_TIMEOUT_S, sync_read_inactivity_timeout_s=2.0)


class _PeerId:
    def __init__(self, name: str) -> None:
        self._name = name

    def to_base58(self) -> str:
        return self._name


class _Conn:
    def __init__(self, name: str) -> None:
        self.peer_id = _PeerId(name)


class FakeStream:
    """One request stream: the request frame to read; writes block while ``wedged``."""

    def __init__(self, peer: str, request: bytes, *, wedged: bool) -> None:
        self.muxed_conn = _Conn(peer)
        self._unread = encode_frame(request)
        self._wedged = wedged
        self.written = b""
        self.answered = trio.Event()
        self.was_reset = False
        self.closed = False

    async def read(self, n: int) -> bytes:
        await trio.sleep(0)
        chunk, self._unread = self._unread[:n], self._unread[n:]
        return chunk

    async def write(self, data: bytes) -> None:
        if self._wedged:
            await trio.sleep_forever()  # a full TCP buffer nobody drains
        self.written += data
        self.answered.set()

    async def close(self) -> None:
        self.closed = True

    async def reset(self) -> None:
        self.was_reset = True


def server() -> SyncServer:
    served = SyncServer(timings=TIMINGS, log=get_logger(), is_admitted=lambda peer: True)

    async def echo(peer_id: str, request: bytes) -> bytes:
        return b"answer:" + request

    served.handler = echo
    return served


async def test_a_healthy_peer_is_answered_while_a_wedged_peer_retries_past_every_slot() -> None:
    sync = server()
    wedged = [FakeStream(WEDGED, b"blocks %d" % i, wedged=True)
              for i in range(SYNC_REQUESTS_CONCURRENT_MAX + 4)]
    healthy = FakeStream(HEALTHY, b"forward", wedged=False)
    async with trio.open_nursery() as nursery:
        for stream in wedged:
            nursery.start_soon(sync.handle_stream, stream)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(sync.handle_stream, healthy)
        # Well inside the forwarder's 5 s: before the fix this waited for a slot forever.
        with trio.fail_after(WRITE_TIMEOUT_S / 2):
            await healthy.answered.wait()
        nursery.cancel_scope.cancel()
    assert healthy.written == encode_frame(bytes([STATUS_OK]) + b"answer:forward")
    # The wedged peer held at most its share; its further requests were refused at once.
    assert sync.busy == len(wedged) - SYNC_REQUESTS_PER_PEER_MAX
    assert sum(stream.was_reset for stream in wedged) == sync.busy


async def test_an_answer_not_taken_in_time_frees_its_slot_and_resets_the_stream() -> None:
    sync = server()
    stuck = FakeStream(WEDGED, b"blocks", wedged=True)
    with trio.fail_after(WRITE_TIMEOUT_S + 2.0):
        await sync.handle_stream(stuck)
    assert stuck.was_reset and not stuck.closed
    assert sync.write_timeouts == 1 and sync.served == 0
    # The slot and the peer's share are free again: its next request is served.
    again = FakeStream(WEDGED, b"blocks", wedged=False)
    with trio.fail_after(2.0):
        await sync.handle_stream(again)
    assert again.answered.is_set() and again.closed and sync.served == 1
