"""Node config files (``medledger start -c node.toml``): the input is split at the first
NUL byte into the file's bytes and environment overrides (``KEY=VALUE`` lines, as
``MEDLEDGER_<SECTION>_<KEY>``), then loaded with ``load_config``; a config that loads is
rendered back (``render_config``, what ``medledger init`` writes) and must load again.

Allowed: ConfigError."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fuzz.common import ROOT
from ledger.errors import ConfigError
from node.config import load_config, render_config

ALLOWED = (ConfigError,)
_directory = tempfile.TemporaryDirectory(prefix="medledger-fuzz-config-")
_path = Path(_directory.name) / "node.toml"
_rendered = Path(_directory.name) / "rendered.toml"


def _environment(data: bytes) -> dict[str, str]:
    environ = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        name, _, value = line.partition("=")
        environ[f"MEDLEDGER_{name.upper()}"] = value
    return environ


def one_input(data: bytes) -> None:
    text, _, env_part = data.partition(b"\x00")
    environ = _environment(env_part)
    _path.write_bytes(text)
    try:
        config = load_config(_path, environ=environ)
    except ConfigError:
        return
    _rendered.write_text(render_config(config))
    try:
        again = load_config(_rendered, environ={})
    except ConfigError as error:
        message = f"a loaded config renders to one that does not load: {error}"
        raise AssertionError(message) from error
    assert again == config, "render_config does not round-trip"


def seeds() -> dict[str, bytes]:
    found = {f"configs-{path.stem}": path.read_bytes()
             for path in sorted((ROOT / "configs").glob("*.toml"))
             if path.stem in ("devnet", "production")}
    found["minimal"] = b"[node]\ndata_dir = \"data\"\n"
    found["env-override"] = (b"[rpc]\nport = 1\n"
                             b"\x00RPC_PORT=8545\nBLOCK_MAX_TXS=5\nP2P_BOOTSTRAP=a,b")
    found["section-scalar"] = b"node = 5\n"
    found["unknown-key"] = b"[block]\nmax_tx = 1\n"
    found["empty"] = b""
    return found




def regressions() -> dict[str, bytes]:
    """Inputs that once escaped as untyped errors (kept as corpus files and suite cases)."""
    return {
        # TypeError in _section: a section that is not a table
        "section-scalar": b"node = 5\n",
        # UnicodeDecodeError from read_text
        "not-utf8": b"[no\x94\x94\x94",
        # render_config wrote a NUL (and quotes, backslashes) raw: not TOML any more
        "render-control-character": b'[node]\ndata_dir = "a\\u0000b\\"c\\\\"\n',
        "render-env-control-character": b"[rpc]\x00NODE_DATA_DIR=x\x01y\nP2P_BOOTSTRAP=\"q\x7f",
        # ValueError from tomllib: an integer of over 4300 digits
        "huge-integer": b"[rpc]\nport = " + b"9" * 5000 + b"\n",
        # ValueError from int(): "²".isdigit() is True
        "env-superscript-digit": "\x00RPC_PORT=²".encode(),
        "env-huge-integer": b"\x00RPC_PORT=" + b"9" * 5000,
    }
