"""The record privacy scheme of DOMAIN.md, client side.

Per record version:

1. a fresh AES-256-GCM data key encrypts the record, associated data ``record_id|version``
   (the ciphertext is ``nonce (12 B) || ciphertext || tag``); the custodian stores it,
   addressed by its SHA-256, which is what the ledger sees;
2. for each authorised reader the data key is sealed with HPKE (RFC 9180, base mode,
   DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM) to the reader's X25519 key, info
   ``medledger/v1/dek|record_id|version|recipient_key_id``; the wrap (``enc || ct``) stays
   off the ledger (the custodian's purgeable key store), the ledger keeps its hash;
3. a reader holding a wrap unseals the data key and opens the record.

HPKE implementation: cryptography's ``hazmat.primitives.hpke`` (OpenSSL). Measured on this
machine (2 cores, Python 3.11.7, medians of 5 x 300): seal 109 µs and open 75 µs per wrap
with cryptography 50.0.2, against 1,107 µs and 974 µs with pycryptodome 4.4.0's
``Crypto.Protocol.HPKE``: ten times faster, and the two interoperate (a test opens one's
wraps with the other).

Guessable values (record numbers, service lines) never go to the ledger plainly hashed:
:func:`keyed_hash` is HMAC-SHA256 under a key the parties share.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.codec import encode_tree
from ledger.sdk.errors import RecordDecryptionError
from ledger.sdk.keys import EncryptionKey, x25519_public_key

DATA_KEY_SIZE = 32  # AES-256
GCM_NONCE_SIZE = 12
GCM_TAG_SIZE = 16
HPKE_ENC_SIZE = 32  # DHKEM(X25519) encapsulated key
WRAP_SIZE = HPKE_ENC_SIZE + DATA_KEY_SIZE + GCM_TAG_SIZE
WRAP_INFO_PREFIX = "medledger/v1/dek"
KEY_ID_HEX_LENGTH = 32  # 128 bits of SHA-256: names a key, is not a secret

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_WRAP_HASH_DOMAIN = b"medledger/v1/wrap\x00"
_KEYED_HASH_DOMAIN = b"medledger/v1/keyed-hash\x00"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def key_id(public_key: bytes) -> str:
    """The recipient key id in a wrap's info: hex of the SHA-256 of the X25519 public key."""
    return sha256(public_key).hex()[:KEY_ID_HEX_LENGTH]


def associated_data(record_id: str, version: int) -> bytes:
    return f"{record_id}|{version}".encode()


def wrap_info(record_id: str, version: int, recipient_key_id: str) -> bytes:
    return f"{WRAP_INFO_PREFIX}|{record_id}|{version}|{recipient_key_id}".encode()


# ---- keyed hashes -------------------------------------------------------------------------


def keyed_hash(key: bytes, label: str, *parts: str | bytes | int) -> bytes:
    """HMAC-SHA256 under ``key`` of the canonical encoding of ``[label, *parts]``: parts
    cannot run into each other, and without the key the value cannot be guessed."""
    assert len(key) >= 16, "a keyed hash needs a real key"
    message = _KEYED_HASH_DOMAIN + encode_tree([label, *parts])
    return hmac.new(key, message, hashlib.sha256).digest()


def pseudonym(key: bytes, prefix: str, value: str) -> str:
    """A stable pseudonymous id (``prefix-`` and 96 bits of keyed hash) for a guessable
    value such as a medical record number."""
    return f"{prefix}-{keyed_hash(key, 'pseudonym', prefix, value).hex()[:24]}"


def claim_duplicate_key(
    key: bytes,
    *,
    patient: str,
    service_date: str,
    procedure: str,
    modifiers: Sequence[str] = (),
    units: int = 1,
) -> bytes:
    """The duplicate key of a claim line: the same service billed twice has the same key,
    yet nobody without ``key`` can test a guess of patient, date and procedure."""
    return keyed_hash(
        key, "claim-duplicate", patient, service_date, procedure, "+".join(modifiers), units
    )


