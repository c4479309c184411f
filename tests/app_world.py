"""A small consortium on the in-process ledger, for the application's tests.

Members: two hospitals and a lab (providers), an insurer, a storage custodian. Parties are
registered on demand. Every tx is applied as a block of its own (InProcessLedger), and
``refused`` checks that a refused tx changed nothing but its signer's nonce.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, TypeVar

from ledger import bodies as b
from ledger.app import Genesis, GenesisMember, Parameters, layout
from ledger.app.model import NonceState
from ledger.app.state import load
from ledger.codec import Struct
from ledger.crypto import SigningKey
from ledger.results import ResultCode
from ledger.sdk.builders import TransactionBuilder
from ledger.sdk.inprocess import InProcessLedger
from ledger.sdk.keys import EncryptionKey, derive_seed
from ledger.tx import Transaction

CHAIN_ID = "medledger-app-test"
GENESIS_TIME_MS = 1_767_225_600_000
SEED = b"tests/app_world seed, not secret"
S = TypeVar("S", bound=Struct)
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

MEMBERS = (
    ("hospital-a", b.MemberKind.PROVIDER, True),
    ("hospital-b", b.MemberKind.PROVIDER, True),
    ("lab", b.MemberKind.PROVIDER, True),
    ("insurer", b.MemberKind.INSURER, False),
    ("vault", b.MemberKind.CUSTODIAN, False),
)


def digest(label: str) -> bytes:
    """A non-zero 32-byte hash standing in for a document, wrap or ciphertext hash."""
    return hashlib.sha256(label.encode()).digest()


def signing_key(label: str) -> SigningKey:
    return SigningKey(derive_seed(SEED, "sign/" + label))


def node_keys() -> list[SigningKey]:
    """The node keys of the worlds' members: a test that plays every validator signs each
    block's certificate with them (ledger/certificate.py)."""
    return [signing_key("node/" + org_id) for org_id, _, _ in MEMBERS]


def replay_chain(world: World, path: Any) -> tuple[Any, SigningKey]:
    """A node's Chain (node/chain.py) on a fresh store at ``path``, from the world's
    genesis, and the first validator's node key to propose with."""
    from node.bootstrap import write_genesis_record
    from node.chain import Chain
    from storage.store import Store

    genesis = world.genesis
    store = Store.open(path, chain_id=genesis.chain_id)
    write_genesis_record(store, genesis)
    chain = Chain(chain_id=genesis.chain_id, store=store,
                  genesis_time_ms=genesis.genesis_time_ms, sync_applies=False)
    return chain, signing_key("node/" + next(m.org_id for m in genesis.members if m.validator))


def member_genesis(
    members: tuple[tuple[str, b.MemberKind, bool], ...] = MEMBERS,
    parameters: Parameters | None = None,
) -> Genesis:
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time_ms=GENESIS_TIME_MS,
        members=tuple(
            GenesisMember(
                org_id,
                kind,
                signing_key("admin/" + org_id).public_key,
                signing_key("node/" + org_id).public_key,
                validator,
            )
            for org_id, kind, validator in members
        ),
        parameters=parameters or Parameters(btg_review_days=7),
    )


@dataclass
class Party:
    party_id: str
    builder: TransactionBuilder
    encryption: EncryptionKey

    @property
    def key(self) -> bytes:
        return self.builder.public_key


