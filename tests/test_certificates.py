"""Quorum certificates (ledger/certificate.py): every block from height 2 carries its
predecessor's, signed by a majority of the validator set that block's header names; a
block whose certificate is forged, short, or signed by a key outside that set is refused
by every node, whether it comes through raft or sync."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from consensus.types import Entry, EntryType
from ledger.block import Block, decode_block, make_block
from ledger.certificate import (
    Certificate,
    CommitSignature,
    certificate_problem,
    certify,
    majority,
    validators_hash,
)
from ledger.crypto import SigningKey
from ledger.errors import DecodeError
from ledger.evaluation import BlockRejectedError
from ledger.sdk.devnet import devnet_genesis
from node.bootstrap import write_genesis_record
from node.chain import Chain
from storage.store import Store

CHAIN_ID = "medledger-certificates"
GENESIS_TIME_MS = int(time.time() * 1000)
KEYS = [SigningKey(bytes([index + 1]) * 32) for index in range(3)]
MEMBERS = [key.public_key for key in KEYS]
OUTSIDER = SigningKey(bytes([99]) * 32)
HASH = bytes(range(32))


def test_a_majority_certifies_and_every_flaw_is_named() -> None:
    good = certify(KEYS[:2], chain_id=CHAIN_ID, height=7, block_hash=HASH, members=MEMBERS)
    assert good is not None and len(good.signatures) == majority(3) == 2
    check = dict(chain_id=CHAIN_ID, height=7, block_hash=HASH, members=MEMBERS)
    assert certificate_problem(good, **check) is None  # type: ignore[arg-type]
    # Short: one of three.
    assert certify(KEYS[:1], chain_id=CHAIN_ID, height=7, block_hash=HASH,
                   members=MEMBERS) is None
    short = dataclasses.replace(good, signatures=good.signatures[:1])
    assert "1 signatures of 3 validators; 2 needed" in str(
        certificate_problem(short, **check))  # type: ignore[arg-type]
    # Forged: a signature altered.
    first = good.signatures[0]
    forged_signature = bytes([first.signature[0] ^ 1]) + first.signature[1:]
    forged = dataclasses.replace(good, signatures=(
        CommitSignature(first.validator, forged_signature), *good.signatures[1:]))
    assert "does not verify" in str(certificate_problem(forged, **check))  # type: ignore[arg-type]
    # A key outside the set (a removed validator, say), even with a valid signature.
    outsider = certify([KEYS[0], OUTSIDER], chain_id=CHAIN_ID, height=7, block_hash=HASH,
                       members=[MEMBERS[0], OUTSIDER.public_key])
    assert outsider is not None
    assert "not a validator of the set" in str(
        certificate_problem(outsider, **check))  # type: ignore[arg-type]
    # One validator twice.
    twice = dataclasses.replace(good, signatures=(first, first))
    assert "signs twice" in str(certificate_problem(twice, **check))  # type: ignore[arg-type]
    # Another block, another height, another chain.
    assert "not of block 7" in str(certificate_problem(
        good, chain_id=CHAIN_ID, height=7, block_hash=bytes(32), members=MEMBERS))
    assert "not of block 8" in str(certificate_problem(
        good, chain_id=CHAIN_ID, height=8, block_hash=HASH, members=MEMBERS))
    assert "does not verify" in str(certificate_problem(
        good, chain_id="medledger-other", height=7, block_hash=HASH, members=MEMBERS))
    # The set's hash does not depend on order or repeats.
    assert validators_hash(MEMBERS) == validators_hash([*reversed(MEMBERS), MEMBERS[0]])


def _chain(tmp_path: Path, name: str = "data") -> Chain:
    genesis = devnet_genesis(CHAIN_ID, MEMBERS, genesis_time_ms=GENESIS_TIME_MS)
    store = Store.open(tmp_path / name, chain_id=CHAIN_ID)
    write_genesis_record(store, genesis)
    return Chain(chain_id=CHAIN_ID, store=store, genesis_time_ms=genesis.genesis_time_ms,
                 sync_applies=False)


def _next(chain: Chain, index: int, certificate: Certificate | str | None = "majority",
          validators: bytes | None = None) -> Block:
    height, head_hash, timestamp_ms = chain.head()
    if certificate == "majority":
        certificate = chain.certify_head(KEYS[:2])
    assert not isinstance(certificate, str)
    return chain.build_block(
        KEYS[0], [], height=height + 1, previous_hash=head_hash,
        previous_timestamp_ms=timestamp_ms, now_ms=timestamp_ms + 1, raft_term=1,
        raft_index=index, previous_state_height=chain.named_state_height(),
        validators_hash=validators or chain.head_validator_sets()[1], certificate=certificate)


def _apply(chain: Chain, block: Block, index: int) -> str | None:
    result = chain.apply_entry(Entry(1, index, EntryType.NORMAL, block.encode()))
    return result.skipped_reason


def test_every_block_carries_its_predecessors_certificate(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    for index in range(1, 6):
        assert _apply(chain, _next(chain, index), index) is None
    genesis_set = validators_hash(MEMBERS)
    for height in range(1, 6):
        block = chain.block_by_height(height)
        assert block is not None
        assert block.header.validators_hash == block.header.next_validators_hash == genesis_set
        if height == 1:
            assert block.certificate is None
            continue
        previous = chain.block_by_height(height - 1)
        assert previous is not None and block.certificate is not None
        assert certificate_problem(block.certificate, chain_id=CHAIN_ID, height=height - 1,
                                   block_hash=previous.hash, members=MEMBERS) is None


@pytest.mark.parametrize("flaw", ["forged", "short", "outsider", "no-certificate",
                                  "wrong-set"])
def test_a_block_with_a_bad_certificate_is_refused_by_raft_and_by_sync(
        tmp_path: Path, flaw: str) -> None:
    chain = _chain(tmp_path)
    for index in (1, 2):
        assert _apply(chain, _next(chain, index), index) is None
    good = chain.certify_head(KEYS[:2])
    assert good is not None
    validators = None
    certificate: Certificate | None = good
    if flaw == "forged":
        first = good.signatures[0]
        certificate = dataclasses.replace(good, signatures=(CommitSignature(
            first.validator, bytes(64)), *good.signatures[1:]))
    elif flaw == "short":
        certificate = dataclasses.replace(good, signatures=good.signatures[:1])
    elif flaw == "outsider":
        certificate = certify([KEYS[0], OUTSIDER], chain_id=CHAIN_ID, height=2,
                              block_hash=chain.head()[1],
                              members=[MEMBERS[0], OUTSIDER.public_key])
    elif flaw == "no-certificate":
        certificate = None
    else:
        validators = validators_hash([*MEMBERS, OUTSIDER.public_key])
    block = _next(chain, 3, certificate, validators)
    data = block.encode()
    if flaw == "no-certificate":  # refused before any state is read
        with pytest.raises(DecodeError, match="carries no certificate"):
            decode_block(data, chain_id=CHAIN_ID)
    expected = {"forged": "does not verify", "short": "2 needed",
                "outsider": "not a validator of the set", "no-certificate": "no certificate",
                "wrong-set": "another validator set"}[flaw]
    reason = _apply(chain, block, 3)
    assert reason is not None and expected in reason, reason
    assert chain.height == 2  # skipped: nothing applied
    # A node syncing the same block from a peer refuses it the same way.
    observer = _chain(tmp_path, "observer")
    for height in (1, 2):
        stored = chain.block_by_height(height)
        assert stored is not None
        observer.apply_synced_block(stored.encode())
    with pytest.raises((BlockRejectedError, DecodeError), match=expected):
        observer.apply_synced_block(data)
    assert observer.height == 2


def test_a_version_1_block_is_refused() -> None:
    block = make_block(KEYS[0], chain_id=CHAIN_ID, height=1, previous_hash=bytes(32),
                       timestamp_ms=1, txs=[], state_height=0, results_root=bytes(32),
                       state_root=bytes(32), raft_term=1, raft_index=1,
                       validators_hash=HASH, next_validators_hash=HASH, certificate=None,
                       trails_root=HASH)
    tree = block.to_wire()
    tree[0] = tree[0][:13]  # a version-1 header: no sets, certificate hash or trails root
    tree[0][0] = 1
    del tree[3]
    from ledger.codec import encode_tree

    with pytest.raises(DecodeError):
        decode_block(encode_tree(tree), chain_id=CHAIN_ID)


async def test_a_leader_forgets_proposals_cut_from_the_log_in_an_earlier_term(
        tmp_path: Path) -> None:
    """A leader that lost leadership with proposals in flight, then won it back, finds
    proposals of its earlier term that the new leader's log cut: no certificate will ever
    exist for their blocks, so the builder drops them (txs back in the pool) instead of
    waiting for one (seen in the chaos testnet, seed 41: the chain stopped for good)."""
    import trio

    from consensus.state import Role
    from ledger.bodies import PartyKind
    from ledger.results import ResultCode
    from ledger.sdk.builders import TransactionBuilder
    from ledger.sdk.devnet import devnet_admin_key
    from node.builder import Proposal
    from node.config import load_config
    from node.p2p.memory import MemoryNetwork, MemoryTransport
    from node.service import Node
    from node.tools.devnet import create_devnet

    nodes = create_devnet(tmp_path, validators=1, observers=0, rpc_port=0,
                          chain_id="medledger-stale-proposals")
    config = load_config(tmp_path / nodes[0].name / "node.toml", environ={})
    network = MemoryNetwork()
    node = Node(config, rpc_enabled=False,
                transport_factory=lambda own: MemoryTransport(network, seed=own.key.seed))
    signer = TransactionBuilder("medledger-stale-proposals", devnet_admin_key("hospital-a"))
    txs = [signer.register_party(party_id=f"pat-stale-{index}", kind=PartyKind.PATIENT,
                                 signing_key=bytes([index + 1]) * 32,
                                 encryption_key=bytes([index + 101]) * 32)
           for index in range(2)]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            while node.driver is None or node.driver.role is not Role.LEADER:
                await trio.sleep(0.05)
            while node.chain.applied_index() < node.driver.term_start_index:
                await trio.sleep(0.05)
            assert [a.code for a in await node.submit([txs[0].raw])] == [ResultCode.OK]
            while node.tx_status(txs[0].tx_id).state != "committed":
                await trio.sleep(0.01)
            # As after losing leadership and winning it back: a proposal of an earlier
            # term, beyond the log, that the builder would build on.
            builder = node.builder
            height, _, timestamp_ms = node.chain.head()
            term = node.driver.raw_node.status().hard_state.term
            builder._proposals[10_000] = Proposal(height + 1, bytes(32), timestamp_ms + 1, [],
                                                  term - 1)
            builder._proposed_head = (height + 1, bytes(32), timestamp_ms + 1)
            assert [a.code for a in await node.submit([txs[1].raw])] == [ResultCode.OK]
            while node.tx_status(txs[1].tx_id).state != "committed":
                await trio.sleep(0.01)
            assert 10_000 not in builder._proposals
            nursery.cancel_scope.cancel()


async def test_a_head_applied_by_sync_or_before_a_restart_is_voted_for_and_certified(
        tmp_path: Path) -> None:
    """A validator holding a head it applied by block sync, or before it restarted, never
    voted for it from raft; when the head does not move it votes now, and a node that did
    not apply the head in this life still certifies it from the votes (else a leader
    waits for a certificate for ever: chaos seed 43)."""
    import structlog

    from ledger.certificate import sign_vote
    from node.certify import Certifier

    chain = _chain(tmp_path)
    for index in (1, 2):
        assert _apply(chain, _next(chain, index), index) is None
    height, head_hash, _ = chain.head()
    # A fresh Certifier (as after a restart): it saw no apply.
    made: list[int] = []
    leader = Certifier(chain=chain, key=KEYS[0], log=structlog.get_logger(),
                       on_certificate=lambda: made.append(1))
    assert leader.certificate(height, head_hash) is None
    leader._vote_for_head()  # what the idle timer does
    assert leader.certificate(height, head_hash) is None  # one vote of three
    other = sign_vote(KEYS[1], chain_id=CHAIN_ID, height=height, block_hash=head_hash)
    assert await leader.on_vote_gossip("peer", other.encode())
    certificate = leader.certificate(height, head_hash)
    assert certificate is not None and made == [1]
    assert certificate.signers() == sorted([KEYS[0].public_key, KEYS[1].public_key])
    # A forged vote is refused and not relayed.
    forged = dataclasses.replace(other, signature=bytes(64))
    assert not await leader.on_vote_gossip("peer", forged.encode())
