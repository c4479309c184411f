"""Gossip, as a peer's ``/meshsub/1.1.0`` stream delivers it: varint-framed pubsub RPCs
(py-libp2p's protobuf), and the payload of every message published on our topics through
what node/service.py does with it (tx topic: TxBatch, then the stateless check of each tx;
blocks topic: Block, then ``decode_block``).

Allowed: FrameError / StreamEndedError (framing), google.protobuf's DecodeError (a frame
that is not an RPC: the node's stream handler must contain it, see test_p2p_hostile_peer),
ledger's DecodeError (a payload that is not ours)."""

from __future__ import annotations

import google.protobuf.message
from factories import CHAIN_ID, signed
from libp2p.pubsub.pb import rpc_pb2

from fuzz.common import read_frames
from fuzz.fuzz_block import sample_block
from ledger.block import Block, decode_block
from ledger.codec import decode
from ledger.errors import DecodeError
from ledger.txtypes import TxType
from ledger.validation import check_batch
from node.p2p import wire
from node.p2p.framing import FrameError, StreamEndedError, encode_frame

ProtobufDecodeError = google.protobuf.message.DecodeError
ALLOWED = (FrameError, StreamEndedError, ProtobufDecodeError, DecodeError)
# What node/service.py calls its topics (topic_txs / topic_blocks), for CHAIN_ID.
TOPIC_TXS = f"/medledger/{CHAIN_ID}/txs/1"
TOPIC_BLOCKS = f"/medledger/{CHAIN_ID}/blocks/1"
# py-libp2p's pubsub reads RPCs of up to ~1 MiB; small inputs are all the fuzzer makes.
RPC_BYTES_MAX = 1_048_576


def _on_txs(data: bytes) -> None:
    try:
        batch = decode(wire.TxBatch, data, size_bytes_max=wire.MESSAGE_BYTES_MAX)
    except DecodeError:
        return
    check_batch(batch.txs, CHAIN_ID)


def _on_block(data: bytes) -> None:
    try:
        decode(Block, data, size_bytes_max=wire.MESSAGE_BYTES_MAX)
        decode_block(data, chain_id=CHAIN_ID)
    except DecodeError:
        return


def one_input(data: bytes) -> None:
    for frame in read_frames(data, frame_bytes_max=RPC_BYTES_MAX):
        try:
            rpc = rpc_pb2.RPC.FromString(frame)
        except ProtobufDecodeError:
            continue
        for message in rpc.publish:
            if message.topicIDs and message.topicIDs[0] == TOPIC_TXS:
                _on_txs(message.data)
            elif message.topicIDs and message.topicIDs[0] == TOPIC_BLOCKS:
                _on_block(message.data)


def rpc_publish(topic: str, payload: bytes, seqno: int = 1) -> bytes:
    rpc = rpc_pb2.RPC()
    message = rpc.publish.add()
    message.from_id = b"\x00\x24\x08\x01\x12\x20" + bytes(32)
    message.data = payload
    message.seqno = seqno.to_bytes(8, "big")
    message.topicIDs.append(topic)
    return encode_frame(rpc.SerializeToString())


def rpc_control() -> bytes:
    rpc = rpc_pb2.RPC()
    subscription = rpc.subscriptions.add()
    subscription.subscribe = True
    subscription.topicid = TOPIC_TXS
    ihave = rpc.control.ihave.add()
    ihave.topicID = TOPIC_TXS
    ihave.messageIDs.append(b"message-id")
    rpc.control.graft.add().topicID = TOPIC_BLOCKS
    rpc.control.prune.add().topicID = TOPIC_TXS
    rpc.control.iwant.add().messageIDs.append(b"message-id")
    return encode_frame(rpc.SerializeToString())


def seeds() -> dict[str, bytes]:
    txs = tuple(signed(tx_type, nonce=2).raw for tx_type in (TxType.VOTE, TxType.SHRED_RECORD))
    return {
        "gossip-txs": rpc_publish(TOPIC_TXS, wire.TxBatch(txs).encode()),
        "gossip-block": rpc_publish(TOPIC_BLOCKS, sample_block(list(txs)).encode(), 2),
        "gossip-control": rpc_control(),
        "gossip-both": rpc_control() + rpc_publish(TOPIC_TXS, wire.TxBatch(txs[:1]).encode()),
        # The frame that made a node exit (issue 11): 16 bytes of 0xff.
        "ff16": encode_frame(b"\xff" * 16),
        "ff16-raw": b"\xff" * 16,
    }
