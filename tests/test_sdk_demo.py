"""The demo story end to end through the in-process ledger, and the SDK builders."""

from __future__ import annotations

import pytest

from ledger import bodies as b
from ledger.app import layout
from ledger.app.queries import run_query
from ledger.bodies import rotation_message
from ledger.crypto import SigningKey, verify
from ledger.results import ResultCode
from ledger.sdk.builders import TransactionBuilder
from ledger.sdk.client import LedgerClient, as_bytes
from ledger.sdk.demo import DemoConsortium, run_demo
from ledger.sdk.inprocess import InProcessLedger
from ledger.txtypes import TxType
from ledger.validation import check_transaction


@pytest.fixture(scope="module")
def demo_run() -> tuple[InProcessLedger, list[str], object]:
    consortium = DemoConsortium()
    ledger = InProcessLedger(consortium.genesis())
    lines: list[str] = []
    report = run_demo(ledger, lines.append, consortium=consortium, run_tag="test")
    return ledger, lines, report


def test_every_demo_step_matches_its_expected_result(demo_run: tuple) -> None:  # type: ignore[type-arg]
    _, lines, report = demo_run
    assert report.failures == (), "\n".join(lines)
    assert report.all_matched and len(report.steps) >= 50
    assert lines[-1].startswith(f"demo: {len(report.steps)}/{len(report.steps)}")
    names = {step.expected for step in report.steps}
    for code in ("CLAIM_DUPLICATE_SERVICE", "CLAIM_ALREADY_PAID", "KEY_GRANT_CONSENT_REVOKED",
                 "KEY_GRANT_BTG_OTHER_HOLDER", "RECORD_SHREDDED", "decrypted"):
        assert code in names


def test_the_demo_leaves_no_plaintext_or_name_in_the_ledger_state(demo_run: tuple) -> None:  # type: ignore[type-arg]
    ledger, _, _ = demo_run
    needles = [b"Alice", b"Bob Example", b"Carol", b"Dr ", b"HbA1c", b"psychotherapy",
               b"session notes", b"MRN-000123"]
    for key, value in ledger.state.items():
        for needle in needles:
            assert needle not in key and needle not in value, (needle, key)


def test_the_demo_runs_again_on_the_same_chain(demo_run: tuple) -> None:  # type: ignore[type-arg]
    ledger, _, _ = demo_run
    report = run_demo(ledger, lambda line: None, run_tag="second")
    assert report.all_matched, [step for step in report.failures]


def test_the_in_process_ledger_is_a_ledger_client() -> None:
    ledger: LedgerClient = InProcessLedger(DemoConsortium().genesis())
    assert ledger.chain_id == "medledger-demo"
    assert as_bytes("0x0a0b") == b"\x0a\x0b"


def test_the_demo_genesis_agrees_with_the_demo_keys() -> None:
    consortium = DemoConsortium()
    genesis = consortium.genesis(validators=["hospital-a"], node_keys={"lab": bytes(32)})
    assert [member.validator for member in genesis.members] == [True, False, False, False]
    assert genesis.members[2].node_key == bytes(32)
    for member, demo in zip(genesis.members, consortium.members, strict=True):
        assert member.admin_key == demo.keys.admin.public_key
    assert DemoConsortium().genesis() == consortium.genesis()


# ---- builders -----------------------------------------------------------------------------


def test_every_builder_signs_a_valid_tx_with_increasing_nonces() -> None:
    builder = TransactionBuilder("chain-x", SigningKey(bytes(range(32))))
    hash32 = bytes(range(1, 33))
    txs = [
        builder.propose_member(proposal_id="p", org_id="o", kind=b.MemberKind.PROVIDER,
                               admin_key=hash32, evidence_hash=hash32, deadline_ms=5),
        builder.vote("p"),
        builder.rotate_key(SigningKey(bytes(32))),
        builder.revoke_key(hash32, reason=b.RevocationReason.SUPERSEDED, invalidity_ms=1),
        builder.register_party(party_id="p", kind=b.PartyKind.PATIENT, signing_key=hash32,
                               encryption_key=hash32),
        builder.anchor_record(record_id="r", version=1, patient="p",
                              confidentiality=b.Confidentiality.N,
                              document_type=b.DocumentType.OTHER, ciphertext_hash=hash32,
                              ciphertext_size=1, wraps=[b.Wrap("p", hash32)],
                              metadata_hash=hash32),
        builder.shred_record("r", request_hash=hash32),
        builder.consent_grant(consent_id="c", patient="p", grantee="g", start_ms=1, end_ms=2,
                              consent_hash=hash32),
        builder.consent_revoke("c"),
        builder.delegate_grant(delegation_id="d", patient="p", delegate="q",
                               relationship=b.Relationship.PARENT, valid_until_ms=9),
        builder.btg_open(btg_id="x", patient="p", records=["r"], hours=1,
                         justification_hash=hash32),
        builder.btg_close("x"),
        builder.btg_review("x", outcome=b.ReviewOutcome.APPROPRIATE, review_hash=hash32),
        builder.key_grant(grant_id="k", record_id="r", version=1, recipient="q",
                          wrap_hash=hash32, basis_id="c"),
        builder.access_log(batch_id="a", period_start_ms=1, period_end_ms=2, release_count=0,
                           summary_hash=hash32),
        builder.coverage(coverage_id="v", beneficiary="p", start_ms=1, end_ms=2, periods=1,
                         premium=1, currency="USD"),
        builder.premium_paid(payment_id="m", coverage_id="v", period=1, amount=1,
                             currency="USD"),
        builder.claim_submit(claim_id="o:1", coverage_id="v", patient="p",
                             lines=[b.ClaimLine(hash32, 5)], currency="USD",
                             document_hash=hash32),
        builder.claim_adjudicate("o:1", decision=b.AdjudicationDecision.APPROVED, benefits=[5]),
        builder.remittance(remittance_id="r", currency="USD", allocations=[("o:1", 5)]),
    ]
    assert sorted(tx.type for tx in txs) == sorted(TxType)
    assert [tx.nonce for tx in txs] == list(range(1, len(txs) + 1))
    for tx in txs:
        assert check_transaction(tx.raw, "chain-x").code is ResultCode.OK
    rotation = txs[2].body
    assert isinstance(rotation, b.RotateKey)
    message = rotation_message("chain-x", builder.public_key, rotation.new_key, txs[2].nonce)
    assert verify(b.ROTATE_KEY_DOMAIN, rotation.new_key, message, rotation.new_key_signature)


def test_a_rotation_through_the_sdk_hands_over_to_the_new_key() -> None:
    consortium = DemoConsortium()
    ledger = InProcessLedger(consortium.genesis())
    lab = TransactionBuilder(ledger.chain_id, consortium.member("lab").keys.admin)
    new_key = SigningKey(bytes([7]) * 32)
    assert ledger.submit_transaction(lab.rotate_key(new_key)) == ResultCode.OK
    assert ledger.submit_transaction(lab.vote("none")) == ResultCode.SIGNER_KEY_ROTATED
    rotated = lab.rotated(new_key)
    assert ledger.submit_transaction(rotated.vote("none")) == ResultCode.VOTE_PROPOSAL_UNKNOWN
    members = {m["org_id"]: m for m in run_query(ledger.state, "gov_members", {}, now_ms=0)}
    assert members["lab"]["admin_key"] == new_key.public_key
    assert ledger.state.get(layout.public_key_key(new_key.public_key)) is not None
