"""JSON views of ledger values, and strict parsing of JSON input, for the RPC edge.

Views are plain ``dict``/``list``/``str``/``int``/``bool``/``None`` trees, ready for
``json.dumps``. The conventions, everywhere:

- bytes are ``0x``-prefixed lowercase hex (``"0x"`` for empty bytes);
- heights, indexes, counts, nonces, amounts and times are JSON integers;
- enum members are their names (``"CONSENT_REVOKE"``, ``"PERMIT"``), with the numeric code
  beside them only where a client may need it (``type_code``, ``code``);
- identifiers are strings.

The parse helpers are the inverse for input: they accept exactly one JSON form per value
(``"0x"`` + lowercase or uppercase hex of an exact or bounded length; integers that are
not bools or floats) and raise :class:`JsonFieldError` naming the offending field, e.g.
``params.height: expected non-negative integer, got float``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ledger.block import Block, BlockHeader
from ledger.codec import Struct
from ledger.errors import DecodeError, RemoteError
from ledger.merkle import MerkleProof
from ledger.results import ResultCode
from ledger.tx import Transaction, decode_transaction

if TYPE_CHECKING:
    from node.api import CertifiedBlock, Handover

# JSON numbers a client may send as integers: the canonical codec's unsigned range.
JSON_INTEGER_MAX = 2**64 - 1
# Quoted in error messages; a longer offending value is cut, so an error never echoes
# a megabyte back to the caller or into the logs.
QUOTED_VALUE_LENGTH_MAX = 40

_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")


class JsonFieldError(RemoteError):
    """A JSON value a client sent does not have the expected form. ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# ---- result codes ------------------------------------------------------------------------

_result_code_names: dict[int, str] = {int(code): code.name for code in ResultCode}


def register_result_code_names(names: Mapping[int, str]) -> None:
    """Name the application's result codes (100 and up) in views, logs and metrics.

    The stateless codes come from :class:`ledger.results.ResultCode`; the application layer
    registers its own at start-up. Re-registering a code under another name is a bug.
    """
    for code, name in names.items():
        assert code >= 100, "codes below 100 are the stateless ResultCode"
        existing = _result_code_names.setdefault(code, name)
        assert existing == name, f"result code {code} already named {existing}"


def result_code_name(code: int) -> str:
    """``OK``, ``BAD_SIGNATURE``, ... or ``CODE_<n>`` for a code nobody registered."""
    name = _result_code_names.get(code)
    return name if name is not None else f"CODE_{code}"


# ---- views -------------------------------------------------------------------------------


def hex_bytes(value: bytes) -> str:
    return "0x" + value.hex()


