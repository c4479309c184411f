"""DOMAIN.md, "Bad inputs that must be rejected with a clear reason": every item of the ten
groups, with its reason code, and proof that state did not change (only the refused tx's
nonce for a tx in a block; nothing at all for a stateless refusal)."""

from __future__ import annotations

import msgpack
import pytest
from app_world import (
    CHAIN_ID,
    DAY_MS,
    HOUR_MS,
    World,
    claim_lines,
    clinic_world,
    digest,
    insured_world,
    signing_key,
)

from ledger import bodies as b
from ledger import limits
from ledger.app import BlockContext, apply_block
from ledger.results import ResultCode as R
from ledger.sdk.builders import sign_unchecked
from ledger.tx import sign_transaction
from ledger.txtypes import TxType
from ledger.validation import check_transaction


def stateless(world: World, raw: bytes, code: R) -> None:
    """Refused by the stateless check; the node then passes None and the code: no
    writes at all, and the in-process ledger refuses it at submission."""
    result = check_transaction(raw, CHAIN_ID)
    assert result.code is code, result.message
    before = world.snapshot()
    context = BlockContext(world.ledger.height + 1, world.next_block_ms, bytes(32))
    outcome = apply_block(world.ledger.state, context, [None], [int(code)])
    assert outcome.codes == (int(code),)
    assert outcome.writes == {}
    submission = world.ledger.submit(raw)
    assert not submission.accepted and submission.code == code
    assert world.snapshot() == before


# ---- 1. a replayed tx (stale nonce, or another chain's id) --------------------------------


def test_1_replayed_tx_with_a_stale_nonce_is_refused_and_changes_nothing() -> None:
    world = clinic_world()
    alice = world.parties["alice"].builder
    world.ok(world.consent(alice, "consent-1", "alice", "grey"))
    replay = world.consent(alice, "consent-2", "alice", "grey")
    stale = alice.sign(replay.type, replay.body, nonce=replay.nonce - 1)
    world.refused(stale, R.NONCE_STALE, nonce_used=False)
    equal = alice.sign(replay.type, replay.body, nonce=alice.nonces.last_used - 1)
    world.refused(equal, R.NONCE_STALE, nonce_used=False)


def test_1_the_same_signed_bytes_twice_are_refused() -> None:
    world = clinic_world()
    tx = world.ok(world.consent(world.parties["alice"].builder, "consent-1", "alice", "grey"))
    submission = world.ledger.submit(tx.raw)
    assert submission.code == R.DUPLICATE and not submission.accepted
    # Even a node that did not dedupe would refuse it: its nonce is used.
    world.refused(tx, R.NONCE_STALE, nonce_used=False)


def test_1_a_tx_signed_for_another_chain_is_refused() -> None:
    world = clinic_world()
    other = sign_transaction(
        signing_key("party/alice"),
        chain_id="another-chain",
        tx_type=TxType.CONSENT_REVOKE,
        nonce=99,
        body=b.ConsentRevoke("consent-1"),
    )
    stateless(world, other.raw, R.WRONG_CHAIN)
    # and the application double-checks it if handed such a tx directly
    world.refused(other, R.WRONG_CHAIN, nonce_used=False)


# ---- 2. a body changed after signing; truncated, oversized, trailing garbage --------------


def test_2_a_body_changed_after_signing_fails_the_signature() -> None:
    world = clinic_world()
    tx = world.consent(world.parties["alice"].builder, "consent-1", "alice", "grey")
    raw = tx.raw.replace(b"grey", b"gres")
    assert raw != tx.raw
    stateless(world, raw, R.BAD_SIGNATURE)


@pytest.mark.parametrize("cut", [1, 10, 70])
def test_2_a_truncated_encoding_is_malformed(cut: int) -> None:
    world = clinic_world()
    tx = world.consent(world.parties["alice"].builder, "consent-1", "alice", "grey")
    stateless(world, tx.raw[:-cut], R.MALFORMED)


def test_2_trailing_garbage_is_malformed() -> None:
    world = clinic_world()
    tx = world.consent(world.parties["alice"].builder, "consent-1", "alice", "grey")
    stateless(world, tx.raw + b"\x00", R.MALFORMED)


def test_2_an_oversized_tx_is_refused() -> None:
    world = clinic_world()
    raw = sign_unchecked(
        world.members["lab"].key,
        chain_id=CHAIN_ID,
        tx_type=TxType.SHRED_RECORD,
        nonce=50,
        body_tree=["rec-lab", b"\x01" * (limits.TX_SIZE_BYTES_MAX + 1)],
    )
    stateless(world, raw, R.OVERSIZE)


