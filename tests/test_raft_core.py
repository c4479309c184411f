"""Unit tests of the Raft core through RawNode and the step-by-step environment."""

from __future__ import annotations

import random

import pytest

from consensus.config import Config, RaftBugs
from consensus.errors import InvalidMessageError, UnknownPeerError
from consensus.memory import MemoryStorage
from consensus.progress import ProgressState
from consensus.raw_node import RawNode
from consensus.sim.interaction import InteractionEnvironment
from consensus.state import ProposalOutcome, Role
from consensus.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    EntryType,
    HardState,
    Message,
    MessageType,
)
from ledger.errors import ConfigError


def elected(size: int = 3, **overrides: object) -> InteractionEnvironment:
    env = InteractionEnvironment(**overrides)
    env.add_nodes(size)
    env.campaign(1)
    env.stabilize()
    assert role(env, 1) == Role.LEADER
    return env


def role(env: InteractionEnvironment, node_id: int) -> Role:
    return env.nodes[node_id].raw_node.raft.role


def term(env: InteractionEnvironment, node_id: int) -> int:
    return env.nodes[node_id].raw_node.raft.term


def applied_data(env: InteractionEnvironment, node_id: int) -> list[bytes]:
    return [
        entry.data
        for entry in env.nodes[node_id].applied
        if entry.type == EntryType.NORMAL and entry.data
    ]


def add(kind: ConfChangeType, node_id: int) -> ConfChangeSingle:
    return ConfChangeSingle(type=kind, node_id=node_id)


# ---------------------------------------------------------------- elections


def test_election_elects_one_leader_and_appends_a_no_op() -> None:
    env = elected()
    for node_id in (2, 3):
        assert role(env, node_id) == Role.FOLLOWER
        assert env.nodes[node_id].raw_node.leader == 1
        assert term(env, node_id) == 1
    # The new leader's first entry is an empty entry of its term, committed everywhere.
    for node_id in (1, 2, 3):
        (entry,) = env.nodes[node_id].applied
        assert (entry.term, entry.index, entry.data) == (1, 1, b"")


def test_randomized_election_timeout_is_drawn_from_injected_random() -> None:
    draws: list[tuple[int, int]] = []

    class Recording:
        def randrange(self, start: int, stop: int) -> int:
            draws.append((start, stop))
            return stop - 1

    storage = MemoryStorage(ConfState(voters=(1, 2, 3)))
    node = RawNode(Config(node_id=1, election_timeout_ticks=7), storage, Recording())
    assert draws and all(draw == (7, 14) for draw in draws)
    assert node.raft.randomized_election_timeout == 13
    for _ in range(12):
        node.tick()
    assert node.raft.role == Role.FOLLOWER
    node.tick()
    assert node.raft.role == Role.PRE_CANDIDATE


def test_timeouts_spread_across_the_range_with_a_seeded_random() -> None:
    seen = set()
    rng = random.Random(5)
    storage = MemoryStorage(ConfState(voters=(1, 2, 3)))
    node = RawNode(Config(node_id=1, election_timeout_ticks=10), storage, rng)
    for _ in range(200):
        node.raft.become_follower(node.raft.term, 0)
        seen.add(node.raft.randomized_election_timeout)
    assert seen == set(range(10, 20))


def test_pre_vote_does_not_raise_term_of_a_partitioned_node() -> None:
    env = elected()
    env.partition([[1, 2], [3]])
    for _ in range(5):
        env.tick(3, 20)
        env.stabilize()
    # Node 3 pre-campaigned repeatedly, never won a pre-vote, never bumped its term.
    assert term(env, 3) == 1
    env.heal()
    env.tick(1, 1)  # heartbeat
    env.stabilize()
    assert role(env, 1) == Role.LEADER and term(env, 1) == 1
    assert role(env, 3) == Role.FOLLOWER


def test_without_pre_vote_a_rejoining_node_disrupts_the_term() -> None:
    env = elected(pre_vote=False, check_quorum=False)
    env.partition([[1, 2], [3]])
    env.tick(3, 10)
    env.stabilize()
    assert term(env, 3) == 2 and role(env, 3) == Role.CANDIDATE
    env.tick(3, 10)
    assert term(env, 3) == 3


def test_check_quorum_leader_steps_down_when_isolated() -> None:
    env = elected()
    env.partition([[1], [2, 3]])
    # The first check after the election passes (both followers answered the leader's
    # first appends); the second, an election timeout later, finds nobody active.
    env.tick(1, 10)
    env.stabilize()
    assert role(env, 1) == Role.LEADER
    env.tick(1, 10)
    env.stabilize()
    assert role(env, 1) == Role.FOLLOWER