def to_json_value(value: Any) -> Any:
    """A JSON-ready form of a value built from the types the ledger uses."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN or Infinity
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    if isinstance(value, Struct):
        return struct_view(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_json_value(getattr(value, field.name))
            for field in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_value(item) for item in value]
    raise TypeError(f"no JSON view for {type(value).__name__}")


def struct_view(value: Struct) -> dict[str, Any]:
    """Any canonical Struct, field by field in schema order."""
    return {name: to_json_value(getattr(value, name)) for name, _ in value.SCHEMA}


def header_view(header: BlockHeader) -> dict[str, Any]:
    return struct_view(header)


def handover_view(handover: Handover) -> dict[str, Any]:
    header = handover.block.header
    return {"height": header.height, "hash": hex_bytes(handover.block.hash),
            "header_raw": hex_bytes(header.encode()),
            "certificate_raw": hex_bytes(handover.certificate.encode()),
            "validators_hash": hex_bytes(header.next_validators_hash),
            "validators": [hex_bytes(key) for key in handover.validators]}


def certified_view(found: CertifiedBlock) -> dict[str, Any]:
    return {**struct_view(found.certificate), "raw": hex_bytes(found.certificate.encode()),
            "validators_hash": hex_bytes(found.validators_hash),
            "validators": [hex_bytes(key) for key in found.validators],
            "in_block": found.in_block}


def proof_view(proof: MerkleProof) -> dict[str, Any]:
    return {
        "index": proof.index,
        "size": proof.size,
        "siblings": [hex_bytes(sibling) for sibling in proof.siblings],
    }


def transaction_view(tx: Transaction) -> dict[str, Any]:
    return {
        "tx_id": hex_bytes(tx.tx_id),
        "version": tx.version,
        "chain_id": tx.chain_id,
        "type": tx.type.name,
        "type_code": int(tx.type),
        "signer": hex_bytes(tx.signer),
        "nonce": tx.nonce,
        "body": struct_view(tx.body),
        "signature": hex_bytes(tx.signature),
    }


def raw_transaction_view(raw: bytes) -> dict[str, Any]:
    """The decoded view of raw tx bytes. Bytes that do not decode (possible only for an
    application that stored them unchecked) get their id and the decode error instead."""
    try:
        return transaction_view(decode_transaction(raw))
    except DecodeError as error:
        return {"tx_id": hex_bytes(hashlib.sha256(raw).digest()), "decode_error": str(error)}


def block_view(block: Block, *, full: bool = False) -> dict[str, Any]:
    """Hash, header, proposer signature and tx ids; with ``full``, every tx raw and decoded."""
    header = block.header
    view: dict[str, Any] = {
        "hash": hex_bytes(block.hash),
        "height": header.height,
        "header": header_view(header),
        "header_raw": hex_bytes(header.encode()),  # what the hash and certificate cover
        "signature": hex_bytes(block.signature),
        "tx_ids": [hex_bytes(tx_id) for tx_id in block.tx_ids()],
        "certificate": None if block.certificate is None else struct_view(block.certificate),
    }
    if full:
        view["txs"] = [
            {"raw": hex_bytes(raw), **raw_transaction_view(raw)} for raw in block.txs
        ]
    return view


# ---- strict parsing ----------------------------------------------------------------------


def _quote(value: Any) -> str:
    text = repr(value)
    if len(text) > QUOTED_VALUE_LENGTH_MAX:
        text = text[: QUOTED_VALUE_LENGTH_MAX - 3] + "..."
    return text


def json_type_name(value: Any) -> str:
    """The JSON name of a parsed JSON value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def parse_hex(
    value: Any, path: str, *, size: int | None = None, size_max: int | None = None
) -> bytes:
    """``0x``-prefixed hex of exactly ``size`` bytes, or of at most ``size_max`` bytes."""
    assert (size is None) != (size_max is None), "give exactly one of size and size_max"
    if type(value) is not str:
        raise JsonFieldError(path, f"expected 0x-prefixed hex string, got {json_type_name(value)}")
    if not value.startswith("0x"):
        raise JsonFieldError(path, f"expected 0x-prefixed hex string, got {_quote(value)}")
    digits = len(value) - 2
    limit = size if size is not None else size_max
    assert limit is not None
    # Check the length before looking at the digits: a huge string costs nothing more.
    if size is not None and digits != 2 * size:
        raise JsonFieldError(path, f"expected {size} bytes ({2 * size} hex digits), got {digits}")
    if digits > 2 * limit:
        raise JsonFieldError(path, f"{digits // 2} bytes exceeds maximum {limit}")
    if digits % 2 or _HEX_DIGITS.fullmatch(value, 2) is None:
        raise JsonFieldError(path, "expected an even number of hex digits after 0x")
    return bytes.fromhex(value[2:])


def parse_non_negative_int(value: Any, path: str, *, maximum: int = JSON_INTEGER_MAX) -> int:
    if type(value) is not int:
        raise JsonFieldError(
            path, f"expected non-negative integer, got {json_type_name(value)}"
        )
    if value < 0:
        raise JsonFieldError(path, f"expected non-negative integer, got {value}")
    if value > maximum:
        raise JsonFieldError(path, f"{value} exceeds maximum {maximum}")
    return value


def parse_bool(value: Any, path: str) -> bool:
    if type(value) is not bool:
        raise JsonFieldError(path, f"expected boolean, got {json_type_name(value)}")
    return value


def parse_string(
    value: Any,
    path: str,
    *,
    length_max: int,
    length_min: int = 0,
    pattern: re.Pattern[str] | None = None,
) -> str:
    if type(value) is not str:
        raise JsonFieldError(path, f"expected string, got {json_type_name(value)}")
    if not length_min <= len(value) <= length_max:
        raise JsonFieldError(
            path, f"length {len(value)} is outside [{length_min}, {length_max}]"
        )
    if pattern is not None and pattern.fullmatch(value) is None:
        raise JsonFieldError(path, f"{_quote(value)} does not match {pattern.pattern}")
    return value


def parse_choice(value: Any, path: str, choices: Sequence[str]) -> str:
    if type(value) is not str or value not in choices:
        raise JsonFieldError(path, f"expected one of {', '.join(choices)}, got {_quote(value)}")
    return value


def parse_array(value: Any, path: str, *, length_max: int, length_min: int = 0) -> list[Any]:
    if type(value) is not list:
        raise JsonFieldError(path, f"expected array, got {json_type_name(value)}")
    if not length_min <= len(value) <= length_max:
        raise JsonFieldError(
            path, f"{len(value)} items is outside [{length_min}, {length_max}]"
        )
    return value
