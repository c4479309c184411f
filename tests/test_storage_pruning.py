"""Pruning ([storage] retain_blocks): the store deletes old block bodies in bounded
batches with the oldest-held marker in the same batch; reads below it answer an error
naming it; a crash between (or in) batches leaves a consistent store; the config key and
the RPC error; and in process, a pruning observer beside a validator that never prunes
and a fresh observer that must sync from someone else."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
from node_harness import dump_logs, leader_of, network, wait_for
from rpc_fakes import FakeNode, http_client, result_of, rpc, running_server, tx
from storage_helpers import (
    CHAIN_ID,
    REPO_ROOT,
    SMALL_OPTIONS,
    block_bytes,
    block_hash,
    indexed,
    open_store,
    subprocess_environment,
    tx_ids,
)

from consensus.state import Role
from ledger.block import Block
from ledger.bodies import PartyKind
from ledger.errors import ConfigError
from ledger.sdk.builders import TransactionBuilder
from ledger.sdk.devnet import devnet_admin_key
from node.client import RpcError
from node.config import config_from_dict, load_config
from node.p2p.identity import peer_id_from_seed
from node.p2p.memory import MemoryNetwork, MemoryTransport
from node.rpc import errors
from node.service import Node
from node.tools.devnet import create_devnet
from storage import Store, TxLocation, keys
from storage.blockstore import GENESIS_HEIGHT, PRUNE_BATCH_BLOCKS_MAX
from storage.errors import BlockPrunedError

TXS_PER_BLOCK = 3


def apply(store: Store, height: int, *, sync: bool = False) -> None:
    """Block ``height`` as PRUNING_WRITER applies it too (3 txs, results 0, 1, 2)."""
    assert store.blocks.apply_block(
        height=height, block_hash=block_hash(height),
        block_bytes=block_bytes(height, TXS_PER_BLOCK),
        tx_ids=tx_ids(height, TXS_PER_BLOCK), tx_results=[0, 1, 2],
        state_writes=indexed(height, tx_ids(height, TXS_PER_BLOCK), [0, 1, 2],
                             {b"height": b"%d" % height, b"at/%d" % (height % 50): b"x"}),
        applied_index=height + 1, sync=sync)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Store]:
    """Blocks 0 (the genesis record) ..= 700."""
    with open_store(tmp_path / "node") as store:
        for height in range(GENESIS_HEIGHT, 701):
            apply(store, height)
        yield store


def stored_block_heights(store: Store) -> list[int]:
    """The heights of every block body in LevelDB, read below the block store."""
    return [keys.U64.unpack_from(key, 1)[0] for key, _ in store.database.iterate(
        start=keys.BLOCK_PREFIX, stop=keys.prefix_end(keys.BLOCK_PREFIX), include_value=False)]


def assert_consistent(store: Store) -> int:
    """The store's invariant under pruning, whatever happened: every block from the
    oldest held to the head is stored and readable, none below it but the genesis record,
    and every tx index and hash entry is still there. Returns the oldest held."""
    blocks = store.blocks
    head = blocks.head()
    assert head is not None
    oldest = blocks.oldest_held_height()
    first_kept = max(oldest, GENESIS_HEIGHT + 1)
    assert stored_block_heights(store) == (
        [GENESIS_HEIGHT, *range(first_kept, head.height + 1)])
    for height in (first_kept, head.height):
        stored = blocks.block(height)
        assert stored is not None and stored.block_bytes == block_bytes(height, TXS_PER_BLOCK)
    for height in range(GENESIS_HEIGHT + 1, first_kept):
        with pytest.raises(BlockPrunedError) as raised:
            blocks.block(height)
        assert raised.value.oldest_height == oldest
    for height in {1, first_kept - 1, first_kept, head.height} - {0}:
        assert blocks.transaction(tx_ids(height, TXS_PER_BLOCK)[2]) == TxLocation(height, 2, 2)
    return oldest


# ---------------------------------------------------------------------------- the store


def test_prunes_in_bounded_batches_and_keeps_the_newest(chain: Store, tmp_path: Path) -> None:
    blocks = chain.blocks
    assert blocks.oldest_held_height() == GENESIS_HEIGHT  # nothing pruned yet
    state_before, head_before = blocks.state_digest(), blocks.head()
    applied_before = blocks.applied_index()
    keep_from = 700 - 100 + 1  # retain the newest 100 blocks

    deleted = []
    while (count := blocks.prune_blocks_below(keep_from)) > 0:
        deleted.append(count)
        # each batch moves the marker exactly past what it deleted, and no further
        assert blocks.oldest_held_height() == 1 + sum(deleted)
        assert stored_block_heights(chain)[1] == 1 + sum(deleted)
    assert deleted == [PRUNE_BATCH_BLOCKS_MAX, PRUNE_BATCH_BLOCKS_MAX, 600 - 512]
    assert blocks.prune_blocks_below(keep_from) == 0  # nothing left: no write either

    assert assert_consistent(chain) == keep_from
    assert len(stored_block_heights(chain)) == 1 + 100
    # state, head and applied index are untouched
    assert blocks.state_digest() == state_before
    assert blocks.head() == head_before and blocks.applied_index() == applied_before
    assert blocks.state_get(b"height") == b"700"
    # the genesis record stays (a restart checks the data directory's genesis with it)
    genesis = blocks.block(GENESIS_HEIGHT)
    assert genesis is not None and genesis.block_hash == block_hash(0)


def test_reads_below_the_oldest_held_name_it(chain: Store) -> None:
    blocks = chain.blocks
    while blocks.prune_blocks_below(601, blocks_max=100):
        pass
    pruned_tx = tx_ids(5, TXS_PER_BLOCK)[1]
    for read in (lambda: blocks.block(600), lambda: blocks.block_by_hash(block_hash(5)),
                 lambda: blocks.transaction_block(pruned_tx),
                 lambda: blocks.blocks(1, 700, size_bytes_max=1 << 20),
                 lambda: blocks.blocks(600, 601, size_bytes_max=1 << 20)):
        with pytest.raises(BlockPrunedError) as raised:
            read()
        assert raised.value.oldest_height == 601
        assert "the oldest block it holds is 601" in str(raised.value)
    assert BlockPrunedError.oldest_height_in(f"peer X failed the request: {raised.value}") == 601
    assert BlockPrunedError.oldest_height_in("peer X failed the request: bad range") is None
    # The tx index stays: a pruned tx is still known as committed, with its result.
    assert blocks.transaction(pruned_tx) == TxLocation(5, 1, 1)
    # Held data reads as before; heights never stored are still simply absent.
    assert [block.height for block in blocks.blocks(601, 605, size_bytes_max=1 << 20)] == [
        601, 602, 603, 604, 605]
    found = blocks.block_by_hash(block_hash(650))
    assert found is not None and found.height == 650
    assert blocks.block(701) is None and blocks.block_by_hash(bytes(32)) is None
    assert blocks.transaction(hashlib.sha256(b"never").digest()) is None


def test_the_head_and_the_genesis_record_are_never_pruned(chain: Store) -> None:
    with pytest.raises(AssertionError):
        chain.blocks.prune_blocks_below(701)  # would delete the head
    with pytest.raises(AssertionError):
        chain.blocks.prune_blocks_below(10, blocks_max=PRUNE_BATCH_BLOCKS_MAX + 1)
    assert chain.blocks.prune_blocks_below(1) == 0  # below 1 is the genesis record only
    assert chain.blocks.oldest_held_height() == GENESIS_HEIGHT
    while chain.blocks.prune_blocks_below(700):
        pass
    assert stored_block_heights(chain) == [0, 700]


def test_a_stop_between_batches_leaves_a_consistent_store_that_finishes_later(
        chain: Store, tmp_path: Path) -> None:
    assert chain.blocks.prune_blocks_below(601) == PRUNE_BATCH_BLOCKS_MAX
    chain.close()  # stopped after one batch (no flush of anything else)
    with open_store(tmp_path / "node") as reopened:
        assert assert_consistent(reopened) == 1 + PRUNE_BATCH_BLOCKS_MAX
        apply(reopened, 701)
        while reopened.blocks.prune_blocks_below(602):
            pass
        assert assert_consistent(reopened) == 602


def test_a_failed_prune_write_leaves_the_marker_where_it_was(chain: Store, tmp_path: Path,
                                                             monkeypatch: Any) -> None:
    from storage.errors import DiskFullError

    def fail(batch: Any, what: str, **kwargs: Any) -> bool:
        raise DiskFullError(f"planted: {what}")

    monkeypatch.setattr(chain.database, "write", fail)
    with pytest.raises(DiskFullError, match=r"pruning blocks 1\.\.256"):
        chain.blocks.prune_blocks_below(601)
    assert chain.blocks.oldest_held_height() == GENESIS_HEIGHT
    assert chain.blocks.block(1) is not None


# A pruning observer's writes, forever: apply the next block (synced), then one small
# pruning batch towards the newest RETAIN blocks (unsynced, as the node prunes); print
# what returned. Killed with SIGKILL at random moments.
PRUNING_WRITER = """
import sys
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
from storage_helpers import block_bytes, block_hash, indexed, open_store, tx_ids
with open_store(Path(sys.argv[1])) as store:
    print("ready", flush=True)
    while True:
        head = store.blocks.head().height
        store.blocks.apply_block(
            height=head + 1, block_hash=block_hash(head + 1),
            block_bytes=block_bytes(head + 1, 3), tx_ids=tx_ids(head + 1, 3),
            tx_results=[0, 1, 2], state_writes=indexed(
                head + 1, tx_ids(head + 1, 3), [0, 1, 2], {{b"height": b"%d" % (head + 1)}}),
            applied_index=head + 2, sync=True)
        store.blocks.prune_blocks_below(head + 2 - {retain}, blocks_max=3)
        print("pruned", store.blocks.oldest_held_height(), head + 1, flush=True)
