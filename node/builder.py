"""The block builder (leader only): cut blocks from the mempool and propose them.

A block is cut as soon as the leader is idle (no proposal of its own in flight) and txs
are pending. While proposals are in flight, a block is cut when the mempool holds a
block's worth of txs or the block interval has passed since the last block; once the last
of them applies, the leader is idle again. So batches shrink under light load (latency)
and grow under heavy load (throughput), as TigerBeetle's do. Up to
``block.max_inflight`` proposals are pipelined, each built on the previous proposal's
head. A proposal whose raft entry is applied as something else (a lost leadership, a
stale proposal) returns its txs, and those of every proposal pipelined on it, to the
pool; the next block builds on the real head.

Every block from height 2 carries its predecessor's quorum certificate
(ledger/certificate.py), so a block is cut only once a majority of validators applied and
voted for the one it builds on (node/certify.py wakes the builder): in effect one
proposal in flight at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from consensus.state import Role
from ledger.certificate import Certificate
from ledger.crypto import SigningKey
from node.chain import Chain
from node.clock import Clock, SystemClock
from node.config import BlockSection
from node.events import Applied
from node.mempool import Mempool
from node.raft_driver import RaftDriver

# Room left in a block's byte budget for the header and the encoding's framing.
BLOCK_OVERHEAD_BYTES = 4096


@dataclass(slots=True)
class Proposal:
    height: int
    block_hash: bytes
    timestamp_ms: int
    tx_ids: list[bytes]
    term: int


class Builder:
    def __init__(self, *, chain: Chain, mempool: Mempool, key: SigningKey,
                 config: BlockSection, log: Any, metrics: Any,
                 driver: Callable[[], RaftDriver | None],
                 certificate: Callable[[int, bytes], Certificate | None],
                 clock: Clock | None = None) -> None:
        self._chain = chain
        self._mempool = mempool
        self._key = key
        self._config = config
        self._log = log
        self._metrics = metrics
        self._driver = driver
        self._certificate = certificate
        self._clock: Clock = clock or SystemClock()
        self._proposals: dict[int, Proposal] = {}  # raft index -> our block there
        self._proposed_head: tuple[int, bytes, int] | None = None
        self._proposed_state_height = 0  # the state height the proposed head names
        self._proposed_next_set = b""  # the validator set the proposed head hands over to
        self._wakeup = trio.Event()
        self.blocks_proposed = 0
        self.proposals_lost = 0

    def wake(self) -> None:
        self._wakeup.set()

    def statistics(self) -> dict[str, int]:
        return {"blocks_proposed": self.blocks_proposed, "proposals_lost": self.proposals_lost,
                "proposals_in_flight": len(self._proposals)}

    def on_applied(self, event: Applied) -> None:
        if event.raft_index is not None:
            self._resolve(event)
        self._wakeup.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        interval_seconds = self._config.interval_ms / 1000
        clock = self._clock
        last_block = clock.monotonic()
        wait_seconds = interval_seconds
        task_status.started()
        while True:
            with trio.move_on_after(wait_seconds):
                await self._wakeup.wait()
            wait_seconds = interval_seconds
            self._wakeup = trio.Event()
            if not self._may_build():
                continue
            pending = self._mempool.pending_count()
            if pending == 0:
                last_block = clock.monotonic()
                continue
            # Idle (nothing proposed in flight): cut at once, so a light load's txs wait
            # for no timer. Busy: wait for a full block or the interval (an applied
            # proposal wakes us to look again), so batches grow with the load.
            waited = clock.monotonic() - last_block
            if (self._proposals and pending < self._config.max_txs
                    and waited < interval_seconds):
                wait_seconds = interval_seconds - waited
                continue
            self._build_and_propose()
            last_block = clock.monotonic()

    def _resolve(self, event: Applied) -> None:
        assert event.raft_index is not None
        proposal = self._proposals.pop(event.raft_index, None)
        if proposal is None:
            return
        if event.applied is not None and event.applied.block.hash == proposal.block_hash:
            return
        # Our block at this index was not applied: it and everything pipelined on it
        # return to the pool, and the next block builds on the real head.
        released = self._mempool.release_inflight(proposal.tx_ids)
        for later in list(self._proposals.values()):
            released += self._mempool.release_inflight(later.tx_ids)
        self._proposals.clear()
        self._proposed_head = None
        self.proposals_lost += 1
        self._log.info("proposal not applied; txs back in the pool", index=event.raft_index,
                       released=released)

    def _may_build(self) -> bool:
        driver = self._driver()
        if driver is None or driver.role is not Role.LEADER:
            return False
        if self._chain.applied_index() < driver.term_start_index:
            return False  # entries of earlier terms are still being applied
        self._forget_earlier_terms(driver.raw_node.status().hard_state.term)
        if len(self._proposals) >= self._config.max_inflight:
            return False
        height, head_hash, _ = self._proposed_head or self._chain.head()
        return height == 0 or self._certificate(height, head_hash) is not None

    def _forget_earlier_terms(self, term: int) -> None:
        """Proposals of an earlier term of ours that are still unresolved once this term's
        first entry is applied were cut from the log when we lost leadership (what the
        log held then is applied by now): their txs go back to the pool. Kept, the next
        block would wait for a certificate of a block that will never exist."""
        stale = [index for index, proposal in self._proposals.items() if proposal.term != term]
        if not stale:
            return
        released = 0
        for proposal in self._proposals.values():
            released += self._mempool.release_inflight(proposal.tx_ids)
        self._proposals.clear()
        self._proposed_head = None
        self.proposals_lost += len(stale)
        self._log.info("proposals of an earlier term were cut from the log; txs back in the "
                       "pool", proposals=len(stale), released=released)

    def _build_and_propose(self) -> None:
        driver = self._driver()
        assert driver is not None
        started = time.perf_counter()
        if self._proposed_head is None:
            self._proposed_head = self._chain.head()
            self._proposed_state_height = self._chain.named_state_height()
            self._proposed_next_set = self._chain.head_validator_sets()[1]
        height, previous_hash, previous_timestamp = self._proposed_head
        certificate = None if height == 0 else self._certificate(height, previous_hash)
        if height > 0 and certificate is None:
            return
        txs = self._mempool.select(txs_max=self._config.max_txs,
                                   bytes_max=self._config.max_bytes - BLOCK_OVERHEAD_BYTES,
                                   now=self._clock.monotonic())
        if not txs:
            return
        status = driver.raw_node.status()
        raft_index = status.last_index + 1
        block = self._chain.build_block(
            self._key, txs, height=height + 1, previous_hash=previous_hash,
            previous_timestamp_ms=previous_timestamp, now_ms=self._clock.wall_ms(),
            raft_term=status.hard_state.term, raft_index=raft_index,
            previous_state_height=self._proposed_state_height,
            validators_hash=self._proposed_next_set, certificate=certificate,
        )
        tx_ids = [tx.tx_id for tx in txs]
        outcome = driver.propose(block.encode())
        if self._metrics is not None:
            self._metrics.observe_stage("block_build", time.perf_counter() - started)
        if outcome.value != "appended":
            self._mempool.release_inflight(tx_ids)
            self._log.info("block proposal dropped", reason=outcome.value)
            return
        assert driver.raw_node.status().last_index == raft_index, "proposal index moved"
        self._proposals[raft_index] = Proposal(
            block.header.height, block.hash, block.header.timestamp_ms, tx_ids,
            status.hard_state.term)
        self._proposed_head = (block.header.height, block.hash, block.header.timestamp_ms)
        self._proposed_state_height = block.header.state_height
        self._proposed_next_set = block.header.next_validators_hash
        self.blocks_proposed += 1
