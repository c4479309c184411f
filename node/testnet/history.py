"""The history checker: pure, over data it is given (no I/O, no clock).

Input, read from every node after a run:

* each node's chain: for every height it holds, the block hash and the tx ids in order,
  and its head height (``NodeChain``);
* the workload's acknowledgements: tx id -> the (height, position) the client was told the
  tx committed at (``Ack``).

Checks (each failure is one typed violation in the ``HistoryReport``):

* ``LostAck``: an acknowledged tx is not on a node at the acknowledged height and position
  (missing, or elsewhere). ``lagging`` marks a node whose head is below that height: it
  misses the tx because it did not catch up (a liveness failure), not because its chain
  holds something else there (a safety failure). Both fail: after the quiet period every
  node must hold what was acknowledged; the counts keep them apart;
* ``Divergence``: two nodes hold different block hashes at one height;
* ``Duplicate``: one tx id appears twice in a node's chain (a block applied twice, or a
  tx included twice);
* ``Gap``: a node lacks a height at or below its head (or a block's own height field
  disagrees with where it was found);
* ``Unreadable``: a node's chain could not be read at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Violations of one kind kept verbatim in the report (their counts are always exact).
VIOLATION_SAMPLES_MAX = 50


@dataclass(frozen=True, slots=True)
class Block:
    height: int
    block_hash: str
    tx_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeChain:
    node: str
    head: int
    blocks: Mapping[int, Block]  # height -> block, every height the node returned
    error: str = ""  # non-empty: the chain could not be read (blocks then partial or empty)


@dataclass(frozen=True, slots=True)
class Ack:
    tx_id: str
    height: int
    position: int


@dataclass(frozen=True, slots=True)
class LostAck:
    tx_id: str
    node: str
    acknowledged: tuple[int, int]  # (height, position)
    found: tuple[int, int] | None  # where the node has it, None: nowhere
    lagging: bool = False  # the node's head is below the acknowledged height


@dataclass(frozen=True, slots=True)
class Divergence:
    height: int
    hashes: tuple[tuple[str, str], ...]  # (node, block hash), sorted by node


@dataclass(frozen=True, slots=True)
class Duplicate:
    node: str
    tx_id: str
    locations: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Gap:
    node: str
    height: int
    reason: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    node: str
    error: str


@dataclass(frozen=True, slots=True)
class HistoryReport:
    acknowledged: int
    lost_txs: int  # distinct acknowledged tx ids absent or misplaced on a node that got there
    lagging_txs: int  # distinct acknowledged tx ids beyond the head of at least one node
    divergent_heights: int
    duplicate_txs: int  # distinct (node, tx id) pairs seen more than once
    gaps: int
    unreadable_nodes: int
    lost: tuple[LostAck, ...] = field(default=())
    divergences: tuple[Divergence, ...] = field(default=())
    duplicates: tuple[Duplicate, ...] = field(default=())
    gap_list: tuple[Gap, ...] = field(default=())
    unreadable: tuple[Unreadable, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not (self.lost_txs or self.lagging_txs or self.divergent_heights
                    or self.duplicate_txs or self.gaps or self.unreadable_nodes)

    def summary(self) -> dict[str, int | bool]:
        return {"acknowledged": self.acknowledged, "lost": self.lost_txs,
                "lagging": self.lagging_txs,
                "divergent_heights": self.divergent_heights, "duplicates": self.duplicate_txs,
                "gaps": self.gaps, "unreadable_nodes": self.unreadable_nodes, "ok": self.ok}


def check_history(chains: Sequence[NodeChain], acks: Iterable[Ack]) -> HistoryReport:
    """Every check of the module docstring over ``chains`` and ``acks``."""
    acknowledged = {ack.tx_id: ack for ack in acks}
    locations = {chain.node: _locations(chain) for chain in chains}
    lost = _lost(chains, locations, acknowledged)
    divergences = _divergences(chains)
    duplicates = [duplicate for chain in chains
                  for duplicate in _duplicates(chain.node, locations[chain.node])]
    gaps = [gap for chain in chains for gap in _gaps(chain)]
    unreadable = [Unreadable(chain.node, chain.error) for chain in chains if chain.error]
    return HistoryReport(
        acknowledged=len(acknowledged),
        lost_txs=len({item.tx_id for item in lost if not item.lagging}),
        lagging_txs=len({item.tx_id for item in lost if item.lagging}),
        divergent_heights=len(divergences),
        duplicate_txs=len(duplicates),
        gaps=len(gaps),
        unreadable_nodes=len(unreadable),
        lost=tuple(lost[:VIOLATION_SAMPLES_MAX]),
        divergences=tuple(divergences[:VIOLATION_SAMPLES_MAX]),
        duplicates=tuple(duplicates[:VIOLATION_SAMPLES_MAX]),
        gap_list=tuple(gaps[:VIOLATION_SAMPLES_MAX]),
        unreadable=tuple(unreadable[:VIOLATION_SAMPLES_MAX]),
    )


def _locations(chain: NodeChain) -> dict[str, list[tuple[int, int]]]:
    """tx id -> every (height, position) it occupies in the chain."""
    found: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for height in sorted(chain.blocks):
        for position, tx_id in enumerate(chain.blocks[height].tx_ids):
            found[tx_id].append((height, position))
    return found


def _lost(chains: Sequence[NodeChain], locations: Mapping[str, Mapping[str, list[tuple[int, int]]]],
          acknowledged: Mapping[str, Ack]) -> list[LostAck]:
    lost = []
    for tx_id in sorted(acknowledged):
        ack = acknowledged[tx_id]
        expected = (ack.height, ack.position)
        for chain in chains:
            places = locations[chain.node].get(tx_id, [])
            if expected not in places:
                lost.append(LostAck(tx_id, chain.node, expected,
                                    places[0] if places else None,
                                    lagging=not places and chain.head < ack.height))
    return lost


def _divergences(chains: Sequence[NodeChain]) -> list[Divergence]:
    heights = sorted({height for chain in chains for height in chain.blocks})
    divergences = []
    for height in heights:
        hashes = tuple(sorted((chain.node, chain.blocks[height].block_hash)
                              for chain in chains if height in chain.blocks))
        if len({block_hash for _, block_hash in hashes}) > 1:
            divergences.append(Divergence(height, hashes))
    return divergences


def _duplicates(node: str, locations: Mapping[str, list[tuple[int, int]]]) -> list[Duplicate]:
    return [Duplicate(node, tx_id, tuple(places))
            for tx_id, places in sorted(locations.items()) if len(places) > 1]


def _gaps(chain: NodeChain) -> list[Gap]:
    gaps = []
    for height in range(1, chain.head + 1):
        block = chain.blocks.get(height)
        if block is None:
            gaps.append(Gap(chain.node, height, "missing below the head"))
        elif block.height != height:
            gaps.append(Gap(chain.node, height, f"holds a block of height {block.height}"))
    return gaps
