"""Structs to and from JSON by their schema: bytes as 0x-hex, enums by name.

Used where people write values by hand (genesis files, ``medledger tx submit --body``);
the canonical codec checks every value strictly after conversion.
"""

from __future__ import annotations

from typing import Any

from ledger import codec
from ledger.codec import Struct
from ledger.errors import DecodeError


def value_from_json(field_type: Any, value: Any, path: str) -> Any:
    """Turn a JSON value into the field's Python value (bytes from 0x-hex, enums from
    names); the codec then checks it strictly when the tx is signed."""
    if isinstance(field_type, codec.Bytes):
        if not isinstance(value, str) or not value.startswith("0x"):
            raise DecodeError(f"{path}: expected 0x-hex bytes", "")
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            raise DecodeError(f"{path}: not hex", "") from None
    if isinstance(field_type, codec.Enum):
        if isinstance(value, str):
            try:
                return field_type.enum_class[value.upper()]
            except KeyError:
                names = ", ".join(member.name for member in field_type.enum_class)
                raise DecodeError(f"{path}: {value!r} is not one of {names}", "") from None
        return value
    if isinstance(field_type, codec.ListOf):
        if not isinstance(value, list):
            raise DecodeError(f"{path}: expected a list", "")
        return tuple(value_from_json(field_type.item, item, f"{path}[{index}]")
                     for index, item in enumerate(value))
    if isinstance(field_type, codec.Optional):
        return None if value is None else value_from_json(field_type.inner, value, path)
    if isinstance(field_type, codec.Nested):
        return struct_from_json(field_type.struct_class, value, path)
    return value


def struct_from_json(struct_class: type[Struct], document: Any, path: str = "body") -> Struct:
    if not isinstance(document, dict):
        raise DecodeError(f"{path}: expected an object with the fields of "
                          f"{struct_class.__name__}", "")
    names = [name for name, _ in struct_class.SCHEMA]
    unknown = sorted(set(document) - set(names))
    missing = [name for name in names if name not in document]
    if unknown or missing:
        raise DecodeError(f"{path}: unknown fields {unknown}, missing fields {missing} "
                          f"(fields of {struct_class.__name__}: {names})", "")
    values = [value_from_json(field_type, document[name], f"{path}.{name}")
              for name, field_type in struct_class.SCHEMA]
    value = struct_class(*values)
    return codec.decode(struct_class, value.encode(), size_bytes_max=1 << 20)


def value_to_json(field_type: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(field_type, codec.Bytes):
        return "0x" + value.hex()
    if isinstance(field_type, codec.Enum):
        return value.name
    if isinstance(field_type, codec.ListOf):
        return [value_to_json(field_type.item, item) for item in value]
    if isinstance(field_type, codec.Optional):
        return value_to_json(field_type.inner, value)
    if isinstance(field_type, codec.Nested):
        return struct_to_json(value)
    return value


def struct_to_json(value: Struct) -> dict[str, Any]:
    return {
        name: value_to_json(field_type, getattr(value, name))
        for name, field_type in value.SCHEMA
    }
