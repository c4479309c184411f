"""The measured round: workers submit pre-signed txs under a rate controller and a
tracker timestamps their commits from txResults notifications.

Timeline (monotonic clock)::

    start ── warm-up ── measured_start ── measured round ── submit_end ── drain ── done

Each worker has its own WebSocket to its target node: it subscribes to txResults with an
empty tx id filter, then sends each batch as one JSON-RPC batch message
``[chain_addTxFilter(ids), tx_submitBatch(raws)]``; the node handles a connection's
messages in order, so the ids are watched before the txs can commit. A tx's latency is
from the moment its batch was sent to the moment its notification was read.

Warm-up txs are tracked like the others (so the node's pipeline is full when the measured
round starts) but only the measured round's txs count in the statistics.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from node.loadtest.client import (
    RpcCallError,
    RpcConnectionError,
    RpcTimeoutError,
    WebSocketRpc,
    open_rpc,
    result_of,
)
from node.loadtest.pool import WorkerPool, watch_and_submit_text
from node.loadtest.rate import RateController
from node.loadtest.stats import CommitRecord

TOPIC_TX_RESULTS = "txResults"
NOTIFICATION_METHOD = "chain_subscription"
# Errors of failed submit calls kept verbatim for the report (the count has them all).
ERROR_SAMPLES_MAX = 20
# tx_status calls per JSON-RPC batch message (the node's BATCH_CALLS_MAX is 100).
STATUS_CALLS_PER_MESSAGE = 100
@dataclass(frozen=True, slots=True)
class RoundPlan:
    urls: tuple[str, ...]  # one per worker
    pools: tuple[WorkerPool, ...]
    warmup_controllers: tuple[RateController, ...]
    controllers: tuple[RateController, ...]
    warmup_seconds: float
    duration_seconds: float  # math.inf: until the tx count
    measured_txs_per_worker: int  # 0: no count limit
    batch_txs_max: int
    batch_interval_seconds: float
    drain_timeout_seconds: float
    call_timeout_seconds: float


@dataclass(slots=True)
class Sent:
    submitted_at: float
    worker: int
    measured: bool
    tx_type: str


@dataclass(slots=True)
class WorkerState:
    index: int
    url: str
    pool: WorkerPool
    cursor: int = 0
    submitted_warmup: int = 0
    submitted_measured: int = 0
    in_flight: int = 0
    subscription: str = ""
    subscription_lost: bool = False
    wakeup: trio.Event = field(default_factory=trio.Event)
    pool_exhausted_at: float | None = None
    stopped_reason: str = ""


@dataclass(slots=True)
class PhaseCounts:
    submitted: int = 0
    committed: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    timed_out: int = 0
    # Committed while our subscription was down: found by tx_status, latency unknown.
    committed_without_latency: int = 0
    # By tx type: what was sent, and what committed valid.
    submitted_by_type: Counter[str] = field(default_factory=Counter)
    committed_by_type: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class RoundOutcome:
    """Everything the round observed (times in seconds since ``start``)."""

    start: float
    measured_start_seconds: float
    submit_end_seconds: float
    done_seconds: float
    measured_submit_seconds: list[float]
    measured_commits: list[CommitRecord]
    measured: PhaseCounts
    warmup: PhaseCounts
    submitted_ids: set[str]
    committed_ids: set[str]
    measured_ids: set[str]
    highest_height: int
    subscription_overflows: int
    unknown_notifications: int
    error_samples: list[str]
    pool_exhausted: bool
    stopped_workers: list[str]


# (measured?, its controller, seconds into the phase, txs submitted in the phase)
Phase = tuple[bool, RateController, float, int]


class Tracker:
    """Outstanding txs and their commits; notifications of every worker land here."""

    def __init__(self, workers: Sequence[WorkerState], clock: Callable[[], float]) -> None:
        self.workers = list(workers)
        self.clock = clock
        self.start = 0.0
        self.measured_start = math.inf
        self.pending: dict[str, Sent] = {}
        self.commits: list[CommitRecord] = []
        self.measured = PhaseCounts()
        self.warmup = PhaseCounts()
        self.submitted_ids: set[str] = set()
        self.committed_ids: set[str] = set()
        self.measured_ids: set[str] = set()
        self.measured_submit_seconds: list[float] = []
        self.highest_height = 0
        self.subscription_overflows = 0
        self.unknown_notifications = 0
        self.error_samples: list[str] = []

    def phase(self, measured: bool) -> PhaseCounts:
        return self.measured if measured else self.warmup

    def on_notification(self, message: dict[str, Any], received_at: float) -> None:
        if message.get("method") != NOTIFICATION_METHOD:
            return
        params = message.get("params") or {}
        if "error" in params:
            self._subscription_closed(str(params.get("subscription")), params["error"])
            return
        result = params.get("result")
        for item in result if isinstance(result, list) else [result]:
            if isinstance(item, dict):
                self._committed(item, received_at)

    def _committed(self, item: dict[str, Any], received_at: float) -> None:
        tx_id = item["tx_id"]
        sent = self.pending.pop(tx_id, None)
        if sent is None:
            self.unknown_notifications += 1
            return
        worker = self.workers[sent.worker]
        worker.in_flight -= 1
        worker.wakeup.set()
        self.committed_ids.add(tx_id)
        self.highest_height = max(self.highest_height, int(item.get("height", 0)))
        code_name = "OK" if item.get("code") == 0 else str(item.get("code_name"))
        counts = self.phase(sent.measured)
        if code_name == "OK":
            counts.committed += 1
            counts.committed_by_type[sent.tx_type] += 1
        else:
            counts.invalid[code_name] += 1
        if sent.measured:
            self.commits.append(CommitRecord(sent.submitted_at - self.measured_start,
                                             received_at - self.measured_start, code_name,
                                             sent.tx_type))

    def recovered(self, tx_id: str, status: dict[str, Any]) -> None:
        """A tx found committed by tx_status after our subscription was lost."""
        sent = self.pending.pop(tx_id, None)
        if sent is None:
            return
        worker = self.workers[sent.worker]
        worker.in_flight -= 1
        worker.wakeup.set()
        self.committed_ids.add(tx_id)
        counts = self.phase(sent.measured)
        if status.get("code") == 0:
            counts.committed += 1
            counts.committed_without_latency += 1
            counts.committed_by_type[sent.tx_type] += 1
        else:
            counts.invalid[str(status.get("code_name"))] += 1

    def _subscription_closed(self, subscription: str, error: Any) -> None:
        self.subscription_overflows += 1
        self.note_error(f"subscription {subscription} closed by the node: {error}")
        for worker in self.workers:
            if worker.subscription == subscription:
                worker.subscription_lost = True
                worker.wakeup.set()

    def note_error(self, text: str) -> None:
        if len(self.error_samples) < ERROR_SAMPLES_MAX:
            self.error_samples.append(text)

    def sent(self, worker: WorkerState, ids: Sequence[str], tx_types: Sequence[str],
             measured: bool, at: float) -> None:
        counts = self.phase(measured)
        for tx_id, tx_type in zip(ids, tx_types, strict=True):
            self.pending[tx_id] = Sent(at, worker.index, measured, tx_type)
            counts.submitted_by_type[tx_type] += 1
        self.submitted_ids.update(ids)
        worker.in_flight += len(ids)
        counts.submitted += len(ids)
        if measured:
            self.measured_ids.update(ids)
            self.measured_submit_seconds.extend([at - self.measured_start] * len(ids))

    def not_pending(self, worker: WorkerState, tx_id: str) -> bool:
        """Forget a tx that will not commit (refused, or its call failed)."""
        if self.pending.pop(tx_id, None) is None:
            return False
        worker.in_flight -= 1
        return True

    def outstanding_of(self, worker: WorkerState) -> list[str]:
        return [tx_id for tx_id, sent in self.pending.items() if sent.worker == worker.index]


class Round:
    def __init__(self, plan: RoundPlan, *, clock: Callable[[], float] = time.monotonic) -> None:
        assert len(plan.urls) == len(plan.pools) == len(plan.controllers)
        self.plan = plan
        self.clock = clock
        self.workers = [WorkerState(index, url, pool)
                        for index, (url, pool) in enumerate(zip(plan.urls, plan.pools,
                                                                strict=True))]
        self.tracker = Tracker(self.workers, clock)
        self.connected = 0
        self.all_connected = trio.Event()
        self.started = trio.Event()
        self.finished = trio.Event()
        self.submit_end = math.inf
        self.submitting = len(self.workers)
        self.drain_deadline = math.inf

    # ---- the schedule ----

    @property
    def warmup_end(self) -> float:
        return self.tracker.start + self.plan.warmup_seconds

    @property
    def measured_end(self) -> float:
        return self.warmup_end + self.plan.duration_seconds

    def _phase(self, worker: WorkerState, now: float) -> Phase | None:
        """(measured?, controller, seconds into the phase, submitted in the phase), or None
        once this worker's part of the round is over."""
        if now < self.warmup_end:
            return (False, self.plan.warmup_controllers[worker.index], now - self.tracker.start,
                    worker.submitted_warmup)
        quota = self.plan.measured_txs_per_worker
        if now >= self.measured_end or (quota and worker.submitted_measured >= quota):
            return None
        return (True, self.plan.controllers[worker.index], now - self.warmup_end,
                worker.submitted_measured)

    # ---- running ----

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> RoundOutcome:
        async with trio.open_nursery() as nursery:
            for worker in self.workers:
                nursery.start_soon(self._worker, worker)
            await self.all_connected.wait()
            self.tracker.start = self.clock()
            self.tracker.measured_start = self.warmup_end
            self.started.set()
            task_status.started(self)
        self.finished.set()
        return self.outcome()

    async def _worker(self, worker: WorkerState) -> None:
        try:
            async with open_rpc(worker.url, self.tracker.on_notification) as rpc:
                worker.subscription = await self._subscribe(rpc, [])
                self.connected += 1
                if self.connected == len(self.workers):
                    self.all_connected.set()
                await self.started.wait()
                try:
                    await self._submit_loop(rpc, worker)
                finally:
                    self._stopped_submitting()
                await self._drain(rpc, worker)
        except* (RpcConnectionError, RpcCallError, RpcTimeoutError) as group:
            # The node went away (or broke our subscription) mid-round: this worker stops,
            # its outstanding txs count as failed, the others carry on.
            if not self.all_connected.is_set():
                raise
            self._worker_lost(worker, group.exceptions[0])

    def _worker_lost(self, worker: WorkerState, error: BaseException) -> None:
        worker.stopped_reason = str(error)
        self.tracker.note_error(f"worker {worker.index} ({worker.url}) stopped: {error}")
        for tx_id in self.tracker.outstanding_of(worker):
            if self.tracker.not_pending(worker, tx_id):
                self.tracker.phase(tx_id in self.tracker.measured_ids).failed += 1
        worker.wakeup.set()

    def _stopped_submitting(self) -> None:
        self.submitting -= 1
        if self.submitting == 0:
            self.submit_end = self.clock()
            self.drain_deadline = self.submit_end + self.plan.drain_timeout_seconds

    async def _subscribe(self, rpc: WebSocketRpc, tx_ids: list[str]) -> str:
        return str(await rpc.call(
            "chain_subscribe", {"topic": TOPIC_TX_RESULTS, "tx_ids": tx_ids, "batch": True},
            timeout_seconds=self.plan.call_timeout_seconds,
        ))

    async def _submit_loop(self, rpc: WebSocketRpc, worker: WorkerState) -> None:
        while True:
            now = self.clock()
            phase = self._phase(worker, now)
            if phase is None:
                return
            if worker.cursor >= len(worker.pool):
                worker.pool_exhausted_at = now
                return
            if worker.subscription_lost:
                await self._resubscribe(rpc, worker)
            measured, controller, elapsed, submitted = phase
            count = min(controller.allowance(elapsed, submitted, worker.in_flight),
                        self.plan.batch_txs_max, len(worker.pool) - worker.cursor)
            if measured and self.plan.measured_txs_per_worker:
                count = min(count, self.plan.measured_txs_per_worker - submitted)
            if count <= 0:
                await self._wait(worker, self.plan.batch_interval_seconds)
                continue
            await self._submit(rpc, worker, count, measured)

    async def _resubscribe(self, rpc: WebSocketRpc, worker: WorkerState) -> None:
        """The node closed our subscription (its buffer for us overflowed): subscribe
        again, watching our outstanding txs, then ask which of them committed meanwhile
        (counted committed; their latency is unknown, so they are not in the
        percentiles)."""
        worker.subscription_lost = False
        outstanding = self.tracker.outstanding_of(worker)
        worker.subscription = await self._subscribe(rpc, outstanding)
        for start in range(0, len(outstanding), STATUS_CALLS_PER_MESSAGE):
            chunk = outstanding[start:start + STATUS_CALLS_PER_MESSAGE]
            ids = [rpc.new_id() for _ in chunk]
            text = json.dumps([
                {"jsonrpc": "2.0", "id": request_id, "method": "tx_status",
                 "params": {"tx_id": tx_id}} for request_id, tx_id in zip(ids, chunk,
                                                                            strict=True)
            ])
            responses = await rpc.send(ids, text,
                                       timeout_seconds=self.plan.call_timeout_seconds)
            for tx_id, response in zip(chunk, responses, strict=True):
                status = result_of("tx_status", response)
                if status.get("state") == "committed":
                    self.tracker.recovered(tx_id, status)

    async def _wait(self, worker: WorkerState, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await worker.wakeup.wait()
        worker.wakeup = trio.Event()

    async def _submit(self, rpc: WebSocketRpc, worker: WorkerState, count: int,
                      measured: bool) -> None:
        pool, start = worker.pool, worker.cursor
        ids = pool.ids[start:start + count]
        filter_id, submit_id = rpc.new_id(), rpc.new_id()
        text = watch_and_submit_text(filter_id, submit_id, worker.subscription,
                                     pool.quoted_ids[start:start + count],
                                     pool.quoted_raws[start:start + count])
        worker.cursor += count
        if measured:
            worker.submitted_measured += count
        else:
            worker.submitted_warmup += count
        self.tracker.sent(worker, ids, pool.tx_types[start:start + count], measured,
                          self.clock())
        try:
            watched, submitted = await rpc.send([filter_id, submit_id], text,
                                                timeout_seconds=self.plan.call_timeout_seconds)
            result_of("chain_addTxFilter", watched)
            results = result_of("tx_submitBatch", submitted)
        except (RpcCallError, RpcTimeoutError) as error:
            self._batch_failed(worker, ids, measured, error)
            return
        except RpcConnectionError as error:
            self._batch_failed(worker, ids, measured, error)
            raise
        self._refused(worker, ids, results, measured)

    def _batch_failed(self, worker: WorkerState, ids: Sequence[str], measured: bool,
                      error: Exception) -> None:
        failed = sum(self.tracker.not_pending(worker, tx_id) for tx_id in ids)
        self.tracker.phase(measured).failed += failed
        self.tracker.note_error(f"worker {worker.index}: submit of {len(ids)} failed: {error}")

    def _refused(self, worker: WorkerState, ids: Sequence[str], results: list[dict[str, Any]],
                 measured: bool) -> None:
        assert len(results) == len(ids), "tx_submitBatch answers once per tx"
        counts = self.tracker.phase(measured)
        for tx_id, result in zip(ids, results, strict=True):
            if not result.get("accepted") and self.tracker.not_pending(worker, tx_id):
                counts.rejected[str(result.get("reason"))] += 1

    async def _drain(self, rpc: WebSocketRpc, worker: WorkerState) -> None:
        """Keep the connection (its notifications) until our txs are committed or the
        drain deadline passes; what is left then timed out (failed, if the node went
        away: nobody will tell us about them)."""
        while worker.in_flight > 0:
            if rpc.closed is not None:
                self._worker_lost(worker, RpcConnectionError(rpc.closed))
                return
            if worker.subscription_lost:
                await self._resubscribe(rpc, worker)
                continue
            remaining = self.drain_deadline - self.clock()
            if remaining <= 0:
                break
            await self._wait(worker, min(remaining, 1.0))
        for tx_id in self.tracker.outstanding_of(worker):
            if self.tracker.not_pending(worker, tx_id):
                self.tracker.phase(tx_id in self.tracker.measured_ids).timed_out += 1

    def outcome(self) -> RoundOutcome:
        tracker, start = self.tracker, self.tracker.start
        submit_end = self.submit_end if math.isfinite(self.submit_end) else self.clock()
        return RoundOutcome(
            start=start,
            measured_start_seconds=self.warmup_end - start,
            submit_end_seconds=submit_end - start,
            done_seconds=self.clock() - start,
            measured_submit_seconds=sorted(tracker.measured_submit_seconds),
            measured_commits=tracker.commits,
            measured=tracker.measured,
            warmup=tracker.warmup,
            submitted_ids=tracker.submitted_ids,
            committed_ids=tracker.committed_ids,
            measured_ids=tracker.measured_ids,
            highest_height=tracker.highest_height,
            subscription_overflows=tracker.subscription_overflows,
            unknown_notifications=tracker.unknown_notifications,
            error_samples=tracker.error_samples,
            pool_exhausted=any(w.pool_exhausted_at is not None for w in self.workers),
            stopped_workers=[f"{w.index}: {w.stopped_reason}" for w in self.workers
                             if w.stopped_reason],
        )
