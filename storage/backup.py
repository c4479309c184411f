"""The snapshot (backup) file: one consistent state of a node's chain, self-describing and
checksummed, written by ``medledger snapshot save`` and read by ``snapshot restore``.

It lives in storage/ because it is a stored form of what storage/statesync.py exports: the
state chunks go into the file exactly as they go on the wire (``StateChunk`` codec
structs), and the restore imports them with :class:`storage.statesync.StateImport`. Like
the block store, this module treats the head block as opaque bytes; checking it against
the chain (decoding it, its hash and height) and the file against a genesis file is the
caller's part (node/tools/snapshot.py).

Layout (integers big-endian)::

    magic            MAGIC (12 bytes)
    format version   u16, FORMAT_VERSION
    frame H          tag b"H", u32 length, SnapshotHeader (codec): chain id, genesis
                     hash, state layout version, height, block hash, applied index,
                     state root at that height, the time it was saved, the head block
    frame C ...      tag b"C", u32 length, StateChunk (codec), sequence 0, 1, ...; the
                     last one is ``done``
    frame E          tag b"E", u32 length 40: chunk count u64, SHA-256 of every byte of
                     the file before the digest (magic to count included)
    end of file

The magic starts with a byte above 127 and holds CR LF and ^Z (as PNG's does), so a copy
that strips the high bit or rewrites line ends is caught at the first bytes. Reading
checks everything it can name: the magic, the version, each frame's tag and length
(bounded, so a damaged length cannot make us allocate gigabytes), the header and each
chunk's strict decoding, that each chunk is of the header's height and in sequence, the
chunk count, the checksum, and that nothing follows the trailer. Any of these failing is
a :class:`~storage.errors.SnapshotFileError` naming the file and what is wrong.

What the checksum does not do: prove the state is the chain's. The import checks that the
chunks add up to the state root the state holds for its height and that this is the
header's root (``StateImport.finish``); the node then checks that root against the
headers of the blocks it follows (evaluation.rejection stops a node whose roots differ).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ledger import limits
from ledger.codec import Bytes, Identifier, Struct, UInt, decode
from ledger.errors import DecodeError
from storage import keys
from storage.blockstore import STATE_KEY_BYTES_MAX, STATE_VALUE_BYTES_MAX
from storage.errors import SnapshotFileError
from storage.statesync import STATE_CHUNK_ITEMS_MAX, StateChunk

MAGIC = b"\x89medsnap\r\n\x1a\n"
FORMAT_VERSION = 1
_VERSION = struct.Struct(">H")
_FRAME = struct.Struct(">cI")  # tag, body length
_TRAILER = struct.Struct(">Q32s")  # chunk count, SHA-256

TAG_HEADER = b"H"
TAG_CHUNK = b"C"
TAG_END = b"E"

# A header holds one block (at most a blob) and a few small fields.
HEADER_BYTES_MAX = limits.BLOB_SIZE_BYTES_MAX + 4096
# A chunk is at most STATE_CHUNK_ITEMS_MAX items; its keys and values are bounded by the
# exporter's chunk_bytes_max, but one item always travels whole: so at most the larger of
# the bytes we export per chunk and one largest item, plus per-item encoding overhead
# (a few bytes each). 8 MiB bounds every chunk this format's writers produce
# (SNAPSHOT_CHUNK_BYTES_MAX) and any one item, and what a damaged length makes us read.
CHUNK_FRAME_BYTES_MAX = 8 * 1024 * 1024
# Keys and values per chunk that save asks the exporter for: 1 MiB (2 MiB of hex in one
# RPC answer, a few milliseconds of a worker thread per chunk).
SNAPSHOT_CHUNK_BYTES_MAX = 1024 * 1024
assert SNAPSHOT_CHUNK_BYTES_MAX + STATE_KEY_BYTES_MAX + STATE_VALUE_BYTES_MAX \
    + 16 * STATE_CHUNK_ITEMS_MAX + 4096 <= CHUNK_FRAME_BYTES_MAX
# Chunks in one file: at 1 MiB each, 2^24 chunks is 16 TiB of state; a count above it is
# damage.
CHUNKS_MAX = 1 << 24


@dataclass(frozen=True, slots=True)
class SnapshotHeader(Struct):
    """What a snapshot file is of: which chain, which height, which state."""

    chain_id: str
    genesis_hash: bytes
    state_layout: int  # ledger.app.layout.STATE_LAYOUT_VERSION of the node that saved it
    height: int
    block_hash: bytes
    applied_index: int
    state_root: bytes  # the state root of ``height`` (the state holds it: roots_key)
    saved_at_ms: int  # wall clock of the machine that saved it, for people only
    head_block: bytes  # block ``height``, canonical bytes (the chain needs its timestamp)

    SCHEMA = (
        ("chain_id", Identifier()),
        ("genesis_hash", Bytes(keys.HASH_SIZE)),
        ("state_layout", UInt()),
        ("height", UInt()),
        ("block_hash", Bytes(keys.HASH_SIZE)),
        ("applied_index", UInt()),
        ("state_root", Bytes(keys.HASH_SIZE)),
        ("saved_at_ms", UInt()),
        ("head_block", Bytes(maximum=limits.BLOB_SIZE_BYTES_MAX)),
    )


@dataclass(frozen=True, slots=True)
class SnapshotSummary:
    header: SnapshotHeader
    chunks: int
    items: int
    size_bytes: int
    sha256: bytes


class SnapshotWriter:
    """Write a snapshot file: ``with SnapshotWriter.create(path, header) as writer:``,
    ``writer.add_chunk(chunk)`` in order, ``writer.finish()``. The file appears at
    ``path`` only when finished (written to ``path.partial``, synced, renamed); an
    unfinished one is removed."""

    def __init__(self, path: Path, header: SnapshotHeader, file: BinaryIO) -> None:
        # Use SnapshotWriter.create().
        self.path = path
        self.header = header
        self._partial = _partial_path(path)
        self._file = file
        self._hash = hashlib.sha256()
        self._chunks = 0
        self._items = 0
        self._size = 0
        self._done = False
        self._finished = False
        self._write(MAGIC + _VERSION.pack(FORMAT_VERSION))
        self._write_frame(TAG_HEADER, header.encode())

    @classmethod
    def create(cls, path: Path, header: SnapshotHeader, *, overwrite: bool = False,
               ) -> SnapshotWriter:
        if path.exists() and not overwrite:
            raise SnapshotFileError(f"{path} exists: a snapshot file is never overwritten")
        partial = _partial_path(path)
        try:
            file = open(partial, "wb")  # noqa: SIM115 - closed by finish() / abort()
        except OSError as error:
            raise SnapshotFileError(f"cannot write {partial}: {error.strerror}") from None
        try:
            return cls(path, header, file)
        except BaseException:
            file.close()
            partial.unlink(missing_ok=True)
            raise

    def add_chunk(self, chunk: StateChunk) -> None:
        header = self.header
        assert not self._done, "a chunk after the final one"
        assert chunk.sequence == self._chunks, "chunks are written in order"
        assert (chunk.height, chunk.block_hash, chunk.applied_index) == (
            header.height, header.block_hash, header.applied_index), "chunk of another state"
        self._write_frame(TAG_CHUNK, chunk.encode())
        self._chunks += 1
        self._items += len(chunk.items)
        self._done = chunk.done

    def finish(self) -> SnapshotSummary:
        assert self._done, "the final chunk was not written"
        self._write(_FRAME.pack(TAG_END, _TRAILER.size) + self._chunks.to_bytes(8, "big"))
        digest = self._hash.digest()
        self._write(digest)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._partial, self.path)
        except OSError as error:
            self.abort()
            raise SnapshotFileError(f"cannot write {self.path}: {error.strerror}") from None
        self._finished = True
        return SnapshotSummary(self.header, self._chunks, self._items, self._size, digest)

    def abort(self) -> None:
        if not self._finished:
            self._file.close()
            self._partial.unlink(missing_ok=True)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def _write_frame(self, tag: bytes, body: bytes) -> None:
        self._write(_FRAME.pack(tag, len(body)) + body)

    def _write(self, data: bytes) -> None:
        self._hash.update(data)
        self._size += len(data)
        try:
            self._file.write(data)
        except OSError as error:
            self.abort()
            raise SnapshotFileError(f"cannot write {self._partial}: {error.strerror}") from None


def _partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class SnapshotReader:
    """Read and check a snapshot file: ``header`` is read at open; :meth:`chunks` yields
    the chunks and, after the last, checks the trailer and the checksum (so a caller that
    uses each chunk as it comes, as restore does, must not commit to anything before the
    iteration has ended). :meth:`verify` reads the whole file once."""

    def __init__(self, path: Path, file: BinaryIO) -> None:
        # Use SnapshotReader.open().
        self.path = path
        self._file = file
        self._hash = hashlib.sha256()
        self._offset = 0
        magic = self._read(len(MAGIC), "the magic")
        if magic != MAGIC:
            raise self._error("not a medledger snapshot file (it does not start with the "
                              "snapshot magic)")
        (version,) = _VERSION.unpack(self._read(_VERSION.size, "the format version"))
        if version != FORMAT_VERSION:
            raise self._error(f"snapshot format version {version}; this medledger reads "
                              f"version {FORMAT_VERSION}")
        body = self._read_frame(TAG_HEADER, HEADER_BYTES_MAX, "the header")
        try:
            self.header = decode(SnapshotHeader, body, size_bytes_max=HEADER_BYTES_MAX)
        except DecodeError as error:
            raise self._error(f"damaged: the header does not decode ({error})") from None
        self._chunks_read = False
        self._digest = b""  # the file's SHA-256, once the trailer is checked

    @classmethod
    def open(cls, path: Path) -> SnapshotReader:
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as error:
            raise SnapshotFileError(f"cannot read snapshot file {path}: {error.strerror}"
                                    ) from None
        try:
            return cls(path, file)
        except BaseException:
            file.close()
            raise

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chunks(self) -> Iterator[StateChunk]:
        assert not self._chunks_read, "the chunks are read once"
        self._chunks_read = True
        header = self.header
        sequence = 0
        done = False
        while True:
            tag = self._peek_tag()
            if tag == TAG_END:
                break
            if done:
                raise self._error(f"damaged: a frame follows the final chunk {sequence - 1}")
            where = f"chunk {sequence}"
            body = self._read_frame(TAG_CHUNK, CHUNK_FRAME_BYTES_MAX, where)
            try:
                chunk = decode(StateChunk, body, size_bytes_max=CHUNK_FRAME_BYTES_MAX)
            except DecodeError as error:
                raise self._error(f"damaged: {where} does not decode ({error})") from None
            if (chunk.height, chunk.block_hash, chunk.applied_index) != (
                    header.height, header.block_hash, header.applied_index):
                raise self._error(
                    f"damaged: {where} is of another state (height {chunk.height}, block "
                    f"0x{chunk.block_hash.hex()}, applied index {chunk.applied_index}) than "
                    f"the header's (height {header.height}, block "
                    f"0x{header.block_hash.hex()}, applied index {header.applied_index})")
            if chunk.sequence != sequence:
                raise self._error(f"damaged: chunk {chunk.sequence} where {where} belongs")
            if sequence >= CHUNKS_MAX:
                raise self._error(f"damaged: more than {CHUNKS_MAX} chunks")
            done = chunk.done
            sequence += 1
            yield chunk
        if not done:
            raise self._error(f"damaged: it ends after chunk {sequence - 1}, which is not "
                              "the final one")
        self._read_trailer(sequence)

    def verify(self) -> SnapshotSummary:
        """Read every chunk and the trailer: the whole file's structure and checksum."""
        chunks = items = 0
        for chunk in self.chunks():
            chunks += 1
            items += len(chunk.items)
        return SnapshotSummary(self.header, chunks, items, self._offset, self._digest)

    # ---------------------------------------------------------------- reading

    def _read_trailer(self, chunks: int) -> None:
        body_start = self._offset
        tag, length = _FRAME.unpack(self._read(_FRAME.size, "the trailer"))
        assert tag == TAG_END
        if length != _TRAILER.size:
            raise self._error(f"damaged: the trailer at byte {body_start} claims "
                              f"{length} bytes, not {_TRAILER.size}")
        count_bytes = self._read(8, "the trailer")
        expected = self._hash.digest()
        stored = self._read_unhashed(32, "the checksum")
        if stored != expected:
            raise self._error("damaged: its SHA-256 checksum does not match its contents "
                              "(the file was altered or corrupted after it was saved)")
        count = int.from_bytes(count_bytes, "big")
        if count != chunks:
            raise self._error(f"damaged: the trailer counts {count} chunks, the file holds "
                              f"{chunks}")
        if self._file.read(1):
            raise self._error(f"damaged: data follows the trailer at byte {self._offset}")
        self._digest = expected

    def _peek_tag(self) -> bytes:
        tag = self._file.read(1)
        if not tag:
            raise self._error(f"truncated: it ends at byte {self._offset}, before its "
                              "trailer")
        self._file.seek(-1, os.SEEK_CUR)
        return tag

    def _read_frame(self, tag: bytes, length_max: int, what: str) -> bytes:
        start = self._offset
        found, length = _FRAME.unpack(self._read(_FRAME.size, what))
        if found != tag:
            raise self._error(f"damaged: expected {what} at byte {start}, found a frame "
                              f"tagged {found!r}")
        if length > length_max:
            raise self._error(f"damaged: {what} at byte {start} claims {length} bytes "
                              f"(at most {length_max})")
        return self._read(length, what)

    def _read(self, size: int, what: str) -> bytes:
        data = self._read_unhashed(size, what)
        self._hash.update(data)
        return data

    def _read_unhashed(self, size: int, what: str) -> bytes:
        data = self._file.read(size)
        if len(data) != size:
            raise self._error(f"truncated: it ends at byte {self._offset + len(data)}, "
                              f"inside {what}")
        self._offset += size
        return data

    def _error(self, reason: str) -> SnapshotFileError:
        return SnapshotFileError(f"snapshot file {self.path} is refused: {reason}")


def verify_snapshot_file(path: Path) -> SnapshotSummary:
    """Check a whole snapshot file (structure and checksum); SnapshotFileError if not."""
    with SnapshotReader.open(path) as reader:
        return reader.verify()


__all__ = [
    "CHUNK_FRAME_BYTES_MAX",
    "FORMAT_VERSION",
    "MAGIC",
    "SNAPSHOT_CHUNK_BYTES_MAX",
    "SnapshotHeader",
    "SnapshotReader",
    "SnapshotSummary",
    "SnapshotWriter",
    "verify_snapshot_file",
]