# ---- 3. a provider signing a consent on the patient's behalf ------------------------------


def test_3_a_provider_cannot_sign_a_consent_for_the_patient() -> None:
    world = clinic_world()
    forged = world.consent(world.members["hospital-b"], "consent-1", "alice", "grey")
    world.refused(forged, R.CONSENT_SIGNER_NOT_PATIENT_OR_DELEGATE)
    practitioner = world.consent(world.parties["grey"].builder, "consent-2", "alice", "grey")
    world.refused(practitioner, R.CONSENT_SIGNER_NOT_PATIENT_OR_DELEGATE)


# ---- 4. a key grant after revocation, or after the consent period ends ---------------------


def test_4_a_key_grant_after_the_consent_is_revoked() -> None:
    world = clinic_world()
    alice = world.parties["alice"].builder
    world.ok(world.consent(alice, "consent-1", "alice", "grey"))
    world.ok(world.grant(world.members["lab"], "grant-1", "rec-lab", "grey", "consent-1"))
    world.ok(alice.consent_revoke("consent-1"))
    world.refused(
        world.grant(world.members["lab"], "grant-2", "rec-lab", "grey", "consent-1"),
        R.KEY_GRANT_CONSENT_REVOKED,
    )


def test_4_a_key_grant_after_the_consent_period_ends() -> None:
    world = clinic_world()
    world.ok(world.consent(world.parties["alice"].builder, "consent-1", "alice", "grey", days=2))
    world.advance(2 * DAY_MS)
    world.refused(
        world.grant(world.members["lab"], "grant-1", "rec-lab", "grey", "consent-1"),
        R.KEY_GRANT_CONSENT_NOT_IN_PERIOD,
    )


def test_4_a_key_grant_signed_after_the_custodian_key_is_revoked() -> None:
    world = clinic_world()
    world.ok(world.consent(world.parties["alice"].builder, "consent-1", "alice", "grey"))
    lab = world.members["lab"]
    world.ok(
        lab.revoke_key(
            lab.public_key, reason=b.RevocationReason.KEY_COMPROMISE, invalidity_ms=world.now
        )
    )
    world.refused(
        world.grant(lab, "grant-1", "rec-lab", "grey", "consent-1"), R.SIGNER_KEY_REVOKED
    )


# ---- 5. V under an R consent; a guardian granting V; a guardian after expiry ---------------


def test_5_a_v_record_under_a_consent_capped_at_r() -> None:
    world = clinic_world()
    world.ok(world.consent(world.parties["alice"].builder, "consent-1", "alice", "grey"))
    world.refused(
        world.grant(world.members["hospital-a"], "grant-1", "rec-note", "grey", "consent-1"),
        R.KEY_GRANT_CONFIDENTIALITY_ABOVE_CONSENT,
    )


def attest_carol(world: World, *, days: int = 365) -> None:
    world.ok(
        world.members["hospital-a"].delegate_grant(
            delegation_id="delegation-1",
            patient="bob",
            delegate="carol",
            relationship=b.Relationship.PARENT,
            valid_until_ms=world.now + days * DAY_MS,
            powers=(b.DelegatePower.CONSENT, b.DelegatePower.KEY_GRANT),
        )
    )


def test_5_a_guardian_granting_v_access() -> None:
    world = clinic_world()
    attest_carol(world)
    carol = world.parties["carol"].builder
    world.refused(
        world.consent(
            carol, "consent-1", "bob", "grey", confidentiality_max=b.Confidentiality.V
        ),
        R.CONSENT_CONFIDENTIALITY_ABOVE_DELEGATION,
    )
    world.ok(world.consent(carol, "consent-2", "bob", "grey"))


def test_5_a_guardian_acting_after_the_delegation_expired() -> None:
    world = clinic_world()
    attest_carol(world, days=1)
    world.advance(DAY_MS)
    world.refused(
        world.consent(world.parties["carol"].builder, "consent-1", "bob", "grey"),
        R.DELEGATION_EXPIRED,
    )


# ---- 6. another's break-glass; a 72-hour break-glass; a grant after it expired -------------


def open_glass(world: World, hours: int = 4) -> None:
    world.ok(
        world.parties["ross"].builder.btg_open(
            btg_id="btg-1",
            patient="alice",
            records=["rec-lab"],
            hours=hours,
            justification_hash=digest("justification"),
        )
    )


