"""JSON views of ledger values and strict parsing of JSON params (no server)."""

from __future__ import annotations

import json

import pytest
from factories import signed
from rpc_fakes import FakeNode, tx

from ledger.merkle import MerkleProof, merkle_proof, merkle_root, verify_proof
from ledger.results import ResultCode
from ledger.txtypes import TxType
from node import jsonview
from node.jsonview import JsonFieldError


@pytest.mark.parametrize("tx_type", list(TxType))
def test_every_tx_type_has_a_json_view(tx_type: TxType) -> None:
    transaction = signed(tx_type)
    view = jsonview.transaction_view(transaction)
    text = json.dumps(view)  # JSON-ready: no bytes, enums or tuples left
    assert view["type"] == tx_type.name
    assert view["type_code"] == int(tx_type)
    assert view["tx_id"] == "0x" + transaction.tx_id.hex()
    assert view["signer"].startswith("0x") and len(view["signer"]) == 66
    assert set(view["body"]) == {name for name, _ in transaction.body.SCHEMA}
    assert "b'" not in text


def test_body_enums_are_names_and_nested_structs_are_objects() -> None:
    claim = jsonview.transaction_view(signed(TxType.CLAIM_SUBMIT))["body"]
    assert claim["frequency"] == "ORIGINAL"
    assert claim["replaces"] is None
    assert claim["lines"][0] == {"duplicate_key": "0x" + bytes(range(32)).hex(), "charge": 10_000}
    consent = jsonview.transaction_view(signed(TxType.CONSENT_GRANT))["body"]
    assert consent["actions"] == ["READ"]
    assert consent["records"] == ["rec-1"]


def test_block_view_lists_tx_ids_and_optionally_full_txs() -> None:
    node = FakeNode()
    first, second = tx(1), tx(2)
    block = node.commit([first.raw, second.raw])
    view = jsonview.block_view(block)
    assert view["hash"] == "0x" + block.hash.hex()
    assert view["height"] == view["header"]["height"] == 1
    assert view["tx_ids"] == ["0x" + first.tx_id.hex(), "0x" + second.tx_id.hex()]
    assert "txs" not in view
    full = jsonview.block_view(block, full=True)
    raws = [item["raw"] for item in full["txs"]]
    assert raws == ["0x" + first.raw.hex(), "0x" + second.raw.hex()]
    assert full["txs"][1]["nonce"] == 2


def test_undecodable_raw_gets_its_id_and_the_error() -> None:
    view = jsonview.raw_transaction_view(b"\x01\x02")
    assert view["tx_id"].startswith("0x") and "decode_error" in view


def test_proof_view_round_trips_and_verifies() -> None:
    items = [bytes([index]) * 32 for index in range(5)]
    proof = merkle_proof(items, 3)
    view = jsonview.proof_view(proof)
    rebuilt = MerkleProof(
        view["index"], view["size"], tuple(bytes.fromhex(s[2:]) for s in view["siblings"])
    )
    assert verify_proof(items[3], rebuilt, merkle_root(items))


def test_result_code_names() -> None:
    assert jsonview.result_code_name(0) == "OK"
    assert jsonview.result_code_name(int(ResultCode.BAD_SIGNATURE)) == "BAD_SIGNATURE"
    assert jsonview.result_code_name(4242) == "CODE_4242"
    jsonview.register_result_code_names({4243: "CONSENT_EXPIRED"})
    assert jsonview.result_code_name(4243) == "CONSENT_EXPIRED"
    with pytest.raises(AssertionError):
        jsonview.register_result_code_names({4243: "SOMETHING_ELSE"})


# ---- parsing ------------------------------------------------------------------------------


def test_parse_hex_exact_and_bounded() -> None:
    assert jsonview.parse_hex("0x" + "ab" * 32, "p", size=32) == b"\xab" * 32
    assert jsonview.parse_hex("0xABcd", "p", size_max=4) == b"\xab\xcd"
    assert jsonview.parse_hex("0x", "p", size_max=4) == b""


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (5, "expected 0x-prefixed hex string, got integer"),
        (None, "got null"),
        ("ab" * 32, "expected 0x-prefixed hex string"),
        ("0x" + "ab" * 31, "expected 32 bytes (64 hex digits), got 62"),
        ("0x" + "zz" * 32, "expected an even number of hex digits"),
        ("0x" + "a" * 63 + " ", "expected an even number of hex digits"),
    ],
)
def test_parse_hex_rejects(value: object, reason: str) -> None:
    with pytest.raises(JsonFieldError) as caught:
        jsonview.parse_hex(value, "params.tx_id", size=32)
    assert str(caught.value).startswith("params.tx_id: ")
    assert reason in str(caught.value)


def test_parse_hex_bounded_rejects_long_and_odd() -> None:
    with pytest.raises(JsonFieldError, match="5 bytes exceeds maximum 4"):
        jsonview.parse_hex("0x" + "00" * 5, "p", size_max=4)
    with pytest.raises(JsonFieldError, match="even number"):
        jsonview.parse_hex("0xabc", "p", size_max=4)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "got boolean"),
        (1.0, "got float"),
        ("1", "got string"),
        (-1, "got -1"),
        (2**64, "exceeds maximum"),
    ],
)
def test_parse_non_negative_int_rejects(value: object, reason: str) -> None:
    with pytest.raises(JsonFieldError) as caught:
        jsonview.parse_non_negative_int(value, "params.height")
    assert str(caught.value).startswith("params.height: ")
    assert reason in str(caught.value)


def test_parse_non_negative_int_accepts() -> None:
    assert jsonview.parse_non_negative_int(0, "p") == 0
    assert jsonview.parse_non_negative_int(2**64 - 1, "p") == 2**64 - 1


def test_error_messages_quote_long_values_cut() -> None:
    with pytest.raises(JsonFieldError) as caught:
        jsonview.parse_choice("x" * 10_000, "params.topic", ("newBlocks", "txResults"))
    assert len(str(caught.value)) < 120


def test_to_json_value_refuses_unknown_types() -> None:
    with pytest.raises(TypeError):
        jsonview.to_json_value(object())
    assert jsonview.to_json_value({"a": (b"\x01", ResultCode.OK)}) == {"a": ["0x01", "OK"]}
