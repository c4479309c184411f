"""Raft configuration: a validated frozen dataclass, as etcd's ``Config.validate()``."""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus import limits
from ledger.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RaftBugs:
    """TEST ONLY: deliberate protocol bugs, so tests can prove the simulator's checkers fail.

    Every flag defaults to False and the node must never set one. Each flag breaks one
    rule that Raft's safety rests on:

    - ``commit_previous_term``: the leader commits an entry of an earlier term as soon as a
      majority stores it (Raft paper, figure 8), instead of only entries of its own term.
    - ``vote_twice``: a node grants its vote to any up-to-date candidate, even after it
      voted for another candidate in the same term.
    - ``release_before_sync``: ``Ready.must_sync`` is always False, so votes and append
      acknowledgements are sent (and committed entries applied) before the hard state and
      entries are durable; a crash then loses what peers were promised.
    """

    commit_previous_term: bool = False
    vote_twice: bool = False
    release_before_sync: bool = False

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(
            name
            for name in ("commit_previous_term", "vote_twice", "release_before_sync")
            if getattr(self, name)
        )


@dataclass(frozen=True, slots=True)
class Config:
    """How one Raft node behaves. Times are in ticks; the shell decides how long a tick is.

    ``applied_index`` is the index the application had already applied when it (re)started,
    so committed entries up to it are not handed out again (0: from the log's start).
    """

    node_id: int
    election_timeout_ticks: int = limits.ELECTION_TIMEOUT_TICKS_DEFAULT
    heartbeat_interval_ticks: int = limits.HEARTBEAT_INTERVAL_TICKS_DEFAULT
    applied_index: int = 0
    message_size_bytes_max: int = limits.MESSAGE_SIZE_BYTES_DEFAULT
    inflight_messages_max: int = limits.INFLIGHT_MESSAGES_DEFAULT
    inflight_bytes_max: int = limits.INFLIGHT_BYTES_DEFAULT
    uncommitted_bytes_max: int = limits.UNCOMMITTED_BYTES_DEFAULT
    committed_bytes_per_ready_max: int = limits.COMMITTED_BYTES_PER_READY_DEFAULT
    check_quorum: bool = True
    pre_vote: bool = True
    proposal_forwarding: bool = True
    bugs: RaftBugs = field(default_factory=RaftBugs)

    def validate(self) -> None:
        """Raise ConfigError naming the first field that is out of range."""
        if self.node_id <= 0:
            raise ConfigError(f"node_id must be positive, got {self.node_id}")
        if self.heartbeat_interval_ticks <= 0:
            raise ConfigError("heartbeat_interval_ticks must be positive")
        if not self.heartbeat_interval_ticks < self.election_timeout_ticks:
            raise ConfigError("election_timeout_ticks must exceed heartbeat_interval_ticks")
        if self.election_timeout_ticks > limits.ELECTION_TIMEOUT_TICKS_MAX:
            raise ConfigError(
                f"election_timeout_ticks exceeds {limits.ELECTION_TIMEOUT_TICKS_MAX}"
            )
        if self.applied_index < 0:
            raise ConfigError("applied_index must not be negative")
        if not 0 < self.inflight_messages_max <= limits.INFLIGHT_MESSAGES_MAX:
            raise ConfigError(
                f"inflight_messages_max must be in [1, {limits.INFLIGHT_MESSAGES_MAX}]"
            )
        for name in (
            "message_size_bytes_max",
            "inflight_bytes_max",
            "uncommitted_bytes_max",
            "committed_bytes_per_ready_max",
        ):
            value = getattr(self, name)
            if not 0 < value <= limits.BYTES_LIMIT_MAX:
                raise ConfigError(f"{name} must be in [1, {limits.BYTES_LIMIT_MAX}]")
        if self.inflight_bytes_max < self.message_size_bytes_max:
            raise ConfigError("inflight_bytes_max must be at least message_size_bytes_max")
