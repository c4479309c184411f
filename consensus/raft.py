"""The Raft state machine (etcd's raft.go): roles, elections, replication, membership.

Pure and deterministic: input is ticks and messages, output is ``self.messages`` and the
log's state, which :class:`consensus.raw_node.RawNode` packages into a ``Ready``. Peers are
visited in id order. One departure from etcd: the leader's appends for new proposals and
for a new commit index are coalesced until the next Ready (``broadcast_pending``), so a
burst of proposals or acknowledgements costs one append per follower, not one each.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from consensus import confchange
from consensus.config import Config, RaftBugs
from consensus.log import NO_LIMIT, RaftLog
from consensus.ports import CompactedError, RaftLogger, RaftStorage, RandomSource
from consensus.progress import Progress, ProgressState
from consensus.quorum import VoteResult
from consensus.state import ProposalOutcome, Role
from consensus.tracker import ProgressTracker, TrackerConfig
from consensus.types import (
    MESSAGE_ENTRIES_MAX,
    NO_NODE,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    decode_conf_change,
)
from ledger.errors import DecodeError

# Marks a vote request sent on the leader's behalf during a leadership transfer, so voters
# grant it even inside their leader lease (etcd's campaignTransfer).
CAMPAIGN_TRANSFER_CONTEXT = b"CampaignTransfer"


class CampaignType(enum.Enum):
    PRE_ELECTION = "pre-election"
    ELECTION = "election"
    TRANSFER = "transfer"


_VOTE_RESPONSE_TYPE = {
    MessageType.VOTE: MessageType.VOTE_RESPONSE,
    MessageType.PRE_VOTE: MessageType.PRE_VOTE_RESPONSE,
}


class Raft:
    """One node's Raft state. Drive it through :class:`~consensus.raw_node.RawNode`."""

    def __init__(
        self, config: Config, storage: RaftStorage, random: RandomSource, logger: RaftLogger
    ) -> None:
        config.validate()
        self.id = config.node_id
        self.config = config
        self.bugs: RaftBugs = config.bugs
        self.random = random
        self.logger = logger
        self.log = RaftLog(storage, config.committed_bytes_per_ready_max)
        self.tracker = ProgressTracker(config.inflight_messages_max, config.inflight_bytes_max)
        self.term = 0
        self.vote = NO_NODE
        self.lead = NO_NODE
        self.role = Role.FOLLOWER
        self.is_learner = False
        self.messages: list[Message] = []
        self.lead_transferee = NO_NODE
        # Index of the latest configuration change the leader appended: no new change is
        # accepted until the application has applied it.
        self.pending_conf_index = 0
        self.uncommitted_bytes = 0
        # Appends to every follower are due (coalesced until the next Ready).
        self.broadcast_pending = False
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_timeout_ticks

        hard_state, conf_state = storage.initial_state()
        self._restore_configuration(conf_state)
        if hard_state != HardState():
            self._load_hard_state(hard_state)
        if config.applied_index > 0:
            self._restore_applied(config.applied_index)
        self.become_follower(self.term, NO_NODE)
        self.logger.info(
            "raft node started",
            node=self.id,
            term=self.term,
            commit=self.log.committed,
            applied=self.log.applied,
            last_index=self.log.last_index(),
            configuration=self.tracker.config.describe(),
        )

    # ------------------------------------------------------------------ start-up

    def _restore_configuration(self, conf_state: ConfState) -> None:
        confchange.restore(self.tracker, conf_state, self.log.last_index())
        peer = self.tracker.progress.get(self.id)
        self.is_learner = peer is not None and peer.is_learner

    def _load_hard_state(self, hard_state: HardState) -> None:
        log = self.log
        assert hard_state.commit <= log.last_index(), (
            f"hard state commit {hard_state.commit} is beyond the last index "
            f"{log.last_index()}: was the log lost?"
        )
        # A commit-only hard state change is not synced, so the durable commit index may be
        # below the compacted prefix (which a snapshot of applied, hence committed, state
        # covers); keep the higher of the two.
        log.committed = max(log.committed, hard_state.commit)
        self.term = hard_state.term
        self.vote = hard_state.vote

    def _restore_applied(self, applied: int) -> None:
        # The application may have applied past the persisted commit index (a commit-only
        # hard state change is not synced); what it applied was committed, so commit it.
        assert applied <= self.log.last_index(), (
            f"applied index {applied} is beyond the last index {self.log.last_index()}"
        )
        self.log.commit_to(applied)
        if applied > self.log.applied:
            self.log.applied_to(applied)

    # ------------------------------------------------------------------ state

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def promotable(self) -> bool:
        """Whether this node may campaign: a voter without a snapshot being installed."""
        peer = self.tracker.progress.get(self.id)
        return peer is not None and not peer.is_learner and not self.log.has_pending_snapshot()

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NO_NODE
        self.lead = NO_NODE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self._abort_leader_transfer()
        self.tracker.reset_votes()
        last_index = self.log.last_index()
        new_inflights = self.tracker.new_inflights
        for node_id, peer in self.tracker.progress.items():
            fresh = Progress(
                next_index=last_index + 1,
                inflights=new_inflights(),
                is_learner=peer.is_learner,
                match=last_index if node_id == self.id else 0,
            )
            self.tracker.progress[node_id] = fresh
        self.pending_conf_index = 0
        self.uncommitted_bytes = 0

    def _reset_randomized_election_timeout(self) -> None:
        timeout = self.config.election_timeout_ticks
        self.randomized_election_timeout = self.random.randrange(timeout, 2 * timeout)

    def become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def _become_candidate(self) -> None:
        assert self.role != Role.LEADER, "invalid transition leader -> candidate"
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self.logger.info("became candidate", node=self.id, term=self.term)

    def _become_pre_candidate(self) -> None:
        assert self.role != Role.LEADER, "invalid transition leader -> pre-candidate"
        # Neither the term nor the vote changes: a pre-election disturbs nobody.
        self.tracker.reset_votes()
        self.lead = NO_NODE
        self.role = Role.PRE_CANDIDATE
        self.logger.info("became pre-candidate", node=self.id, term=self.term)

    def _become_leader(self) -> None:
        assert self.role != Role.FOLLOWER, "invalid transition follower -> leader"
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        own = self.tracker.progress[self.id]
        own.become_replicate()
        own.recent_active = True
        # There may be an unapplied configuration change in the log; refuse new ones until
        # everything we have is applied (cheaper than scanning the tail for one).
        self.pending_conf_index = self.log.last_index()
        # The no-op entry of the new term: committing it commits every earlier entry.
        appended = self._append_entries([Entry(term=0, index=0, type=EntryType.NORMAL, data=b"")])
        assert appended, "an empty entry is never refused"
        self.logger.info("became leader", node=self.id, term=self.term)

    def _send(self, message_type: MessageType, to: int, **fields: Any) -> None:
        """Queue a message from us, stamped with our current term."""
        self.messages.append(
            Message(type=message_type, to=to, from_=self.id, term=self.term, **fields)
        )

    # ------------------------------------------------------------------ ticks

    def tick(self) -> None:
        if self.role == Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout and self.promotable():
            self.election_elapsed = 0
            self.step(Message(type=MessageType.HUP, to=self.id, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_timeout_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum:
                self.step(Message(type=MessageType.CHECK_QUORUM, to=self.id, from_=self.id))
            # A transfer that did not finish within an election timeout is abandoned.
            if self.role == Role.LEADER and self.lead_transferee != NO_NODE:
                self._abort_leader_transfer()
                if self._removed_while_leading():
                    self.logger.info("stepped down: removed from the configuration; the "
                                     "hand-over did not finish", node=self.id)
                    self.become_follower(self.term, NO_NODE)
        if self.role != Role.LEADER:
            return
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks:
            self.heartbeat_elapsed = 0
            self.step(Message(type=MessageType.BEAT, to=self.id, from_=self.id))

    # ------------------------------------------------------------------ step

    def step(self, message: Message) -> None:
        """Handle one message: first by its term, then by its type and our role."""
        if message.term > self.term:
            if not self._step_higher_term(message):
                return
        elif 0 < message.term < self.term:
            self._step_lower_term(message)
            return
        kind = message.type
        if kind == MessageType.HUP:
            self._hup(CampaignType.PRE_ELECTION if self.config.pre_vote else CampaignType.ELECTION)
        elif kind == MessageType.VOTE or kind == MessageType.PRE_VOTE:
            self._handle_vote_request(message)
        elif kind == MessageType.PROPOSAL:
            self.propose(message.entries)
        elif self.role == Role.LEADER:
            self._step_leader(message)
        elif self.role == Role.FOLLOWER:
            self._step_follower(message)
        else:
            self._step_candidate(message)

    def _step_higher_term(self, message: Message) -> bool:
        """A message from a later term; return whether to go on handling it."""
        kind = message.type
        if kind == MessageType.VOTE or kind == MessageType.PRE_VOTE:
            forced = message.context == CAMPAIGN_TRANSFER_CONTEXT
            in_lease = (
                self.config.check_quorum
                and self.lead != NO_NODE
                and self.election_elapsed < self.config.election_timeout_ticks
            )
            if in_lease and not forced:
                # Leader lease: we heard from a live leader within the minimum election
                # timeout, so neither update our term nor grant the vote.
                return False
        if kind == MessageType.PRE_VOTE:
            # A pre-vote never changes our term.
            return True
        if kind == MessageType.PRE_VOTE_RESPONSE and not message.reject:
            # Pre-vote requests carry the term we would campaign at; a grant keeps it.
            return True
        if kind in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
            self.become_follower(message.term, message.from_)
        else:
            self.become_follower(message.term, NO_NODE)
        return True

    def _step_lower_term(self, message: Message) -> None:
        kind = message.type
        config = self.config
        if (config.check_quorum or config.pre_vote) and kind in (
            MessageType.HEARTBEAT,
            MessageType.APPEND,
        ):
            # A leader of an older term: tell it our term so it steps down. Without this,
            # a node that advanced its term while partitioned could never rejoin, since
            # with CheckQuorum/PreVote nobody adopts its term from a vote request.
            self._send(MessageType.APPEND_RESPONSE, message.from_)
        elif kind == MessageType.PRE_VOTE:
            # Reject explicitly, so the pre-candidate learns our term.
            self._send(MessageType.PRE_VOTE_RESPONSE, message.from_, reject=True)
        # Anything else from an older term is stale and ignored.

    def _handle_vote_request(self, message: Message) -> None:
        can_vote = (
            # a repeat of the vote we already cast,
            self.vote == message.from_
            # or we have not voted and know no leader in this term,
            or (self.vote == NO_NODE and self.lead == NO_NODE)
            # or a pre-vote for a future term.
            or (message.type == MessageType.PRE_VOTE and message.term > self.term)
        )
        if self.bugs.vote_twice and message.type == MessageType.VOTE:
            can_vote = True
        response_type = _VOTE_RESPONSE_TYPE[message.type]
        if can_vote and self.log.is_up_to_date(message.index, message.log_term):
            # Learners answer too: the candidate may know a configuration in which we are
            # a voter; it counts only voters of its own configuration.
            self.messages.append(
                Message(type=response_type, to=message.from_, from_=self.id, term=message.term)
            )
            if message.type == MessageType.VOTE:
                self.election_elapsed = 0
                self.vote = message.from_
        else:
            self._send(response_type, message.from_, reject=True)

    # ------------------------------------------------------------------ elections

    def _hup(self, campaign_type: CampaignType) -> None:
        if self.role == Role.LEADER:
            return
        if not self.promotable():
            self.logger.warning("cannot campaign: not a voter", node=self.id, term=self.term)
            return
        if self._has_unapplied_conf_change():
            self.logger.warning(
                "cannot campaign: a committed configuration change is not applied yet",
                node=self.id,
                term=self.term,
            )
            return
        self._campaign(campaign_type)

    def _has_unapplied_conf_change(self) -> bool:
        log = self.log
        if log.committed <= log.applied:
            return False
        unapplied = log.slice(log.applied + 1, log.committed + 1, NO_LIMIT, NO_LIMIT)
        return any(entry.type == EntryType.CONF_CHANGE for entry in unapplied)

    def _campaign(self, campaign_type: CampaignType) -> None:
        if campaign_type == CampaignType.PRE_ELECTION:
            self._become_pre_candidate()
            vote_type = MessageType.PRE_VOTE
            # Ask at the term we would campaign at, without adopting it yet.
            term = self.term + 1
        else:
            self._become_candidate()
            vote_type = MessageType.VOTE
            term = self.term
        if self._poll(self.id, True) == VoteResult.WON:
            # A single-voter configuration: we won by our own vote.
            if campaign_type == CampaignType.PRE_ELECTION:
                self._campaign(CampaignType.ELECTION)
            else:
                self._become_leader()
            return
        context = CAMPAIGN_TRANSFER_CONTEXT if campaign_type == CampaignType.TRANSFER else b""
        last_index = self.log.last_index()
        last_term = self.log.last_term()
        for node_id in sorted(self.tracker.config.voters()):
            if node_id == self.id:
                continue
            self.messages.append(
                Message(
                    type=vote_type,
                    to=node_id,
                    from_=self.id,
                    term=term,
                    index=last_index,
                    log_term=last_term,
                    context=context,
                )
            )

    def _poll(self, node_id: int, granted: bool) -> VoteResult:
        self.tracker.record_vote(node_id, granted)
        return self.tracker.tally_votes()[2]

    def _step_candidate(self, message: Message) -> None:
        kind = message.type
        # Only count responses to our current kind of campaign (a candidate may still
        # receive pre-vote responses from its pre-candidacy in this term).
        expected = (
            MessageType.PRE_VOTE_RESPONSE
            if self.role == Role.PRE_CANDIDATE
            else MessageType.VOTE_RESPONSE
        )
        if kind == MessageType.APPEND:
            self.become_follower(message.term, message.from_)
            self._handle_append(message)
        elif kind == MessageType.HEARTBEAT:
            self.become_follower(message.term, message.from_)
            self._handle_heartbeat(message)
        elif kind == MessageType.SNAPSHOT:
            self.become_follower(message.term, message.from_)
            self._handle_snapshot(message)
        elif kind == expected:
            result = self._poll(message.from_, not message.reject)
            if result == VoteResult.WON:
                if self.role == Role.PRE_CANDIDATE:
                    self._campaign(CampaignType.ELECTION)
                else:
                    self._become_leader()
                    self._broadcast_append()
            elif result == VoteResult.LOST:
                # A pre-vote response may carry a later term; keep ours.
                self.become_follower(self.term, NO_NODE)

    # ------------------------------------------------------------------ followers

    def _step_follower(self, message: Message) -> None:
        kind = message.type
        if kind == MessageType.APPEND:
            self.election_elapsed = 0
            self.lead = message.from_
            self._handle_append(message)
        elif kind == MessageType.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = message.from_
            self._handle_heartbeat(message)
        elif kind == MessageType.SNAPSHOT:
            self.election_elapsed = 0
            self.lead = message.from_
            self._handle_snapshot(message)
        elif kind == MessageType.TRANSFER_LEADER:
            if self.lead != NO_NODE:
                # Forwarded as is: ``from_`` names the transfer target.
                self.messages.append(
                    Message(type=MessageType.TRANSFER_LEADER, to=self.lead, from_=message.from_)
                )
        elif kind == MessageType.TIMEOUT_NOW:
            # The leader hands over: campaign now, skipping the pre-vote and the leases.
            self._hup(CampaignType.TRANSFER)

    def _handle_append(self, message: Message) -> None:
        log = self.log
        if message.index < log.committed:
            self._send(MessageType.APPEND_RESPONSE, message.from_, index=log.committed)
            return
        last_new = log.maybe_append(
            message.index, message.log_term, message.commit, message.entries
        )
        if last_new is not None:
            self._send(MessageType.APPEND_RESPONSE, message.from_, index=last_new)
            return
        # Our log does not match at message.index. Hint the leader where it may match: the
        # last index at or below it whose term is at most the leader's term there, so the
        # leader skips a whole divergent term per round trip instead of one entry.
        hint_index = log.find_conflict_by_term(
            min(message.index, log.last_index()), message.log_term
        )
        hint_term = log.term(hint_index)
        assert hint_term is not None, f"hint index {hint_index} has no term"
        self._send(
            MessageType.APPEND_RESPONSE,
            message.from_,
            index=message.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )

    def _handle_heartbeat(self, message: Message) -> None:
        self.log.commit_to(message.commit)
        self._send(MessageType.HEARTBEAT_RESPONSE, message.from_, context=message.context)

    def _handle_snapshot(self, message: Message) -> None:
        snapshot = message.snapshot
        if snapshot is None:
            return
        index = self.log.last_index() if self._restore(snapshot) else self.log.committed
        self._send(MessageType.APPEND_RESPONSE, message.from_, index=index)

    def _restore(self, snapshot: Snapshot) -> bool:
        """Install ``snapshot`` unless we already have what it covers."""
        metadata = snapshot.metadata
        if metadata.index <= self.log.committed:
            return False
        if self.role != Role.FOLLOWER:
            # Defence in depth: only a follower installs snapshots.
            self.become_follower(self.term + 1, NO_NODE)
            return False
        conf_state = metadata.conf_state
        # Unlike etcd, a snapshot whose configuration does not include us is installed: a
        # node added after the leader's latest snapshot gets exactly that, and catches up
        # to the change that adds it from the log, as a joining node does from the
        # bootstrap configuration (no code here assumes we are in the configuration).
        if confchange.conf_state_problem(conf_state) is not None:
            self.logger.warning("ignored a snapshot with an invalid configuration", node=self.id)
            return False
        if self.log.match_term(metadata.index, metadata.term):
            # We have the entry it ends at: just fast-forward the commit index.
            self.log.commit_to(metadata.index)
            return False
        self.log.restore(snapshot)
        self.tracker = ProgressTracker(
            self.config.inflight_messages_max, self.config.inflight_bytes_max
        )
        self._restore_configuration(conf_state)
        self.logger.info(
            "restored snapshot",
            node=self.id,
            index=metadata.index,
            term=metadata.term,
            configuration=self.tracker.config.describe(),
        )
        return True

    # ------------------------------------------------------------------ proposals

    def propose(self, entries: Sequence[Entry]) -> ProposalOutcome:
        """Propose ``entries`` (term and index are assigned by the leader)."""
        assert entries, "proposed no entries"
        if self.role == Role.LEADER:
            return self._leader_propose(entries)
        if self.role != Role.FOLLOWER or self.lead == NO_NODE:
            return ProposalOutcome.DROPPED_NO_LEADER
        if not self.config.proposal_forwarding:
            return ProposalOutcome.DROPPED_FORWARDING_DISABLED
        self.messages.append(
            Message(
                type=MessageType.PROPOSAL, to=self.lead, from_=self.id, entries=tuple(entries)
            )
        )
        return ProposalOutcome.FORWARDED

    def _leader_propose(self, entries: Sequence[Entry]) -> ProposalOutcome:
        if self.id not in self.tracker.progress:
            # We were removed from the configuration while leading.
            return ProposalOutcome.DROPPED_NOT_MEMBER
        if self.lead_transferee != NO_NODE:
            return ProposalOutcome.DROPPED_LEADERSHIP_TRANSFER
        prepared = list(entries)
        pending_conf_index = self.pending_conf_index
        last_index = self.log.last_index()
        for position, entry in enumerate(entries):
            if entry.type != EntryType.CONF_CHANGE:
                continue
            refusal = self._conf_change_refusal(entry.data, pending_conf_index)
            if refusal is None:
                pending_conf_index = last_index + position + 1
                continue
            self.logger.warning("refused configuration change", node=self.id, reason=refusal)
            if len(entries) == 1:
                return ProposalOutcome.DROPPED_CONF_CHANGE_REFUSED
            # Within a batch, keep the positions of the other entries (etcd does the same).
            prepared[position] = Entry(term=0, index=0, type=EntryType.NORMAL, data=b"")
        if not self._append_entries(prepared):
            return ProposalOutcome.DROPPED_UNCOMMITTED_LIMIT
        self.pending_conf_index = pending_conf_index
        # Sent when the shell next asks for a Ready, so that every proposal made until
        # then goes out in one append per follower.
        self.broadcast_pending = True
        return ProposalOutcome.APPENDED

    def _conf_change_refusal(self, data: bytes, pending_conf_index: int) -> str | None:
        """Why a proposed configuration change must be refused, or None."""
        try:
            change = decode_conf_change(data)
        except DecodeError as error:
            return f"undecodable: {error}"
        if pending_conf_index > self.log.applied:
            return "an earlier configuration change is not applied yet"
        joint = self.tracker.config.joint
        if joint and not change.leaves_joint:
            return "must leave the joint configuration first"
        if not joint and change.leaves_joint:
            return "not in a joint configuration"
        try:
            confchange.Changer(self.tracker, self.log.last_index()).apply(change)
        except confchange.ConfChangeError as error:
            return str(error)
        return None

    def _append_entries(self, entries: Sequence[Entry], *, forced: bool = False) -> bool:
        last_index = self.log.last_index()
        term = self.term
        stamped = [
            Entry(term=term, index=last_index + 1 + position, type=entry.type, data=entry.data)
            for position, entry in enumerate(entries)
        ]
        size_bytes = sum(len(entry.data) for entry in stamped)
        limit = self.config.uncommitted_bytes_max
        if (
            not forced
            and self.uncommitted_bytes > 0
            and size_bytes > 0
            and self.uncommitted_bytes + size_bytes > limit
        ):
            return False
        self.uncommitted_bytes += size_bytes
        last_index = self.log.append(stamped)
        self.tracker.progress[self.id].maybe_update(last_index)
        self._maybe_commit()
        return True

    def reduce_uncommitted(self, entries: Sequence[Entry]) -> None:
        if self.uncommitted_bytes == 0:
            return
        size_bytes = sum(len(entry.data) for entry in entries)
        self.uncommitted_bytes = max(0, self.uncommitted_bytes - size_bytes)

    # ------------------------------------------------------------------ leaders

    def _maybe_commit(self) -> bool:
        index = self.tracker.committed_index()
        log = self.log
        if self.bugs.commit_previous_term:
            if log.committed < index <= log.last_index():
                log.commit_to(index)
                return True
            return False
        # Only an entry of the current term is committed by counting replicas; earlier
        # entries are committed with it (Raft paper, section 5.4.2).
        return log.maybe_commit(index, self.term)

    def _step_leader(self, message: Message) -> None:
        kind = message.type
        if kind == MessageType.BEAT:
            self._broadcast_heartbeat()
            return
        if kind == MessageType.CHECK_QUORUM:
            self._check_quorum()
            return
        peer = self.tracker.progress.get(message.from_)
        if peer is None:
            return
        if kind == MessageType.APPEND_RESPONSE:
            self._handle_append_response(message, peer)
        elif kind == MessageType.HEARTBEAT_RESPONSE:
            self._handle_heartbeat_response(message, peer)
        elif kind == MessageType.SNAPSHOT_STATUS:
            self._handle_snapshot_status(message, peer)
        elif kind == MessageType.UNREACHABLE:
            # An append in flight was probably lost: stop pipelining and probe.
            if peer.state == ProgressState.REPLICATE:
                peer.become_probe()
        elif kind == MessageType.TRANSFER_LEADER:
            self._handle_transfer_leader(message, peer)

    def _check_quorum(self) -> None:
        own = self.tracker.progress.get(self.id)
        if own is not None:
            own.recent_active = True
        if not self.tracker.quorum_active():
            self.logger.warning(
                "stepped down: no quorum heard within an election timeout",
                node=self.id,
                term=self.term,
            )
            self.become_follower(self.term, NO_NODE)
        # Everyone but us must prove themselves active again in the next period.
        for node_id, peer in self.tracker.progress.items():
            if node_id != self.id:
                peer.recent_active = False

    def _handle_append_response(self, message: Message, peer: Progress) -> None:
        peer.recent_active = True
        if message.reject:
            next_probe = message.reject_hint
            if message.log_term > 0:
                next_probe = self.log.find_conflict_by_term(message.reject_hint, message.log_term)
            if peer.maybe_decrease_to(message.index, next_probe):
                if peer.state == ProgressState.REPLICATE:
                    peer.become_probe()
                self._maybe_send_append(message.from_)
            return
        was_paused = peer.is_paused()
        if not peer.maybe_update(message.index):
            return
        if peer.state == ProgressState.PROBE:
            peer.become_replicate()
        elif peer.state == ProgressState.SNAPSHOT:
            if peer.match + 1 >= self.log.first_index():
                # The log covers what the follower needs again.
                peer.become_probe()
                peer.become_replicate()
        else:
            peer.inflights.free_up_to(message.index)
        if self._maybe_commit():
            # Tell everyone the new commit index once, however many acknowledgements
            # arrive before the next Ready.
            self.broadcast_pending = True
        elif was_paused and not self.broadcast_pending:
            # Unpaused: probe on (the pending broadcast would do it otherwise).
            self._maybe_send_append(message.from_)
        # Send as many (size-limited) appends as flow control allows, without empty ones.
        while self._maybe_send_append(message.from_, send_if_empty=False):
            pass
        if message.from_ == self.lead_transferee and peer.match == self.log.last_index():
            self._send_timeout_now(message.from_)
            if self._removed_while_leading():
                self.logger.info("stepped down: removed from the configuration", node=self.id)
                self.become_follower(self.term, NO_NODE)

    def _handle_heartbeat_response(self, message: Message, peer: Progress) -> None:
        peer.recent_active = True
        peer.probe_sent = False
        # Free one slot of a full window so a lost acknowledgement cannot stall us forever.
        if peer.state == ProgressState.REPLICATE and peer.inflights.full():
            peer.inflights.free_first()
        if peer.match < self.log.last_index():
            self._maybe_send_append(message.from_)

    def _handle_snapshot_status(self, message: Message, peer: Progress) -> None:
        if peer.state != ProgressState.SNAPSHOT:
            return
        if message.reject:
            # Probe from before the snapshot, which never arrived.
            peer.pending_snapshot = 0
        peer.become_probe()
        # Wait for the follower's answer (or a heartbeat response) before the next append.
        peer.probe_sent = True

    def _handle_transfer_leader(self, message: Message, peer: Progress) -> None:
        if peer.is_learner:
            return
        target = message.from_
        if self.lead_transferee != NO_NODE:
            if self.lead_transferee == target:
                return
            self._abort_leader_transfer()
        if target == self.id:
            return
        # The transfer must finish within an election timeout.
        self.election_elapsed = 0
        self.lead_transferee = target
        self.logger.info("leadership transfer started", node=self.id, target=target)
        if peer.match == self.log.last_index():
            self._send_timeout_now(target)
        else:
            self._maybe_send_append(target)

    def _send_timeout_now(self, to: int) -> None:
        self._send(MessageType.TIMEOUT_NOW, to)

    def _abort_leader_transfer(self) -> None:
        self.lead_transferee = NO_NODE

    def flush_broadcast(self) -> None:
        """Send the appends deferred by proposals and commit advances (RawNode calls this
        before it builds a Ready)."""
        if self.broadcast_pending:
            self.broadcast_pending = False
            if self.role == Role.LEADER:
                self._broadcast_append()

    def _broadcast_append(self) -> None:
        """Send every follower what it lacks (at least the commit index), in as many
        size-limited appends as its flow control allows."""
        for node_id in sorted(self.tracker.progress):
            if node_id != self.id and self._maybe_send_append(node_id):
                while self._maybe_send_append(node_id, send_if_empty=False):
                    pass

    def _broadcast_heartbeat(self) -> None:
        committed = self.log.committed
        for node_id, peer in self.tracker.sorted_peers():
            if node_id == self.id:
                continue
            # Never tell a follower to commit beyond what it is known to hold.
            self._send(MessageType.HEARTBEAT, node_id, commit=min(peer.match, committed))

    def _maybe_send_append(self, to: int, send_if_empty: bool = True) -> bool:
        """Send ``to`` the entries it lacks (or a snapshot); return whether we sent."""
        peer = self.tracker.progress[to]
        if peer.is_paused():
            return False
        log = self.log
        previous_index = peer.next - 1
        assert previous_index <= log.last_index(), f"next {peer.next} is beyond our log"
        previous_term = log.term(previous_index)
        entries: list[Entry] | None = None
        if previous_term is not None:
            try:
                entries = log.entries(
                    peer.next, self.config.message_size_bytes_max, MESSAGE_ENTRIES_MAX
                )
            except CompactedError:
                entries = None
        if previous_term is None or entries is None:
            return self._maybe_send_snapshot(to, peer)
        if not entries and not send_if_empty:
            return False
        self._send(
            MessageType.APPEND,
            to,
            log_term=previous_term,
            index=previous_index,
            entries=tuple(entries),
            commit=log.committed,
        )
        if entries:
            size_bytes = sum(len(entry.data) for entry in entries)
            peer.on_entries_sent(entries[-1].index, len(entries), size_bytes)
        return True

    def _maybe_send_snapshot(self, to: int, peer: Progress) -> bool:
        if not peer.recent_active:
            # Do not ship a snapshot to a peer that may be down.
            return False
        snapshot = self.log.snapshot()
        assert not snapshot.is_empty, "entries are compacted but there is no snapshot"
        peer.become_snapshot(snapshot.metadata.index)
        self.logger.info(
            "sending snapshot", node=self.id, to=to, index=snapshot.metadata.index
        )
        self._send(MessageType.SNAPSHOT, to, snapshot=snapshot)
        return True

    # ------------------------------------------------------------------ membership

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Apply a committed configuration change; return the new configuration."""
        changer = confchange.Changer(self.tracker, self.log.last_index())
        try:
            config, progress = changer.apply(change)
        except confchange.ConfChangeError as error:
            # Refused at proposal time on the leader, so unreachable unless the entry was
            # written by a buggy or older leader; every node skips it the same way.
            self.logger.warning("skipped invalid configuration change", reason=str(error))
            return self.tracker.config.conf_state()
        return self._switch_to_config(config, progress)

    def _switch_to_config(self, config: TrackerConfig, progress: dict[int, Progress]) -> ConfState:
        self.tracker.config = config
        self.tracker.progress = progress
        self.logger.info("switched configuration", node=self.id, configuration=config.describe())
        conf_state = config.conf_state()
        own = progress.get(self.id)
        self.is_learner = own is not None and own.is_learner
        if (own is None or self.is_learner) and self.role == Role.LEADER:
            self._hand_over_after_removal(config, progress)
            return conf_state
        if self.role != Role.LEADER or not conf_state.voters:
            return conf_state
        # The quorum may have changed: commit what the new quorum holds, and probe new peers.
        if self._maybe_commit():
            self._broadcast_append()
        else:
            for node_id in sorted(progress):
                if node_id != self.id:
                    self._maybe_send_append(node_id, send_if_empty=False)
        if self.lead_transferee != NO_NODE and self.lead_transferee not in config.voters():
            self._abort_leader_transfer()
        return conf_state

    def _removed_while_leading(self) -> bool:
        own = self.tracker.progress.get(self.id)
        return self.role == Role.LEADER and (own is None or own.is_learner)

    def _hand_over_after_removal(
        self, config: TrackerConfig, progress: dict[int, Progress]
    ) -> None:
        """We lead and were removed (or demoted), and the change is committed.

        Stepping down at once can wedge the cluster: the remaining voters may not know yet
        that the change committed. Still in the joint configuration, they need our vote,
        and we refuse it to any of them whose log is behind ours. So, as etcd suggests,
        we keep leading (taking no proposals) until the most up-to-date remaining voter
        holds our whole log, hand it leadership with TimeoutNow, and then step down. The
        transfer is abandoned after an election timeout like any other; we step down then.
        """
        voters = sorted(config.voters())
        if not voters:
            self.become_follower(self.term, NO_NODE)
            return
        target = max(voters, key=lambda node_id: (progress[node_id].match, -node_id))
        self.logger.info("removed from the configuration: handing leadership over",
                         node=self.id, target=target)
        self.election_elapsed = 0
        self.lead_transferee = target
        if progress[target].match == self.log.last_index():
            self._send_timeout_now(target)
            self.become_follower(self.term, NO_NODE)
            return
        # Appends carry the commit index that holds our removal.
        self._broadcast_append()

    def maybe_auto_leave(self, old_applied: int, new_applied: int) -> None:
        """After applying up to ``new_applied``: if the joint configuration we entered is
        now applied and marked auto-leave, propose leaving it (leader only)."""
        if (
            self.role == Role.LEADER
            and self.tracker.config.auto_leave
            and old_applied <= self.pending_conf_index <= new_applied
        ):
            leave = Entry(
                term=0, index=0, type=EntryType.CONF_CHANGE, data=ConfChange().encode()
            )
            appended = self._append_entries([leave], forced=True)
            assert appended, "a forced append is never refused"
            self.pending_conf_index = self.log.last_index()
            self.logger.info("leaving joint configuration automatically", node=self.id)
            self._broadcast_append()

    def report_snapshot(self, node_id: int, failed: bool) -> None:
        self.step(
            Message(type=MessageType.SNAPSHOT_STATUS, to=self.id, from_=node_id, reject=failed)
        )

    def report_unreachable(self, node_id: int) -> None:
        self.step(Message(type=MessageType.UNREACHABLE, to=self.id, from_=node_id))
