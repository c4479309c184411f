"""Checkers of DOMAIN.md's invariants over a whole application state.

Written against the state layout only (ledger.app.layout, ledger.app.model), re-deriving
each rule independently of the rule code, so a bug in a rule shows up as a broken
invariant. ``check_state`` runs every state invariant; the transition invariants (nonces
only increase, nothing accepted from a revoked key, the validator set changes only through
passed proposals) need the state before and after a block: see ``check_block``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger import bodies as b
from ledger.app import BlockOutcome, layout, validators
from ledger.app.events import ProposalDecided, ValidatorAction
from ledger.app.model import (
    LIVE_CLAIM_STATUSES,
    AccessLogState,
    AuditEntry,
    AuditKind,
    BreakGlassState,
    ClaimState,
    ClaimStatus,
    ConsentState,
    ConsortiumState,
    CoverageState,
    DelegationState,
    DuplicateState,
    KeyGrantState,
    KeyState,
    Marker,
    MemberState,
    NonceState,
    PairCountState,
    PartyState,
    PaymentState,
    PremiumState,
    ProposalState,
    ProposalStatus,
    RecordState,
    RecordVersionState,
    RemittanceState,
    StoredParameters,
    VoteState,
)
from ledger.app.state import MemoryState, decode_value
from ledger.codec import Struct
from ledger.results import ResultCode
from ledger.tx import Transaction

TABLE_CLASSES: dict[bytes, type[Struct]] = {
    layout.MEMBER: MemberState,
    layout.PROPOSAL: ProposalState,
    layout.VOTE: VoteState,
    layout.KEY: KeyState,
    layout.NONCE: NonceState,
    layout.PARTY: PartyState,
    layout.RECORD: RecordState,
    layout.RECORD_VERSION: RecordVersionState,
    layout.PATIENT_RECORD: Marker,
    layout.CONSENT: ConsentState,
    layout.CONSENT_LIVE: Marker,
    layout.CONSENT_DENY: Marker,
    layout.CONSENT_COUNT: PairCountState,
    layout.PATIENT_CONSENT: Marker,
    layout.DELEGATION: DelegationState,
    layout.DELEGATION_PAIR: Marker,
    layout.BREAK_GLASS: BreakGlassState,
    layout.REVIEW_DUE: Marker,
    layout.AUDIT: AuditEntry,
    layout.KEY_GRANT: KeyGrantState,
    layout.ACCESS_LOG: AccessLogState,
    layout.COVERAGE: CoverageState,
    layout.BENEFICIARY_COVERAGE: Marker,
    layout.PREMIUM: PremiumState,
    layout.PAYMENT: PaymentState,
    layout.CLAIM: ClaimState,
    layout.PATIENT_CLAIM: Marker,
    layout.DUPLICATE: DuplicateState,
    layout.REMITTANCE: RemittanceState,
}


@dataclass
class Tables:
    """Every value of a state, decoded, by table: {table: {key parts: value}}."""

    rows: dict[bytes, dict[tuple[str, ...], Any]]
    parameters: StoredParameters
    consortium: ConsortiumState

    def table(self, name: bytes) -> dict[tuple[str, ...], Any]:
        return self.rows.get(name, {})

    def one(self, name: bytes, *parts: str) -> Any:
        return self.table(name).get(parts)


def decode_state(items: Iterable[tuple[bytes, bytes]]) -> Tables:
    """Invariant 8 (no floats, nothing but canonical Structs): every value decodes
    strictly as its table's Struct."""
    rows: dict[bytes, dict[tuple[str, ...], Any]] = defaultdict(dict)
    parameters = consortium = None
    for key, value in items:
        table, _, rest = key.partition(layout.SEPARATOR)
        if key == layout.PARAMETERS_KEY:
            parameters = decode_value(key, value, StoredParameters)
            continue
        if key == layout.CONSORTIUM_KEY:
            consortium = decode_value(key, value, ConsortiumState)
            continue
        assert table in TABLE_CLASSES, f"unknown table in key {key!r}"
        parts = tuple(part.decode() for part in rest.split(layout.SEPARATOR))
        rows[table][parts] = decode_value(key, value, TABLE_CLASSES[table])
    assert parameters is not None and consortium is not None
    return Tables(dict(rows), parameters, consortium)


# ---- state invariants ---------------------------------------------------------------------


