"""The mempool: checked transactions waiting for a block.

Bounded in count and bytes, deduplicated by tx id, ordered by arrival. Transactions the
leader put into a proposed block are *in flight*: they stay here (so a lost proposal loses
nothing) but are not proposed again until :meth:`Mempool.release_inflight` returns them,
and they leave only when a committed block carrying them is applied.

Plain synchronous data structure: the node's tasks call it from the Trio thread only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.results import ResultCode
from ledger.tx import Transaction


@dataclass(frozen=True, slots=True)
class MempoolStatistics:
    txs: int
    bytes: int
    inflight_txs: int
    max_txs: int
    max_bytes: int


class Mempool:
    def __init__(self, *, max_txs: int, max_bytes: int) -> None:
        assert max_txs > 0 and max_bytes > 0
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        # tx id -> tx; dict order is arrival order.
        self._txs: dict[bytes, Transaction] = {}
        self._inflight: set[bytes] = set()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._txs

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def statistics(self) -> MempoolStatistics:
        return MempoolStatistics(
            len(self._txs), self._bytes, len(self._inflight), self.max_txs, self.max_bytes
        )

    def add(self, tx: Transaction) -> ResultCode:
        """Admit a checked tx: OK, DUPLICATE (already here) or MEMPOOL_FULL."""
        if tx.tx_id in self._txs:
            return ResultCode.DUPLICATE
        size = len(tx.raw)
        if len(self._txs) >= self.max_txs or self._bytes + size > self.max_bytes:
            return ResultCode.MEMPOOL_FULL
        self._txs[tx.tx_id] = tx
        self._bytes += size
        return ResultCode.OK

    def get(self, tx_id: bytes) -> Transaction | None:
        return self._txs.get(tx_id)

    def pending_count(self) -> int:
        return len(self._txs) - len(self._inflight)

    def select(self, *, max_txs: int, max_bytes: int) -> list[Transaction]:
        """Take txs for the next block (arrival order, each signer's txs in nonce order)
        and mark them in flight."""
        chosen: list[Transaction] = []
        total = 0
        for tx_id, tx in self._txs.items():
            if tx_id in self._inflight:
                continue
            size = len(tx.raw)
            if len(chosen) >= max_txs or total + size > max_bytes:
                break
            chosen.append(tx)
            total += size
        ordered = order_by_nonce(chosen)
        self._inflight.update(tx.tx_id for tx in ordered)
        return ordered

    def release_inflight(self, tx_ids: Iterable[bytes] | None = None) -> int:
        """Make in-flight txs proposable again (a proposal was lost); all when None."""
        if tx_ids is None:
            released = len(self._inflight)
            self._inflight.clear()
            return released
        released = 0
        for tx_id in tx_ids:
            if tx_id in self._inflight:
                self._inflight.discard(tx_id)
                released += 1
        return released

    def remove_committed(self, tx_ids: Iterable[bytes]) -> int:
        removed = 0
        for tx_id in tx_ids:
            tx = self._txs.pop(tx_id, None)
            if tx is not None:
                self._bytes -= len(tx.raw)
                self._inflight.discard(tx_id)
                removed += 1
        return removed


def order_by_nonce(txs: Sequence[Transaction]) -> list[Transaction]:
    """Keep the arrival interleaving of signers, but give each signer's slots its txs in
    nonce order (a later-arriving lower nonce must not be invalidated by a higher one)."""
    slots: dict[bytes, list[int]] = {}
    for position, tx in enumerate(txs):
        slots.setdefault(tx.signer, []).append(position)
    ordered = list(txs)
    for positions in slots.values():
        if len(positions) > 1:
            by_nonce = sorted((txs[position] for position in positions), key=lambda t: t.nonce)
            for position, tx in zip(positions, by_nonce, strict=True):
                ordered[position] = tx
    return ordered
