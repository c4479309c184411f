"""The node's services on their own, without a network: admission on a manual clock, and
the applied events reaching their listeners in order."""

from __future__ import annotations

from typing import Any

import trio
from factories import CHAIN_ID, signed

from ledger.crypto import SigningKey
from node.admission import Admission
from node.chain import AppliedBlock
from node.clock import ManualClock
from node.events import Applied, AppliedEvents
from node.mempool import Mempool


class NoChain:
    """A chain on which nothing is committed yet."""

    class blocks:  # noqa: N801 (stands for the Chain's attribute)
        @staticmethod
        def transaction(tx_id: bytes) -> None:
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
