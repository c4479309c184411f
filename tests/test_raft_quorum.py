"""Quorum arithmetic and flow-control bookkeeping, checked against brute force."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given
from hypothesis import strategies as st

from consensus.progress import Inflights, Progress, ProgressState
from consensus.quorum import (
    INDEX_INFINITE,
    VoteResult,
    joint_committed_index,
    joint_vote_result,
    majority_committed_index,
    majority_vote_result,
)

voter_sets = st.sets(st.integers(min_value=1, max_value=9), max_size=7)


def brute_committed(voters: set[int], match: dict[int, int]) -> int:
    """The largest index that some majority of voters all hold."""
    if not voters:
        return INDEX_INFINITE
    quorum = len(voters) // 2 + 1
    return max(
        min(match[voter] for voter in group) for group in combinations(sorted(voters), quorum)
    )


@given(voter_sets, st.data())
def test_majority_committed_index(voters: set[int], data: st.DataObject) -> None:
    match = {voter: data.draw(st.integers(min_value=0, max_value=20)) for voter in voters}
    assert majority_committed_index(voters, match.__getitem__) == brute_committed(voters, match)


@given(voter_sets, voter_sets, st.data())
def test_joint_committed_index(incoming: set[int], outgoing: set[int], data: st.DataObject) -> None:
    everyone = incoming | outgoing
    match = {voter: data.draw(st.integers(min_value=0, max_value=20)) for voter in everyone}
    expected = min(brute_committed(incoming, match), brute_committed(outgoing, match))
    assert joint_committed_index(incoming, outgoing, match.__getitem__) == expected


@given(voter_sets, st.data())
def test_majority_vote_result(voters: set[int], data: st.DataObject) -> None:
    votes = {
        voter: vote
        for voter in voters
        if (vote := data.draw(st.sampled_from([True, False, None]))) is not None
    }
    result = majority_vote_result(voters, votes)
    quorum = len(voters) // 2 + 1
    granted = sum(1 for vote in votes.values() if vote)
    missing = len(voters) - len(votes)
    if not voters or granted >= quorum:
        assert result == VoteResult.WON
    elif granted + missing >= quorum:
        assert result == VoteResult.PENDING
    else:
        assert result == VoteResult.LOST


def test_joint_vote_needs_both_halves() -> None:
    votes = {1: True, 2: True, 4: False, 5: False}
    assert joint_vote_result({1, 2, 3}, {3, 4, 5}, votes) == VoteResult.LOST
    assert joint_vote_result({1, 2, 3}, {1, 2, 4}, votes) == VoteResult.WON
    assert joint_vote_result({1, 2, 3}, {3, 6, 7}, votes) == VoteResult.PENDING


def test_inflights_limits_and_freeing() -> None:
    inflights = Inflights(messages_max=3, bytes_max=100)
    inflights.add(5, 10)
    inflights.add(7, 10)
    assert not inflights.full()
    inflights.add(9, 10)
    assert inflights.full()
    inflights.free_up_to(7)
    assert inflights.count() == 1 and inflights.bytes == 10
    inflights.add(12, 95)
    assert inflights.full()  # by bytes
    inflights.free_first()
    assert inflights.count() == 1 and not inflights.full()


def test_progress_probe_replicate_snapshot() -> None:
    progress = Progress(next_index=11, inflights=Inflights(2, 1000), is_learner=False)
    assert progress.state == ProgressState.PROBE and not progress.is_paused()
    progress.on_entries_sent(last_index=12, entry_count=2, size_bytes=20)
    assert progress.is_paused()  # one probe at a time
    # A stale rejection (not for next - 1) is ignored; a current one moves next back.
    assert not progress.maybe_decrease_to(rejected=5, match_hint=3)
    assert progress.maybe_decrease_to(rejected=10, match_hint=3)
    assert progress.next == 4 and not progress.is_paused()
    assert progress.maybe_update(8)
    progress.become_replicate()
    assert progress.next == 9
    progress.on_entries_sent(last_index=10, entry_count=2, size_bytes=20)
    progress.on_entries_sent(last_index=12, entry_count=2, size_bytes=20)
    assert progress.next == 13 and progress.is_paused()  # window of 2 is full
    progress.become_snapshot(50)
    assert progress.is_paused()
    progress.become_probe()
    assert progress.next == 51
