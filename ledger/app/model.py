"""The values the application keeps in state: canonical Structs, one per table of
:mod:`ledger.app.layout`.

They are the application's own records of what the transactions established, never a copy
of clear patient data: ids are pseudonyms, contents are hashes. Money is integer minor
units; times are block times in milliseconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ledger.bodies import ALLOCATIONS_MAX as _ALLOCATIONS_MAX
from ledger.bodies import (
    AMOUNT,
    CLAIM_LINES_MAX,
    CURRENCY,
    HASH,
    ID,
    PUBLIC_KEY,
    REASON_CODE,
    RECORDS_PER_GRANT_MAX,
    TIME_MS,
    WRAPS_PER_VERSION_MAX,
    Action,
    AdjudicationDecision,
    Allocation,
    ClaimFrequency,
    ClaimLine,
    Confidentiality,
    Decision,
    DelegatePower,
    DocumentType,
    GrantBasis,
    MemberKind,
    PartyKind,
    PartyRole,
    ProposalAction,
    Purpose,
    Relationship,
    ReviewOutcome,
    RevocationReason,
    Wrap,
)
from ledger.codec import Bool, Bytes, Enum, Identifier, ListOf, Nested, Optional, Struct, UInt
from ledger.tx import CHAIN_ID_LENGTH_MAX

TX_ID = Bytes(32)
COUNT = UInt(maximum=2**32 - 1)
HEIGHT = UInt()


# ---- configuration and governance ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredParameters(Struct):
    """The chain's identity and the application parameters fixed at genesis."""

    chain_id: str
    genesis_time_ms: int
    btg_review_days: int
    btg_max_hours: int
    consent_max_days: int

    SCHEMA = (
        ("chain_id", Identifier(CHAIN_ID_LENGTH_MAX)),
        ("genesis_time_ms", TIME_MS),
        ("btg_review_days", UInt(minimum=1, maximum=365)),
        ("btg_max_hours", UInt(minimum=1, maximum=24)),
        ("consent_max_days", UInt(minimum=1, maximum=365)),
    )


@dataclass(frozen=True, slots=True)
class ConsortiumState(Struct):
    """Counts kept beside the member table so a vote tallies without a scan."""

    active_members: int
    total_members: int
    active_validators: int

    SCHEMA = (("active_members", COUNT), ("total_members", COUNT), ("active_validators", COUNT))


@dataclass(frozen=True, slots=True)
class MemberState(Struct):
    org_id: str
    kind: MemberKind
    admin_key: bytes  # the current admin key (follows ROTATE_KEY)
    node_key: bytes | None
    validator: bool
    active: bool
    joined_height: int
    left_height: int | None

    SCHEMA = (
        ("org_id", ID),
        ("kind", Enum(MemberKind)),
        ("admin_key", PUBLIC_KEY),
        ("node_key", Optional(PUBLIC_KEY)),
        ("validator", Bool()),
        ("active", Bool()),
        ("joined_height", HEIGHT),
        ("left_height", Optional(HEIGHT)),
    )


class ProposalStatus(enum.IntEnum):
    OPEN = 1  # still open unless its deadline has passed (queries report "expired")
    PASSED = 2
    REJECTED = 3  # enough votes against that it can no longer pass, or no room to add
    EXECUTED = 4  # a passed key-revocation vote that a REVOKE_KEY has used


@dataclass(frozen=True, slots=True)
class ProposalState(Struct):
    proposal_id: str
    action: ProposalAction
    org_id: str
    kind: MemberKind
    admin_key: bytes
    node_key: bytes | None
    validator: bool
    evidence_hash: bytes
    deadline_ms: int
    proposer_org: str
    created_height: int
    status: ProposalStatus
    approvals: int
    rejections: int
    decided_height: int | None

    SCHEMA = (
        ("proposal_id", ID),
        ("action", Enum(ProposalAction)),
        ("org_id", ID),
        ("kind", Enum(MemberKind)),
        ("admin_key", PUBLIC_KEY),
        ("node_key", Optional(PUBLIC_KEY)),
        ("validator", Bool()),
        ("evidence_hash", HASH),
        ("deadline_ms", TIME_MS),
        ("proposer_org", ID),
        ("created_height", HEIGHT),
        ("status", Enum(ProposalStatus)),
        ("approvals", COUNT),
        ("rejections", COUNT),
        ("decided_height", Optional(HEIGHT)),
    )


