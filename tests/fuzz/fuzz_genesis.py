"""Genesis files: ``genesis.json`` as ``medledger start`` loads it (``load_genesis``) and
the members TOML that ``medledger genesis`` reads (``genesis_from_members_file``). A
genesis that loads must hash, and its JSON form must load back to the same genesis.

Allowed: ConfigError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fuzz.common import ROOT
from ledger.errors import ConfigError
from ledger.sdk.demo import DemoConsortium
from node.genesis import genesis_from_members_file, genesis_hash, load_genesis, write_genesis

ALLOWED = (ConfigError,)
_directory = tempfile.TemporaryDirectory(prefix="medledger-fuzz-genesis-")
_path = Path(_directory.name) / "input"
_written = Path(_directory.name) / "genesis.json"


def one_input(data: bytes) -> None:
    _path.write_bytes(data)
    for loader in (load_genesis, genesis_from_members_file):
        try:
            genesis = loader(_path)
        except ConfigError:
            continue
        genesis_hash(genesis)
        write_genesis(_written, genesis)
        assert load_genesis(_written) == genesis, "a loaded genesis does not round-trip"


def seeds() -> dict[str, bytes]:
    genesis = DemoConsortium(chain_id="medledger-test").genesis(genesis_time_ms=1_767_225_600_000)
    found = {"genesis-demo": (json.dumps(genesis.to_json(), indent=1) + "\n").encode()}
    for path in sorted((ROOT / "configs").glob("*")):
        if path.suffix in (".toml", ".json") and ("member" in path.stem or "genesis" in path.stem):
            found[f"configs-{path.stem}"] = path.read_bytes()
    found["json-list"] = b"[]"
    found["members-empty"] = b'chain_id = "c"\n'
    return found


def regressions() -> dict[str, bytes]:
    """Inputs that once escaped as untyped errors (kept as corpus files and suite cases)."""
    return {
        "not-utf8": b'{"chain_id": "\xff"}',  # UnicodeDecodeError from read_text
        # ValueError from json.loads / tomllib: an integer of over 4300 digits
        "json-huge-integer": b'{"genesis_time_ms": ' + b"9" * 5000 + b"}",
        "toml-huge-integer": b"genesis_time_ms = " + b"9" * 5000 + b"\n",
    }