class World:
    def __init__(self, genesis: Genesis | None = None) -> None:
        self.genesis = genesis or member_genesis()
        self.ledger = InProcessLedger(self.genesis)
        self.members = {
            member.org_id: TransactionBuilder(CHAIN_ID, signing_key("admin/" + member.org_id))
            for member in self.genesis.members
        }
        self.parties: dict[str, Party] = {}

    # ---- time and state ----

    @property
    def now(self) -> int:
        """The time of the last block; the next block is one interval later."""
        return self.ledger.time_ms

    @property
    def next_block_ms(self) -> int:
        return self.ledger.time_ms + self.ledger.block_interval_ms

    def advance(self, milliseconds: int) -> None:
        self.ledger.advance_time(milliseconds)

    def snapshot(self) -> dict[bytes, bytes]:
        return dict(self.ledger.state.items())

    def load(self, key: bytes, struct_class: type[S]) -> S | None:
        return load(self.ledger.state, key, struct_class)

    def query(self, method: str, **params: object) -> object:
        return self.ledger.query(method, dict(params))

    # ---- applying ----

    def apply(self, tx: Transaction) -> int:
        outcome = self.ledger.commit_block([tx])
        return outcome.codes[0]

    def ok(self, tx: Transaction) -> Transaction:
        code = self.apply(tx)
        assert code == ResultCode.OK, (
            f"{tx.type.name}: {ResultCode(code).name}: {self.ledger.messages[tx.tx_id]}"
        )
        return tx

    def refused(self, tx: Transaction, code: ResultCode, *, nonce_used: bool = True) -> None:
        """``tx`` is included, refused with ``code``, and changes nothing else than its
        signer's nonce (nothing at all when ``nonce_used`` is False)."""
        before = self.snapshot()
        actual = self.apply(tx)
        after = self.snapshot()
        assert actual == code, (
            f"{tx.type.name}: expected {code.name}, got {ResultCode(actual).name}: "
            f"{self.ledger.messages[tx.tx_id]}"
        )
        changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
        nonce_key = layout.nonce_key(tx.signer)
        if nonce_used:
            assert changed == {nonce_key}, sorted(changed)
            assert after[nonce_key] == NonceState(tx.nonce).encode()
        else:
            assert changed == set(), sorted(changed)

    # ---- cast ----

    def register(
        self,
        name: str,
        kind: b.PartyKind = b.PartyKind.PATIENT,
        *,
        org: str = "hospital-a",
        roles: tuple[b.PartyRole, ...] = (),
        minor: bool = False,
    ) -> Party:
        party = Party(
            name,
            TransactionBuilder(CHAIN_ID, signing_key("party/" + name)),
            EncryptionKey(derive_seed(SEED, "encrypt/" + name)),
        )
        self.ok(
            self.members[org].register_party(
                party_id=name,
                kind=kind,
                signing_key=party.key,
                encryption_key=party.encryption.public_key,
                roles=roles,
                minor=minor,
            )
        )
        self.parties[name] = party
        return party

    def anchor(
        self,
        record_id: str,
        patient: str,
        *,
        org: str = "lab",
        version: int = 1,
        confidentiality: b.Confidentiality = b.Confidentiality.R,
        previous: bytes | None = None,
        wraps: tuple[b.Wrap, ...] | None = None,
    ) -> Transaction:
        return self.members[org].anchor_record(
            record_id=record_id,
            version=version,
            patient=patient,
            confidentiality=confidentiality,
            document_type=b.DocumentType.LAB_RESULT,
            ciphertext_hash=digest(f"ciphertext {record_id} {version}"),
            ciphertext_size=1024,
            wraps=wraps if wraps is not None else (b.Wrap(patient, digest("wrap " + patient)),),
            metadata_hash=digest(f"metadata {record_id} {version}"),
            previous_version_hash=previous,
        )

    def consent(
        self,
        signer: TransactionBuilder,
        consent_id: str,
        patient: str,
        grantee: str,
        *,
        days: int = 30,
        start_ms: int | None = None,
        end_ms: int | None = None,
        decision: b.Decision = b.Decision.PERMIT,
        confidentiality_max: b.Confidentiality = b.Confidentiality.R,
        records: tuple[str, ...] = (),
        custodian: str | None = None,
    ) -> Transaction:
        start = self.now if start_ms is None else start_ms
        return signer.consent_grant(
            consent_id=consent_id,
            patient=patient,
            grantee=grantee,
            start_ms=start,
            end_ms=start + days * DAY_MS if end_ms is None else end_ms,
            consent_hash=digest("consent " + consent_id),
            decision=decision,
            confidentiality_max=confidentiality_max,
            records=records,
            custodian=custodian,
        )

    def grant(
        self,
        signer: TransactionBuilder,
        grant_id: str,
        record_id: str,
        recipient: str,
        basis_id: str,
        *,
        version: int = 1,
        basis: b.GrantBasis = b.GrantBasis.CONSENT,
    ) -> Transaction:
        return signer.key_grant(
            grant_id=grant_id,
            record_id=record_id,
            version=version,
            recipient=recipient,
            wrap_hash=digest(f"wrap {record_id} {version} {recipient}"),
            basis=basis,
            basis_id=basis_id,
        )


def clinic_world() -> World:
    """A world with a cast: patient alice, minor bob and his parent carol, practitioners
    grey (hospital-b, attending), ross (hospital-b, emergency), house (hospital-a,
    emergency), and alice's lab result ``rec-lab`` (R, by the lab) and psychotherapy note
    ``rec-note`` (V, by hospital-a)."""
    world = World()
    world.register("alice")
    world.register("bob", minor=True)
    world.register("carol", b.PartyKind.RELATED_PERSON)
    world.register(
        "grey", b.PartyKind.PRACTITIONER, org="hospital-b", roles=(b.PartyRole.ATTENDING,)
    )
    world.register(
        "ross", b.PartyKind.PRACTITIONER, org="hospital-b", roles=(b.PartyRole.EMERGENCY,)
    )
    world.register(
        "house", b.PartyKind.PRACTITIONER, org="hospital-a", roles=(b.PartyRole.EMERGENCY,)
    )
    world.ok(world.anchor("rec-lab", "alice"))
    world.ok(
        world.anchor("rec-note", "alice", org="hospital-a", confidentiality=b.Confidentiality.V)
    )
    return world


def insured_world() -> tuple[World, str]:
    """clinic_world plus alice's coverage ``cov-alice`` (12 periods of 25,000 USD)."""
    world = clinic_world()
    world.ok(
        world.members["insurer"].coverage(
            coverage_id="cov-alice",
            beneficiary="alice",
            start_ms=world.now,
            end_ms=world.now + 365 * DAY_MS,
            periods=12,
            premium=25_000,
            currency="USD",
        )
    )
    return world, "cov-alice"


def claim_lines(*charges: int, tag: str = "") -> tuple[b.ClaimLine, ...]:
    return tuple(
        b.ClaimLine(digest(f"service {tag} {index}"), charge)
        for index, charge in enumerate(charges)
    )
