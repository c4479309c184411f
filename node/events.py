"""What the applier tells the rest of the node, in one direction.

Every raft entry applied, and every block applied from sync or gossip, becomes one frozen
:class:`Applied` event, published in apply order to every listener. Listeners are plain
callables run synchronously, in the order they subscribed; none may await (work that
must wait, such as starting consensus, wakes the listener's own task). The applier
knows nothing of its listeners: the mempool, the builder, membership, block gossip, the
RPC subscriptions and the metrics each subscribe themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from node.chain import AppliedBlock


@dataclass(frozen=True, slots=True)
class Applied:
    # The block applied, or None for a raft entry that carries none (a leader's no-op, a
    # conf change, a block refused by the rules: see ``skipped_reason``).
    applied: AppliedBlock | None
    # The raft entry applied; None for a block that came by sync or gossip.
    raft_index: int | None
    skipped_reason: str | None = None

    @property
    def tx_ids(self) -> list[bytes]:
        return [] if self.applied is None else self.applied.tx_ids

    @property
    def from_raft(self) -> bool:
        return self.raft_index is not None


Listener = Callable[[Applied], None]


class AppliedEvents:
    """The applier's publisher: subscribe listeners, publish events to them in order."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, event: Applied) -> None:
        for listener in self._listeners:
            listener(event)
