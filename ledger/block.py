"""Blocks: a signed header and the raw transactions it orders.

The block hash is SHA-256 of the canonical header encoding. The proposer (the Raft
leader) signs the header under the ``medledger/block/v1`` domain; the chain id is in the
header, so a block signature is valid for one chain only.

Results and state are computed when a block is applied, after Raft commits it, and the
leader may have several blocks in flight (pipelining). A header therefore commits to the
results and state of an *earlier* block, the latest one its proposer had applied:
``state_height`` names it, ``results_root`` and ``state_root`` are that block's. Every node
checks them against what it computed itself, so a node whose state diverged notices.

Version 2: a header names the validator set that certifies it (``validators_hash``) and
the one that certifies its successor (``next_validators_hash``), and every block from
height 2 carries the quorum certificate of its predecessor (``certificate``, committed to
by ``certificate_hash``): see ledger/certificate.py. Blocks of version 1 are refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ledger import limits
from ledger.certificate import Certificate
from ledger.codec import Bytes, Identifier, ListOf, Nested, Optional, Struct, UInt, decode
from ledger.crypto import (
    DOMAIN_BLOCK,
    HASH_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    SigningKey,
    verify,
)
from ledger.errors import DecodeError
from ledger.merkle import EMPTY_ROOT, merkle_root
from ledger.tx import CHAIN_ID_LENGTH_MAX, tx_id_of

BLOCK_VERSION = 2
ZERO_HASH = bytes(HASH_SIZE)

_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class BlockHeader(Struct):
    version: int
    chain_id: str
    height: int
    previous_hash: bytes
    timestamp_ms: int
    tx_count: int
    tx_root: bytes
    state_height: int
    results_root: bytes
    state_root: bytes
    raft_term: int
    raft_index: int
    proposer: bytes
    validators_hash: bytes
    next_validators_hash: bytes
    certificate_hash: bytes  # of the block's certificate; ZERO_HASH at height 1
    trails_root: bytes  # the patients' trail heads at state_height (ledger/trails.py)

    SCHEMA = (
        ("version", UInt(minimum=BLOCK_VERSION, maximum=BLOCK_VERSION)),
        ("chain_id", Identifier(CHAIN_ID_LENGTH_MAX)),
        ("height", UInt()),
        ("previous_hash", Bytes(HASH_SIZE)),
        ("timestamp_ms", UInt()),
        ("tx_count", UInt(maximum=limits.BLOCK_TXS_MAX)),
        ("tx_root", Bytes(HASH_SIZE)),
        ("state_height", UInt()),
        ("results_root", Bytes(HASH_SIZE)),
        ("state_root", Bytes(HASH_SIZE)),
        ("raft_term", UInt()),
        ("raft_index", UInt()),
        ("proposer", Bytes(PUBLIC_KEY_SIZE)),
        ("validators_hash", Bytes(HASH_SIZE)),
        ("next_validators_hash", Bytes(HASH_SIZE)),
        ("certificate_hash", Bytes(HASH_SIZE)),
        ("trails_root", Bytes(HASH_SIZE)),
    )

    @property
    def hash(self) -> bytes:
        return _sha256(self.encode()).digest()


@dataclass(frozen=True, slots=True)
class Block(Struct):
    header: BlockHeader
    signature: bytes
    txs: tuple[bytes, ...]
    certificate: Certificate | None  # of the block at height - 1; None at height 1

    SCHEMA = (
        ("header", Nested(BlockHeader)),
        ("signature", Bytes(SIGNATURE_SIZE)),
        ("txs", ListOf(Bytes(maximum=limits.TX_SIZE_BYTES_MAX), maximum=limits.BLOCK_TXS_MAX)),
        ("certificate", Optional(Nested(Certificate))),
    )

    @property
    def hash(self) -> bytes:
        return self.header.hash

    def tx_ids(self) -> list[bytes]:
        return [tx_id_of(raw) for raw in self.txs]


def tx_root(tx_ids: Sequence[bytes]) -> bytes:
    return merkle_root(tx_ids)


def result_leaf(tx_id: bytes, code: int) -> bytes:
    return tx_id + code.to_bytes(2, "big")


def results_root(tx_ids: Sequence[bytes], codes: Sequence[int]) -> bytes:
    assert len(tx_ids) == len(codes)
    leaves = [result_leaf(tx_id, code) for tx_id, code in zip(tx_ids, codes, strict=True)]
    return merkle_root(leaves)


GENESIS_STATE_ROOT = ZERO_HASH
GENESIS_RESULTS_ROOT = EMPTY_ROOT


def make_block(
    key: SigningKey,
    *,
    chain_id: str,
    height: int,
    previous_hash: bytes,
    timestamp_ms: int,
    txs: Sequence[bytes],
    state_height: int,
    results_root: bytes,
    state_root: bytes,
    raft_term: int,
    raft_index: int,
    validators_hash: bytes,
    next_validators_hash: bytes,
    certificate: Certificate | None,
    trails_root: bytes,
) -> Block:
    header = BlockHeader(
        version=BLOCK_VERSION,
        chain_id=chain_id,
        height=height,
        previous_hash=previous_hash,
        timestamp_ms=timestamp_ms,
        tx_count=len(txs),
        tx_root=tx_root([tx_id_of(raw) for raw in txs]),
        state_height=state_height,
        results_root=results_root,
        state_root=state_root,
        raft_term=raft_term,
        raft_index=raft_index,
        proposer=key.public_key,
        validators_hash=validators_hash,
        next_validators_hash=next_validators_hash,
        certificate_hash=ZERO_HASH if certificate is None else certificate.hash,
        trails_root=trails_root,
    )
    signature = key.sign(DOMAIN_BLOCK, header.encode())
    return Block(header=header, signature=signature, txs=tuple(txs), certificate=certificate)


def decode_block(data: bytes, *, chain_id: str) -> Block:
    """Strictly decode a block and check everything that needs no state: chain id, tx count,
    tx root, that it carries its predecessor's certificate (from height 2; whether the
    signatures certify it is for the caller, who knows the validator set) and the
    proposer's signature. Whether the proposer may propose, and whether the
    block extends the chain, is for the caller (it knows the validator set and the head)."""
    return decode_block_with_ids(data, chain_id=chain_id)[0]


def decode_block_with_ids(data: bytes, *, chain_id: str) -> tuple[Block, list[bytes]]:
    """:func:`decode_block`, with the tx ids it hashed to check the tx root (so a caller
    never hashes a tx twice). ``data`` is the block's canonical encoding: strict decoding
    refuses any other, so a caller stores ``data`` rather than encoding the block again."""
    block = decode(Block, data, size_bytes_max=limits.BLOB_SIZE_BYTES_MAX)
    header = block.header
    if header.chain_id != chain_id:
        raise DecodeError(f"Block: chain id {header.chain_id!r} is not {chain_id!r}")
    if header.tx_count != len(block.txs):
        raise DecodeError(f"Block: tx_count {header.tx_count} but {len(block.txs)} txs")
    tx_ids = block.tx_ids()
    if tx_root(tx_ids) != header.tx_root:
        raise DecodeError("Block: tx_root does not match the transactions")
    certificate = block.certificate
    if header.height <= 1:
        if certificate is not None or header.certificate_hash != ZERO_HASH:
            raise DecodeError("Block: block 1 carries no certificate")
    elif certificate is None:
        raise DecodeError(f"Block: block {header.height} carries no certificate of its "
                          "predecessor")
    elif certificate.height != header.height - 1 or certificate.block_hash != \
            header.previous_hash:
        raise DecodeError(f"Block: the certificate it carries is of block "
                          f"{certificate.height}, not of its predecessor")
    elif certificate.hash != header.certificate_hash:
        raise DecodeError("Block: certificate_hash does not match its certificate")
    if not verify(DOMAIN_BLOCK, header.proposer, header.encode(), block.signature):
        raise DecodeError("Block: proposer signature does not verify")
    return block, tx_ids
