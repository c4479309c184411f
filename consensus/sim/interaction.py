"""A step-by-step cluster for scripted scenarios and unit tests (etcd's InteractionEnv).

Nothing happens unless asked: messages wait in one queue until delivered, Readies until
processed, time until ticked. Everything the cluster does is written to ``output`` as text,
so a scenario file can state the expected behaviour line by line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from consensus.config import Config
from consensus.errors import InvalidMessageError, UnknownPeerError
from consensus.log import NO_LIMIT
from consensus.memory import MemoryStorage
from consensus.raw_node import RawNode, Ready
from consensus.ready import Apply, ConfChangeApplied, Persist, Restore, Send, ready_steps
from consensus.sim.format import (
    describe_conf_state,
    describe_entries,
    describe_entry,
    describe_hard_state,
    describe_message,
)
from consensus.state import ProposalOutcome
from consensus.types import (
    ConfChange,
    ConfState,
    Entry,
    Message,
    Snapshot,
)


class LowestRandom:
    """A RandomSource that always picks the smallest value: randomized election timeouts
    are exactly ``election_timeout_ticks``, so scenarios are easy to follow."""

    def randrange(self, start: int, stop: int) -> int:
        assert start < stop
        return start


class RecordingLogger:
    """Writes Raft's log events into the environment's output."""

    def __init__(self, output: list[str]) -> None:
        self.output = output

    def info(self, event: str, **fields: object) -> None:
        self._write("INFO", event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._write("WARN", event, fields)

    def _write(self, level: str, event: str, fields: dict[str, object]) -> None:
        node = fields.pop("node", None)
        prefix = f"{level} {node}: " if node is not None else f"{level} "
        details = " ".join(f"{key}={value}" for key, value in fields.items())
        self.output.append(prefix + event + (f" {details}" if details else ""))


@dataclass
class EnvironmentNode:
    """One node: its RawNode, storage and a trivial application (the applied entries)."""

    config: Config
    storage: MemoryStorage
    raw_node: RawNode
    applied: list[Entry] = field(default_factory=list)
    # Configuration after each applied change, to snapshot at any applied index.
    conf_states: list[tuple[int, ConfState]] = field(default_factory=list)
    snapshot_index: int = 0

    def conf_state_at(self, index: int) -> ConfState:
        current = self.conf_states[0][1]
        for applied_index, conf_state in self.conf_states:
            if applied_index > index:
                break
            current = conf_state
        return current


class InteractionEnvironment:
    def __init__(self, **config_overrides: object) -> None:
        self.nodes: dict[int, EnvironmentNode] = {}
        self.queue: list[Message] = []
        self.output: list[str] = []
        # Directed links (from, to) that drop every message.
        self.blocked: set[tuple[int, int]] = set()
        self.config_overrides = config_overrides
        self.bootstrap: ConfState | None = None

    def take_output(self) -> str:
        text = "\n".join(self.output)
        # Cleared in place: the nodes' loggers write into this same list.
        self.output.clear()
        return text

    # ------------------------------------------------------------------ nodes

    def add_nodes(
        self,
        count: int,
        *,
        voters: Sequence[int] | None = None,
        learners: Sequence[int] = (),
        **config_overrides: object,
    ) -> list[int]:
        """Create ``count`` nodes. The first call bootstraps the cluster: its configuration
        is ``voters`` (default: the new nodes) and ``learners``. Later calls add nodes that
        start from that same bootstrap configuration, as a joining node does, and take
        part once a configuration change adds them (``voters``/``learners`` override)."""
        first = max(self.nodes, default=0) + 1
        node_ids = list(range(first, first + count))
        if self.bootstrap is not None and voters is None and not learners:
            conf_state = self.bootstrap
        else:
            conf_state = ConfState(
                voters=tuple(sorted(node_ids if voters is None else voters)),
                learners=tuple(sorted(learners)),
            )
        if self.bootstrap is None:
            self.bootstrap = conf_state
        for node_id in node_ids:
            overrides = {**self.config_overrides, **config_overrides}
            config = Config(node_id=node_id, **overrides)  # type: ignore[arg-type]
            storage = MemoryStorage(conf_state)
            node = EnvironmentNode(config=config, storage=storage, raw_node=self._raw_node(
                config, storage
            ))
            node.conf_states.append((0, conf_state))
            self.nodes[node_id] = node
            self.output.append(f"{node_id}: {describe_conf_state(conf_state)}")
        return node_ids

    def _raw_node(self, config: Config, storage: MemoryStorage) -> RawNode:
        return RawNode(config, storage, LowestRandom(), RecordingLogger(self.output))

    def restart(self, node_id: int, *, lose_unsynced: bool = True) -> None:
        """Crash (losing unsynced writes) and restart from storage."""
        node = self.nodes[node_id]
        if lose_unsynced:
            node.storage.crash()
        snapshot = node.storage.snapshot()
        node.applied = [entry for entry in node.applied if entry.index <= snapshot.metadata.index]
        node.snapshot_index = snapshot.metadata.index
        node.conf_states = [(snapshot.metadata.index, snapshot.metadata.conf_state)]
        applied_index = snapshot.metadata.index
        node.config = Config(
            **{**_config_fields(node.config), "applied_index": applied_index}  # type: ignore[arg-type]
        )
        self.queue = [message for message in self.queue if message.to != node_id]
        node.raw_node = self._raw_node(node.config, node.storage)

    # ------------------------------------------------------------------ input

    def campaign(self, node_id: int) -> None:
        self.nodes[node_id].raw_node.campaign()

    def tick(self, node_id: int, count: int) -> None:
        raw_node = self.nodes[node_id].raw_node
        for _ in range(count):
            raw_node.tick()

    def propose(self, node_id: int, data: bytes) -> ProposalOutcome:
        outcome = self.nodes[node_id].raw_node.propose(data)
        if outcome != ProposalOutcome.APPENDED:
            self.output.append(f"{node_id}: proposal {outcome.value}")
        return outcome

    def propose_conf_change(self, node_id: int, change: ConfChange) -> ProposalOutcome:
        outcome = self.nodes[node_id].raw_node.propose_conf_change(change)
        if outcome != ProposalOutcome.APPENDED:
            self.output.append(f"{node_id}: configuration change {outcome.value}")
        return outcome

    def transfer_leadership(self, node_id: int, target: int) -> None:
        self.nodes[node_id].raw_node.transfer_leadership(target)

    def compact(self, node_id: int, index: int) -> None:
        """Snapshot the application at ``index`` (already applied) and compact the log."""
        node = self.nodes[node_id]
        data = f"snapshot of {node_id} at {index}".encode()
        snapshot = node.storage.create_snapshot(index, node.conf_state_at(index), data)
        node.storage.compact(index)
        self.output.append(
            f"{node_id}: snapshot {snapshot.metadata.term}/{index}, log now starts at "
            f"{node.storage.first_index()}"
        )

    # ------------------------------------------------------------------ network

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        """Cut every link between different groups (both directions)."""
        self.blocked = set()
        for group in groups:
            for other in groups:
                if other is group:
                    continue
                for sender in group:
                    for receiver in other:
                        self.blocked.add((sender, receiver))

    def block(self, sender: int, receiver: int) -> None:
        self.blocked.add((sender, receiver))

    def heal(self) -> None:
        self.blocked = set()

    def deliver(self, node_ids: Iterable[int] | None = None, *, drop: bool = False) -> int:
        """Deliver (or drop) queued messages addressed to ``node_ids`` (all if None)."""
        targets = set(self.nodes) if node_ids is None else set(node_ids)
        delivered = 0
        for node_id in sorted(targets):
            batch = [message for message in self.queue if message.to == node_id]
            if not batch:
                continue
            self.queue = [message for message in self.queue if message.to != node_id]
            self.output.append(f"> {node_id} {'dropping' if drop else 'receiving'} messages")
            for message in batch:
                delivered += 1
                self._deliver_one(message, drop)
        return delivered

    def _deliver_one(self, message: Message, drop: bool) -> None:
        line = "  " + describe_message(message)
        if drop:
            self.output.append(line + " (dropped)")
            return
        if (message.from_, message.to) in self.blocked:
            self.output.append(line + " (dropped: partition)")
            return
        self.output.append(line)
        try:
            self.nodes[message.to].raw_node.step(message)
        except (InvalidMessageError, UnknownPeerError) as error:
            self.output.append(f"  refused: {error}")

    # ------------------------------------------------------------------ Ready

    def process_ready(self, node_ids: Iterable[int] | None = None) -> int:
        processed = 0
        for node_id in sorted(self.nodes if node_ids is None else node_ids):
            node = self.nodes[node_id]
            ready = node.raw_node.ready()
            if ready is None:
                continue
            processed += 1
            self._handle_ready(node_id, node, ready)
        return processed

    def _handle_ready(self, node_id: int, node: EnvironmentNode, ready: Ready) -> None:
        out = self.output
        out.append(f"> {node_id} handling Ready{' (sync)' if ready.must_sync else ''}")
        if ready.soft_state is not None:
            soft = ready.soft_state
            out.append(f"  role={soft.role.value} leader={soft.leader}")
        if ready.hard_state is not None:
            out.append(f"  hard state: {describe_hard_state(ready.hard_state)}")
        if ready.snapshot is not None:
            metadata = ready.snapshot.metadata
            out.append(
                f"  snapshot: {metadata.term}/{metadata.index} "
                f"{describe_conf_state(metadata.conf_state)}"
            )
        if ready.entries:
            out.append(f"  entries: {describe_entries(ready.entries)}")
        conf_changed: ConfChangeApplied | None = None
        for action in ready_steps(node.raw_node, ready):
            if isinstance(action, Persist):
                node.storage.persist(hard_state=action.hard_state, entries=action.entries,
                                     snapshot=action.snapshot, sync=action.sync)
            elif isinstance(action, Restore):
                self._restore_snapshot(node, action.snapshot)
            elif isinstance(action, Send):
                for message in action.messages:
                    out.append(f"  send {describe_message(message)}")
                    self.queue.append(message)
            elif isinstance(action, ConfChangeApplied):
                conf_changed = action  # shown after the entry's "apply" line
            elif isinstance(action, Apply):
                self._apply(node_id, node, action.entry, conf_changed)
                conf_changed = None

    def _restore_snapshot(self, node: EnvironmentNode, snapshot: Snapshot) -> None:
        metadata = snapshot.metadata
        node.applied = []
        node.snapshot_index = metadata.index
        node.conf_states = [(metadata.index, metadata.conf_state)]

    def _apply(self, node_id: int, node: EnvironmentNode, entry: Entry,
               conf_changed: ConfChangeApplied | None) -> None:
        node.applied.append(entry)
        self.output.append(f"  apply {describe_entry(entry)}")
        if conf_changed is not None:
            conf_state = conf_changed.conf_state
            assert conf_state is not None, conf_changed.refused
            node.conf_states.append((entry.index, conf_state))
            self.output.append(f"  {node_id}: now {describe_conf_state(conf_state)}")

    def stabilize(self, node_ids: Iterable[int] | None = None, *, rounds_max: int = 1000) -> None:
        """Process Readies and deliver messages until nothing moves."""
        selected = None if node_ids is None else list(node_ids)
        for _ in range(rounds_max):
            processed = self.process_ready(selected)
            delivered = self.deliver(selected)
            if processed == 0 and delivered == 0:
                return
        raise AssertionError(f"did not stabilize within {rounds_max} rounds")

    # ------------------------------------------------------------------ inspection

    def describe_status(self, node_id: int) -> str:
        status = self.nodes[node_id].raw_node.status()
        lines = [
            f"{node_id}: {status.soft_state.role.value} term={status.hard_state.term} "
            f"leader={status.soft_state.leader} vote={status.hard_state.vote} "
            f"commit={status.hard_state.commit} applied={status.applied} "
            f"log=[{status.first_index}, {status.last_index}]",
            f"  {describe_conf_state(status.conf_state)}",
        ]
        for peer in status.peers:
            learner = " learner" if peer.is_learner else ""
            lines.append(
                f"  {peer.node_id}: {peer.state.value} match={peer.match} next={peer.next}"
                f" inflight={peer.inflight_messages}{learner}"
            )
        return "\n".join(lines)

    def describe_log(self, node_id: int) -> str:
        node = self.nodes[node_id]
        log = node.raw_node.raft.log
        first = log.first_index()
        last = log.last_index()
        entries = log.slice(first, last + 1, NO_LIMIT, NO_LIMIT) if last >= first else []
        lines = [f"{node_id}: log [{first}, {last}] committed={log.committed}"]
        lines.extend(f"  {describe_entry(entry)}" for entry in entries)
        return "\n".join(lines)


def _config_fields(config: Config) -> dict[str, object]:
    return {name: getattr(config, name) for name in Config.__dataclass_fields__}
