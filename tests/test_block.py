"""Blocks: hashing, proposer signatures, stateless block checks."""

from __future__ import annotations

import pytest
from factories import CHAIN_ID, signed

from ledger.block import ZERO_HASH, Block, decode_block, make_block, results_root, tx_root
from ledger.certificate import validators_hash
from ledger.codec import encode_tree
from ledger.crypto import DOMAIN_TX, SigningKey
from ledger.errors import DecodeError
from ledger.merkle import EMPTY_ROOT, merkle_proof, verify_proof
from ledger.txtypes import TxType

KEY = SigningKey(bytes([9]) * 32)
SETS = validators_hash([KEY.public_key])


def _block(txs: list[bytes], chain_id: str = CHAIN_ID) -> Block:
    return make_block(
        KEY, chain_id=chain_id, height=1, previous_hash=ZERO_HASH, timestamp_ms=1_000,
        txs=txs, state_height=0, results_root=EMPTY_ROOT, state_root=ZERO_HASH,
        raft_term=1, raft_index=2, validators_hash=SETS, next_validators_hash=SETS,
        certificate=None, trails_root=ZERO_HASH,
    )


def test_block_round_trip_and_tx_proofs() -> None:
    txs = [signed(TxType.CONSENT_REVOKE, nonce=n).raw for n in range(1, 6)]
    block = _block(txs)
    decoded = decode_block(block.encode(), chain_id=CHAIN_ID)
    assert decoded == block and decoded.hash == block.hash
    ids = block.tx_ids()
    for index, tx_id in enumerate(ids):
        assert verify_proof(tx_id, merkle_proof(ids, index), block.header.tx_root)
    assert results_root(ids, [0] * 5) != results_root(ids, [0, 0, 101, 0, 0])


def test_empty_block() -> None:
    block = _block([])
    assert block.header.tx_root == tx_root([]) == EMPTY_ROOT
    assert decode_block(block.encode(), chain_id=CHAIN_ID) == block


def test_tampering_is_detected() -> None:
    txs = [signed(nonce=n).raw for n in range(1, 4)]
    block = _block(txs)
    tree = block.to_wire()
    tree[2] = tree[2][:-1]  # drop a tx
    with pytest.raises(DecodeError, match="tx_count"):
        decode_block(encode_tree(tree), chain_id=CHAIN_ID)
    tree = block.to_wire()
    tree[2][0], tree[2][1] = tree[2][1], tree[2][0]  # reorder
    with pytest.raises(DecodeError, match="tx_root"):
        decode_block(encode_tree(tree), chain_id=CHAIN_ID)
    tree = block.to_wire()
    tree[0][4] = 2_000  # change the timestamp after signing
    with pytest.raises(DecodeError, match="signature"):
        decode_block(encode_tree(tree), chain_id=CHAIN_ID)


def test_block_for_another_chain_or_domain_is_rejected() -> None:
    with pytest.raises(DecodeError, match="chain id"):
        decode_block(_block([], chain_id="medledger-other").encode(), chain_id=CHAIN_ID)
    block = _block([])
    tree = block.to_wire()
    tree[1] = KEY.sign(DOMAIN_TX, block.header.encode())  # signed under the tx domain
    with pytest.raises(DecodeError, match="signature"):
        decode_block(encode_tree(tree), chain_id=CHAIN_ID)
