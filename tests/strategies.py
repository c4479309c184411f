"""Hypothesis strategies derived from the codec's schemas (any Struct, any field type)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from ledger import codec

_IDENTIFIER_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@/-"


def for_field(field_type: Any) -> st.SearchStrategy[Any]:
    if isinstance(field_type, codec.UInt):
        return st.integers(field_type.minimum, field_type.maximum)
    if isinstance(field_type, codec.Bool):
        return st.booleans()
    if isinstance(field_type, codec.Bytes):
        if field_type.size is not None:
            return st.binary(min_size=field_type.size, max_size=field_type.size)
        return st.binary(max_size=min(field_type.maximum, 64))
    if isinstance(field_type, codec.Text):
        pattern = field_type.pattern
        if pattern is not None and pattern.pattern == codec.IDENTIFIER_PATTERN:
            return st.builds(
                lambda first, rest: first + rest,
                st.sampled_from("abcXYZ019"),
                st.text(_IDENTIFIER_ALPHABET, max_size=min(field_type.maximum - 1, 20)),
            )
        if field_type.pattern is not None:
            return st.from_regex(field_type.pattern, fullmatch=True).filter(
                lambda text: field_type.minimum <= len(text) <= field_type.maximum
            )
        return st.text(min_size=field_type.minimum, max_size=min(field_type.maximum, 20))
    if isinstance(field_type, codec.Enum):
        return st.sampled_from(list(field_type.enum_class))
    if isinstance(field_type, codec.ListOf):
        return st.lists(
            for_field(field_type.item),
            min_size=field_type.minimum,
            max_size=min(field_type.maximum, max(field_type.minimum, 4)),
        ).map(tuple)
    if isinstance(field_type, codec.Optional):
        return st.none() | for_field(field_type.inner)
    if isinstance(field_type, codec.Nested):
        return for_struct(field_type.struct_class)
    raise AssertionError(f"no strategy for {field_type!r}")


def for_struct(struct_class: type[codec.Struct]) -> st.SearchStrategy[Any]:
    return st.builds(
        struct_class, *[for_field(field_type) for _, field_type in struct_class.SCHEMA]
    )
