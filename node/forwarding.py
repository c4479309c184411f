"""Forwarding: this node's own txs (not the held ones) to the leader, in arrival order.

Validators send to their raft leader; observers to the validator that proposed the
newest block (most likely the leader), or else to any validator they are connected to,
which forwards them on in the same order. Everything goes again, at once and in order,
when the target changes (txs forwarded to the old target may be lost with it; waiting
out the re-forward delay let newer txs, forwarded at once, reach the new leader first,
and the older ones then committed as NONCE_STALE), and again if still pending after
REFORWARD_AFTER_SECONDS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import trio

from consensus.state import Role
from ledger.errors import MedledgerError
from ledger.results import ResultCode
from node.clock import Clock, SystemClock
from node.events import Applied
from node.membership import Membership
from node.mempool import Mempool
from node.p2p import wire
from node.p2p.transport import Transport
from node.raft_driver import RaftDriver

# Txs still pending this long after their forward are sent again (a forward may be lost).
REFORWARD_AFTER_SECONDS = 3.0
# How long the leader has to answer one forward request.
FORWARD_TIMEOUT_S = 5.0


class Forwarder:
    def __init__(self, *, mempool: Mempool, membership: Membership, log: Any,
                 driver: Callable[[], RaftDriver | None], clock: Clock | None = None) -> None:
        self._mempool = mempool
        self._membership = membership
        self._log = log
        self._driver = driver
        self._clock: Clock = clock or SystemClock()
        self._transport: Transport | None = None
        self._wakeup = trio.Event()
        self._target: str | None = None
        self._forwarded_at: dict[bytes, float] = {}
        self._last_proposer: bytes | None = None  # of the newest block applied
        self.requests = 0
        self.failures = 0

    def attach(self, transport: Transport) -> None:
        self._transport = transport

    def wake(self) -> None:
        self._wakeup.set()

    def on_applied(self, event: Applied) -> None:
        if event.applied is None:
            return
        self._last_proposer = event.applied.block.header.proposer
        for tx_id in event.tx_ids:
            self._forwarded_at.pop(tx_id, None)

    def statistics(self) -> dict[str, int]:
        return {"requests": self.requests, "failures": self.failures,
                "awaiting_commit": len(self._forwarded_at)}

    def target(self) -> str | None:
        """The peer to forward to now: None on the leader, or when none is known."""
        driver = self._driver()
        membership = self._membership
        if driver is not None and membership.is_validator:
            if driver.role is Role.LEADER or not driver.leader:
                return None
            return membership.peer_of_raft(driver.leader)
        assert self._transport is not None
        connected = {state.peer_id for state in self._transport.peers() if state.connected}
        proposer = membership.validators.get(self._last_proposer or b"")
        if proposer is not None and proposer[1] in connected:
            return proposer[1]
        return min((peer for peer in membership.validator_peers() if peer in connected),
                   default=None)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(REFORWARD_AFTER_SECONDS / 3):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            target = self.target()
            if target != self._target:
                self._target = target
                self._forwarded_at.clear()
            if target is not None:
                await self._forward_due(target)

    async def _forward_due(self, target: str) -> None:
        now = self._clock.monotonic()
        pending = self._mempool.forwardable(now)
        # From the oldest tx that is due on, everything: a tx is never sent ahead of an
        # older one that needs sending again (the leader would commit it first, and the
        # older one would then be NONCE_STALE). Duplicates cost the leader little.
        first_due = next((index for index, tx in enumerate(pending) if now - (
            self._forwarded_at.get(tx.tx_id, -math.inf)) >= REFORWARD_AFTER_SECONDS), None)
        if first_due is None:
            return
        due = pending[first_due:first_due + wire.FORWARD_TXS_MAX]
        for tx in due:
            self._forwarded_at[tx.tx_id] = now
        request = wire.Request(wire.RequestKind.FORWARD_TXS, 0, 0, tuple(tx.raw for tx in due))
        assert self._transport is not None
        self.requests += 1
        try:
            answer = await self._transport.request(target, request.encode(),
                                                   timeout_s=FORWARD_TIMEOUT_S)
            codes = wire.decode_message(wire.ForwardResult, answer).codes
            refused = [tx for tx, code in zip(due, codes, strict=False)
                       if code not in (ResultCode.OK, ResultCode.DUPLICATE)]
        except (MedledgerError, OSError, trio.TooSlowError) as error:
            self.failures += 1
            self._log.info("forward to leader failed", error=str(error))
            refused = due
        for tx in refused:  # due again at once (a full mempool there, say)
            self._forwarded_at.pop(tx.tx_id, None)
        if len(due) == wire.FORWARD_TXS_MAX:
            self._wakeup.set()
