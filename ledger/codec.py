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
Paths are built only when a check fails (each enclosing value prefixes its part on the way
up), so the happy path pays nothing for them.
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

_unpackb = msgpack.unpackb
# One shared Packer: reusing its buffer halves the cost of packb. Safe across threads
# because pack() of plain lists/ints/bytes/str is one C call that never releases the GIL
# nor calls back into Python (no ``default`` hook).
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def _type_name(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


class FieldType(Protocol[T]):
    """How one field goes to and comes from its msgpack form."""

    def to_wire(self, value: T) -> Any: ...

    def from_wire(self, value: Any) -> T:
        """Check ``value`` and return it; a DecodeError says what is wrong with it
        (its path is added by the enclosing Struct / ListOf on the way up)."""
        ...


class UInt:
    """An unsigned integer in ``[minimum, maximum]`` (default 0 … 2**64-1)."""

    __slots__ = ("maximum", "minimum")

    def __init__(self, *, minimum: int = 0, maximum: int = UINT64_MAX) -> None:
        assert 0 <= minimum <= maximum <= UINT64_MAX
        self.minimum = minimum
        self.maximum = maximum

    def to_wire(self, value: int) -> int:
        return value

    def inline_bad(self, name: str, env: dict[str, Any]) -> str:
        return f"type({name}) is not int or not {self.minimum} <= {name} <= {self.maximum}"

    def from_wire(self, value: Any) -> int:
        if type(value) is not int:
            raise DecodeError(f"expected unsigned integer, got {_type_name(value)}")
        if not self.minimum <= value <= self.maximum:
            raise DecodeError(
                f"{value} is outside [{self.minimum}, {self.maximum}]"
            )
        return value


class Bool:
    __slots__ = ()

    def to_wire(self, value: bool) -> bool:
        return value

    def inline_bad(self, name: str, env: dict[str, Any]) -> str:
        return f"type({name}) is not bool"

    def from_wire(self, value: Any) -> bool:
        if type(value) is not bool:
            raise DecodeError(f"expected bool, got {_type_name(value)}")
        return value


class Bytes:
    """A byte string of exactly ``size`` bytes, or of at most ``maximum`` bytes."""

    __slots__ = ("maximum", "size")

    def __init__(self, size: int | None = None, *, maximum: int = limits.BYTES_LENGTH_MAX):
        self.size = size
        self.maximum = maximum if size is None else size

    def to_wire(self, value: bytes) -> bytes:
        return value

    def inline_bad(self, name: str, env: dict[str, Any]) -> str:
        if self.size is not None:
            return f"type({name}) is not bytes or len({name}) != {self.size}"
        return f"type({name}) is not bytes or len({name}) > {self.maximum}"

    def from_wire(self, value: Any) -> bytes:
        if type(value) is not bytes:
            raise DecodeError(f"expected bytes, got {_type_name(value)}")
        if self.size is not None:
            if len(value) != self.size:
                raise DecodeError(f"expected {self.size} bytes, got {len(value)}")
        elif len(value) > self.maximum:
            raise DecodeError(f"{len(value)} bytes exceeds maximum {self.maximum}")
        return value


class Text:
    """A UTF-8 string of at most ``maximum`` characters, optionally matching ``pattern``."""

    __slots__ = ("maximum", "minimum", "pattern")

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

    def inline_bad(self, name: str, env: dict[str, Any]) -> str:
        condition = (
            f"type({name}) is not str or not {self.minimum} <= len({name}) <= {self.maximum}"
        )
        if self.pattern is not None:
            env[f"_match_{name}"] = self.pattern.fullmatch
            condition += f" or _match_{name}({name}) is None"
        return condition

    def from_wire(self, value: Any) -> str:
        if type(value) is not str:
            raise DecodeError(f"expected string, got {_type_name(value)}")
        if not self.minimum <= len(value) <= self.maximum:
            raise DecodeError(
                f"length {len(value)} is outside [{self.minimum}, {self.maximum}]"
            )
        if self.pattern is not None and self.pattern.fullmatch(value) is None:
            raise DecodeError(f"{value!r} does not match {self.pattern.pattern}")
        return value


# Identifiers: short, printable, no spaces, so they are safe inside state keys and logs.
IDENTIFIER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@/-]*"


