"""The node's services on their own, without a network: admission on a manual clock, and
the applied events reaching their listeners in order."""

from __future__ import annotations

from typing import Any

import structlog
import trio
from factories import CHAIN_ID, signed

from ledger.crypto import SigningKey
from ledger.results import ResultCode
from node.admission import Admission
from node.chain import AppliedBlock
from node.clock import ManualClock
from node.events import Applied, AppliedEvents
from node.mempool import Mempool


class NoChain:
    """A chain on which nothing is committed yet."""

    class state:  # noqa: N801 (stands for the Chain's attribute)
        @staticmethod
        def get(key: bytes) -> None:
            return None


class LatencyMetrics:
    def __init__(self) -> None:
        self.latencies: list[float] = []

    def observe_stage(self, stage: str, seconds: float) -> None:
        pass

    def set_mempool(self, txs: int, size_bytes: int) -> None:
        pass

    def tx_rejected(self, reason: str) -> None:
        pass

    def observe_commit_latency(self, seconds: float) -> None:
        self.latencies.append(seconds)


class QuietLog:
    def info(self, event: str, **fields: Any) -> None:
        pass


def test_admission_times_commits_on_its_clock() -> None:
    clock = ManualClock(monotonic=100.0)
    metrics = LatencyMetrics()
    mempool = Mempool(txs_max=10, bytes_max=100_000)
    admission = Admission(chain=NoChain(), mempool=mempool,  # type: ignore[arg-type]
                          chain_id=CHAIN_ID, log=QuietLog(), metrics=metrics,
                          gossip_txs=False, executor=None, check_workers=1, clock=clock)
    woken: list[str] = []
    admission.on_admitted.append(lambda: woken.append("builder"))
    tx = signed(key=SigningKey(bytes([9]) * 32), nonce=1)

    answers = trio.run(admission.submit, [tx.raw])
    assert [answer.accepted for answer in answers] == [True] and woken == ["builder"]
    assert tx.tx_id in mempool
    clock.advance(2.5)
    block: Any = type("B", (), {})()
    admission.on_applied(Applied(AppliedBlock(block, [tx.tx_id], [0], (), ()), raft_index=7))
    assert tx.tx_id not in mempool
    assert metrics.latencies == [2.5]


def test_applied_events_reach_every_listener_in_subscription_order() -> None:
    events = AppliedEvents()
    seen: list[tuple[str, int | None]] = []
    events.subscribe(lambda event: seen.append(("first", event.raft_index)))
    events.subscribe(lambda event: seen.append(("second", event.raft_index)))
    events.publish(Applied(None, raft_index=3, skipped_reason="no-op"))
    events.publish(Applied(None, raft_index=None))
    assert seen == [("first", 3), ("second", 3), ("first", None), ("second", None)]


class CheckDuringExpiry(Admission):
    """The builder runs while a forward's fresh txs are checked (in a worker thread, in
    the node): here it expires the held txs at that moment, deterministically."""

    def __init__(self, clock: ManualClock, **kwargs: Any) -> None:
        super().__init__(clock=clock, **kwargs)
        self._manual_clock = clock

    async def _check(self, raws: Any) -> list[Any]:
        self._manual_clock.advance(self.mempool.hold_s)
        self.mempool.expire_held(self._manual_clock.monotonic())
        return await super()._check(raws)


def test_a_held_tx_that_expires_while_its_forward_is_checked_is_admitted_again() -> None:
    """The chaos testnet's seed 5 at c9aabe2: the leader held (from gossip) the owner's
    tx of nonce 1; the owner's forward brought nonce 1 and later nonces; nonce 1 expired
    from the pool while the later ones were checked, was answered 'already committed' and
    dropped, and the later nonces committed first (nonce 1 came 3 s later: NONCE_STALE)."""
    clock = ManualClock(monotonic=100.0)
    mempool = Mempool(txs_max=100, bytes_max=1_000_000)
    admission = CheckDuringExpiry(clock, chain=NoChain(), mempool=mempool,
                                  chain_id=CHAIN_ID, log=QuietLog(), metrics=None,
                                  gossip_txs=False, executor=None, check_workers=1)
    key = SigningKey(bytes([5]) * 32)
    txs = [signed(key=key, nonce=nonce) for nonce in range(1, 5)]
    assert mempool.add(txs[0], held_since=clock.monotonic()) is ResultCode.OK

    answers = trio.run(admission.submit, [tx.raw for tx in txs])

    assert [(answer.code, answer.message) for answer in answers] == [(ResultCode.OK, "")] * 4
    assert [tx.nonce for tx in mempool.forwardable(clock.monotonic())] == [1, 2, 3, 4]
    chosen = mempool.select(txs_max=10, bytes_max=1_000_000, now=clock.monotonic())
    assert [tx.nonce for tx in chosen] == [1, 2, 3, 4]


def test_an_unreachable_peer_costs_one_info_line_a_minute_not_one_per_dial() -> None:
    from node.logs import get_logger
    from node.p2p.connectivity import DialLog

    with structlog.testing.capture_logs() as logs:
        dials = DialLog(get_logger())
        for _ in range(12):  # a minute of 5 s backoffs
            dials.failed(OSError("refused"))
        dials.connected()
        lines = [(entry["log_level"], entry["event"]) for entry in logs]
        assert [line for line in lines if line[0] == "info"] == [
            ("info", "dial failed"), ("info", "peer connected")]
        assert logs[-1]["after_failed_dials"] == 12
        assert lines.count(("debug", "dial failed")) == 11
        dials.failed(OSError("refused"))  # a new outage is reported again at once
        assert (logs[-1]["log_level"], logs[-1]["event"]) == ("info", "dial failed")
