"""Reading a testnet run's timeline (the client's head and peer samples): the time from
an instant to the next commit, until every node is connected to every validator, and
the recovery figures per fault kind."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from node.testnet.cluster import NodeSpec


def next_commit(heads: Sequence[dict[str, Any]], after: float) -> float | None:
    """Seconds from ``after`` to the first head increase on any node after it."""
    highest: dict[str, int] = {}
    for sample in heads:
        if sample["t"] <= after:
            highest[sample["node"]] = sample["height"]
            continue
        if sample["height"] > highest.get(sample["node"], -1) and sample["node"] in highest:
            return round(float(sample["t"]) - after, 3)
        highest[sample["node"]] = max(highest.get(sample["node"], -1), sample["height"])
    return None


def connected_at(peers: Sequence[dict[str, Any]], nodes: Sequence[NodeSpec],
                  after: float) -> float | None:
    """Seconds from ``after`` until every node is connected to every validator."""
    validator_ids = {node.peer_id for node in nodes if node.validator}
    current: dict[str, set[str]] = {}
    for sample in sorted(peers, key=lambda item: item["t"]):
        current[sample["node"]] = set(sample["connected"])
        if sample["t"] < after:
            continue
        if all_connected(current, nodes, validator_ids):
            return round(float(sample["t"]) - after, 3)
    if all_connected(current, nodes, validator_ids):
        return 0.0
    return None


def all_connected(current: dict[str, set[str]], nodes: Sequence[NodeSpec],
                   validator_ids: set[str]) -> bool:
    return all(validator_ids - {node.peer_id} <= current.get(node.name, set()) for node in nodes)


def recovery_stats(faults: Sequence[dict[str, Any]]) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for kind in sorted({fault["kind"] for fault in faults}):
        of_kind = [fault for fault in faults if fault["kind"] == kind]
        entry: dict[str, Any] = {"count": len(of_kind)}
        for key in ("to_commit_s", "heal_to_commit_s", "heal_to_connected_s"):
            values = [fault[key] for fault in of_kind if fault.get(key) is not None]
            entry[key] = ({"median": round(statistics.median(values), 3), "max": max(values)}
                          if values else None)
        stats[kind] = entry
    return stats


def all_connected_end(peers: Sequence[dict[str, Any]], nodes: Sequence[NodeSpec]) -> bool:
    validator_ids = {node.peer_id for node in nodes if node.validator}
    current: dict[str, set[str]] = {}
    for sample in sorted(peers, key=lambda item: item["t"]):
        current[sample["node"]] = set(sample["connected"])
    return all_connected(current, nodes, validator_ids)
