"""The load tester's transactions: valid healthcare txs in a valid order, built with the
SDK's builders (ledger.sdk) and signed before the measured round.

Each worker owns one *lane*: one member's admin key and the parties that lane registers
(patients, grantees, a storage gateway). Every key signs in exactly one lane, so each
signer's nonces reach the node in order however the workers interleave. The lane's
preparation (registrations, then records, consents and coverage they depend on) is
submitted and committed before the round and is not measured.

Measured tx types and what makes each one valid (DOMAIN.md):

==============  =============  =====================================================
type            signer         depends on (prepared)
==============  =============  =====================================================
REGISTER_PARTY  lane member    nothing: a new patient
ANCHOR_RECORD   lane member    a prepared patient (wraps for patient and custodian)
CONSENT_GRANT   a patient      a prepared grantee (pairs rotate under the pair cap)
KEY_GRANT       lane member    the patient's prepared record and consent to grantee 0
CLAIM_SUBMIT    lane member    the patient's prepared coverage (insurer, provider lane)
ACCESS_LOG      lane gateway   the gateway party
==============  =============  =====================================================

Everything here is pure (no I/O): the same :class:`LaneSpec` gives the same txs, which is
what lets a process pool sign lanes in parallel.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import nacl.signing

from ledger import bodies as b
from ledger.crypto import SigningKey, signing_message
from ledger.sdk.builders import TransactionBuilder
from ledger.sdk.keys import PartyKeys, derive_seed
from ledger.sdk.privacy import claim_duplicate_key, pseudonym
from ledger.tx import Transaction

# Grantees (practitioners) per lane: measured consents rotate over grantees 1..n-1, so
# (patient, grantee) pairs stay under the ledger's CONSENTS_PER_PAIR_MAX (64) live
# consents; grantee 0 holds the prepared consent the key grants rely on.
GRANTEES_PER_LANE = 8
# Measured consents per (patient, grantee) pair at most: the ledger caps live consents
# of one pair at 64, and the prepared consent of grantee 0 is not among these pairs.
CONSENTS_PER_PAIR_PLANNED_MAX = 60
PATIENTS_PER_LANE_MIN = 16
# A consent covers the round comfortably and is far under the 365-day cap.
CONSENT_DAYS = 30
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
COVERAGE_DAYS = 365
CURRENCY = "EUR"
PREMIUM_MINOR = 25_000
CLAIM_LINES_MAX_PLANNED = 4  # a claim of 1-4 service lines (X12 837 practice: few)
# Org ids of members the load tester adds by governance when the consortium has fewer
# member keys than workers: deterministic keys, for test chains only.
LOADTEST_MEMBER_PREFIX = "loadtest-"
PROPOSAL_DEADLINE_DAYS = 1
# Fewer txs than this are signed in this process: a pool's start-up (forking, importing
# the ledger) costs more than it saves.
POOL_IN_PROCESS_TXS_MAX = 5_000
MIX_TYPES = ("REGISTER_PARTY", "ANCHOR_RECORD", "CONSENT_GRANT", "KEY_GRANT",
             "CLAIM_SUBMIT", "ACCESS_LOG")


@dataclass(frozen=True, slots=True)
class MemberSigner:
    """A member whose admin key the load tester holds."""

    org_id: str
    kind: b.MemberKind
    seed: bytes
    last_nonce: int = 0

    @property
    def key(self) -> SigningKey:
        return FastSigningKey(self.seed)


@dataclass(frozen=True, slots=True)
class LaneSpec:
    """Everything one lane's txs derive from (picklable, for the process pool)."""

    chain_id: str
    run_tag: str
    lane: int
    member: MemberSigner
    weights: tuple[tuple[str, int], ...]  # measured type -> weight (0-weight types absent)
    patients: int
    now_ms: int  # chain time at preparation
    healthcare: bool = True
    patient_last_nonce: int = 0
    gateway_last_nonce: int = 0
    insurer_org: str | None = None


class FastSigningKey(SigningKey):
    """A SigningKey that derives its libsodium key pair once, not per signature (the
    base class re-derives it on every call, which doubles the cost of signing)."""

    _cached: nacl.signing.SigningKey

    def __init__(self, seed: bytes) -> None:
        super().__init__(seed)
        object.__setattr__(self, "_cached", nacl.signing.SigningKey(seed))

    @property
    def public_key(self) -> bytes:
        return bytes(self._cached.verify_key)

    def sign(self, domain: bytes, message: bytes) -> bytes:
        return bytes(self._cached.sign(signing_message(domain, message)).signature)

    def __reduce__(self) -> tuple[type[FastSigningKey], tuple[bytes]]:
        return (FastSigningKey, (self.seed,))


def loadtest_member_key(chain_id: str, org_id: str) -> SigningKey:
    seed = hashlib.sha256(f"medledger/loadtest-member\x00{chain_id}\x00{org_id}".encode())
    return SigningKey(seed.digest())


