"""The measured round against a fake node (a trio-websocket server on 127.0.0.1, port 0)
that speaks just enough JSON-RPC: commits after a delay, refuses marked txs, can drop
the connection mid-round. Checks the runner's bookkeeping: latency, refusals, the
in-flight bound, a worker that loses its node."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio
import trio_websocket

from node.loadtest.pool import worker_pool
from node.loadtest.rate import FixedRate, MaximumRate
from node.loadtest.runner import Round, RoundOutcome, RoundPlan

COMMIT_DELAY_SECONDS = 0.05


@dataclass
class FakeNode:
    refuse: set[str] = field(default_factory=set)  # tx ids answered MEMPOOL_FULL
    invalid: set[str] = field(default_factory=set)  # tx ids committed as NONCE_STALE
    drop_after_batches: int | None = None
    hold_commits: bool = False  # never commit (a stalled node)
    overflow_after_batches: int | None = None  # then close the subscription (-32005)
    subscribed: bool = False
    committed: dict[str, int] = field(default_factory=dict)
    close_after_seconds: float | None = None  # then hang up, whatever is going on
    batches: int = 0
    outstanding: int = 0
    outstanding_max: int = 0

    async def handler(self, request: trio_websocket.WebSocketRequest) -> None:
        connection = await request.accept()
        async with trio.open_nursery() as nursery:
            if self.close_after_seconds is not None:
                nursery.start_soon(self.close_later, connection)
            try:
                while True:
                    message = json.loads(await connection.get_message())
                    calls = message if isinstance(message, list) else [message]
                    answers = [self.answer(call, connection, nursery) for call in calls]
                    await connection.send_message(json.dumps(
                        answers if isinstance(message, list) else answers[0]))
                    if self.drop_after_batches is not None and (
                            self.batches >= self.drop_after_batches):
                        await connection.aclose(code=1001, reason="server shutting down")
                        return
            except trio_websocket.ConnectionClosed:
                pass
            finally:
                nursery.cancel_scope.cancel()

    def answer(self, call: dict[str, Any], connection: Any, nursery: trio.Nursery) -> Any:
        method, params = call["method"], call.get("params", {})
        if method == "chain_subscribe":
            self.subscribed = True
            return {"jsonrpc": "2.0", "id": call["id"], "result": "0x00000000000000aa"}
        if method == "tx_status":
            code = self.committed.get(params["tx_id"])
            state = "pending" if code is None else "committed"
            return {"jsonrpc": "2.0", "id": call["id"],
                    "result": {"tx_id": params["tx_id"], "state": state, "code": code,
                               "code_name": None if code is None else "OK"}}
        if method == "chain_addTxFilter":
            return {"jsonrpc": "2.0", "id": call["id"], "result": {"outstanding": 0}}
        assert method == "tx_submitBatch", method
        self.batches += 1
        results, committed = [], []
        for raw in params["raws"]:
            tx_id = "0x" + hashlib.sha256(bytes.fromhex(raw[2:])).hexdigest()
            accepted = tx_id not in self.refuse
            results.append({"tx_id": tx_id, "accepted": accepted, "code": 0 if accepted else 9,
                            "reason": "OK" if accepted else "MEMPOOL_FULL", "message": ""})
            if accepted:
                committed.append(tx_id)
        self.outstanding += len(committed)
        self.outstanding_max = max(self.outstanding_max, self.outstanding)
        nursery.start_soon(self.commit_later, connection, committed)
        if self.batches == self.overflow_after_batches:
            nursery.start_soon(self.overflow, connection)
        return {"jsonrpc": "2.0", "id": call["id"], "result": results}

    async def overflow(self, connection: Any) -> None:
        """Like the node when its buffer for us fills: an error, no more notifications
        until we subscribe again; meanwhile txs commit unannounced."""
        self.subscribed = False
        error = {"jsonrpc": "2.0", "method": "chain_subscription", "params": {
            "subscription": "0x00000000000000aa",
            "error": {"code": -32005, "message": "Subscriber too slow"}}}
        await trio.sleep(COMMIT_DELAY_SECONDS / 2)
        await connection.send_message(json.dumps(error))

    async def close_later(self, connection: Any) -> None:
        assert self.close_after_seconds is not None
        await trio.sleep(self.close_after_seconds)
        await connection.aclose(code=1001, reason="server shutting down")

    async def commit_later(self, connection: Any, tx_ids: list[str]) -> None:
        if self.hold_commits:
            return
        await trio.sleep(COMMIT_DELAY_SECONDS)
        self.outstanding -= len(tx_ids)
        for tx_id in tx_ids:
            self.committed[tx_id] = 5 if tx_id in self.invalid else 0
        if not self.subscribed:
            return
        result = [{"tx_id": tx_id, "height": 7, "position": index,
                   "code": 5 if tx_id in self.invalid else 0,
                   "code_name": "NONCE_STALE" if tx_id in self.invalid else "OK"}
                  for index, tx_id in enumerate(tx_ids)]
        notification = {"jsonrpc": "2.0", "method": "chain_subscription",
                        "params": {"subscription": "0x00000000000000aa", "result": result}}
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            await connection.send_message(json.dumps(notification))


# The types the fake pools say their txs are (the fake node does not read them).
POOL_TX_TYPES = ("ANCHOR_RECORD", "ANCHOR_RECORD", "ACCESS_LOG")


def pools(workers: int, size: int) -> list[Any]:
    return [worker_pool([os.urandom(120) for _ in range(size)],
                        [POOL_TX_TYPES[index % len(POOL_TX_TYPES)] for index in range(size)])
            for _ in range(workers)]


async def run_round(node: FakeNode, plan_pools: list[Any], controller: Any,
                    **overrides: Any) -> RoundOutcome:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, node.handler, "127.0.0.1",
                                     0, None)
        url = f"ws://127.0.0.1:{server.port}/ws"
        settings: dict[str, Any] = dict(
            urls=tuple([url] * len(plan_pools)), pools=tuple(plan_pools),
            warmup_controllers=tuple([controller] * len(plan_pools)),
            controllers=tuple([controller] * len(plan_pools)), warmup_seconds=0.2,
            duration_seconds=1.0, measured_txs_per_worker=0, batch_txs_max=25,
            batch_interval_seconds=0.01, drain_timeout_seconds=2.0, call_timeout_seconds=5.0,
        )
        settings.update(overrides)
        round_ = Round(RoundPlan(**settings))
        with trio.fail_after(20):
            await nursery.start(round_.run)
            await round_.finished.wait()
        nursery.cancel_scope.cancel()
    return round_.outcome()


async def test_fixed_rate_round_measures_commit_latency() -> None:
    outcome = await run_round(FakeNode(), pools(2, 500), FixedRate(100.0, 1000))
    measured = outcome.measured
    assert 180 <= measured.submitted <= 202  # 2 workers x 100 tx/s x 1 s
    assert measured.committed == measured.submitted
    assert measured.failed == measured.timed_out == 0
    assert outcome.warmup.submitted >= 30
    latencies = [commit.latency_seconds for commit in outcome.measured_commits]
    assert min(latencies) >= COMMIT_DELAY_SECONDS * 0.9
    assert outcome.committed_ids == outcome.submitted_ids


async def test_refused_and_invalid_txs_are_counted_by_reason() -> None:
    plan_pools = pools(1, 400)
    node = FakeNode(refuse=set(plan_pools[0].ids[100:110]),
                    invalid=set(plan_pools[0].ids[120:125]))
    outcome = await run_round(node, plan_pools, FixedRate(200.0, 1000), warmup_seconds=0.0,
                              duration_seconds=1.0)
    measured = outcome.measured
    assert measured.rejected == {"MEMPOOL_FULL": 10}
    assert measured.invalid == {"NONCE_STALE": 5}
    assert measured.committed == measured.submitted - 15
    assert len(outcome.measured_commits) == measured.submitted - 10


async def test_maximum_rate_keeps_the_in_flight_bound() -> None:
    node = FakeNode()
    outcome = await run_round(node, pools(2, 3000), MaximumRate(40, 1000.0))
    assert node.outstanding_max <= 80
    assert outcome.measured.submitted > 200  # ~40 per 50 ms per worker
    assert outcome.measured.committed == outcome.measured.submitted


async def test_a_worker_that_loses_its_node_stops_and_counts_failed() -> None:
    node = FakeNode(drop_after_batches=30)
    outcome = await run_round(node, pools(1, 2000), FixedRate(100.0, 1000))
    assert outcome.stopped_workers and "closed" in outcome.stopped_workers[0]
    counts = outcome.measured
    assert counts.failed + outcome.warmup.failed > 0
    assert counts.submitted == counts.committed + counts.failed


async def test_a_node_lost_while_draining_fails_its_txs_at_once() -> None:
    node = FakeNode(hold_commits=True, close_after_seconds=1.5)
    started = trio.current_time()
    outcome = await run_round(node, pools(1, 500), FixedRate(50.0, 1000),
                              drain_timeout_seconds=10.0)
    assert trio.current_time() - started < 5.0  # not the 10 s drain timeout
    assert outcome.measured.timed_out == 0
    assert outcome.measured.failed == outcome.measured.submitted > 0


async def test_a_closed_subscription_is_renewed_and_the_gap_recovered() -> None:
    node = FakeNode(overflow_after_batches=40)
    outcome = await run_round(node, pools(1, 2000), FixedRate(200.0, 1000))
    counts = outcome.measured
    assert outcome.subscription_overflows == 1
    assert counts.timed_out == counts.failed == 0
    assert counts.committed == counts.submitted
    assert counts.committed_without_latency > 0
    assert len(outcome.measured_commits) == counts.submitted - counts.committed_without_latency
    assert outcome.committed_ids == outcome.submitted_ids


async def test_txs_are_counted_by_type_as_submitted_and_as_committed() -> None:
    plan_pools = pools(1, 400)
    access_logs = [tx_id for tx_id, tx_type in zip(plan_pools[0].ids, plan_pools[0].tx_types,
                                                   strict=True) if tx_type == "ACCESS_LOG"]
    node = FakeNode(refuse=set(access_logs[40:45]), invalid=set(access_logs[50:52]))
    outcome = await run_round(node, plan_pools, FixedRate(200.0, 1000), warmup_seconds=0.0,
                              duration_seconds=1.0)
    measured = outcome.measured
    submitted = measured.submitted
    # The pool is submitted in order: its first `submitted` txs, by their types.
    assert measured.submitted_by_type == Counter(plan_pools[0].tx_types[:submitted])
    assert sum(measured.submitted_by_type.values()) == submitted
    assert measured.committed_by_type["ANCHOR_RECORD"] == measured.submitted_by_type[
        "ANCHOR_RECORD"]
    assert measured.committed_by_type["ACCESS_LOG"] == measured.submitted_by_type[
        "ACCESS_LOG"] - 7  # 5 refused, 2 committed invalid
    assert sum(measured.committed_by_type.values()) == measured.committed
