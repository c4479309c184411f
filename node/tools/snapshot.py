"""``medledger snapshot save`` and ``medledger snapshot restore``: backups of a node's chain
state in one file (storage/backup.py has the format and what reading it checks).

Save reads one consistent state: from a running node through its admin RPC
(admin_snapshotBegin / admin_snapshotChunk / admin_snapshotEnd; the node's LevelDB is
locked by its process), or from a stopped node's data directory. Restore checks the whole
file before it writes anything, makes a new data directory (the genesis record, the state
imported with storage.statesync.StateImport and checked against the file's state root,
the head block), and removes what it made if anything fails.

What a restored directory is: an observer's data directory at the snapshot height. The
node started on it follows the chain by block sync from there. It holds no Raft state
(term, vote, log): a validator restored from a file could vote a second time in a term
it already voted in, which Raft's safety rests on never happening; so a validator whose
data is lost is restored as an observer, or rejoins with a new data directory.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import limits
from ledger.app import Genesis
from ledger.app.layout import STATE_LAYOUT_VERSION
from ledger.block import decode_block
from ledger.codec import decode
from ledger.errors import ConfigError, DecodeError, MedledgerError
from ledger.evaluation import Roots, roots_key
from node.bootstrap import write_genesis_record
from node.client import RpcClient
from node.genesis import genesis_hash, load_genesis
from node.jsonview import JsonFieldError, parse_hex
from storage.backup import (
    CHUNK_FRAME_BYTES_MAX,
    SNAPSHOT_CHUNK_BYTES_MAX,
    SnapshotHeader,
    SnapshotReader,
    SnapshotSummary,
    SnapshotWriter,
)
from storage.errors import ForeignSnapshotError, SnapshotFileError, StateChunkError
from storage.statesync import StateChunk, StateImport, export_state
from storage.store import Store

# Chunk requests one save makes at most: CHUNKS_MAX of the file format (a node answering
# more is not a node of ours).
_RPC_CHUNKS_MAX = 1 << 24


@dataclass(frozen=True, slots=True)
class RestoreReport:
    directory: Path
    summary: SnapshotSummary
    state_root: bytes

    def view(self) -> dict[str, Any]:
        """What ``restore`` prints: the file's summary, where it went, the root it checked."""
        view = summary_view(self.directory, self.summary)
        view.pop("file")
        return {"restored": str(self.directory), **view,
                "state_root": "0x" + self.state_root.hex(),
                "saved_at_ms": self.summary.header.saved_at_ms}


def summary_view(path: Path, summary: SnapshotSummary) -> dict[str, Any]:
    header = summary.header
    return {
        "file": str(path),
        "chain_id": header.chain_id,
        "genesis_hash": "0x" + header.genesis_hash.hex(),
        "state_layout": header.state_layout,
        "height": header.height,
        "block_hash": "0x" + header.block_hash.hex(),
        "applied_index": header.applied_index,
        "state_root": "0x" + header.state_root.hex(),
        "state_items": summary.items,
        "chunks": summary.chunks,
        "size_bytes": summary.size_bytes,
        "sha256": "0x" + summary.sha256.hex(),
    }


# ---------------------------------------------------------------------------- save