@dataclass(frozen=True, slots=True)
class VoteState(Struct):
    approve: bool
    height: int

    SCHEMA = (("approve", Bool()), ("height", HEIGHT))


class OwnerKind(enum.IntEnum):
    MEMBER = 1  # a member org's admin key
    PARTY = 2  # a party's signing key


class KeyStatus(enum.IntEnum):
    ACTIVE = 1
    ROTATED = 2  # superseded by ROTATE_KEY: invalid from the rotation on
    REVOKED = 3  # invalid from ``invalidity_ms`` on


@dataclass(frozen=True, slots=True)
class KeyState(Struct):
    """Who owns a signing key, and whether it may still sign."""

    public_key: bytes
    owner_kind: OwnerKind
    owner_id: str
    org_id: str  # the member itself, or the member that registered the party
    status: KeyStatus
    changed_ms: int | None  # when it was rotated or revoked (inclusion time)
    invalidity_ms: int | None  # RFC 5280 invalidity date of a revocation
    reason: RevocationReason | None
    successor: bytes | None  # the new key of a rotation

    SCHEMA = (
        ("public_key", PUBLIC_KEY),
        ("owner_kind", Enum(OwnerKind)),
        ("owner_id", ID),
        ("org_id", ID),
        ("status", Enum(KeyStatus)),
        ("changed_ms", Optional(TIME_MS)),
        ("invalidity_ms", Optional(TIME_MS)),
        ("reason", Optional(Enum(RevocationReason))),
        ("successor", Optional(PUBLIC_KEY)),
    )

    def invalid_at(self, time_ms: int) -> bool:
        if self.status is KeyStatus.ROTATED or self.successor is not None:
            return True  # a rotated key stays invalid even if revoked later
        if self.status is KeyStatus.REVOKED:
            assert self.invalidity_ms is not None
            return time_ms >= self.invalidity_ms
        return False


@dataclass(frozen=True, slots=True)
class NonceState(Struct):
    last_nonce: int

    SCHEMA = (("last_nonce", UInt()),)


@dataclass(frozen=True, slots=True)
class PairCountState(Struct):
    """How many entries an index of one pair holds (consent-live)."""

    live: int

    SCHEMA = (("live", UInt()),)


@dataclass(frozen=True, slots=True)
class Marker(Struct):
    """The value of an index key: the key itself says everything."""

    SCHEMA = ()


# ---- parties and records ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartyState(Struct):
    party_id: str
    kind: PartyKind
    signing_key: bytes  # the current signing key (follows ROTATE_KEY)
    encryption_key: bytes
    roles: tuple[PartyRole, ...]
    minor: bool
    registered_by: str
    registered_height: int

    SCHEMA = (
        ("party_id", ID),
        ("kind", Enum(PartyKind)),
        ("signing_key", PUBLIC_KEY),
        ("encryption_key", PUBLIC_KEY),
        ("roles", ListOf(Enum(PartyRole), maximum=8)),
        ("minor", Bool()),
        ("registered_by", ID),
        ("registered_height", HEIGHT),
    )


@dataclass(frozen=True, slots=True)
class RecordState(Struct):
    """A record's head: its current version, custodian, and erasure tombstone."""

    record_id: str
    patient: str
    custodian: str
    version: int
    confidentiality: Confidentiality
    document_type: DocumentType
    ciphertext_hash: bytes | None  # of the current version; None once shredded
    created_height: int
    updated_height: int
    shredded: bool
    shred_request_hash: bytes | None
    shredded_height: int | None

    SCHEMA = (
        ("record_id", ID),
        ("patient", ID),
        ("custodian", ID),
        ("version", UInt(minimum=1)),
        ("confidentiality", Enum(Confidentiality)),
        ("document_type", Enum(DocumentType)),
        ("ciphertext_hash", Optional(HASH)),
        ("created_height", HEIGHT),
        ("updated_height", HEIGHT),
        ("shredded", Bool()),
        ("shred_request_hash", Optional(HASH)),
        ("shredded_height", Optional(HEIGHT)),
    )


