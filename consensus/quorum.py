"""Majority and joint quorums: committed index and election outcome (etcd's quorum/)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping

# What an empty majority "commits": everything, so that in a joint configuration whose
# outgoing half is empty, the incoming half alone decides (min with this is a no-op).
INDEX_INFINITE = 2**64 - 1


class VoteResult(enum.Enum):
    PENDING = "pending"
    LOST = "lost"
    WON = "won"


def majority_committed_index(voters: Collection[int], match: Callable[[int], int]) -> int:
    """The largest index stored by a majority of ``voters`` (``match(id)`` = their index)."""
    count = len(voters)
    if count == 0:
        return INDEX_INFINITE
    matched = sorted(match(voter) for voter in voters)
    # With matches sorted ascending, the majority (count // 2 + 1 voters) all hold at least
    # the value at this position.
    return matched[count - (count // 2 + 1)]


def joint_committed_index(
    incoming: Collection[int], outgoing: Collection[int], match: Callable[[int], int]
) -> int:
    """Committed under joint consensus: stored by a majority of both halves."""
    return min(
        majority_committed_index(incoming, match), majority_committed_index(outgoing, match)
    )


def majority_vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    if not voters:
        # An empty configuration wins any vote, so that joint quorums compose.
        return VoteResult.WON
    granted = 0
    missing = 0
    for voter in voters:
        vote = votes.get(voter)
        if vote is None:
            missing += 1
        elif vote:
            granted += 1
    quorum = len(voters) // 2 + 1
    if granted >= quorum:
        return VoteResult.WON
    if granted + missing >= quorum:
        return VoteResult.PENDING
    return VoteResult.LOST


def joint_vote_result(
    incoming: Collection[int], outgoing: Collection[int], votes: Mapping[int, bool]
) -> VoteResult:
    first = majority_vote_result(incoming, votes)
    second = majority_vote_result(outgoing, votes)
    if first == second:
        return first
    if VoteResult.LOST in (first, second):
        return VoteResult.LOST
    return VoteResult.PENDING
