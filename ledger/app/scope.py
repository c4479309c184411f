"""What a rule sees while it applies one transaction: the tx, its signer, the block, and a
private overlay of the state; and how it refuses (raise :class:`RuleViolation`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

from ledger.app import layout
from ledger.app.events import Event, ValidatorChange
from ledger.app.model import (
    AuditEntry,
    AuditKind,
    KeyState,
    MemberState,
    PartyState,
)
from ledger.app.state import Overlay
from ledger.bodies import GrantBasis, MemberKind, PartyKind
from ledger.codec import Struct
from ledger.errors import RemoteError
from ledger.results import ResultCode
from ledger.tx import Transaction

S = TypeVar("S", bound=Struct)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
ZERO_HASH = bytes(32)


class RuleViolation(RemoteError):
    """A well-formed tx that breaks one of the application's rules; ``code`` names it."""

    def __init__(self, code: ResultCode, message: str) -> None:
        assert code.is_application, "rule violations carry application codes"
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class BlockContext:
    """The block being applied: its height, its proposer-assigned time, its proposer."""

    height: int
    timestamp_ms: int
    proposer: bytes


@dataclass(frozen=True, slots=True)
class Signer:
    """The owner of a tx's signing key, resolved once before the tx's rules run."""

    public_key: bytes
    key: KeyState
    member: MemberState | None  # when the key is a member's admin key
    party: PartyState | None  # when the key is a party's signing key

    @property
    def owner_id(self) -> str:
        return self.key.owner_id


@dataclass(slots=True)
class TxScope:
    view: Overlay
    block: BlockContext
    chain_id: str
    tx: Transaction
    position: int
    signer: Signer
    btg_review_days: int
    btg_max_hours: int
    consent_max_days: int
    events: list[Event] = field(default_factory=list)
    validator_changes: list[ValidatorChange] = field(default_factory=list)
    _audit_count: int = 0

    @property
    def now_ms(self) -> int:
        return self.block.timestamp_ms

    @property
    def height(self) -> int:
        return self.block.height

    @property
    def tx_id(self) -> bytes:
        return self.tx.tx_id

    # ---- refusing ----

    @staticmethod
    def fail(code: ResultCode, message: str) -> NoReturn:
        raise RuleViolation(code, message)

    def require(self, condition: bool, code: ResultCode, message: str) -> None:
        if not condition:
            raise RuleViolation(code, message)

    # ---- state ----

    def load(self, key: bytes, struct_class: type[S]) -> S | None:
        return self.view.load(key, struct_class)

    def exists(self, key: bytes) -> bool:
        return self.view.get(key) is not None

    def store(self, key: bytes, value: Struct) -> None:
        self.view.store(key, value)

    def delete(self, key: bytes) -> None:
        self.view.delete(key)

    def iterate_keys(self, prefix: bytes, *, limit: int) -> list[bytes]:
        return [key for key, _ in self.view.iterate(prefix, limit=limit)]

    # ---- lookups shared by the rules ----

    def party(self, party_id: str) -> PartyState | None:
        return self.load(layout.party_key(party_id), PartyState)

    def member(self, org_id: str) -> MemberState | None:
        return self.load(layout.member_key(org_id), MemberState)

    def patient(self, party_id: str) -> PartyState:
        party = self.party(party_id)
        if party is None or party.kind is not PartyKind.PATIENT:
            self.fail(ResultCode.PATIENT_UNKNOWN, f"{party_id!r} is not a registered patient")
        return party

    def signer_member(self, code: ResultCode, kinds: Sequence[MemberKind] = ()) -> MemberState:
        """The signing member (active: checked before any rule), of one of ``kinds``."""
        member = self.signer.member
        if member is None:
            self.fail(code, "the signer is not a member organisation's admin key")
        if kinds and member.kind not in kinds:
            names = "/".join(kind.name.lower() for kind in kinds)
            self.fail(code, f"{member.org_id} is a {member.kind.name.lower()}, not a {names}")
        return member

    def known_principal(self, identifier: str) -> bool:
        """A party or a member org of that id."""
        return self.exists(layout.party_key(identifier)) or self.exists(
            layout.member_key(identifier)
        )

    def require_nonzero(self, value: bytes, code: ResultCode, name: str) -> None:
        self.require(value != ZERO_HASH, code, f"{name} is the all-zero placeholder hash")

    # ---- outputs ----

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def audit(
        self,
        kind: AuditKind,
        *,
        patient: str,
        actor: str,
        record_id: str | None = None,
        version: int | None = None,
        recipient: str | None = None,
        basis: GrantBasis | None = None,
        basis_id: str | None = None,
    ) -> None:
        """Append an entry to the patient's access audit trail, naming this tx."""
        entry = AuditEntry(
            kind=kind,
            patient=patient,
            actor=actor,
            tx_id=self.tx_id,
            height=self.height,
            position=self.position,
            time_ms=self.now_ms,
            record_id=record_id,
            version=version,
            recipient=recipient,
            basis=basis,
            basis_id=basis_id,
        )
        key = layout.audit_key(patient, self.height, self.position + 1, self._audit_count)
        self._audit_count += 1
        self.store(key, entry)


def body_hash(body: Struct) -> bytes:
    """SHA-256 of a body's canonical encoding (for idempotent resends)."""
    return hashlib.sha256(body.encode()).digest()