# ---- records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """One encrypted record version. ``data_key`` is secret: it goes to the custodian's key
    store and into wraps, never to the ledger."""

    record_id: str
    version: int
    data_key: bytes
    ciphertext: bytes

    @property
    def ciphertext_hash(self) -> bytes:
        return sha256(self.ciphertext)

    @property
    def ciphertext_size(self) -> int:
        return len(self.ciphertext)

    def __repr__(self) -> str:  # never print the data key
        return f"SealedRecord({self.record_id!r}, {self.version}, {self.ciphertext_size} B)"


def seal_record(plaintext: bytes, *, record_id: str, version: int) -> SealedRecord:
    data_key = AESGCM.generate_key(bit_length=DATA_KEY_SIZE * 8)
    nonce = os.urandom(GCM_NONCE_SIZE)
    body = AESGCM(data_key).encrypt(nonce, plaintext, associated_data(record_id, version))
    return SealedRecord(record_id, version, data_key, nonce + body)


def open_record(ciphertext: bytes, data_key: bytes, *, record_id: str, version: int) -> bytes:
    if len(ciphertext) < GCM_NONCE_SIZE + GCM_TAG_SIZE or len(data_key) != DATA_KEY_SIZE:
        raise RecordDecryptionError("ciphertext or data key has the wrong size")
    nonce, body = ciphertext[:GCM_NONCE_SIZE], ciphertext[GCM_NONCE_SIZE:]
    try:
        return AESGCM(data_key).decrypt(nonce, body, associated_data(record_id, version))
    except InvalidTag:
        raise RecordDecryptionError(
            f"{record_id} v{version}: the ciphertext does not authenticate"
        ) from None


@dataclass(frozen=True, slots=True)
class KeyWrap:
    """A record version's data key sealed for one recipient (kept off the ledger)."""

    record_id: str
    version: int
    recipient: str  # party id (or the custodian's org id)
    recipient_key_id: str
    sealed: bytes  # HPKE enc || ciphertext

    @property
    def wrap_hash(self) -> bytes:
        """What the ledger records for this wrap (ANCHOR_RECORD, KEY_GRANT)."""
        return sha256(_WRAP_HASH_DOMAIN + self.sealed)


def wrap_data_key(
    data_key: bytes,
    *,
    record_id: str,
    version: int,
    recipient: str,
    recipient_public_key: bytes,
) -> KeyWrap:
    assert len(data_key) == DATA_KEY_SIZE
    recipient_key_id = key_id(recipient_public_key)
    sealed = _SUITE.encrypt(
        data_key,
        x25519_public_key(recipient_public_key),
        info=wrap_info(record_id, version, recipient_key_id),
    )
    assert len(sealed) == WRAP_SIZE
    return KeyWrap(record_id, version, recipient, recipient_key_id, sealed)


def unwrap_data_key(wrap: KeyWrap, key: EncryptionKey) -> bytes:
    """The data key, if ``key`` is the wrap's recipient key (else RecordDecryptionError)."""
    if key_id(key.public_key) != wrap.recipient_key_id:
        raise RecordDecryptionError("the wrap is sealed for another key")
    try:
        return _SUITE.decrypt(
            wrap.sealed,
            key.private_key,
            info=wrap_info(wrap.record_id, wrap.version, wrap.recipient_key_id),
        )
    except (InvalidTag, ValueError):
        raise RecordDecryptionError(
            f"{wrap.record_id} v{wrap.version}: the wrap does not open"
        ) from None


def decrypt_record(ciphertext: bytes, wrap: KeyWrap, key: EncryptionKey) -> bytes:
    """Open a record version with the reader's own wrap."""
    data_key = unwrap_data_key(wrap, key)
    return open_record(ciphertext, data_key, record_id=wrap.record_id, version=wrap.version)


def wrap_for_readers(
    sealed: SealedRecord, readers: Sequence[tuple[str, bytes]]
) -> list[KeyWrap]:
    """One wrap per (recipient id, X25519 public key)."""
    return [
        wrap_data_key(
            sealed.data_key,
            record_id=sealed.record_id,
            version=sealed.version,
            recipient=recipient,
            recipient_public_key=public_key,
        )
        for recipient, public_key in readers
    ]
