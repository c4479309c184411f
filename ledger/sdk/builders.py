"""Building and signing transactions: one builder per signing key, one method per tx type.

A :class:`TransactionBuilder` signs with its key and takes the key's next nonce for every
tx it builds (:class:`ledger.sdk.keys.NonceCounter`). Which key signs which type is the
caller's choice; DOMAIN.md says who may sign what:

- member admin key: PROPOSE_MEMBER, VOTE, REGISTER_PARTY, ANCHOR_RECORD, SHRED_RECORD,
  KEY_GRANT (as custodian), DELEGATE_GRANT (for a minor), BTG_REVIEW, COVERAGE,
  PREMIUM_PAID, CLAIM_SUBMIT, CLAIM_ADJUDICATE, REMITTANCE, REVOKE_KEY;
- patient or delegate key: CONSENT_GRANT, CONSENT_REVOKE, DELEGATE_GRANT (adult patient),
  KEY_GRANT;
- practitioner key: BTG_OPEN, BTG_CLOSE; gateway key: ACCESS_LOG;
- any key: ROTATE_KEY (signed by the old key and, inside the body, the new one).
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger import bodies as b
from ledger.codec import Struct, encode_tree
from ledger.crypto import DOMAIN_TX, SigningKey
from ledger.sdk.keys import NonceCounter
from ledger.tx import TX_VERSION, Transaction, sign_transaction
from ledger.txtypes import TxType


class TransactionBuilder:
    def __init__(self, chain_id: str, key: SigningKey, *, last_nonce: int = 0) -> None:
        self.chain_id = chain_id
        self.key = key
        self.nonces = NonceCounter(last_nonce)

    @property
    def public_key(self) -> bytes:
        return self.key.public_key

    def sign(self, tx_type: TxType, body: Struct, *, nonce: int | None = None) -> Transaction:
        """Sign ``body``; with the next nonce unless one is given (tests of stale nonces)."""
        return sign_transaction(
            self.key,
            chain_id=self.chain_id,
            tx_type=tx_type,
            nonce=self.nonces.take() if nonce is None else nonce,
            body=body,
        )

    # ---- governance ----

    def propose_member(
        self,
        *,
        proposal_id: str,
        org_id: str,
        kind: b.MemberKind,
        admin_key: bytes,
        evidence_hash: bytes,
        deadline_ms: int,
        node_key: bytes | None = None,
        validator: bool = False,
        action: b.ProposalAction = b.ProposalAction.ADD_MEMBER,
    ) -> Transaction:
        return self.sign(
            TxType.PROPOSE_MEMBER,
            b.ProposeMember(
                proposal_id, action, org_id, kind, admin_key, node_key, validator,
                evidence_hash, deadline_ms,
            ),
        )

    def vote(self, proposal_id: str, *, approve: bool = True) -> Transaction:
        return self.sign(TxType.VOTE, b.Vote(proposal_id, approve))

    def rotate_key(self, new_key: SigningKey) -> Transaction:
        """ROTATE_KEY: the envelope is signed by this builder's key, the body by
        ``new_key`` over (chain, old key, new key, nonce). Once it is committed, sign with
        :meth:`rotated`."""
        nonce = self.nonces.take()
        message = b.rotation_message(self.chain_id, self.public_key, new_key.public_key, nonce)
        body = b.RotateKey(new_key.public_key, new_key.sign(b.ROTATE_KEY_DOMAIN, message))
        return self.sign(TxType.ROTATE_KEY, body, nonce=nonce)

    def rotated(self, new_key: SigningKey) -> TransactionBuilder:
        """A builder for the new key (its nonces start afresh)."""
        return TransactionBuilder(self.chain_id, new_key)

    def revoke_key(
        self,
        key: bytes,
        *,
        reason: b.RevocationReason,
        invalidity_ms: int,
        proposal_id: str | None = None,
    ) -> Transaction:
        return self.sign(
            TxType.REVOKE_KEY, b.RevokeKey(key, reason, invalidity_ms, proposal_id)
        )

    # ---- parties and records ----

    def register_party(
        self,
        *,
        party_id: str,
        kind: b.PartyKind,
        signing_key: bytes,
        encryption_key: bytes,
        roles: Sequence[b.PartyRole] = (),
        minor: bool = False,
    ) -> Transaction:
        return self.sign(
            TxType.REGISTER_PARTY,
            b.RegisterParty(party_id, kind, signing_key, encryption_key, tuple(roles), minor),
        )

    def anchor_record(
        self,
        *,
        record_id: str,
        version: int,
        patient: str,
        confidentiality: b.Confidentiality,
        document_type: b.DocumentType,
        ciphertext_hash: bytes,
        ciphertext_size: int,
        wraps: Sequence[b.Wrap],
        metadata_hash: bytes,
        previous_version_hash: bytes | None = None,
    ) -> Transaction:
        return self.sign(
            TxType.ANCHOR_RECORD,
            b.AnchorRecord(
                record_id, version, patient, confidentiality, document_type, ciphertext_hash,
                ciphertext_size, tuple(wraps), metadata_hash, previous_version_hash,
            ),
        )

    def shred_record(self, record_id: str, *, request_hash: bytes) -> Transaction:
        return self.sign(TxType.SHRED_RECORD, b.ShredRecord(record_id, request_hash))

    # ---- consent and access ----

    def consent_grant(
        self,
        *,
        consent_id: str,
        patient: str,
        grantee: str,
        start_ms: int,
        end_ms: int,
        consent_hash: bytes,
        decision: b.Decision = b.Decision.PERMIT,
        actions: Sequence[b.Action] = (b.Action.READ,),
        purpose: b.Purpose = b.Purpose.TREATMENT,
        confidentiality_max: b.Confidentiality = b.Confidentiality.R,
        records: Sequence[str] = (),
        custodian: str | None = None,
    ) -> Transaction:
        return self.sign(
            TxType.CONSENT_GRANT,
            b.ConsentGrant(
                consent_id, patient, grantee, decision, tuple(actions), purpose, start_ms,
                end_ms, confidentiality_max, tuple(records), custodian, consent_hash,
            ),
        )

    def consent_revoke(self, consent_id: str) -> Transaction:
        return self.sign(TxType.CONSENT_REVOKE, b.ConsentRevoke(consent_id))

    def delegate_grant(
        self,
        *,
        delegation_id: str,
        patient: str,
        delegate: str,
        relationship: b.Relationship,
        valid_until_ms: int,
        powers: Sequence[b.DelegatePower] = (b.DelegatePower.CONSENT,),
        confidentiality_max: b.Confidentiality = b.Confidentiality.R,  # DOMAIN.md default
    ) -> Transaction:
        return self.sign(
            TxType.DELEGATE_GRANT,
            b.DelegateGrant(
                delegation_id, patient, delegate, relationship, tuple(powers), valid_until_ms,
                confidentiality_max,
            ),
        )

    def btg_open(
        self,
        *,
        btg_id: str,
        patient: str,
        records: Sequence[str],
        hours: int,
        justification_hash: bytes,
    ) -> Transaction:
        return self.sign(
            TxType.BTG_OPEN,
            b.BreakGlassOpen(btg_id, patient, tuple(records), hours, justification_hash),
        )

    def btg_close(self, btg_id: str) -> Transaction:
        return self.sign(TxType.BTG_CLOSE, b.BreakGlassClose(btg_id))

    def btg_review(
        self, btg_id: str, *, outcome: b.ReviewOutcome, review_hash: bytes
    ) -> Transaction:
        return self.sign(TxType.BTG_REVIEW, b.BreakGlassReview(btg_id, outcome, review_hash))

    def key_grant(
        self,
        *,
        grant_id: str,
        record_id: str,
        version: int,
        recipient: str,
        wrap_hash: bytes,
        basis_id: str,
        basis: b.GrantBasis = b.GrantBasis.CONSENT,
    ) -> Transaction:
        return self.sign(
            TxType.KEY_GRANT,
            b.KeyGrant(grant_id, record_id, version, recipient, wrap_hash, basis, basis_id),
        )

    def access_log(
        self,
        *,
        batch_id: str,
        period_start_ms: int,
        period_end_ms: int,
        release_count: int,
        summary_hash: bytes,
    ) -> Transaction:
        return self.sign(
            TxType.ACCESS_LOG,
            b.AccessLog(batch_id, period_start_ms, period_end_ms, release_count, summary_hash),
        )

    # ---- insurance ----

    def coverage(
        self,
        *,
        coverage_id: str,
        beneficiary: str,
        start_ms: int,
        end_ms: int,
        periods: int,
        premium: int,
        currency: str,
    ) -> Transaction:
        return self.sign(
            TxType.COVERAGE,
            b.Coverage(coverage_id, beneficiary, start_ms, end_ms, periods, premium, currency),
        )

    def premium_paid(
        self, *, payment_id: str, coverage_id: str, period: int, amount: int, currency: str
    ) -> Transaction:
        return self.sign(
            TxType.PREMIUM_PAID, b.PremiumPaid(payment_id, coverage_id, period, amount, currency)
        )

    def claim_submit(
        self,
        *,
        claim_id: str,
        coverage_id: str,
        patient: str,
        lines: Sequence[b.ClaimLine],
        currency: str,
        document_hash: bytes,
        total: int | None = None,
        frequency: b.ClaimFrequency = b.ClaimFrequency.ORIGINAL,
        replaces: str | None = None,
    ) -> Transaction:
        """``total`` defaults to the sum of the lines."""
        if total is None:
            total = sum(line.charge for line in lines)
        return self.sign(
            TxType.CLAIM_SUBMIT,
            b.ClaimSubmit(
                claim_id, frequency, replaces, coverage_id, patient, tuple(lines), total,
                currency, document_hash,
            ),
        )

    def claim_adjudicate(
        self,
        claim_id: str,
        *,
        decision: b.AdjudicationDecision,
        benefits: Sequence[int],
        reason_codes: Sequence[str] = (),
    ) -> Transaction:
        return self.sign(
            TxType.CLAIM_ADJUDICATE,
            b.ClaimAdjudicate(claim_id, decision, tuple(benefits), tuple(reason_codes)),
        )

    def remittance(
        self,
        *,
        remittance_id: str,
        currency: str,
        allocations: Sequence[tuple[str, int]],
        total: int | None = None,
    ) -> Transaction:
        """``allocations`` are (claim id, amount); ``total`` defaults to their sum."""
        if total is None:
            total = sum(amount for _, amount in allocations)
        return self.sign(
            TxType.REMITTANCE,
            b.Remittance(
                remittance_id,
                total,
                currency,
                tuple(b.Allocation(claim_id, amount) for claim_id, amount in allocations),
            ),
        )


def sign_unchecked(
    key: SigningKey, *, chain_id: str, tx_type: TxType, nonce: int, body_tree: list[object]
) -> bytes:
    """Sign any body tree *without* checking it against the schema: for tests and demos of
    the stateless check (an extra field, a float amount). Returns the raw tx bytes."""
    payload = [TX_VERSION, chain_id, int(tx_type), key.public_key, nonce, body_tree]
    signature = key.sign(DOMAIN_TX, encode_tree(payload))
    return encode_tree([*payload, signature])
