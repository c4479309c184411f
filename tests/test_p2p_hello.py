"""The chain handshake on real libp2p hosts (127.0.0.1, port 0): peers on our chain are
greeted and get raft streams; a peer on another genesis is refused with one ERROR line
naming both chains, dropped, not admitted again for a while, and never counted as a
connected peer (so an observer on the wrong chain is not ready)."""

from __future__ import annotations

import hashlib
from typing import Any

import trio
from p2p_helpers import FAST_TIMINGS, peer, raft_up, seed, wait_until

from node.p2p.hello import FOREIGN_REFUSAL_S, Hello
from node.p2p.host import Libp2pTransport

CHAIN = "medledger-hello"
GENESIS_A = hashlib.sha256(b"genesis a").digest()
GENESIS_B = hashlib.sha256(b"genesis b").digest()
TEST_TIMEOUT_S = 30


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def bind(self, **fields: Any) -> RecordingLog:
        return self

    def _record(self, level: str, event: str, **fields: Any) -> None:
        self.lines.append((level, event, fields))

    def debug(self, event: str, **fields: Any) -> None:
        self._record("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._record("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._record("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._record("error", event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._record("error", event, **fields)

    def errors(self) -> list[tuple[str, dict[str, Any]]]:
        return [(event, fields) for level, event, fields in self.lines if level == "error"]


async def start(nursery: trio.Nursery, index: int, genesis: bytes, *, validators: set[str],
                bootstrap: tuple[str, ...] = ()) -> tuple[Libp2pTransport, RecordingLog,
                                                         tuple[str, ...]]:
    log = RecordingLog()
    transport = Libp2pTransport(seed=seed(index), bootstrap=bootstrap, validators=validators,
                                timings=FAST_TIMINGS, log=log, hello=Hello(CHAIN, genesis))
    addresses = await nursery.start(transport.run)
    return transport, log, addresses


def connected(transport: Libp2pTransport, peer_id: str) -> bool:
    return any(state.peer_id == peer_id and state.connected for state in transport.peers())


async def test_validators_on_one_chain_greet_each_other_and_open_raft(
        nursery: trio.Nursery) -> None:
    validators = {peer(0), peer(1)}
    with trio.fail_after(TEST_TIMEOUT_S):
        first, first_log, addresses = await start(nursery, 0, GENESIS_A, validators=validators)
        second, second_log, _ = await start(nursery, 1, GENESIS_A, validators=validators,
                                            bootstrap=addresses)
        await wait_until(lambda: second.greeted(peer(0)) and first.greeted(peer(1)),
                         what="both greeted")
        await wait_until(lambda: connected(first, peer(1)) and connected(second, peer(0)),
                         what="connected")
        node: Any = type("N", (), {"transport": first})()
        await wait_until(lambda: raft_up(node, peer(1)), what="raft stream")
    assert first_log.errors() == [] and second_log.errors() == []
    nursery.cancel_scope.cancel()


async def test_a_peer_on_another_genesis_is_refused_with_one_error_naming_both(
        nursery: trio.Nursery) -> None:
    validators = {peer(0), peer(1)}
    with trio.fail_after(TEST_TIMEOUT_S):
        ours, our_log, addresses = await start(nursery, 0, GENESIS_A, validators=validators)
        theirs, their_log, _ = await start(nursery, 1, GENESIS_B, validators=validators,
                                           bootstrap=addresses)
        await wait_until(lambda: our_log.errors() and their_log.errors(),
                         what="an ERROR line on both sides")
        # The keepers redial with backoff meanwhile: every attempt is refused at Noise.
        await trio.sleep(2.0)
        assert not ours.admitted(peer(1)) and not theirs.admitted(peer(0))
        assert not connected(ours, peer(1)) and not connected(theirs, peer(0))
        assert not ours.greeted(peer(1)) and not theirs.greeted(peer(0))
    for log, own, other in ((our_log, GENESIS_A, GENESIS_B), (their_log, GENESIS_B, GENESIS_A)):
        errors = log.errors()
        assert len(errors) == 1, errors  # one line per refusal period, not one per redial
        event, fields = errors[0]
        assert event == "peer is on another chain: refused"
        assert fields["ours"] == {"chain_id": CHAIN, "genesis_hash": own.hex()}
        assert fields["theirs"] == {"chain_id": CHAIN, "genesis_hash": other.hex()}
        assert fields["refused_for_s"] == FOREIGN_REFUSAL_S
    node: Any = type("N", (), {"transport": ours})()
    assert not raft_up(node, peer(1))
    nursery.cancel_scope.cancel()
