"""Serving proofs of patients' complete access trails (ledger/trails.py).

A trail proof must come from the very state a certified header commits to. The head
block's header commits to the state of an earlier height (``state_height``, one behind
while blocks are cut one at a time), which apply has since moved past; so the node keeps
a LevelDB snapshot (O(1), never a stall of apply) of its last few heights, and proves a
trail from the snapshot of the height the head's header names. The head's certificate
comes from the votes (node/certify.py), so a proof is ready a moment after each block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger import smt, trails
from ledger.app.layout import audit_prefix
from ledger.block import Block
from ledger.certificate import Certificate
from ledger.errors import LocalError
from node.chain import Chain
from node.events import Applied
from storage.statesync import StateSnapshot

# Heights whose state is kept for trail proofs.
HEIGHTS_KEPT = 4
# A trail longer than this is not proved in one answer.
TRAIL_ENTRIES_MAX = 20_000


class TrailProofUnavailable(LocalError):
    """No proof can be made right now (no certified head with its state held yet, or a
    trail too long); the message says which."""


@dataclass(frozen=True, slots=True)
class TrailProof:
    block: Block  # the certified block whose header commits to the trail
    certificate: Certificate
    count: int
    head: bytes
    tree: smt.SmtProof
    entries: list[tuple[bytes, bytes]]  # (audit key, entry), in chain order


class TrailProofs:
    def __init__(self, chain: Chain,
                 certificate: Callable[[int, bytes], Certificate | None]) -> None:
        self._chain = chain
        self._certificate = certificate
        self._held: dict[int, StateSnapshot] = {}

    def on_applied(self, event: Applied) -> None:
        if event.applied is None:
            return
        snapshot = StateSnapshot(self._chain.blocks)
        old = self._held.pop(snapshot.height, None)
        if old is not None:
            old.close()
        self._held[snapshot.height] = snapshot
        while len(self._held) > HEIGHTS_KEPT:
            self._held.pop(min(self._held)).close()

    def close(self) -> None:
        for snapshot in self._held.values():
            snapshot.close()
        self._held.clear()

    def prove(self, patient: str) -> TrailProof:
        """The patient's trail as of the state the newest certified block's header
        commits to (read in a worker thread: it reads the whole trail)."""
        chain = self._chain
        for height in range(chain.height, max(0, chain.height - HEIGHTS_KEPT), -1):
            block = chain.block_by_height(height)
            if block is None:
                break
            certificate = self._certificate(height, block.hash)
            if certificate is None and height < chain.height:
                following = chain.block_by_height(height + 1)
                certificate = None if following is None else following.certificate
            snapshot = self._held.get(block.header.state_height)
            if certificate is None or snapshot is None:
                continue
            return self._from(snapshot, block, certificate, patient)
        raise TrailProofUnavailable(
            "no certified block whose state this node still holds: try again in a moment "
            "(a proof needs the next block after a restart)")

    def _from(self, snapshot: StateSnapshot, block: Block, certificate: Certificate,
              patient: str) -> TrailProof:
        count, head, tree = trails.prove_head(snapshot.get, patient)
        if count > TRAIL_ENTRIES_MAX:
            raise TrailProofUnavailable(
                f"{patient}'s trail has {count} entries, more than {TRAIL_ENTRIES_MAX} "
                "are proved in one answer")
        prefix = audit_prefix(patient)
        entries = list(snapshot.items(prefix, prefix + b"\xff"))
        assert len(entries) == count, (
            f"{patient}: {len(entries)} audit entries in state, the chain counts {count}")
        return TrailProof(block, certificate, count, head, tree, entries)


def proof_view_parts(proof: TrailProof) -> dict[str, Any]:
    def hexed(data: bytes) -> str:
        return "0x" + data.hex()

    return {
        "block": {"header": hexed(proof.block.header.encode()),
                  "certificate": hexed(proof.certificate.encode())},
        "trail": {
            "count": proof.count, "head": hexed(proof.head),
            "tree": {"siblings": [hexed(sibling) for sibling in proof.tree.siblings],
                     "leaf": None if proof.tree.leaf is None else [
                         hexed(proof.tree.leaf[0]), hexed(proof.tree.leaf[1])]},
            "entries": [{"key": hexed(key), "value": hexed(value)}
                        for key, value in proof.entries],
        },
    }


__all__ = ["TrailProof", "TrailProofUnavailable", "TrailProofs", "proof_view_parts"]
