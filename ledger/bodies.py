"""The body of each transaction type: its fields, their types and their bounds.

These schemas are the wire contract (DOMAIN.md, "Transaction types"). Decoding enforces
types, lengths and enum membership; the application's stateful rules (ledger/app) enforce
everything that depends on state or block time. No field carries clear patient data:
ids are pseudonyms, contents are hashes of ciphertext or of documents kept off the ledger.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ledger.codec import (
    Bool,
    Bytes,
    Enum,
    Identifier,
    ListOf,
    Nested,
    Optional,
    Struct,
    Text,
    UInt,
    encode_tree,
)
from ledger.txtypes import TxType

# ---- shared field types -------------------------------------------------------------

ID = Identifier()
HASH = Bytes(32)
PUBLIC_KEY = Bytes(32)
SIGNATURE = Bytes(64)
TIME_MS = UInt()
# Money in integer minor units; 10**15 minor units is far above any real claim or premium
# and keeps every sum of up to LIST_LENGTH_MAX amounts inside uint64.
AMOUNT_MINOR_MAX = 10**15
AMOUNT = UInt(maximum=AMOUNT_MINOR_MAX)
CURRENCY = Text(minimum=3, maximum=3, pattern=r"[A-Z]{3}")  # ISO 4217
# Claims carry at most 50 service lines (X12 837 practice; DOMAIN.md).
CLAIM_LINES_MAX = 50
# X12 CARC/RARC reason codes are short alphanumerics.
REASON_CODE = Text(minimum=1, maximum=8, pattern=r"[A-Z0-9]+")
# A consent or break-glass names at most this many records explicitly.
RECORDS_PER_GRANT_MAX = 256
# Wraps per record version: the patient, the custodian and the authorised readers.
WRAPS_PER_VERSION_MAX = 64
# Remittance allocations per X12 835 payment.
ALLOCATIONS_MAX = 1000


# ---- enumerations ---------------------------------------------------------------------


class MemberKind(enum.IntEnum):
    PROVIDER = 1
    INSURER = 2
    CUSTODIAN = 3


class ProposalAction(enum.IntEnum):
    """What a passed proposal does.

    ``ADD_MEMBER`` uses every field of :class:`ProposeMember`. ``REMOVE_MEMBER`` names the
    member by ``org_id``; ``REVOKE_KEY`` names the org and the key (in ``admin_key``) that a
    later REVOKE_KEY may revoke on the strength of the vote. The other fields are ignored
    for those two actions.
    """

    ADD_MEMBER = 1
    REMOVE_MEMBER = 2
    REVOKE_KEY = 3


class PartyKind(enum.IntEnum):
    PATIENT = 1
    PRACTITIONER = 2
    RELATED_PERSON = 3


class PartyRole(enum.IntEnum):
    EMERGENCY = 1  # may open break-glass
    ATTENDING = 2
    BILLING = 3
    GATEWAY = 4  # storage gateway that posts ACCESS_LOG summaries


class Confidentiality(enum.IntEnum):
    """HL7 v3 Confidentiality, ordered: normal < restricted < very restricted."""

    N = 1
    R = 2
    V = 3


class DocumentType(enum.IntEnum):
    """A coarse class only (finer codes with dates would be guessable)."""

    CLINICAL_NOTE = 1
    LAB_RESULT = 2
    IMAGING = 3
    PRESCRIPTION = 4
    DISCHARGE_SUMMARY = 5
    OTHER = 99


class Decision(enum.IntEnum):
    PERMIT = 1
    DENY = 2


class Action(enum.IntEnum):
    READ = 1
    AMEND = 2  # 45 CFR 164.526
    DISCLOSE = 3


class Purpose(enum.IntEnum):
    """HL7 PurposeOfUse: TREAT, HPAYMT, HOPERAT, HRESCH, ETREAT."""

    TREATMENT = 1
    PAYMENT = 2
    OPERATIONS = 3
    RESEARCH = 4
    EMERGENCY = 5


class RevocationReason(enum.IntEnum):
    """RFC 5280 CRLReason values."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    PRIVILEGE_WITHDRAWN = 9


