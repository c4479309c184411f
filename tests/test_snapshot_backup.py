"""Backups: the snapshot file (storage/backup.py), save and restore (node/tools/snapshot.py),
the node's snapshot sessions (node/snapshot_sessions.py), and the whole story on real processes:
save from a running node under load, restore into a new directory, start it as an
observer, and it follows the chain with the same state."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_harness import ROOT, NodeProcess, dump_logs, leader_of, network, wait_for
from rpc_fakes import http_client, rpc, running_server

from consensus.types import Entry, EntryType
from ledger.app import queries
from ledger.app.layout import STATE_LAYOUT_VERSION
from ledger.bodies import PartyKind, RegisterParty
from ledger.codec import decode
from ledger.commitment import accumulator_of, encode_accumulator
from ledger.crypto import SigningKey
from ledger.evaluation import committed_items, state_root_of_items
from ledger.sdk.devnet import devnet_admin_key, devnet_genesis
from ledger.tx import sign_transaction
from ledger.txtypes import TxType
from node.bootstrap import write_genesis_record
from node.chain import Chain, StoreStateReader
from node.cli import main
from node.clock import ManualClock
from node.genesis import write_genesis
from node.rpc import errors as rpc_errors
from node.snapshot_sessions import (
    SNAPSHOT_SESSION_IDLE_SECONDS_MAX,
    SNAPSHOT_SESSIONS_MAX,
    SnapshotSessionNotFoundError,
    SnapshotSessions,
    SnapshotUnavailableError,
)
from node.tools.snapshot import restore, save_from_data_dir
from storage.backup import MAGIC, SnapshotReader, SnapshotWriter, verify_snapshot_file
from storage.errors import BlockPrunedError, ForeignSnapshotError, SnapshotFileError
from storage.statesync import StateChunk, StateItem
from storage.store import Store

CHAIN_ID = "medledger-backup"
GENESIS_TIME_MS = 1_700_000_000_000
VALIDATOR = SigningKey(bytes([7]) * 32)
ADMIN = devnet_admin_key("hospital-a")
BLOCKS = 4
PARTIES_PER_BLOCK = 40
# Small chunks, so a file of a few hundred items holds many of them.
CHUNK_BYTES = 4096


# ---------------------------------------------------------------------------- a chain


def register_party(number: int, *, chain_id: str = CHAIN_ID, nonce: int) -> Any:
    party_id = f"pat-{number:05d}"
    party_key = hashlib.sha256(party_id.encode()).digest()
    body = RegisterParty(party_id, PartyKind.PATIENT, party_key, party_key, (), False)
    return sign_transaction(ADMIN, chain_id=chain_id, tx_type=TxType.REGISTER_PARTY,
                            nonce=nonce, body=body)


class SourceChain:
    """A chain applied block by block on a real store, as a validator's chain is."""

    def __init__(self, directory: Path, *, chain_id: str = CHAIN_ID,
                 genesis_time_ms: int = GENESIS_TIME_MS) -> None:
        self.genesis = devnet_genesis(chain_id, [VALIDATOR.public_key],
                                      genesis_time_ms=genesis_time_ms)
        self.genesis_file = directory / "genesis.json"
        directory.mkdir(parents=True, exist_ok=True)
        write_genesis(self.genesis_file, self.genesis)
        self.data_dir = directory / "data"
        self.store = Store.open(self.data_dir, chain_id=chain_id)
        write_genesis_record(self.store, self.genesis)
        self.chain = Chain(chain_id=chain_id, store=self.store,
                           genesis_time_ms=genesis_time_ms, sync_applies=True)
        self.parties = 0
        self.raft_index = 1

    def next_block(self, parties: int = PARTIES_PER_BLOCK) -> bytes:
        """Build the next block (``parties`` registrations) and apply it here."""
        txs = []
        for _ in range(parties):
            self.parties += 1
            txs.append(register_party(self.parties, chain_id=self.chain.chain_id,
                                      nonce=self.parties))
        height, head_hash, timestamp_ms = self.chain.head()
        self.raft_index += 1
        block = self.chain.build_block(
            VALIDATOR, txs, height=height + 1, previous_hash=head_hash,
            previous_timestamp_ms=timestamp_ms, now_ms=timestamp_ms + 1000, raft_term=1,
            raft_index=self.raft_index, previous_state_height=self.chain.named_state_height(),
            validators_hash=self.chain.head_validator_sets()[1],
            certificate=self.chain.certify_head([VALIDATOR]))
        data = block.encode()
        result = self.chain.apply_entry(Entry(1, self.raft_index, EntryType.NORMAL, data))
        assert result.applied is not None, result.skipped_reason
        return data

    def close(self) -> None:
        self.store.close()


