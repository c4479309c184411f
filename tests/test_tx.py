"""Signed transactions and the stateless check."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import msgpack
import pytest
from factories import CHAIN_ID, sample_body, signed
from hypothesis import given
from hypothesis import strategies as st

from ledger import limits
from ledger.codec import encode_tree
from ledger.crypto import DOMAIN_BLOCK, DOMAIN_TX, SigningKey, sha256
from ledger.errors import DecodeError
from ledger.results import ResultCode
from ledger.tx import decode_transaction, sign_transaction
from ledger.txtypes import TxType
from ledger.validation import check_batch, check_transaction

ALL_TYPES = list(TxType)


@pytest.mark.parametrize("tx_type", ALL_TYPES, ids=lambda t: t.name)
def test_every_type_signs_decodes_and_checks(tx_type: TxType) -> None:
    tx = signed(tx_type, nonce=7)
    assert tx.tx_id == sha256(tx.raw)
    decoded = decode_transaction(tx.raw)
    assert decoded == tx
    assert decoded.body == sample_body(tx_type)
    result = check_transaction(tx.raw, CHAIN_ID)
    assert result.code is ResultCode.OK, result.message
    assert result.tx is not None and result.tx.tx_id == tx.tx_id


@given(st.sampled_from(ALL_TYPES), st.data())
def test_a_flipped_bit_anywhere_is_rejected(tx_type: TxType, data: st.DataObject) -> None:
    raw = signed(tx_type).raw
    position = data.draw(st.integers(0, len(raw) * 8 - 1))
    tampered = bytearray(raw)
    tampered[position // 8] ^= 1 << (position % 8)
    result = check_transaction(bytes(tampered), CHAIN_ID)
    assert result.code is not ResultCode.OK
    assert result.tx is None


@given(st.sampled_from(ALL_TYPES))
def test_signed_for_another_chain_is_rejected(tx_type: TxType) -> None:
    raw = signed(tx_type, chain_id="medledger-other").raw
    assert check_transaction(raw, CHAIN_ID).code is ResultCode.WRONG_CHAIN


def _resign(raw: bytes, key: SigningKey, domain: bytes, chain_id: str | None = None) -> bytes:
    tree = msgpack.unpackb(raw)
    if chain_id is not None:
        tree[1] = chain_id
    payload = encode_tree(tree[:6])
    tree[6] = key.sign(domain, payload)
    return encode_tree(tree)


def test_signature_from_another_domain_is_rejected() -> None:
    key = SigningKey(bytes(32))
    raw = signed(key=key).raw
    as_block = _resign(raw, key, DOMAIN_BLOCK)
    assert check_transaction(as_block, CHAIN_ID).code is ResultCode.BAD_SIGNATURE
    assert check_transaction(_resign(raw, key, DOMAIN_TX), CHAIN_ID).code is ResultCode.OK


def test_signature_for_another_chain_moved_to_ours_is_rejected() -> None:
    key = SigningKey(bytes(32))
    other = signed(key=key, chain_id="medledger-other").raw
    tree = msgpack.unpackb(other)
    tree[1] = CHAIN_ID  # keep the other chain's signature, claim our chain
    result = check_transaction(encode_tree(tree), CHAIN_ID)
    assert result.code is ResultCode.BAD_SIGNATURE


def test_changed_body_after_signing_is_rejected() -> None:
    tree = msgpack.unpackb(signed(TxType.CONSENT_REVOKE).raw)
    tree[5] = ["consent-2"]
    assert check_transaction(encode_tree(tree), CHAIN_ID).code is ResultCode.BAD_SIGNATURE


def test_another_signer_key_is_rejected() -> None:
    tree = msgpack.unpackb(signed().raw)
    tree[3] = SigningKey(bytes([1]) * 32).public_key
    assert check_transaction(encode_tree(tree), CHAIN_ID).code is ResultCode.BAD_SIGNATURE


@given(st.sampled_from(ALL_TYPES), st.data())
def test_truncated_and_trailing_encodings_are_malformed(
    tx_type: TxType, data: st.DataObject
) -> None:
    raw = signed(tx_type).raw
    length = data.draw(st.integers(0, len(raw) - 1))
    assert check_transaction(raw[:length], CHAIN_ID).code is ResultCode.MALFORMED
    trailing = data.draw(st.binary(min_size=1, max_size=4))
    assert check_transaction(raw + trailing, CHAIN_ID).code is ResultCode.MALFORMED


def test_oversize_is_rejected_before_decoding() -> None:
    result = check_transaction(b"\x00" * (limits.TX_SIZE_BYTES_MAX + 1), CHAIN_ID)
    assert result.code is ResultCode.OVERSIZE


def test_float_amount_is_rejected_with_the_field_named() -> None:
    tree = msgpack.unpackb(signed(TxType.CLAIM_SUBMIT).raw)
    tree[5][6] = 15000.0
    result = check_transaction(msgpack.packb(tree), CHAIN_ID)
    assert result.code is ResultCode.MALFORMED
    assert "Transaction.body.total: expected unsigned integer, got float" in result.message


def test_unknown_type_and_version_are_rejected() -> None:
    tree = msgpack.unpackb(signed().raw)
    tree[2] = 99
    with pytest.raises(DecodeError, match=r"Transaction\.type: 99 is not a valid TxType"):
        decode_transaction(encode_tree(tree))
    tree = msgpack.unpackb(signed().raw)
    tree[0] = 2
    with pytest.raises(DecodeError, match=r"Transaction\.version"):
        decode_transaction(encode_tree(tree))


def test_lazy_body_matches_the_strict_decode() -> None:
    from ledger.tx import envelope_of_checked

    tx = signed(TxType.CLAIM_SUBMIT)
    lazy = envelope_of_checked(tx.raw)
    assert lazy.decoded_body is None
    assert lazy == tx and lazy.body == tx.body
    checked = check_transaction(tx.raw, CHAIN_ID).tx
    assert checked is not None and checked.decoded_body is None  # checked, not yet built
    assert checked.body == tx.body and checked.decoded_body == tx.body


def _batch() -> list[bytes]:
    keys = [SigningKey(bytes([index]) * 32) for index in range(1, 5)]
    raws = []
    for index in range(200):
        tx_type = ALL_TYPES[index % len(ALL_TYPES)]
        raw = sign_transaction(
            keys[index % 4], chain_id=CHAIN_ID, tx_type=tx_type, nonce=index,
            body=sample_body(tx_type),
        ).raw
        if index % 7 == 3:
            raw = raw[:-1] + bytes([raw[-1] ^ 1])  # bad signature
        if index % 11 == 5:
            raw = raw + b"\x00"  # trailing garbage
        raws.append(raw)
    return raws


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_parallel_batch_equals_serial(pool: str) -> None:
    raws = _batch()
    serial = check_batch(raws, CHAIN_ID)
    if pool == "threads":
        executor: ThreadPoolExecutor | ProcessPoolExecutor = ThreadPoolExecutor(2)
    else:
        executor = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    with executor:
        parallel = check_batch(raws, CHAIN_ID, executor=executor, workers=2)
    assert [(r.code, r.message) for r in parallel] == [(r.code, r.message) for r in serial]
    assert [r.tx.tx_id if r.tx else None for r in parallel] == [
        r.tx.tx_id if r.tx else None for r in serial
    ]
    codes = {r.code for r in serial}
    assert {ResultCode.OK, ResultCode.BAD_SIGNATURE, ResultCode.MALFORMED} <= codes