def test_6_one_practitioner_using_anothers_break_glass() -> None:
    world = clinic_world()
    open_glass(world)
    world.refused(
        world.grant(
            world.members["lab"], "grant-1", "rec-lab", "house", "btg-1",
            basis=b.GrantBasis.BREAK_GLASS,
        ),
        R.KEY_GRANT_BTG_OTHER_HOLDER,
    )
    world.refused(world.parties["house"].builder.btg_close("btg-1"), R.BTG_NOT_HOLDER)


def test_6_a_72_hour_break_glass() -> None:
    world = clinic_world()
    world.refused(
        world.parties["ross"].builder.btg_open(
            btg_id="btg-1", patient="alice", records=["rec-lab"], hours=72,
            justification_hash=digest("justification"),
        ),
        R.BTG_HOURS_OUT_OF_RANGE,
    )


def test_6_a_grant_after_the_break_glass_expired() -> None:
    world = clinic_world()
    open_glass(world, hours=4)
    world.ok(
        world.grant(
            world.members["lab"], "grant-1", "rec-lab", "ross", "btg-1",
            basis=b.GrantBasis.BREAK_GLASS,
        )
    )
    world.advance(4 * HOUR_MS)
    world.refused(
        world.grant(
            world.members["lab"], "grant-2", "rec-lab", "ross", "btg-1",
            basis=b.GrantBasis.BREAK_GLASS,
        ),
        R.KEY_GRANT_BTG_ENDED,
    )


# ---- 7. re-billing under a new claim id; a total off its lines; a float amount -------------


def test_7_the_same_services_rebilled_under_a_new_claim_id() -> None:
    world, coverage = insured_world()
    hospital = world.members["hospital-a"]
    lines = claim_lines(4_000, 16_000)
    world.ok(
        hospital.claim_submit(
            claim_id="hospital-a:1", coverage_id=coverage, patient="alice", lines=lines,
            currency="USD", document_hash=digest("claim 1"),
        )
    )
    world.refused(
        hospital.claim_submit(
            claim_id="hospital-a:2", coverage_id=coverage, patient="alice",
            lines=(lines[1], *claim_lines(500, tag="new")), currency="USD",
            document_hash=digest("claim 2"),
        ),
        R.CLAIM_DUPLICATE_SERVICE,
    )


def test_7_a_total_that_does_not_match_its_lines() -> None:
    world, coverage = insured_world()
    world.refused(
        world.members["hospital-a"].claim_submit(
            claim_id="hospital-a:1", coverage_id=coverage, patient="alice",
            lines=claim_lines(4_000, 16_000), total=21_000, currency="USD",
            document_hash=digest("claim 1"),
        ),
        R.CLAIM_TOTAL_MISMATCH,
    )


def test_7_an_amount_sent_as_a_float() -> None:
    world, coverage = insured_world()
    hospital = world.members["hospital-a"]
    tx = hospital.claim_submit(
        claim_id="hospital-a:1", coverage_id=coverage, patient="alice",
        lines=claim_lines(4_000), currency="USD", document_hash=digest("claim 1"),
    )
    tree = tx.body.to_wire()
    tree[5][0][1] = 40.0  # lines[0].charge
    tree[6] = 40.0  # total
    raw = sign_unchecked(
        hospital.key, chain_id=CHAIN_ID, tx_type=TxType.CLAIM_SUBMIT, nonce=tx.nonce + 1,
        body_tree=tree,
    )
    assert isinstance(msgpack.unpackb(raw)[5][6], float)
    stateless(world, raw, R.MALFORMED)


# ---- 8. adjudication by a non-insurer; "approved" with a reduced benefit -------------------


def submitted_claim() -> tuple[World, str]:
    world, coverage = insured_world()
    world.ok(
        world.members["hospital-a"].claim_submit(
            claim_id="hospital-a:1", coverage_id=coverage, patient="alice",
            lines=claim_lines(4_000, 16_000), currency="USD", document_hash=digest("claim"),
        )
    )
    return world, "hospital-a:1"


def test_8_adjudication_by_a_member_who_is_not_the_claims_insurer() -> None:
    world, claim = submitted_claim()
    for org in ("hospital-b", "hospital-a"):
        world.refused(
            world.members[org].claim_adjudicate(
                claim, decision=b.AdjudicationDecision.APPROVED, benefits=[4_000, 16_000]
            ),
            R.CLAIM_ADJUDICATOR_NOT_INSURER,
        )


