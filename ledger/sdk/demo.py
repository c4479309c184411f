"""The demo story, as a library function against any :class:`LedgerClient`.

A consortium of two hospitals, a lab and an insurer (the genesis members, with keys derived
from one seed by :class:`DemoConsortium`, so the genesis a node starts from and the keys the
demo signs with agree). Patients and practitioners are registered; records are encrypted,
stored with the custodian and anchored; consent is granted, a key released and the record
decrypted by the grantee; consent is revoked and a later grant refused; a guardian is
attested for a minor; a clinician breaks the glass in an emergency, it is closed and
reviewed; a claim is submitted, a duplicate refused, the claim adjudicated partially and
remitted once, a second remittance refused; a new member is voted in; a key is revoked;
a record is crypto-shredded. Every step names the result it expects, and the report says
which matched.

Usage with the in-process ledger::

    consortium = DemoConsortium()
    ledger = InProcessLedger(consortium.genesis())
    report = run_demo(ledger, print, consortium=consortium, run_tag="local")
    assert report.all_matched
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ledger import bodies as b
from ledger.app.genesis import Genesis, GenesisMember, Parameters
from ledger.errors import DecodeError
from ledger.results import ResultCode
from ledger.sdk.builders import TransactionBuilder, sign_unchecked
from ledger.sdk.client import LedgerClient, as_bytes
from ledger.sdk.custodian import CustodianStore
from ledger.sdk.errors import CustodianError, RecordDecryptionError
from ledger.sdk.fhir import metadata_hash
from ledger.sdk.keys import MemberKeys, PartyKeys, derive_seed
from ledger.sdk.privacy import (
    KeyWrap,
    claim_duplicate_key,
    decrypt_record,
    keyed_hash,
    pseudonym,
    seal_record,
    sha256,
    wrap_data_key,
    wrap_for_readers,
)
from ledger.tx import Transaction, decode_transaction
from ledger.txtypes import TxType

DEMO_CHAIN_ID = "medledger-demo"
DEMO_GENESIS_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
# Everything in the demo derives from this seed: never use it for a real consortium.
DEMO_SECRET = b"medledger demo consortium v1 - not for production use"
COMMIT_TIMEOUT_S_DEFAULT = 30.0
DAY_MS = 86_400_000

# (org id, kind, validator by default)
DEMO_MEMBERS: tuple[tuple[str, b.MemberKind, bool], ...] = (
    ("hospital-a", b.MemberKind.PROVIDER, True),
    ("hospital-b", b.MemberKind.PROVIDER, True),
    ("lab", b.MemberKind.PROVIDER, True),
    ("insurer", b.MemberKind.INSURER, False),
)


@dataclass(frozen=True, slots=True)
class DemoMember:
    org_id: str
    kind: b.MemberKind
    validator: bool
    keys: MemberKeys


@dataclass(frozen=True, slots=True)
class DemoConsortium:
    """The demo's genesis members and their keys, derived from ``secret``."""

    chain_id: str = DEMO_CHAIN_ID
    secret: bytes = DEMO_SECRET
    genesis_time_ms: int = DEMO_GENESIS_TIME_MS

    @property
    def members(self) -> tuple[DemoMember, ...]:
        return tuple(
            DemoMember(org_id, kind, validator, MemberKeys.derive(org_id, self.secret))
            for org_id, kind, validator in DEMO_MEMBERS
        )

    def member(self, org_id: str) -> DemoMember:
        for member in self.members:
            if member.org_id == org_id:
                return member
        raise KeyError(org_id)

    @property
    def shared_key(self) -> bytes:
        """The key the members share for keyed hashes (pseudonyms, duplicate keys)."""
        return derive_seed(self.secret, "shared-hash-key")

    def genesis(
        self,
        *,
        genesis_time_ms: int | None = None,
        node_keys: Mapping[str, bytes] | None = None,
        validators: Sequence[str] | None = None,
        parameters: Parameters | None = None,
    ) -> Genesis:
        """The genesis of the demo chain. ``node_keys`` (org id -> node public key)
        overrides the derived node keys, e.g. with the keys ``medledger init`` made;
        ``validators`` names the validator orgs (default: the hospitals and the lab)."""
        chosen = (
            {member.org_id for member in self.members if member.validator}
            if validators is None
            else set(validators)
        )
        members = []
        for member in self.members:
            node_key = member.keys.node.public_key
            if node_keys is not None and member.org_id in node_keys:
                node_key = node_keys[member.org_id]
            members.append(
                GenesisMember(
                    member.org_id,
                    member.kind,
                    member.keys.admin.public_key,
                    node_key,
                    member.org_id in chosen,
                )
            )
        return Genesis(
            chain_id=self.chain_id,
            genesis_time_ms=self.genesis_time_ms if genesis_time_ms is None else genesis_time_ms,
            members=tuple(members),
            parameters=Parameters() if parameters is None else parameters,
        )