def save_from_rpc(url: str, output: Path, *, token: str | None,
                  force: bool = False) -> SnapshotSummary:
    """Save a running node's state through its admin RPC."""
    with RpcClient(url, token=token) as client:
        opened = client.call("admin_snapshotBegin")
        session = opened["session"]
        try:
            header = SnapshotHeader(
                chain_id=opened["chain_id"],
                genesis_hash=_hex(opened, "genesis_hash", size=32),
                state_layout=int(opened["state_layout"]),
                height=int(opened["height"]),
                block_hash=_hex(opened, "block_hash", size=32),
                applied_index=int(opened["applied_index"]),
                state_root=_hex(opened, "state_root", size=32),
                saved_at_ms=int(time.time() * 1000),
                head_block=_hex(opened, "head_block", size_max=limits.BLOB_SIZE_BYTES_MAX),
            )
            with SnapshotWriter.create(output, header, overwrite=force) as writer:
                for sequence in range(_RPC_CHUNKS_MAX):
                    answer = client.call("admin_snapshotChunk",
                                         {"session": session, "sequence": sequence})
                    data = _hex(answer, "chunk", size_max=CHUNK_FRAME_BYTES_MAX)
                    chunk = _decode_chunk(data, url, sequence)
                    writer.add_chunk(chunk)
                    if chunk.done:
                        break
                return writer.finish()
        finally:
            # Best effort: a session the node could not hear end expires on its own.
            with contextlib.suppress(MedledgerError):
                client.call("admin_snapshotEnd", {"session": session})


def save_from_data_dir(data_dir: Path, genesis_file: Path, output: Path, *,
                       force: bool = False,
                       chunk_bytes_max: int = SNAPSHOT_CHUNK_BYTES_MAX) -> SnapshotSummary:
    """Save a stopped node's state from its data directory."""
    genesis = load_genesis(genesis_file)
    if not (data_dir / "ledger.db").exists():
        raise ConfigError(f"{data_dir} holds no node data (no ledger.db)")
    with Store.open(data_dir, chain_id=genesis.chain_id) as store:
        _check_genesis_record(store, genesis, data_dir, genesis_file)
        assert 0 < chunk_bytes_max <= SNAPSHOT_CHUNK_BYTES_MAX
        chunks = export_state(store.blocks, chunk_bytes_max)
        try:  # closing the generator closes its LevelDB snapshot
            first = next(chunks)
            if first.height == 0:
                raise ConfigError(f"{data_dir} holds no block yet: nothing to save")
            stored = store.blocks.block(first.height)
            assert stored is not None, f"head block {first.height} missing"
            roots = store.blocks.state_get(roots_key(first.height))
            assert roots is not None, f"roots of height {first.height} missing"
            header = SnapshotHeader(
                chain_id=genesis.chain_id, genesis_hash=genesis_hash(genesis),
                state_layout=STATE_LAYOUT_VERSION, height=first.height, block_hash=first.block_hash,
                applied_index=first.applied_index, state_root=Roots.decode(roots).state_root,
                saved_at_ms=int(time.time() * 1000), head_block=stored.block_bytes,
            )
            with SnapshotWriter.create(output, header, overwrite=force) as writer:
                writer.add_chunk(first)
                for chunk in chunks:
                    writer.add_chunk(chunk)
                return writer.finish()
        finally:
            close = getattr(chunks, "close", None)  # a generator: its finally
            if close is not None:
                close()


def _check_genesis_record(store: Store, genesis: Genesis, data_dir: Path,
                          genesis_file: Path) -> None:
    stored = store.blocks.block(0)
    if stored is None or stored.block_hash != genesis_hash(genesis):
        raise ConfigError(f"{data_dir} holds a chain of another genesis than {genesis_file}")


def _decode_chunk(data: bytes, url: str, sequence: int) -> StateChunk:
    try:
        return decode(StateChunk, data, size_bytes_max=CHUNK_FRAME_BYTES_MAX)
    except DecodeError as error:
        raise SnapshotFileError(f"{url} answered chunk {sequence} that does not decode "
                                f"({error}); nothing was saved") from None


def _hex(answer: Any, name: str, *, size: int | None = None,
         size_max: int | None = None) -> bytes:
    try:
        return parse_hex(answer[name], name, size=size, size_max=size_max)
    except (KeyError, TypeError, JsonFieldError) as error:
        raise SnapshotFileError(f"the node's snapshot answer has no valid {name} "
                                f"({error}); nothing was saved") from None


# ---------------------------------------------------------------------------- restore


