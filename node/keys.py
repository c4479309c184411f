"""Key files, hex from people, and the ids derived from a node's public key.

A key file (a node key or a member's admin key) holds an Ed25519 seed as one line of hex,
readable by its owner only. Hex that people type or paste (key files, members files,
command-line flags) is accepted with or without a ``0x`` prefix.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ledger.crypto import HASH_SIZE, PUBLIC_KEY_SIZE, SEED_SIZE, SigningKey
from ledger.errors import ConfigError

KEY_FILE_MODE = 0o600


def raft_node_id(node_public_key: bytes) -> int:
    """Raft names nodes by non-zero integers: the first 8 bytes of SHA-256 of the node's
    public key, so every node derives the same id from genesis without a registry."""
    value = int.from_bytes(hashlib.sha256(b"medledger/raft-id\x00" + node_public_key).digest()[:8])
    return value or 1


def hex_from_user(text: str, where: str, *, size: int | None = None,
                  secret: bool = False) -> bytes:
    """Bytes from hex written by a person, ``0x`` prefix optional; a ConfigError names
    ``where`` the value came from (a flag, a member, a file) and what is wrong, and
    quotes the value unless it is ``secret``."""
    stripped = text.strip()
    digits = stripped[2:] if stripped[:2] in ("0x", "0X") else stripped
    try:
        value = bytes.fromhex(digits)
    except ValueError:
        quoted = "" if secret else repr(stripped[:77] + ("..." if len(stripped) > 77 else ""))
        subject = f"{where}: {quoted}" if quoted else where
        raise ConfigError(f"{subject} is not hex (0x-prefixed or not)") from None
    if size is not None and len(value) != size:
        raise ConfigError(f"{where}: {len(value)} bytes of hex, expected {size}")
    return value


def public_key_from_user(text: str, where: str) -> bytes:
    return hex_from_user(text, where, size=PUBLIC_KEY_SIZE)


def hash_from_user(text: str, where: str) -> bytes:
    return hex_from_user(text, where, size=HASH_SIZE)


def write_key_file(path: Path, key: SigningKey, *, overwrite: bool = False) -> None:
    """Write the seed as one hex line, readable by the owner only. An existing file is
    kept (FileExistsError) unless ``overwrite``, which replaces it in one rename, so the
    file is never readable by others nor half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".tmp") if overwrite else path
    if overwrite:
        target.unlink(missing_ok=True)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.seed.hex() + "\n")
    if overwrite:
        os.replace(target, path)


def read_key_file(path: Path, *, role: str = "node key file",
                  hint: str = "run `medledger init`") -> SigningKey:
    """The key in ``path``; a ConfigError names the file by its ``role`` (and, when it is
    missing, gives the ``hint`` that makes one)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{role} {path} does not exist ({hint})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{role} {path} cannot be read: {error}") from None
    seed = hex_from_user(text, f"{role} {path}", secret=True)
    if len(seed) != SEED_SIZE:
        raise ConfigError(f"{role} {path} holds {len(seed)} bytes, expected {SEED_SIZE}")
    return SigningKey(seed)
