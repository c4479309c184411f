"""Genesis files: the consortium's initial members, validators and parameters.

The file is JSON (``ledger.app.Genesis.to_json``). Its hash, over the canonical encoding,
is the previous hash of block 1, so every block names the genesis it grew from.
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
from pathlib import Path
from typing import Any

from ledger.app import Genesis, GenesisMember, Parameters, check_genesis
from ledger.bodies import MemberKind
from ledger.crypto import SigningKey
from ledger.errors import ConfigError

GENESIS_DOMAIN = b"medledger/genesis/v1\x00"

# The devnet consortium: two hospitals, a lab and an insurer (the demo's story), and a
# records custodian. Admin keys come from fixed seeds so the demo can sign for them; a
# real consortium generates them offline (`medledger init` / its own key ceremony).
DEVNET_MEMBERS: tuple[tuple[str, MemberKind], ...] = (
    ("org-hospital-a", MemberKind.PROVIDER),
    ("org-hospital-b", MemberKind.PROVIDER),
    ("org-lab", MemberKind.PROVIDER),
    ("org-insurer", MemberKind.INSURER),
    ("org-custodian", MemberKind.CUSTODIAN),
)


def genesis_hash(genesis: Genesis) -> bytes:
    return hashlib.sha256(GENESIS_DOMAIN + genesis.encode()).digest()


def load_genesis(path: Path) -> Genesis:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"genesis file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"genesis file {path} is not JSON: {error}") from None
    genesis = Genesis.from_json(document)
    check_genesis(genesis)
    return genesis


def write_genesis(path: Path, genesis: Genesis) -> None:
    path.write_text(json.dumps(genesis.to_json(), indent=2) + "\n")


def devnet_admin_key(org_id: str) -> SigningKey:
    return SigningKey(hashlib.sha256(b"medledger/devnet-admin\x00" + org_id.encode()).digest())


def devnet_genesis(chain_id: str, validator_node_keys: list[bytes]) -> Genesis:
    """Validators are assigned to the provider and custodian orgs in turn; beyond those,
    extra provider orgs (``org-provider-N``) are added."""
    members: list[GenesisMember] = []
    remaining = list(validator_node_keys)
    for org_id, kind in DEVNET_MEMBERS:
        node_key = remaining.pop(0) if remaining and kind is not MemberKind.INSURER else None
        members.append(GenesisMember(org_id, kind, devnet_admin_key(org_id).public_key,
                                     node_key, node_key is not None))
    for index, node_key in enumerate(remaining, start=1):
        org_id = f"org-provider-{index}"
        members.append(GenesisMember(org_id, MemberKind.PROVIDER,
                                     devnet_admin_key(org_id).public_key, node_key, True))
    genesis = Genesis(chain_id, int(time.time() * 1000), tuple(members), Parameters())
    check_genesis(genesis)
    return genesis


def genesis_from_members_file(path: Path) -> Genesis:
    """A TOML file::

        chain_id = "medledger-main"
        genesis_time_ms = 1767225600000      # optional, default: now
        [[member]]
        org_id = "org-hospital-a"
        kind = "provider"                     # provider, insurer, custodian
        admin_key = "0x..."                   # the org's admin Ed25519 public key
        node_key = "0x..."                    # optional: its node's public key
        validator = true
    """
    try:
        document: dict[str, Any] = tomllib.loads(path.read_text())
    except (FileNotFoundError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"members file {path}: {error}") from None
    members = document.pop("member", None)
    if not isinstance(members, list) or not members:
        raise ConfigError(f"members file {path}: no [[member]] entries")
    document.setdefault("genesis_time_ms", int(time.time() * 1000))
    document["members"] = members
    genesis = Genesis.from_json(document)
    check_genesis(genesis)
    return genesis