class Relationship(enum.IntEnum):
    PARENT = 1
    GUARDIAN = 2
    SPOUSE = 3
    CHILD = 4
    POWER_OF_ATTORNEY = 5
    OTHER = 6


class DelegatePower(enum.IntEnum):
    CONSENT = 1  # grant and revoke consents for the patient
    KEY_GRANT = 2  # release keys under the patient's consents
    READ = 3  # read the patient's records


class GrantBasis(enum.IntEnum):
    CONSENT = 1
    BREAK_GLASS = 2


class ReviewOutcome(enum.IntEnum):
    APPROPRIATE = 1
    INAPPROPRIATE = 2


class ClaimFrequency(enum.IntEnum):
    """X12 837 claim frequency type codes."""

    ORIGINAL = 1
    REPLACEMENT = 7
    VOID = 8


class AdjudicationDecision(enum.IntEnum):
    APPROVED = 1
    PARTIAL = 2
    DENIED = 3
    PENDING = 4


# ---- governance -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProposeMember(Struct):
    proposal_id: str
    action: ProposalAction
    org_id: str
    kind: MemberKind
    admin_key: bytes
    node_key: bytes | None  # the node's Ed25519 public key (its libp2p peer id)
    validator: bool
    evidence_hash: bytes
    deadline_ms: int

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
    )


@dataclass(frozen=True, slots=True)
class Vote(Struct):
    proposal_id: str
    approve: bool

    SCHEMA = (("proposal_id", ID), ("approve", Bool()))


# The new key of a ROTATE_KEY signs rotation_message() under this domain, so the signature
# proves possession of the new key for exactly this rotation (chain, old key, nonce).
ROTATE_KEY_DOMAIN = b"medledger/rotate-key/v1"


def rotation_message(chain_id: str, old_key: bytes, new_key: bytes, nonce: int) -> bytes:
    """What the new key signs: bound to the chain, the old key and the envelope's nonce, so
    it cannot be replayed on another chain, for another key, or a second time."""
    return encode_tree([chain_id, old_key, new_key, nonce])


@dataclass(frozen=True, slots=True)
class RotateKey(Struct):
    """Signed by the old key (envelope) and the new key (``new_key_signature`` over
    :func:`rotation_message` under :data:`ROTATE_KEY_DOMAIN`)."""

    new_key: bytes
    new_key_signature: bytes

    SCHEMA = (("new_key", PUBLIC_KEY), ("new_key_signature", SIGNATURE))


@dataclass(frozen=True, slots=True)
class RevokeKey(Struct):
    key: bytes
    reason: RevocationReason
    invalidity_ms: int
    proposal_id: str | None  # revocation by a passed vote

    SCHEMA = (
        ("key", PUBLIC_KEY),
        ("reason", Enum(RevocationReason)),
        ("invalidity_ms", TIME_MS),
        ("proposal_id", Optional(ID)),
    )


# ---- parties and records -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterParty(Struct):
    party_id: str
    kind: PartyKind
    signing_key: bytes
    encryption_key: bytes  # X25519 public key for HPKE wraps
    roles: tuple[PartyRole, ...]
    minor: bool

    SCHEMA = (
        ("party_id", ID),
        ("kind", Enum(PartyKind)),
        ("signing_key", PUBLIC_KEY),
        ("encryption_key", PUBLIC_KEY),
        ("roles", ListOf(Enum(PartyRole), maximum=8)),
        ("minor", Bool()),
    )


@dataclass(frozen=True, slots=True)
class Wrap(Struct):
    recipient: str  # party id (or member org id for the custodian)
    wrap_hash: bytes

    SCHEMA = (("recipient", ID), ("wrap_hash", HASH))


@dataclass(frozen=True, slots=True)
class AnchorRecord(Struct):
    record_id: str
    version: int
    patient: str
    confidentiality: Confidentiality
    document_type: DocumentType
    ciphertext_hash: bytes
    ciphertext_size: int
    wraps: tuple[Wrap, ...]
    metadata_hash: bytes
    previous_version_hash: bytes | None

    SCHEMA = (
        ("record_id", ID),
        ("version", UInt(minimum=1)),
        ("patient", ID),
        ("confidentiality", Enum(Confidentiality)),
        ("document_type", Enum(DocumentType)),
        ("ciphertext_hash", HASH),
        ("ciphertext_size", UInt()),
        ("wraps", ListOf(Nested(Wrap), maximum=WRAPS_PER_VERSION_MAX)),
        ("metadata_hash", HASH),
        ("previous_version_hash", Optional(HASH)),
    )


