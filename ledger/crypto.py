"""Hashing and domain-separated Ed25519 signatures (PyNaCl / libsodium).

Every signature covers ``domain || 0x00 || message`` where ``message`` is canonical bytes
that themselves carry the chain id. A tx signature can therefore never be replayed as a
block signature, nor a signature made for one chain on another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.signing

DOMAIN_TX = b"medledger/tx/v1"
DOMAIN_BLOCK = b"medledger/block/v1"

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
HASH_SIZE = 32
SEED_SIZE = 32

_sha256 = hashlib.sha256
_sign_open = nacl.bindings.crypto_sign_open
_BadSignature = nacl.exceptions.BadSignatureError


def sha256(data: bytes) -> bytes:
    return _sha256(data).digest()


def signing_message(domain: bytes, message: bytes) -> bytes:
    return domain + b"\x00" + message


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key, held as its 32-byte seed."""

    seed: bytes

    def __post_init__(self) -> None:
        assert len(self.seed) == SEED_SIZE, "an Ed25519 seed is 32 bytes"

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def _key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.seed)

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def sign(self, domain: bytes, message: bytes) -> bytes:
        return bytes(self._key.sign(signing_message(domain, message)).signature)

    def __repr__(self) -> str:  # never print a secret
        return f"SigningKey(public_key={self.public_key.hex()})"


def verify(domain: bytes, public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is ``public_key``'s signature of ``message`` under ``domain``.

    libsodium's strict verification rejects non-canonical signatures and small-order keys,
    so a valid signature cannot be mutated into another valid one.
    """
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        _sign_open(signature + domain + b"\x00" + message, public_key)
    except (_BadSignature, ValueError):
        return False
    return True