def test_8_approved_with_a_reduced_benefit() -> None:
    world, claim = submitted_claim()
    world.refused(
        world.members["insurer"].claim_adjudicate(
            claim, decision=b.AdjudicationDecision.APPROVED, benefits=[4_000, 10_000]
        ),
        R.CLAIM_DECISION_CONTRADICTS_AMOUNTS,
    )


# ---- 9. a second remittance or an overpayment; a premium period paid twice ----------------


def adjudicated_claim() -> tuple[World, str]:
    world, claim = submitted_claim()
    world.ok(
        world.members["insurer"].claim_adjudicate(
            claim, decision=b.AdjudicationDecision.PARTIAL, benefits=[4_000, 10_000],
            reason_codes=["CO45"],
        )
    )
    return world, claim


def test_9_a_second_remittance() -> None:
    world, claim = adjudicated_claim()
    insurer = world.members["insurer"]
    world.ok(insurer.remittance(remittance_id="835-1", currency="USD",
                                allocations=[(claim, 14_000)]))
    world.refused(
        insurer.remittance(remittance_id="835-2", currency="USD", allocations=[(claim, 14_000)]),
        R.CLAIM_ALREADY_PAID,
    )


def test_9_an_overpayment() -> None:
    world, claim = adjudicated_claim()
    world.refused(
        world.members["insurer"].remittance(
            remittance_id="835-1", currency="USD", allocations=[(claim, 14_001)]
        ),
        R.REMITTANCE_AMOUNT_MISMATCH,
    )


def test_9_the_same_premium_period_paid_twice() -> None:
    world, coverage = insured_world()
    insurer = world.members["insurer"]
    world.ok(insurer.premium_paid(payment_id="820-1", coverage_id=coverage, period=1,
                                  amount=25_000, currency="USD"))
    world.refused(
        insurer.premium_paid(payment_id="820-2", coverage_id=coverage, period=1,
                             amount=25_000, currency="USD"),
        R.PREMIUM_PERIOD_ALREADY_PAID,
    )


# ---- 10. a revoked key; a double vote; an anchor with a plaintext field or by a non-member -


def test_10_a_tx_signed_by_a_revoked_key() -> None:
    world = clinic_world()
    alice = world.parties["alice"].builder
    world.ok(
        alice.revoke_key(
            alice.public_key, reason=b.RevocationReason.KEY_COMPROMISE, invalidity_ms=world.now
        )
    )
    world.refused(world.consent(alice, "consent-1", "alice", "grey"), R.SIGNER_KEY_REVOKED)


def test_10_a_double_governance_vote() -> None:
    world = World()
    proposer = world.members["hospital-a"]
    world.ok(
        proposer.propose_member(
            proposal_id="p-1", org_id="clinic", kind=b.MemberKind.PROVIDER,
            admin_key=signing_key("admin/clinic").public_key, evidence_hash=digest("evidence"),
            deadline_ms=world.now + 7 * DAY_MS,
        )
    )
    world.ok(proposer.vote("p-1"))
    world.refused(proposer.vote("p-1"), R.VOTE_DUPLICATE)
    world.refused(proposer.vote("p-1", approve=False), R.VOTE_DUPLICATE)


def test_10_a_record_anchor_carrying_a_plaintext_field() -> None:
    world = clinic_world()
    lab = world.members["lab"]
    tree = world.anchor("rec-2", "alice").body.to_wire()
    raw = sign_unchecked(
        lab.key, chain_id=CHAIN_ID, tx_type=TxType.ANCHOR_RECORD, nonce=100,
        body_tree=[*tree, "Alice Example, HbA1c 6.1%"],
    )
    stateless(world, raw, R.MALFORMED)


def test_10_a_record_anchor_sent_by_a_non_member() -> None:
    world = clinic_world()
    patient_signed = world.anchor("rec-2", "alice")
    by_party = world.parties["grey"].builder.sign(patient_signed.type, patient_signed.body)
    world.refused(by_party, R.ANCHOR_SIGNER_NOT_CUSTODIAN_MEMBER)
    by_insurer = world.members["insurer"].sign(patient_signed.type, patient_signed.body)
    world.refused(by_insurer, R.ANCHOR_SIGNER_NOT_CUSTODIAN_MEMBER)
    stranger = sign_transaction(
        signing_key("nobody"), chain_id=CHAIN_ID, tx_type=TxType.ANCHOR_RECORD, nonce=1,
        body=patient_signed.body,
    )
    world.refused(stranger, R.SIGNER_UNKNOWN)
