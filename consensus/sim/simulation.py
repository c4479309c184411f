"""The deterministic cluster simulator (TigerBeetle VOPR style).

N RawNodes run in one process under one seeded ``random.Random``: a simulated network
(delay, loss, duplication, reordering, symmetric and one-way partitions), crashes that lose
unsynced writes and restarts from durable storage, clients proposing at a rate, and
membership changes, all while the checkers watch. After ``ticks`` of faults everything
heals and the cluster must converge within ``liveness_ticks``.

Time is in steps; a node ticks every ``TICK_STEPS`` steps (each at its own phase, as real
clocks are not aligned) and network delays are a few steps. The same seed gives the same
run and the same trace hash (a SHA-256 over every delivered message and every event).
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.config import Config, RaftBugs
from consensus.errors import UnknownPeerError
from consensus.log import NO_LIMIT, RaftLog
from consensus.memory import MemoryStorage
from consensus.raw_node import RawNode
from consensus.ready import (
    Apply,
    ConfChangeApplied,
    Persist,
    Restore,
    Send,
    Step,
    ready_steps,
)
from consensus.sim.checkers import (
    Record,
    SafetyChecker,
    Violation,
    check_logs_match,
    check_prefixes,
)
from consensus.sim.network import LinkQuality, Network
from consensus.state import Role
from consensus.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    ConfState,
    EntryType,
    Message,
    Snapshot,
)
from ledger.codec import decode_tree, encode_tree
from ledger.errors import ConfigError

# Simulation steps per Raft tick: network delays of a few steps are a fraction of a tick.
TICK_STEPS = 10

# Most nodes a simulated cluster may have: beyond 7 voters Raft gains nothing, and runs
# get slow.
NODES_MAX = 9

# Snapshot data of the simulated application (its applied records) is bounded like any
# snapshot.
SNAPSHOT_DATA_BYTES_MAX = 16 * 1024 * 1024

# Entries kept after a snapshot, so that followers slightly behind catch up from the log.
COMPACTION_KEEP_ENTRIES = 8


class FaultKind(enum.Enum):
    PARTITION = "partition"
    ONE_WAY = "one-way"
    LOSS = "loss"
    DUPLICATE = "duplicate"
    REORDER = "reorder"
    CRASH = "crash"
    MEMBERSHIP = "membership"


ALL_FAULTS = frozenset(FaultKind)


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """One simulated run. ``ticks``: length of the fault phase; ``liveness_ticks``: the
    bound within which the cluster must converge once faults stop."""

    seed: int
    node_count: int = 3
    ticks: int = 300
    faults: frozenset[FaultKind] = ALL_FAULTS
    # Client proposals per tick (a Poisson-like rate over steps).
    proposal_rate: float = 0.5
    # Fault events per tick while faults are on, and how long each lasts (a partition,
    # a link fault, a crashed node's downtime): uniform in [3, fault_duration_ticks_max].
    fault_rate: float = 0.06
    fault_duration_ticks_max: int = 60
    liveness_ticks: int = 400
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 2
    # Small limits, so appends are split and flow control is exercised.
    message_size_bytes_max: int = 48
    inflight_messages_max: int = 4
    # Entries applied between application snapshots (followed by log compaction).
    snapshot_interval_entries: int = 30
    # Client proposals outstanding at once; beyond it clients wait.
    pending_proposals_max: int = 48
    # Chance, after each step of a Ready (consensus.ready), that the node crashes right
    # there, the rest of the Ready undone (while faults are on and few enough are down).
    # It checks the order of the steps: a message sent before what it promises is
    # durable is lost with the crash. 0 draws nothing, so runs without it are unchanged.
    crash_mid_ready_rate: float = 0.0
    bugs: RaftBugs = field(default_factory=RaftBugs)

    def validate(self) -> None:
        if not 1 <= self.node_count <= NODES_MAX:
            raise ConfigError(f"node_count must be in [1, {NODES_MAX}]")
        if self.ticks < 0 or self.liveness_ticks <= 0:
            raise ConfigError("ticks must be >= 0 and liveness_ticks > 0")
        if not 0.0 <= self.proposal_rate <= TICK_STEPS:
            raise ConfigError(f"proposal_rate must be in [0, {TICK_STEPS}] per tick")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ConfigError("fault_rate must be in [0, 1] per tick")
        if self.fault_duration_ticks_max < 3:
            raise ConfigError("fault_duration_ticks_max must be at least 3")
        if not 0.0 <= self.crash_mid_ready_rate <= 1.0:
            raise ConfigError("crash_mid_ready_rate must be in [0, 1] per step")


@dataclass(frozen=True, slots=True)
class SimulationResult:
    seed: int
    node_count: int
    ticks_simulated: int
    committed_entries: int
    proposals_submitted: int
    proposals_acknowledged: int
    messages_delivered: int
    crashes: int
    partitions: int
    membership_changes: int
    leaders_elected: int
    # Ticks the cluster took to converge once faults stopped (-1: it did not).
    convergence_ticks: int
    violations: tuple[Violation, ...]
    trace_hash: str

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(slots=True)
class Proposal:
    payload: bytes
    via: set[int] = field(default_factory=set)
    last_attempt_step: int = 0
    acknowledged_step: int = -1


class SimulatedNode:
    """A node: durable storage that survives crashes, and (while up) a RawNode and the
    simulated application (the sequence of applied payloads)."""

    def __init__(self, node_id: int, storage: MemoryStorage) -> None:
        self.node_id = node_id
        self.storage = storage
        self.raw_node: RawNode | None = None
        self.records: list[Record] = []
        self.payloads: set[bytes] = set()
        self.applied_index = 0
        self.conf_state = ConfState()
        self.snapshot_index = 0
        self.tick_phase = 0
        self.led_term = 0
        self.leader_commit_seen = 0

    def restore(self, snapshot: Snapshot) -> list[Record]:
        metadata = snapshot.metadata
        records: list[Record] = []
        if snapshot.data:
            tree = decode_tree(snapshot.data, size_bytes_max=SNAPSHOT_DATA_BYTES_MAX)
            records = [(index, term, payload) for index, term, payload in tree]
        self.records = records
        self.payloads = {payload for _, _, payload in records}
        self.applied_index = metadata.index
        self.snapshot_index = metadata.index
        self.conf_state = metadata.conf_state
        return records

    def snapshot_data(self) -> bytes:
        return encode_tree([list(record) for record in self.records])


class Simulation:
    def __init__(self, config: SimulationConfig) -> None:
        config.validate()
        self.config = config
        self.rng = random.Random(config.seed)
        # Its own stream, so that runs without mid-Ready crashes draw exactly as before.
        self.mid_ready_rng = random.Random(f"mid-ready/{config.seed}")
        self.faults_on = False
        self.network = Network(random.Random(self.rng.getrandbits(64)), LinkQuality())
        self.checker = SafetyChecker()
        self.trace = hashlib.sha256()
        self.step_now = 0
        self.nodes: dict[int, SimulatedNode] = {}
        voters = tuple(range(1, config.node_count + 1))
        self.bootstrap = ConfState(voters=voters)
        # One spare node outside the configuration, for membership changes to add.
        spare = 1 if FaultKind.MEMBERSHIP in config.faults else 0
        for node_id in range(1, config.node_count + spare + 1):
            node = SimulatedNode(node_id, MemoryStorage(self.bootstrap))
            node.tick_phase = self.rng.randrange(TICK_STEPS)
            self.nodes[node_id] = node
            self._start(node)
        self.proposals: dict[bytes, Proposal] = {}
        self.pending: dict[bytes, Proposal] = {}
        self.proposal_counter = 0
        self.scheduled: list[tuple[int, int, Callable[[], None]]] = []
        self.scheduled_sequence = 0
        self.loss = 0.0
        self.duplicate = 0.0
        self.delay_steps_max = LinkQuality().delay_steps_max
        self.crashes = 0
        self.partitions = 0
        self.membership_changes = 0
        self.faults = sorted(config.faults, key=lambda kind: kind.value)

    # ------------------------------------------------------------------ running

    def run(self) -> SimulationResult:
        config = self.config
        convergence_ticks = -1
        try:
            fault_steps = config.ticks * TICK_STEPS
            while self.step_now < fault_steps and not self.checker.violations:
                self._step(faults=True)
            self._end_faults()
            start = self.step_now
            deadline = start + config.liveness_ticks * TICK_STEPS
            while self.step_now < deadline and not self.checker.violations:
                self._step(faults=False)
                if self.step_now % TICK_STEPS == 0 and self._converged():
                    convergence_ticks = (self.step_now - start) // TICK_STEPS
                    break
            if not self.checker.violations:
                if convergence_ticks < 0:
                    self.checker.fail("liveness", self.step_now, self._why_not_converged())
                else:
                    self._final_checks()
        except AssertionError as error:
            self.checker.fail("assertion", self.step_now, _describe_exception(error))
        return self._result(convergence_ticks)

    def _step(self, *, faults: bool) -> None:
        self.faults_on = faults
        step = self.step_now
        touched: set[int] = set()
        if step % TICK_STEPS == 0:
            self._run_scheduled(step)
            if faults and self.faults and self.rng.random() < self.config.fault_rate:
                self._inject_fault(step)
            self._retry_proposals(step)
        if faults:
            self._maybe_propose(step, touched)
        for message in self.network.due(step):
            self._deliver(message, step, touched)
        phase = step % TICK_STEPS
        for node_id, node in self.nodes.items():
            if node.tick_phase == phase and node.raw_node is not None:
                node.raw_node.tick()
                self._observe(node, step)
                touched.add(node_id)
        for node_id in sorted(touched):
            self._handle_ready(self.nodes[node_id], step)
        self.step_now = step + 1

    def _deliver(self, message: Message, step: int, touched: set[int]) -> None:
        node = self.nodes[message.to]
        raw_node = node.raw_node
        if raw_node is None:
            return
        self.trace.update(
            b"%d %d>%d %d %d %d %d %d %d %d\n"
            % (
                step,
                message.from_,
                message.to,
                message.type,
                message.term,
                message.index,
                message.log_term,
                message.commit,
                message.reject,
                len(message.entries),
            )
        )
        try:
            raw_node.step(message)
        except UnknownPeerError:
            # A response from a node removed from the configuration: refused, as it must be.
            return
        self._observe(node, step)
        touched.add(node.node_id)

    def _observe(self, node: SimulatedNode, step: int) -> None:
        """Watch for new leaderships and leader commits (election safety, completeness)."""
        raw_node = node.raw_node
        assert raw_node is not None
        raft = raw_node.raft
        if raft.role is not Role.LEADER:
            return
        log = raft.log
        if node.led_term != raft.term:
            node.led_term = raft.term
            node.leader_commit_seen = 0
            self.checker.observe_leader(step, node.node_id, raft.term, _term_lookup(raft.log))
            self._event(f"{node.node_id} leads term {raft.term}")
        committed = log.committed
        if committed > node.leader_commit_seen:
            node.leader_commit_seen = committed
            entry_term = log.term(committed)
            if entry_term is not None:
                self.checker.observe_leader_commit(raft.term, committed, entry_term)

    def _handle_ready(self, node: SimulatedNode, step: int) -> None:
        raw_node = node.raw_node
        if raw_node is None:
            return
        while True:
            ready = raw_node.ready()
            if ready is None:
                break
            for action in ready_steps(raw_node, ready):
                self._carry_out(node, action, step)
                if self._crashes_mid_ready():
                    self._crash(node, step)  # the rest of this Ready never happens
                    return
            self._observe(node, step)
        self._maybe_snapshot(node)

    def _crashes_mid_ready(self) -> bool:
        rate = self.config.crash_mid_ready_rate
        if rate == 0.0 or not self.faults_on:
            return False
        down = sum(1 for node in self.nodes.values() if node.raw_node is None)
        return down < max(1, self.config.node_count // 2) and self.mid_ready_rng.random() < rate

    def _carry_out(self, node: SimulatedNode, action: Step, step: int) -> None:
        """One step of a Ready (consensus.ready, the node's own loop), done at once."""
        if isinstance(action, Persist):
            if action.entries:
                self.checker.observe_persisted(step, node.node_id, action.entries)
            node.storage.persist(hard_state=action.hard_state, entries=action.entries,
                                 snapshot=action.snapshot, sync=action.sync)
        elif isinstance(action, Restore):
            records = node.restore(action.snapshot)
            self.checker.observe_restored(step, node.node_id, records)
        elif isinstance(action, Send):
            for message in action.messages:
                self.network.send(message, step)
        elif isinstance(action, ConfChangeApplied):
            assert action.conf_state is not None, action.refused
            node.conf_state = action.conf_state
        elif isinstance(action, Apply):
            entry = action.entry
            self.checker.observe_applied(step, node.node_id, entry)
            node.applied_index = entry.index
            if entry.type is not EntryType.CONF_CHANGE and entry.data:
                node.records.append((entry.index, entry.term, entry.data))
                node.payloads.add(entry.data)
                self._acknowledge(node.node_id, entry.data, step)

    def _maybe_snapshot(self, node: SimulatedNode) -> None:
        if node.applied_index - node.snapshot_index < self.config.snapshot_interval_entries:
            return
        storage = node.storage
        storage.create_snapshot(node.applied_index, node.conf_state, node.snapshot_data())
        node.snapshot_index = node.applied_index
        compact_to = node.applied_index - COMPACTION_KEEP_ENTRIES
        if compact_to >= storage.first_index():
            storage.compact(compact_to)

    # ------------------------------------------------------------------ nodes

    def _start(self, node: SimulatedNode) -> None:
        snapshot = node.storage.snapshot()
        node.restore(snapshot)
        config = self.config
        raft_config = Config(
            node_id=node.node_id,
            election_timeout_ticks=config.election_timeout_ticks,
            heartbeat_interval_ticks=config.heartbeat_interval_ticks,
            applied_index=snapshot.metadata.index,
            message_size_bytes_max=config.message_size_bytes_max,
            inflight_messages_max=config.inflight_messages_max,
            inflight_bytes_max=max(config.message_size_bytes_max * 4, 1024),
            bugs=config.bugs,
        )
        node.raw_node = RawNode(raft_config, node.storage, random.Random(self.rng.getrandbits(64)))
        node.led_term = 0
        node.leader_commit_seen = 0

    def _crash(self, node: SimulatedNode, step: int) -> None:
        node.storage.crash()
        node.raw_node = None
        self.crashes += 1
        self._event(f"crash {node.node_id}")
        downtime_ticks = self.rng.randint(3, self.config.fault_duration_ticks_max)
        self._schedule(step + downtime_ticks * TICK_STEPS, lambda: self._restart(node))

    def _restart(self, node: SimulatedNode) -> None:
        if node.raw_node is not None:
            return
        self._event(f"restart {node.node_id}")
        self._start(node)

    def _live(self) -> list[SimulatedNode]:
        return [node for node in self.nodes.values() if node.raw_node is not None]

    def _leader(self) -> SimulatedNode | None:
        """The live leader of the highest term, if any."""
        best: SimulatedNode | None = None
        for node in self._live():
            assert node.raw_node is not None
            raft = node.raw_node.raft
            if raft.role is Role.LEADER and (
                best is None or raft.term > best.raw_node.raft.term  # type: ignore[union-attr]
            ):
                best = node
        return best

    # ------------------------------------------------------------------ clients

    def _maybe_propose(self, step: int, touched: set[int]) -> None:
        config = self.config
        if len(self.pending) >= config.pending_proposals_max:
            return
        if self.rng.random() >= config.proposal_rate / TICK_STEPS:
            return
        self.proposal_counter += 1
        payload = b"s%d-p%d" % (config.seed, self.proposal_counter)
        proposal = Proposal(payload)
        self.proposals[payload] = proposal
        self.pending[payload] = proposal
        self._submit(proposal, step, touched)

    def _submit(self, proposal: Proposal, step: int, touched: set[int]) -> None:
        proposal.last_attempt_step = step
        live = self._live()
        if not live:
            return
        node = live[self.rng.randrange(len(live))]
        assert node.raw_node is not None
        outcome = node.raw_node.propose(proposal.payload)
        self._event(f"propose {proposal.payload.decode()} via {node.node_id}: {outcome.name}")
        if outcome.accepted:
            proposal.via.add(node.node_id)
        touched.add(node.node_id)

    def _retry_proposals(self, step: int) -> None:
        retry_steps = 2 * self.config.election_timeout_ticks * TICK_STEPS
        touched: set[int] = set()
        for proposal in list(self.pending.values()):
            if step - proposal.last_attempt_step >= retry_steps:
                self._submit(proposal, step, touched)
        for node_id in sorted(touched):
            self._handle_ready(self.nodes[node_id], step)

    def _acknowledge(self, node_id: int, payload: bytes, step: int) -> None:
        proposal = self.pending.get(payload)
        if proposal is not None and node_id in proposal.via:
            proposal.acknowledged_step = step
            del self.pending[payload]

    # ------------------------------------------------------------------ faults

    def _schedule(self, step: int, action: Callable[[], None]) -> None:
        self.scheduled_sequence += 1
        heapq.heappush(self.scheduled, (step, self.scheduled_sequence, action))

    def _run_scheduled(self, step: int) -> None:
        while self.scheduled and self.scheduled[0][0] <= step:
            heapq.heappop(self.scheduled)[2]()

    def _inject_fault(self, step: int) -> None:
        kind = self.faults[self.rng.randrange(len(self.faults))]
        rng = self.rng
        duration_steps = rng.randint(3, self.config.fault_duration_ticks_max) * TICK_STEPS
        everyone = set(self.nodes)
        if kind is FaultKind.PARTITION:
            leader = self._leader()
            if leader is not None and rng.random() < 0.5:
                # Isolate the leader, perhaps with one follower (Jepsen's partition-leader).
                group = {leader.node_id}
                if rng.random() < 0.5:
                    group.add(self._pick(sorted(everyone - group)))
            else:
                size = rng.randint(1, max(1, len(everyone) // 2))
                group = set(rng.sample(sorted(everyone), size))
            self.network.blocked.clear()
            self.network.partition(group, everyone)
            self.partitions += 1
            self._event(f"partition {sorted(group)}")
            self._schedule(step + duration_steps, self._heal_partitions)
        elif kind is FaultKind.ONE_WAY:
            sender, receiver = rng.sample(sorted(everyone), 2)
            self.network.blocked.add((sender, receiver))
            self.partitions += 1
            self._event(f"block {sender}->{receiver}")
            self._schedule(
                step + duration_steps, lambda: self.network.blocked.discard((sender, receiver))
            )
        elif kind is FaultKind.CRASH:
            self._crash_fault(step)
        elif kind is FaultKind.MEMBERSHIP:
            self._membership_fault(step)
        else:
            self._link_fault(kind, duration_steps, step)

    def _heal_partitions(self) -> None:
        self.network.blocked.clear()
        self._event("heal")

    def _link_fault(self, kind: FaultKind, duration_steps: int, step: int) -> None:
        rng = self.rng
        if kind is FaultKind.LOSS:
            self.loss = rng.uniform(0.05, 0.3)
        elif kind is FaultKind.DUPLICATE:
            self.duplicate = rng.uniform(0.05, 0.3)
        elif rng.random() < 0.5:
            self.delay_steps_max = rng.randint(15, 60)
        else:
            # One slow, reordering link.
            sender, receiver = rng.sample(sorted(self.nodes), 2)
            self.network.link_quality[(sender, receiver)] = LinkQuality(
                delay_steps_min=1, delay_steps_max=rng.randint(20, 80)
            )
        self._event(f"link fault {kind.value}")
        self._apply_link_quality()
        self._schedule(step + duration_steps, lambda: self._restore_link(kind))

    def _restore_link(self, kind: FaultKind) -> None:
        if kind is FaultKind.LOSS:
            self.loss = 0.0
        elif kind is FaultKind.DUPLICATE:
            self.duplicate = 0.0
        else:
            self.delay_steps_max = LinkQuality().delay_steps_max
            self.network.link_quality.clear()
        self._apply_link_quality()

    def _apply_link_quality(self) -> None:
        self.network.quality = LinkQuality(
            delay_steps_min=1,
            delay_steps_max=self.delay_steps_max,
            loss_probability=self.loss,
            duplicate_probability=self.duplicate,
        )

    def _crash_fault(self, step: int) -> None:
        down = sum(1 for node in self.nodes.values() if node.raw_node is None)
        if down >= max(1, self.config.node_count // 2):
            return
        leader = self._leader()
        if leader is not None and self.rng.random() < 0.5:
            # Kill the leader (Jepsen's kill-leader): elections and log repair follow.
            self._crash(leader, step)
            return
        live = self._live()
        if live:
            self._crash(live[self.rng.randrange(len(live))], step)

    def _membership_fault(self, step: int) -> None:
        leader = self._leader()
        if leader is None:
            return
        assert leader.raw_node is not None
        raft = leader.raw_node.raft
        config = raft.tracker.config
        if config.joint or raft.pending_conf_index > raft.log.applied:
            return
        voters = sorted(config.voters_incoming)
        learners = sorted(config.learners)
        outsiders = [node_id for node_id in sorted(self.nodes) if node_id not in voters + learners]
        options: list[tuple[ConfChangeSingle, ...]] = []
        if len(voters) >= 3:
            options.append((ConfChangeSingle(ConfChangeType.REMOVE_NODE, self._pick(voters)),))
        if outsiders:
            outsider = self._pick(outsiders)
            options.append((ConfChangeSingle(ConfChangeType.ADD_LEARNER, outsider),))
            options.append((ConfChangeSingle(ConfChangeType.ADD_VOTER, outsider),))
        if learners:
            learner = self._pick(learners)
            options.append((ConfChangeSingle(ConfChangeType.ADD_VOTER, learner),))
            if len(voters) >= 2:
                # Replace a voter by the learner in one joint change.
                options.append(
                    (
                        ConfChangeSingle(ConfChangeType.REMOVE_NODE, self._pick(voters)),
                        ConfChangeSingle(ConfChangeType.ADD_VOTER, learner),
                    )
                )
        if not options:
            return
        change = ConfChange(changes=options[self.rng.randrange(len(options))])
        outcome = leader.raw_node.propose_conf_change(change)
        self._event(f"conf change {change.changes} via {leader.node_id}: {outcome.name}")
        if outcome.accepted:
            self.membership_changes += 1
        self._handle_ready(leader, step)

    def _pick(self, node_ids: list[int]) -> int:
        return node_ids[self.rng.randrange(len(node_ids))]

    def _end_faults(self) -> None:
        """Faults stop: heal the network and restart every crashed node."""
        self._event("faults stop")
        self.scheduled.clear()
        self.network.heal()
        self.loss = 0.0
        self.duplicate = 0.0
        self.delay_steps_max = LinkQuality().delay_steps_max
        for node in self.nodes.values():
            if node.raw_node is None:
                self._restart(node)

    # ------------------------------------------------------------------ convergence

    def _members(self, leader: SimulatedNode) -> list[int]:
        assert leader.raw_node is not None
        config = leader.raw_node.raft.tracker.config
        return sorted(config.voters() | config.learners)

    def _converged(self) -> bool:
        return self._why_not_converged() == ""

    def _why_not_converged(self) -> str:
        leader = self._leader()
        if leader is None:
            return "no leader after faults stopped"
        assert leader.raw_node is not None
        raft = leader.raw_node.raft
        if raft.tracker.config.joint:
            return "the configuration is still joint"
        log = raft.log
        if log.term(log.committed) != raft.term:
            return f"leader {leader.node_id} has not committed an entry of its term"
        for node_id in self._members(leader):
            member = self.nodes[node_id]
            if member.raw_node is None:
                return f"member {node_id} is down"
            if member.applied_index != log.last_index():
                return (
                    f"member {node_id} applied {member.applied_index}, leader "
                    f"{leader.node_id} has {log.last_index()} (commit {log.committed})"
                )
        missing = [payload for payload in self.pending if payload not in leader.payloads]
        if missing:
            return f"{len(missing)} pending proposals not committed, e.g. {missing[0]!r}"
        return ""

    def _final_checks(self) -> None:
        leader = self._leader()
        assert leader is not None
        step = self.step_now
        acknowledged = [
            proposal.payload
            for proposal in self.proposals.values()
            if proposal.acknowledged_step >= 0
        ]
        for node_id in self._members(leader):
            payloads = self.nodes[node_id].payloads
            lost = [payload for payload in acknowledged if payload not in payloads]
            if lost:
                self.checker.fail(
                    "acknowledged proposal lost",
                    step,
                    f"node {node_id} never applied {len(lost)} acknowledged proposals, "
                    f"e.g. {lost[0]!r}",
                )
                return
        violation = check_prefixes(
            {node_id: node.records for node_id, node in self.nodes.items()}, step
        )
        if violation is None:
            violation = check_logs_match(
                {node_id: _log_contents(node) for node_id, node in self.nodes.items()}, step
            )
        if violation is not None:
            self.checker.violations.append(violation)

    # ------------------------------------------------------------------ output

    def _event(self, text: str) -> None:
        self.trace.update(b"%d %s\n" % (self.step_now, text.encode()))

    def _result(self, convergence_ticks: int) -> SimulationResult:
        committed = 0
        for node in self.nodes.values():
            committed = max(committed, node.applied_index)
        return SimulationResult(
            seed=self.config.seed,
            node_count=self.config.node_count,
            ticks_simulated=self.step_now // TICK_STEPS,
            committed_entries=committed,
            proposals_submitted=len(self.proposals),
            proposals_acknowledged=sum(
                1 for proposal in self.proposals.values() if proposal.acknowledged_step >= 0
            ),
            messages_delivered=self.network.statistics.delivered,
            crashes=self.crashes,
            partitions=self.partitions,
            membership_changes=self.membership_changes,
            leaders_elected=len(self.checker.leader_of_term),
            convergence_ticks=convergence_ticks,
            violations=tuple(self.checker.violations),
            trace_hash=self.trace.hexdigest(),
        )


def _term_lookup(log: RaftLog) -> Callable[[int], int | None]:
    def term_at(index: int) -> int | None:
        if index < log.first_index() - 1:
            return None
        term = log.term(index)
        return 0 if term is None else term

    return term_at


def _log_contents(node: SimulatedNode) -> dict[int, tuple[int, EntryType, bytes]]:
    storage = node.storage
    first = storage.first_index()
    last = storage.last_index()
    if last < first:
        return {}
    return {
        entry.index: (entry.term, entry.type, entry.data)
        for entry in storage.entries(first, last + 1, NO_LIMIT)
    }


def _describe_exception(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def run_simulation(config: SimulationConfig) -> SimulationResult:
    return Simulation(config).run()
