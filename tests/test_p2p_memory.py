"""Fault injection of the in-memory network: partitions and loss."""

from __future__ import annotations

import pytest
import trio
from p2p_helpers import (
    Harness,
    connected,
    raft_up,
    send_until_accepted,
    wait_raft_mesh,
    wait_until,
)

from node.p2p.transport import PeerUnreachableError

TEST_TIMEOUT_S = 10


async def test_a_partition_cuts_links_and_healing_restores_them(nursery: trio.Nursery) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        harness = Harness("memory", nursery)
        first, second, third = await harness.cluster(3)
        await wait_raft_mesh([first, second, third])
        harness.network.partition([first.peer_id, second.peer_id], [third.peer_id])
        assert not connected(first, third.peer_id) and not raft_up(third, second.peer_id)
        assert raft_up(first, second.peer_id)
        assert not await first.transport.send_frame(third.peer_id, b"across")
        with pytest.raises(PeerUnreachableError):
            await third.transport.request(first.peer_id, b"anyone?", timeout_s=1)
        harness.network.heal()
        await wait_raft_mesh([first, second, third])
        await send_until_accepted(first, third.peer_id, b"healed")
        await wait_until(lambda: third.frames_from(first.peer_id) == [b"healed"])


async def test_lossy_links_drop_frames_but_keep_order(nursery: trio.Nursery) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        harness = Harness("memory", nursery)
        harness.network.loss_rate = 0.3
        first, second = await harness.cluster(2)
        await wait_raft_mesh([first, second])
        sent = [b"%04d" % sequence for sequence in range(300)]
        for frame in sent:
            await send_until_accepted(first, second.peer_id, frame)
        await send_until_accepted(first, second.peer_id, b"9999")
        # Delivery runs in other tasks: wait until nothing more arrives for a while (a
        # starved machine took longer than a fixed 0.1 s).
        count = -1
        while count != len(second.frames_from(first.peer_id)):
            count = len(second.frames_from(first.peer_id))
            await trio.sleep(0.3)
        received = second.frames_from(first.peer_id)
        assert 100 < len(received) < 280, "about 30% lost"
        assert received == sorted(received), "no reordering"