@dataclass(frozen=True, slots=True)
class DemoStep:
    number: int
    name: str
    expected: str  # a ResultCode name, or a local outcome ("decrypted", "refused", ...)
    actual: str
    detail: str = ""

    @property
    def matched(self) -> bool:
        return self.expected == self.actual


@dataclass(frozen=True, slots=True)
class DemoReport:
    steps: tuple[DemoStep, ...]

    @property
    def all_matched(self) -> bool:
        return bool(self.steps) and all(step.matched for step in self.steps)

    @property
    def matched_count(self) -> int:
        return sum(step.matched for step in self.steps)

    @property
    def failures(self) -> tuple[DemoStep, ...]:
        return tuple(step for step in self.steps if not step.matched)


def run_demo(
    client: LedgerClient,
    out: Callable[[str], None],
    *,
    consortium: DemoConsortium | None = None,
    run_tag: str | None = None,
    commit_timeout_s: float = COMMIT_TIMEOUT_S_DEFAULT,
) -> DemoReport:
    """Run the demo story against ``client``; ``out`` receives one line per step.

    ``run_tag`` makes the ids of this run unique (default: random), so the demo can run
    again on the same chain; member nonces are read from the ledger.
    """
    run = _DemoRun(
        client,
        out,
        consortium or DemoConsortium(),
        run_tag if run_tag is not None else os.urandom(4).hex(),
        commit_timeout_s,
    )
    run.story()
    report = DemoReport(tuple(run.steps))
    out(f"demo: {report.matched_count}/{len(report.steps)} steps matched their expected result")
    return report


# ---- the story ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Actor:
    keys: PartyKeys
    builder: TransactionBuilder
    label: str