def check_state(
    state: MemoryState,
    *,
    now_ms: int,
    signers: Mapping[bytes, bytes],
    secrets: Sequence[bytes] = (),
) -> Tables:
    """Every invariant that a single state must satisfy. ``now_ms`` is the last block's
    time; ``signers`` maps tx id to signing key for every tx applied so far; ``secrets`` are
    clear values (names, plaintexts) that must never reach the state."""
    items = state.items()
    check_no_plaintext(items, secrets)
    tables = decode_state(items)
    check_consortium(tables)
    check_key_grants(tables)
    check_break_glass(tables, now_ms)
    check_claims(tables)
    check_duplicates(tables)
    check_premiums(tables)
    check_records(tables, signers)
    check_indexes(tables)
    return tables


def check_no_plaintext(items: Sequence[tuple[bytes, bytes]], secrets: Sequence[bytes]) -> None:
    """Invariant 8: no clear value, and no unkeyed hash of one, anywhere in the state."""
    needles = [*secrets, *(hashlib.sha256(secret).digest() for secret in secrets)]
    for key, value in items:
        for needle in needles:
            assert needle not in key and needle not in value, f"{needle!r} under {key!r}"


def check_consortium(tables: Tables) -> None:
    members = list(tables.table(layout.MEMBER).values())
    counts = tables.consortium
    assert counts.total_members == len(members)
    assert counts.active_members == sum(member.active for member in members)
    assert counts.active_validators == sum(m.active and m.validator for m in members)
    assert counts.active_validators >= 1
    for member in members:
        key = tables.one(layout.KEY, member.admin_key.hex())
        assert key is not None and key.owner_id == member.org_id


def _covering_grantees(tables: Tables, recipient: str) -> set[str]:
    party = tables.one(layout.PARTY, recipient)
    assert party is not None, f"grant recipient {recipient} is not a party"
    grantees = {recipient}
    if party.kind is b.PartyKind.PRACTITIONER:
        grantees.add(party.registered_by)
    return grantees


def _in_scope(consent: ConsentState, record: RecordState, confidentiality: Any) -> bool:
    if consent.records:
        scoped = record.record_id in consent.records
    else:
        scoped = consent.custodian in (None, record.custodian)
    return scoped and confidentiality <= consent.confidentiality_max


def check_key_grants(tables: Tables) -> None:
    """Invariants 1 and 2: every key grant had, at its time, a live covering permit and no
    live covering deny, or an open break-glass of that same reader opened before it; and
    every key grant is in the patient's audit trail."""
    audit = tables.table(layout.AUDIT)
    audited = {
        (entry.tx_id, entry.record_id, entry.recipient)
        for entry in audit.values()
        if entry.kind is AuditKind.KEY_GRANT
    }
    consents = list(tables.table(layout.CONSENT).values())
    for grant in tables.table(layout.KEY_GRANT).values():
        assert (grant.tx_id, grant.record_id, grant.recipient) in audited
        record = tables.one(layout.RECORD, grant.record_id)
        assert record is not None and record.patient == grant.patient
        version = tables.one(layout.RECORD_VERSION, grant.record_id, f"{grant.version:016x}")
        if version is None:  # shredded since: its confidentiality is gone with it
            assert record.shredded
            continue
        time = grant.time_ms
        grantees = _covering_grantees(tables, grant.recipient)
        if grant.basis is b.GrantBasis.CONSENT:
            permit = tables.one(layout.CONSENT, grant.basis_id)
            assert permit is not None and permit.patient == grant.patient
            assert permit.decision is b.Decision.PERMIT and b.Action.READ in permit.actions
            assert permit.live_at(time) and permit.grantee in grantees
            assert _in_scope(permit, record, version.confidentiality)
            for deny in consents:
                assert not (
                    deny.decision is b.Decision.DENY
                    and deny.patient == grant.patient
                    and deny.grantee in grantees
                    and deny.live_at(time)
                    and b.Action.READ in deny.actions
                    and _in_scope(deny, record, version.confidentiality)
                ), f"grant {grant.grant_id} under live deny {deny.consent_id}"
        else:
            btg = tables.one(layout.BREAK_GLASS, grant.basis_id)
            assert btg is not None and btg.practitioner == grant.recipient
            assert btg.patient == grant.patient and grant.record_id in btg.records
            assert btg.open_at(time) or _closed_later_in_the_block(audit, btg, grant), (
                f"grant {grant.grant_id} under break-glass {btg.btg_id} not open then")
            assert (btg.open_height, btg.open_position) < (grant.height, grant.position)


def _closed_later_in_the_block(audit: dict[Any, Any], btg: Any, grant: Any) -> bool:
    """The break-glass was closed in the grant's own block (so at the grant's time), by a
    tx after the grant: block time does not tell them apart, the tx order does."""
    if btg.closed_ms != grant.time_ms:
        return False
    closes = [(entry.height, entry.position) for entry in audit.values()
              if entry.kind is AuditKind.BTG_CLOSE and entry.basis_id == btg.btg_id]
    return bool(closes) and (grant.height, grant.position) < min(closes)


