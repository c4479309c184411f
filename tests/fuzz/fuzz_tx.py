"""Transactions: the bytes of ``tx_submit`` / ``tx_submitBatch`` and of every gossiped or
forwarded tx. Strict decoding (eager and lazy body), the stateless check, and the
parallel path's envelope rebuild must agree; only DecodeError may escape a decoder."""

from __future__ import annotations

from factories import CHAIN_ID, signed

from ledger.codec import decode, decode_tree, encode_tree
from ledger.errors import DecodeError
from ledger.tx import decode_transaction, envelope_of_checked
from ledger.txtypes import TxType
from ledger.validation import check_transaction

ALLOWED = (DecodeError,)


def one_input(data: bytes) -> None:
    checked = check_transaction(data, CHAIN_ID)  # never raises: a result code instead
    try:
        eager = decode_transaction(data)
    except DecodeError:
        assert checked.tx is None, "the stateless check accepted what decoding refuses"
        try:
            decode_transaction(data, lazy_body=True)
        except DecodeError:
            return
        raise AssertionError("lazy decoding accepted what eager decoding refuses") from None
    lazy = decode_transaction(data, lazy_body=True)
    assert lazy == eager and lazy.body == eager.body
    eager.signature_valid()
    rebuilt = envelope_of_checked(data)
    assert rebuilt == eager and rebuilt.body == eager.body
    body = eager.body
    encoded = body.encode()
    assert decode(type(body), encoded, size_bytes_max=len(encoded)) == body


def seeds() -> dict[str, bytes]:
    found = {f"tx-{tx_type.name.lower()}": signed(tx_type, nonce=7).raw for tx_type in TxType}
    found["tx-other-chain"] = signed(TxType.VOTE, chain_id="other-chain").raw
    found["tx-body-of-another-type"] = _with_type(signed(TxType.VOTE).raw, TxType.SHRED_RECORD)
    found["empty"] = b""
    found["fixarray7-of-nils"] = b"\x97" + b"\xc0" * 7
    return found


def _with_type(raw: bytes, tx_type: TxType) -> bytes:
    tree = decode_tree(raw, size_bytes_max=len(raw))
    tree[2] = int(tx_type)
    return encode_tree(tree)
