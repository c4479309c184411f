"""Governance: membership proposals and votes, key rotation and revocation.

A proposal passes when more than two thirds of the *currently* active members approve
(``approvals * 3 > active * 2``, evaluated at each vote); it is rejected as soon as enough
members voted against that it no longer can. A vote counts once it is cast, even if its
member later leaves. Passing an add or remove of a validator appends a ValidatorChange.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.app import layout
from ledger.app.events import (
    KeyRevoked,
    KeyRotated,
    ProposalDecided,
    ValidatorAction,
    ValidatorChange,
)
from ledger.app.genesis import MEMBERS_MAX, member_key_state
from ledger.app.model import (
    ConsortiumState,
    KeyState,
    KeyStatus,
    MemberState,
    OwnerKind,
    ProposalState,
    ProposalStatus,
    VoteState,
)
from ledger.app.scope import RuleViolation, TxScope
from ledger.bodies import (
    ROTATE_KEY_DOMAIN,
    ProposalAction,
    ProposeMember,
    RevokeKey,
    RotateKey,
    Vote,
    rotation_message,
)
from ledger.crypto import verify
from ledger.results import ResultCode as R


def consortium(scope: TxScope) -> ConsortiumState:
    state = scope.load(layout.CONSORTIUM_KEY, ConsortiumState)
    assert state is not None, "genesis writes the consortium counts"
    return state


def members(scope: TxScope) -> list[MemberState]:
    """Every member ever admitted (at most MEMBERS_MAX), in org id order."""
    prefix = layout.table_prefix(layout.MEMBER)
    items = scope.view.iterate(prefix, limit=MEMBERS_MAX)
    return [
        member
        for key, _ in items
        if (member := scope.load(key, MemberState)) is not None
    ]


def key_in_use(scope: TxScope, public_key: bytes) -> bool:
    """A signing key of anyone, or a node key of any member."""
    if scope.exists(layout.public_key_key(public_key)):
        return True
    return any(member.node_key == public_key for member in members(scope))


def propose_member(scope: TxScope, body: ProposeMember) -> None:
    proposer = scope.signer_member(R.PROPOSER_NOT_ACTIVE_MEMBER)
    scope.require(
        not scope.exists(layout.proposal_key(body.proposal_id)),
        R.PROPOSAL_ID_EXISTS,
        f"proposal {body.proposal_id} exists",
    )
    scope.require(
        body.deadline_ms > scope.now_ms, R.PROPOSAL_DEADLINE_PAST, "the deadline has passed"
    )
    if body.action is ProposalAction.ADD_MEMBER:
        _check_addition(scope, body)
    elif body.action is ProposalAction.REMOVE_MEMBER:
        _check_removal(scope, body.org_id)
    else:
        assert body.action is ProposalAction.REVOKE_KEY
        member = scope.member(body.org_id)
        scope.require(
            member is not None and member.active,
            R.PROPOSAL_ORG_NOT_ACTIVE,
            f"{body.org_id} is not an active member",
        )
        key = scope.load(layout.public_key_key(body.admin_key), KeyState)
        scope.require(
            key is not None and key.org_id == body.org_id,
            R.PROPOSAL_KEY_NOT_OF_ORG,
            f"the key is not one of {body.org_id}'s",
        )
        assert key is not None
        scope.require(
            key.status is not KeyStatus.REVOKED,
            R.REVOKE_KEY_ALREADY_REVOKED,
            "the key is already revoked",
        )
    scope.store(
        layout.proposal_key(body.proposal_id),
        ProposalState(
            proposal_id=body.proposal_id,
            action=body.action,
            org_id=body.org_id,
            kind=body.kind,
            admin_key=body.admin_key,
            node_key=body.node_key,
            validator=body.validator,
            evidence_hash=body.evidence_hash,
            deadline_ms=body.deadline_ms,
            proposer_org=proposer.org_id,
            created_height=scope.height,
            status=ProposalStatus.OPEN,
            approvals=0,
            rejections=0,
            decided_height=None,
        ),
    )


def _check_addition(scope: TxScope, body: ProposeMember | ProposalState) -> None:
    scope.require(
        scope.member(body.org_id) is None and scope.party(body.org_id) is None,
        R.PROPOSAL_ORG_EXISTS,
        f"{body.org_id} is already a member or party id",
    )
    scope.require(
        not key_in_use(scope, body.admin_key),
        R.PROPOSAL_KEY_IN_USE,
        "the admin key is already in use",
    )
    if body.node_key is not None:
        scope.require(
            body.node_key != body.admin_key and not key_in_use(scope, body.node_key),
            R.PROPOSAL_KEY_IN_USE,
            "the node key is already in use",
        )
    scope.require(
        not body.validator or body.node_key is not None,
        R.PROPOSAL_VALIDATOR_WITHOUT_NODE_KEY,
        "a validator needs a node key",
    )
    scope.require(
        consortium(scope).total_members < MEMBERS_MAX,
        R.MEMBER_LIMIT_REACHED,
        f"the consortium has its maximum of {MEMBERS_MAX} members",
    )


def _check_removal(scope: TxScope, org_id: str) -> None:
    member = scope.member(org_id)
    scope.require(
        member is not None and member.active,
        R.PROPOSAL_ORG_NOT_ACTIVE,
        f"{org_id} is not an active member",
    )
    assert member is not None
    scope.require(
        not member.validator or consortium(scope).active_validators > 1,
        R.PROPOSAL_REMOVES_LAST_VALIDATOR,
        f"{org_id} is the last validator",
    )


def vote(scope: TxScope, body: Vote) -> None:
    voter = scope.signer_member(R.VOTER_NOT_ACTIVE_MEMBER)
    proposal = scope.load(layout.proposal_key(body.proposal_id), ProposalState)
    if proposal is None:
        scope.fail(R.VOTE_PROPOSAL_UNKNOWN, f"no proposal {body.proposal_id}")
    scope.require(
        proposal.status is ProposalStatus.OPEN and scope.now_ms < proposal.deadline_ms,
        R.VOTE_PROPOSAL_CLOSED,
        f"proposal {body.proposal_id} is closed",
    )
    vote_key = layout.vote_key(body.proposal_id, voter.org_id)
    scope.require(
        not scope.exists(vote_key), R.VOTE_DUPLICATE, f"{voter.org_id} already voted"
    )
    scope.store(vote_key, VoteState(approve=body.approve, height=scope.height))
    if body.approve:
        proposal = replace(proposal, approvals=proposal.approvals + 1)
    else:
        proposal = replace(proposal, rejections=proposal.rejections + 1)
    active = consortium(scope).active_members
    if proposal.approvals * 3 > active * 2:
        status = _execute(scope, proposal)
    elif (active - proposal.rejections) * 3 <= active * 2:
        status = ProposalStatus.REJECTED
    else:
        status = ProposalStatus.OPEN
    if status is not ProposalStatus.OPEN:
        proposal = replace(proposal, status=status, decided_height=scope.height)
        scope.emit(
            ProposalDecided(
                tx_id=scope.tx_id,
                height=scope.height,
                position=scope.position,
                proposal_id=proposal.proposal_id,
                action=proposal.action,
                org_id=proposal.org_id,
                status=status,
            )
        )
    scope.store(layout.proposal_key(proposal.proposal_id), proposal)


def _execute(scope: TxScope, proposal: ProposalState) -> ProposalStatus:
    """Carry out a proposal that just passed. If the consortium changed since it was made
    so that it can no longer be carried out (the org was added or removed meanwhile), it is
    rejected instead: the vote itself stays valid."""
    if proposal.action is ProposalAction.REVOKE_KEY:
        return ProposalStatus.PASSED  # a REVOKE_KEY naming the proposal carries it out
    try:
        if proposal.action is ProposalAction.ADD_MEMBER:
            _check_addition(scope, proposal)
        else:
            _check_removal(scope, proposal.org_id)
    except RuleViolation:  # the proposal, not the vote, fails
        return ProposalStatus.REJECTED
    counts = consortium(scope)
    if proposal.action is ProposalAction.ADD_MEMBER:
        _add_member(scope, proposal, counts)
    else:
        _remove_member(scope, proposal.org_id, counts)
    return ProposalStatus.PASSED


def _add_member(scope: TxScope, proposal: ProposalState, counts: ConsortiumState) -> None:
    scope.store(
        layout.member_key(proposal.org_id),
        MemberState(
            org_id=proposal.org_id,
            kind=proposal.kind,
            admin_key=proposal.admin_key,
            node_key=proposal.node_key,
            validator=proposal.validator,
            active=True,
            joined_height=scope.height,
            left_height=None,
        ),
    )
    scope.store(
        layout.public_key_key(proposal.admin_key),
        member_key_state(proposal.admin_key, proposal.org_id),
    )
    scope.store(
        layout.CONSORTIUM_KEY,
        ConsortiumState(
            active_members=counts.active_members + 1,
            total_members=counts.total_members + 1,
            active_validators=counts.active_validators + int(proposal.validator),
        ),
    )
    if proposal.validator:
        assert proposal.node_key is not None
        _validator_change(scope, proposal.org_id, proposal.node_key, ValidatorAction.ADD)


def _remove_member(scope: TxScope, org_id: str, counts: ConsortiumState) -> None:
    member = scope.member(org_id)
    assert member is not None and member.active
    scope.store(
        layout.member_key(org_id), replace(member, active=False, left_height=scope.height)
    )
    scope.store(
        layout.CONSORTIUM_KEY,
        ConsortiumState(
            active_members=counts.active_members - 1,
            total_members=counts.total_members,
            active_validators=counts.active_validators - int(member.validator),
        ),
    )
    if member.validator:
        assert member.node_key is not None
        _validator_change(scope, org_id, member.node_key, ValidatorAction.REMOVE)


def _validator_change(
    scope: TxScope, org_id: str, node_key: bytes, action: ValidatorAction
) -> None:
    scope.validator_changes.append(
        ValidatorChange(
            org_id=org_id,
            node_key=node_key,
            action=action,
            tx_id=scope.tx_id,
            height=scope.height,
            position=scope.position,
        )
    )


def rotate_key(scope: TxScope, body: RotateKey) -> None:
    old_key = scope.signer.public_key
    scope.require(
        not key_in_use(scope, body.new_key), R.ROTATE_NEW_KEY_IN_USE, "the new key is in use"
    )
    message = rotation_message(scope.chain_id, old_key, body.new_key, scope.tx.nonce)
    scope.require(
        verify(ROTATE_KEY_DOMAIN, body.new_key, message, body.new_key_signature),
        R.ROTATE_NEW_KEY_SIGNATURE_INVALID,
        "the new key's signature does not verify",
    )
    old = scope.signer.key
    scope.store(
        layout.public_key_key(old_key),
        replace(old, status=KeyStatus.ROTATED, changed_ms=scope.now_ms, successor=body.new_key),
    )
    scope.store(
        layout.public_key_key(body.new_key),
        KeyState(
            public_key=body.new_key,
            owner_kind=old.owner_kind,
            owner_id=old.owner_id,
            org_id=old.org_id,
            status=KeyStatus.ACTIVE,
            changed_ms=None,
            invalidity_ms=None,
            reason=None,
            successor=None,
        ),
    )
    if old.owner_kind is OwnerKind.MEMBER:
        member = scope.signer.member
        assert member is not None
        scope.store(layout.member_key(member.org_id), replace(member, admin_key=body.new_key))
    else:
        party = scope.signer.party
        assert party is not None
        scope.store(layout.party_key(party.party_id), replace(party, signing_key=body.new_key))
    scope.emit(
        KeyRotated(
            tx_id=scope.tx_id,
            height=scope.height,
            position=scope.position,
            old_key=old_key,
            new_key=body.new_key,
            owner_id=old.owner_id,
        )
    )


def revoke_key(scope: TxScope, body: RevokeKey) -> None:
    target = scope.load(layout.public_key_key(body.key), KeyState)
    if target is None:
        scope.fail(R.REVOKE_KEY_UNKNOWN, "no such key")
    scope.require(
        target.status is not KeyStatus.REVOKED,
        R.REVOKE_KEY_ALREADY_REVOKED,
        "the key is already revoked",
    )
    if body.proposal_id is not None:
        _authorise_by_vote(scope, body)
    else:
        signer = scope.signer
        by_owner = signer.public_key == body.key
        by_org = signer.member is not None and signer.member.org_id == target.org_id
        scope.require(
            by_owner or by_org,
            R.REVOKE_NOT_AUTHORISED,
            "only the key's owner, its organisation or a passed vote may revoke it",
        )
    scope.store(
        layout.public_key_key(body.key),
        replace(
            target,
            status=KeyStatus.REVOKED,
            changed_ms=scope.now_ms,
            invalidity_ms=body.invalidity_ms,
            reason=body.reason,
        ),
    )
    scope.emit(
        KeyRevoked(
            tx_id=scope.tx_id,
            height=scope.height,
            position=scope.position,
            public_key=body.key,
            owner_id=target.owner_id,
            reason=body.reason,
            invalidity_ms=body.invalidity_ms,
        )
    )


def _authorise_by_vote(scope: TxScope, body: RevokeKey) -> None:
    assert body.proposal_id is not None
    scope.signer_member(R.REVOKE_NOT_AUTHORISED)
    proposal = scope.load(layout.proposal_key(body.proposal_id), ProposalState)
    scope.require(
        proposal is not None
        and proposal.action is ProposalAction.REVOKE_KEY
        and proposal.status is ProposalStatus.PASSED
        and proposal.admin_key == body.key,
        R.REVOKE_PROPOSAL_INVALID,
        f"{body.proposal_id} is not a passed, unused vote to revoke this key",
    )
    assert proposal is not None
    scope.store(
        layout.proposal_key(body.proposal_id), replace(proposal, status=ProposalStatus.EXECUTED)
    )