def Identifier(maximum: int = limits.IDENTIFIER_LENGTH_MAX) -> Text:  # noqa: N802
    return Text(maximum=maximum, minimum=1, pattern=IDENTIFIER_PATTERN)


class Enum(Generic[E]):
    """An :class:`enum.IntEnum` member, encoded as its integer value."""

    __slots__ = ("enum_class", "members")

    def __init__(self, enum_class: type[E]) -> None:
        self.enum_class = enum_class
        self.members: dict[int, E] = {int(member): member for member in enum_class}

    def inline_convert(self, name: str, env: dict[str, Any]) -> str:
        env[f"_members_{name}"] = self.members
        return f"_members_{name}.get({name}) if type({name}) is int else None"

    def to_wire(self, value: E) -> int:
        return int(value)

    def from_wire(self, value: Any) -> E:
        if type(value) is not int:
            raise DecodeError(
                f"expected {self.enum_class.__name__} code, got {_type_name(value)}"
            )
        member = self.members.get(value)
        if member is None:
            raise DecodeError(f"{value} is not a valid {self.enum_class.__name__}")
        return member


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

    def __getattr__(self, name: str) -> Any:
        # Lists of plain leaves (ids, amounts, enum codes) decode inline: the common case.
        if name != "inline_convert":
            raise AttributeError(name)
        item = self.item
        size_check = f"type({{v}}) is list and {self.minimum} <= len({{v}}) <= {self.maximum}"
        if hasattr(item, "inline_bad"):

            def inline_convert(variable: str, env: dict[str, Any]) -> str:
                item_bad = item.inline_bad("x", env)
                env[f"_any_{variable}"] = any
                checks = size_check.format(v=variable)
                return (
                    f"tuple({variable}) if {checks} and not "
                    f"_any_{variable}({item_bad} for x in {variable}) else None"
                )

            return inline_convert
        if isinstance(item, Enum):
            members = item.members

            def inline_convert_enum(variable: str, env: dict[str, Any]) -> str:
                env[f"_get_{variable}"] = members.get
                env[f"_all_{variable}"] = all
                checks = size_check.format(v=variable)
                return (
                    f"tuple(map(_get_{variable}, {variable})) if {checks} and "
                    f"_all_{variable}(type(x) is int and x in _get_{variable}.__self__ "
                    f"for x in {variable}) else None"
                )

            return inline_convert_enum
        raise AttributeError(name)

    def from_wire(self, value: Any) -> tuple[T, ...]:
        if type(value) is not list:
            raise DecodeError(f"expected array, got {_type_name(value)}")
        if not self.minimum <= len(value) <= self.maximum:
            raise DecodeError(
                f"{len(value)} items is outside [{self.minimum}, {self.maximum}]"
            )
        from_wire = self.item.from_wire
        items = []
        for index, item in enumerate(value):
            try:
                items.append(from_wire(item))
            except DecodeError as error:
                raise error.within(f"[{index}]") from None
        return tuple(items)


class Optional(Generic[T]):
    """Either nil or a value of the inner type."""

    __slots__ = ("inner",)

    def __init__(self, inner: FieldType[T]) -> None:
        self.inner = inner

    def to_wire(self, value: T | None) -> Any:
        return None if value is None else self.inner.to_wire(value)

    def __getattr__(self, name: str) -> Any:
        # Inline only when the inner type inlines as a plain check (no conversion).
        if name == "inline_bad" and hasattr(self.inner, "inline_bad"):
            inner_bad = self.inner.inline_bad

            def inline_bad(variable: str, env: dict[str, Any]) -> str:
                return f"({variable} is not None and ({inner_bad(variable, env)}))"

            return inline_bad
        raise AttributeError(name)

    def from_wire(self, value: Any) -> T | None:
        return None if value is None else self.inner.from_wire(value)


class Nested(Generic[S]):
    """A field holding another :class:`Struct`."""

    __slots__ = ("struct_class",)

    def __init__(self, struct_class: type[S]) -> None:
        self.struct_class = struct_class

    def to_wire(self, value: S) -> list[Any]:
        return value.to_wire()

    def from_wire(self, value: Any) -> S:
        return self.struct_class.from_wire(value)


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
    def from_wire(cls: type[S], value: Any) -> S:
        decoder = _DECODERS.get(cls)
        if decoder is None:
            decoder = _DECODERS[cls] = _compile_decoder(cls)
        return decoder(value)  # type: ignore[no-any-return]

    @classmethod
    def check_wire(cls, value: Any) -> None:
        """Check ``value`` exactly as :meth:`from_wire` would, without building anything
        (a DecodeError says what is wrong)."""
        checker = _CHECKERS.get(cls)
        if checker is None:
            checker = _CHECKERS[cls] = _compile_decoder(cls, construct=False)
        checker(value)

    def encode(self) -> bytes:
        return encode_tree(self.to_wire())