def check_break_glass(tables: Tables, now_ms: int) -> None:
    """Invariant 2: each break-glass has its opening audit entry, and every one whose
    review is overdue at the last block is reviewed or flagged."""
    opened = {
        entry.basis_id: entry
        for entry in tables.table(layout.AUDIT).values()
        if entry.kind is AuditKind.BTG_OPEN
    }
    pending = {parts[1] for parts in tables.table(layout.REVIEW_DUE)}
    for btg in tables.table(layout.BREAK_GLASS).values():
        entry = opened.get(btg.btg_id)
        assert entry is not None and entry.tx_id == btg.open_tx_id
        assert btg.expires_ms - btg.opened_ms <= tables.parameters.btg_max_hours * 3_600_000
        if btg.review_due_ms < now_ms:
            assert btg.review_outcome is not None or btg.flagged, btg.btg_id
        waiting = btg.review_outcome is None and not btg.flagged
        assert (btg.btg_id in pending) == waiting


def check_claims(tables: Tables) -> None:
    """Invariant 3: a claim is paid at most once; payments <= benefit <= charges."""
    paid_by: dict[str, list[str]] = defaultdict(list)
    for remittance in tables.table(layout.REMITTANCE).values():
        assert sum(a.amount for a in remittance.allocations) == remittance.total
        for allocation in remittance.allocations:
            paid_by[allocation.claim_id].append(remittance.remittance_id)
    for claim in tables.table(layout.CLAIM).values():
        assert claim.claim_id.startswith(claim.provider + ":")
        assert sum(line.charge for line in claim.lines) == claim.total
        if claim.benefits:
            assert len(claim.benefits) == len(claim.lines)
            assert all(x <= line.charge for x, line in zip(claim.benefits, claim.lines,
                                                           strict=True))
        assert claim.benefit_total <= claim.total
        remittances = paid_by.get(claim.claim_id, [])
        assert len(remittances) <= 1, f"{claim.claim_id} paid by {remittances}"
        if claim.paid or claim.remittance_id is not None:
            assert remittances == [claim.remittance_id]
            assert claim.prior_paid + claim.paid == claim.benefit_total
        if claim.status is ClaimStatus.PAID:
            assert claim.remittance_id is not None
        if claim.replaces is not None and claim.frequency is b.ClaimFrequency.REPLACEMENT:
            original = tables.one(layout.CLAIM, claim.replaces)
            assert original.status is ClaimStatus.REPLACED
            assert claim.prior_paid == original.prior_paid + original.paid


def check_duplicates(tables: Tables) -> None:
    """Invariant 4: one live claim per duplicate key."""
    duplicates = {bytes.fromhex(parts[0]): value.claim_id
                  for parts, value in tables.table(layout.DUPLICATE).items()}
    for duplicate, claim_id in duplicates.items():
        claim = tables.one(layout.CLAIM, claim_id)
        assert claim is not None and claim.status in LIVE_CLAIM_STATUSES
        assert duplicate in [line.duplicate_key for line in claim.lines]
    for claim in tables.table(layout.CLAIM).values():
        if claim.status in LIVE_CLAIM_STATUSES:
            for line in claim.lines:
                assert duplicates.get(line.duplicate_key) == claim.claim_id


def check_premiums(tables: Tables) -> None:
    """Invariant 4: one payment per premium period, payment ids unique."""
    premiums = tables.table(layout.PREMIUM)
    payments = tables.table(layout.PAYMENT)
    assert len(premiums) == len(payments)
    for payment in payments.values():
        premium = tables.one(layout.PREMIUM, payment.coverage_id, f"{payment.period:08x}")
        assert premium is not None and premium.payment_id == payment.payment_id
        coverage = tables.one(layout.COVERAGE, payment.coverage_id)
        assert premium.amount == coverage.premium and payment.period <= coverage.periods


def check_records(tables: Tables, signers: Mapping[bytes, bytes]) -> None:
    """Invariant 6: versions have no gaps, only the custodian adds them, the patient always
    holds a wrap; a shredded record keeps only its tombstone."""
    versions: dict[str, list[RecordVersionState]] = defaultdict(list)
    for version in tables.table(layout.RECORD_VERSION).values():
        versions[version.record_id].append(version)
    for record in tables.table(layout.RECORD).values():
        held = sorted(versions.pop(record.record_id, []), key=lambda v: v.version)
        if record.shredded:
            assert held == [] and record.ciphertext_hash is None
            continue
        assert [v.version for v in held] == list(range(1, record.version + 1))
        previous = None
        for version in held:
            assert record.patient in [wrap.recipient for wrap in version.wraps]
            assert version.previous_version_hash == previous
            previous = version.ciphertext_hash
            signer = signers[version.tx_id]
            key = tables.one(layout.KEY, signer.hex())
            assert key is not None and key.owner_id == record.custodian
        assert record.ciphertext_hash == previous
    assert versions == {}, "versions without a record head"


