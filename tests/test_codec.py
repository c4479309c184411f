"""The canonical codec: round trips, strictness, and error messages that name the field."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import for_struct

from ledger import codec, limits
from ledger.bodies import BODY_CLASSES, ClaimSubmit
from ledger.codec import Struct, decode
from ledger.errors import DecodeError
from ledger.txtypes import TxType

SIZE = limits.TX_SIZE_BYTES_MAX


def all_struct_classes() -> list[type[Struct]]:
    import consensus.types  # noqa: F401  (registers its Structs)
    import ledger.block
    import ledger.merkle  # noqa: F401

    found: list[type[Struct]] = []
    pending = list(Struct.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.SCHEMA and cls not in found:
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("struct_class", all_struct_classes(), ids=lambda c: c.__name__)
def test_schema_names_the_dataclass_fields_in_order(struct_class: type[Struct]) -> None:
    assert [name for name, _ in struct_class.SCHEMA] == [
        field.name for field in dataclasses.fields(struct_class)  # type: ignore[arg-type]
    ]


body_values = st.sampled_from(sorted(BODY_CLASSES.values(), key=lambda c: c.__name__)).flatmap(
    for_struct
)


@given(body_values)
def test_round_trip(value: Struct) -> None:
    encoded = value.encode()
    assert decode(type(value), encoded, size_bytes_max=SIZE) == value
    assert decode(type(value), encoded, size_bytes_max=SIZE).encode() == encoded


@given(body_values)
def test_every_strict_prefix_is_rejected(value: Struct) -> None:
    encoded = value.encode()
    for length in range(len(encoded)):
        with pytest.raises(DecodeError):
            decode(type(value), encoded[:length], size_bytes_max=SIZE)


@given(body_values, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(value: Struct, trailing: bytes) -> None:
    with pytest.raises(DecodeError, match=r"trailing|malformed|canonical"):
        decode(type(value), value.encode() + trailing, size_bytes_max=SIZE)


def test_non_minimal_integer_is_rejected() -> None:
    canonical = msgpack.packb(["consent-1"])
    assert decode(BODY_CLASSES[TxType.CONSENT_REVOKE], canonical, size_bytes_max=SIZE)
    # fixstr "consent-1" re-sent as str8: same value, another encoding.
    widened = b"\x91\xd9\x09consent-1"
    with pytest.raises(DecodeError, match="canonical"):
        decode(BODY_CLASSES[TxType.CONSENT_REVOKE], widened, size_bytes_max=SIZE)
    # 5 as uint16 instead of fixint
    vote_like = b"\x92\xa6prop-1\xc3"
    decode(BODY_CLASSES[TxType.VOTE], vote_like, size_bytes_max=SIZE)
    with pytest.raises(DecodeError, match="canonical"):
        decode(codec_test_struct(), b"\x91\xcd\x00\x05", size_bytes_max=SIZE)


def codec_test_struct() -> type[Struct]:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Counter(Struct):
        count: int
        SCHEMA = (("count", codec.UInt()),)

    return Counter


def test_wrong_types_name_the_field() -> None:
    value = ClaimSubmit.from_wire(msgpack.unpackb(_claim().encode()))
    tree = msgpack.unpackb(value.encode())
    tree[5][1][1] = 12.5  # a float amount in the second line
    with pytest.raises(DecodeError, match=r"ClaimSubmit\.lines\[1\]\.charge: expected unsigned"):
        decode(ClaimSubmit, msgpack.packb(tree), size_bytes_max=SIZE)
    tree[5][1][1] = True  # a bool is not an integer
    with pytest.raises(DecodeError, match=r"lines\[1\]\.charge"):
        decode(ClaimSubmit, msgpack.packb(tree), size_bytes_max=SIZE)


def test_maps_extra_and_missing_fields_are_rejected() -> None:
    tree = msgpack.unpackb(_claim().encode())
    with pytest.raises(DecodeError, match="expected 9 fields, got 10"):
        decode(ClaimSubmit, msgpack.packb([*tree, 1]), size_bytes_max=SIZE)
    with pytest.raises(DecodeError, match="expected 9 fields, got 8"):
        decode(ClaimSubmit, msgpack.packb(tree[:-1]), size_bytes_max=SIZE)
    with pytest.raises(DecodeError, match="expected array, got map"):
        decode(ClaimSubmit, msgpack.packb({"claim_id": "x"}), size_bytes_max=SIZE)


def test_oversize_and_empty_input_are_rejected() -> None:
    encoded = _claim().encode()
    with pytest.raises(DecodeError, match="exceeds maximum"):
        decode(ClaimSubmit, encoded, size_bytes_max=len(encoded) - 1)
    with pytest.raises(DecodeError, match="empty"):
        decode(ClaimSubmit, b"", size_bytes_max=SIZE)


def test_invalid_utf8_is_rejected() -> None:
    with pytest.raises(DecodeError, match="UTF-8"):
        decode(BODY_CLASSES[TxType.CONSENT_REVOKE], b"\x91\xa2\xff\xfe", size_bytes_max=SIZE)


def test_fed_byte_by_byte_only_the_whole_decodes() -> None:
    encoded = _claim().encode()
    accepted = []
    for length in range(1, len(encoded) + 1):
        try:
            decode(ClaimSubmit, encoded[:length], size_bytes_max=SIZE)
            accepted.append(length)
        except DecodeError:
            pass
    assert accepted == [len(encoded)]


def _claim() -> ClaimSubmit:
    from factories import sample_body

    claim = sample_body(TxType.CLAIM_SUBMIT)
    assert isinstance(claim, ClaimSubmit)
    return claim