def shared_key(run_tag: str) -> bytes:
    """The key this run's keyed hashes (pseudonyms, duplicate keys) use."""
    return derive_seed(b"medledger loadtest shared key", run_tag)


def lane_exclusions(kind: b.MemberKind, healthcare: bool, insurer: bool) -> dict[str, str]:
    """The measured types a lane signed by a member of ``kind`` cannot submit, each with
    the reason (``insurer``: the load tester holds an insurer member's key)."""
    if not healthcare:
        return {tx_type: "the register-party mix submits REGISTER_PARTY only"
                for tx_type in MIX_TYPES if tx_type != "REGISTER_PARTY"}
    if kind is b.MemberKind.INSURER:
        return {tx_type: "an insurer signs coverage, not a lane's txs" for tx_type in MIX_TYPES}
    if kind is not b.MemberKind.PROVIDER:
        return {"CLAIM_SUBMIT": f"only providers submit claims; the lane's member is a "
                                f"{kind.name.lower()}"}
    if not insurer:
        return {"CLAIM_SUBMIT": "no insurer among the members whose admin keys the load "
                                "tester holds (a claim needs coverage an insurer signs)"}
    return {}


def lane_capabilities(kind: b.MemberKind, healthcare: bool, insurer: bool) -> set[str]:
    return set(MIX_TYPES) - set(lane_exclusions(kind, healthcare, insurer))


def lane_tx_types(spec: LaneSpec, count: int) -> list[str]:
    """The types of a lane's first ``count`` measured txs, in order: the cycle
    :meth:`LaneWorkload.generate` follows."""
    return list(itertools.islice(weighted_cycle(spec.weights), count))


def patients_needed(weights: Mapping[str, int], txs: int) -> int:
    """Prepared patients a lane needs so that ``txs`` measured txs keep every
    (patient, grantee) pair under the ledger's live-consent cap."""
    total = sum(weights.values())
    consents = math.ceil(txs * weights.get("CONSENT_GRANT", 0) / total) if total else 0
    pairs_per_patient = (GRANTEES_PER_LANE - 1) * CONSENTS_PER_PAIR_PLANNED_MAX
    return max(PATIENTS_PER_LANE_MIN, math.ceil(consents / pairs_per_patient))


def weighted_cycle(weights: Sequence[tuple[str, int]]) -> Iterator[str]:
    """Smooth weighted round robin (nginx's): an exact, evenly spread, deterministic mix."""
    assert weights and all(weight > 0 for _, weight in weights), "positive weights"
    total = sum(weight for _, weight in weights)
    current = [0] * len(weights)
    while True:
        for index, (_, weight) in enumerate(weights):
            current[index] += weight
        chosen = max(range(len(weights)), key=lambda index: current[index])
        current[chosen] -= total
        yield weights[chosen][0]


# ---- one lane -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Party:
    keys: PartyKeys
    builder: TransactionBuilder


