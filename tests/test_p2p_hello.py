"""The chain handshake on real libp2p hosts (127.0.0.1, port 0): peers on our chain are
greeted and get raft streams; a peer on another genesis is refused with one ERROR line
naming both chains, dropped, not admitted again for a while, and never counted as a
connected peer (so an observer on the wrong chain is not ready)."""

from __future__ import annotations

import hashlib
from typing import Any

import structlog
import trio
from p2p_helpers import FAST_TIMINGS, peer, seed, wait_until

from ledger.app.layout import STATE_LAYOUT_VERSION
from node.p2p.hello import FOREIGN_REFUSAL_S, Hello
from node.p2p.host import Libp2pTransport

CHAIN = "medledger-hello"
GENESIS_A = hashlib.sha256(b"genesis a").digest()
GENESIS_B = hashlib.sha256(b"genesis b").digest()
TEST_TIMEOUT_S = 30


async def start(nursery: trio.Nursery, index: int, genesis: bytes, *, validators: set[str],
                bootstrap: tuple[str, ...] = (), layout: int = STATE_LAYOUT_VERSION,
                ) -> tuple[Libp2pTransport, tuple[str, ...]]:
    transport = Libp2pTransport(seed=seed(index), bootstrap=bootstrap, validators=validators,
                                timings=FAST_TIMINGS, hello=Hello(CHAIN, genesis, layout))
    addresses = await nursery.start(transport.run)
    return transport, addresses


def errors_of(logs: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    """The ERROR lines the node ``node`` wrote (its log lines carry its peer id)."""
    return [entry for entry in logs if entry["log_level"] == "error" and entry["node"] == node]


def connected(transport: Libp2pTransport, peer_id: str) -> bool:
    return any(state.peer_id == peer_id and state.connected for state in transport.peers())


async def test_validators_on_one_chain_greet_each_other_and_open_raft(
        nursery: trio.Nursery) -> None:
    validators = {peer(0), peer(1)}
    with trio.fail_after(TEST_TIMEOUT_S), structlog.testing.capture_logs() as logs:
        first, addresses = await start(nursery, 0, GENESIS_A, validators=validators)
        second, _ = await start(nursery, 1, GENESIS_A, validators=validators,
                                bootstrap=addresses)
        await wait_until(lambda: second.greeted(peer(0)) and first.greeted(peer(1)),
                         what="both greeted")
        await wait_until(lambda: connected(first, peer(1)) and connected(second, peer(0)),
                         what="connected")
        await wait_until(lambda: any(state.peer_id == peer(1) and state.raft_stream
                                     for state in first.peers()), what="raft stream")
    assert errors_of(logs, peer(0)) == [] and errors_of(logs, peer(1)) == []
    nursery.cancel_scope.cancel()


async def test_a_peer_on_another_genesis_is_refused_with_one_error_naming_both(
        nursery: trio.Nursery) -> None:
    validators = {peer(0), peer(1)}
    with trio.fail_after(TEST_TIMEOUT_S), structlog.testing.capture_logs() as logs:
        ours, addresses = await start(nursery, 0, GENESIS_A, validators=validators)
        theirs, _ = await start(nursery, 1, GENESIS_B, validators=validators,
                                bootstrap=addresses)
        await wait_until(lambda: errors_of(logs, peer(0)) and errors_of(logs, peer(1)),
                         what="an ERROR line on both sides")
        # The keepers redial with backoff meanwhile: every attempt is refused at Noise.
        await trio.sleep(2.0)
        assert not ours.admitted(peer(1)) and not theirs.admitted(peer(0))
        assert not connected(ours, peer(1)) and not connected(theirs, peer(0))
        assert not ours.greeted(peer(1)) and not theirs.greeted(peer(0))
        assert not any(state.raft_stream for state in ours.peers())
    for node, own, other in ((peer(0), GENESIS_A, GENESIS_B), (peer(1), GENESIS_B, GENESIS_A)):
        errors = errors_of(logs, node)
        assert len(errors) == 1, errors  # one line per refusal period, not one per redial
        (error,) = errors
        assert error["event"] == "peer is on another chain: refused"
        assert error["ours"] == {"chain_id": CHAIN, "genesis_hash": own.hex(),
                                 "state_layout": STATE_LAYOUT_VERSION}
        assert error["theirs"] == {"chain_id": CHAIN, "genesis_hash": other.hex(),
                                   "state_layout": STATE_LAYOUT_VERSION}
        assert error["refused_for_s"] == FOREIGN_REFUSAL_S
    nursery.cancel_scope.cancel()


async def test_a_peer_applying_another_state_layout_is_refused_with_one_error(
        nursery: trio.Nursery) -> None:
    """A node of another medledger version would compute other state roots and reject
    every block: it is refused at hello, by name, not left to fork on the roots."""
    validators = {peer(0), peer(1)}
    older = STATE_LAYOUT_VERSION - 1
    with trio.fail_after(TEST_TIMEOUT_S), structlog.testing.capture_logs() as logs:
        ours, addresses = await start(nursery, 0, GENESIS_A, validators=validators)
        theirs, _ = await start(nursery, 1, GENESIS_A, validators=validators,
                                bootstrap=addresses, layout=older)
        await wait_until(lambda: errors_of(logs, peer(0)) and errors_of(logs, peer(1)),
                         what="an ERROR line on both sides")
        await trio.sleep(1.0)
        assert not ours.greeted(peer(1)) and not theirs.greeted(peer(0))
        assert not any(state.raft_stream for state in ours.peers())
    (error,) = errors_of(logs, peer(0))
    assert error["event"].startswith("peer applies another state layout")
    assert (error["ours"]["state_layout"], error["theirs"]["state_layout"]) == (
        STATE_LAYOUT_VERSION, older)
    nursery.cancel_scope.cancel()