def test_leader_lease_followers_ignore_votes_while_leader_is_live() -> None:
    env = elected(pre_vote=False)
    # Node 3 campaigns at once (say, its clock ran fast): 2 heard from the leader within
    # the election timeout, so it ignores the request; 1 is the leader and does too.
    env.campaign(3)
    env.stabilize()
    assert role(env, 1) == Role.LEADER and term(env, 1) == 1
    assert term(env, 2) == 1


def test_candidate_with_stale_log_loses() -> None:
    env = elected()
    env.partition([[1, 2], [3]])
    env.propose(1, b"a")
    env.stabilize()
    env.heal()
    # Let leases expire everywhere, then 3 (missing entry 2) campaigns and must lose.
    for node_id in (1, 2):
        env.nodes[node_id].raw_node.raft.become_follower(1, 0)
    env.campaign(3)
    env.stabilize()
    assert role(env, 3) != Role.LEADER


# ---------------------------------------------------------------- replication


def test_replication_and_forwarding() -> None:
    env = elected()
    assert env.propose(1, b"x") == ProposalOutcome.APPENDED
    assert env.propose(3, b"y") == ProposalOutcome.FORWARDED
    env.stabilize()
    for node_id in (1, 2, 3):
        assert applied_data(env, node_id) == [b"x", b"y"]


def test_proposal_without_leader_is_dropped() -> None:
    env = InteractionEnvironment()
    env.add_nodes(3)
    assert env.propose(2, b"x") == ProposalOutcome.DROPPED_NO_LEADER


def test_forwarding_can_be_disabled() -> None:
    env = elected(proposal_forwarding=False)
    assert env.propose(2, b"x") == ProposalOutcome.DROPPED_FORWARDING_DISABLED


def test_uncommitted_limit_drops_proposals() -> None:
    env = elected(uncommitted_bytes_max=10)
    env.partition([[1], [2, 3]])
    assert env.propose(1, b"12345678") == ProposalOutcome.APPENDED
    assert env.propose(1, b"12345678") == ProposalOutcome.DROPPED_UNCOMMITTED_LIMIT


def figure_8(bugs: RaftBugs) -> tuple[int, int]:
    """Raft paper, figure 8, with 3 nodes; returns (commit index, match of node 3) on the
    term-3 leader once node 3 acknowledges the old entry 1/2 alone."""
    # One entry per append, so node 3 acknowledges index 2 without index 3.
    env = InteractionEnvironment(message_size_bytes_max=1, bugs=bugs)
    env.add_nodes(3)
    env.campaign(1)
    env.stabilize()
    # Leader 1 (term 1) appends 1/2, which nobody else gets.
    env.partition([[1], [2, 3]])
    env.propose(1, b"old")
    env.stabilize()
    # 2 wins term 2 with 3's vote, and is cut off before its no-op reaches anyone.
    env.tick(3, 10)
    env.stabilize()
    env.tick(2, 10)
    while role(env, 2) != Role.LEADER:
        assert env.process_ready([2, 3]) + env.deliver([2, 3]) > 0
    env.partition([[1, 3], [2]])
    env.stabilize()
    assert env.nodes[3].raw_node.raft.log.last_index() == 1
    # 1 steps down (CheckQuorum), then wins term 3 with 3's vote (its log 1/2 is newer).
    env.tick(1, 20)
    env.stabilize()
    while role(env, 1) != Role.LEADER:
        env.tick(1, 10)
        for _ in range(4):
            env.process_ready()
            env.deliver()
    leader = env.nodes[1].raw_node.raft
    assert leader.term == 3
    # Replicate one entry at a time until 3 holds 1/2 (a majority: 1 and 3), not 3/3.
    while leader.tracker.progress[3].match < 2:
        assert env.process_ready() + env.deliver() > 0
    return leader.log.committed, leader.tracker.progress[3].match


def test_leader_commits_only_entries_of_its_term_by_counting() -> None:
    # Entry 1/2 is on a majority, but committing it now would be unsafe: 2 (log ending
    # 2/2) could still win term 4 with 3's vote and overwrite it. Correct Raft waits for
    # an entry of its own term (3/3) to reach a majority.
    assert figure_8(RaftBugs()) == (1, 2)
    # The test-only bug commits it by counting.
    assert figure_8(RaftBugs(commit_previous_term=True)) == (2, 2)


