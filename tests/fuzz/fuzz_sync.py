"""The sync protocol (``/medledger/sync/1.0.0``): a request frame as the server reads it,
and the answer as the client unwraps and decodes it (Head, BlockRange with each block
through ``decode_block``, ForwardResult); plus TxBatch, the forwarded-tx payload.

Allowed: FrameError / StreamEndedError (framing), DecodeError, RequestFailedError (an
answer that is not ``status || payload`` or reports a failure)."""

from __future__ import annotations

import contextlib

from factories import signed

from fuzz.common import read_frames
from fuzz.fuzz_block import sample_block
from ledger.block import decode_block
from ledger.codec import decode
from ledger.errors import DecodeError
from ledger.txtypes import TxType
from node.p2p import wire
from node.p2p.framing import FrameError, StreamEndedError, encode_frame
from node.p2p.limits import SYNC_REQUEST_BYTES_MAX
from node.p2p.sync import STATUS_FAILED, STATUS_OK, _unwrap
from node.p2p.transport import RequestFailedError

ALLOWED = (FrameError, StreamEndedError, DecodeError, RequestFailedError)
CHAIN_ID = "medledger-test"


def _request(data: bytes) -> None:
    try:
        request = decode(wire.Request, data, size_bytes_max=wire.MESSAGE_BYTES_MAX)
    except DecodeError:
        return
    assert request.kind in wire.RequestKind


def _answer(data: bytes) -> None:
    try:
        payload = _unwrap("peer", data)
    except RequestFailedError:
        return
    for struct_class in (wire.Head, wire.ForwardResult, wire.TxBatch):
        with contextlib.suppress(DecodeError):
            decode(struct_class, payload, size_bytes_max=wire.MESSAGE_BYTES_MAX)
    try:
        blocks = decode(wire.BlockRange, payload, size_bytes_max=wire.MESSAGE_BYTES_MAX)
    except DecodeError:
        return
    for block in blocks.blocks:
        with contextlib.suppress(DecodeError):
            decode_block(block, chain_id=CHAIN_ID)


def one_input(data: bytes) -> None:
    for frame in read_frames(data, frame_bytes_max=SYNC_REQUEST_BYTES_MAX):
        _request(frame)
        _answer(frame)


def seeds() -> dict[str, bytes]:
    txs = (signed(TxType.VOTE).raw,)
    ok = bytes([STATUS_OK])
    found = {
        "request-head": wire.Request(wire.RequestKind.GET_HEAD, 0, 0, ()),
        "request-blocks": wire.Request(wire.RequestKind.GET_BLOCKS, 1, 300, ()),
        "request-forward": wire.Request(wire.RequestKind.FORWARD_TXS, 0, 0, txs),
    }
    seeds_ = {name: encode_frame(request.encode()) for name, request in found.items()}
    seeds_["answer-head"] = encode_frame(ok + wire.Head(7, bytes(32)).encode())
    seeds_["answer-blocks"] = encode_frame(
        ok + wire.BlockRange((sample_block(list(txs)).encode(), sample_block([], height=2)
                              .encode())).encode())
    seeds_["answer-forward"] = encode_frame(ok + wire.ForwardResult((0, 3), ("", "bad")).encode())
    seeds_["answer-failed"] = encode_frame(bytes([STATUS_FAILED]) + b"no such block")
    seeds_["answer-unknown-status"] = encode_frame(b"\x07")
    return seeds_
