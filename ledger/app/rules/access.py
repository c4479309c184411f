"""Consent and access: consents, delegations, break-glass, key grants, access logs.

Who may act for a patient: the patient's own key, or a delegate's key under a delegation
that is still valid, holds the needed power, and (for what it releases or grants) caps the
confidentiality. A consent names a grantee that is a party or a member org; a consent to an
org covers the practitioners that org registered.

A consent covers a record when the record is listed, or when none is listed and the
consent's custodian is the record's (or the consent names no custodian); and when the
record's confidentiality is at most the consent's maximum. That one test serves permits and
denies alike; a live covering deny beats any permit. Break-glass overrides consent (that is
its purpose) but is itself audited and reviewed.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.app import layout
from ledger.app.events import (
    BreakGlassClosed,
    BreakGlassOpened,
    BreakGlassReviewed,
    ConsentRevoked,
    KeyGranted,
)
from ledger.app.model import (
    AccessLogState,
    AuditKind,
    BreakGlassState,
    ConsentState,
    DelegationState,
    KeyGrantState,
    Marker,
    PairCountState,
    PartyState,
    RecordState,
)
from ledger.app.scope import DAY_MS, HOUR_MS, TxScope
from ledger.bodies import (
    AccessLog,
    Action,
    BreakGlassClose,
    BreakGlassOpen,
    BreakGlassReview,
    Confidentiality,
    ConsentGrant,
    ConsentRevoke,
    Decision,
    DelegateGrant,
    DelegatePower,
    GrantBasis,
    KeyGrant,
    MemberKind,
    PartyKind,
    PartyRole,
)
from ledger.results import ResultCode as R

# Live consents of one (patient, grantee) pair. A key grant reads the pair's deny consents
# to find one that applies, so this bounds its work; revoked consents leave the indexes at
# once, ended ones when the pair next gets a consent.
CONSENTS_PER_PAIR_MAX = 64
# Ended entries of a pair's index read (and removed) per step.
PRUNE_BATCH_KEYS = 4
# Live delegations of one (patient, delegate) pair, for the same reason.
DELEGATIONS_PER_PAIR_MAX = 8
# A delegation attested by a provider for a minor reaches at most R records (V records of
# minors, e.g. reproductive or mental health, stay out of a guardian's reach).
MINOR_DELEGATION_CONFIDENTIALITY_MAX = Confidentiality.R


# ---- shared tests -------------------------------------------------------------------------


def grantees_covering(recipient: PartyState) -> tuple[str, ...]:
    """The grantee ids whose consents apply to ``recipient``: itself, and for a
    practitioner, the org that registered it."""
    if recipient.kind is PartyKind.PRACTITIONER:
        return (recipient.party_id, recipient.registered_by)
    return (recipient.party_id,)


def consent_covers_record(consent: ConsentState, record: RecordState) -> bool:
    if consent.patient != record.patient:
        return False
    if consent.records:
        in_scope = record.record_id in consent.records
    else:
        in_scope = consent.custodian is None or consent.custodian == record.custodian
    return in_scope and record.confidentiality <= consent.confidentiality_max


def live_deny(
    scope: TxScope, record: RecordState, recipient: PartyState, action: Action
) -> ConsentState | None:
    """A deny consent in force now that covers the recipient, record and action."""
    for grantee in grantees_covering(recipient):
        # Only the pair's deny consents, in end order: most pairs have none (one seek).
        prefix = layout.consent_deny_prefix(record.patient, grantee)
        for key in scope.iterate_keys(prefix, limit=CONSENTS_PER_PAIR_MAX):
            if layout.end_ms_of(key) <= scope.now_ms:
                continue  # ended, not pruned yet
            consent = scope.load(layout.consent_key(layout.last_part(key)), ConsentState)
            assert consent is not None, "the deny index names stored consents"
            if (
                consent.live_at(scope.now_ms)
                and action in consent.actions
                and consent_covers_record(consent, record)
            ):
                return consent
    return None


def acting_for(
    scope: TxScope, patient: str, power: DelegatePower, refusal: R
) -> DelegationState | None:
    """None when the signer is the patient; the delegation when a delegate acts under a
    valid one with ``power``; else the tx fails (``refusal`` unless a delegation exists but
    expired or lacks the power, which have codes of their own)."""
    party = scope.signer.party
    if party is None:
        scope.fail(refusal, f"the signer is neither {patient} nor a delegate")
    if party.party_id == patient:
        return None
    expired = lacks_power = False
    prefix = layout.delegation_pair_prefix(patient, party.party_id)
    for key in scope.iterate_keys(prefix, limit=DELEGATIONS_PER_PAIR_MAX):
        delegation = scope.load(layout.delegation_key(layout.last_part(key)), DelegationState)
        assert delegation is not None, "the pair index names stored delegations"
        if scope.now_ms >= delegation.valid_until_ms:
            expired = True
        elif power not in delegation.powers:
            lacks_power = True
        else:
            return delegation
    if lacks_power:
        scope.fail(R.DELEGATION_POWER_MISSING, f"the delegation lacks {power.name}")
    if expired:
        scope.fail(R.DELEGATION_EXPIRED, f"{party.party_id}'s delegation has expired")
    scope.fail(refusal, f"{party.party_id} is neither {patient} nor a delegate")


def _prune_pair(
    scope: TxScope, prefix: bytes, limit: int, still_live: list[bool]
) -> int:
    """Remove ended entries (``still_live[i]`` False) from a pair index; count the rest."""
    keys = scope.iterate_keys(prefix, limit=limit)
    assert len(keys) == len(still_live)
    for key, live in zip(keys, still_live, strict=True):
        if not live:
            scope.delete(key)
    return sum(still_live)


# ---- consents -----------------------------------------------------------------------------


def consent_grant(scope: TxScope, body: ConsentGrant) -> None:
    scope.require(
        not scope.exists(layout.consent_key(body.consent_id)),
        R.CONSENT_ID_EXISTS,
        f"consent {body.consent_id} exists",
    )
    scope.patient(body.patient)
    delegation = acting_for(
        scope, body.patient, DelegatePower.CONSENT, R.CONSENT_SIGNER_NOT_PATIENT_OR_DELEGATE
    )
    if delegation is not None:
        scope.require(
            body.confidentiality_max <= delegation.confidentiality_max,
            R.CONSENT_CONFIDENTIALITY_ABOVE_DELEGATION,
            f"the delegation reaches {delegation.confidentiality_max.name} records at most",
        )
    _check_consent_period(scope, body)
    scope.require(
        scope.known_principal(body.grantee),
        R.CONSENT_GRANTEE_UNKNOWN,
        f"grantee {body.grantee} is not a party or member",
    )
    if body.custodian is not None:
        scope.require(
            scope.member(body.custodian) is not None,
            R.CONSENT_CUSTODIAN_UNKNOWN,
            f"custodian {body.custodian} is not a member",
        )
    for record_id in body.records:
        record = scope.load(layout.record_key(record_id), RecordState)
        scope.require(
            record is not None and record.patient == body.patient,
            R.CONSENT_RECORD_NOT_PATIENTS,
            f"{record_id} is not a record of {body.patient}",
        )
    count = _live_consents(scope, body.patient, body.grantee)
    scope.require(
        count < CONSENTS_PER_PAIR_MAX,
        R.CONSENT_LIMIT_REACHED,
        f"{body.grantee} already holds {CONSENTS_PER_PAIR_MAX} live consents",
    )
    scope.store(
        layout.consent_key(body.consent_id),
        ConsentState(
            consent_id=body.consent_id,
            patient=body.patient,
            grantee=body.grantee,
            decision=body.decision,
            actions=body.actions,
            purpose=body.purpose,
            start_ms=body.start_ms,
            end_ms=body.end_ms,
            confidentiality_max=body.confidentiality_max,
            records=body.records,
            custodian=body.custodian,
            consent_hash=body.consent_hash,
            granted_by=scope.signer.owner_id,
            tx_id=scope.tx_id,
            height=scope.height,
            revoked_ms=None,
        ),
    )
    scope.store(layout.consent_live_key(body.patient, body.grantee, body.end_ms,
                                        body.consent_id), Marker())
    if body.decision is Decision.DENY:
        scope.store(layout.consent_deny_key(body.patient, body.grantee, body.end_ms,
                                            body.consent_id), Marker())
    scope.store(layout.consent_count_key(body.patient, body.grantee), PairCountState(count + 1))
    scope.store(layout.patient_consent_key(body.patient, body.consent_id), Marker())


def _live_consents(scope: TxScope, patient: str, grantee: str) -> int:
    """The pair's live consents (not revoked, not ended), after removing from its indexes
    those that ended. The indexes are in end order, so this reads the count, the ended
    entries (each removed once) and one more: work that does not grow with history."""
    stored = scope.load(layout.consent_count_key(patient, grantee), PairCountState)
    count = 0 if stored is None else stored.live
    count -= _prune_ended(scope, layout.consent_live_prefix(patient, grantee))
    _prune_ended(scope, layout.consent_deny_prefix(patient, grantee))
    assert count >= 0, "the count covers the live index"
    return count


def _prune_ended(scope: TxScope, prefix: bytes) -> int:
    """Delete the entries of an end-ordered index that ended by now; how many."""
    removed, batch = 0, 1  # most grants find the first entry live: one key read
    while True:
        keys = scope.iterate_keys(prefix, limit=batch)
        ended = [key for key in keys if layout.end_ms_of(key) <= scope.now_ms]
        for key in ended:
            scope.delete(key)
        removed += len(ended)
        if len(ended) < batch:
            return removed
        batch = PRUNE_BATCH_KEYS


def _check_consent_period(scope: TxScope, body: ConsentGrant) -> None:
    scope.require(
        body.end_ms > body.start_ms, R.CONSENT_PERIOD_REVERSED, "the period ends before it starts"
    )
    scope.require(body.end_ms > scope.now_ms, R.CONSENT_PERIOD_PAST, "the period is over")
    scope.require(
        body.end_ms - body.start_ms <= scope.consent_max_days * DAY_MS,
        R.CONSENT_PERIOD_TOO_LONG,
        f"a consent runs at most {scope.consent_max_days} days",
    )


def consent_revoke(scope: TxScope, body: ConsentRevoke) -> None:
    consent = scope.load(layout.consent_key(body.consent_id), ConsentState)
    if consent is None:
        scope.fail(R.CONSENT_UNKNOWN, f"no consent {body.consent_id}")
    acting_for(
        scope, consent.patient, DelegatePower.CONSENT, R.CONSENT_SIGNER_NOT_PATIENT_OR_DELEGATE
    )
    scope.require(
        consent.revoked_ms is None, R.CONSENT_ALREADY_REVOKED, "the consent is already revoked"
    )
    scope.store(layout.consent_key(body.consent_id), replace(consent, revoked_ms=scope.now_ms))
    live_key = layout.consent_live_key(consent.patient, consent.grantee, consent.end_ms,
                                       body.consent_id)
    if scope.exists(live_key):  # not pruned yet (an ended one may already be)
        scope.delete(live_key)
        count_key = layout.consent_count_key(consent.patient, consent.grantee)
        stored = scope.load(count_key, PairCountState)
        assert stored is not None and stored.live > 0, "the count covers the live index"
        scope.store(count_key, PairCountState(stored.live - 1))
    deny_key = layout.consent_deny_key(consent.patient, consent.grantee, consent.end_ms,
                                       body.consent_id)
    if scope.exists(deny_key):
        scope.delete(deny_key)
    scope.emit(
        ConsentRevoked(
            tx_id=scope.tx_id,
            height=scope.height,
            position=scope.position,
            consent_id=body.consent_id,
            patient=consent.patient,
        )
    )


# ---- delegations --------------------------------------------------------------------------


def _is_delegate(scope: TxScope, patient: str, party_id: str) -> bool:
    prefix = layout.delegation_pair_prefix(patient, party_id)
    return bool(scope.iterate_keys(prefix, limit=1))


def delegate_grant(scope: TxScope, body: DelegateGrant) -> None:
    scope.require(
        not scope.exists(layout.delegation_key(body.delegation_id)),
        R.DELEGATION_ID_EXISTS,
        f"delegation {body.delegation_id} exists",
    )
    patient = scope.patient(body.patient)
    signer_party = scope.signer.party
    if signer_party is not None and _is_delegate(scope, body.patient, signer_party.party_id):
        scope.fail(R.DELEGATE_CANNOT_DELEGATE, "a delegate cannot delegate further")
    if patient.minor:
        attesting = scope.signer_member(R.DELEGATION_SIGNER_NOT_PATIENT, (MemberKind.PROVIDER,))
        attested_by = attesting.org_id
        scope.require(
            body.confidentiality_max <= MINOR_DELEGATION_CONFIDENTIALITY_MAX,
            R.DELEGATION_CONFIDENTIALITY_ABOVE_LIMIT,
            f"a minor's delegation reaches {MINOR_DELEGATION_CONFIDENTIALITY_MAX.name} at most",
        )
    else:
        scope.require(
            signer_party is not None and signer_party.party_id == body.patient,
            R.DELEGATION_SIGNER_NOT_PATIENT,
            "an adult patient delegates for themself",
        )
        attested_by = body.patient
    delegate = scope.party(body.delegate)
    scope.require(
        delegate is not None and body.delegate != body.patient,
        R.DELEGATE_UNKNOWN,
        f"{body.delegate} is not a party other than the patient",
    )
    scope.require(
        body.valid_until_ms > scope.now_ms,
        R.DELEGATION_VALIDITY_PAST,
        "the delegation would already have ended",
    )
    prefix = layout.delegation_pair_prefix(body.patient, body.delegate)
    live = []
    for key in scope.iterate_keys(prefix, limit=DELEGATIONS_PER_PAIR_MAX):
        delegation = scope.load(layout.delegation_key(layout.last_part(key)), DelegationState)
        assert delegation is not None
        live.append(delegation.valid_until_ms > scope.now_ms)
    count = _prune_pair(scope, prefix, DELEGATIONS_PER_PAIR_MAX, live)
    scope.require(
        count < DELEGATIONS_PER_PAIR_MAX,
        R.DELEGATION_LIMIT_REACHED,
        f"{body.delegate} already holds {DELEGATIONS_PER_PAIR_MAX} live delegations",
    )
    scope.store(
        layout.delegation_key(body.delegation_id),
        DelegationState(
            delegation_id=body.delegation_id,
            patient=body.patient,
            delegate=body.delegate,
            relationship=body.relationship,
            powers=body.powers,
            valid_until_ms=body.valid_until_ms,
            confidentiality_max=body.confidentiality_max,
            attested_by=attested_by,
            tx_id=scope.tx_id,
            height=scope.height,
        ),
    )
    scope.store(
        layout.delegation_pair_key(body.patient, body.delegate, body.delegation_id), Marker()
    )


# ---- break-glass --------------------------------------------------------------------------


def _emergency_practitioner(scope: TxScope) -> PartyState:
    """The signer, who must be a practitioner with the emergency role registered by an
    active member."""
    practitioner = scope.signer.party
    organisation = None if practitioner is None else scope.member(practitioner.registered_by)
    scope.require(
        practitioner is not None
        and practitioner.kind is PartyKind.PRACTITIONER
        and PartyRole.EMERGENCY in practitioner.roles
        and organisation is not None
        and organisation.active,
        R.BTG_SIGNER_NOT_EMERGENCY_PRACTITIONER,
        "only a practitioner of an active member, with the emergency role, breaks the glass",
    )
    assert practitioner is not None
    return practitioner


def btg_open(scope: TxScope, body: BreakGlassOpen) -> None:
    scope.require(
        not scope.exists(layout.break_glass_key(body.btg_id)),
        R.BTG_ID_EXISTS,
        f"break-glass {body.btg_id} exists",
    )
    practitioner = _emergency_practitioner(scope)
    scope.patient(body.patient)
    scope.require(
        1 <= body.hours <= scope.btg_max_hours,
        R.BTG_HOURS_OUT_OF_RANGE,
        f"break-glass lasts 1 to {scope.btg_max_hours} hours, not {body.hours}",
    )
    for record_id in body.records:
        record = scope.load(layout.record_key(record_id), RecordState)
        scope.require(
            record is not None and record.patient == body.patient and not record.shredded,
            R.BTG_RECORD_NOT_PATIENTS,
            f"{record_id} is not a live record of {body.patient}",
        )
    expires_ms = scope.now_ms + body.hours * HOUR_MS
    review_due_ms = scope.now_ms + scope.btg_review_days * DAY_MS
    scope.store(
        layout.break_glass_key(body.btg_id),
        BreakGlassState(
            btg_id=body.btg_id,
            practitioner=practitioner.party_id,
            organisation=practitioner.registered_by,
            patient=body.patient,
            records=body.records,
            opened_ms=scope.now_ms,
            expires_ms=expires_ms,
            review_due_ms=review_due_ms,
            justification_hash=body.justification_hash,
            open_tx_id=scope.tx_id,
            open_height=scope.height,
            open_position=scope.position,
            closed_ms=None,
            review_outcome=None,
            review_hash=None,
            reviewed_ms=None,
            flagged=False,
            flagged_height=None,
        ),
    )
    scope.store(layout.review_due_key(review_due_ms, body.btg_id), Marker())
    scope.audit(
        AuditKind.BTG_OPEN,
        patient=body.patient,
        actor=practitioner.party_id,
        basis=GrantBasis.BREAK_GLASS,
        basis_id=body.btg_id,
    )
    scope.emit(
        BreakGlassOpened(
            tx_id=scope.tx_id,
            height=scope.height,
            position=scope.position,
            btg_id=body.btg_id,
            practitioner=practitioner.party_id,
            patient=body.patient,
            records=body.records,
            expires_ms=expires_ms,
            review_due_ms=review_due_ms,
        )
    )


def _break_glass(scope: TxScope, btg_id: str) -> BreakGlassState:
    btg = scope.load(layout.break_glass_key(btg_id), BreakGlassState)
    if btg is None:
        scope.fail(R.BTG_UNKNOWN, f"no break-glass {btg_id}")
    return btg


def btg_close(scope: TxScope, body: BreakGlassClose) -> None:
    btg = _break_glass(scope, body.btg_id)
    party = scope.signer.party
    scope.require(
        party is not None and party.party_id == btg.practitioner,
        R.BTG_NOT_HOLDER,
        f"only {btg.practitioner} closes {body.btg_id}",
    )
    scope.require(btg.open_at(scope.now_ms), R.BTG_ALREADY_ENDED, f"{body.btg_id} has ended")
    scope.store(layout.break_glass_key(body.btg_id), replace(btg, closed_ms=scope.now_ms))
    scope.audit(
        AuditKind.BTG_CLOSE,
        patient=btg.patient,
        actor=btg.practitioner,
        basis=GrantBasis.BREAK_GLASS,
        basis_id=body.btg_id,
    )
    scope.emit(
        BreakGlassClosed(
            tx_id=scope.tx_id, height=scope.height, position=scope.position, btg_id=body.btg_id
        )
    )


def btg_review(scope: TxScope, body: BreakGlassReview) -> None:
    btg = _break_glass(scope, body.btg_id)
    member = scope.signer.member
    scope.require(
        member is not None and member.org_id == btg.organisation,
        R.BTG_REVIEWER_NOT_ORG,
        f"{btg.organisation} reviews {body.btg_id}",
    )
    assert member is not None
    scope.require(
        btg.review_outcome is None, R.BTG_ALREADY_REVIEWED, f"{body.btg_id} was reviewed"
    )
    scope.require(
        not btg.open_at(scope.now_ms), R.BTG_NOT_ENDED, f"{body.btg_id} is still open"
    )
    late = scope.now_ms > btg.review_due_ms
    if not btg.flagged:
        scope.delete(layout.review_due_key(btg.review_due_ms, body.btg_id))
    scope.store(
        layout.break_glass_key(body.btg_id),
        replace(
            btg,
            review_outcome=body.outcome,
            review_hash=body.review_hash,
            reviewed_ms=scope.now_ms,
        ),
    )
    scope.audit(
        AuditKind.BTG_REVIEW,
        patient=btg.patient,
        actor=member.org_id,
        basis=GrantBasis.BREAK_GLASS,
        basis_id=body.btg_id,
    )
    scope.emit(
        BreakGlassReviewed(
            tx_id=scope.tx_id,
            height=scope.height,
            position=scope.position,
            btg_id=body.btg_id,
            outcome=body.outcome,
            late=late,
        )
    )


# ---- key grants ---------------------------------------------------------------------------


def key_grant(scope: TxScope, body: KeyGrant) -> None:
    scope.require(
        not scope.exists(layout.key_grant_key(body.grant_id)),
        R.KEY_GRANT_ID_EXISTS,
        f"grant {body.grant_id} exists",
    )
    record = scope.load(layout.record_key(body.record_id), RecordState)
    if record is None:
        scope.fail(R.RECORD_UNKNOWN, f"no record {body.record_id}")
    scope.require(not record.shredded, R.RECORD_SHREDDED, f"{body.record_id} was shredded")
    scope.require(
        body.version == record.version,
        R.KEY_GRANT_VERSION_NOT_CURRENT,
        f"version {body.version} is not the current {record.version}",
    )
    recipient = scope.party(body.recipient)
    if recipient is None:
        scope.fail(R.KEY_GRANT_RECIPIENT_UNKNOWN, f"{body.recipient} is not a party")
    _authorise_grant(scope, record)
    scope.require_nonzero(body.wrap_hash, R.RECORD_HASH_MALFORMED, "wrap_hash")
    if body.basis is GrantBasis.CONSENT:
        _check_consent_basis(scope, body, record, recipient)
    else:
        _check_break_glass_basis(scope, body, record)
    scope.store(
        layout.key_grant_key(body.grant_id),
        KeyGrantState(
            grant_id=body.grant_id,
            record_id=body.record_id,
            version=body.version,
            patient=record.patient,
            recipient=body.recipient,
            wrap_hash=body.wrap_hash,
            basis=body.basis,
            basis_id=body.basis_id,
            granted_by=scope.signer.owner_id,
            tx_id=scope.tx_id,
            height=scope.height,
            position=scope.position,
            time_ms=scope.now_ms,
        ),
    )
    scope.audit(
        AuditKind.KEY_GRANT,
        patient=record.patient,
        actor=scope.signer.owner_id,
        record_id=body.record_id,
        version=body.version,
        recipient=body.recipient,
        basis=body.basis,
        basis_id=body.basis_id,
    )
    scope.emit(
        KeyGranted(
            tx_id=scope.tx_id,
            height=scope.height,
            position=scope.position,
            grant_id=body.grant_id,
            patient=record.patient,
            record_id=body.record_id,
            version=body.version,
            recipient=body.recipient,
            basis=body.basis,
            basis_id=body.basis_id,
        )
    )


def _authorise_grant(scope: TxScope, record: RecordState) -> None:
    """The custodian, the patient, or a delegate with the key-grant power."""
    member = scope.signer.member
    if member is not None:
        scope.require(
            member.org_id == record.custodian,
            R.KEY_GRANT_SIGNER_NOT_AUTHORISED,
            f"{member.org_id} is not the custodian of {record.record_id}",
        )
        return
    delegation = acting_for(
        scope, record.patient, DelegatePower.KEY_GRANT, R.KEY_GRANT_SIGNER_NOT_AUTHORISED
    )
    if delegation is not None:
        scope.require(
            record.confidentiality <= delegation.confidentiality_max,
            R.KEY_GRANT_CONFIDENTIALITY_ABOVE_DELEGATION,
            f"the delegation reaches {delegation.confidentiality_max.name} records at most",
        )


def _check_consent_basis(
    scope: TxScope, body: KeyGrant, record: RecordState, recipient: PartyState
) -> None:
    consent = scope.load(layout.consent_key(body.basis_id), ConsentState)
    if consent is None or consent.patient != record.patient:
        scope.fail(R.KEY_GRANT_CONSENT_UNKNOWN, f"no consent {body.basis_id} of the patient")
    scope.require(
        consent.revoked_ms is None or scope.now_ms < consent.revoked_ms,
        R.KEY_GRANT_CONSENT_REVOKED,
        f"consent {body.basis_id} was revoked",
    )
    scope.require(
        consent.start_ms <= scope.now_ms < consent.end_ms,
        R.KEY_GRANT_CONSENT_NOT_IN_PERIOD,
        f"consent {body.basis_id} is not in its period",
    )
    scope.require(
        consent.decision is Decision.PERMIT
        and Action.READ in consent.actions
        and consent.grantee in grantees_covering(recipient),
        R.KEY_GRANT_CONSENT_NOT_COVERING,
        f"consent {body.basis_id} does not permit {body.recipient} to read",
    )
    in_scope = (
        record.record_id in consent.records
        if consent.records
        else consent.custodian is None or consent.custodian == record.custodian
    )
    scope.require(
        in_scope, R.KEY_GRANT_CONSENT_NOT_COVERING, "the consent does not cover the record"
    )
    scope.require(
        record.confidentiality <= consent.confidentiality_max,
        R.KEY_GRANT_CONFIDENTIALITY_ABOVE_CONSENT,
        f"a {record.confidentiality.name} record under a consent capped at "
        f"{consent.confidentiality_max.name}",
    )
    deny = live_deny(scope, record, recipient, Action.READ)
    scope.require(
        deny is None,
        R.KEY_GRANT_DENIED_BY_CONSENT,
        f"consent {deny.consent_id if deny else ''} denies it",
    )


def _check_break_glass_basis(scope: TxScope, body: KeyGrant, record: RecordState) -> None:
    btg = scope.load(layout.break_glass_key(body.basis_id), BreakGlassState)
    if btg is None:
        scope.fail(R.KEY_GRANT_BTG_UNKNOWN, f"no break-glass {body.basis_id}")
    scope.require(
        btg.practitioner == body.recipient,
        R.KEY_GRANT_BTG_OTHER_HOLDER,
        f"break-glass {body.basis_id} is {btg.practitioner}'s",
    )
    scope.require(
        btg.open_at(scope.now_ms), R.KEY_GRANT_BTG_ENDED, f"{body.basis_id} has ended"
    )
    scope.require(
        btg.patient == record.patient and record.record_id in btg.records,
        R.KEY_GRANT_BTG_RECORD_NOT_INCLUDED,
        f"{body.basis_id} does not include {record.record_id}",
    )


# ---- access logs --------------------------------------------------------------------------


def access_log(scope: TxScope, body: AccessLog) -> None:
    gateway = scope.signer.party
    organisation = None if gateway is None else scope.member(gateway.registered_by)
    scope.require(
        gateway is not None
        and PartyRole.GATEWAY in gateway.roles
        and organisation is not None
        and organisation.active,
        R.ACCESS_LOG_SIGNER_NOT_GATEWAY,
        "only a storage gateway of an active member posts access logs",
    )
    assert gateway is not None
    scope.require(
        not scope.exists(layout.access_log_key(body.batch_id)),
        R.ACCESS_LOG_BATCH_EXISTS,
        f"batch {body.batch_id} exists",
    )
    scope.require(
        body.period_start_ms < body.period_end_ms <= scope.now_ms,
        R.ACCESS_LOG_PERIOD_INVALID,
        "the period must be non-empty and over",
    )
    scope.store(
        layout.access_log_key(body.batch_id),
        AccessLogState(
            batch_id=body.batch_id,
            gateway=gateway.party_id,
            period_start_ms=body.period_start_ms,
            period_end_ms=body.period_end_ms,
            release_count=body.release_count,
            summary_hash=body.summary_hash,
            tx_id=scope.tx_id,
            height=scope.height,
        ),
    )
