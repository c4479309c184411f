"""The configuration and every peer's Progress, as the leader tracks them (etcd's tracker/)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from consensus import quorum
from consensus.progress import Inflights, Progress
from consensus.types import ConfState


@dataclass(slots=True)
class TrackerConfig:
    """The active configuration (mutable; changed only through ``consensus.confchange``).

    ``voters_outgoing`` is non-empty only in joint consensus. ``learners_next`` holds nodes
    that become learners when the joint configuration is left (they are still voters in
    the outgoing half, so they cannot be learners yet).
    """

    voters_incoming: set[int] = field(default_factory=set)
    voters_outgoing: set[int] = field(default_factory=set)
    learners: set[int] = field(default_factory=set)
    learners_next: set[int] = field(default_factory=set)
    auto_leave: bool = False

    @property
    def joint(self) -> bool:
        return bool(self.voters_outgoing)

    def voters(self) -> set[int]:
        return self.voters_incoming | self.voters_outgoing

    def copy(self) -> TrackerConfig:
        return TrackerConfig(
            set(self.voters_incoming),
            set(self.voters_outgoing),
            set(self.learners),
            set(self.learners_next),
            self.auto_leave,
        )

    def conf_state(self) -> ConfState:
        return ConfState(
            voters=tuple(sorted(self.voters_incoming)),
            learners=tuple(sorted(self.learners)),
            voters_outgoing=tuple(sorted(self.voters_outgoing)),
            learners_next=tuple(sorted(self.learners_next)),
            auto_leave=self.auto_leave,
        )

    def describe(self) -> str:
        text = "voters=(" + " ".join(str(i) for i in sorted(self.voters_incoming)) + ")"
        if self.voters_outgoing:
            text += "&&(" + " ".join(str(i) for i in sorted(self.voters_outgoing)) + ")"
        if self.learners:
            text += " learners=(" + " ".join(str(i) for i in sorted(self.learners)) + ")"
        if self.learners_next:
            text += " learners_next=(" + " ".join(str(i) for i in sorted(self.learners_next))
            text += ")"
        if self.auto_leave:
            text += " autoleave"
        return text


class ProgressTracker:
    """Configuration, per-peer Progress, and the votes of the current election."""

    __slots__ = ("config", "inflight_bytes_max", "inflight_messages_max", "progress", "votes")

    def __init__(self, inflight_messages_max: int, inflight_bytes_max: int) -> None:
        self.config = TrackerConfig()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.inflight_messages_max = inflight_messages_max
        self.inflight_bytes_max = inflight_bytes_max

    def new_inflights(self) -> Inflights:
        return Inflights(self.inflight_messages_max, self.inflight_bytes_max)

    def committed_index(self) -> int:
        """The largest index stored on a quorum of voters."""
        progress = self.progress

        def match(node_id: int) -> int:
            peer = progress.get(node_id)
            return 0 if peer is None else peer.match

        config = self.config
        return quorum.joint_committed_index(
            config.voters_incoming, config.voters_outgoing, match
        )

    def quorum_active(self) -> bool:
        """Whether a quorum of voters was heard from recently (for CheckQuorum)."""
        votes = {
            node_id: peer.recent_active
            for node_id, peer in self.progress.items()
            if not peer.is_learner
        }
        config = self.config
        result = quorum.joint_vote_result(config.voters_incoming, config.voters_outgoing, votes)
        return result == quorum.VoteResult.WON

    def record_vote(self, node_id: int, granted: bool) -> None:
        if node_id not in self.votes:
            self.votes[node_id] = granted

    def tally_votes(self) -> tuple[int, int, quorum.VoteResult]:
        """(granted, rejected, result) over the votes recorded so far."""
        granted = 0
        rejected = 0
        voters = self.config.voters()
        for node_id, vote in self.votes.items():
            if node_id not in voters:
                continue
            if vote:
                granted += 1
            else:
                rejected += 1
        config = self.config
        result = quorum.joint_vote_result(
            config.voters_incoming, config.voters_outgoing, self.votes
        )
        return granted, rejected, result

    def reset_votes(self) -> None:
        self.votes = {}

    def is_singleton(self) -> bool:
        config = self.config
        return len(config.voters_incoming) == 1 and not config.voters_outgoing

    def sorted_peers(self) -> Iterator[tuple[int, Progress]]:
        """Every peer (voters and learners) in id order, so output is deterministic."""
        progress = self.progress
        for node_id in sorted(progress):
            yield node_id, progress[node_id]
