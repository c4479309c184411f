"""What the leader knows about each follower's log (etcd's tracker.Progress, Inflights)."""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    # The leader does not know where the follower's log ends: it sends one append at a
    # time and waits for the answer (or a heartbeat response) before the next.
    PROBE = "probe"
    # The follower's log is known to match: appends are pipelined, bounded by Inflights.
    REPLICATE = "replicate"
    # The follower needs a snapshot; appends pause until it reports back.
    SNAPSHOT = "snapshot"


class Inflights:
    """Append messages sent but not yet acknowledged, each as (last index, bytes)."""

    __slots__ = ("_messages", "bytes", "bytes_max", "messages_max")

    def __init__(self, messages_max: int, bytes_max: int) -> None:
        assert messages_max > 0 and bytes_max > 0
        self._messages: deque[tuple[int, int]] = deque()
        self.bytes = 0
        self.messages_max = messages_max
        self.bytes_max = bytes_max

    def add(self, index: int, size_bytes: int) -> None:
        assert not self.full(), "added to full inflights"
        assert not self._messages or self._messages[-1][0] < index, "inflights out of order"
        self._messages.append((index, size_bytes))
        self.bytes += size_bytes

    def free_up_to(self, index: int) -> None:
        """Forget every message whose last index is at most ``index``."""
        messages = self._messages
        while messages and messages[0][0] <= index:
            self.bytes -= messages.popleft()[1]

    def free_first(self) -> None:
        if self._messages:
            self.bytes -= self._messages.popleft()[1]

    def full(self) -> bool:
        return len(self._messages) >= self.messages_max or self.bytes >= self.bytes_max

    def count(self) -> int:
        return len(self._messages)

    def reset(self) -> None:
        self._messages.clear()
        self.bytes = 0


class Progress:
    """The leader's view of one peer. ``match``: highest index known to be in its log;
    ``next``: the next index to send."""

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "state",
    )

    def __init__(
        self, *, next_index: int, inflights: Inflights, is_learner: bool, match: int = 0
    ) -> None:
        self.match = match
        self.next = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        # Heard from within the current CheckQuorum period (the leader always is).
        self.recent_active = False
        # In PROBE: an append is out and the leader waits for its answer.
        self.probe_sent = False
        self.inflights = inflights
        self.is_learner = is_learner

    def copy(self) -> Progress:
        """A shallow copy (sharing ``inflights``), for trying a configuration change."""
        other = Progress(
            next_index=self.next,
            inflights=self.inflights,
            is_learner=self.is_learner,
            match=self.match,
        )
        other.state = self.state
        other.pending_snapshot = self.pending_snapshot
        other.recent_active = self.recent_active
        other.probe_sent = self.probe_sent
        return other

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            # The snapshot was sent: probe from just after it.
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """The peer acknowledged ``index``; return whether ``match`` moved."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        if self.next < index + 1:
            self.next = index + 1
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The peer rejected an append at ``rejected``; move ``next`` back. Return False if
        the rejection is stale (answers an append we have already moved past)."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        # Outside REPLICATE one append is out at a time, sent at next - 1.
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def on_entries_sent(self, last_index: int, entry_count: int, size_bytes: int) -> None:
        """Account for an append carrying entries up to ``last_index``."""
        if self.state == ProgressState.REPLICATE:
            if entry_count > 0:
                self.next = last_index + 1
                self.inflights.add(last_index, size_bytes)
        elif self.state == ProgressState.PROBE:
            if entry_count > 0:
                self.probe_sent = True
        else:
            raise AssertionError(f"sent entries in state {self.state}")

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def __repr__(self) -> str:
        return (
            f"Progress(state={self.state.value}, match={self.match}, next={self.next}"
            f"{', learner' if self.is_learner else ''})"
        )
