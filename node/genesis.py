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

from ledger.app import Genesis, check_genesis
from ledger.errors import ConfigError
from node.keys import public_key_from_user

GENESIS_DOMAIN = b"medledger/genesis/v1\x00"

def genesis_hash(genesis: Genesis) -> bytes:
    return hashlib.sha256(GENESIS_DOMAIN + genesis.encode()).digest()


def load_genesis(path: Path) -> Genesis:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"genesis file {path} does not exist (make it with `medledger "
                          f"genesis -m members.toml -o {path}`, or set [node] "
                          "genesis_file)") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"genesis file {path} is not UTF-8: {error}") from None
    except ValueError as error:  # JSONDecodeError, or an integer of over 4300 digits
        raise ConfigError(f"genesis file {path} is not JSON: {error}") from None
    genesis = Genesis.from_json(document)
    check_genesis(genesis)
    return genesis


def write_genesis(path: Path, genesis: Genesis) -> None:
    path.write_text(json.dumps(genesis.to_json(), indent=2) + "\n")


def genesis_from_members_file(path: Path, *, genesis_time_ms: int | None = None) -> Genesis:
    """A TOML file::

        chain_id = "medledger-main"
        genesis_time_ms = 1767225600000      # or --genesis-time-ms: the genesis is
                                              # reproducible, never "now"
        [[member]]
        org_id = "org-hospital-a"
        kind = "provider"                     # provider, insurer, custodian
        admin_key = "0x..."                   # the org's admin Ed25519 public key
                                              # (`medledger keygen`), 0x optional
        node_key = "0x..."                    # optional: its node's public key
                                              # (`medledger init`)
        validator = true
    """
    try:
        document: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError) as error:  # not UTF-8, not TOML, a huge integer
        raise ConfigError(f"members file {path}: {error}") from None
    members = document.pop("member", None)
    if not isinstance(members, list) or not members:
        raise ConfigError(f"members file {path}: no [[member]] entries")
    if genesis_time_ms is not None:
        document["genesis_time_ms"] = genesis_time_ms
    if "genesis_time_ms" not in document:
        raise ConfigError(
            f"members file {path}: no genesis_time_ms: set it there or pass "
            f"--genesis-time-ms (now is {int(time.time() * 1000)}); every member must make "
            "the same genesis from the same inputs")
    document["members"] = [_member_keys_checked(path, index, member)
                           for index, member in enumerate(members, start=1)]
    genesis = Genesis.from_json(document)
    check_genesis(genesis)
    return genesis


MEMBER_KEY_FIELDS = ("admin_key", "node_key")


def _member_keys_checked(path: Path, index: int, member: Any) -> Any:
    """The member with its keys as the genesis JSON form writes them (0x-hex): a key may
    be written with or without 0x; a malformed one is an error that names the member."""
    if not isinstance(member, dict):
        return member  # Genesis.from_json says what is wrong
    name = member.get("org_id")
    who = f"member {name!r}" if isinstance(name, str) else f"member #{index}"
    checked = dict(member)
    for field_name in MEMBER_KEY_FIELDS:
        value = member.get(field_name)
        if value is None:
            continue
        where = f"members file {path}: {who} {field_name}"
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a hex string, got {value!r}")
        checked[field_name] = "0x" + public_key_from_user(value, where).hex()
    return checked
