"""Blocks: gossiped on the blocks topic, returned by sync, carried in raft entries.
``decode(Block)`` (what gossip does first) and ``decode_block`` (chain id, tx count,
tx root, proposer signature) may only raise DecodeError; a decoded block's txs go through
the stateless check, which never raises."""

from __future__ import annotations

from factories import CHAIN_ID, signed

from ledger.block import ZERO_HASH, Block, decode_block, make_block
from ledger.certificate import certify, validators_hash
from ledger.codec import decode
from ledger.crypto import SigningKey
from ledger.errors import DecodeError
from ledger.merkle import EMPTY_ROOT
from ledger.txtypes import TxType
from ledger.validation import check_batch
from node.p2p import wire

ALLOWED = (DecodeError,)
PROPOSER = SigningKey(bytes(range(100, 132)))


def one_input(data: bytes) -> None:
    try:
        block = decode(Block, data, size_bytes_max=wire.MESSAGE_BYTES_MAX)
    except DecodeError:
        return
    assert block.encode() == data
    block.hash  # noqa: B018 - hashing the header must not fail
    check_batch(block.txs, CHAIN_ID)
    try:
        checked = decode_block(data, chain_id=CHAIN_ID)
    except DecodeError:
        return
    assert checked == block


def sample_block(txs: list[bytes], *, height: int = 1) -> Block:
    members = [PROPOSER.public_key]
    return make_block(
        PROPOSER, chain_id=CHAIN_ID, height=height, previous_hash=ZERO_HASH,
        timestamp_ms=1_700_000_000_000 + height, txs=txs, state_height=height - 1,
        results_root=EMPTY_ROOT, state_root=ZERO_HASH, raft_term=2, raft_index=height + 1,
        validators_hash=validators_hash(members), next_validators_hash=validators_hash(members),
        certificate=None if height == 1 else certify(
            [PROPOSER], chain_id=CHAIN_ID, height=height - 1, block_hash=ZERO_HASH,
            members=members),
        trails_root=ZERO_HASH,
    )


def seeds() -> dict[str, bytes]:
    txs = [signed(tx_type, nonce=3).raw for tx_type in (TxType.VOTE, TxType.CONSENT_REVOKE)]
    return {
        "block-empty": sample_block([]).encode(),
        "block-two-txs": sample_block(txs, height=5).encode(),
        "block-other-chain": make_block(
            PROPOSER, chain_id="other-chain", height=1, previous_hash=ZERO_HASH,
            timestamp_ms=1, txs=[], state_height=0, results_root=EMPTY_ROOT,
            state_root=ZERO_HASH, raft_term=1, raft_index=1, validators_hash=ZERO_HASH,
            next_validators_hash=ZERO_HASH, certificate=None, trails_root=ZERO_HASH).encode(),
        "fixarray3": b"\x93\x9d\xc4\x00\x90",
    }
