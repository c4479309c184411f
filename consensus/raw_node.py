"""RawNode: the thread-unsafe, I/O-free face of Raft that the node's Ready loop drives.

Modelled on etcd's ``rawnode.go``. The shell owns time, disk and network::

    every tick interval:          raw_node.tick()
    on a message from a peer:     raw_node.step(message)
    on a client proposal:         raw_node.propose(data)
    then, while there is one:
        ready = raw_node.ready()
        persist ready.snapshot, ready.entries and ready.hard_state (one write, synced if
            ready.must_sync), e.g. storage.persist(...)
        if ready.snapshot: restore the application's state from it
        send ready.messages
        apply ready.committed_entries in order (for a CONF_CHANGE entry, also call
            raw_node.apply_conf_change(decode_conf_change(entry.data)))
        raw_node.advance(ready)
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.config import Config
from consensus.errors import InvalidMessageError, UnknownPeerError
from consensus.ports import NullLogger, RaftLogger, RaftStorage, RandomSource
from consensus.progress import ProgressState
from consensus.raft import Raft
from consensus.state import ProposalOutcome, Role, SnapshotStatus, SoftState
from consensus.types import (
    LOCAL_MESSAGE_TYPES,
    RESPONSE_MESSAGE_TYPES,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
)


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything Raft needs the shell to do, in one batch. The contract, in this order:

    1. **Persist** ``snapshot`` (if any), then ``entries`` (truncating any conflicting
       suffix of the stored log), then ``hard_state`` (if not None) — as one atomic write,
       synced to disk when ``must_sync`` (``RaftStorage.persist`` does exactly this).
       If ``snapshot`` is set, the application restores its state from ``snapshot.data``.
    2. **Send** ``messages``. Only now: they include vote grants and append
       acknowledgements that promise what step 1 made durable (etcd's rule), and the
       leader's appends that let followers commit what we persisted.
    3. **Apply** ``committed_entries`` in order (every one is already persisted, here or in
       an earlier Ready). For a ``CONF_CHANGE`` entry call ``RawNode.apply_conf_change``.
    4. **Advance**: ``RawNode.advance(ready)``. Only then ask for the next Ready.

    ``soft_state`` is None when leader and role did not change; ``hard_state`` is None
    when term, vote and commit did not change.
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    committed_entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    must_sync: bool


@dataclass(frozen=True, slots=True)
class PeerStatus:
    node_id: int
    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
    inflight_messages: int


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of one node's Raft state, for status pages, metrics and tests."""

    node_id: int
    hard_state: HardState
    soft_state: SoftState
    applied: int
    first_index: int
    last_index: int
    conf_state: ConfState
    lead_transferee: int
    # Filled only on the leader, in node id order.
    peers: tuple[PeerStatus, ...]