"""
RETAIN = 5
KILLS = 8


def test_sigkill_while_pruning_never_leaves_a_hole_or_loses_the_marker(
        tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with open_store(data_dir) as store:
        for height in range(GENESIS_HEIGHT, 301):
            apply(store, height)
    script = PRUNING_WRITER.format(root=str(REPO_ROOT), tests=str(REPO_ROOT / "tests"),
                                   retain=RETAIN)
    rng = random.Random(15)
    acknowledged_oldest = acknowledged_head = 0
    for _ in range(KILLS):
        process = subprocess.Popen([sys.executable, "-c", script, str(data_dir)],
                                   stdout=subprocess.PIPE, env=subprocess_environment(),
                                   cwd=REPO_ROOT)
        lines: list[str] = []
        ready = threading.Event()

        def read(stream: Any = process.stdout, into: list[str] = lines,
                 started: threading.Event = ready) -> None:
            for raw in stream:
                if raw.endswith(b"\n"):  # a line cut by the kill was not acknowledged
                    into.append(raw.decode().strip())
                started.set()
            started.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert ready.wait(timeout=60), "the writer did not start"
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        reader.join(timeout=30)
        assert process.stdout is not None
        process.stdout.close()
        for line in lines[1:]:
            _, oldest, head = line.split()
            acknowledged_oldest = max(acknowledged_oldest, int(oldest))
            acknowledged_head = max(acknowledged_head, int(head))
        with Store.open(data_dir, chain_id=CHAIN_ID, options=SMALL_OPTIONS) as store:
            oldest_held = assert_consistent(store)
            chain_head = store.blocks.head()
            assert chain_head is not None and chain_head.height >= acknowledged_head
            assert oldest_held >= acknowledged_oldest, "an acknowledged pruning batch was lost"
    assert acknowledged_oldest > 1, "no kill came after a pruning batch"


# ---------------------------------------------------------------------------- config


def test_retain_blocks_config() -> None:
    assert config_from_dict({}, environ={}).storage.retain_blocks == 0  # keep everything
    assert config_from_dict({"storage": {"retain_blocks": 5000}},
                            environ={}).storage.retain_blocks == 5000
    with pytest.raises(ConfigError, match=r"\[storage\] retain_blocks must be >= 0"):
        config_from_dict({"storage": {"retain_blocks": -1}}, environ={})
    with pytest.raises(ConfigError, match="MEDLEDGER_STORAGE_RETAIN_BLOCKS"):
        config_from_dict({}, environ={"MEDLEDGER_STORAGE_RETAIN_BLOCKS": "-5"})
    with pytest.raises(ConfigError, match="expected an integer"):
        config_from_dict({"storage": {"retain_blocks": "many"}}, environ={})


# ---------------------------------------------------------------------------- RPC


class PrunedNode(FakeNode):
    """Holds blocks from OLDEST on; older ones answer as a pruned node does."""

    OLDEST = 3

    def block_by_height(self, height: int) -> Block | None:
        if 1 <= height < self.OLDEST:
            raise BlockPrunedError(height, self.OLDEST)
        return super().block_by_height(height)

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        block = super().block_by_hash(block_hash)
        if block is not None and block.header.height < self.OLDEST:
            raise BlockPrunedError(block.header.height, self.OLDEST)
        return block

    def tx(self, tx_id: bytes) -> Any:
        location = super().tx(tx_id)
        if location is not None and location.height < self.OLDEST:
            raise BlockPrunedError(location.height, self.OLDEST)
        return location


async def test_rpc_answers_pruned_with_the_oldest_height_held() -> None:
    node = PrunedNode()
    old_tx = tx(1)
    old_block = node.commit([old_tx.raw])
    for nonce in range(2, 5):
        node.commit([tx(nonce).raw])
    async with running_server(node) as running, http_client(running) as client:
        for method, params in (("chain_getBlock", {"height": 1}),
                               ("chain_getBlock", {"hash": "0x" + old_block.hash.hex()}),
                               ("chain_getTx", {"tx_id": "0x" + old_tx.tx_id.hex()})):
            answer = await rpc(client, method, params)
            assert answer["error"]["code"] == errors.PRUNED == -32012, answer
            assert answer["error"]["data"] == {"height": 1, "oldest_height": 3}
            assert "the oldest block it holds is 3" in answer["error"]["message"]
        recent = await result_of(client, "chain_getBlock", {"height": 4})
        assert recent["header"]["height"] == 4
        missing = await rpc(client, "chain_getBlock", {"height": 9})
        assert missing["error"]["code"] == errors.NOT_FOUND
        document = await result_of(client, "rpc.discover")
        methods = {method["name"]: method for method in document["methods"]}
        for name in ("chain_getBlock", "chain_getTx"):
            assert {"code": errors.PRUNED, "message": errors.Pruned.default_message} in [
                {"code": error["code"], "message": error["message"]}
                for error in methods[name]["errors"]], methods[name]["errors"]


# ---------------------------------------------------------------------------- in process

NODE_CHAIN_ID = "medledger-pruning"
RETAIN_BLOCKS = 8
NODE_TIMEOUT_S = 120


async def commit_blocks(validator: Node, builder: TransactionBuilder, first: int,
                        count: int) -> list[bytes]:
    """``count`` txs, one block each (submitted one at a time, each awaited)."""
    tx_ids_committed = []
    for index in range(first, first + count):
        transaction = builder.register_party(
            party_id=f"pat-prune-{index}", kind=PartyKind.PATIENT,
            signing_key=hashlib.sha256(b"s%d" % index).digest(),
            encryption_key=hashlib.sha256(b"e%d" % index).digest())
        await validator.submit([transaction.raw])
        while validator.tx_status(transaction.tx_id).state != "committed":
            await trio.sleep(0.005)
        tx_ids_committed.append(transaction.tx_id)
    return tx_ids_committed


async def wait_until(predicate: Any, what: str, *, timeout_s: float = 60.0,
                     interval_s: float = 0.02) -> None:
    with trio.move_on_after(timeout_s):
        while not predicate():
            await trio.sleep(interval_s)
        return
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def test_an_observer_prunes_a_validator_never_and_a_newcomer_syncs_elsewhere(
        tmp_path: Path) -> None:
    nodes = create_devnet(tmp_path, validators=1, observers=2, rpc_port=0,
                          chain_id=NODE_CHAIN_ID)
    # retain_blocks on every node: the validator must ignore it.
    environ = {"MEDLEDGER_BLOCK_INTERVAL_MS": "2",
               "MEDLEDGER_STORAGE_RETAIN_BLOCKS": str(RETAIN_BLOCKS)}
    configs = [load_config(tmp_path / node.name / "node.toml", environ=environ)
               for node in nodes]
    network = MemoryNetwork()
    with structlog.testing.capture_logs() as logs:
        validator = Node(configs[0], rpc_enabled=False,
                         transport_factory=lambda own: MemoryTransport(network,
                                                                       seed=own.key.seed))
        observer = Node(configs[1], rpc_enabled=False,
                      transport_factory=lambda own: MemoryTransport(network, seed=own.key.seed))
        # The newcomer knows the pruning observer only through its bootstrap list.
        newcomer = Node(configs[2], rpc_enabled=False,
                        transport_factory=lambda own: MemoryTransport(
                            network, seed=own.key.seed, bootstrap=(observer.transport.peer_id,)
                            if observer.transport else ()))
        builder = TransactionBuilder(NODE_CHAIN_ID, devnet_admin_key("hospital-a"))
        with trio.fail_after(NODE_TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                await nursery.start(validator.run)
                await wait_until(lambda: validator.driver is not None
                                 and validator.driver.role is Role.LEADER, "a leader")
                await nursery.start(observer.run)
                assert observer.pruner is not None and not observer.is_validator
                first_txs = await commit_blocks(validator, builder, 0, 4)
                await commit_blocks(validator, builder, 4,
                                    RETAIN_BLOCKS + PRUNE_BATCH_BLOCKS_MAX + 6)
                head = validator.chain.height  # type: ignore[union-attr]
                blocks = observer.chain.blocks  # type: ignore[union-attr]
                await wait_until(lambda: blocks.oldest_held_height() > 1, "a pruning pass")
                await wait_until(lambda: observer.chain.height == head,  # type: ignore[union-attr]
                                 "the observer at the head")
                # The observer keeps between N and N + one batch of the newest blocks.
                oldest = blocks.oldest_held_height()
                assert RETAIN_BLOCKS <= head - oldest + 1 <= RETAIN_BLOCKS + \
                    PRUNE_BATCH_BLOCKS_MAX
                assert stored_block_heights_of(observer) == [0, *range(oldest, head + 1)]
                with pytest.raises(BlockPrunedError) as raised:
                    observer.block_by_height(1)
                assert raised.value.oldest_height == oldest
                with pytest.raises(BlockPrunedError):
                    observer.tx(first_txs[0])
                assert observer.tx_status(first_txs[0]).state == "committed"
                assert observer.status().extra["oldest_block_height"] == oldest
                # The validator, told the same, keeps every block.
                assert validator.chain.blocks.oldest_held_height() == GENESIS_HEIGHT  # type: ignore[union-attr]
                assert validator.block_by_height(1) is not None
                assert validator.tx(first_txs[0]) is not None
                assert validator.pruner is not None and validator.pruner.blocks_pruned == 0

                # A fresh observer that reaches only the pruning one cannot sync from it:
                # it is told the oldest block held and does not ask again and again.
                network.partition({peer_id_from_seed(newcomer.key.seed),
                                   observer.transport.peer_id})  # type: ignore[union-attr]
                await nursery.start(newcomer.run)
                follower = newcomer.follower
                await wait_until(lambda: follower.sync_failures >= 1, "a refused range")
                failures = follower.sync_failures
                await trio.sleep(3.5)  # three more follow rounds
                assert follower.sync_failures == failures == 1
                assert newcomer.chain.height == 0  # type: ignore[union-attr]
                assert follower.statistics()["pruned_peers_skipped"] == 1
                # With the validator reachable again it syncs from there.
                network.heal()
                await wait_until(lambda: newcomer.chain.height >= head,  # type: ignore[union-attr]
                                 "the newcomer synced from the validator")

                # The pruning observer keeps following, and answers for recent blocks.
                more = await commit_blocks(validator, builder, 1_000, 3)
                await wait_until(lambda: observer.tx_status(more[-1]).state == "committed",
                                 "the observer following")
                location = observer.tx(more[-1])
                assert location is not None and location.height == validator.chain.height  # type: ignore[union-attr]
                assert observer.block_by_height(location.height) is not None
                nursery.cancel_scope.cancel()
    events = [entry["event"] for entry in logs]
    ignored = [event for event in events if "retain_blocks is ignored on a validator" in event]
    assert len(ignored) == 1, ignored
    assert any(entry["event"] == "peer pruned the blocks we need; asking other peers"
               and entry["peer_oldest_block_height"] >= oldest for entry in logs)


def stored_block_heights_of(node: Node) -> list[int]:
    assert node.store is not None
    return stored_block_heights(node.store)


# ---------------------------------------------------------------------------- real processes


@pytest.mark.slow
def test_a_real_observer_prunes_answers_rpc_and_keeps_its_marker_across_a_restart(
        tmp_path: Path) -> None:
    retain = 4
    with network(tmp_path, validators=1, observers=1, start=False) as processes:
        validator, observer = processes
        for process in processes:  # both are told; the validator must ignore it
            config = process.directory / process.node.name / "node.toml"
            text = config.read_text()
            assert "retain_blocks = 0" in text  # what `medledger init` / devnet write
            config.write_text(text.replace("retain_blocks = 0", f"retain_blocks = {retain}"))
            process.start()
        try:
            wait_for(lambda: leader_of([validator]), timeout_s=60, what="a leader")
            wait_for(lambda: observer.try_call("node_status"), timeout_s=60, what="observer")
        except AssertionError:
            print(dump_logs(processes))
            raise
        builder = TransactionBuilder("medledger-test", devnet_admin_key("hospital-a"))
        committed = []
        for index in range(retain + PRUNE_BATCH_BLOCKS_MAX + 10):  # one block each
            transaction = builder.register_party(
                party_id=f"pat-real-{index}", kind=PartyKind.PATIENT,
                signing_key=hashlib.sha256(b"rs%d" % index).digest(),
                encryption_key=hashlib.sha256(b"re%d" % index).digest())
            validator.call("tx_submit", {"raw": "0x" + transaction.raw.hex()})
            tx_id = "0x" + transaction.tx_id.hex()
            wait_for(lambda t=tx_id: validator.call("tx_status", {"tx_id": t})["state"]
                     == "committed", timeout_s=30, interval_s=0.005, what=tx_id)
            committed.append(tx_id)
        head = validator.call("chain_head")["height"]

        def oldest_held() -> int:
            status = observer.try_call("node_status") or {}
            if status.get("height") != head:
                return 0
            return int(status["extra"]["oldest_block_height"])

        oldest = wait_for(lambda: oldest_held() > 1, timeout_s=60,
                          what="the observer at the head, pruned") and oldest_held()
        assert retain <= head - oldest + 1 <= retain + PRUNE_BATCH_BLOCKS_MAX
        with pytest.raises(RpcError) as raised:
            observer.call("chain_getBlock", {"height": 1})
        assert raised.value.code == errors.PRUNED
        assert raised.value.data == {"height": 1, "oldest_height": oldest}
        assert f"the oldest block it holds is {oldest}" in raised.value.message
        with pytest.raises(RpcError) as raised:
            observer.call("chain_getTx", {"tx_id": committed[0]})
        assert raised.value.code == errors.PRUNED
        assert observer.call("tx_status", {"tx_id": committed[0]})["state"] == "committed"
        assert observer.call("chain_getTx", {"tx_id": committed[-1]})["height"] == head
        # The validator keeps every block.
        assert validator.call("chain_getBlock", {"height": 1})["header"]["height"] == 1
        assert validator.call("node_status")["extra"]["oldest_block_height"] == 0

        # After a restart the observer still knows what it holds (and prunes the part
        # batch left below its newest N at once), and follows on.
        assert observer.stop() == 0
        observer.start()
        wait_for(lambda: observer.try_call("node_status"), timeout_s=60, what="observer again")
        wait_for(lambda: oldest_held() == head - retain + 1, timeout_s=30,
                 what="the backlog pruned at start")
        with pytest.raises(RpcError) as raised:
            observer.call("chain_getBlock", {"height": oldest})
        assert raised.value.data == {"height": oldest, "oldest_height": head - retain + 1}
        transaction = builder.register_party(
            party_id="pat-real-last", kind=PartyKind.PATIENT,
            signing_key=hashlib.sha256(b"rs-last").digest(),
            encryption_key=hashlib.sha256(b"re-last").digest())
        validator.call("tx_submit", {"raw": "0x" + transaction.raw.hex()})
        last = "0x" + transaction.tx_id.hex()
        wait_for(lambda: (observer.try_call("tx_status", {"tx_id": last}) or {}).get("state")
                 == "committed", timeout_s=60, what="the observer following after a restart")
    warnings = [line for line in validator.log_text().splitlines()
                if "retain_blocks is ignored on a validator" in line]
    assert len(warnings) == 1 and json.loads(warnings[0])["level"] == "warning", warnings
    assert "retain_blocks is ignored" not in observer.log_text()