@dataclass(frozen=True, slots=True)
class ShredRecord(Struct):
    record_id: str
    request_hash: bytes

    SCHEMA = (("record_id", ID), ("request_hash", HASH))


# ---- consent and access --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentGrant(Struct):
    consent_id: str
    patient: str
    grantee: str
    decision: Decision
    actions: tuple[Action, ...]
    purpose: Purpose
    start_ms: int
    end_ms: int
    confidentiality_max: Confidentiality
    records: tuple[str, ...]  # empty: every record held by ``custodian``
    custodian: str | None
    consent_hash: bytes  # hash of the full FHIR Consent kept off the ledger

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
    )


@dataclass(frozen=True, slots=True)
class ConsentRevoke(Struct):
    consent_id: str

    SCHEMA = (("consent_id", ID),)


@dataclass(frozen=True, slots=True)
class DelegateGrant(Struct):
    delegation_id: str
    patient: str
    delegate: str
    relationship: Relationship
    powers: tuple[DelegatePower, ...]
    valid_until_ms: int
    confidentiality_max: Confidentiality

    SCHEMA = (
        ("delegation_id", ID),
        ("patient", ID),
        ("delegate", ID),
        ("relationship", Enum(Relationship)),
        ("powers", ListOf(Enum(DelegatePower), minimum=1, maximum=8)),
        ("valid_until_ms", TIME_MS),
        ("confidentiality_max", Enum(Confidentiality)),
    )


@dataclass(frozen=True, slots=True)
class BreakGlassOpen(Struct):
    btg_id: str
    patient: str
    records: tuple[str, ...]
    hours: int
    justification_hash: bytes

    SCHEMA = (
        ("btg_id", ID),
        ("patient", ID),
        ("records", ListOf(ID, minimum=1, maximum=RECORDS_PER_GRANT_MAX)),
        ("hours", UInt(maximum=10_000)),
        ("justification_hash", HASH),
    )


@dataclass(frozen=True, slots=True)
class BreakGlassClose(Struct):
    btg_id: str

    SCHEMA = (("btg_id", ID),)


@dataclass(frozen=True, slots=True)
class BreakGlassReview(Struct):
    btg_id: str
    outcome: ReviewOutcome
    review_hash: bytes

    SCHEMA = (("btg_id", ID), ("outcome", Enum(ReviewOutcome)), ("review_hash", HASH))


@dataclass(frozen=True, slots=True)
class KeyGrant(Struct):
    grant_id: str
    record_id: str
    version: int
    recipient: str
    wrap_hash: bytes
    basis: GrantBasis
    basis_id: str  # consent id or break-glass id

    SCHEMA = (
        ("grant_id", ID),
        ("record_id", ID),
        ("version", UInt(minimum=1)),
        ("recipient", ID),
        ("wrap_hash", HASH),
        ("basis", Enum(GrantBasis)),
        ("basis_id", ID),
    )


@dataclass(frozen=True, slots=True)
class AccessLog(Struct):
    batch_id: str
    period_start_ms: int
    period_end_ms: int
    release_count: int
    summary_hash: bytes

    SCHEMA = (
        ("batch_id", ID),
        ("period_start_ms", TIME_MS),
        ("period_end_ms", TIME_MS),
        ("release_count", UInt()),
        ("summary_hash", HASH),
    )


# ---- insurance -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coverage(Struct):
    coverage_id: str
    beneficiary: str
    start_ms: int
    end_ms: int
    periods: int  # number of premium periods in [start, end)
    premium: int  # due per period, minor units
    currency: str

    SCHEMA = (
        ("coverage_id", ID),
        ("beneficiary", ID),
        ("start_ms", TIME_MS),
        ("end_ms", TIME_MS),
        ("periods", UInt(minimum=1, maximum=1200)),
        ("premium", AMOUNT),
        ("currency", CURRENCY),
    )


