"""Admission: how txs get into this node's mempool, and out to the other nodes' ones.

A client's batch (RPC ``tx_submit``/``tx_submitBatch``) or a peer's forward is checked
(stateless: envelope, signature, size) and admitted in arrival order (the admission lock
is FIFO, so a client pipelining one signer's txs in several batches never sees a later
nonce admitted first), then gossiped by one task in admission order. Txs that arrive by
gossip are admitted *held* (see node.mempool): their owner forwards them. The
:class:`Forwarder` sends this node's own txs to the leader.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import trio

from ledger.errors import DecodeError
from ledger.evaluation import tx_seen_key
from ledger.results import ResultCode
from ledger.tx import Transaction, tx_id_of
from ledger.validation import check_batch
from node.api import SubmitResult
from node.chain import Chain
from node.clock import Clock, SystemClock
from node.events import Applied
from node.mempool import Mempool
from node.p2p import wire
from node.p2p.transport import Transport, publish_quietly

# Admitted batches waiting to be gossiped (each up to a tx_submitBatch's worth).
GOSSIP_QUEUE_BATCHES_MAX = 256
# How long tx gossip waits to gather more admitted txs into one message. Tx gossip is off
# the commit path (a tx's owner forwards it to the leader; peers only hold the gossiped
# copy, which saves them its signature check at apply), and py-libp2p spends ~2 ms of
# each side's event loop per message: at 100 tx/s, 20 ms windows sent ~1-2 txs per
# message and gossip took a third of a follower's event loop.
GOSSIP_COALESCE_SECONDS = 0.1
# Smaller batches are checked on the event loop: a thread hop costs more than they do.
CHECK_INLINE_TXS_MAX = 15


class Admission:
    def __init__(self, *, chain: Chain, mempool: Mempool, chain_id: str, log: Any,
                 metrics: Any, gossip_txs: bool, executor: Executor | None,
                 check_workers: int, clock: Clock | None = None) -> None:
        self._chain = chain
        self.mempool = mempool
        self._chain_id = chain_id
        self._log = log
        self._metrics = metrics
        self._gossip_enabled = gossip_txs
        self._executor = executor
        self._check_workers = check_workers
        self._clock: Clock = clock or SystemClock()
        self._transport: Transport | None = None
        # Told when txs were admitted (the builder and the forwarder wake up).
        self.on_admitted: list[Callable[[], None]] = []
        self._lock = trio.Lock()  # FIFO: admission in arrival order
        self._gossip_send, self._gossip_receive = trio.open_memory_channel[list[bytes]](
            GOSSIP_QUEUE_BATCHES_MAX)
        self._submitted_at: dict[bytes, float] = {}
        self.gossip_batches_dropped = 0

    def attach(self, transport: Transport) -> None:
        self._transport = transport
        transport.on_gossip(wire.topic_txs(self._chain_id), self.on_tx_gossip)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Publish admitted txs in admission order, coalescing what a short wait gathers:
        py-libp2p's gossipsub costs about as much per message as per kilobyte, and
        clients at a steady rate submit many small batches."""
        task_status.started()
        async for raws in self._gossip_receive:
            batch = list(raws)
            await trio.sleep(GOSSIP_COALESCE_SECONDS)
            while True:
                try:
                    batch.extend(self._gossip_receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._gossip(batch)

    def statistics(self) -> dict[str, int]:
        return {"mempool_txs": len(self.mempool), "awaiting_commit": len(self._submitted_at),
                "gossip_batches_dropped": self.gossip_batches_dropped}

    # ------------------------------------------------------------------ txs in

    async def submit(self, raws: Sequence[bytes]) -> list[SubmitResult]:
        started = time.perf_counter()
        # The same bytes are the same tx: one already pending is not checked again (a tx
        # forwarded to the leader that gossip delivered first, a client's retry).
        tx_ids = [tx_id_of(raw) for raw in raws]
        async with self._lock:
            # Txs here already (from gossip, held) are not checked again; _admit releases
            # them in this batch's order, once the fresh ones are checked. They are taken
            # now: a held tx may expire from the pool while the fresh ones are checked,
            # and is then admitted again, not answered as committed and dropped (a later
            # nonce of its signer in this batch would then commit first).
            results: list[Any] = [_KnownTx(self.mempool.get(tx_id)) for tx_id in tx_ids]
            fresh = [index for index, known in enumerate(results) if known.tx is None]
            checked = await self._check([raws[index] for index in fresh])
            if self._metrics is not None:
                self._metrics.observe_stage("validation", time.perf_counter() - started)
            for index, result in zip(fresh, checked, strict=True):
                results[index] = result
            admitted = time.perf_counter()
            answers, accepted = self._admit(results)
            if accepted and self._gossip_enabled:
                try:
                    self._gossip_send.send_nowait([tx.raw for tx in accepted])
                except trio.WouldBlock:
                    # Gossip lags far behind: these txs still reach the leader by
                    # forwarding; only other followers' mempools miss them.
                    self.gossip_batches_dropped += 1
                    self._log.info("tx gossip queue full; batch not gossiped",
                                   txs=len(accepted))
        if self._metrics is not None:
            self._metrics.observe_stage("mempool", time.perf_counter() - admitted)
        if accepted:
            now = self._clock.monotonic()
            for tx in accepted:
                self._submitted_at[tx.tx_id] = now
            self._notify_admitted()
        return answers

    async def serve_forward(self, request: wire.Request) -> bytes:
        """A peer's FORWARD_TXS request: admitted like a client's batch."""
        answers = await self.submit(request.txs)
        return wire.ForwardResult(
            tuple(int(answer.code) for answer in answers),
            tuple(answer.message[:wire.FORWARD_MESSAGE_CHARS_MAX] for answer in answers),
        ).encode()

    async def on_tx_gossip(self, peer_id: str, data: bytes) -> bool:
        try:
            batch = wire.decode_message(wire.TxBatch, data)
        except DecodeError:
            return False
        state = self._chain.state
        async with self._lock:
            # Pending here already, or committed while the gossip was on its way (light
            # load commits within the coalescing window): no signature check for those.
            fresh = [raw for raw in batch.txs if (tx_id := tx_id_of(raw)) not in self.mempool
                     and state.get(tx_seen_key(tx_id)) is None]
            if fresh:  # held: their owner forwards them to the leader, in order
                self._admit(await self._check(fresh), held_since=self._clock.monotonic())
                self._notify_admitted()
        return True

    def on_applied(self, event: Applied) -> None:
        if event.applied is None:
            return
        self.mempool.remove_committed(event.tx_ids)
        now = self._clock.monotonic()
        for tx_id in event.tx_ids:
            submitted = self._submitted_at.pop(tx_id, None)
            if submitted is not None and self._metrics is not None:
                self._metrics.observe_commit_latency(now - submitted)

    # ------------------------------------------------------------------ internals

    def _notify_admitted(self) -> None:
        for wake in self.on_admitted:
            wake()

    async def _check(self, raws: Sequence[bytes]) -> list[Any]:
        if len(raws) <= CHECK_INLINE_TXS_MAX:
            return check_batch(raws, self._chain_id)
        return await trio.to_thread.run_sync(
            lambda: check_batch(raws, self._chain_id, executor=self._executor,
                                workers=self._check_workers)
        )

    def _admit(self, results: Sequence[Any], *, held_since: float | None = None,
               ) -> tuple[list[SubmitResult], list[Transaction]]:
        state = self._chain.state
        answers: list[SubmitResult] = []
        accepted: list[Transaction] = []
        for result in results:
            tx = result.tx
            if tx is None:
                answers.append(SubmitResult(None, result.code, result.message))
                self._rejected(result.code)
                continue
            if state.get(tx_seen_key(tx.tx_id)) is not None:
                answers.append(SubmitResult(tx.tx_id, ResultCode.DUPLICATE, "already committed"))
                continue
            code = self.mempool.add(tx, held_since=held_since)
            if code is ResultCode.OK:
                accepted.append(tx)
                answers.append(SubmitResult(tx.tx_id, ResultCode.OK))
            elif code is ResultCode.DUPLICATE:
                answers.append(SubmitResult(tx.tx_id, ResultCode.OK, "already pending"))
            else:
                answers.append(SubmitResult(tx.tx_id, code, "mempool is full; retry later"))
                self._rejected(code)
        if self._metrics is not None:
            self._metrics.set_mempool(len(self.mempool), self.mempool.size_bytes)
        return answers, accepted

    def _rejected(self, code: ResultCode) -> None:
        if self._metrics is not None:
            self._metrics.tx_rejected(code.name.lower())

    async def _gossip(self, raws: list[bytes]) -> None:
        batch: list[bytes] = []
        size = 0
        for raw in raws:
            if batch and (size + len(raw) > wire.GOSSIP_BYTES_MAX
                          or len(batch) >= wire.FORWARD_TXS_MAX):
                await self._publish(wire.TxBatch(tuple(batch)).encode())
                batch, size = [], 0
            batch.append(raw)
            size += len(raw) + 4
        if batch:
            await self._publish(wire.TxBatch(tuple(batch)).encode())

    async def _publish(self, data: bytes) -> None:
        assert self._transport is not None
        await publish_quietly(self._transport, wire.topic_txs(self._chain_id), data, self._log)


class _KnownTx:
    """Stands for the check result of a tx that was in the mempool (checked before)."""

    __slots__ = ("code", "message", "tx")

    def __init__(self, tx: Transaction | None) -> None:
        self.tx = tx
        self.code = ResultCode.OK
        self.message = ""
