"""A node admits txs in the order they reached it, whichever batch is checked first.

One in-process validator (in-memory transport, real LevelDB). A client pipelines one
signer's txs in two tx_submitBatch calls: the first, large, is checked in a worker thread;
the second, small, would be checked inline and admitted first. Nonces only increase, so an
earlier nonce included after a later one is NONCE_STALE: every tx must commit OK."""

from __future__ import annotations

import hashlib
from pathlib import Path

import trio

from consensus.state import Role
from ledger.bodies import PartyKind
from ledger.results import ResultCode
from ledger.sdk.builders import TransactionBuilder
from ledger.sdk.devnet import devnet_admin_key
from node.config import load_config
from node.p2p.memory import MemoryNetwork, MemoryTransport
from node.service import Node
from node.tools.devnet import create_devnet

CHAIN_ID = "medledger-admission"
FIRST_BATCH_TXS = 1_000  # checked in a worker thread (>= 16 txs): takes tens of ms
SECOND_BATCH_TXS = 8  # checked inline (< 16)
TIMEOUT_SECONDS = 60


async def test_pipelined_batches_of_one_signer_commit_in_nonce_order(tmp_path: Path) -> None:
    nodes = create_devnet(tmp_path, validators=1, observers=0, rpc_port=0, chain_id=CHAIN_ID)
    # Blocks cut every 2 ms: the second batch would be in a block before the first is
    # checked (within one block the builder orders a signer's txs by nonce anyway).
    config = load_config(tmp_path / nodes[0].name / "node.toml",
                         environ={"MEDLEDGER_BLOCK_INTERVAL_MS": "2"})
    network = MemoryNetwork()
    node = Node(config, rpc_enabled=False,
                transport_factory=lambda own: MemoryTransport(network, seed=own.key.seed))
    builder = TransactionBuilder(CHAIN_ID, devnet_admin_key("hospital-a"))
    txs = [
        builder.register_party(
            party_id=f"pat-adm-{index}", kind=PartyKind.PATIENT,
            signing_key=hashlib.sha256(b"sign%d" % index).digest(),
            encryption_key=hashlib.sha256(b"enc%d" % index).digest(),
        )
        for index in range(FIRST_BATCH_TXS + SECOND_BATCH_TXS)
    ]
    first = [tx.raw for tx in txs[:FIRST_BATCH_TXS]]
    second = [tx.raw for tx in txs[FIRST_BATCH_TXS:]]
    with trio.fail_after(TIMEOUT_SECONDS):
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            while node.driver is None or node.driver.role is not Role.LEADER:
                await trio.sleep(0.05)
            answers: dict[str, list[ResultCode]] = {}

            async def submit(name: str, raws: list[bytes]) -> None:
                answers[name] = [answer.code for answer in await node.submit(raws)]

            async with trio.open_nursery() as submitters:
                submitters.start_soon(submit, "first", first)
                # The first call is in (its check takes tens of ms) when the second arrives.
                await trio.sleep(0.005)
                submitters.start_soon(submit, "second", second)
            assert answers == {"first": [ResultCode.OK] * FIRST_BATCH_TXS,
                               "second": [ResultCode.OK] * SECOND_BATCH_TXS}
            while any(node.tx_status(tx.tx_id).state != "committed" for tx in txs):
                await trio.sleep(0.05)
            codes = [ResultCode(node.tx_status(tx.tx_id).code) for tx in txs]
            nursery.cancel_scope.cancel()
    assert codes == [ResultCode.OK] * len(txs)


IDLE_INTERVAL_MS = 3_000


async def test_an_idle_leader_cuts_a_block_at_once_not_after_the_interval(
    tmp_path: Path,
) -> None:
    """A light load's txs wait for no timer: the leader cuts a block as soon as it has
    nothing in flight (before, a lone tx waited out the block interval)."""
    nodes = create_devnet(tmp_path, validators=1, observers=0, rpc_port=0, chain_id=CHAIN_ID)
    config = load_config(tmp_path / nodes[0].name / "node.toml",
                         environ={"MEDLEDGER_BLOCK_INTERVAL_MS": str(IDLE_INTERVAL_MS)})
    network = MemoryNetwork()
    node = Node(config, rpc_enabled=False,
                transport_factory=lambda own: MemoryTransport(network, seed=own.key.seed))
    builder = TransactionBuilder(CHAIN_ID, devnet_admin_key("hospital-a"))
    txs = [builder.register_party(
        party_id=f"pat-idle-{index}", kind=PartyKind.PATIENT,
        signing_key=hashlib.sha256(b"idle-sign%d" % index).digest(),
        encryption_key=hashlib.sha256(b"idle-enc%d" % index).digest()) for index in range(3)]
    with trio.fail_after(TIMEOUT_SECONDS):
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            while node.driver is None or node.driver.role is not Role.LEADER:
                await trio.sleep(0.05)
            while node.chain.applied_index() < node.driver.term_start_index:
                await trio.sleep(0.05)  # the new term's no-op applied: the leader is idle
            waits = []
            for tx in txs:  # one at a time, each after the last committed
                started = trio.current_time()
                assert [answer.code for answer in await node.submit([tx.raw])] == [
                    ResultCode.OK]
                while node.tx_status(tx.tx_id).state != "committed":
                    await trio.sleep(0.005)
                waits.append(trio.current_time() - started)
            nursery.cancel_scope.cancel()
    # Each well inside the interval (it is 3 s; a commit here takes milliseconds).
    assert max(waits) < IDLE_INTERVAL_MS / 1000 / 2, waits