@dataclass(frozen=True, slots=True)
class RecordVersionState(Struct):
    record_id: str
    version: int
    confidentiality: Confidentiality
    document_type: DocumentType
    ciphertext_hash: bytes
    ciphertext_size: int
    wraps: tuple[Wrap, ...]
    metadata_hash: bytes
    previous_version_hash: bytes | None
    tx_id: bytes
    height: int
    time_ms: int

    SCHEMA = (
        ("record_id", ID),
        ("version", UInt(minimum=1)),
        ("confidentiality", Enum(Confidentiality)),
        ("document_type", Enum(DocumentType)),
        ("ciphertext_hash", HASH),
        ("ciphertext_size", UInt()),
        ("wraps", ListOf(Nested(Wrap), maximum=WRAPS_PER_VERSION_MAX)),
        ("metadata_hash", HASH),
        ("previous_version_hash", Optional(HASH)),
        ("tx_id", TX_ID),
        ("height", HEIGHT),
        ("time_ms", TIME_MS),
    )


# ---- consent and access -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentState(Struct):
    consent_id: str
    patient: str
    grantee: str
    decision: Decision
    actions: tuple[Action, ...]
    purpose: Purpose
    start_ms: int
    end_ms: int
    confidentiality_max: Confidentiality
    records: tuple[str, ...]
    custodian: str | None
    consent_hash: bytes
    granted_by: str  # the patient, or the delegate who signed
    tx_id: bytes
    height: int
    revoked_ms: int | None

    SCHEMA = (
        ("consent_id", ID),
        ("patient", ID),
        ("grantee", ID),
        ("decision", Enum(Decision)),
        ("actions", ListOf(Enum(Action), minimum=1, maximum=8)),
        ("purpose", Enum(Purpose)),
        ("start_ms", TIME_MS),
        ("end_ms", TIME_MS),
        ("confidentiality_max", Enum(Confidentiality)),
        ("records", ListOf(ID, maximum=RECORDS_PER_GRANT_MAX)),
        ("custodian", Optional(ID)),
        ("consent_hash", HASH),
        ("granted_by", ID),
        ("tx_id", TX_ID),
        ("height", HEIGHT),
        ("revoked_ms", Optional(TIME_MS)),
    )

    def live_at(self, time_ms: int) -> bool:
        """In force at ``time_ms``: inside its period and not revoked by then."""
        if self.revoked_ms is not None and time_ms >= self.revoked_ms:
            return False
        return self.start_ms <= time_ms < self.end_ms


@dataclass(frozen=True, slots=True)
class DelegationState(Struct):
    delegation_id: str
    patient: str
    delegate: str
    relationship: Relationship
    powers: tuple[DelegatePower, ...]
    valid_until_ms: int
    confidentiality_max: Confidentiality
    attested_by: str  # the adult patient, or the provider org attesting for a minor
    tx_id: bytes
    height: int

    SCHEMA = (
        ("delegation_id", ID),
        ("patient", ID),
        ("delegate", ID),
        ("relationship", Enum(Relationship)),
        ("powers", ListOf(Enum(DelegatePower), minimum=1, maximum=8)),
        ("valid_until_ms", TIME_MS),
        ("confidentiality_max", Enum(Confidentiality)),
        ("attested_by", ID),
        ("tx_id", TX_ID),
        ("height", HEIGHT),
    )


@dataclass(frozen=True, slots=True)
class BreakGlassState(Struct):
    btg_id: str
    practitioner: str
    organisation: str
    patient: str
    records: tuple[str, ...]
    opened_ms: int
    expires_ms: int
    review_due_ms: int
    justification_hash: bytes
    open_tx_id: bytes
    open_height: int
    open_position: int
    closed_ms: int | None
    review_outcome: ReviewOutcome | None
    review_hash: bytes | None
    reviewed_ms: int | None
    flagged: bool  # the review was not in by its due time
    flagged_height: int | None

    SCHEMA = (
        ("btg_id", ID),
        ("practitioner", ID),
        ("organisation", ID),
        ("patient", ID),
        ("records", ListOf(ID, minimum=1, maximum=RECORDS_PER_GRANT_MAX)),
        ("opened_ms", TIME_MS),
        ("expires_ms", TIME_MS),
        ("review_due_ms", TIME_MS),
        ("justification_hash", HASH),
        ("open_tx_id", TX_ID),
        ("open_height", HEIGHT),
        ("open_position", COUNT),
        ("closed_ms", Optional(TIME_MS)),
        ("review_outcome", Optional(Enum(ReviewOutcome))),
        ("review_hash", Optional(HASH)),
        ("reviewed_ms", Optional(TIME_MS)),
        ("flagged", Bool()),
        ("flagged_height", Optional(HEIGHT)),
    )

    def open_at(self, time_ms: int) -> bool:
        if self.closed_ms is not None and time_ms >= self.closed_ms:
            return False
        return self.opened_ms <= time_ms < self.expires_ms


