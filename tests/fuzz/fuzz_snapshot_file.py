"""Snapshot (backup) files as ``medledger snapshot verify`` / ``restore`` read them
(storage.backup.SnapshotReader). A file that verifies must write back, chunk by chunk, to
the same bytes (one value has one encoding).

Allowed: SnapshotFileError."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ledger.commitment import accumulator_of, encode_accumulator
from storage.backup import SnapshotHeader, SnapshotReader, SnapshotWriter, verify_snapshot_file
from storage.errors import SnapshotFileError
from storage.statesync import StateChunk, StateItem

ALLOWED = (SnapshotFileError,)
_directory = tempfile.TemporaryDirectory(prefix="medledger-fuzz-snapshot-")
_path = Path(_directory.name) / "input.snap"
_written = Path(_directory.name) / "again.snap"

HEADER = SnapshotHeader(
    chain_id="medledger-test", genesis_hash=bytes(range(32)), state_layout=3, height=7,
    block_hash=bytes(range(32, 64)), applied_index=9, state_root=bytes(range(64, 96)),
    saved_at_ms=1_767_225_600_000, head_block=b"\x01block seven",
)


def one_input(data: bytes) -> None:
    _path.write_bytes(data)
    summary = verify_snapshot_file(_path)
    _written.unlink(missing_ok=True)
    with SnapshotReader.open(_path) as reader, \
            SnapshotWriter.create(_written, reader.header) as writer:
        for chunk in reader.chunks():
            writer.add_chunk(chunk)
        again = writer.finish()
    assert _written.read_bytes() == data, "a verified file does not write back the same"
    assert again.sha256 == summary.sha256


def _file(items: list[tuple[bytes, bytes]], chunk_items: int) -> bytes:
    pieces = [items[start:start + chunk_items] for start in range(0, len(items), chunk_items)]
    pieces = pieces or [[]]
    path = Path(_directory.name) / "seed.snap"
    path.unlink(missing_ok=True)
    with SnapshotWriter.create(path, HEADER) as writer:
        for sequence, piece in enumerate(pieces):
            done = sequence == len(pieces) - 1
            writer.add_chunk(StateChunk(
                height=HEADER.height, block_hash=HEADER.block_hash,
                applied_index=HEADER.applied_index, sequence=sequence,
                start_key=b"" if sequence == 0 else piece[0][0],
                items=tuple(StateItem(key, value) for key, value in piece),
                next_key=b"" if done else pieces[sequence + 1][0][0], done=done,
                accumulator=encode_accumulator(accumulator_of(piece))))
        writer.finish()
    return path.read_bytes()


def seeds() -> dict[str, bytes]:
    items = [(b"party\x00pat-%03d" % number, b"value %d" % number) for number in range(12)]
    return {"three-chunks": _file(items, 4), "one-chunk": _file(items[:2], 8),
            "empty-state": _file([], 1)}