def test_follower_log_divergence_is_repaired_with_hint() -> None:
    env = elected()
    # Old leader 1 appends three entries nobody else gets.
    env.partition([[1], [2, 3]])
    for data in (b"a", b"b", b"c"):
        env.propose(1, data)
    env.stabilize()
    # 2 and 3 elect 2 and commit their own entries.
    env.tick(1, 20)  # 1 steps down (check quorum)
    # 3 times out first (its pre-vote is ignored by 2, still in its leader lease), then 2
    # campaigns and 3, which no longer knows a leader, votes for it.
    env.tick(3, 10)
    env.stabilize()
    env.tick(2, 10)
    env.stabilize()
    assert role(env, 2) == Role.LEADER
    env.propose(2, b"d")
    env.stabilize()
    env.heal()
    env.tick(2, 1)
    env.stabilize()
    for node_id in (1, 2, 3):
        assert applied_data(env, node_id) == [b"d"]
    log_1 = env.nodes[1].raw_node.raft.log
    assert log_1.last_index() == env.nodes[2].raw_node.raft.log.last_index()


def test_flow_control_limits_inflight_messages() -> None:
    env = elected(inflight_messages_max=2, message_size_bytes_max=1)
    for position in range(6):
        env.propose(1, b"p%d" % position)
    env.process_ready([1])
    appends = [m for m in env.queue if m.type == MessageType.APPEND and m.to == 2]
    # Each append carries one entry (byte limit); only two may be in flight at once.
    assert len(appends) == 2
    assert all(len(m.entries) == 1 for m in appends)
    env.stabilize()
    for node_id in (1, 2, 3):
        assert len(applied_data(env, node_id)) == 6


def test_probe_state_sends_one_append_at_a_time() -> None:
    env = elected()
    env.partition([[1, 2], [3]])
    for position in range(5):
        env.propose(1, b"p%d" % position)
        env.stabilize()
    leader = env.nodes[1].raw_node.raft
    leader.tracker.progress[3].become_probe()
    env.heal()
    env.tick(1, 1)
    env.stabilize()
    assert applied_data(env, 3) == [b"p%d" % position for position in range(5)]
    assert leader.tracker.progress[3].state == ProgressState.REPLICATE


# ---------------------------------------------------------------- Ready contract


def test_vote_grant_is_released_with_the_hard_state_it_depends_on() -> None:
    env = InteractionEnvironment(pre_vote=False)
    env.add_nodes(3)
    env.campaign(1)
    env.process_ready([1])
    env.deliver([2])
    ready = env.nodes[2].raw_node.ready()
    assert ready is not None
    grants = [m for m in ready.messages if m.type == MessageType.VOTE_RESPONSE]
    assert grants and not grants[0].reject
    assert ready.hard_state == HardState(term=1, vote=1, commit=0)
    assert ready.must_sync


def test_append_acknowledgement_is_released_with_the_entries() -> None:
    env = elected()
    env.propose(1, b"x")
    env.process_ready([1])
    env.deliver([2])
    ready = env.nodes[2].raw_node.ready()
    assert ready is not None
    acknowledgement = [m for m in ready.messages if m.type == MessageType.APPEND_RESPONSE]
    assert acknowledgement[0].index == 2
    assert [entry.data for entry in ready.entries] == [b"x"]
    assert ready.must_sync


def test_commit_only_change_needs_no_sync() -> None:
    env = elected()
    env.propose(1, b"x")
    env.process_ready([1])
    env.deliver([2, 3])
    env.process_ready([2, 3])
    env.deliver([1])
    ready = env.nodes[1].raw_node.ready()
    assert ready is not None and not ready.entries and ready.hard_state is not None
    assert not ready.must_sync


def test_release_before_sync_bug_clears_must_sync() -> None:
    env = InteractionEnvironment(bugs=RaftBugs(release_before_sync=True))
    env.add_nodes(1)
    env.campaign(1)
    ready = env.nodes[1].raw_node.ready()
    assert ready is not None and ready.entries and not ready.must_sync


def test_ready_must_be_advanced_before_the_next() -> None:
    env = InteractionEnvironment()
    env.add_nodes(1)
    env.campaign(1)
    raw_node = env.nodes[1].raw_node
    ready = raw_node.ready()
    assert ready is not None
    with pytest.raises(AssertionError):
        raw_node.ready()


def test_single_node_commits_immediately() -> None:
    env = InteractionEnvironment()
    env.add_nodes(1)
    env.campaign(1)
    env.propose(1, b"x")
    env.stabilize()
    assert applied_data(env, 1) == [b"x"]