class RawNode:
    """One Raft node. Not thread-safe: one task drives it (tick, step, propose, Ready)."""

    def __init__(
        self,
        config: Config,
        storage: RaftStorage,
        random: RandomSource,
        logger: RaftLogger | None = None,
    ) -> None:
        self.raft = Raft(config, storage, random, logger if logger is not None else NullLogger())
        raft = self.raft
        self._previous_soft = SoftState(raft.lead, raft.role)
        self._previous_hard = raft.hard_state()
        self._outstanding: Ready | None = None

    # ------------------------------------------------------------------ input

    def tick(self) -> None:
        """Advance logical time by one tick (the shell calls it at a fixed interval)."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (a pre-election first when PreVote is on)."""
        self.raft.step(Message(type=MessageType.HUP, to=self.raft.id, from_=self.raft.id))

    def step(self, message: Message) -> None:
        """Handle a message from a peer. Raises InvalidMessageError / UnknownPeerError
        (both RemoteError) for messages that must be refused; nothing changes then."""
        raft = self.raft
        kind = message.type
        if kind in LOCAL_MESSAGE_TYPES:
            raise InvalidMessageError(f"{kind.name} is local and cannot come from a peer")
        if message.to != raft.id:
            raise InvalidMessageError(f"message for node {message.to} delivered to {raft.id}")
        _check_shape(message)
        if kind in RESPONSE_MESSAGE_TYPES and message.from_ not in raft.tracker.progress:
            raise UnknownPeerError(f"{kind.name} from node {message.from_} outside the config")
        raft.step(message)

    def propose(self, data: bytes) -> ProposalOutcome:
        """Propose application data. The outcome says whether it was appended (leader),
        forwarded (follower) or dropped; a dropped proposal is for the caller to retry."""
        return self.raft.propose([Entry(term=0, index=0, type=EntryType.NORMAL, data=data)])

    def propose_conf_change(self, change: ConfChange) -> ProposalOutcome:
        """Propose a membership change. The leader refuses one while an earlier change is
        not yet applied, or one that is invalid for the current configuration."""
        entry = Entry(term=0, index=0, type=EntryType.CONF_CHANGE, data=change.encode())
        return self.raft.propose([entry])

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Apply a committed CONF_CHANGE entry (call while applying it); returns the new
        configuration, which the application records for its next snapshot."""
        return self.raft.apply_conf_change(change)

    def transfer_leadership(self, target: int) -> None:
        """Ask the leader to hand leadership to ``target`` (forwarded by followers). The
        leader brings the target up to date, then tells it to campaign at once."""
        raft = self.raft
        raft.step(Message(type=MessageType.TRANSFER_LEADER, to=raft.id, from_=target))

    def report_unreachable(self, node_id: int) -> None:
        """The shell failed to send to ``node_id``: the leader stops pipelining to it."""
        self.raft.report_unreachable(node_id)

    def report_snapshot(self, node_id: int, status: SnapshotStatus) -> None:
        """How sending a snapshot went. ``advance`` already reports FINISHED for every
        snapshot message of the Ready; report FAILED if the transport knows it was lost."""
        self.raft.report_snapshot(node_id, failed=status == SnapshotStatus.FAILED)

    # ------------------------------------------------------------------ output

    def has_ready(self) -> bool:
        raft = self.raft
        log = raft.log
        if raft.messages or log.unstable.entries or log.unstable.snapshot is not None:
            return True
        if raft.broadcast_pending:
            return True
        if log.has_next_committed_entries():
            return True
        previous = self._previous_hard
        if (
            raft.term != previous.term
            or raft.vote != previous.vote
            or log.committed != previous.commit
        ):
            return True
        soft = self._previous_soft
        return raft.lead != soft.leader or raft.role != soft.role

    def ready(self) -> Ready | None:
        """The next batch of work, or None if there is none. Call ``advance`` with it
        before asking for another."""
        assert self._outstanding is None, "advance the previous Ready before the next"
        self.raft.flush_broadcast()
        if not self.has_ready():
            return None
        raft = self.raft
        log = raft.log
        soft = SoftState(raft.lead, raft.role)
        hard = raft.hard_state()
        previous = self._previous_hard
        entries = log.unstable_entries()
        snapshot = log.unstable.snapshot
        must_sync = (
            bool(entries)
            or snapshot is not None
            or hard.term != previous.term
            or hard.vote != previous.vote
        )
        if raft.bugs.release_before_sync:
            must_sync = False
        ready = Ready(
            soft_state=soft if soft != self._previous_soft else None,
            hard_state=hard if hard != previous else None,
            entries=entries,
            snapshot=snapshot,
            committed_entries=tuple(log.next_committed_entries()),
            messages=tuple(raft.messages),
            must_sync=must_sync,
        )
        raft.messages = []
        self._outstanding = ready
        if ready.soft_state is not None:
            self._previous_soft = ready.soft_state
        return ready

    def advance(self, ready: Ready) -> None:
        """Tell Raft the shell persisted, sent and applied ``ready``."""
        assert ready is self._outstanding, "advance() takes the Ready last returned"
        self._outstanding = None
        raft = self.raft
        log = raft.log
        if ready.hard_state is not None:
            self._previous_hard = ready.hard_state
        raft.reduce_uncommitted(ready.committed_entries)
        old_applied = log.applied
        new_applied = 0
        if ready.committed_entries:
            new_applied = ready.committed_entries[-1].index
        elif ready.snapshot is not None:
            new_applied = ready.snapshot.metadata.index
        if ready.entries:
            last = ready.entries[-1]
            log.stable_to(last.index, last.term)
        if ready.snapshot is not None:
            log.stable_snapshot_to(ready.snapshot.metadata.index)
        if new_applied > 0:
            log.applied_to(new_applied)
            raft.maybe_auto_leave(old_applied, new_applied)
        for message in ready.messages:
            if message.type == MessageType.SNAPSHOT:
                raft.report_snapshot(message.to, failed=False)

    def status(self) -> Status:
        raft = self.raft
        peers: tuple[PeerStatus, ...] = ()
        if raft.role == Role.LEADER:
            peers = tuple(
                PeerStatus(
                    node_id=node_id,
                    match=peer.match,
                    next=peer.next,
                    state=peer.state,
                    is_learner=peer.is_learner,
                    recent_active=peer.recent_active,
                    inflight_messages=peer.inflights.count(),
                )
                for node_id, peer in raft.tracker.sorted_peers()
            )
        return Status(
            node_id=raft.id,
            hard_state=raft.hard_state(),
            soft_state=SoftState(raft.lead, raft.role),
            applied=raft.log.applied,
            first_index=raft.log.first_index(),
            last_index=raft.log.last_index(),
            conf_state=raft.tracker.config.conf_state(),
            lead_transferee=raft.lead_transferee,
            peers=peers,
        )

    @property
    def node_id(self) -> int:
        return self.raft.id

    @property
    def leader(self) -> int:
        """The leader this node knows of (NO_NODE if none)."""
        return self.raft.lead


def _check_shape(message: Message) -> None:
    """Refuse messages whose fields contradict their type (a buggy or hostile peer)."""
    kind = message.type
    if kind in (MessageType.PROPOSAL, MessageType.TRANSFER_LEADER):
        if message.term != 0:
            raise InvalidMessageError(f"{kind.name} must carry term 0")
        if kind == MessageType.PROPOSAL and not message.entries:
            raise InvalidMessageError("PROPOSAL without entries")
        return
    if message.term == 0:
        raise InvalidMessageError(f"{kind.name} must carry a term")
    if kind == MessageType.APPEND:
        expected_index = message.index + 1
        previous_term = message.log_term
        for entry in message.entries:
            if entry.index != expected_index:
                raise InvalidMessageError("APPEND entries do not follow the message index")
            if not previous_term <= entry.term <= message.term:
                raise InvalidMessageError("APPEND entry terms are not monotonic")
            expected_index += 1
            previous_term = entry.term
    elif message.entries:
        raise InvalidMessageError(f"{kind.name} must not carry entries")
    if kind == MessageType.SNAPSHOT and (message.snapshot is None or message.snapshot.is_empty):
        raise InvalidMessageError("SNAPSHOT without a snapshot")
