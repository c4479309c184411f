"""Membership: which nodes are the validators, and the raft configuration that follows.

Governance decides the validator set (ledger state); this service keeps the node's view
of it (node key -> raft id, peer id), tells the transport whom to keep connected and
admit, starts consensus here when governance makes this node a validator, and, on the
leader, moves the raft configuration one step at a time towards the decided set: a new
validator joins as a learner and is promoted once caught up; removed ones leave.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from consensus.state import Role
from consensus.types import ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType
from node.chain import Chain
from node.events import Applied
from node.keys import raft_node_id
from node.p2p.identity import peer_id_from_public_key
from node.p2p.transport import Transport
from node.raft_driver import RaftDriver

# A learner is promoted to voter when it is within this many entries of the leader.
LEARNER_CATCH_UP_ENTRIES = 64


class Membership:
    def __init__(self, *, chain: Chain, public_key: bytes, log: Any,
                 driver: Callable[[], RaftDriver | None],
                 start_consensus: Callable[[], Awaitable[None]]) -> None:
        self._chain = chain
        self._public_key = public_key
        self._log = log
        self._driver = driver
        self._start_consensus = start_consensus
        self._transport: Transport | None = None
        # node key -> (raft id, peer id) of every validator in force.
        self.validators: dict[bytes, tuple[int, str]] = {}
        self._became_validator = trio.Event()
        self.changes_proposed = 0
        self.refresh()

    @property
    def is_validator(self) -> bool:
        return self._public_key in self.validators

    def validator_peers(self) -> set[str]:
        return {peer for _, peer in self.validators.values()}

    def attach(self, transport: Transport) -> None:
        self._transport = transport
        transport.set_validators(self.validator_peers())

    def refresh(self) -> None:
        self.validators = {
            key: (raft_node_id(key), peer_id_from_public_key(key))
            for key in self._chain.validator_keys()
        }
        if self._transport is not None:
            self._transport.set_validators(self.validator_peers())

    def peer_of_raft(self, raft_id: int, cache: dict[int, str] | None = None) -> str | None:
        for known_raft_id, peer in self.validators.values():
            if known_raft_id == raft_id:
                return peer
        return (cache or {}).get(raft_id)  # a validator just removed: still reachable

    def raft_of_peer(self, peer: str) -> int | None:
        for raft_id, known_peer in self.validators.values():
            if known_peer == peer:
                return raft_id
        return None

    def statistics(self) -> dict[str, int]:
        return {"validators": len(self.validators),
                "changes_proposed": self.changes_proposed}

    # ------------------------------------------------------------------ events

    def on_applied(self, event: Applied) -> None:
        if event.applied is not None and event.applied.validator_changes:
            self.refresh()
            if self.is_validator and self._driver() is None:
                self._became_validator.set()
        driver = self._driver()
        if event.from_raft and driver is not None and driver.role is Role.LEADER:
            self.reconcile(driver)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start consensus here once governance made this node a validator."""
        task_status.started()
        await self._became_validator.wait()
        if self._driver() is None:
            await self._start_consensus()

    def reconcile(self, driver: RaftDriver) -> None:
        """Leader: move the raft configuration one step towards the decided set."""
        status = driver.raw_node.status()
        conf = status.conf_state
        if conf.voters_outgoing:
            return  # in joint consensus: raft leaves it on its own first
        # (Raft itself refuses a change while an earlier one is not applied yet.)
        change = self._next_change(set(conf.voters), set(conf.learners),
                                   {peer.node_id: peer.match for peer in status.peers},
                                   status.last_index)
        if change is None:
            return
        outcome = driver.propose_conf_change(
            ConfChange(changes=(change,), transition=ConfChangeTransition.JOINT_IMPLICIT)
        )
        if outcome.accepted:
            self.changes_proposed += 1
            self._log.info("membership change proposed", change=change.type.name,
                           raft_id=change.node_id, outcome=outcome.value)

    def _next_change(self, voters: set[int], learners: set[int], matches: dict[int, int],
                     last_index: int) -> ConfChangeSingle | None:
        wanted = {raft_id for raft_id, _ in self.validators.values()}
        for raft_id in sorted(wanted - voters - learners):
            return ConfChangeSingle(ConfChangeType.ADD_LEARNER, raft_id)
        for raft_id in sorted(learners & wanted):
            if matches.get(raft_id, 0) + LEARNER_CATCH_UP_ENTRIES >= last_index:
                return ConfChangeSingle(ConfChangeType.ADD_VOTER, raft_id)
        for raft_id in sorted((voters | learners) - wanted):
            return ConfChangeSingle(ConfChangeType.REMOVE_NODE, raft_id)
        return None
