"""A peer that no genesis lists (observers are admitted by default) must not be able to
stop a node with what it writes: issue 11's 16-byte frame of 0xff on /meshsub/1.1.0, and a
short run of the peer-level fuzz harness (tests/fuzz/fuzz_peer.py) over every protocol."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import multiaddr
import pytest
import trio
from fuzz.fuzz_peer import NodeUnderTest, fuzz
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

from node.p2p.framing import encode_frame

# The node's log line and exit follow the frame within a few hundred ms (issue 11).
AFTER_FRAME_SECONDS = 2.0
PEER_FUZZ_SECONDS = 10.0
PEER_FUZZ_SEED = 7
TEST_SECONDS_MAX = 60


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeUnderTest]:
    running = NodeUnderTest(tmp_path)
    try:
        yield running
    finally:
        running.stop()


async def _send_on_meshsub(target: str, frames: list[bytes]) -> None:
    secret = hashlib.sha256(b"tests/test_p2p_hostile_peer").digest()
    listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
    host = new_host(key_pair=create_new_key_pair(secret), listen_addrs=[listen])
    peer = info_from_p2p_addr(multiaddr.Multiaddr(target))
    async with host.run([listen]):
        with trio.fail_after(TEST_SECONDS_MAX):
            await host.connect(peer)
            stream = await host.new_stream(peer.peer_id, [TProtocol("/meshsub/1.1.0")])
            for frame in frames:
                await stream.write(frame)
            await trio.sleep(AFTER_FRAME_SECONDS)


def test_sixteen_bytes_of_ff_on_meshsub_do_not_stop_the_node(node: NodeUnderTest) -> None:
    trio.run(_send_on_meshsub, node.multiaddr, [encode_frame(b"\xff" * 16)])
    time.sleep(AFTER_FRAME_SECONDS)
    assert node.healthy() is None, node.log_tail()


def test_a_short_peer_fuzzing_run_does_not_stop_the_node(node: NodeUnderTest) -> None:
    statistics = trio.run(lambda: fuzz(node, seconds=PEER_FUZZ_SECONDS, seed=PEER_FUZZ_SEED))
    assert not statistics.crashes, (statistics.crashes, node.log_tail())
    assert statistics.frames > 0 and sum(statistics.streams_opened.values()) > 0, statistics
    assert node.healthy() is None, node.log_tail()