@dataclass(frozen=True, slots=True)
class PremiumPaid(Struct):
    payment_id: str  # X12 820 trace number
    coverage_id: str
    period: int  # 1-based period number
    amount: int
    currency: str

    SCHEMA = (
        ("payment_id", ID),
        ("coverage_id", ID),
        ("period", UInt(minimum=1, maximum=1200)),
        ("amount", AMOUNT),
        ("currency", CURRENCY),
    )


@dataclass(frozen=True, slots=True)
class ClaimLine(Struct):
    duplicate_key: bytes  # keyed hash of patient, service date, procedure, modifiers, units
    charge: int

    SCHEMA = (("duplicate_key", HASH), ("charge", AMOUNT))


@dataclass(frozen=True, slots=True)
class ClaimSubmit(Struct):
    claim_id: str
    frequency: ClaimFrequency
    replaces: str | None
    coverage_id: str
    patient: str
    lines: tuple[ClaimLine, ...]
    total: int
    currency: str
    document_hash: bytes

    SCHEMA = (
        ("claim_id", ID),
        ("frequency", Enum(ClaimFrequency)),
        ("replaces", Optional(ID)),
        ("coverage_id", ID),
        ("patient", ID),
        ("lines", ListOf(Nested(ClaimLine), minimum=1, maximum=CLAIM_LINES_MAX)),
        ("total", AMOUNT),
        ("currency", CURRENCY),
        ("document_hash", HASH),
    )


@dataclass(frozen=True, slots=True)
class ClaimAdjudicate(Struct):
    claim_id: str
    decision: AdjudicationDecision
    benefits: tuple[int, ...]  # one per claim line
    reason_codes: tuple[str, ...]

    SCHEMA = (
        ("claim_id", ID),
        ("decision", Enum(AdjudicationDecision)),
        ("benefits", ListOf(AMOUNT, maximum=CLAIM_LINES_MAX)),
        ("reason_codes", ListOf(REASON_CODE, maximum=CLAIM_LINES_MAX)),
    )


@dataclass(frozen=True, slots=True)
class Allocation(Struct):
    claim_id: str
    amount: int

    SCHEMA = (("claim_id", ID), ("amount", AMOUNT))


@dataclass(frozen=True, slots=True)
class Remittance(Struct):
    remittance_id: str
    total: int
    currency: str
    allocations: tuple[Allocation, ...]

    SCHEMA = (
        ("remittance_id", ID),
        ("total", AMOUNT),
        ("currency", CURRENCY),
        ("allocations", ListOf(Nested(Allocation), minimum=1, maximum=ALLOCATIONS_MAX)),
    )


BODY_CLASSES: dict[TxType, type[Struct]] = {
    TxType.PROPOSE_MEMBER: ProposeMember,
    TxType.VOTE: Vote,
    TxType.ROTATE_KEY: RotateKey,
    TxType.REVOKE_KEY: RevokeKey,
    TxType.REGISTER_PARTY: RegisterParty,
    TxType.ANCHOR_RECORD: AnchorRecord,
    TxType.SHRED_RECORD: ShredRecord,
    TxType.CONSENT_GRANT: ConsentGrant,
    TxType.CONSENT_REVOKE: ConsentRevoke,
    TxType.DELEGATE_GRANT: DelegateGrant,
    TxType.BTG_OPEN: BreakGlassOpen,
    TxType.BTG_CLOSE: BreakGlassClose,
    TxType.BTG_REVIEW: BreakGlassReview,
    TxType.KEY_GRANT: KeyGrant,
    TxType.ACCESS_LOG: AccessLog,
    TxType.COVERAGE: Coverage,
    TxType.PREMIUM_PAID: PremiumPaid,
    TxType.CLAIM_SUBMIT: ClaimSubmit,
    TxType.CLAIM_ADJUDICATE: ClaimAdjudicate,
    TxType.REMITTANCE: Remittance,
}
assert set(BODY_CLASSES) == set(TxType), "every tx type has a body"
