"""Genesis: the founding members and the application parameters, and the state they make.

A :class:`Genesis` is a canonical Struct (its encoding can be hashed and compared between
operators) with a JSON form for files (bytes as 0x-hex). :func:`genesis_writes` turns it
into the initial state; it raises :class:`ledger.errors.ConfigError` for an inconsistent
genesis (it comes from a file, not from the code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.app import layout
from ledger.app.model import ConsortiumState, KeyState, KeyStatus, MemberState, OwnerKind
from ledger.app.model import StoredParameters as StoredParameters
from ledger.bodies import ID, PUBLIC_KEY, TIME_MS, MemberKind
from ledger.codec import Bool, Enum, Identifier, ListOf, Nested, Optional, Struct, UInt
from ledger.errors import ConfigError, DecodeError
from ledger.tx import CHAIN_ID_LENGTH_MAX

# DOMAIN.md: consents run at most 365 days; break-glass at most 24 hours.
CONSENT_DAYS_MAX = 365
BTG_HOURS_MAX = 24
# A break-glass review is due within this many days unless genesis says otherwise (HIPAA
# 164.308(a)(1)(ii)(D) asks for regular review of access records; a week is common).
BTG_REVIEW_DAYS_DEFAULT = 7
# Members of one consortium: a vote tallies them all, the validator set is among them.
MEMBERS_MAX = 64


@dataclass(frozen=True, slots=True)
class Parameters(Struct):
    btg_review_days: int = BTG_REVIEW_DAYS_DEFAULT
    btg_max_hours: int = BTG_HOURS_MAX
    consent_max_days: int = CONSENT_DAYS_MAX

    SCHEMA = (
        ("btg_review_days", UInt(minimum=1, maximum=365)),
        ("btg_max_hours", UInt(minimum=1, maximum=BTG_HOURS_MAX)),
        ("consent_max_days", UInt(minimum=1, maximum=CONSENT_DAYS_MAX)),
    )


@dataclass(frozen=True, slots=True)
class GenesisMember(Struct):
    org_id: str
    kind: MemberKind
    admin_key: bytes
    node_key: bytes | None  # the node's Ed25519 public key (its libp2p peer id)
    validator: bool

    SCHEMA = (
        ("org_id", ID),
        ("kind", Enum(MemberKind)),
        ("admin_key", PUBLIC_KEY),
        ("node_key", Optional(PUBLIC_KEY)),
        ("validator", Bool()),
    )


@dataclass(frozen=True, slots=True)
class Genesis(Struct):
    chain_id: str
    genesis_time_ms: int
    members: tuple[GenesisMember, ...]
    parameters: Parameters

    SCHEMA = (
        ("chain_id", Identifier(CHAIN_ID_LENGTH_MAX)),
        ("genesis_time_ms", TIME_MS),
        ("members", ListOf(Nested(GenesisMember), minimum=1, maximum=MEMBERS_MAX)),
        ("parameters", Nested(Parameters)),
    )

    def validators(self) -> list[GenesisMember]:
        return [member for member in self.members if member.validator]

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "members": [
                {
                    "org_id": member.org_id,
                    "kind": member.kind.name.lower(),
                    "admin_key": "0x" + member.admin_key.hex(),
                    "node_key": None if member.node_key is None else "0x" + member.node_key.hex(),
                    "validator": member.validator,
                }
                for member in self.members
            ],
            "parameters": {
                "btg_review_days": self.parameters.btg_review_days,
                "btg_max_hours": self.parameters.btg_max_hours,
                "consent_max_days": self.parameters.consent_max_days,
            },
        }

    @classmethod
    def from_json(cls, document: Any) -> Genesis:
        """Parse the JSON form strictly; a ConfigError names what is wrong."""
        try:
            if not isinstance(document, dict):
                raise ConfigError("genesis: expected an object")
            members = [_member_from_json(item) for item in _list(document, "members")]
            parameters = document.get("parameters", {})
            if not isinstance(parameters, dict):
                raise ConfigError("genesis.parameters: expected an object")
            extra = set(document) - {"chain_id", "genesis_time_ms", "members", "parameters"}
            if extra:
                raise ConfigError(f"genesis: unknown fields {sorted(extra)}")
            tree = [
                document.get("chain_id"),
                document.get("genesis_time_ms"),
                members,
                [
                    parameters.get("btg_review_days", BTG_REVIEW_DAYS_DEFAULT),
                    parameters.get("btg_max_hours", BTG_HOURS_MAX),
                    parameters.get("consent_max_days", CONSENT_DAYS_MAX),
                ],
            ]
            return cls.from_wire(tree)
        except DecodeError as error:
            raise ConfigError(f"genesis: {error}") from None


def _list(document: dict[str, Any], name: str) -> list[Any]:
    value = document.get(name)
    if not isinstance(value, list):
        raise ConfigError(f"genesis.{name}: expected a list")
    return value


def _hex_bytes(value: Any, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ConfigError(f"{where}: expected 0x-hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ConfigError(f"{where}: not hex") from None


def _member_from_json(item: Any) -> list[Any]:
    if not isinstance(item, dict):
        raise ConfigError("genesis.members: expected objects")
    kinds = {kind.name.lower(): int(kind) for kind in MemberKind}
    kind = item.get("kind")
    if kind not in kinds:
        raise ConfigError(f"genesis member kind {kind!r} is not one of {sorted(kinds)}")
    return [
        item.get("org_id"),
        kinds[kind],
        _hex_bytes(item.get("admin_key"), "genesis member admin_key"),
        _hex_bytes(item.get("node_key"), "genesis member node_key"),
        item.get("validator", False),
    ]


def check_genesis(genesis: Genesis) -> None:
    """Raise ConfigError unless the genesis can found a working chain."""
    org_ids = [member.org_id for member in genesis.members]
    if len(set(org_ids)) != len(org_ids):
        raise ConfigError("genesis: an org id appears twice")
    keys = [member.admin_key for member in genesis.members]
    keys += [member.node_key for member in genesis.members if member.node_key is not None]
    if len(set(keys)) != len(keys):
        raise ConfigError("genesis: a public key appears twice")
    for member in genesis.members:
        if member.validator and member.node_key is None:
            raise ConfigError(f"genesis: validator {member.org_id} has no node key")
    if not genesis.validators():
        raise ConfigError("genesis: no validator")


def genesis_writes(genesis: Genesis) -> dict[bytes, bytes]:
    """The initial application state, sorted by key."""
    check_genesis(genesis)
    writes: dict[bytes, bytes] = {
        layout.PARAMETERS_KEY: StoredParameters(
            chain_id=genesis.chain_id,
            genesis_time_ms=genesis.genesis_time_ms,
            btg_review_days=genesis.parameters.btg_review_days,
            btg_max_hours=genesis.parameters.btg_max_hours,
            consent_max_days=genesis.parameters.consent_max_days,
        ).encode(),
        layout.CONSORTIUM_KEY: ConsortiumState(
            active_members=len(genesis.members),
            total_members=len(genesis.members),
            active_validators=len(genesis.validators()),
        ).encode(),
    }
    for member in genesis.members:
        writes[layout.member_key(member.org_id)] = MemberState(
            org_id=member.org_id,
            kind=member.kind,
            admin_key=member.admin_key,
            node_key=member.node_key,
            validator=member.validator,
            active=True,
            joined_height=0,
            left_height=None,
        ).encode()
        writes[layout.public_key_key(member.admin_key)] = member_key_state(
            member.admin_key, member.org_id
        ).encode()
    return dict(sorted(writes.items()))


def member_key_state(public_key: bytes, org_id: str) -> KeyState:
    return KeyState(
        public_key=public_key,
        owner_kind=OwnerKind.MEMBER,
        owner_id=org_id,
        org_id=org_id,
        status=KeyStatus.ACTIVE,
        changed_ms=None,
        invalidity_ms=None,
        reason=None,
        successor=None,
    )
