"""Test factories: valid bodies and signed transactions for every tx type."""

from __future__ import annotations

from ledger import bodies as b
from ledger.codec import Struct
from ledger.crypto import SigningKey
from ledger.tx import Transaction, sign_transaction
from ledger.txtypes import TxType

CHAIN_ID = "medledger-test"
HASH = bytes(range(32))
KEY = bytes(range(32, 64))


def sample_body(tx_type: TxType) -> Struct:
    samples: dict[TxType, Struct] = {
        TxType.PROPOSE_MEMBER: b.ProposeMember(
            "prop-1", b.ProposalAction.ADD_MEMBER, "org-lab", b.MemberKind.PROVIDER, KEY,
            KEY, True, HASH, 1_800_000_000_000,
        ),
        TxType.VOTE: b.Vote("prop-1", True),
        TxType.ROTATE_KEY: b.RotateKey(KEY, bytes(64)),
        TxType.REVOKE_KEY: b.RevokeKey(KEY, b.RevocationReason.KEY_COMPROMISE, 5, None),
        TxType.REGISTER_PARTY: b.RegisterParty(
            "pat-7f3a", b.PartyKind.PATIENT, KEY, KEY, (), False
        ),
        TxType.ANCHOR_RECORD: b.AnchorRecord(
            "rec-1", 1, "pat-7f3a", b.Confidentiality.R, b.DocumentType.LAB_RESULT, HASH,
            2048, (b.Wrap("pat-7f3a", HASH),), HASH, None,
        ),
        TxType.SHRED_RECORD: b.ShredRecord("rec-1", HASH),
        TxType.CONSENT_GRANT: b.ConsentGrant(
            "consent-1", "pat-7f3a", "org-hospital-a", b.Decision.PERMIT, (b.Action.READ,),
            b.Purpose.TREATMENT, 1, 2, b.Confidentiality.R, ("rec-1",), None, HASH,
        ),
        TxType.CONSENT_REVOKE: b.ConsentRevoke("consent-1"),
        TxType.DELEGATE_GRANT: b.DelegateGrant(
            "del-1", "pat-7f3a", "rp-1", b.Relationship.PARENT, (b.DelegatePower.CONSENT,),
            9, b.Confidentiality.R,
        ),
        TxType.BTG_OPEN: b.BreakGlassOpen("btg-1", "pat-7f3a", ("rec-1",), 4, HASH),
        TxType.BTG_CLOSE: b.BreakGlassClose("btg-1"),
        TxType.BTG_REVIEW: b.BreakGlassReview("btg-1", b.ReviewOutcome.APPROPRIATE, HASH),
        TxType.KEY_GRANT: b.KeyGrant(
            "grant-1", "rec-1", 1, "prac-1", HASH, b.GrantBasis.CONSENT, "consent-1"
        ),
        TxType.ACCESS_LOG: b.AccessLog("batch-1", 1, 2, 10, HASH),
        TxType.COVERAGE: b.Coverage("cov-1", "pat-7f3a", 1, 2, 12, 25_000, "USD"),
        TxType.PREMIUM_PAID: b.PremiumPaid("pay-1", "cov-1", 1, 25_000, "USD"),
        TxType.CLAIM_SUBMIT: b.ClaimSubmit(
            "org-hospital-a:claim-1", b.ClaimFrequency.ORIGINAL, None, "cov-1", "pat-7f3a",
            (b.ClaimLine(HASH, 10_000), b.ClaimLine(KEY, 5_000)), 15_000, "USD", HASH,
        ),
        TxType.CLAIM_ADJUDICATE: b.ClaimAdjudicate(
            "org-hospital-a:claim-1", b.AdjudicationDecision.PARTIAL, (10_000, 2_500),
            ("CO45",),
        ),
        TxType.REMITTANCE: b.Remittance(
            "rem-1", 12_500, "USD", (b.Allocation("org-hospital-a:claim-1", 12_500),)
        ),
    }
    return samples[tx_type]


def signed(
    tx_type: TxType = TxType.CONSENT_REVOKE,
    *,
    key: SigningKey | None = None,
    nonce: int = 1,
    chain_id: str = CHAIN_ID,
    body: Struct | None = None,
) -> Transaction:
    return sign_transaction(
        key or SigningKey(bytes(32)),
        chain_id=chain_id,
        tx_type=tx_type,
        nonce=nonce,
        body=body if body is not None else sample_body(tx_type),
    )