def restore(path: Path, directory: Path, genesis_file: Path) -> RestoreReport:
    """Verify ``path`` against ``genesis_file`` and make a data directory from it."""
    genesis = load_genesis(genesis_file)
    with SnapshotReader.open(path) as reader:
        summary = reader.verify()  # the whole file's structure and checksum, first
    header = summary.header
    _check_chain(path, header, genesis, genesis_file)
    if header.state_layout != STATE_LAYOUT_VERSION:
        raise SnapshotFileError(
            f"snapshot file {path} is refused: it holds a state of layout "
            f"{header.state_layout}; this release applies layout {STATE_LAYOUT_VERSION} "
            "(restore it with the release that saved it)")
    _check_head_block(path, header)
    _refuse_used_directory(directory)
    made = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        root = _restore_into(path, directory, genesis, header)
    except BaseException:
        _remove_restored(directory, made=made)
        raise
    return RestoreReport(directory, summary, root)


def _restore_into(path: Path, directory: Path, genesis: Genesis,
                  header: SnapshotHeader) -> bytes:
    with Store.open(directory, chain_id=genesis.chain_id) as store:
        write_genesis_record(store, genesis)
        importer = StateImport.begin(store.blocks, height=header.height,
                                     block_hash=header.block_hash,
                                     applied_index=header.applied_index)
        try:
            # Read again (the file could have changed since it was verified): chunks()
            # checks the checksum again after the last chunk, before finish().
            with SnapshotReader.open(path) as reader:
                if reader.header != header:
                    raise SnapshotFileError(f"snapshot file {path} changed while it was "
                                            "restored")
                for chunk in reader.chunks():
                    importer.add_chunk(chunk)
            root = importer.finish(expected_state_root=header.state_root)
        except StateChunkError as error:
            importer.abort()
            raise SnapshotFileError(f"snapshot file {path} is refused: its state does not "
                                    f"add up to its state root ({error})") from None
        except BaseException:
            importer.abort()
            raise
        store.blocks.store_imported_head_block(header.height, header.block_hash,
                                               header.head_block)
    return root


def _check_chain(path: Path, header: SnapshotHeader, genesis: Genesis,
                 genesis_file: Path) -> None:
    ours = genesis_hash(genesis)
    if header.chain_id != genesis.chain_id or header.genesis_hash != ours:
        raise ForeignSnapshotError(
            f"snapshot file {path} is refused: it is of chain {header.chain_id!r} (genesis "
            f"0x{header.genesis_hash.hex()}), not of the chain of {genesis_file}: "
            f"{genesis.chain_id!r} (genesis 0x{ours.hex()})")


def _check_head_block(path: Path, header: SnapshotHeader) -> None:
    if header.height < 1 or header.applied_index < 1:
        raise SnapshotFileError(f"snapshot file {path} is refused: it is of height "
                                f"{header.height} / applied index {header.applied_index}, "
                                "before any block")
    try:
        block = decode_block(header.head_block, chain_id=header.chain_id)
    except DecodeError as error:
        raise SnapshotFileError(f"snapshot file {path} is refused: its head block does "
                                f"not decode ({error})") from None
    if (block.hash != header.block_hash or block.header.height != header.height
            or block.header.raft_index > header.applied_index):
        raise SnapshotFileError(
            f"snapshot file {path} is refused: its head block is block "
            f"{block.header.height} 0x{block.hash.hex()}, not the header's block "
            f"{header.height} 0x{header.block_hash.hex()}")


def _refuse_used_directory(directory: Path) -> None:
    if directory.exists():
        if not directory.is_dir():
            raise ConfigError(f"{directory} exists and is not a directory")
        if any(directory.iterdir()):
            raise ConfigError(f"{directory} is not empty: a snapshot is restored into a new "
                              "or empty directory only (move the old data away first)")


def _remove_restored(directory: Path, *, made: bool) -> None:
    """Leave nothing of a failed restore: the directory if we made it, else (it was
    empty) what we put in it."""
    if made:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


__all__ = ["RestoreReport", "restore", "save_from_data_dir", "save_from_rpc", "summary_view"]
