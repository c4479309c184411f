"""What applying a block tells the world beyond its state writes: audit-trail events for
RPC subscribers and logs, and validator-set changes for the Raft driver.

Every event names the tx (``tx_id``, ``height``, ``position``) so a subscriber can fetch a
Merkle inclusion proof. Events are emitted only for txs whose result is OK.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ledger.app.model import ProposalStatus
from ledger.bodies import GrantBasis, ProposalAction, ReviewOutcome, RevocationReason


@dataclass(frozen=True, slots=True)
class KeyGranted:
    tx_id: bytes
    height: int
    position: int
    grant_id: str
    patient: str
    record_id: str
    version: int
    recipient: str
    basis: GrantBasis
    basis_id: str


@dataclass(frozen=True, slots=True)
class BreakGlassOpened:
    tx_id: bytes
    height: int
    position: int
    btg_id: str
    practitioner: str
    patient: str
    records: tuple[str, ...]
    expires_ms: int
    review_due_ms: int


@dataclass(frozen=True, slots=True)
class BreakGlassClosed:
    tx_id: bytes
    height: int
    position: int
    btg_id: str


@dataclass(frozen=True, slots=True)
class BreakGlassReviewed:
    tx_id: bytes
    height: int
    position: int
    btg_id: str
    outcome: ReviewOutcome
    late: bool  # the review came after its due time (the break-glass stays flagged)


@dataclass(frozen=True, slots=True)
class BreakGlassFlagged:
    """A break-glass whose review was not in by its due time; raised by the first block
    whose timestamp is past the due time. ``tx_id`` is the opening tx."""

    tx_id: bytes
    height: int
    btg_id: str
    patient: str
    practitioner: str
    review_due_ms: int


@dataclass(frozen=True, slots=True)
class ProposalDecided:
    tx_id: bytes  # the deciding vote
    height: int
    position: int
    proposal_id: str
    action: ProposalAction
    org_id: str
    status: ProposalStatus


@dataclass(frozen=True, slots=True)
class KeyRotated:
    tx_id: bytes
    height: int
    position: int
    old_key: bytes
    new_key: bytes
    owner_id: str


@dataclass(frozen=True, slots=True)
class KeyRevoked:
    tx_id: bytes
    height: int
    position: int
    public_key: bytes
    owner_id: str
    reason: RevocationReason
    invalidity_ms: int


@dataclass(frozen=True, slots=True)
class ConsentRevoked:
    tx_id: bytes
    height: int
    position: int
    consent_id: str
    patient: str


@dataclass(frozen=True, slots=True)
class RecordShredded:
    tx_id: bytes
    height: int
    position: int
    record_id: str
    patient: str
    custodian: str


Event = (
    KeyGranted
    | BreakGlassOpened
    | BreakGlassClosed
    | BreakGlassReviewed
    | BreakGlassFlagged
    | ProposalDecided
    | KeyRotated
    | KeyRevoked
    | ConsentRevoked
    | RecordShredded
)


class ValidatorAction(enum.IntEnum):
    ADD = 1
    REMOVE = 2


@dataclass(frozen=True, slots=True)
class ValidatorChange:
    """A change of the validator set decided by a passed proposal, in block order; the node
    turns each into a Raft membership change (joint consensus)."""

    org_id: str
    node_key: bytes
    action: ValidatorAction
    tx_id: bytes
    height: int
    position: int
