"""Stateful property test: random sequences of transactions from a small cast, in blocks of
one to three, with time passing; every invariant of DOMAIN.md is checked after every block
(tests/app_invariants.py), and at the end the same blocks replayed on a fresh state give
byte-identical state (invariant 9).

Draws are steered: most of the time a rule picks what the state makes plausible (a
consent of the record's patient, the holder of a break-glass, the payable amount of an
adjudicated claim), the rest of the time anything from small pools of ids, amounts and
times, so both the valid paths and the refusals (reused ids, stale versions, expired
consents, duplicate services, double payments) are exercised.
"""

from __future__ import annotations

from typing import Any, TypeVar

from app_invariants import check_block, check_state
from app_world import DAY_MS, HOUR_MS, World, digest, member_genesis, signing_key
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ledger import bodies as b
from ledger.app import MemoryState, apply_block, genesis_writes, layout, state_digest
from ledger.app.model import (
    BreakGlassState,
    ClaimState,
    ClaimStatus,
    ConsentState,
    PartyState,
    RecordState,
)
from ledger.app.state import decode_value
from ledger.codec import Struct
from ledger.crypto import SigningKey
from ledger.results import ResultCode
from ledger.sdk.builders import TransactionBuilder
from ledger.tx import Transaction, decode_transaction

S = TypeVar("S", bound=Struct)

PATIENTS = ("alice", "bob", "dave")
PRACTITIONERS = ("grey", "ross", "house")
MEMBERS = ("hospital-a", "hospital-b", "lab", "insurer", "vault")
# record -> (patient, custodian, confidentiality), anchored at setup; rec-4 is left free
RECORDS = {
    "rec-1": ("alice", "lab", b.Confidentiality.R),
    "rec-2": ("bob", "hospital-a", b.Confidentiality.N),
    "rec-3": ("alice", "hospital-a", b.Confidentiality.V),
}
RECORD_IDS = (*RECORDS, "rec-4")
CONSENTS = tuple(f"consent-{n}" for n in range(12))
BTGS = tuple(f"btg-{n}" for n in range(3))
COVERAGES = {"cov-1": "alice", "cov-2": "dave"}
CLAIMS = (*(f"hospital-a:{n}" for n in range(4)), "hospital-b:0")
SERVICES = tuple(digest(f"service {n}") for n in range(6))
SECRETS = (b"Alice Example", b"Bob Example", b"Dave Example", b"HbA1c 6.1%")