_DECODERS: dict[type[Struct], Any] = {}
_CHECKERS: dict[type[Struct], Any] = {}


def _compile_decoder(struct_class: type[Struct], *, construct: bool = True) -> Any:
    """Generate a decoder specialised to one Struct: leaf checks inline, no call per field.

    The generated code only decides *whether* a field is valid; when one is not, the
    field's own ``from_wire`` runs again to raise the precise error, with the path. With
    ``construct=False`` it checks everything and builds nothing (returns None).
    """
    schema = struct_class.SCHEMA
    names = [f"v{index}" for index in range(len(schema))]
    env: dict[str, Any] = {
        "DecodeError": DecodeError,
        "_type_name": _type_name,
        "_class": struct_class,
        "_allocate": object.__new__,
        "_fail": _field_failure(struct_class),
    }
    lines = [
        "def decode(value):",
        "    if type(value) is not list:",
        "        raise DecodeError(f'expected array, got {_type_name(value)}')",
        f"    if len(value) != {len(schema)}:",
        f"        raise DecodeError(f'expected {len(schema)} fields, got {{len(value)}}')",
    ]
    if schema:
        lines.append(f"    {', '.join(names)}, = value")
    results = []
    for index, (name, (_, field_type)) in enumerate(zip(names, schema, strict=True)):
        if hasattr(field_type, "inline_bad"):
            condition = field_type.inline_bad(name, env)
            lines += [f"    if {condition}:", f"        _fail({index}, {name})"]
            results.append(name)
        elif hasattr(field_type, "inline_convert"):
            lines += [
                f"    w{index} = {field_type.inline_convert(name, env)}",
                f"    if w{index} is None:",
                f"        _fail({index}, {name})",
            ]
            results.append(f"w{index}")
        else:
            env[f"_convert_{name}"] = field_type.from_wire
            lines += [
                "    try:",
                f"        w{index} = _convert_{name}({name})",
                "    except DecodeError as error:",
                f"        raise error.within('.{schema[index][0]}') from None",
            ]
            results.append(f"w{index}")
    if not construct:
        lines.append("    return None")
        exec("\n".join(lines), env)  # source generated from our own schema
        return env["decode"]
    # Frozen dataclasses route __init__ through object.__setattr__; setting the slots
    # directly builds the same value in a third of the time (the hot path of every decode).
    lines.append("    new = _allocate(_class)")
    for index, ((field_name, _), result) in enumerate(zip(schema, results, strict=True)):
        env[f"_set{index}"] = struct_class.__dict__[field_name].__set__
        lines.append(f"    _set{index}(new, {result})")
    lines.append("    return new")
    exec("\n".join(lines), env)
    return env["decode"]


def _field_failure(struct_class: type[Struct]) -> Any:
    def fail(index: int, value: Any) -> None:
        name, field_type = struct_class.SCHEMA[index]
        try:
            field_type.from_wire(value)
        except DecodeError as error:
            raise error.within(f".{name}") from None
        raise AssertionError(
            f"{struct_class.__name__}.{name}: inline check and from_wire disagree"
        )

    return fail


def encode_tree(tree: Any) -> bytes:
    """Encode an already-wire-shaped tree (lists, ints, bytes, str, bool, None)."""
    return cast(bytes, _pack(tree))


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
    if _pack(tree) != data:
        raise DecodeError(f"{what}: not the canonical encoding")
    return tree


def decode(struct_class: type[S], data: bytes, *, size_bytes_max: int) -> S:
    """Strictly decode ``data`` as one ``struct_class`` value."""
    tree = decode_tree(data, size_bytes_max=size_bytes_max, what=struct_class.__name__)
    try:
        return struct_class.from_wire(tree)
    except DecodeError as error:
        raise error.within(struct_class.__name__) from None
