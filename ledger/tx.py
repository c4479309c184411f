"""The signed transaction envelope.

Wire form (canonical msgpack array, see :mod:`ledger.codec`)::

    [version, chain_id, type, signer, nonce, body, signature]

The signature is Ed25519 by ``signer`` over ``b"medledger/tx/v1" || 0x00 || payload`` where
``payload`` is the canonical encoding of the first six fields as an array. Because the
encoding is canonical, ``payload`` is a slice of the raw bytes (no re-encoding on verify).
The tx id is SHA-256 of the whole raw encoding; canonical decoding and libsodium's strict
signature check leave no second encoding of the same transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ledger import limits
from ledger.bodies import BODY_CLASSES
from ledger.codec import (
    UINT64_MAX,
    Bytes,
    Enum,
    FieldType,
    Identifier,
    Struct,
    UInt,
    decode_tree,
    encode_tree,
)
from ledger.crypto import DOMAIN_TX, PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey, verify
from ledger.errors import DecodeError
from ledger.txtypes import TxType

TX_VERSION = 1
CHAIN_ID_LENGTH_MAX = 64

_sha256 = hashlib.sha256


def tx_id_of(raw: bytes) -> bytes:
    """A tx's id: SHA-256 of its canonical bytes (the one definition; decoding is not
    needed to know it)."""
    return _sha256(raw).digest()


_VERSION = UInt(minimum=TX_VERSION, maximum=TX_VERSION)
_CHAIN_ID = Identifier(CHAIN_ID_LENGTH_MAX)
_TYPE = Enum(TxType)
_SIGNER = Bytes(PUBLIC_KEY_SIZE)
_NONCE = UInt()
_SIGNATURE = Bytes(SIGNATURE_SIZE)

# Canonical msgpack: fixarray(7) header, fixarray(6) for the payload, bin8 of 64 bytes.
_ENVELOPE_HEADER = 0x97
_PAYLOAD_HEADER = b"\x96"
_SIGNATURE_TAIL_SIZE = 2 + SIGNATURE_SIZE


def body_class(tx_type: TxType) -> type[Struct]:
    return BODY_CLASSES[tx_type]


@dataclass(frozen=True, slots=True)
class Transaction:
    """A decoded, canonical transaction. ``raw`` is exactly what was signed and hashed.

    The body is always checked strictly when the bytes are decoded. It is built (as its
    Struct) either then, or, when the caller asked for a lazy body (the stateless check:
    the mempool never reads bodies), on first access.
    """

    version: int
    chain_id: str
    type: TxType
    signer: bytes
    nonce: int
    signature: bytes
    raw: bytes
    tx_id: bytes
    decoded_body: Struct | None = field(default=None, compare=False, repr=False)
    # The checked msgpack tree of the body, kept until the body is built.
    body_wire: Any = field(default=None, compare=False, repr=False)

    @property
    def body(self) -> Struct:
        body = self.decoded_body
        if body is None:
            tree = self.body_wire
            if tree is None:
                tree = decode_tree(self.raw, size_bytes_max=limits.TX_SIZE_BYTES_MAX)[5]
            try:
                body = BODY_CLASSES[self.type].from_wire(tree)
            except DecodeError as error:
                raise error.within("Transaction.body") from None
            _set_decoded_body(self, body)
            _set_body_wire(self, None)
        return body

    @property
    def payload(self) -> bytes:
        """The signed bytes (before the domain tag)."""
        return _PAYLOAD_HEADER + self.raw[1:-_SIGNATURE_TAIL_SIZE]

    def signature_valid(self) -> bool:
        return verify(DOMAIN_TX, self.signer, self.payload, self.signature)


def _payload_tree(
    chain_id: str, tx_type: TxType, signer: bytes, nonce: int, body: Struct
) -> list[Any]:
    return [TX_VERSION, chain_id, int(tx_type), signer, nonce, body.to_wire()]


def sign_transaction(
    key: SigningKey, *, chain_id: str, tx_type: TxType, nonce: int, body: Struct
) -> Transaction:
    assert isinstance(body, body_class(tx_type)), "body does not match the tx type"
    signer = key.public_key
    tree = _payload_tree(chain_id, tx_type, signer, nonce, body)
    payload = encode_tree(tree)
    signature = key.sign(DOMAIN_TX, payload)
    tree.append(signature)
    raw = encode_tree(tree)
    assert raw[1:-_SIGNATURE_TAIL_SIZE] == payload[1:]
    # Decoding what we signed checks every field against its schema (catches a bad body).
    return decode_transaction(raw)


def decode_transaction(raw: bytes, *, lazy_body: bool = False) -> Transaction:
    """Strictly decode one transaction (no signature check: see :mod:`ledger.validation`).

    With ``lazy_body`` the body is checked just as strictly but built on first access.
    """
    tree = decode_tree(raw, size_bytes_max=limits.TX_SIZE_BYTES_MAX, what="Transaction")
    if type(tree) is not list or len(tree) != 7:
        count = len(tree) if type(tree) is list else type(tree).__name__
        raise DecodeError(f"Transaction: expected an array of 7 fields, got {count}")
    assert raw[0] == _ENVELOPE_HEADER
    version, chain_id, type_code, signer, nonce, body_tree, signature = tree
    # Inline checks (this is every tx's hot path); on failure the field's own from_wire
    # runs again to raise the precise error.
    tx_type = _TX_TYPES.get(type_code) if type(type_code) is int else None
    if (
        type(version) is not int
        or version != TX_VERSION
        or type(chain_id) is not str
        or not 1 <= len(chain_id) <= CHAIN_ID_LENGTH_MAX
        or _chain_id_match(chain_id) is None
        or tx_type is None
        or type(signer) is not bytes
        or len(signer) != PUBLIC_KEY_SIZE
        or type(nonce) is not int
        or not 0 <= nonce <= UINT64_MAX
        or type(signature) is not bytes
        or len(signature) != SIGNATURE_SIZE
    ):
        _raise_envelope_error(tree)
    assert tx_type is not None
    body: Struct | None = None
    try:
        if lazy_body:
            BODY_CLASSES[tx_type].check_wire(body_tree)
        else:
            body = BODY_CLASSES[tx_type].from_wire(body_tree)
    except DecodeError as error:
        raise error.within("Transaction.body") from None
    transaction = _allocate(Transaction)
    for setter, value in zip(
        _TRANSACTION_SETTERS,
        (
            version, chain_id, tx_type, signer, nonce, signature, raw, tx_id_of(raw),
            body, None if body is not None else body_tree,
        ),
        strict=True,
    ):
        setter(transaction, value)
    return transaction


def envelope_of_checked(raw: bytes) -> Transaction:
    """Rebuild the envelope of a tx whose bytes were already strictly checked elsewhere
    (a validation worker returned OK for exactly these bytes): no checks, lazy body."""
    version, chain_id, type_code, signer, nonce, _, signature = _unpackb(raw, raw=False)
    transaction = _allocate(Transaction)
    for setter, value in zip(
        _TRANSACTION_SETTERS,
        (
            version, chain_id, _TX_TYPES[type_code], signer, nonce, signature, raw,
            tx_id_of(raw), None, None,
        ),
        strict=True,
    ):
        setter(transaction, value)
    return transaction


_TX_TYPES = {int(member): member for member in TxType}
assert _CHAIN_ID.pattern is not None
_chain_id_match = _CHAIN_ID.pattern.fullmatch
_allocate = object.__new__
_TRANSACTION_SETTERS = tuple(
    Transaction.__dict__[name].__set__
    for name in (
        "version", "chain_id", "type", "signer", "nonce", "signature", "raw", "tx_id",
        "decoded_body", "body_wire",
    )
)
_set_decoded_body = Transaction.__dict__["decoded_body"].__set__
_set_body_wire = Transaction.__dict__["body_wire"].__set__
_unpackb = msgpack.unpackb
_ENVELOPE_FIELDS: tuple[tuple[str, FieldType[Any]], ...] = (
    ("version", _VERSION),
    ("chain_id", _CHAIN_ID),
    ("type", _TYPE),
    ("signer", _SIGNER),
    ("nonce", _NONCE),
    ("signature", _SIGNATURE),
)


def _raise_envelope_error(tree: list[Any]) -> None:
    names = ("version", "chain_id", "type", "signer", "nonce", "body", "signature")
    values = dict(zip(names, tree, strict=True))
    for name, field_type in _ENVELOPE_FIELDS:
        try:
            field_type.from_wire(values[name])
        except DecodeError as error:
            raise error.within(f"Transaction.{name}") from None
    raise AssertionError("inline envelope check and from_wire disagree")
