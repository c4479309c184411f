"""Client-side keys: Ed25519 signing keys, X25519 encryption keys, nonce counters.

Keys are generated from ``os.urandom`` or derived deterministically from a seed (the demo
and tests derive them, so genesis and clients agree without sharing files). A derived key is
HMAC-SHA256(seed, label): distinct labels give independent keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ledger.crypto import SEED_SIZE, SigningKey

X25519_KEY_SIZE = 32


def derive_seed(seed: bytes, label: str) -> bytes:
    """A 32-byte secret for ``label``, derived from ``seed``."""
    return hmac.new(seed, b"medledger/v1/derive\x00" + label.encode(), hashlib.sha256).digest()


def derive_signing_key(seed: bytes, label: str) -> SigningKey:
    return SigningKey(derive_seed(seed, "sign/" + label))


@dataclass(frozen=True, slots=True)
class EncryptionKey:
    """An X25519 private key (HPKE recipient), held as its 32 raw bytes."""

    secret: bytes

    def __post_init__(self) -> None:
        assert len(self.secret) == X25519_KEY_SIZE, "an X25519 private key is 32 bytes"

    @classmethod
    def generate(cls) -> EncryptionKey:
        return cls(os.urandom(X25519_KEY_SIZE))

    @classmethod
    def derive(cls, seed: bytes, label: str) -> EncryptionKey:
        return cls(derive_seed(seed, "encrypt/" + label))

    @property
    def private_key(self) -> X25519PrivateKey:
        return X25519PrivateKey.from_private_bytes(self.secret)

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes_raw()

    def __repr__(self) -> str:  # never print a secret
        return f"EncryptionKey(public_key={self.public_key.hex()})"


def x25519_public_key(raw: bytes) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, slots=True)
class PartyKeys:
    """A party's keys: it signs txs with ``signing`` and opens key wraps with
    ``encryption``."""

    party_id: str
    signing: SigningKey
    encryption: EncryptionKey

    @classmethod
    def generate(cls, party_id: str) -> PartyKeys:
        return cls(party_id, SigningKey(os.urandom(SEED_SIZE)), EncryptionKey.generate())

    @classmethod
    def derive(cls, party_id: str, seed: bytes) -> PartyKeys:
        return cls(
            party_id,
            derive_signing_key(seed, "party/" + party_id),
            EncryptionKey.derive(seed, "party/" + party_id),
        )


@dataclass(frozen=True, slots=True)
class MemberKeys:
    """A member org's keys: the admin key signs its txs, the node key is its node's
    identity, the encryption key opens the custodian's own wraps."""

    org_id: str
    admin: SigningKey
    node: SigningKey
    encryption: EncryptionKey

    @classmethod
    def generate(cls, org_id: str) -> MemberKeys:
        return cls(
            org_id,
            SigningKey(os.urandom(SEED_SIZE)),
            SigningKey(os.urandom(SEED_SIZE)),
            EncryptionKey.generate(),
        )

    @classmethod
    def derive(cls, org_id: str, seed: bytes) -> MemberKeys:
        return cls(
            org_id,
            derive_signing_key(seed, "admin/" + org_id),
            derive_signing_key(seed, "node/" + org_id),
            EncryptionKey.derive(seed, "member/" + org_id),
        )


class NonceCounter:
    """The nonces of one signing key: each tx takes the next one.

    The ledger accepts a tx only if its nonce is above the key's last used nonce (gaps are
    allowed), so a client that restarts starts from the ledger's ``last_nonce``
    (query ``gov_key``)."""

    __slots__ = ("_last",)

    def __init__(self, last_used: int = 0) -> None:
        assert last_used >= 0
        self._last = last_used

    @property
    def last_used(self) -> int:
        return self._last

    def peek(self) -> int:
        return self._last + 1

    def take(self) -> int:
        self._last += 1
        return self._last

    def skip_to(self, last_used: int) -> None:
        """Never go back: only move forward to what the ledger says was used."""
        self._last = max(self._last, last_used)