def check_indexes(tables: Tables) -> None:
    live_per_pair: dict[tuple[str, str], int] = {}
    live_entries = set()
    for parts in tables.table(layout.CONSENT_LIVE):
        patient, grantee, end_hex, consent_id = parts
        consent = tables.one(layout.CONSENT, consent_id)
        assert consent is not None and consent.revoked_ms is None
        assert (consent.patient, consent.grantee) == (patient, grantee)
        assert int(end_hex, 16) == consent.end_ms
        live_per_pair[(patient, grantee)] = live_per_pair.get((patient, grantee), 0) + 1
        live_entries.add(consent_id)
        if consent.decision is b.Decision.DENY:  # every live deny is in the deny index
            assert tables.one(layout.CONSENT_DENY, *parts) is not None
    for parts in tables.table(layout.CONSENT_DENY):
        consent = tables.one(layout.CONSENT, parts[3])
        assert consent is not None and consent.decision is b.Decision.DENY
        assert parts[3] in live_entries, "a deny entry outlived its live entry"
    counts = {tuple(parts): count.live
              for parts, count in tables.table(layout.CONSENT_COUNT).items()}
    for pair, live in live_per_pair.items():
        assert counts.get(pair) == live, (pair, counts.get(pair), live)
    for pair, live in counts.items():
        assert live == live_per_pair.get(pair, 0), (pair, live)
    for consent in tables.table(layout.CONSENT).values():
        assert tables.one(layout.PATIENT_CONSENT, consent.patient, consent.consent_id) is not None
    for parts in tables.table(layout.DELEGATION_PAIR):
        delegation = tables.one(layout.DELEGATION, parts[2])
        assert (delegation.patient, delegation.delegate) == parts[:2]
    for record in tables.table(layout.RECORD).values():
        assert tables.one(layout.PATIENT_RECORD, record.patient, record.record_id) is not None
    for party in tables.table(layout.PARTY).values():
        key = tables.one(layout.KEY, party.signing_key.hex())
        assert key is not None and key.owner_id == party.party_id


# ---- transition invariants ----------------------------------------------------------------


def check_block(
    before: MemoryState,
    after: MemoryState,
    txs: Sequence[Transaction],
    outcome: BlockOutcome,
    timestamp_ms: int,
) -> None:
    check_nonces_increase(before, after)
    check_no_revoked_signer(before, after, txs, outcome, timestamp_ms)
    check_validator_changes(before, after, outcome)


def _nonces(state: MemoryState) -> dict[bytes, int]:
    prefix = layout.table_prefix(layout.NONCE)
    return {
        key: decode_value(key, value, NonceState).last_nonce
        for key, value in state.iterate(prefix, limit=1_000_000)
    }


def check_nonces_increase(before: MemoryState, after: MemoryState) -> None:
    """Invariant 5: a key's last used nonce never goes down nor disappears."""
    old, new = _nonces(before), _nonces(after)
    for key, nonce in old.items():
        assert new.get(key, -1) >= nonce


def check_no_revoked_signer(
    before: MemoryState,
    after: MemoryState,
    txs: Sequence[Transaction],
    outcome: BlockOutcome,
    timestamp_ms: int,
) -> None:
    """Invariant 5: nothing signed by a key that was revoked (or rotated out) when its
    block began is accepted. (A key changed inside the block is judged by tx order, which
    the per-tx tests cover.)"""
    for tx, code in zip(txs, outcome.codes, strict=True):
        if code != ResultCode.OK:
            continue
        key = layout.public_key_key(tx.signer)
        if before.get(key) != after.get(key):
            continue
        data = before.get(key)
        assert data is not None, "an accepted tx has a known signer"
        state = decode_value(key, data, KeyState)
        assert not state.invalid_at(timestamp_ms), f"{tx.type.name} accepted from a dead key"


def check_validator_changes(
    before: MemoryState, after: MemoryState, outcome: BlockOutcome
) -> None:
    """Invariant 7: the validator set changes only through passed proposals."""
    expected = dict(validators(before))
    passed = {
        event.tx_id
        for event in outcome.events
        if isinstance(event, ProposalDecided) and event.status is ProposalStatus.PASSED
    }
    for change in outcome.validator_changes:
        assert change.tx_id in passed
        if change.action is ValidatorAction.ADD:
            assert change.org_id not in expected
            expected[change.org_id] = change.node_key
        else:
            assert expected.pop(change.org_id) == change.node_key
    assert dict(validators(after)) == expected
