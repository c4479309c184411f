"""Canonical binary encoding: msgpack of fixed-order arrays, decoded strictly.

Every value that is hashed or signed has exactly one encoding. A value is a
:class:`Struct` (a frozen dataclass with a ``SCHEMA`` of typed fields) and is encoded as a
msgpack array of its fields in schema order. Maps and floats never appear.

Decoding is strict, in three steps:

1. msgpack parses the bytes; truncated input, trailing bytes and malformed input fail;
2. the parsed tree is re-encoded and compared with the input, so a non-minimal integer,
   a ``str16`` where ``fixstr`` suffices, a float32, ... is rejected as non-canonical;
3. the tree is checked against the schema: exact field count, exact types (a bool is not
   an integer, a str is not bytes), ranges, lengths and enum members.

Errors name the path of the offending field, e.g. ``Transaction.body.lines[3].charge``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

import msgpack

from ledger import limits
from ledger.errors import DecodeError

T = TypeVar("T")
S = TypeVar("S", bound="Struct")
E = TypeVar("E", bound=enum.IntEnum)

UINT64_MAX = 2**64 - 1

_packb = msgpack.packb
_unpackb = msgpack.unpackb


def _type_name(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


class FieldType(Protocol[T]):
    """How one field goes to and comes from its msgpack form."""

    def to_wire(self, value: T) -> Any: ...

    def from_wire(self, value: Any, path: str) -> T: ...


class UInt:
    """An unsigned integer in ``[minimum, maximum]`` (default 0 … 2**64-1)."""

    __slots__ = ("minimum", "maximum")

    def __init__(self, *, minimum: int = 0, maximum: int = UINT64_MAX) -> None:
        assert 0 <= minimum <= maximum <= UINT64_MAX
        self.minimum = minimum
        self.maximum = maximum

    def to_wire(self, value: int) -> int:
        return value

    def from_wire(self, value: Any, path: str) -> int:
        if type(value) is not int:
            raise DecodeError(f"{path}: expected unsigned integer, got {_type_name(value)}")
        if not self.minimum <= value <= self.maximum:
            raise DecodeError(
                f"{path}: {value} is outside [{self.minimum}, {self.maximum}]"
            )
        return value


class Bool:
    __slots__ = ()

    def to_wire(self, value: bool) -> bool:
        return value

    def from_wire(self, value: Any, path: str) -> bool:
        if type(value) is not bool:
            raise DecodeError(f"{path}: expected bool, got {_type_name(value)}")
        return value


class Bytes:
    """A byte string of exactly ``size`` bytes, or of at most ``maximum`` bytes."""

    __slots__ = ("size", "maximum")

    def __init__(self, size: int | None = None, *, maximum: int = limits.BYTES_LENGTH_MAX):
        self.size = size
        self.maximum = maximum if size is None else size

    def to_wire(self, value: bytes) -> bytes:
        return value

    def from_wire(self, value: Any, path: str) -> bytes:
        if type(value) is not bytes:
            raise DecodeError(f"{path}: expected bytes, got {_type_name(value)}")
        if self.size is not None:
            if len(value) != self.size:
                raise DecodeError(f"{path}: expected {self.size} bytes, got {len(value)}")
        elif len(value) > self.maximum:
            raise DecodeError(f"{path}: {len(value)} bytes exceeds maximum {self.maximum}")
        return value


class Text:
    """A UTF-8 string of at most ``maximum`` characters, optionally matching ``pattern``."""

    __slots__ = ("maximum", "pattern", "minimum")

    def __init__(
        self,
        *,
        maximum: int = limits.TEXT_LENGTH_MAX,
        minimum: int = 0,
        pattern: str | None = None,
    ) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.pattern = re.compile(pattern) if pattern is not None else None

    def to_wire(self, value: str) -> str:
        return value

    def from_wire(self, value: Any, path: str) -> str:
        if type(value) is not str:
            raise DecodeError(f"{path}: expected string, got {_type_name(value)}")
        if not self.minimum <= len(value) <= self.maximum:
            raise DecodeError(
                f"{path}: length {len(value)} is outside [{self.minimum}, {self.maximum}]"
            )
        if self.pattern is not None and self.pattern.fullmatch(value) is None:
            raise DecodeError(f"{path}: {value!r} does not match {self.pattern.pattern}")
        return value


# Identifiers: short, printable, no spaces, so they are safe inside state keys and logs.
IDENTIFIER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@/-]*"


def Identifier(maximum: int = limits.IDENTIFIER_LENGTH_MAX) -> Text:  # noqa: N802
    return Text(maximum=maximum, minimum=1, pattern=IDENTIFIER_PATTERN)


class Enum(Generic[E]):
    """An :class:`enum.IntEnum` member, encoded as its integer value."""

    __slots__ = ("enum_class",)

    def __init__(self, enum_class: type[E]) -> None:
        self.enum_class = enum_class

    def to_wire(self, value: E) -> int:
        return int(value)

    def from_wire(self, value: Any, path: str) -> E:
        if type(value) is not int:
            raise DecodeError(
                f"{path}: expected {self.enum_class.__name__} code, got {_type_name(value)}"
            )
        try:
            return self.enum_class(value)
        except ValueError:
            raise DecodeError(
                f"{path}: {value} is not a valid {self.enum_class.__name__}"
            ) from None


class ListOf(Generic[T]):
    """A list of at most ``maximum`` items of one type (decoded as a tuple)."""

    __slots__ = ("item", "maximum", "minimum")

    def __init__(
        self, item: FieldType[T], *, maximum: int = limits.LIST_LENGTH_MAX, minimum: int = 0
    ) -> None:
        self.item = item
        self.maximum = maximum
        self.minimum = minimum

    def to_wire(self, value: Sequence[T]) -> list[Any]:
        to_wire = self.item.to_wire
        return [to_wire(item) for item in value]

    def from_wire(self, value: Any, path: str) -> tuple[T, ...]:
        if type(value) is not list:
            raise DecodeError(f"{path}: expected array, got {_type_name(value)}")
        if not self.minimum <= len(value) <= self.maximum:
            raise DecodeError(
                f"{path}: {len(value)} items is outside [{self.minimum}, {self.maximum}]"
            )
        from_wire = self.item.from_wire
        return tuple(from_wire(item, f"{path}[{index}]") for index, item in enumerate(value))


class Optional(Generic[T]):
    """Either nil or a value of the inner type."""

    __slots__ = ("inner",)

    def __init__(self, inner: FieldType[T]) -> None:
        self.inner = inner

    def to_wire(self, value: T | None) -> Any:
        return None if value is None else self.inner.to_wire(value)

    def from_wire(self, value: Any, path: str) -> T | None:
        return None if value is None else self.inner.from_wire(value, path)


class Nested(Generic[S]):
    """A field holding another :class:`Struct`."""

    __slots__ = ("struct_class",)

    def __init__(self, struct_class: type[S]) -> None:
        self.struct_class = struct_class

    def to_wire(self, value: S) -> list[Any]:
        return value.to_wire()

    def from_wire(self, value: Any, path: str) -> S:
        return self.struct_class.from_wire(value, path)


class Struct:
    """Base of every encodable value: subclass as a frozen dataclass and set ``SCHEMA``.

    ``SCHEMA`` lists ``(field_name, FieldType)`` in wire order; it must name exactly the
    dataclass fields, in the same order.
    """

    __slots__ = ()
    SCHEMA: ClassVar[tuple[tuple[str, FieldType[Any]], ...]] = ()

    def to_wire(self) -> list[Any]:
        return [field_type.to_wire(getattr(self, name)) for name, field_type in self.SCHEMA]

    @classmethod
    def from_wire(cls: type[S], value: Any, path: str = "") -> S:
        path = path or cls.__name__
        if type(value) is not list:
            raise DecodeError(f"{path}: expected array, got {_type_name(value)}")
        schema = cls.SCHEMA
        if len(value) != len(schema):
            raise DecodeError(
                f"{path}: expected {len(schema)} fields, got {len(value)}"
            )
        return cls(
            *[
                field_type.from_wire(item, f"{path}.{name}")
                for (name, field_type), item in zip(schema, value, strict=True)
            ]
        )

    def encode(self) -> bytes:
        return encode_tree(self.to_wire())


def encode_tree(tree: Any) -> bytes:
    """Encode an already-wire-shaped tree (lists, ints, bytes, str, bool, None)."""
    return cast(bytes, _packb(tree, use_bin_type=True))


def decode_tree(data: bytes, *, size_bytes_max: int, what: str = "value") -> Any:
    """Parse ``data`` as exactly one canonical msgpack value and return the tree."""
    if type(data) is not bytes:
        raise DecodeError(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) > size_bytes_max:
        raise DecodeError(f"{what}: {len(data)} bytes exceeds maximum {size_bytes_max}")
    if not data:
        raise DecodeError(f"{what}: empty input")
    try:
        tree = _unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
        )
    except msgpack.ExtraData as error:
        raise DecodeError(
            f"{what}: {len(error.extra)} trailing bytes after the value"
        ) from None
    except UnicodeDecodeError:
        raise DecodeError(f"{what}: a string is not valid UTF-8") from None
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise DecodeError(f"{what}: truncated or malformed encoding ({error})") from None
    if _packb(tree, use_bin_type=True) != data:
        raise DecodeError(f"{what}: not the canonical encoding")
    return tree


def decode(struct_class: type[S], data: bytes, *, size_bytes_max: int) -> S:
    """Strictly decode ``data`` as one ``struct_class`` value."""
    tree = decode_tree(data, size_bytes_max=size_bytes_max, what=struct_class.__name__)
    return struct_class.from_wire(tree, struct_class.__name__)
