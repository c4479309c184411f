"""The mempool: checked transactions waiting for a block.

Bounded in count and bytes, deduplicated by tx id, ordered by arrival. Transactions the
leader put into a proposed block are *in flight*: they stay here (so a lost proposal loses
nothing) but are not proposed again until :meth:`Mempool.release_inflight` returns them,
and they leave only when a committed block carrying them is applied.

Who may move a tx on. A client's txs reach the leader in the order the client sent them
only through the node that received them (its *owner*): it admits them in arrival order
and forwards them to the leader in that order, again in full after a leader change. Tx
gossip delivers copies to every node too, but gossip may deliver a suffix without its
prefix (messages dropped during a partition; GossipSub's IWANT recovers recent ones
only), and a leader that proposed such a suffix committed the later nonces first, which
made the earlier ones NONCE_STALE. So a tx known here only from gossip is *held*: it is
neither proposed nor forwarded until its owner's forward (or the client itself) brings it
(``add`` without ``held_since``: it then takes its place in that batch's order). A held
tx nobody claims within ``hold_s`` leaves the pool; it is never proposed on gossip's word
alone (releasing such txs made an overloaded owner's older txs NONCE_STALE when its
forward came later). Its owner still holds it and forwards it when it can; if the owner
died, the tx is lost like anything else in a crashed node's mempool, and the client,
which never saw it committed, submits it again.

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
    txs_max: int
    bytes_max: int
    held_txs: int


# A tx known only from gossip and not claimed by its owner's forward within this long
# leaves the pool (the owner forwards it again if it still has it).
GOSSIP_HOLD_S = 30.0


class Mempool:
    def __init__(self, *, txs_max: int, bytes_max: int, hold_s: float = GOSSIP_HOLD_S) -> None:
        assert txs_max > 0 and bytes_max > 0 and hold_s >= 0
        self.txs_max = txs_max
        self.bytes_max = bytes_max
        self.hold_s = hold_s
        # tx id -> tx; dict order is arrival order.
        self._txs: dict[bytes, Transaction] = {}
        self._inflight: set[bytes] = set()
        # tx id -> when it arrived, for txs known only from gossip (held).
        self._held: dict[bytes, float] = {}
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
            len(self._txs), self._bytes, len(self._inflight), self.txs_max, self.bytes_max,
            len(self._held),
        )

    def add(self, tx: Transaction, *, held_since: float | None = None) -> ResultCode:
        """Admit a checked tx: OK, DUPLICATE (already here) or MEMPOOL_FULL. With
        ``held_since`` (now, for a tx from gossip) it is held; a tx from a client or a
        forward (no ``held_since``) that is here already held is released and moves to
        the end of the arrival order, as if it arrived now."""
        if tx.tx_id in self._txs:
            if held_since is None and self._held.pop(tx.tx_id, None) is not None:
                # Released where its owner's forward puts it, not where gossip did: the
                # arrival order of the owner's batch is its client's order.
                self._txs[tx.tx_id] = self._txs.pop(tx.tx_id)
            return ResultCode.DUPLICATE
        size = len(tx.raw)
        if len(self._txs) >= self.txs_max or self._bytes + size > self.bytes_max:
            return ResultCode.MEMPOOL_FULL
        self._txs[tx.tx_id] = tx
        self._bytes += size
        if held_since is not None:
            self._held[tx.tx_id] = held_since
        return ResultCode.OK

    def expire_held(self, now: float) -> int:
        """Drop held txs nobody claimed within ``hold_s``; returns how many."""
        expired = [tx_id for tx_id, since in self._held.items() if now - since >= self.hold_s]
        self.remove_committed(expired)
        return len(expired)

    def forwardable(self, now: float) -> list[Transaction]:
        """Txs this node should forward to the leader, in arrival order: those not held."""
        self.expire_held(now)
        return [tx for tx_id, tx in self._txs.items() if tx_id not in self._held]

    def get(self, tx_id: bytes) -> Transaction | None:
        return self._txs.get(tx_id)

    def pending_count(self) -> int:
        return len(self._txs) - len(self._inflight)

    def select(self, *, txs_max: int, bytes_max: int, now: float) -> list[Transaction]:
        """Take txs for the next block (arrival order, each signer's txs in nonce order;
        held txs stay) and mark them in flight. A tx waits while a held tx of its signer
        has a lower nonce: that one's owner has not forwarded it yet, and proposing the
        later nonce first would make it NONCE_STALE (a relay that knew the earlier tx
        only from gossip forwards the later ones without it). The wait ends when the
        owner's forward releases it, or when it expires."""
        self.expire_held(now)
        held_nonce_min: dict[bytes, int] = {}
        for tx_id in self._held:
            held = self._txs[tx_id]
            known = held_nonce_min.get(held.signer)
            if known is None or held.nonce < known:
                held_nonce_min[held.signer] = held.nonce
        chosen: list[Transaction] = []
        total = 0
        for tx_id, tx in self._txs.items():
            if tx_id in self._inflight or tx_id in self._held:
                continue
            waits_for = held_nonce_min.get(tx.signer)
            if waits_for is not None and waits_for < tx.nonce:
                continue
            size = len(tx.raw)
            if len(chosen) >= txs_max or total + size > bytes_max:
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
                self._held.pop(tx_id, None)
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