class AuditKind(enum.IntEnum):
    KEY_GRANT = 1
    BTG_OPEN = 2
    BTG_CLOSE = 3
    BTG_REVIEW = 4
    BTG_FLAGGED = 5  # written at the start of the first block past the review due time


@dataclass(frozen=True, slots=True)
class AuditEntry(Struct):
    """One line of a patient's access audit trail (FHIR AuditEvent, pseudonymous).

    ``tx_id``, ``height`` and ``position`` locate the transaction (for a Merkle inclusion
    proof); a flag is written by the block itself, so it names the break-glass's opening
    tx and has no position.
    """

    kind: AuditKind
    patient: str
    actor: str
    tx_id: bytes
    height: int
    position: int | None
    time_ms: int
    record_id: str | None
    version: int | None
    recipient: str | None
    basis: GrantBasis | None
    basis_id: str | None

    SCHEMA = (
        ("kind", Enum(AuditKind)),
        ("patient", ID),
        ("actor", ID),
        ("tx_id", TX_ID),
        ("height", HEIGHT),
        ("position", Optional(COUNT)),
        ("time_ms", TIME_MS),
        ("record_id", Optional(ID)),
        ("version", Optional(UInt(minimum=1))),
        ("recipient", Optional(ID)),
        ("basis", Optional(Enum(GrantBasis))),
        ("basis_id", Optional(ID)),
    )


@dataclass(frozen=True, slots=True)
class KeyGrantState(Struct):
    grant_id: str
    record_id: str
    version: int
    patient: str
    recipient: str
    wrap_hash: bytes
    basis: GrantBasis
    basis_id: str
    granted_by: str
    tx_id: bytes
    height: int
    position: int
    time_ms: int

    SCHEMA = (
        ("grant_id", ID),
        ("record_id", ID),
        ("version", UInt(minimum=1)),
        ("patient", ID),
        ("recipient", ID),
        ("wrap_hash", HASH),
        ("basis", Enum(GrantBasis)),
        ("basis_id", ID),
        ("granted_by", ID),
        ("tx_id", TX_ID),
        ("height", HEIGHT),
        ("position", COUNT),
        ("time_ms", TIME_MS),
    )


@dataclass(frozen=True, slots=True)
class AccessLogState(Struct):
    batch_id: str
    gateway: str
    period_start_ms: int
    period_end_ms: int
    release_count: int
    summary_hash: bytes
    tx_id: bytes
    height: int

    SCHEMA = (
        ("batch_id", ID),
        ("gateway", ID),
        ("period_start_ms", TIME_MS),
        ("period_end_ms", TIME_MS),
        ("release_count", UInt()),
        ("summary_hash", HASH),
        ("tx_id", TX_ID),
        ("height", HEIGHT),
    )


# ---- insurance ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoverageState(Struct):
    coverage_id: str
    insurer: str
    beneficiary: str
    start_ms: int
    end_ms: int
    periods: int
    premium: int
    currency: str
    height: int

    SCHEMA = (
        ("coverage_id", ID),
        ("insurer", ID),
        ("beneficiary", ID),
        ("start_ms", TIME_MS),
        ("end_ms", TIME_MS),
        ("periods", UInt(minimum=1, maximum=1200)),
        ("premium", AMOUNT),
        ("currency", CURRENCY),
        ("height", HEIGHT),
    )


@dataclass(frozen=True, slots=True)
class PremiumState(Struct):
    payment_id: str
    amount: int
    height: int
    time_ms: int

    SCHEMA = (("payment_id", ID), ("amount", AMOUNT), ("height", HEIGHT), ("time_ms", TIME_MS))


@dataclass(frozen=True, slots=True)
class PaymentState(Struct):
    """A premium payment id and the hash of the body that used it (idempotent resends)."""

    payment_id: str
    body_hash: bytes
    coverage_id: str
    period: int

    SCHEMA = (
        ("payment_id", ID),
        ("body_hash", HASH),
        ("coverage_id", ID),
        ("period", UInt(minimum=1, maximum=1200)),
    )


