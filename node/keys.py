"""Node key files and the ids derived from a node's public key."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ledger.crypto import SEED_SIZE, SigningKey
from ledger.errors import ConfigError


def raft_node_id(node_public_key: bytes) -> int:
    """Raft names nodes by non-zero integers: the first 8 bytes of SHA-256 of the node's
    public key, so every node derives the same id from genesis without a registry."""
    value = int.from_bytes(hashlib.sha256(b"medledger/raft-id\x00" + node_public_key).digest()[:8])
    return value or 1


def write_key_file(path: Path, key: SigningKey) -> None:
    """Write the seed as one hex line, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.seed.hex() + "\n")


def read_key_file(path: Path) -> SigningKey:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"node key file {path} does not exist (run `medledger init`)") from None
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"node key file {path} is not hex") from None
    if len(seed) != SEED_SIZE:
        raise ConfigError(f"node key file {path} holds {len(seed)} bytes, expected {SEED_SIZE}")
    return SigningKey(seed)
