"""Behaviour every Transport must have, run against the libp2p transport (real hosts on
127.0.0.1, port 0) and the in-memory one alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio
from p2p_helpers import (
    KINDS,
    Harness,
    Node,
    connected,
    gossip_recorder,
    ordered_indexes,
    peer,
    raft_up,
    seed,
    send_until_accepted,
    wait_raft_mesh,
    wait_until,
)

from node.p2p.limits import GOSSIP_MESSAGE_BYTES_MAX, RAFT_FRAME_BYTES_MAX
from node.p2p.memory import MemoryNetwork, MemoryTransport
from node.p2p.transport import (
    MessageTooLargeError,
    PeerUnreachableError,
    RequestFailedError,
    RequestRefusedError,
    Transport,
)

TOPIC = "medledger/test/txs"
TEST_TIMEOUT_S = 30


@pytest.fixture(params=KINDS)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with trio.open_nursery() as nursery:
        yield Harness(request.param, nursery)
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------------------ raft


async def test_raft_frames_flow_both_ways_in_order_among_three(harness: Harness) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        nodes = await harness.cluster(3, open_for_observers=False)
        await wait_raft_mesh(nodes)
        count = 50
        for sequence in range(count):
            for sender in nodes:
                for receiver in nodes:
                    if sender is not receiver:
                        frame = b"%d>%d:%d" % (sender.index, receiver.index, sequence)
                        await send_until_accepted(sender, receiver.peer_id, frame)
        for receiver in nodes:
            for sender in nodes:
                if sender is receiver:
                    continue
                expected = [b"%d>%d:%d" % (sender.index, receiver.index, sequence)
                            for sequence in range(count)]
                await wait_until(partial(_frames_are, receiver, sender.peer_id, expected),
                                 what=f"frames {sender.index}->{receiver.index} in order")


def _frames_are(receiver: Node, sender: str, expected: list[bytes]) -> bool:
    return receiver.frames_from(sender) == expected


async def test_a_non_validator_cannot_get_a_raft_frame_accepted(harness: Harness) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        # The outsider believes it is a validator; the validator does not list it.
        validator = await harness.start(0, validators={peer(0)})
        outsider = await harness.start(1, validators={peer(0), peer(1)},
                                       bootstrap=validator.addresses)
        await wait_until(lambda: connected(validator, outsider.peer_id), what="connection")
        for _ in range(20):
            assert not await outsider.transport.send_frame(validator.peer_id, b"vote for me")
            await trio.sleep(0.02)
        assert validator.frames == []
        assert not raft_up(validator, outsider.peer_id)


async def test_an_observer_never_sends_raft_frames(harness: Harness) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        validators = {peer(0), peer(1)}
        first = await harness.start(0, validators=validators)
        observer = await harness.start(2, validators=validators, bootstrap=first.addresses)
        await wait_until(lambda: connected(first, observer.peer_id), what="observer connected")
        assert not await observer.transport.send_frame(first.peer_id, b"frame")
        assert all(not state.raft_stream for state in observer.transport.peers())
        assert first.frames == []


async def test_removing_a_validator_closes_its_raft_stream(harness: Harness) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        nodes = await harness.cluster(2, open_for_observers=False)
        await wait_raft_mesh(nodes)
        first, second = nodes
        first.transport.set_validators({first.peer_id})
        await wait_until(lambda: not raft_up(second, first.peer_id), what="raft stream down")
        await wait_until(lambda: not connected(first, second.peer_id),
                         what="a closed node disconnecting a removed validator")
        assert not await second.transport.send_frame(first.peer_id, b"late")
        assert not await first.transport.send_frame(second.peer_id, b"late")
        first.transport.set_validators({first.peer_id, second.peer_id})
        await wait_raft_mesh(nodes)


async def test_oversized_frames_are_refused_loudly(harness: Harness) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        nodes = await harness.cluster(2)
        with pytest.raises(MessageTooLargeError):
            await nodes[0].transport.send_frame(nodes[1].peer_id, bytes(RAFT_FRAME_BYTES_MAX + 1))
        with pytest.raises(MessageTooLargeError):
            await nodes[0].transport.publish(TOPIC, bytes(GOSSIP_MESSAGE_BYTES_MAX + 1))


# ------------------------------------------------------------------------------ restart


@pytest.mark.parametrize("same_port", [True, False], ids=["same-port", "new-port"])
async def test_a_restarted_peer_is_redialed_and_frames_flow_again(
    harness: Harness, same_port: bool
) -> None:
    if harness.kind == "memory" and not same_port:
        pytest.skip("the memory network has no ports")
    with trio.fail_after(TEST_TIMEOUT_S):
        opener_index, acceptor_index = ordered_indexes(2)
        validators = {peer(opener_index), peer(acceptor_index)}
        # Only the acceptor knows the opener's address at first.
        opener = await harness.start(opener_index, validators=validators)
        acceptor = await harness.start(acceptor_index, validators=validators,
                                       bootstrap=opener.addresses)
        await wait_raft_mesh([opener, acceptor])
        acceptor = await _restart(harness, acceptor, opener, validators, same_port)
        opener = await _restart(harness, opener, acceptor, validators, same_port)


async def _restart(harness: Harness, restarted: Node, other: Node, validators: set[str],
                   same_port: bool) -> Node:
    """Stop ``restarted``, start it again (same key; same or new port; it knows
    ``other``'s address) and check frames flow both ways."""
    listen = "/ip4/127.0.0.1/tcp/0"
    if same_port and harness.kind == "libp2p":
        listen = "/".join(restarted.addresses[0].split("/")[:5])
    await harness.stop(restarted)
    await wait_until(lambda: not connected(other, restarted.peer_id), what="the stop noticed")
    again = await harness.start(restarted.index, validators=validators,
                                bootstrap=other.addresses, listen=listen)
    await wait_raft_mesh([again, other], timeout_s=15)
    await send_until_accepted(other, again.peer_id, b"after restart")
    await send_until_accepted(again, other.peer_id, b"back again")
    await wait_until(lambda: b"after restart" in again.frames_from(other.peer_id),
                     what="frame to the restarted peer")
    await wait_until(lambda: b"back again" in other.frames_from(again.peer_id),
                     what="frame from the restarted peer")
    return again


# ------------------------------------------------------------------------------ gossip


async def test_gossip_reaches_every_subscriber(harness: Harness) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        nodes = await harness.cluster(3)
        logs: dict[int, list[tuple[str, bytes]]] = {node.index: [] for node in nodes}
        for node in nodes:
            node.transport.on_gossip(TOPIC, gossip_recorder(logs[node.index]))
        await wait_until(lambda: all(len(node.transport.gossip_mesh_peers(TOPIC)) == 2
                                     for node in nodes), what="gossip mesh")
        for node in nodes:
            await node.transport.publish(TOPIC, b"hello from %d" % node.index)
        for node in nodes:
            expected = {(other.peer_id, b"hello from %d" % other.index)
                        for other in nodes if other is not node}
            await wait_until(partial(_gossip_is, logs[node.index], expected),
                             what=f"gossip at node {node.index}")
        assert all(len(log) == 2 for log in logs.values()), "each message handled once"


def _gossip_is(log: list[tuple[str, bytes]], expected: set[tuple[str, bytes]]) -> bool:
    return set(log) == expected


async def test_a_rejecting_validator_stops_a_message(harness: Harness) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        # A line: left - middle - right. Only the middle can carry left's messages.
        middle = await harness.start(0)
        left = await harness.start(1, bootstrap=middle.addresses)
        right = await harness.start(2, bootstrap=middle.addresses)
        middle_log: list[tuple[str, bytes]] = []
        right_log: list[tuple[str, bytes]] = []
        middle.transport.on_gossip(TOPIC, gossip_recorder(
            middle_log, accept=lambda data: not data.startswith(b"bad")))
        right.transport.on_gossip(TOPIC, gossip_recorder(right_log))
        left.transport.on_gossip(TOPIC, gossip_recorder([]))
        await wait_until(lambda: middle.transport.gossip_mesh_peers(TOPIC)
                         == {left.peer_id, right.peer_id}
                         and left.transport.gossip_mesh_peers(TOPIC) == {middle.peer_id},
                         what="line mesh")
        await left.transport.publish(TOPIC, b"bad message")
        await left.transport.publish(TOPIC, b"good message")
        await wait_until(lambda: (left.peer_id, b"good message") in right_log,
                         what="the good message crossing the middle")
        await trio.sleep(0.2)
        assert (left.peer_id, b"bad message") in middle_log, "the middle's handler saw it"
        assert [data for _, data in right_log] == [b"good message"]


# ------------------------------------------------------------------------------ sync


async def test_requests_are_served_to_validators_and_refused_to_strangers_when_closed(
    harness: Harness,
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        validators = {peer(0), peer(1)}
        server = await harness.start(0, validators=validators, open_for_observers=False)
        client = await harness.start(1, validators=validators, bootstrap=server.addresses)
        stranger = await harness.start(2, validators=validators, bootstrap=server.addresses)

        async def serve(peer_id: str, data: bytes) -> bytes:
            if data == b"fail":
                raise RequestFailedError("asked to fail")
            return peer_id.encode() + b" asked " + data

        server.transport.on_request(serve)
        await wait_until(lambda: connected(client, server.peer_id), what="client connected")
        answer = await client.transport.request(server.peer_id, b"head?", timeout_s=5)
        assert answer == client.peer_id.encode() + b" asked head?"
        with pytest.raises(RequestFailedError, match="asked to fail"):
            await client.transport.request(server.peer_id, b"fail", timeout_s=5)
        with pytest.raises((PeerUnreachableError, RequestRefusedError)):
            await stranger.transport.request(server.peer_id, b"head?", timeout_s=5)
        gossip: list[tuple[str, bytes]] = []
        server.transport.on_gossip(TOPIC, gossip_recorder(gossip))
        stranger.transport.on_gossip(TOPIC, gossip_recorder([]))
        await stranger.transport.publish(TOPIC, b"let me in")
        await trio.sleep(0.3)
        assert gossip == []
        assert not connected(server, stranger.peer_id)


async def test_requests_are_served_to_observers_when_open(harness: Harness) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        validators = {peer(0)}
        server = await harness.start(0, validators=validators, open_for_observers=True)
        observer = await harness.start(2, validators=validators, bootstrap=server.addresses)

        async def serve(peer_id: str, data: bytes) -> bytes:
            return data[::-1]

        server.transport.on_request(serve)
        await wait_until(lambda: connected(observer, server.peer_id), what="observer connected")
        assert await observer.transport.request(server.peer_id, b"abc", timeout_s=5) == b"cba"
        big = bytes(range(256)) * 4096  # 1 MiB: several yamux windows
        assert await observer.transport.request(server.peer_id, big, timeout_s=10) == big[::-1]


def test_both_transports_implement_the_protocol() -> None:
    """mypy checks the assignments below against the Transport Protocol."""
    from node.p2p.host import Libp2pTransport

    real: Transport = Libp2pTransport(seed=seed(0))
    simulated: Transport = MemoryTransport(MemoryNetwork(), seed=seed(0))
    assert real.peer_id == simulated.peer_id == peer(0)
    assert real.listen_addresses == simulated.listen_addresses == ()