# ---------------------------------------------------------------- snapshots


def test_lagging_follower_gets_a_snapshot() -> None:
    env = elected()
    env.partition([[1, 2], [3]])
    for position in range(5):
        env.propose(1, b"p%d" % position)
    env.stabilize()
    env.compact(1, 6)
    env.heal()
    env.tick(1, 1)
    env.stabilize()
    follower = env.nodes[3]
    assert follower.snapshot_index == 6
    assert follower.raw_node.raft.log.committed == 6
    env.propose(1, b"after")
    env.stabilize()
    assert applied_data(env, 3) == [b"after"]
    assert env.nodes[1].raw_node.raft.tracker.progress[3].state == ProgressState.REPLICATE


def test_restart_from_storage_keeps_term_vote_and_log() -> None:
    env = elected()
    env.propose(1, b"x")
    env.stabilize()
    env.restart(2)
    raft = env.nodes[2].raw_node.raft
    assert raft.term == 1 and raft.vote == 1 and raft.log.last_index() == 2
    env.tick(1, 1)
    env.stabilize()
    assert applied_data(env, 2) == [b"x"]


# ---------------------------------------------------------------- leadership transfer


def test_leadership_transfer() -> None:
    env = elected()
    env.transfer_leadership(1, 3)
    env.stabilize()
    assert role(env, 3) == Role.LEADER and term(env, 3) == 2
    assert role(env, 1) == Role.FOLLOWER


def test_leadership_transfer_via_follower_and_proposals_dropped_meanwhile() -> None:
    env = elected()
    env.partition([[1, 2], [3]])
    env.propose(1, b"x")
    env.stabilize()
    env.heal()
    env.transfer_leadership(2, 3)  # forwarded to the leader
    env.stabilize([2])
    env.deliver([1])
    assert env.nodes[1].raw_node.raft.lead_transferee == 3
    assert env.propose(1, b"y") == ProposalOutcome.DROPPED_LEADERSHIP_TRANSFER
    env.stabilize()
    assert role(env, 3) == Role.LEADER


def test_leadership_transfer_times_out() -> None:
    env = elected()
    env.partition([[1, 2], [3]])
    env.transfer_leadership(1, 3)
    env.stabilize()
    raft = env.nodes[1].raw_node.raft
    assert raft.lead_transferee == 3
    env.tick(1, 10)
    env.stabilize([1, 2])
    assert raft.lead_transferee == 0 and raft.role == Role.LEADER


# ---------------------------------------------------------------- membership


def test_add_learner_then_promote() -> None:
    env = elected()
    env.add_nodes(1)
    change = ConfChange(changes=(add(ConfChangeType.ADD_LEARNER, 4),))
    assert env.propose_conf_change(1, change) == ProposalOutcome.APPENDED
    env.stabilize()
    learner = env.nodes[4].raw_node.raft
    assert learner.is_learner and learner.log.committed == env.nodes[1].raw_node.raft.log.committed
    # A learner never campaigns.
    env.tick(4, 100)
    assert learner.role == Role.FOLLOWER
    promote = ConfChange(changes=(add(ConfChangeType.ADD_VOTER, 4),))
    assert env.propose_conf_change(1, promote) == ProposalOutcome.APPENDED
    env.stabilize()
    assert not learner.is_learner
    assert env.nodes[1].raw_node.status().conf_state.voters == (1, 2, 3, 4)


def test_second_change_refused_while_first_is_pending() -> None:
    env = elected()
    change = ConfChange(changes=(add(ConfChangeType.ADD_LEARNER, 4),))
    assert env.propose_conf_change(1, change) == ProposalOutcome.APPENDED
    again = ConfChange(changes=(add(ConfChangeType.ADD_LEARNER, 5),))
    assert env.propose_conf_change(1, again) == ProposalOutcome.DROPPED_CONF_CHANGE_REFUSED


def test_invalid_change_is_refused() -> None:
    env = InteractionEnvironment()
    env.add_nodes(1)
    env.campaign(1)
    env.stabilize()
    remove_all = ConfChange(changes=(add(ConfChangeType.REMOVE_NODE, 1),))
    assert env.propose_conf_change(1, remove_all) == ProposalOutcome.DROPPED_CONF_CHANGE_REFUSED
    two_voters = ConfChange(
        changes=(add(ConfChangeType.ADD_VOTER, 2), add(ConfChangeType.ADD_VOTER, 3)),
        transition=ConfChangeTransition.AUTO,
    )
    # Two voters at once is fine: AUTO with two changes enters joint consensus.
    assert env.propose_conf_change(1, two_voters) == ProposalOutcome.APPENDED


