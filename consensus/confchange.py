"""Applying membership changes to a configuration (etcd's confchange.Changer).

Each function takes the current configuration and Progress map, works on copies, and
returns the new pair, or raises :class:`ConfChangeError` and changes nothing. Raft checks a
proposed change here first, and refuses it if it fails, so the same change always succeeds
when the committed entry is applied later (every node applies it to the same
configuration).
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.progress import Progress
from consensus.tracker import ProgressTracker, TrackerConfig
from consensus.types import ConfChange, ConfChangeSingle, ConfChangeType, ConfState
from ledger.errors import RemoteError

ProgressMap = dict[int, Progress]


class ConfChangeError(RemoteError):
    """A membership change that cannot be applied to the current configuration."""


class Changer:
    """Computes configurations from ``tracker`` (left untouched)."""

    __slots__ = ("last_index", "tracker")

    def __init__(self, tracker: ProgressTracker, last_index: int) -> None:
        self.tracker = tracker
        self.last_index = last_index

    def apply(self, change: ConfChange) -> tuple[TrackerConfig, ProgressMap]:
        """Leave joint, enter joint or apply a simple change, as ``change`` says."""
        if change.leaves_joint:
            return self.leave_joint()
        if change.enters_joint:
            return self.enter_joint(change.auto_leave, change.changes)
        return self.simple(change.changes)

    def enter_joint(
        self, auto_leave: bool, changes: Sequence[ConfChangeSingle]
    ) -> tuple[TrackerConfig, ProgressMap]:
        config, progress = self._copy()
        if config.joint:
            raise ConfChangeError("configuration is already joint")
        if not config.voters_incoming:
            raise ConfChangeError("cannot make a zero-voter configuration joint")
        config.voters_outgoing = set(config.voters_incoming)
        self._apply_changes(config, progress, changes)
        config.auto_leave = auto_leave
        _check(config, progress)
        return config, progress

    def leave_joint(self) -> tuple[TrackerConfig, ProgressMap]:
        config, progress = self._copy()
        if not config.joint:
            raise ConfChangeError("configuration is not joint")
        for node_id in config.learners_next:
            config.learners.add(node_id)
            progress[node_id].is_learner = True
        config.learners_next = set()
        for node_id in config.voters_outgoing:
            if node_id not in config.voters_incoming and node_id not in config.learners:
                del progress[node_id]
        config.voters_outgoing = set()
        config.auto_leave = False
        _check(config, progress)
        return config, progress

    def simple(self, changes: Sequence[ConfChangeSingle]) -> tuple[TrackerConfig, ProgressMap]:
        config, progress = self._copy()
        if config.joint:
            raise ConfChangeError("cannot apply a simple change to a joint configuration")
        before = set(config.voters_incoming)
        self._apply_changes(config, progress, changes)
        if len(before ^ config.voters_incoming) > 1:
            raise ConfChangeError("more than one voter changed without joint consensus")
        _check(config, progress)
        return config, progress

    def _copy(self) -> tuple[TrackerConfig, ProgressMap]:
        return (
            self.tracker.config.copy(),
            {node_id: peer.copy() for node_id, peer in self.tracker.progress.items()},
        )

    def _apply_changes(
        self, config: TrackerConfig, progress: ProgressMap, changes: Sequence[ConfChangeSingle]
    ) -> None:
        for change in changes:
            if change.node_id == 0:
                continue
            if change.type == ConfChangeType.ADD_VOTER:
                self._make_voter(config, progress, change.node_id)
            elif change.type == ConfChangeType.ADD_LEARNER:
                self._make_learner(config, progress, change.node_id)
            else:
                _remove(config, progress, change.node_id)
        if not config.voters_incoming:
            raise ConfChangeError("removed all voters")

    def _make_voter(self, config: TrackerConfig, progress: ProgressMap, node_id: int) -> None:
        peer = progress.get(node_id)
        if peer is None:
            self._init_progress(config, progress, node_id, is_learner=False)
            return
        peer.is_learner = False
        config.learners.discard(node_id)
        config.learners_next.discard(node_id)
        config.voters_incoming.add(node_id)

    def _make_learner(self, config: TrackerConfig, progress: ProgressMap, node_id: int) -> None:
        peer = progress.get(node_id)
        if peer is None:
            self._init_progress(config, progress, node_id, is_learner=True)
            return
        if peer.is_learner:
            return
        # Remove it as a voter first, keeping its Progress.
        _remove(config, progress, node_id)
        progress[node_id] = peer
        # A voter of the outgoing half cannot be a learner until the joint configuration
        # is left, so it is staged in learners_next.
        if node_id in config.voters_outgoing:
            config.learners_next.add(node_id)
        else:
            peer.is_learner = True
            config.learners.add(node_id)

    def _init_progress(
        self, config: TrackerConfig, progress: ProgressMap, node_id: int, *, is_learner: bool
    ) -> None:
        if is_learner:
            config.learners.add(node_id)
        else:
            config.voters_incoming.add(node_id)
        peer = Progress(
            # Probe the new peer from our last index: cheap if it is already up to date.
            next_index=max(self.last_index, 1),
            inflights=self.tracker.new_inflights(),
            is_learner=is_learner,
        )
        # A new peer counts as active so CheckQuorum does not depose the leader before the
        # peer had a chance to answer.
        peer.recent_active = True
        progress[node_id] = peer


def _remove(config: TrackerConfig, progress: ProgressMap, node_id: int) -> None:
    if node_id not in progress:
        return
    config.voters_incoming.discard(node_id)
    config.learners.discard(node_id)
    config.learners_next.discard(node_id)
    # A voter of the outgoing half keeps its Progress until the joint configuration is left.
    if node_id not in config.voters_outgoing:
        del progress[node_id]


def _check(config: TrackerConfig, progress: ProgressMap) -> None:
    """The invariants etcd's checkInvariants asserts (a failure is a programmer error)."""
    for node_id in config.voters() | config.learners | config.learners_next:
        assert node_id in progress, f"no progress for {node_id}"
    for node_id in config.learners_next:
        assert node_id in config.voters_outgoing, f"{node_id} in learners_next, not outgoing"
        assert not progress[node_id].is_learner, f"{node_id} in learners_next is a learner"
    for node_id in config.learners:
        assert node_id not in config.voters(), f"{node_id} is both learner and voter"
        assert progress[node_id].is_learner, f"learner {node_id} not marked as learner"
    if not config.joint:
        assert not config.learners_next and not config.auto_leave