def state_of(store: Store) -> dict[bytes, bytes]:
    return dict(store.blocks.state_items())


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, Any]]]:
    """A chain of BLOCKS blocks saved (stopped node) to a file; (file, genesis, facts)."""
    directory = tmp_path_factory.mktemp("source")
    source = SourceChain(directory)
    for _ in range(BLOCKS):
        source.next_block()
    facts = {"height": source.chain.height, "head_hash": source.chain.head_hash,
             "roots": source.chain.roots(source.chain.height),
             "state": state_of(source.store), "applied_index": source.chain.applied_index()}
    source.close()
    path = directory / "backup.snap"
    summary = save_from_data_dir(source.data_dir, source.genesis_file, path,
                                 chunk_bytes_max=CHUNK_BYTES)
    assert summary.chunks > 5, "the file holds many chunks"
    facts["summary"] = summary
    yield path, source.genesis_file, facts


# ---------------------------------------------------------------------------- round trip


def test_a_saved_file_restores_the_same_state_and_the_chain_follows_from_it(
        saved: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    path, genesis_file, facts = saved
    summary = verify_snapshot_file(path)
    assert summary.header.height == facts["height"] == BLOCKS
    assert summary.header.state_root == facts["roots"].state_root
    assert summary.items == len(facts["state"])

    report = restore(path, tmp_path / "restored", genesis_file)
    assert report.state_root == facts["roots"].state_root
    with Store.open(tmp_path / "restored", chain_id=CHAIN_ID) as store:
        head = store.blocks.head()
        assert head is not None
        assert (head.height, head.block_hash) == (facts["height"], facts["head_hash"])
        assert store.blocks.applied_index() == facts["applied_index"]
        assert state_of(store) == facts["state"]
        assert state_root_of_items(store.blocks.state_items(), head.height) \
            == facts["roots"].state_root
        # The queries of the workload answer the same.
        reader = StoreStateReader(store.blocks)
        assert queries.party(reader, "pat-00001") is not None
        assert queries.party(reader, f"pat-{BLOCKS * PARTIES_PER_BLOCK:05d}") is not None
        # The head block is held; the blocks below it never were, and say so.
        assert store.blocks.block(head.height) is not None
        with pytest.raises(BlockPrunedError, match=f"oldest block it holds is {BLOCKS}"):
            store.blocks.block(1)
        assert store.blocks.oldest_held_height() == BLOCKS


def test_a_restored_store_applies_the_chain_s_next_blocks_with_the_same_roots(
        tmp_path: Path) -> None:
    source = SourceChain(tmp_path / "source")
    for _ in range(3):
        source.next_block()
    source.close()
    path = tmp_path / "backup.snap"
    save_from_data_dir(source.data_dir, source.genesis_file, path, chunk_bytes_max=CHUNK_BYTES)
    restore(path, tmp_path / "restored", source.genesis_file)
    source.store = Store.open(source.data_dir, chain_id=CHAIN_ID)
    source.chain = Chain(chain_id=CHAIN_ID, store=source.store,
                         genesis_time_ms=GENESIS_TIME_MS)
    with Store.open(tmp_path / "restored", chain_id=CHAIN_ID) as store:
        follower = Chain(chain_id=CHAIN_ID, store=store, genesis_time_ms=GENESIS_TIME_MS)
        for _ in range(3):
            data = source.next_block()
            follower.apply_synced_block(data)  # checks the header's roots against ours
            assert follower.head() == source.chain.head()
            assert follower.roots(follower.height) == source.chain.roots(source.chain.height)
    source.close()


# ---------------------------------------------------------------------------- damage


def damaged_copy(path: Path, directory: Path, change: Any) -> Path:
    data = bytearray(path.read_bytes())
    changed = change(data)
    target = directory / "damaged.snap"
    target.write_bytes(bytes(changed if changed is not None else data))
    return target


def frame_offsets(path: Path) -> dict[str, int]:
    """Where the header's body and the first chunk's body start."""
    data = path.read_bytes()
    header_body = len(MAGIC) + 2 + 5
    header_length = int.from_bytes(data[header_body - 4:header_body], "big")
    chunk_body = header_body + header_length + 5
    return {"header": header_body, "chunk": chunk_body, "size": len(data)}


def flip(offset: int) -> Any:
    def change(data: bytearray) -> None:
        data[offset] ^= 0x40
    return change


DAMAGE = {
    "truncated in the header": (lambda o: lambda d: d[: o["header"] + 20],
                                "truncated: it ends at byte"),
    "truncated in a chunk": (lambda o: lambda d: d[: o["chunk"] + 100],
                             "truncated: it ends at byte"),
    "truncated before its trailer": (lambda o: lambda d: d[: o["size"] - 49],
                                     "truncated: it ends at byte"),
    "truncated in its checksum": (lambda o: lambda d: d[: o["size"] - 1],
                                  "truncated: it ends at byte"),
    "a byte flipped in a chunk": (lambda o: flip(o["chunk"] + 300),
                                  "SHA-256 checksum does not match"),
    # Caught by whichever check meets it first: here the header's block hash is not its
    # chunks'.
    "a byte flipped in the header": (lambda o: flip(o["header"] + 60),
                                     "damaged: chunk 0 is of another state"),
    "a byte flipped in the header's head block": (lambda o: flip(o["header"] + 200),
                                                  "SHA-256 checksum does not match"),
    "a byte flipped in the checksum": (lambda o: flip(o["size"] - 3),
                                       "SHA-256 checksum does not match"),
    "wrong magic": (lambda o: flip(1), "not a medledger snapshot file"),
    "another format version": (lambda o: flip(len(MAGIC)), "snapshot format version"),
    "data after the trailer": (lambda o: lambda d: d + b"\x00",
                               "data follows the trailer"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
@pytest.mark.parametrize("directory_exists", [False, True])
def test_a_damaged_file_is_refused_with_a_clear_message_and_nothing_is_left(
        saved: tuple[Path, Path, dict[str, Any]], tmp_path: Path, kind: str,
        directory_exists: bool) -> None:
    path, genesis_file, _ = saved
    make_change, message = DAMAGE[kind]
    damaged = damaged_copy(path, tmp_path, make_change(frame_offsets(path)))
    target = tmp_path / "restored"
    if directory_exists:
        target.mkdir()
    with pytest.raises(SnapshotFileError, match=message) as refused:
        restore(damaged, target, genesis_file)
    assert str(damaged) in str(refused.value)
    if directory_exists:
        assert list(target.iterdir()) == []
    else:
        assert not target.exists()


def test_the_cli_prints_the_refusal_and_exits_non_zero(
        saved: tuple[Path, Path, dict[str, Any]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, genesis_file, facts = saved
    damaged = damaged_copy(path, tmp_path, flip(frame_offsets(path)["chunk"] + 500))
    target = tmp_path / "restored"
    code = main(["snapshot", "restore", str(damaged), "--dir", str(target),
                 "--genesis", str(genesis_file)])
    assert code == 1
    error = capsys.readouterr().err
    assert error.startswith(f"medledger: snapshot file {damaged} is refused: damaged: its "
                            "SHA-256 checksum does not match")
    assert not target.exists()
    assert main(["snapshot", "verify", str(damaged)]) == 1
    capsys.readouterr()
    # A non-empty directory is refused as a bad input (2), and left alone.
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    code = main(["snapshot", "restore", str(path), "--dir", str(target),
                 "--genesis", str(genesis_file)])
    assert code == 2
    assert "is not empty" in capsys.readouterr().err
    assert [child.name for child in target.iterdir()] == ["keep.txt"]
    # And the sound file restores, printing what it restored.
    fresh = tmp_path / "fresh"
    assert main(["snapshot", "restore", str(path), "--dir", str(fresh),
                 "--genesis", str(genesis_file)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["height"] == facts["height"]
    assert printed["state_root"] == "0x" + facts["roots"].state_root.hex()
    assert printed["chain_id"] == CHAIN_ID


@pytest.mark.parametrize("other", ["chain id", "genesis"])
def test_a_file_of_another_chain_is_refused_naming_both_chains(
        saved: tuple[Path, Path, dict[str, Any]], tmp_path: Path, other: str) -> None:
    path, _, _ = saved
    if other == "chain id":
        genesis = devnet_genesis("medledger-other", [VALIDATOR.public_key],
                                 genesis_time_ms=GENESIS_TIME_MS)
    else:  # same chain id, another genesis
        genesis = devnet_genesis(CHAIN_ID, [VALIDATOR.public_key],
                                 genesis_time_ms=GENESIS_TIME_MS + 1)
    other_genesis = tmp_path / "other-genesis.json"
    write_genesis(other_genesis, genesis)
    target = tmp_path / "restored"
    with pytest.raises(ForeignSnapshotError) as refused:
        restore(path, target, other_genesis)
    message = str(refused.value)
    assert f"it is of chain {CHAIN_ID!r}" in message
    assert f"not of the chain of {other_genesis}: {genesis.chain_id!r}" in message
    assert message.count("(genesis 0x") == 2
    assert not target.exists()


def test_a_file_whose_state_does_not_add_up_to_its_root_is_refused(
        saved: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    """A file rewritten with a sound checksum and one altered party (its chunk's hash
    recomputed): the import refuses it at finish and leaves no directory."""
    path, genesis_file, _ = saved
    forged = tmp_path / "forged.snap"
    with SnapshotReader.open(path) as reader, \
            SnapshotWriter.create(forged, reader.header) as writer:
        for chunk in reader.chunks():
            if chunk.sequence == 1:
                items = list(chunk.items)
                items[0] = StateItem(items[0].key, items[0].value + b"!")
                pairs = [(item.key, item.value) for item in items]
                accumulator = accumulator_of(committed_items(pairs, chunk.height))
                chunk = dataclasses.replace(chunk, items=tuple(items),
                                            accumulator=encode_accumulator(accumulator))
            writer.add_chunk(chunk)
        writer.finish()
    verify_snapshot_file(forged)  # sound as a file
    target = tmp_path / "restored"
    with pytest.raises(SnapshotFileError, match="its state does not add up to its state root"):
        restore(forged, target, genesis_file)
    assert not target.exists()


def test_a_file_of_another_state_layout_is_refused(
        saved: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    path, genesis_file, _ = saved
    older = tmp_path / "older.snap"
    with SnapshotReader.open(path) as reader:
        header = dataclasses.replace(reader.header, state_layout=reader.header.state_layout - 1)
        with SnapshotWriter.create(older, header) as writer:
            for chunk in reader.chunks():
                writer.add_chunk(chunk)
            writer.finish()
    target = tmp_path / "restored"
    with pytest.raises(SnapshotFileError, match=(
            f"holds a state of layout {STATE_LAYOUT_VERSION - 1}; this release applies "
            f"layout {STATE_LAYOUT_VERSION}")):
        restore(older, target, genesis_file)
    assert not target.exists()


def test_save_never_leaves_a_half_written_file(tmp_path: Path) -> None:
    source = SourceChain(tmp_path / "source")
    source.next_block()
    source.close()
    output = tmp_path / "backup.snap"
    output.write_text("an older backup")
    with pytest.raises(SnapshotFileError, match="exists"):
        save_from_data_dir(source.data_dir, source.genesis_file, output)
    assert output.read_text() == "an older backup"
    assert not (tmp_path / "backup.snap.partial").exists()


# ---------------------------------------------------------------------------- sessions


async def test_sessions_serve_one_consistent_state_while_blocks_are_applied(
        tmp_path: Path) -> None:
    source = SourceChain(tmp_path / "source")
    for _ in range(2):
        source.next_block()
    clock = ManualClock(monotonic=100.0)
    sessions = SnapshotSessions(store=lambda: source.store, chain_id=CHAIN_ID,
                                genesis_hash=b"\x01" * 32, log=_NullLog(), clock=clock,
                                chunk_bytes_max=CHUNK_BYTES)
    opened = await sessions.begin()
    assert opened.height == 2
    roots_at_begin = source.chain.roots(2)
    assert opened.state_root == roots_at_begin.state_root
    state_at_begin = state_of(source.store)
    source.next_block()  # the node applies on; the session still reads height 2
    items: dict[bytes, bytes] = {}
    sequence = 0
    while True:
        chunk_data = await sessions.chunk(opened.session_id, sequence)
        again = await sessions.chunk(opened.session_id, sequence)  # a retry
        assert again == chunk_data
        chunk = decode(StateChunk, chunk_data.data, size_bytes_max=1 << 24)
        assert chunk.height == 2
        items.update((item.key, item.value) for item in chunk.items)
        if chunk_data.done:
            break
        sequence += 1
    assert sequence > 2
    assert items == state_at_begin
    with pytest.raises(SnapshotSessionNotFoundError, match="complete"):
        await sessions.chunk(opened.session_id, sequence + 1)
    sessions.end(opened.session_id)
    with pytest.raises(SnapshotSessionNotFoundError, match="no snapshot session"):
        await sessions.chunk(opened.session_id, 0)
    source.close()


async def test_sessions_are_bounded_and_idle_ones_expire(tmp_path: Path) -> None:
    source = SourceChain(tmp_path / "source")
    source.next_block()
    clock = ManualClock(monotonic=100.0)
    sessions = SnapshotSessions(store=lambda: source.store, chain_id=CHAIN_ID,
                                genesis_hash=b"\x01" * 32, log=_NullLog(), clock=clock,
                                chunk_bytes_max=CHUNK_BYTES)
    opened = [await sessions.begin() for _ in range(SNAPSHOT_SESSIONS_MAX)]
    with pytest.raises(SnapshotUnavailableError, match="open already"):
        await sessions.begin()
    with pytest.raises(SnapshotSessionNotFoundError, match="in order, the next is 1"):
        await sessions.chunk(opened[0].session_id, 5)
    clock.advance(SNAPSHOT_SESSION_IDLE_SECONDS_MAX / 2)
    await sessions.chunk(opened[1].session_id, 1)  # in use: stays
    clock.advance(SNAPSHOT_SESSION_IDLE_SECONDS_MAX / 2 + 1)
    sessions.expire_idle()
    assert sessions.statistics()["expired"] == 1
    with pytest.raises(SnapshotSessionNotFoundError, match="expired"):
        await sessions.chunk(opened[0].session_id, 1)
    await sessions.begin()  # room again
    sessions.close_all()
    assert sessions.statistics()["open"] == 0
    source.close()


async def test_admin_snapshot_methods_need_the_token() -> None:
    token = "s3cret-token"
    async with running_server(admin_token=token) as running, http_client(running) as client:
        answer = await rpc(client, "admin_snapshotBegin")
        assert answer["error"]["code"] == rpc_errors.UNAUTHORIZED
        headers = {"authorization": f"Bearer {token}"}
        answer = await rpc(client, "admin_snapshotBegin", headers=headers)
        assert answer["error"]["code"] == rpc_errors.NOT_READY  # the fake holds no store
        answer = await rpc(client, "admin_snapshotChunk",
                           {"session": "0xab", "sequence": 0}, headers=headers)
        assert answer["error"]["code"] == rpc_errors.NOT_FOUND
        answer = await rpc(client, "chain_getRoots", {"height": 99})
        assert answer["error"]["code"] == rpc_errors.NOT_FOUND


class _NullLog:
    def info(self, *args: Any, **kwargs: Any) -> None:
        pass

    def warning(self, *args: Any, **kwargs: Any) -> None:
        pass


# ---------------------------------------------------------------------------- real processes

TOKEN = "backup-admin-token"
LOAD_TXS = 600
LOAD_BATCH_TXS = 20
LOAD_PAUSE_SECONDS = 0.1  # between batches: the load lasts a few seconds, across the save


class Load:
    """REGISTER_PARTY txs from one member key, in batches, on a thread, until stopped."""

    def __init__(self, url: str) -> None:
        from node.client import RpcClient

        self.client = RpcClient(url, timeout_s=10.0)
        self.nonce = int(time.time() * 1000)
        self.sent: list[str] = []
        self.party_ids: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.sent) < LOAD_TXS:
            raws = []
            for _ in range(LOAD_BATCH_TXS):
                self.nonce += 1
                number = len(self.party_ids) + 1
                party_id = f"load-{number:05d}"
                party_key = hashlib.sha256(party_id.encode()).digest()
                body = RegisterParty(party_id, PartyKind.PATIENT, party_key, party_key, (),
                                     False)
                raws.append("0x" + sign_transaction(
                    ADMIN, chain_id=E2E_CHAIN_ID, tx_type=TxType.REGISTER_PARTY,
                    nonce=self.nonce, body=body).raw.hex())
                self.party_ids.append(party_id)
            try:
                answers = self.client.call("tx_submitBatch", {"raws": raws})
            except Exception as error:
                self.errors.append(str(error))
                return
            self.sent += [answer["tx_id"] for answer in answers if answer["accepted"]]
            time.sleep(LOAD_PAUSE_SECONDS)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)
        self.client.close()


E2E_CHAIN_ID = "medledger-test"


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *arguments], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def height_of(process: NodeProcess) -> int:
    return int((process.try_call("chain_head") or {}).get("height", 0))


@pytest.mark.slow
def test_save_under_load_restore_start_and_follow_with_the_same_state(tmp_path: Path) -> None:
    with network(tmp_path, validators=1, observers=1, start=False) as processes:
        source, restored = processes
        config = tmp_path / source.node.name / "node.toml"
        config.write_text(config.read_text().replace('admin_token = ""',
                                                     f'admin_token = "{TOKEN}"'))
        source.start()
        try:
            wait_for(lambda: leader_of([source]), timeout_s=30, what="a leader")
        except AssertionError:
            print(dump_logs(processes))
            raise
        load = Load(source.node.rpc_url)
        load.start()
        try:
            wait_for(lambda: height_of(source) >= 3, timeout_s=20, what="a few blocks")
            backup = tmp_path / "backup.snap"
            sent_before_save = len(load.sent)
            saved = cli("snapshot", "save", "--rpc", source.node.rpc_url, "--token", TOKEN,
                        "-o", str(backup))
            assert saved.returncode == 0, saved.stderr
            saved_view = json.loads(saved.stdout)
            snapshot_height = saved_view["height"]
            assert snapshot_height >= 3
            # The node kept committing the load while it served the snapshot.
            wait_for(lambda: height_of(source) > snapshot_height, timeout_s=20,
                     what="blocks after the snapshot")
            sent_after_save = len(load.sent)
        finally:
            load.stop()
        print(f"sent before the save {sent_before_save}, after {sent_after_save}, "
              f"in all {len(load.sent)}; snapshot height {snapshot_height}")
        assert 0 < sent_before_save < sent_after_save, "the save ran under load"
        assert not load.errors, load.errors
        assert len(load.sent) > 100
        last = load.sent[-1]
        wait_for(lambda: (source.try_call("tx_status", {"tx_id": last}) or {}).get("state")
                 == "committed", timeout_s=30, what="the load committed")

        wrong = cli("snapshot", "save", "--rpc", source.node.rpc_url, "--token", "wrong",
                    "-o", str(tmp_path / "refused.snap"))
        assert wrong.returncode == 1 and "Unauthorized" in wrong.stderr
        assert not (tmp_path / "refused.snap").exists()

        data_dir = tmp_path / restored.node.name / "data"
        assert not data_dir.exists()
        restored_run = cli("snapshot", "restore", str(backup), "--dir", str(data_dir),
                           "--genesis", str(tmp_path / "genesis.json"))
        assert restored_run.returncode == 0, restored_run.stderr
        assert json.loads(restored_run.stdout)["height"] == snapshot_height

        restored.start()
        head = height_of(source)
        try:
            wait_for(lambda: height_of(restored) >= head, timeout_s=30,
                     what="the restored observer to follow past the snapshot")
        except AssertionError:
            print(dump_logs(processes))
            raise
        # Its state root at the snapshot height is the source's (and at the head too).
        for height in (snapshot_height, head):
            assert restored.call("chain_getRoots", {"height": height}) \
                == source.call("chain_getRoots", {"height": height})
        assert restored.call("chain_getRoots", {"height": snapshot_height})["state_root"] \
            == saved_view["state_root"]
        # The workload's queries answer the same, before and after the snapshot height.
        for party_id in (load.party_ids[0], load.party_ids[len(load.sent) // 2],
                         load.party_ids[len(load.sent) - 1]):
            answer = restored.call("records_party", {"party_id": party_id})
            assert answer is not None and answer == source.call("records_party",
                                                                {"party_id": party_id})
        tx = restored.call("tx_status", {"tx_id": load.sent[0]})
        assert tx == source.call("tx_status", {"tx_id": load.sent[0]})
        # Blocks below the snapshot were never held there: it says so.
        status = restored.call("node_status")
        assert status["role"] == "observer"
        assert status["extra"]["oldest_block_height"] == snapshot_height
        with pytest.raises(Exception, match="-32012"):
            restored.call("chain_getBlock", {"height": 1})
        assert restored.call("chain_getBlock", {"height": head})["hash"] \
            == source.call("chain_getBlock", {"height": head})["hash"]
