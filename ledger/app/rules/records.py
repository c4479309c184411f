"""Parties and records: registration, anchoring record versions, crypto-shredding.

The custodian of a record is the member org that anchored its first version; only it adds
versions and shreds. Providers and custodian members may anchor; insurers may not.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.app import layout
from ledger.app.events import RecordShredded
from ledger.app.model import (
    KeyState,
    KeyStatus,
    Marker,
    OwnerKind,
    PartyState,
    RecordState,
    RecordVersionState,
)
from ledger.app.scope import TxScope
from ledger.bodies import (
    AnchorRecord,
    MemberKind,
    PartyKind,
    PartyRole,
    RegisterParty,
    ShredRecord,
)
from ledger.results import ResultCode as R

# Versions of one record: SHRED_RECORD deletes every version in one tx, so this bounds
# that tx's work; a thousand amendments of one document is far beyond practice.
RECORD_VERSIONS_MAX = 1000

# Roles each party kind may hold: emergency access, attending and billing are clinical or
# administrative staff; a gateway is a custodian's storage service registered as a party.
ROLES_BY_KIND: dict[PartyKind, tuple[PartyRole, ...]] = {
    PartyKind.PATIENT: (),
    PartyKind.PRACTITIONER: (
        PartyRole.EMERGENCY,
        PartyRole.ATTENDING,
        PartyRole.BILLING,
        PartyRole.GATEWAY,
    ),
    PartyKind.RELATED_PERSON: (),
}

CUSTODIAN_KINDS = (MemberKind.PROVIDER, MemberKind.CUSTODIAN)


def register_party(scope: TxScope, body: RegisterParty) -> None:
    registrar = scope.signer_member(R.PARTY_REGISTRAR_NOT_MEMBER)
    scope.require(
        not scope.known_principal(body.party_id),
        R.PARTY_ID_EXISTS,
        f"{body.party_id} is already a party or member id",
    )
    key_key = layout.public_key_key(body.signing_key)
    scope.require(not scope.exists(key_key), R.PARTY_KEY_IN_USE, "the signing key is in use")
    allowed = ROLES_BY_KIND[body.kind]
    scope.require(
        len(set(body.roles)) == len(body.roles) and all(role in allowed for role in body.roles),
        R.PARTY_ROLES_INVALID,
        f"a {body.kind.name.lower()} may hold only {[role.name for role in allowed]}, once",
    )
    scope.require(
        not body.minor or body.kind is PartyKind.PATIENT,
        R.PARTY_MINOR_NOT_PATIENT,
        "only a patient is marked as a minor",
    )
    scope.store(
        layout.party_key(body.party_id),
        PartyState(
            party_id=body.party_id,
            kind=body.kind,
            signing_key=body.signing_key,
            encryption_key=body.encryption_key,
            roles=body.roles,
            minor=body.minor,
            registered_by=registrar.org_id,
            registered_height=scope.height,
        ),
    )
    scope.store(
        key_key,
        KeyState(
            public_key=body.signing_key,
            owner_kind=OwnerKind.PARTY,
            owner_id=body.party_id,
            org_id=registrar.org_id,
            status=KeyStatus.ACTIVE,
            changed_ms=None,
            invalidity_ms=None,
            reason=None,
            successor=None,
        ),
    )


def _check_new_version_of(scope: TxScope, head: RecordState, body: AnchorRecord,
                          custodian: str) -> None:
    """A new version of a live record comes from its custodian, for the same patient."""
    scope.require(not head.shredded, R.RECORD_SHREDDED, f"{body.record_id} was shredded")
    scope.require(
        head.custodian == custodian,
        R.RECORD_CUSTODIAN_MISMATCH,
        f"{body.record_id} is held by {head.custodian}; only it adds versions",
    )
    scope.require(
        head.patient == body.patient,
        R.RECORD_PATIENT_MISMATCH,
        f"{body.record_id} belongs to another patient",
    )


def anchor_record(scope: TxScope, body: AnchorRecord) -> None:
    custodian = scope.signer_member(R.ANCHOR_SIGNER_NOT_CUSTODIAN_MEMBER, CUSTODIAN_KINDS)
    head = scope.load(layout.record_key(body.record_id), RecordState)
    if head is not None:
        _check_new_version_of(scope, head, body, custodian.org_id)
    expected_version = 1 if head is None else head.version + 1
    scope.require(
        body.version == expected_version,
        R.RECORD_VERSION_NOT_NEXT,
        f"version {body.version} is not the next one ({expected_version})",
    )
    scope.require(
        body.version <= RECORD_VERSIONS_MAX,
        R.RECORD_VERSION_LIMIT_REACHED,
        f"a record has at most {RECORD_VERSIONS_MAX} versions",
    )
    scope.patient(body.patient)
    _check_hashes(scope, body)
    expected_previous = None if head is None else head.ciphertext_hash
    scope.require(
        body.previous_version_hash == expected_previous,
        R.RECORD_PREVIOUS_HASH_MISMATCH,
        "previous_version_hash is not the current version's ciphertext hash",
    )
    _check_wraps(scope, body)
    if head is None:
        head = RecordState(
            record_id=body.record_id,
            patient=body.patient,
            custodian=custodian.org_id,
            version=1,
            confidentiality=body.confidentiality,
            document_type=body.document_type,
            ciphertext_hash=body.ciphertext_hash,
            created_height=scope.height,
            updated_height=scope.height,
            shredded=False,
            shred_request_hash=None,
            shredded_height=None,
        )
        scope.store(layout.patient_record_key(body.patient, body.record_id), Marker())
    else:
        head = replace(
            head,
            version=body.version,
            confidentiality=body.confidentiality,
            document_type=body.document_type,
            ciphertext_hash=body.ciphertext_hash,
            updated_height=scope.height,
        )
    scope.store(layout.record_key(body.record_id), head)
    scope.store(
        layout.record_version_key(body.record_id, body.version),
        RecordVersionState(
            record_id=body.record_id,
            version=body.version,
            confidentiality=body.confidentiality,
            document_type=body.document_type,
            ciphertext_hash=body.ciphertext_hash,
            ciphertext_size=body.ciphertext_size,
            wraps=body.wraps,
            metadata_hash=body.metadata_hash,
            previous_version_hash=body.previous_version_hash,
            tx_id=scope.tx_id,
            height=scope.height,
            time_ms=scope.now_ms,
        ),
    )


def _check_hashes(scope: TxScope, body: AnchorRecord) -> None:
    scope.require_nonzero(body.ciphertext_hash, R.RECORD_HASH_MALFORMED, "ciphertext_hash")
    scope.require_nonzero(body.metadata_hash, R.RECORD_HASH_MALFORMED, "metadata_hash")
    if body.previous_version_hash is not None:
        scope.require_nonzero(
            body.previous_version_hash, R.RECORD_HASH_MALFORMED, "previous_version_hash"
        )
    for wrap in body.wraps:
        scope.require_nonzero(wrap.wrap_hash, R.RECORD_HASH_MALFORMED, "a wrap hash")
    scope.require(body.ciphertext_size > 0, R.RECORD_SIZE_INVALID, "the ciphertext is empty")


def _check_wraps(scope: TxScope, body: AnchorRecord) -> None:
    recipients = [wrap.recipient for wrap in body.wraps]
    scope.require(
        len(set(recipients)) == len(recipients),
        R.RECORD_WRAP_DUPLICATE,
        "a recipient has two wraps",
    )
    scope.require(
        body.patient in recipients,
        R.RECORD_PATIENT_WRAP_MISSING,
        "the patient's own wrap is missing",
    )
    for recipient in recipients:
        scope.require(
            scope.known_principal(recipient),
            R.RECORD_WRAP_RECIPIENT_UNKNOWN,
            f"wrap recipient {recipient} is not a party or member",
        )


def shred_record(scope: TxScope, body: ShredRecord) -> None:
    head = scope.load(layout.record_key(body.record_id), RecordState)
    if head is None:
        scope.fail(R.RECORD_UNKNOWN, f"no record {body.record_id}")
    member = scope.signer.member
    scope.require(
        member is not None and member.org_id == head.custodian,
        R.SHRED_SIGNER_NOT_CUSTODIAN,
        f"only the custodian {head.custodian} shreds {body.record_id}",
    )
    scope.require(not head.shredded, R.RECORD_SHREDDED, f"{body.record_id} is already shredded")
    scope.require_nonzero(body.request_hash, R.RECORD_HASH_MALFORMED, "request_hash")
    for version in range(1, head.version + 1):
        scope.delete(layout.record_version_key(body.record_id, version))
    scope.store(
        layout.record_key(body.record_id),
        replace(
            head,
            ciphertext_hash=None,
            shredded=True,
            shred_request_hash=body.request_hash,
            shredded_height=scope.height,
            updated_height=scope.height,
        ),
    )
    scope.emit(
        RecordShredded(
            tx_id=scope.tx_id,
            height=scope.height,
            position=scope.position,
            record_id=body.record_id,
            patient=head.patient,
            custodian=head.custodian,
        )
    )