ids = st.integers(0, 1_000_000).map(str)
mostly = st.integers(0, 9).map(lambda n: n < 8)
rarely = st.integers(0, 9).map(lambda n: n < 2)


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.world = world = World(member_genesis())
        self.pending: list[Transaction] = []
        self.rotations: dict[bytes, SigningKey] = {}
        for name in PATIENTS:
            world.register(name, minor=name == "bob")
        world.register("carol", b.PartyKind.RELATED_PERSON)
        world.register("eve", b.PartyKind.PATIENT)  # the one whose key gets revoked
        world.register("grey", b.PartyKind.PRACTITIONER, org="hospital-b",
                       roles=(b.PartyRole.ATTENDING,))
        world.register("ross", b.PartyKind.PRACTITIONER, org="hospital-b",
                       roles=(b.PartyRole.EMERGENCY,))
        world.register("house", b.PartyKind.PRACTITIONER, org="hospital-a",
                       roles=(b.PartyRole.EMERGENCY,))
        world.register("gateway", b.PartyKind.PRACTITIONER, org="lab",
                       roles=(b.PartyRole.GATEWAY,))
        for record_id, (patient, custodian, confidentiality) in RECORDS.items():
            world.ok(world.anchor(record_id, patient, org=custodian,
                                  confidentiality=confidentiality))
        for coverage_id, beneficiary in COVERAGES.items():
            world.ok(world.members["insurer"].coverage(
                coverage_id=coverage_id, beneficiary=beneficiary, start_ms=world.now,
                end_ms=world.now + 365 * DAY_MS, periods=12, premium=25_000, currency="USD",
            ))
        self.signers: dict[bytes, bytes] = {}
        self.applied: list[Transaction] = []
        for block in world.ledger.blocks:
            for raw in block.raws:
                tx = decode_transaction(raw)
                self.signers[tx.tx_id] = tx.signer
                self.applied.append(tx)

    # ---- plumbing ----

    def builder(self, name: str) -> TransactionBuilder:
        if name in self.world.members:
            return self.world.members[name]
        return self.world.parties[name].builder

    def send(self, tx: Transaction) -> None:
        self.pending.append(tx)
        if len(self.pending) >= 3:
            self.commit()

    def rows(self, table: bytes, struct_class: type[S]) -> list[S]:
        prefix = layout.table_prefix(table)
        return [
            decode_value(key, value, struct_class)
            for key, value in self.world.ledger.state.iterate(prefix, limit=10_000)
        ]

    def load(self, key: bytes, struct_class: type[S]) -> S | None:
        return self.world.load(key, struct_class)

    @staticmethod
    def pick(
        data: Any, likely: list[Any], pool: tuple[Any, ...] | list[Any], *, often: bool = True
    ) -> Any:
        """Mostly (or rarely, if not ``often``) one of ``likely`` (when there is any), else
        anything from ``pool``."""
        if likely and data.draw(mostly if often else rarely):
            return data.draw(st.sampled_from(likely))
        return data.draw(st.sampled_from(list(pool)))

    def now(self) -> int:
        return self.world.next_block_ms

    @rule()
    def commit(self) -> None:
        if not self.pending:
            return
        txs, self.pending = self.pending, []
        before = self.world.ledger.state.copy()
        outcome = self.world.ledger.commit_block(txs)
        timestamp_ms = self.world.ledger.blocks[-1].context.timestamp_ms
        for tx in txs:
            self.signers[tx.tx_id] = tx.signer
            self.applied.append(tx)
        check_block(before, self.world.ledger.state, txs, outcome, timestamp_ms)
        self._follow_rotations(txs, outcome.codes)

    def _follow_rotations(self, txs: list[Transaction], codes: tuple[int, ...]) -> None:
        """After a committed rotation, sign with the new key."""
        for tx, code in zip(txs, codes, strict=True):
            if code != ResultCode.OK or not isinstance(tx.body, b.RotateKey):
                continue
            for name in (*self.world.members, *self.world.parties):
                candidate = self.builder(name)
                if candidate.public_key == tx.signer:
                    rotated = candidate.rotated(self.rotations[tx.body.new_key])
                    if name in self.world.members:
                        self.world.members[name] = rotated
                    else:
                        self.world.parties[name].builder = rotated

    # ---- time ----

    @rule(milliseconds=st.sampled_from([60_000, HOUR_MS, 5 * HOUR_MS, DAY_MS, 8 * DAY_MS]))
    def time_passes(self, milliseconds: int) -> None:
        self.commit()
        self.world.advance(milliseconds)

    # ---- records ----

    @rule(data=st.data(), offset=st.sampled_from([1, 1, 1, 0, 2]),
          confidentiality=st.sampled_from(list(b.Confidentiality)), patient_wrap=mostly)
    def anchor(self, data: Any, offset: int, confidentiality: b.Confidentiality,
               patient_wrap: bool) -> None:
        record_id = data.draw(st.sampled_from(RECORD_IDS))
        head = self.load(layout.record_key(record_id), RecordState)
        patient, custodian, _ = RECORDS.get(record_id, ("dave", "vault", None))
        org = self.pick(data, [custodian], MEMBERS)
        patient = self.pick(data, [patient], PATIENTS)
        version = (0 if head is None else head.version) + offset
        recipients = [patient, org] if patient_wrap else [org]
        self.send(self.world.anchor(
            record_id, patient, org=org, version=max(version, 1),
            confidentiality=confidentiality,
            previous=None if head is None else head.ciphertext_hash,
            wraps=tuple(b.Wrap(name, digest(f"wrap {name} {version}")) for name in recipients),
        ))

    @rule(data=st.data())
    def shred(self, data: Any) -> None:
        record_id = data.draw(st.sampled_from(RECORD_IDS))
        custodian = RECORDS.get(record_id, ("", "vault", None))[1]
        org = self.pick(data, [custodian], MEMBERS, often=False)
        self.send(self.builder(org).shred_record(record_id, request_hash=digest("erasure")))

    # ---- consent and access ----

    @rule(
        data=st.data(),
        consent_id=st.sampled_from(CONSENTS),
        decision=st.sampled_from([b.Decision.PERMIT, b.Decision.PERMIT, b.Decision.DENY]),
        start_days=st.sampled_from([-1, 0, 0, 2]),
        days=st.sampled_from([-2, 1, 30, 30, 400]),
        confidentiality=st.sampled_from(list(b.Confidentiality)),
        scope=st.sampled_from(["all", "all", "one", "custodian"]),
    )
    def consent(self, data: Any, consent_id: str, decision: b.Decision, start_days: int,
                days: int, confidentiality: b.Confidentiality, scope: str) -> None:
        patient = data.draw(st.sampled_from(PATIENTS))
        signer = self.pick(data, [patient, "carol"], ("grey", "hospital-b", "alice"))
        grantee = self.pick(data, list(PRACTITIONERS), ("hospital-b", "hospital-a", "nobody"))
        record_id = data.draw(st.sampled_from(RECORD_IDS))
        start = max(0, self.now() + start_days * DAY_MS)
        self.send(self.world.consent(
            self.builder(signer), consent_id, patient, grantee,
            start_ms=start, end_ms=max(0, start + days * DAY_MS), decision=decision,
            confidentiality_max=confidentiality,
            records=(record_id,) if scope == "one" else (),
            custodian="lab" if scope == "custodian" else None,
        ))

    @rule(data=st.data())
    def revoke_consent(self, data: Any) -> None:
        consents = self.rows(layout.CONSENT, ConsentState)
        consent_id = self.pick(data, [c.consent_id for c in consents], CONSENTS)
        found = next((c for c in consents if c.consent_id == consent_id), None)
        signer = self.pick(data, [found.patient] if found else [], (*PATIENTS, "carol"))
        self.send(self.builder(signer).consent_revoke(consent_id))

    @rule(
        data=st.data(),
        delegation_id=st.sampled_from(("d-0", "d-1", "d-2")),
        days=st.sampled_from([1, 30]),
        confidentiality=st.sampled_from(list(b.Confidentiality)),
        powers=st.sampled_from([
            (b.DelegatePower.CONSENT,),
            (b.DelegatePower.CONSENT, b.DelegatePower.KEY_GRANT),
            (b.DelegatePower.READ,),
        ]),
    )
    def delegate(self, data: Any, delegation_id: str, days: int,
                 confidentiality: b.Confidentiality,
                 powers: tuple[b.DelegatePower, ...]) -> None:
        patient = data.draw(st.sampled_from(PATIENTS))
        expected_signer = "hospital-a" if patient == "bob" else patient
        signer = self.pick(data, [expected_signer], ("hospital-a", "alice", "carol", "lab"))
        delegate = self.pick(data, ["carol"], ("grey", "alice", "nobody"))
        self.send(self.builder(signer).delegate_grant(
            delegation_id=delegation_id, patient=patient, delegate=delegate,
            relationship=b.Relationship.PARENT, valid_until_ms=self.now() + days * DAY_MS,
            powers=powers, confidentiality_max=confidentiality,
        ))

    @rule(data=st.data(), btg_id=st.sampled_from(BTGS),
          hours=st.sampled_from([1, 4, 24, 25, 72]))
    def btg_open(self, data: Any, btg_id: str, hours: int) -> None:
        practitioner = self.pick(data, ["ross", "house"], PRACTITIONERS)
        patient = data.draw(st.sampled_from(PATIENTS))
        own = [record for record, (owner, _, _) in RECORDS.items() if owner == patient]
        records = [self.pick(data, own, RECORD_IDS)]
        self.send(self.builder(practitioner).btg_open(
            btg_id=btg_id, patient=patient, records=records, hours=hours,
            justification_hash=digest("justification " + btg_id),
        ))

    def glass(self, data: Any) -> tuple[str, BreakGlassState | None]:
        opened = self.rows(layout.BREAK_GLASS, BreakGlassState)
        btg_id = self.pick(data, [btg.btg_id for btg in opened], BTGS)
        return btg_id, next((btg for btg in opened if btg.btg_id == btg_id), None)

    @rule(data=st.data())
    def btg_close(self, data: Any) -> None:
        btg_id, btg = self.glass(data)
        practitioner = self.pick(data, [btg.practitioner] if btg else [], PRACTITIONERS)
        self.send(self.builder(practitioner).btg_close(btg_id))

    @rule(data=st.data())
    def btg_review(self, data: Any) -> None:
        btg_id, btg = self.glass(data)
        org = self.pick(data, [btg.organisation] if btg else [], MEMBERS)
        self.send(self.builder(org).btg_review(
            btg_id, outcome=b.ReviewOutcome.APPROPRIATE, review_hash=digest("review")
        ))

    @rule(data=st.data(), grant_id=ids, stale=st.integers(0, 9).map(lambda n: n == 0),
          basis=st.sampled_from([b.GrantBasis.CONSENT, b.GrantBasis.CONSENT,
                                 b.GrantBasis.BREAK_GLASS]))
    def key_grant(self, data: Any, grant_id: str, stale: bool, basis: b.GrantBasis) -> None:
        record_id = data.draw(st.sampled_from(RECORD_IDS))
        head = self.load(layout.record_key(record_id), RecordState)
        patient, custodian, _ = RECORDS.get(record_id, ("dave", "vault", None))
        signer = self.pick(data, [custodian, patient], ("insurer", "carol", "grey"))
        if basis is b.GrantBasis.CONSENT:
            candidates = [c for c in self.rows(layout.CONSENT, ConsentState)
                          if c.patient == patient]
            consent_id = self.pick(data, [c.consent_id for c in candidates], CONSENTS)
            chosen = next((c for c in candidates if c.consent_id == consent_id), None)
            likely = [chosen.grantee] if chosen and chosen.grantee in PRACTITIONERS else []
            basis_id = consent_id
        else:
            opened = [btg for btg in self.rows(layout.BREAK_GLASS, BreakGlassState)
                      if record_id in btg.records]
            basis_id = self.pick(data, [btg.btg_id for btg in opened], BTGS)
            likely = [btg.practitioner for btg in opened if btg.btg_id == basis_id]
        recipient = self.pick(data, likely, (*PRACTITIONERS, "carol", "nobody"))
        version = (1 if head is None else head.version) - int(stale)
        self.send(self.world.grant(
            self.builder(signer), "grant-" + grant_id, record_id, recipient, basis_id,
            version=max(version, 1), basis=basis,
        ))

    @rule(data=st.data(), grant_id=ids, stale=st.integers(0, 9).map(lambda n: n == 0),
          basis=st.sampled_from(list(b.GrantBasis)))
    def key_grant_again(self, data: Any, grant_id: str, stale: bool,
                        basis: b.GrantBasis) -> None:
        self.key_grant(data, grant_id, stale, basis)

    @rule(data=st.data(), consent_id=st.sampled_from(CONSENTS), grant_id=ids,
          confidentiality=st.sampled_from(list(b.Confidentiality)),
          to_org=st.booleans(), deny=rarely)
    def consent_and_grant(self, data: Any, consent_id: str, grant_id: str,
                          confidentiality: b.Confidentiality, to_org: bool,
                          deny: bool) -> None:
        """A patient's permit and the custodian's key grant under it, in one block (the
        grant sees the consent through the block's overlay)."""
        record_id = data.draw(st.sampled_from(list(RECORDS)))
        patient, custodian, _ = RECORDS[record_id]
        recipient = data.draw(st.sampled_from(PRACTITIONERS))
        grantee = self.world.load(layout.party_key(recipient), PartyState)
        assert grantee is not None
        self.commit()
        head = self.load(layout.record_key(record_id), RecordState)
        self.send(self.world.consent(
            self.builder(patient), consent_id, patient,
            grantee.registered_by if to_org else recipient,
            start_ms=self.now(), confidentiality_max=confidentiality,
        ))
        if deny:
            self.send(self.world.consent(
                self.builder(patient), consent_id + "-deny", patient,
                recipient if to_org else grantee.registered_by, start_ms=self.now(),
                decision=b.Decision.DENY, confidentiality_max=b.Confidentiality.V,
            ))
        self.send(self.world.grant(
            self.builder(custodian), "grant-" + grant_id, record_id, recipient, consent_id,
            version=1 if head is None else head.version,
        ))
        self.commit()

    @rule(data=st.data(), btg_id=st.sampled_from(BTGS), grant_id=ids)
    def glass_and_grant(self, data: Any, btg_id: str, grant_id: str) -> None:
        """An emergency: break-glass and the custodian's key grant under it, one block."""
        record_id = data.draw(st.sampled_from(list(RECORDS)))
        patient, custodian, _ = RECORDS[record_id]
        practitioner = data.draw(st.sampled_from(("ross", "house")))
        self.commit()
        head = self.load(layout.record_key(record_id), RecordState)
        self.send(self.builder(practitioner).btg_open(
            btg_id=btg_id, patient=patient, records=[record_id], hours=4,
            justification_hash=digest("justification " + btg_id),
        ))
        self.send(self.world.grant(
            self.builder(custodian), "grant-" + grant_id, record_id, practitioner, btg_id,
            version=1 if head is None else head.version, basis=b.GrantBasis.BREAK_GLASS,
        ))
        self.commit()

    @rule(data=st.data(), claim_id=st.sampled_from(CLAIMS),
          services=st.lists(st.integers(0, len(SERVICES) - 1), min_size=1, max_size=3,
                            unique=True),
          decision=st.sampled_from([b.AdjudicationDecision.APPROVED,
                                    b.AdjudicationDecision.PARTIAL,
                                    b.AdjudicationDecision.DENIED]),
          remittance_id=ids)
    def claim_flow(self, data: Any, claim_id: str, services: list[int],
                   decision: b.AdjudicationDecision, remittance_id: str) -> None:
        """A claim submitted, adjudicated and paid, a block each."""
        provider = claim_id.split(":")[0]
        coverage_id = data.draw(st.sampled_from(list(COVERAGES)))
        lines = tuple(b.ClaimLine(SERVICES[service], 2_000 * (service + 1))
                      for service in services)
        self.commit()
        self.send(self.builder(provider).claim_submit(
            claim_id=claim_id, coverage_id=coverage_id, patient=COVERAGES[coverage_id],
            lines=lines, currency="USD", document_hash=digest("claim " + claim_id),
        ))
        self.commit()
        claim = self.load(layout.claim_key(claim_id), ClaimState)
        if claim is None:
            return
        factor = {b.AdjudicationDecision.APPROVED: 2, b.AdjudicationDecision.PARTIAL: 1,
                  b.AdjudicationDecision.DENIED: 0}[decision]
        benefits = [line.charge * factor // 2 for line in claim.lines]
        self.send(self.builder("insurer").claim_adjudicate(
            claim_id, decision=decision, benefits=benefits, reason_codes=["CO45"],
        ))
        self.commit()
        claim = self.load(layout.claim_key(claim_id), ClaimState)
        assert claim is not None
        self.send(self.builder("insurer").remittance(
            remittance_id="835-" + remittance_id, currency="USD",
            allocations=[(claim_id, max(0, claim.payable_amount))],
        ))
        self.commit()

    @rule(data=st.data(), batch_id=ids)
    def access_log(self, data: Any, batch_id: str) -> None:
        signer = self.pick(data, ["gateway"], ("alice", "lab", "grey"))
        self.send(self.builder(signer).access_log(
            batch_id="batch-" + batch_id, period_start_ms=self.now() - HOUR_MS,
            period_end_ms=self.now(), release_count=3, summary_hash=digest("summary"),
        ))

    # ---- insurance ----

    @rule(
        payment_id=st.sampled_from(("820-1", "820-2", "820-3")),
        coverage_id=st.sampled_from(list(COVERAGES)),
        period=st.sampled_from([1, 2, 13]),
        amount=st.sampled_from([25_000, 25_000, 20_000]),
    )
    def premium(self, payment_id: str, coverage_id: str, period: int, amount: int) -> None:
        self.send(self.builder("insurer").premium_paid(
            payment_id=payment_id, coverage_id=coverage_id, period=period, amount=amount,
            currency="USD",
        ))

    @rule(
        data=st.data(),
        claim_id=st.sampled_from(CLAIMS),
        frequency=st.sampled_from([b.ClaimFrequency.ORIGINAL] * 6
                                  + [b.ClaimFrequency.REPLACEMENT, b.ClaimFrequency.VOID]),
        services=st.lists(st.integers(0, len(SERVICES) - 1), min_size=1, max_size=3,
                          unique=True),
        charges=st.lists(st.sampled_from([1_000, 5_000, 12_000]), min_size=3, max_size=3),
        total_off=st.sampled_from([0, 0, 0, 1]),
    )
    def claim(self, data: Any, claim_id: str, frequency: b.ClaimFrequency,
              services: list[int], charges: list[int], total_off: int) -> None:
        provider = claim_id.split(":")[0]
        coverage_id = data.draw(st.sampled_from(list(COVERAGES)))
        patient = self.pick(data, [COVERAGES[coverage_id]], PATIENTS)
        lines = tuple(b.ClaimLine(SERVICES[service], charge)
                      for service, charge in zip(services, charges, strict=False))
        replaces = None
        if frequency is not b.ClaimFrequency.ORIGINAL:
            claims = [c for c in self.rows(layout.CLAIM, ClaimState)
                      if c.claim_id.startswith(provider)]
            replaces = self.pick(data, [c.claim_id for c in claims], CLAIMS)
            original = next((c for c in claims if c.claim_id == replaces), None)
            if original is not None and data.draw(mostly):
                coverage_id, patient = original.coverage_id, original.patient
                if frequency is b.ClaimFrequency.VOID:
                    lines = original.lines
        self.send(self.builder(provider).claim_submit(
            claim_id=claim_id, coverage_id=coverage_id, patient=patient, lines=lines,
            currency="USD", document_hash=digest("claim " + claim_id),
            total=sum(line.charge for line in lines) + total_off, frequency=frequency,
            replaces=replaces,
        ))

    @rule(data=st.data(), decision=st.sampled_from(list(b.AdjudicationDecision)),
          shape=st.sampled_from(["fit", "fit", "fit", "full", "half", "zero", "over"]))
    def adjudicate(self, data: Any, decision: b.AdjudicationDecision, shape: str) -> None:
        claims = self.rows(layout.CLAIM, ClaimState)
        open_claims = [c.claim_id for c in claims
                       if c.status in (ClaimStatus.SUBMITTED, ClaimStatus.PENDING)]
        claim_id = self.pick(data, open_claims, CLAIMS)
        claim = next((c for c in claims if c.claim_id == claim_id), None)
        charges = [line.charge for line in claim.lines] if claim else [1_000]
        if shape == "fit":  # amounts consistent with the decision
            shape = {b.AdjudicationDecision.APPROVED: "full",
                     b.AdjudicationDecision.PARTIAL: "half",
                     b.AdjudicationDecision.DENIED: "zero",
                     b.AdjudicationDecision.PENDING: "zero"}[decision]
        benefits = {
            "full": charges,
            "half": [charge // 2 for charge in charges],
            "zero": [0 for _ in charges],
            "over": [charge + 1 for charge in charges],
        }[shape]
        if decision is b.AdjudicationDecision.PENDING:
            benefits = []
        signer = self.pick(data, ["insurer"], ("hospital-b", "hospital-a"))
        self.send(self.builder(signer).claim_adjudicate(
            claim_id, decision=decision, benefits=benefits, reason_codes=["CO45"]
        ))

    @rule(data=st.data(), remittance_id=st.sampled_from(("835-1", "835-2", "835-3", "835-4")),
          count=st.sampled_from([1, 1, 2]), exact=mostly)
    def remit(self, data: Any, remittance_id: str, count: int, exact: bool) -> None:
        claims = self.rows(layout.CLAIM, ClaimState)
        payable = [c.claim_id for c in claims
                   if c.status in (ClaimStatus.APPROVED, ClaimStatus.PARTIAL, ClaimStatus.PAID)]
        allocations = []
        for _ in range(count):
            claim_id = self.pick(data, payable, CLAIMS)
            claim = next((c for c in claims if c.claim_id == claim_id), None)
            owed = claim.payable_amount if claim is not None else 1_000
            allocations.append((claim_id, max(0, owed + (0 if exact else 1))))
        self.send(self.builder("insurer").remittance(
            remittance_id=remittance_id, currency="USD", allocations=allocations
        ))

    # ---- governance and keys ----

    @rule(
        data=st.data(),
        proposal_id=st.sampled_from(("p-1", "p-2", "p-3")),
        action=st.sampled_from([b.ProposalAction.ADD_MEMBER] * 3
                               + [b.ProposalAction.REMOVE_MEMBER, b.ProposalAction.REVOKE_KEY]),
        org_id=st.sampled_from(("clinic", "clinic-2", "hospital-b", "lab", "insurer")),
        validator=st.booleans(),
    )
    def propose(self, data: Any, proposal_id: str, action: b.ProposalAction, org_id: str,
                validator: bool) -> None:
        signer = self.pick(data, ["hospital-a", "lab", "insurer"], ("alice",))
        self.send(self.builder(signer).propose_member(
            proposal_id=proposal_id, org_id=org_id, kind=b.MemberKind.PROVIDER,
            admin_key=signing_key("admin/" + org_id).public_key,
            node_key=signing_key("node/" + org_id).public_key, validator=validator,
            evidence_hash=digest("evidence"), deadline_ms=self.now() + 2 * DAY_MS,
            action=action,
        ))

    @rule(data=st.data(), proposal_id=ids,
          action=st.sampled_from([b.ProposalAction.ADD_MEMBER] * 3
                                 + [b.ProposalAction.REMOVE_MEMBER,
                                    b.ProposalAction.REVOKE_KEY]),
          org_id=st.sampled_from(("clinic", "clinic-2", "hospital-b", "lab", "vault")),
          validator=st.booleans(),
          approvals=st.lists(mostly, min_size=len(MEMBERS), max_size=len(MEMBERS)))
    def governance_flow(self, data: Any, proposal_id: str, action: b.ProposalAction,
                        org_id: str, validator: bool, approvals: list[bool]) -> None:
        """A proposal and every member's vote on it, in one block."""
        self.commit()
        admin = signing_key("admin/" + org_id).public_key
        if action is b.ProposalAction.REVOKE_KEY:
            admin = self.builder(org_id).public_key if org_id in self.world.members else admin
        self.send(self.builder("hospital-a").propose_member(
            proposal_id="p-" + proposal_id, org_id=org_id, kind=b.MemberKind.PROVIDER,
            admin_key=admin, node_key=signing_key("node/" + org_id).public_key,
            validator=validator, evidence_hash=digest("evidence"),
            deadline_ms=self.now() + 2 * DAY_MS, action=action,
        ))
        for voter, approve in zip(MEMBERS, approvals, strict=True):
            self.pending.append(self.builder(voter).vote("p-" + proposal_id, approve=approve))
        self.commit()
        if action is b.ProposalAction.REVOKE_KEY and org_id in self.world.members:
            self.send(self.builder("lab").revoke_key(
                admin, reason=b.RevocationReason.PRIVILEGE_WITHDRAWN,
                invalidity_ms=self.now(), proposal_id="p-" + proposal_id,
            ))
            self.commit()

    @rule(voter=st.sampled_from(MEMBERS), proposal_id=st.sampled_from(("p-1", "p-2", "p-3")),
          approve=st.sampled_from([True, True, False]))
    def vote(self, voter: str, proposal_id: str, approve: bool) -> None:
        self.send(self.builder(voter).vote(proposal_id, approve=approve))

    @rule(name=st.sampled_from(("alice", "grey", "carol", "lab")), seed=ids)
    def rotate(self, name: str, seed: str) -> None:
        new_key = signing_key(f"rotated/{name}/{seed}")
        self.rotations[new_key.public_key] = new_key
        self.send(self.builder(name).rotate_key(new_key))

    @rule(data=st.data(), past=st.booleans())
    def revoke_key(self, data: Any, past: bool) -> None:
        victim = self.pick(data, ["eve", "house"], ("alice", "grey"))
        signer = self.pick(data, [victim, "hospital-a"], ("hospital-b", "lab"))
        self.send(self.builder(signer).revoke_key(
            self.builder(victim).public_key, reason=b.RevocationReason.KEY_COMPROMISE,
            invalidity_ms=self.now() - (HOUR_MS if past else -HOUR_MS),
        ))

    @rule(data=st.data())
    def victim_signs(self, data: Any) -> None:
        """Revoked parties keep trying."""
        victim = data.draw(st.sampled_from(("eve", "house")))
        self.send(self.world.consent(self.builder(victim), "consent-eve", "eve", "grey"))

    @precondition(lambda self: bool(self.applied))
    @rule(index=st.integers(0, 10_000))
    def replay(self, index: int) -> None:
        """An already included tx, sent again: refused with a stale nonce."""
        self.commit()
        tx = self.applied[index % len(self.applied)]
        before = self.world.snapshot()
        outcome = self.world.ledger.commit_block([tx])
        assert outcome.codes == (ResultCode.NONCE_STALE,)
        for key in outcome.writes:  # only break-glass flags, made by the block itself
            assert key.split(layout.SEPARATOR)[0] in (
                layout.BREAK_GLASS, layout.REVIEW_DUE, layout.AUDIT
            ), key
        if not outcome.writes:
            assert self.world.snapshot() == before

    # ---- invariants ----

    @invariant()
    def state_invariants(self) -> None:
        if not hasattr(self, "world"):
            return
        blocks = self.world.ledger.blocks
        check_state(self.world.ledger.state, now_ms=blocks[-1].context.timestamp_ms,
                    signers=self.signers, secrets=SECRETS)

    def teardown(self) -> None:
        if not hasattr(self, "world"):
            return
        self.commit()
        # Invariant 9: the same blocks on a fresh state give the same results and state.
        replica = MemoryState(genesis_writes(self.world.genesis))
        for block in self.world.ledger.blocks:
            txs = [decode_transaction(raw) for raw in block.raws]
            outcome = apply_block(replica, block.context, txs)
            assert outcome.codes == block.codes
            replica.apply(outcome.writes)
        assert state_digest(replica.items()) == state_digest(self.world.ledger.state.items())


LedgerMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLedgerMachine = LedgerMachine.TestCase