def test_joint_consensus_enters_and_leaves_automatically() -> None:
    env = elected()
    env.add_nodes(1)
    change = ConfChange(
        changes=(add(ConfChangeType.ADD_VOTER, 4), add(ConfChangeType.REMOVE_NODE, 2))
    )
    env.propose_conf_change(1, change)
    env.stabilize()
    for node_id in (1, 3, 4):
        conf_state = env.nodes[node_id].raw_node.status().conf_state
        assert conf_state.voters == (1, 3, 4)
        assert conf_state.voters_outgoing == ()
    text = env.take_output()
    assert "voters=(1 3 4)&&(1 2 3) autoleave" in text
    assert "conf-change(leave-joint)" in text


def test_explicit_joint_needs_an_explicit_leave() -> None:
    env = elected()
    change = ConfChange(
        changes=(add(ConfChangeType.REMOVE_NODE, 3),),
        transition=ConfChangeTransition.JOINT_EXPLICIT,
    )
    env.propose_conf_change(1, change)
    env.stabilize()
    status = env.nodes[1].raw_node.status()
    assert status.conf_state.voters_outgoing == (1, 2, 3)
    refused = ConfChange(changes=(add(ConfChangeType.ADD_LEARNER, 3),))
    assert env.propose_conf_change(1, refused) == ProposalOutcome.DROPPED_CONF_CHANGE_REFUSED
    assert env.propose_conf_change(1, ConfChange()) == ProposalOutcome.APPENDED
    env.stabilize()
    assert env.nodes[1].raw_node.status().conf_state.voters == (1, 2)


def test_removed_leader_steps_down_after_commit() -> None:
    env = elected()
    env.propose_conf_change(1, ConfChange(changes=(add(ConfChangeType.REMOVE_NODE, 1),)))
    env.stabilize()
    assert role(env, 1) == Role.FOLLOWER
    env.tick(3, 10)
    env.stabilize()
    env.tick(2, 10)
    env.stabilize()
    assert role(env, 2) == Role.LEADER
    env.propose(2, b"z")
    env.stabilize()
    assert applied_data(env, 3) == [b"z"]
    assert applied_data(env, 1) == []


def test_removed_node_does_not_campaign_disruptively() -> None:
    env = elected()
    env.propose_conf_change(1, ConfChange(changes=(add(ConfChangeType.REMOVE_NODE, 3),)))
    env.process_ready([1])
    env.deliver([2])
    env.stabilize([1, 2])
    # 3 never learned it was removed; it pre-campaigns but nobody follows it.
    env.tick(3, 40)
    env.stabilize()
    assert role(env, 1) == Role.LEADER and term(env, 1) == 1


# ---------------------------------------------------------------- input validation


def test_step_refuses_local_wrong_recipient_and_unknown_responses() -> None:
    env = elected()
    raw_node = env.nodes[2].raw_node
    with pytest.raises(InvalidMessageError):
        raw_node.step(Message(type=MessageType.HUP, to=2, from_=1))
    with pytest.raises(InvalidMessageError):
        raw_node.step(Message(type=MessageType.HEARTBEAT, to=3, from_=1, term=1))
    with pytest.raises(UnknownPeerError):
        raw_node.step(Message(type=MessageType.APPEND_RESPONSE, to=2, from_=9, term=1))
    with pytest.raises(InvalidMessageError):
        raw_node.step(Message(type=MessageType.PROPOSAL, to=2, from_=1))
    with pytest.raises(InvalidMessageError):
        raw_node.step(Message(type=MessageType.APPEND, to=2, from_=1, term=0))


def test_config_validation() -> None:
    Config(node_id=1).validate()
    bad = [
        Config(node_id=0),
        Config(node_id=1, heartbeat_interval_ticks=0),
        Config(node_id=1, election_timeout_ticks=1, heartbeat_interval_ticks=1),
        Config(node_id=1, inflight_messages_max=0),
        Config(node_id=1, message_size_bytes_max=0),
        Config(node_id=1, inflight_bytes_max=10, message_size_bytes_max=100),
    ]
    for config in bad:
        with pytest.raises(ConfigError):
            config.validate()
    with pytest.raises(ConfigError):
        RawNode(Config(node_id=0), MemoryStorage(), random.Random(1))
