"""Insurance: coverage, premiums (X12 820), claims (837), adjudication and remittance (835).

Lifecycle of a claim: submitted -> (pending) -> approved / partial / denied -> paid; or
replaced / voided. A claim's duplicate keys are live from its submission until it is
replaced or voided; no two live claims share one. A remittance pays a claim its benefit
minus what the claims it replaced were already paid, exactly once.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.app import layout
from ledger.app.model import (
    LIVE_CLAIM_STATUSES,
    PAYABLE_CLAIM_STATUSES,
    ClaimEvent,
    ClaimEventKind,
    ClaimState,
    ClaimStatus,
    CoverageState,
    DuplicateState,
    Marker,
    PaymentState,
    PremiumState,
    RemittanceState,
)
from ledger.app.scope import TxScope, body_hash
from ledger.bodies import (
    AdjudicationDecision,
    ClaimAdjudicate,
    ClaimFrequency,
    ClaimSubmit,
    Coverage,
    MemberKind,
    PremiumPaid,
    Remittance,
)
from ledger.results import ResultCode as R

CLAIM_ID_SEPARATOR = ":"


def coverage(scope: TxScope, body: Coverage) -> None:
    insurer = scope.signer_member(R.COVERAGE_SIGNER_NOT_INSURER, (MemberKind.INSURER,))
    scope.require(
        not scope.exists(layout.coverage_key(body.coverage_id)),
        R.COVERAGE_ID_EXISTS,
        f"coverage {body.coverage_id} exists",
    )
    scope.patient(body.beneficiary)
    scope.require(
        body.start_ms < body.end_ms and body.end_ms > scope.now_ms,
        R.COVERAGE_PERIOD_INVALID,
        "the period must be non-empty and not over",
    )
    scope.store(
        layout.coverage_key(body.coverage_id),
        CoverageState(
            coverage_id=body.coverage_id,
            insurer=insurer.org_id,
            beneficiary=body.beneficiary,
            start_ms=body.start_ms,
            end_ms=body.end_ms,
            periods=body.periods,
            premium=body.premium,
            currency=body.currency,
            height=scope.height,
        ),
    )
    scope.store(layout.beneficiary_coverage_key(body.beneficiary, body.coverage_id), Marker())


def _coverage(scope: TxScope, coverage_id: str) -> CoverageState:
    state = scope.load(layout.coverage_key(coverage_id), CoverageState)
    if state is None:
        scope.fail(R.COVERAGE_UNKNOWN, f"no coverage {coverage_id}")
    return state


def premium_paid(scope: TxScope, body: PremiumPaid) -> None:
    covered = _coverage(scope, body.coverage_id)
    member = scope.signer.member
    scope.require(
        member is not None and member.org_id == covered.insurer,
        R.PREMIUM_SIGNER_NOT_INSURER,
        f"{covered.insurer} records premiums of {body.coverage_id}",
    )
    digest = body_hash(body)
    payment = scope.load(layout.payment_key(body.payment_id), PaymentState)
    if payment is not None:
        scope.require(
            payment.body_hash == digest,
            R.PAYMENT_ID_REUSED,
            f"payment {body.payment_id} was recorded with another body",
        )
        return  # the same payment sent again: nothing to do
    scope.require(
        body.period <= covered.periods,
        R.PREMIUM_PERIOD_OUT_OF_RANGE,
        f"coverage {body.coverage_id} has {covered.periods} periods",
    )
    scope.require(
        body.currency == covered.currency,
        R.CURRENCY_MISMATCH,
        f"coverage {body.coverage_id} is in {covered.currency}",
    )
    premium_key = layout.premium_key(body.coverage_id, body.period)
    scope.require(
        not scope.exists(premium_key),
        R.PREMIUM_PERIOD_ALREADY_PAID,
        f"period {body.period} is already paid",
    )
    scope.require(
        body.amount == covered.premium,
        R.PREMIUM_AMOUNT_NOT_DUE,
        f"{covered.premium} is due, not {body.amount}",
    )
    scope.store(
        premium_key,
        PremiumState(
            payment_id=body.payment_id,
            amount=body.amount,
            height=scope.height,
            time_ms=scope.now_ms,
        ),
    )
    scope.store(
        layout.payment_key(body.payment_id),
        PaymentState(
            payment_id=body.payment_id,
            body_hash=digest,
            coverage_id=body.coverage_id,
            period=body.period,
        ),
    )


def _event(scope: TxScope, kind: ClaimEventKind, status: ClaimStatus) -> ClaimEvent:
    return ClaimEvent(
        kind=kind,
        status=status,
        tx_id=scope.tx_id,
        height=scope.height,
        position=scope.position,
        time_ms=scope.now_ms,
    )


def _with_event(claim: ClaimState, event: ClaimEvent) -> ClaimState:
    return replace(claim, status=event.status, history=(*claim.history, event))


def claim_submit(scope: TxScope, body: ClaimSubmit) -> None:
    provider = scope.signer_member(R.CLAIM_SIGNER_NOT_PROVIDER, (MemberKind.PROVIDER,))
    scope.require(
        body.claim_id.startswith(provider.org_id + CLAIM_ID_SEPARATOR),
        R.CLAIM_ID_NOT_PROVIDERS,
        f"a claim id of {provider.org_id} starts with '{provider.org_id}:'",
    )
    digest = body_hash(body)
    existing = scope.load(layout.claim_key(body.claim_id), ClaimState)
    if existing is not None:
        scope.require(
            existing.body_hash == digest,
            R.CLAIM_ID_REUSED,
            f"claim {body.claim_id} was submitted with another body",
        )
        return  # the same claim sent again: nothing to do
    covered, keys = _checked_claim(scope, body)
    status, prior_paid = _apply_frequency(scope, body, provider.org_id)
    if status is ClaimStatus.SUBMITTED:
        _bill_lines(scope, body.claim_id, keys)
    scope.store(
        layout.claim_key(body.claim_id),
        ClaimState(
            claim_id=body.claim_id,
            provider=provider.org_id,
            insurer=covered.insurer,
            coverage_id=body.coverage_id,
            patient=body.patient,
            frequency=body.frequency,
            replaces=body.replaces,
            replaced_by=None,
            status=status,
            lines=body.lines,
            total=body.total,
            currency=body.currency,
            document_hash=body.document_hash,
            body_hash=digest,
            decision=None,
            benefits=(),
            reason_codes=(),
            prior_paid=prior_paid,
            paid=0,
            remittance_id=None,
            history=(_event(scope, ClaimEventKind.SUBMITTED, status),),
        ),
    )
    scope.store(layout.patient_claim_key(body.patient, body.claim_id), Marker())


def _checked_claim(scope: TxScope, body: ClaimSubmit) -> tuple[CoverageState, list[bytes]]:
    """The claim's own checks, in rule order: its total, its coverage (the patient's, in
    its currency), distinct duplicate keys. Returns the coverage and the keys."""
    scope.require(
        sum(line.charge for line in body.lines) == body.total,
        R.CLAIM_TOTAL_MISMATCH,
        "the total is not the sum of the lines",
    )
    covered = _coverage(scope, body.coverage_id)
    scope.require(
        covered.beneficiary == body.patient,
        R.CLAIM_COVERAGE_MISMATCH,
        f"coverage {body.coverage_id} is not the patient's",
    )
    scope.require(
        body.currency == covered.currency,
        R.CURRENCY_MISMATCH,
        f"coverage {body.coverage_id} is in {covered.currency}",
    )
    keys = [line.duplicate_key for line in body.lines]
    scope.require(
        len(set(keys)) == len(keys), R.CLAIM_DUPLICATE_LINE, "two lines share a duplicate key"
    )
    return covered, keys


def _apply_frequency(scope: TxScope, body: ClaimSubmit,
                     provider: str) -> tuple[ClaimStatus, int]:
    """An original replaces nothing; a replacement or a void retires the live original
    (a void repeats its lines and may not undo a payment). Returns the new claim's status
    and what was paid before it."""
    if body.frequency is ClaimFrequency.ORIGINAL:
        scope.require(
            body.replaces is None,
            R.CLAIM_REPLACES_ON_ORIGINAL,
            "an original claim replaces nothing",
        )
        return ClaimStatus.SUBMITTED, 0
    original = _live_original(scope, body, provider)
    status, prior_paid = ClaimStatus.SUBMITTED, 0
    if body.frequency is ClaimFrequency.VOID:
        scope.require(
            original.lines == body.lines,
            R.CLAIM_VOID_MISMATCH,
            "a void repeats the original's lines",
        )
        scope.require(
            original.status is not ClaimStatus.PAID,
            R.CLAIM_ORIGINAL_PAID,
            f"{original.claim_id} is paid; a payment is not voided",
        )
        status = ClaimStatus.VOID
    else:
        prior_paid = original.prior_paid + original.paid
    _retire(scope, original, body)
    return status, prior_paid


def _bill_lines(scope: TxScope, claim_id: str, keys: list[bytes]) -> None:
    """Each service line is billed once across all claims (its duplicate key)."""
    for key in keys:
        holder = scope.load(layout.duplicate_key(key), DuplicateState)
        scope.require(
            holder is None,
            R.CLAIM_DUPLICATE_SERVICE,
            f"a service line is already billed on {holder.claim_id if holder else ''}",
        )
        scope.store(layout.duplicate_key(key), DuplicateState(claim_id=claim_id))


def _live_original(scope: TxScope, body: ClaimSubmit, provider: str) -> ClaimState:
    original = (
        None
        if body.replaces is None
        else scope.load(layout.claim_key(body.replaces), ClaimState)
    )
    if (
        original is None
        or original.provider != provider
        or original.status not in LIVE_CLAIM_STATUSES
        or original.patient != body.patient
        or original.coverage_id != body.coverage_id
    ):
        scope.fail(
            R.CLAIM_ORIGINAL_MISSING,
            f"no live claim {body.replaces} of this provider, patient and coverage",
        )
    return original


def _retire(scope: TxScope, original: ClaimState, body: ClaimSubmit) -> None:
    """Mark the original replaced or voided and release its duplicate keys."""
    voided = body.frequency is ClaimFrequency.VOID
    kind = ClaimEventKind.VOIDED if voided else ClaimEventKind.REPLACED
    status = ClaimStatus.VOIDED if voided else ClaimStatus.REPLACED
    for line in original.lines:
        key = layout.duplicate_key(line.duplicate_key)
        holder = scope.load(key, DuplicateState)
        if holder is not None and holder.claim_id == original.claim_id:
            scope.delete(key)
    scope.store(
        layout.claim_key(original.claim_id),
        replace(_with_event(original, _event(scope, kind, status)), replaced_by=body.claim_id),
    )


_DECIDED_STATUS = {
    AdjudicationDecision.APPROVED: ClaimStatus.APPROVED,
    AdjudicationDecision.PARTIAL: ClaimStatus.PARTIAL,
    AdjudicationDecision.DENIED: ClaimStatus.DENIED,
    AdjudicationDecision.PENDING: ClaimStatus.PENDING,
}


def claim_adjudicate(scope: TxScope, body: ClaimAdjudicate) -> None:
    claim = scope.load(layout.claim_key(body.claim_id), ClaimState)
    if claim is None:
        scope.fail(R.CLAIM_UNKNOWN, f"no claim {body.claim_id}")
    member = scope.signer.member
    scope.require(
        member is not None and member.org_id == claim.insurer,
        R.CLAIM_ADJUDICATOR_NOT_INSURER,
        f"only {claim.insurer} adjudicates {body.claim_id}",
    )
    scope.require(
        claim.status in (ClaimStatus.SUBMITTED, ClaimStatus.PENDING),
        R.CLAIM_NOT_ADJUDICABLE,
        f"{body.claim_id} is {claim.status.name.lower()}",
    )
    if body.decision is AdjudicationDecision.PENDING:
        scope.require(
            not body.benefits,
            R.CLAIM_BENEFITS_LENGTH_MISMATCH,
            "a pending decision carries no benefits",
        )
    else:
        _check_benefits(scope, claim, body)
    status = _DECIDED_STATUS[body.decision]
    scope.store(
        layout.claim_key(body.claim_id),
        replace(
            _with_event(claim, _event(scope, ClaimEventKind.ADJUDICATED, status)),
            decision=body.decision,
            benefits=body.benefits,
            reason_codes=body.reason_codes,
        ),
    )


def _check_benefits(scope: TxScope, claim: ClaimState, body: ClaimAdjudicate) -> None:
    scope.require(
        len(body.benefits) == len(claim.lines),
        R.CLAIM_BENEFITS_LENGTH_MISMATCH,
        f"{len(claim.lines)} lines, {len(body.benefits)} benefits",
    )
    scope.require(
        all(
            benefit <= line.charge
            for benefit, line in zip(body.benefits, claim.lines, strict=True)
        ),
        R.CLAIM_BENEFIT_EXCEEDS_CHARGE,
        "a benefit exceeds its line's charge",
    )
    benefit = sum(body.benefits)
    consistent = {
        AdjudicationDecision.APPROVED: benefit == claim.total,
        AdjudicationDecision.PARTIAL: 0 < benefit < claim.total,
        AdjudicationDecision.DENIED: benefit == 0,
    }[body.decision]
    scope.require(
        consistent,
        R.CLAIM_DECISION_CONTRADICTS_AMOUNTS,
        f"{body.decision.name.lower()} with benefit {benefit} of {claim.total}",
    )
    if body.decision is not AdjudicationDecision.APPROVED:
        scope.require(
            bool(body.reason_codes),
            R.CLAIM_REASON_CODE_MISSING,
            "a reduced or denied benefit names its reason codes",
        )
    scope.require(
        benefit >= claim.prior_paid,
        R.CLAIM_BENEFIT_BELOW_PAID,
        f"the replaced claims were already paid {claim.prior_paid}",
    )


def remittance(scope: TxScope, body: Remittance) -> None:
    insurer = scope.signer_member(R.REMITTANCE_SIGNER_NOT_INSURER, (MemberKind.INSURER,))
    scope.require(
        not scope.exists(layout.remittance_key(body.remittance_id)),
        R.REMITTANCE_ID_EXISTS,
        f"remittance {body.remittance_id} exists",
    )
    scope.require(
        sum(allocation.amount for allocation in body.allocations) == body.total,
        R.REMITTANCE_TOTAL_MISMATCH,
        "the allocations do not sum to the total",
    )
    claim_ids = [allocation.claim_id for allocation in body.allocations]
    scope.require(
        len(set(claim_ids)) == len(claim_ids),
        R.REMITTANCE_DUPLICATE_ALLOCATION,
        "a claim is allocated twice",
    )
    for allocation in body.allocations:
        claim = scope.load(layout.claim_key(allocation.claim_id), ClaimState)
        if claim is None:
            scope.fail(R.CLAIM_UNKNOWN, f"no claim {allocation.claim_id}")
        scope.require(
            claim.insurer == insurer.org_id,
            R.REMITTANCE_SIGNER_NOT_INSURER,
            f"{allocation.claim_id} is {claim.insurer}'s to pay",
        )
        scope.require(
            claim.currency == body.currency,
            R.CURRENCY_MISMATCH,
            f"{allocation.claim_id} is in {claim.currency}",
        )
        scope.require(
            claim.status is not ClaimStatus.PAID,
            R.CLAIM_ALREADY_PAID,
            f"{allocation.claim_id} is already paid",
        )
        scope.require(
            claim.status in PAYABLE_CLAIM_STATUSES,
            R.CLAIM_NOT_PAYABLE,
            f"{allocation.claim_id} is {claim.status.name.lower()}",
        )
        scope.require(
            allocation.amount == claim.payable_amount,
            R.REMITTANCE_AMOUNT_MISMATCH,
            f"{allocation.claim_id} is owed {claim.payable_amount}, not {allocation.amount}",
        )
        scope.store(
            layout.claim_key(allocation.claim_id),
            replace(
                _with_event(claim, _event(scope, ClaimEventKind.PAID, ClaimStatus.PAID)),
                paid=allocation.amount,
                remittance_id=body.remittance_id,
            ),
        )
    scope.store(
        layout.remittance_key(body.remittance_id),
        RemittanceState(
            remittance_id=body.remittance_id,
            insurer=insurer.org_id,
            total=body.total,
            currency=body.currency,
            allocations=body.allocations,
            tx_id=scope.tx_id,
            height=scope.height,
        ),
    )
