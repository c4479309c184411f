"""Small value types shared by the Raft core and its callers."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from consensus.types import NO_NODE


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class ProposalOutcome(enum.Enum):
    """What happened to a proposal handed to this node (the caller retries on a drop)."""

    # This node is the leader and appended it to its log (not yet committed).
    APPENDED = "appended"
    # This node is a follower and forwarded it to the leader it knows; it may still be
    # lost on the way, so the caller watches for it to be applied.
    FORWARDED = "forwarded"
    DROPPED_NO_LEADER = "dropped: no leader known"
    DROPPED_FORWARDING_DISABLED = "dropped: this follower does not forward proposals"
    DROPPED_LEADERSHIP_TRANSFER = "dropped: leadership transfer in progress"
    DROPPED_NOT_MEMBER = "dropped: the leader was removed from the configuration"
    DROPPED_UNCOMMITTED_LIMIT = "dropped: too much uncommitted data"
    DROPPED_CONF_CHANGE_REFUSED = "dropped: configuration change refused"

    @property
    def accepted(self) -> bool:
        return self in (ProposalOutcome.APPENDED, ProposalOutcome.FORWARDED)


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state that need not be persisted: who leads, and our role."""

    leader: int = NO_NODE
    role: Role = Role.FOLLOWER


class SnapshotStatus(enum.Enum):
    FINISHED = "finished"
    FAILED = "failed"