class ClaimStatus(enum.IntEnum):
    SUBMITTED = 1
    PENDING = 2
    APPROVED = 3
    PARTIAL = 4
    DENIED = 5
    PAID = 6
    REPLACED = 7  # superseded by a replacement claim
    VOIDED = 8  # cancelled by a void claim
    VOID = 9  # the void claim itself (never payable)


LIVE_CLAIM_STATUSES = (
    ClaimStatus.SUBMITTED,
    ClaimStatus.PENDING,
    ClaimStatus.APPROVED,
    ClaimStatus.PARTIAL,
    ClaimStatus.DENIED,
    ClaimStatus.PAID,
)
PAYABLE_CLAIM_STATUSES = (ClaimStatus.APPROVED, ClaimStatus.PARTIAL)


class ClaimEventKind(enum.IntEnum):
    SUBMITTED = 1
    ADJUDICATED = 2
    PAID = 3
    REPLACED = 4
    VOIDED = 5


@dataclass(frozen=True, slots=True)
class ClaimEvent(Struct):
    kind: ClaimEventKind
    status: ClaimStatus  # the status the event left the claim in
    tx_id: bytes
    height: int
    position: int
    time_ms: int

    SCHEMA = (
        ("kind", Enum(ClaimEventKind)),
        ("status", Enum(ClaimStatus)),
        ("tx_id", TX_ID),
        ("height", HEIGHT),
        ("position", COUNT),
        ("time_ms", TIME_MS),
    )


# A claim's life has at most: submitted, pending, decided, paid, replaced or voided.
CLAIM_HISTORY_MAX = 8


@dataclass(frozen=True, slots=True)
class ClaimState(Struct):
    claim_id: str
    provider: str
    insurer: str
    coverage_id: str
    patient: str
    frequency: ClaimFrequency
    replaces: str | None
    replaced_by: str | None
    status: ClaimStatus
    lines: tuple[ClaimLine, ...]
    total: int
    currency: str
    document_hash: bytes
    body_hash: bytes
    decision: AdjudicationDecision | None
    benefits: tuple[int, ...]
    reason_codes: tuple[str, ...]
    prior_paid: int  # paid on the claims this one replaced
    paid: int
    remittance_id: str | None
    history: tuple[ClaimEvent, ...]

    SCHEMA = (
        ("claim_id", ID),
        ("provider", ID),
        ("insurer", ID),
        ("coverage_id", ID),
        ("patient", ID),
        ("frequency", Enum(ClaimFrequency)),
        ("replaces", Optional(ID)),
        ("replaced_by", Optional(ID)),
        ("status", Enum(ClaimStatus)),
        ("lines", ListOf(Nested(ClaimLine), minimum=1, maximum=CLAIM_LINES_MAX)),
        ("total", AMOUNT),
        ("currency", CURRENCY),
        ("document_hash", HASH),
        ("body_hash", HASH),
        ("decision", Optional(Enum(AdjudicationDecision))),
        ("benefits", ListOf(AMOUNT, maximum=CLAIM_LINES_MAX)),
        ("reason_codes", ListOf(REASON_CODE, maximum=CLAIM_LINES_MAX)),
        ("prior_paid", AMOUNT),
        ("paid", AMOUNT),
        ("remittance_id", Optional(ID)),
        ("history", ListOf(Nested(ClaimEvent), maximum=CLAIM_HISTORY_MAX)),
    )

    @property
    def benefit_total(self) -> int:
        return sum(self.benefits)

    @property
    def payable_amount(self) -> int:
        """What a remittance must pay: the benefit minus what replaced claims paid."""
        return self.benefit_total - self.prior_paid


@dataclass(frozen=True, slots=True)
class DuplicateState(Struct):
    """The live claim holding a duplicate key."""

    claim_id: str

    SCHEMA = (("claim_id", ID),)


@dataclass(frozen=True, slots=True)
class RemittanceState(Struct):
    remittance_id: str
    insurer: str
    total: int
    currency: str
    allocations: tuple[Allocation, ...]
    tx_id: bytes
    height: int

    SCHEMA = (
        ("remittance_id", ID),
        ("insurer", ID),
        ("total", AMOUNT),
        ("currency", CURRENCY),
        ("allocations", ListOf(Nested(Allocation), minimum=1, maximum=_ALLOCATIONS_MAX)),
        ("tx_id", TX_ID),
        ("height", HEIGHT),
    )