def conf_state_problem(conf_state: ConfState) -> str | None:
    """Why ``conf_state`` is not a valid configuration, or None if it is."""
    voters = set(conf_state.voters) | set(conf_state.voters_outgoing)
    learners = set(conf_state.learners)
    learners_next = set(conf_state.learners_next)
    if voters & learners:
        return "a node is both voter and learner"
    if not learners_next <= set(conf_state.voters_outgoing) - set(conf_state.voters):
        return "learners_next must be outgoing voters only"
    if learners_next & learners:
        return "a node is both learner and next learner"
    if (learners_next or conf_state.auto_leave) and not conf_state.voters_outgoing:
        return "learners_next or auto_leave outside joint consensus"
    if conf_state.voters_outgoing and not conf_state.voters:
        return "joint configuration without incoming voters"
    return None


def restore(tracker: ProgressTracker, conf_state: ConfState, last_index: int) -> None:
    """Replace ``tracker``'s configuration and Progress with ``conf_state``'s (used at
    start-up and when a snapshot is restored). Raises ConfChangeError if it is invalid."""
    problem = conf_state_problem(conf_state)
    if problem is not None:
        raise ConfChangeError(f"invalid configuration: {problem}")
    config = TrackerConfig(
        voters_incoming=set(conf_state.voters),
        voters_outgoing=set(conf_state.voters_outgoing),
        learners=set(conf_state.learners),
        learners_next=set(conf_state.learners_next),
        auto_leave=conf_state.auto_leave,
    )
    progress: ProgressMap = {}
    for node_id in config.voters() | config.learners | config.learners_next:
        peer = Progress(
            next_index=max(last_index, 1),
            inflights=tracker.new_inflights(),
            is_learner=node_id in config.learners,
        )
        peer.recent_active = True
        progress[node_id] = peer
    _check(config, progress)
    tracker.config = config
    tracker.progress = progress