@dataclass(slots=True)
class LaneWorkload:
    """The parties, ids and builders of one lane; prepares and generates its txs."""

    spec: LaneSpec
    member: TransactionBuilder = field(init=False)
    secret: bytes = field(init=False)
    counter: int = 0

    def __post_init__(self) -> None:
        self.member = TransactionBuilder(self.spec.chain_id, self.spec.member.key,
                                         last_nonce=self.spec.member.last_nonce)
        self.secret = shared_key(self.spec.run_tag)

    # ---- names ----

    def id(self, prefix: str, name: str) -> str:
        return pseudonym(self.secret, prefix, f"{self.spec.run_tag}/{self.spec.lane}/{name}")

    def party(self, prefix: str, name: str, last_nonce: int = 0) -> _Party:
        party_id = self.id(prefix, name)
        keys = PartyKeys.derive(party_id, self.secret)
        signing = FastSigningKey(keys.signing.seed)
        return _Party(keys, TransactionBuilder(self.spec.chain_id, signing,
                                               last_nonce=last_nonce))

    def patient(self, index: int) -> _Party:
        return self.party("pat", f"patient/{index}", self.spec.patient_last_nonce)

    def grantee_id(self, index: int) -> str:
        return self.id("prac", f"grantee/{index}")

    def gateway(self) -> _Party:
        return self.party("gw", "gateway", self.spec.gateway_last_nonce)

    def record_id(self, name: str) -> str:
        return self.id("rec", name)

    def consent_id(self, name: str) -> str:
        return self.id("cons", name)

    def coverage_id(self, index: int) -> str:
        return self.id("cov", f"patient/{index}")

    def digest(self, *parts: object) -> bytes:
        text = "/".join(str(part) for part in (self.spec.run_tag, self.spec.lane, *parts))
        return hashlib.sha256(text.encode()).digest()

    # ---- preparation (not measured) ----

    def register(self, party: PartyKeys, kind: b.PartyKind,
                 roles: Sequence[b.PartyRole] = ()) -> Transaction:
        return self.member.register_party(
            party_id=party.party_id, kind=kind, signing_key=party.signing.public_key,
            encryption_key=party.encryption.public_key, roles=roles,
        )

    def preparation_registrations(self) -> list[Transaction]:
        txs = [self.register(self.patient(index).keys, b.PartyKind.PATIENT)
               for index in range(self.spec.patients)]
        for index in range(GRANTEES_PER_LANE):
            grantee = PartyKeys.derive(self.grantee_id(index), self.secret)
            txs.append(self.register(grantee, b.PartyKind.PRACTITIONER,
                                     (b.PartyRole.ATTENDING,)))
        txs.append(self.register(self.gateway().keys, b.PartyKind.PRACTITIONER,
                                 (b.PartyRole.GATEWAY,)))
        return txs

    def preparation_dependents(self) -> list[Transaction]:
        """Each patient's record (anchored by the lane member) and consent to grantee 0
        (signed by the patient)."""
        txs = []
        for index in range(self.spec.patients):
            patient = self.patient(index)
            txs.append(self.anchor(patient.keys.party_id, f"prepared/{index}"))
            txs.append(patient.builder.consent_grant(
                consent_id=self.consent_id(f"prepared/{index}"),
                patient=patient.keys.party_id, grantee=self.grantee_id(0),
                start_ms=self.spec.now_ms - HOUR_MS,
                end_ms=self.spec.now_ms + CONSENT_DAYS * DAY_MS,
                consent_hash=self.digest("consent", index),
            ))
        return txs

    def coverage(self, insurer: TransactionBuilder, index: int) -> Transaction:
        return insurer.coverage(
            coverage_id=self.coverage_id(index), beneficiary=self.patient(index).keys.party_id,
            start_ms=self.spec.now_ms - DAY_MS,
            end_ms=self.spec.now_ms + COVERAGE_DAYS * DAY_MS,
            periods=12, premium=PREMIUM_MINOR, currency=CURRENCY,
        )

    def after_preparation(self) -> LaneSpec:
        """The spec the measured txs start from (nonces past the preparation)."""
        healthcare = self.spec.healthcare
        return replace(
            self.spec,
            member=replace(self.spec.member, last_nonce=self.member.nonces.last_used),
            patient_last_nonce=1 if healthcare else 0,  # each signed its prepared consent
        )

    # ---- measured txs ----

    def anchor(self, patient_id: str, name: str) -> Transaction:
        size = 2_048 + int.from_bytes(self.digest("size", name)[:3], "big") % 200_000
        return self.member.anchor_record(
            record_id=self.record_id(name), version=1, patient=patient_id,
            confidentiality=b.Confidentiality.R, document_type=b.DocumentType.LAB_RESULT,
            ciphertext_hash=self.digest("ciphertext", name), ciphertext_size=size,
            wraps=[b.Wrap(patient_id, self.digest("wrap", name, "patient")),
                   b.Wrap(self.spec.member.org_id, self.digest("wrap", name, "custodian"))],
            metadata_hash=self.digest("metadata", name),
        )

    def generate(self, count: int) -> list[bytes]:
        """``count`` measured txs, raw, in this lane's submission order."""
        assert self.spec.weights, "a lane needs at least one tx type"
        patients = [self.patient(index) for index in range(self.spec.patients)]
        gateway = self.gateway()
        kinds = weighted_cycle(self.spec.weights)
        per_kind: dict[str, int] = {}
        raws: list[bytes] = []
        for _ in range(count):
            self.counter += 1
            kind = next(kinds)
            ordinal = per_kind.get(kind, 0)
            per_kind[kind] = ordinal + 1
            raws.append(self.measured(kind, ordinal, patients, gateway).raw)
        return raws

    def measured(self, kind: str, ordinal: int, patients: Sequence[_Party],
                 gateway: _Party) -> Transaction:
        """The ``ordinal``-th measured tx of ``kind`` (ids unique by the lane counter)."""
        number = self.counter
        if kind == "REGISTER_PARTY":
            fresh = PartyKeys.derive(self.id("pat", f"new/{number}"), self.secret)
            return self.register(fresh, b.PartyKind.PATIENT)
        if kind == "ACCESS_LOG":
            return gateway.builder.access_log(
                batch_id=self.id("alog", str(number)),
                period_start_ms=self.spec.now_ms - 2 * HOUR_MS,
                period_end_ms=self.spec.now_ms - HOUR_MS,
                release_count=1 + number % 50, summary_hash=self.digest("access", number),
            )
        assert patients, f"{kind} needs prepared patients"
        index = ordinal % len(patients)
        patient = patients[index]
        patient_id = patient.keys.party_id
        if kind == "ANCHOR_RECORD":
            return self.anchor(patient_id, f"new/{number}")
        if kind == "CONSENT_GRANT":
            # Consent k goes to pair (k mod P, 1 + (k div P) mod (G-1)): every pair gets
            # every P*(G-1)-th consent, so the pair cap is reached evenly and late.
            grantee = 1 + (ordinal // len(patients)) % (GRANTEES_PER_LANE - 1)
            return patient.builder.consent_grant(
                consent_id=self.consent_id(f"new/{number}"), patient=patient_id,
                grantee=self.grantee_id(grantee), start_ms=self.spec.now_ms - HOUR_MS,
                end_ms=self.spec.now_ms + CONSENT_DAYS * DAY_MS,
                consent_hash=self.digest("consent", number),
            )
        if kind == "KEY_GRANT":
            return self.member.key_grant(
                grant_id=self.id("grant", str(number)),
                record_id=self.record_id(f"prepared/{index}"), version=1,
                recipient=self.grantee_id(0), wrap_hash=self.digest("grant", number),
                basis_id=self.consent_id(f"prepared/{index}"),
            )
        assert kind == "CLAIM_SUBMIT", f"unknown measured type {kind}"
        return self.claim(patient_id, index, number)

    def claim(self, patient_id: str, index: int, number: int) -> Transaction:
        lines = [
            b.ClaimLine(
                claim_duplicate_key(self.secret, patient=patient_id,
                                    service_date=f"{self.spec.run_tag}-{number}",
                                    procedure=f"9921{line}", units=1 + line),
                charge=5_000 + 1_000 * line,
            )
            for line in range(1 + number % CLAIM_LINES_MAX_PLANNED)
        ]
        org_id = self.spec.member.org_id
        return self.member.claim_submit(
            claim_id=f"{org_id}:{self.id('claim', str(number))}",
            coverage_id=self.coverage_id(index), patient=patient_id, lines=lines,
            currency=CURRENCY, document_hash=self.digest("claim", number),
        )


# ---- membership for more workers than member keys -------------------------------------------


def membership_additions(chain_id: str, voters: Sequence[MemberSigner], active_members: int,
                         new_org_ids: Sequence[str], now_ms: int) -> list[Transaction]:
    """PROPOSE_MEMBER and enough VOTEs to pass each one, in order: the proposal passes
    when approvals * 3 > active * 2, evaluated at each vote; members added earlier vote on
    later proposals. ``voters`` must hold a two-thirds majority of ``active_members``."""
    builders = [TransactionBuilder(chain_id, voter.key, last_nonce=voter.last_nonce)
                for voter in voters]
    txs: list[Transaction] = []
    active = active_members
    for org_id in new_org_ids:
        key = loadtest_member_key(chain_id, org_id)
        proposal_id = f"{org_id}-admission"
        txs.append(builders[0].propose_member(
            proposal_id=proposal_id, org_id=org_id, kind=b.MemberKind.PROVIDER,
            admin_key=key.public_key, evidence_hash=hashlib.sha256(org_id.encode()).digest(),
            deadline_ms=now_ms + PROPOSAL_DEADLINE_DAYS * DAY_MS,
        ))
        needed = active * 2 // 3 + 1
        assert needed <= len(builders), "not enough voting keys for a two-thirds majority"
        txs.extend(builder.vote(proposal_id) for builder in builders[:needed])
        builders.append(TransactionBuilder(chain_id, key))
        active += 1
    return txs


# ---- the pool -------------------------------------------------------------------------------


def generate_lane(spec: LaneSpec, count: int) -> list[bytes]:
    return LaneWorkload(spec).generate(count)


def generate_pool(specs: Sequence[LaneSpec], counts: Sequence[int], *, processes: int,
                  in_process_txs_max: int = POOL_IN_PROCESS_TXS_MAX) -> list[list[bytes]]:
    """Every lane's measured txs, signed in ``processes`` processes (or here when < 2).
    A lane is signed in one process: its nonces are one sequence."""
    assert len(specs) == len(counts)
    if processes < 2 or len(specs) == 1 or sum(counts) < in_process_txs_max:
        return [generate_lane(spec, count) for spec, count in zip(specs, counts, strict=True)]
    with ProcessPoolExecutor(max_workers=processes) as pool:
        return list(pool.map(_generate_lane_star, list(zip(specs, counts, strict=True))))


def _generate_lane_star(arguments: tuple[LaneSpec, int]) -> list[bytes]:
    return generate_lane(*arguments)


def summary_of(specs: Sequence[LaneSpec]) -> list[dict[str, Any]]:
    return [
        {"lane": spec.lane, "member": spec.member.org_id, "patients": spec.patients,
         "weights": dict(spec.weights)}
        for spec in specs
    ]