@dataclass(slots=True)
class _DemoRun:
    client: LedgerClient
    out: Callable[[str], None]
    consortium: DemoConsortium
    tag: str
    timeout_s: float
    steps: list[DemoStep] = field(default_factory=list)
    builders: dict[str, TransactionBuilder] = field(default_factory=dict)
    stores: dict[str, CustodianStore] = field(default_factory=dict)
    actors: dict[str, _Actor] = field(default_factory=dict)
    submitted: list[bytes] = field(default_factory=list)
    plaintexts: list[bytes] = field(default_factory=list)

    # ---- plumbing ----

    def __post_init__(self) -> None:
        chain_id = self.client.chain_id
        assert chain_id == self.consortium.chain_id, "the client serves another chain"
        for member in self.consortium.members:
            info = self.client.query("gov_key", {"public_key": member.keys.admin.public_key})
            last = 0 if info is None else int(info["last_nonce"])
            self.builders[member.org_id] = TransactionBuilder(
                chain_id, member.keys.admin, last_nonce=last
            )
            self.stores[member.org_id] = CustodianStore()

    @property
    def key(self) -> bytes:
        return self.consortium.shared_key

    def now_ms(self) -> int:
        return int(self.client.query("gov_chainTime", {})["now_ms"])

    def id(self, prefix: str, name: str) -> str:
        return pseudonym(self.key, prefix, f"{self.tag}/{name}")

    def record(self, name: str, expected: str, actual: str, detail: str = "") -> str:
        step = DemoStep(len(self.steps) + 1, name, expected, actual, detail)
        self.steps.append(step)
        mark = "ok" if step.matched else "MISMATCH"
        suffix = f" -- {detail}" if detail else ""
        self.out(f"[{step.number:02d}] {name}: {actual} (expected {expected}) {mark}{suffix}")
        return actual

    def run_raw(self, name: str, raw: bytes, tx_id: bytes, expected: ResultCode) -> int:
        self.submitted.append(raw)
        accepted, code, message = self.client.submit(raw)
        detail = "" if accepted else message
        if accepted:
            try:
                code = self.client.wait_committed(tx_id, self.timeout_s)
            except TimeoutError as error:
                self.record(name, expected.name, "TIMEOUT", str(error))
                return -1
        self.record(name, expected.name, _code_name(code), detail)
        return code

    def run(self, name: str, tx: Transaction, expected: ResultCode = ResultCode.OK) -> int:
        return self.run_raw(name, tx.raw, tx.tx_id, expected)

    def party(self, label: str, prefix: str) -> _Actor:
        party_id = self.id(prefix, label)
        keys = PartyKeys.derive(party_id, derive_seed(self.consortium.secret, self.tag))
        actor = _Actor(keys, TransactionBuilder(self.client.chain_id, keys.signing), label)
        self.actors[label] = actor
        return actor

    def register(
        self,
        org_id: str,
        label: str,
        prefix: str,
        kind: b.PartyKind,
        roles: Sequence[b.PartyRole] = (),
        minor: bool = False,
    ) -> _Actor:
        actor = self.party(label, prefix)
        tx = self.builders[org_id].register_party(
            party_id=actor.keys.party_id,
            kind=kind,
            signing_key=actor.keys.signing.public_key,
            encryption_key=actor.keys.encryption.public_key,
            roles=roles,
            minor=minor,
        )
        self.run(f"{org_id} registers {label} as {actor.keys.party_id}", tx)
        return actor

    def anchor(
        self,
        org_id: str,
        name: str,
        *,
        record_id: str,
        version: int,
        patient: _Actor,
        confidentiality: b.Confidentiality,
        document_type: b.DocumentType,
        plaintext: bytes,
        previous_hash: bytes | None = None,
        expected: ResultCode = ResultCode.OK,
    ) -> bytes:
        """Encrypt, store with the custodian, anchor; returns the ciphertext hash."""
        self.plaintexts.append(plaintext)
        sealed = seal_record(plaintext, record_id=record_id, version=version)
        custodian = self.consortium.member(org_id).keys
        wraps = wrap_for_readers(
            sealed,
            [
                (patient.keys.party_id, patient.keys.encryption.public_key),
                (org_id, custodian.encryption.public_key),
            ],
        )
        document = {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient/{patient.keys.party_id}"},
            "securityLabel": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                            "code": confidentiality.name,
                        }
                    ]
                }
            ],
            "content": [{"attachment": {"contentType": "text/plain", "size": len(plaintext)}}],
        }
        tx = self.builders[org_id].anchor_record(
            record_id=record_id,
            version=version,
            patient=patient.keys.party_id,
            confidentiality=confidentiality,
            document_type=document_type,
            ciphertext_hash=sealed.ciphertext_hash,
            ciphertext_size=sealed.ciphertext_size,
            wraps=[b.Wrap(wrap.recipient, wrap.wrap_hash) for wrap in wraps],
            metadata_hash=metadata_hash(self.key, document, "DocumentReference"),
            previous_version_hash=previous_hash,
        )
        if self.run(name, tx, expected) == ResultCode.OK:
            self.stores[org_id].put_version(sealed, wraps)
        return sealed.ciphertext_hash

    def release(
        self,
        org_id: str,
        name: str,
        *,
        grant_id: str,
        record_id: str,
        version: int,
        recipient: _Actor,
        basis: b.GrantBasis,
        basis_id: str,
        expected: ResultCode = ResultCode.OK,
    ) -> KeyWrap | None:
        """The custodian wraps the data key for the recipient (its encryption key read from
        the ledger), records the KEY_GRANT, and hands out the wrap only once committed."""
        wrap: KeyWrap | None = None
        try:
            data_key = self.stores[org_id].data_key(record_id, version)
        except CustodianError:
            wrap_hash = sha256(b"no data key: the record is not held")
        else:
            registered = self.client.query("records_party", {"party_id": recipient.keys.party_id})
            wrap = wrap_data_key(
                data_key,
                record_id=record_id,
                version=version,
                recipient=recipient.keys.party_id,
                recipient_public_key=as_bytes(registered["encryption_key"]),
            )
            wrap_hash = wrap.wrap_hash
        tx = self.builders[org_id].key_grant(
            grant_id=grant_id,
            record_id=record_id,
            version=version,
            recipient=recipient.keys.party_id,
            wrap_hash=wrap_hash,
            basis=basis,
            basis_id=basis_id,
        )
        if self.run(name, tx, expected) != ResultCode.OK or wrap is None:
            return None
        self.stores[org_id].put_wrap(wrap)
        return wrap

    def read(self, name: str, org_id: str, reader: _Actor, record_id: str, version: int,
             plaintext: bytes) -> None:
        store = self.stores[org_id]
        try:
            wrap = store.wrap(record_id, version, reader.keys.party_id)
            opened = decrypt_record(
                store.ciphertext_of(record_id, version), wrap, reader.keys.encryption
            )
        except (CustodianError, RecordDecryptionError) as error:
            self.record(name, "decrypted", "refused", str(error))
            return
        self.record(name, "decrypted", "decrypted" if opened == plaintext else "wrong plaintext")

    # ---- the story ----

    def story(self) -> None:
        self.out(f"demo run {self.tag} on chain {self.client.chain_id}")
        alice, bob, carol, grey, ross, house = self.parties()
        lab_record, note_record, lab_v2 = self.records(alice)
        self.consent_story(alice, grey, lab_record, lab_v2, note_record)
        self.guardian_story(bob, carol, grey)
        self.break_glass_story(alice, ross, house, lab_record, lab_v2)
        self.insurance_story(alice)
        self.governance_story()
        self.revocation_story(house)
        self.shred_story(alice, grey, lab_record)
        self.privacy_check()

    def parties(self) -> tuple[_Actor, _Actor, _Actor, _Actor, _Actor, _Actor]:
        patient, practitioner = b.PartyKind.PATIENT, b.PartyKind.PRACTITIONER
        alice = self.register("hospital-a", "Alice Example", "pat", patient)
        bob = self.register("hospital-a", "Bob Example (minor)", "pat", patient, minor=True)
        carol = self.register(
            "hospital-a", "Carol Example (Bob's parent)", "rp", b.PartyKind.RELATED_PERSON
        )
        grey = self.register(
            "hospital-b", "Dr Grey (attending)", "prac", practitioner, (b.PartyRole.ATTENDING,)
        )
        ross = self.register(
            "hospital-b", "Dr Ross (emergency)", "prac", practitioner, (b.PartyRole.EMERGENCY,)
        )
        house = self.register(
            "hospital-a", "Dr House (attending)", "prac", practitioner, (b.PartyRole.ATTENDING,)
        )
        return alice, bob, carol, grey, ross, house

    def records(self, alice: _Actor) -> tuple[str, str, bytes]:
        lab_record = self.id("rec", "Alice/lab/MRN-000123/accession-77")
        v1 = b"Alice Example, HbA1c 6.1 percent, drawn 2026-01-05"
        lab_v2 = b"Alice Example, HbA1c 6.3 percent (corrected), drawn 2026-01-05"
        first = self.anchor(
            "lab", "lab anchors Alice's lab result v1 (R)", record_id=lab_record, version=1,
            patient=alice, confidentiality=b.Confidentiality.R,
            document_type=b.DocumentType.LAB_RESULT, plaintext=v1,
        )
        self.anchor(
            "lab", "lab anchors the corrected result as v2", record_id=lab_record, version=2,
            patient=alice, confidentiality=b.Confidentiality.R,
            document_type=b.DocumentType.LAB_RESULT, plaintext=lab_v2, previous_hash=first,
        )
        self.anchor(
            "hospital-b", "hospital-b tries to add a version to the lab's record",
            record_id=lab_record, version=3, patient=alice,
            confidentiality=b.Confidentiality.R, document_type=b.DocumentType.LAB_RESULT,
            plaintext=b"Alice Example, forged addendum", previous_hash=first,
            expected=ResultCode.RECORD_CUSTODIAN_MISMATCH,
        )
        note_record = self.id("rec", "Alice/psychotherapy/MRN-000123/note-1")
        self.anchor(
            "hospital-a", "hospital-a anchors Alice's psychotherapy note (V)",
            record_id=note_record, version=1, patient=alice,
            confidentiality=b.Confidentiality.V, document_type=b.DocumentType.CLINICAL_NOTE,
            plaintext=b"Alice Example, session notes, very restricted",
        )
        # An anchor carrying an extra, plaintext field: refused by the stateless check.
        lab = self.builders["lab"]
        body = b.AnchorRecord(
            self.id("rec", "Alice/lab/extra"), 1, alice.keys.party_id, b.Confidentiality.N,
            b.DocumentType.LAB_RESULT, sha256(b"x"), 1,
            (b.Wrap(alice.keys.party_id, sha256(b"w")),), sha256(b"m"), None,
        )
        raw = sign_unchecked(
            lab.key, chain_id=lab.chain_id, tx_type=TxType.ANCHOR_RECORD,
            nonce=lab.nonces.take(), body_tree=[*body.to_wire(), "patient name: Alice Example"],
        )
        self.run_raw(
            "an anchor carrying a plaintext field", raw, sha256(raw), ResultCode.MALFORMED
        )
        return lab_record, note_record, lab_v2

    def consent_story(
        self, alice: _Actor, grey: _Actor, lab_record: str, lab_v2: bytes, note_record: str
    ) -> None:
        now = self.now_ms()
        consent_id = self.id("consent", "Alice/Grey/1")
        consent = {
            "resourceType": "Consent",
            "status": "active",
            "decision": "permit",
            "subject": {"reference": f"Patient/{alice.keys.party_id}"},
        }
        consent_hash = metadata_hash(self.key, consent, "Consent")
        forged = self.builders["hospital-b"].consent_grant(
            consent_id=self.id("consent", "forged"), patient=alice.keys.party_id,
            grantee=grey.keys.party_id, start_ms=now, end_ms=now + 30 * DAY_MS,
            consent_hash=consent_hash,
        )
        self.run(
            "hospital-b signs a consent on Alice's behalf", forged,
            ResultCode.CONSENT_SIGNER_NOT_PATIENT_OR_DELEGATE,
        )
        grant = alice.builder.consent_grant(
            consent_id=consent_id, patient=alice.keys.party_id, grantee=grey.keys.party_id,
            start_ms=now, end_ms=now + 30 * DAY_MS, consent_hash=consent_hash,
            confidentiality_max=b.Confidentiality.R,
        )
        self.run("Alice lets Dr Grey read her records up to R for 30 days", grant)
        self.release(
            "lab", "lab releases the key of the lab result v2 to Dr Grey",
            grant_id=self.id("grant", "lab/Grey/1"), record_id=lab_record, version=2,
            recipient=grey, basis=b.GrantBasis.CONSENT, basis_id=consent_id,
        )
        self.read("Dr Grey decrypts the lab result", "lab", grey, lab_record, 2, lab_v2)
        self.release(
            "hospital-a", "hospital-a releases the V note under the R-capped consent",
            grant_id=self.id("grant", "note/Grey/1"), record_id=note_record, version=1,
            recipient=grey, basis=b.GrantBasis.CONSENT, basis_id=consent_id,
            expected=ResultCode.KEY_GRANT_CONFIDENTIALITY_ABOVE_CONSENT,
        )
        self.run("Alice revokes the consent", alice.builder.consent_revoke(consent_id))
        self.release(
            "lab", "lab tries another key grant to Dr Grey after the revocation",
            grant_id=self.id("grant", "lab/Grey/2"), record_id=lab_record, version=2,
            recipient=grey, basis=b.GrantBasis.CONSENT, basis_id=consent_id,
            expected=ResultCode.KEY_GRANT_CONSENT_REVOKED,
        )

    def guardian_story(self, bob: _Actor, carol: _Actor, grey: _Actor) -> None:
        now = self.now_ms()
        delegation = self.builders["hospital-a"].delegate_grant(
            delegation_id=self.id("delegation", "Bob/Carol"), patient=bob.keys.party_id,
            delegate=carol.keys.party_id, relationship=b.Relationship.PARENT,
            valid_until_ms=now + 365 * DAY_MS,
        )
        self.run("hospital-a attests Carol as Bob's parent (consent power, up to R)", delegation)
        consent_hash = keyed_hash(self.key, "consent", "Bob/Grey")
        too_wide = carol.builder.consent_grant(
            consent_id=self.id("consent", "Bob/Grey/V"), patient=bob.keys.party_id,
            grantee=grey.keys.party_id, start_ms=now, end_ms=now + 30 * DAY_MS,
            consent_hash=consent_hash, confidentiality_max=b.Confidentiality.V,
        )
        self.run(
            "Carol grants V access to Bob's records", too_wide,
            ResultCode.CONSENT_CONFIDENTIALITY_ABOVE_DELEGATION,
        )
        within = carol.builder.consent_grant(
            consent_id=self.id("consent", "Bob/Grey/R"), patient=bob.keys.party_id,
            grantee="hospital-b", start_ms=now, end_ms=now + 30 * DAY_MS,
            consent_hash=consent_hash, confidentiality_max=b.Confidentiality.R,
        )
        self.run("Carol lets hospital-b read Bob's records up to R", within)

    def break_glass_story(
        self, alice: _Actor, ross: _Actor, house: _Actor, lab_record: str, lab_v2: bytes
    ) -> None:
        justification = keyed_hash(self.key, "justification", "unconscious in ED")
        too_long = ross.builder.btg_open(
            btg_id=self.id("btg", "Alice/Ross/72h"), patient=alice.keys.party_id,
            records=[lab_record], hours=72, justification_hash=justification,
        )
        self.run("Dr Ross asks for a 72-hour break-glass", too_long,
                 ResultCode.BTG_HOURS_OUT_OF_RANGE)
        btg_id = self.id("btg", "Alice/Ross/1")
        opened = ross.builder.btg_open(
            btg_id=btg_id, patient=alice.keys.party_id, records=[lab_record], hours=4,
            justification_hash=justification,
        )
        self.run("Dr Ross breaks the glass for Alice's lab result (4 hours)", opened)
        self.release(
            "lab", "lab releases the key to Dr Ross under the break-glass",
            grant_id=self.id("grant", "lab/Ross/1"), record_id=lab_record, version=2,
            recipient=ross, basis=b.GrantBasis.BREAK_GLASS, basis_id=btg_id,
        )
        self.read("Dr Ross decrypts the lab result", "lab", ross, lab_record, 2, lab_v2)
        self.release(
            "lab", "Dr House tries to use Dr Ross's break-glass",
            grant_id=self.id("grant", "lab/House/1"), record_id=lab_record, version=2,
            recipient=house, basis=b.GrantBasis.BREAK_GLASS, basis_id=btg_id,
            expected=ResultCode.KEY_GRANT_BTG_OTHER_HOLDER,
        )
        self.run("Dr Ross closes the break-glass", ross.builder.btg_close(btg_id))
        review = self.builders["hospital-b"].btg_review(
            btg_id, outcome=b.ReviewOutcome.APPROPRIATE,
            review_hash=keyed_hash(self.key, "review", btg_id),
        )
        self.run("hospital-b reviews the break-glass", review)
        trail = self.client.query("audit_trail", {"patient": alice.keys.party_id})
        kinds = [str(entry["kind"]) for entry in trail]
        complete = all(kind in kinds for kind in ("key_grant", "btg_open", "btg_close",
                                                  "btg_review"))
        located = all(entry["tx_id"] is not None and entry["height"] for entry in trail)
        self.record(
            "Alice's audit trail lists every key grant and the break-glass, each with its tx",
            "complete", "complete" if complete and located else "incomplete",
            f"{len(trail)} entries: {', '.join(kinds)}",
        )

    def insurance_story(self, alice: _Actor) -> None:
        insurer, hospital_a = self.builders["insurer"], self.builders["hospital-a"]
        now = self.now_ms()
        coverage_id = self.id("cov", "Alice/2026")
        self.run(
            "insurer covers Alice: 12 monthly premiums of 250.00 USD",
            insurer.coverage(
                coverage_id=coverage_id, beneficiary=alice.keys.party_id, start_ms=now,
                end_ms=now + 365 * DAY_MS, periods=12, premium=25_000, currency="USD",
            ),
        )
        trace = self.id("820", "Alice/2026/01")
        premium = b.PremiumPaid(trace, coverage_id, 1, 25_000, "USD")
        self.run("insurer records premium period 1", insurer.sign(TxType.PREMIUM_PAID, premium))
        self.run(
            "the same premium message again (a no-op)", insurer.sign(TxType.PREMIUM_PAID, premium)
        )
        self.run(
            "period 1 paid again under another trace number",
            insurer.premium_paid(
                payment_id=self.id("820", "Alice/2026/01-again"), coverage_id=coverage_id,
                period=1, amount=25_000, currency="USD",
            ),
            ResultCode.PREMIUM_PERIOD_ALREADY_PAID,
        )
        lines = [
            b.ClaimLine(self.service_key(alice, "2026-01-05", "83036"), 4_000),
            b.ClaimLine(self.service_key(alice, "2026-01-05", "99214"), 16_000),
        ]
        claim_id = f"hospital-a:{self.id('claim', 'Alice/1')}"
        document = keyed_hash(self.key, "claim-document", claim_id)
        self.run(
            "hospital-a submits a claim of 200.00 USD in two lines",
            hospital_a.claim_submit(
                claim_id=claim_id, coverage_id=coverage_id, patient=alice.keys.party_id,
                lines=lines, currency="USD", document_hash=document,
            ),
        )
        self.run(
            "the same services re-billed under a new claim id",
            hospital_a.claim_submit(
                claim_id=f"hospital-a:{self.id('claim', 'Alice/2')}", coverage_id=coverage_id,
                patient=alice.keys.party_id, lines=lines, currency="USD",
                document_hash=document,
            ),
            ResultCode.CLAIM_DUPLICATE_SERVICE,
        )
        self.run(
            "a claim whose total does not match its lines",
            hospital_a.claim_submit(
                claim_id=f"hospital-a:{self.id('claim', 'Alice/3')}", coverage_id=coverage_id,
                patient=alice.keys.party_id,
                lines=[b.ClaimLine(self.service_key(alice, "2026-01-06", "80053"), 3_000)],
                total=3_500, currency="USD", document_hash=document,
            ),
            ResultCode.CLAIM_TOTAL_MISMATCH,
        )
        self.run(
            "hospital-b adjudicates hospital-a's claim",
            self.builders["hospital-b"].claim_adjudicate(
                claim_id, decision=b.AdjudicationDecision.APPROVED, benefits=[4_000, 16_000]
            ),
            ResultCode.CLAIM_ADJUDICATOR_NOT_INSURER,
        )
        self.run(
            "insurer 'approves' with a reduced benefit",
            insurer.claim_adjudicate(
                claim_id, decision=b.AdjudicationDecision.APPROVED, benefits=[4_000, 12_000]
            ),
            ResultCode.CLAIM_DECISION_CONTRADICTS_AMOUNTS,
        )
        self.run(
            "insurer adjudicates partially: 160.00 USD (CO45)",
            insurer.claim_adjudicate(
                claim_id, decision=b.AdjudicationDecision.PARTIAL, benefits=[4_000, 12_000],
                reason_codes=["CO45"],
            ),
        )
        self.run(
            "insurer remits 160.00 USD",
            insurer.remittance(
                remittance_id=self.id("835", "1"), currency="USD",
                allocations=[(claim_id, 16_000)],
            ),
        )
        second = insurer.remittance(
            remittance_id=self.id("835", "2"), currency="USD", allocations=[(claim_id, 16_000)]
        )
        self.run("a second remittance for the same claim", second, ResultCode.CLAIM_ALREADY_PAID)
        self.run_raw(
            "the second remittance replayed byte for byte", second.raw, second.tx_id,
            ResultCode.DUPLICATE,
        )
        status = self.client.query("claims_get", {"claim_id": claim_id})
        self.record(
            "the claim reads as paid 16000 of 20000",
            "paid 16000/20000", f"{status['status']} {status['paid']}/{status['total']}",
        )

    def service_key(self, patient: _Actor, date: str, procedure: str) -> bytes:
        return claim_duplicate_key(
            self.key, patient=patient.keys.party_id, service_date=date, procedure=procedure
        )

    def governance_story(self) -> None:
        clinic = MemberKeys.derive(f"clinic-{self.tag}", self.consortium.secret)
        proposal_id = self.id("proposal", "clinic")
        now = self.now_ms()
        self.run(
            "hospital-a proposes a clinic as a new member (not a validator)",
            self.builders["hospital-a"].propose_member(
                proposal_id=proposal_id, org_id=clinic.org_id, kind=b.MemberKind.PROVIDER,
                admin_key=clinic.admin.public_key, node_key=clinic.node.public_key,
                evidence_hash=keyed_hash(self.key, "evidence", clinic.org_id),
                deadline_ms=now + 7 * DAY_MS,
            ),
        )
        self.run("hospital-a votes for it", self.builders["hospital-a"].vote(proposal_id))
        self.run("hospital-b votes for it", self.builders["hospital-b"].vote(proposal_id))
        self.run(
            "hospital-b votes a second time", self.builders["hospital-b"].vote(proposal_id),
            ResultCode.VOTE_DUPLICATE,
        )
        self.run("lab votes for it: 3 of 4 members, the proposal passes",
                 self.builders["lab"].vote(proposal_id))
        decided = self.client.query("gov_proposal", {"proposal_id": proposal_id})
        self.record(
            "the clinic is a member", "member",
            "member" if decided["status"] == "passed" and self.active(clinic.org_id) else "absent",
        )
        # Vote it out again, so that the consortium is as it was and the demo can rerun.
        removal_id = self.id("proposal", "clinic-removal")
        self.run(
            "hospital-a proposes to remove the clinic again",
            self.builders["hospital-a"].propose_member(
                proposal_id=removal_id, org_id=clinic.org_id, kind=b.MemberKind.PROVIDER,
                admin_key=clinic.admin.public_key,
                evidence_hash=keyed_hash(self.key, "evidence", "removal", clinic.org_id),
                deadline_ms=now + 7 * DAY_MS, action=b.ProposalAction.REMOVE_MEMBER,
            ),
        )
        for org_id in ("hospital-a", "hospital-b", "lab", "insurer"):
            self.run(f"{org_id} votes to remove it (4 of 5 needed)",
                     self.builders[org_id].vote(removal_id))
        self.record(
            "the clinic has left", "left", "left" if not self.active(clinic.org_id) else "member"
        )

    def active(self, org_id: str) -> bool:
        members = self.client.query("gov_members", {})
        return any(member["org_id"] == org_id and member["active"] for member in members)

    def revocation_story(self, house: _Actor) -> None:
        now = self.now_ms()
        self.run(
            "hospital-a revokes Dr House's key (key compromise)",
            self.builders["hospital-a"].revoke_key(
                house.keys.signing.public_key, reason=b.RevocationReason.KEY_COMPROMISE,
                invalidity_ms=now,
            ),
        )
        self.run(
            "a tx signed with Dr House's revoked key",
            house.builder.btg_close(self.id("btg", "none")),
            ResultCode.SIGNER_KEY_REVOKED,
        )

    def shred_story(self, alice: _Actor, grey: _Actor, lab_record: str) -> None:
        request = keyed_hash(self.key, "erasure-request", alice.keys.party_id, lab_record)
        code = self.run(
            "Alice asks for erasure: lab shreds her lab result",
            self.builders["lab"].shred_record(lab_record, request_hash=request),
        )
        if code == ResultCode.OK:
            receipt = self.stores["lab"].shred(lab_record)
            gone = not self.stores["lab"].holds_anything_of(lab_record)
            self.record(
                "lab crypto-shreds ciphertexts, data keys and wraps", "shredded",
                "shredded" if gone else "still held",
                f"{receipt.ciphertexts} ciphertexts, {receipt.data_keys} keys, "
                f"{receipt.wraps} wraps",
            )
        self.release(
            "lab", "a key grant of the shredded record",
            grant_id=self.id("grant", "lab/Grey/3"), record_id=lab_record, version=2,
            recipient=grey, basis=b.GrantBasis.CONSENT, basis_id=self.id("consent", "any"),
            expected=ResultCode.RECORD_SHREDDED,
        )

    def privacy_check(self) -> None:
        """No submitted tx carries a record's plaintext or a patient's name."""
        needles = [*self.plaintexts, *(a.label.encode() for a in self.actors.values())]
        needles += [b"Alice Example", b"Bob Example"]
        well_formed = [raw for raw in self.submitted if _well_formed(raw)]
        leaked = [needle for needle in needles if any(needle in raw for raw in well_formed)]
        self.record(
            "no plaintext or patient name in any well-formed tx sent to the ledger",
            "none", "none" if not leaked else f"{len(leaked)} found",
        )


def _well_formed(raw: bytes) -> bool:
    """Well-formed txs only: the deliberately malformed anchor carries a name on purpose
    (and the stateless check refused it before it reached any block)."""
    try:
        decode_transaction(raw)
    except DecodeError:
        return False
    return True


def _code_name(code: int) -> str:
    try:
        return ResultCode(code).name
    except ValueError:
        return f"code {code}"
