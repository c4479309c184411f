"""Peer ids from node keys, and the varint frame codec, checked against libp2p's own."""

from __future__ import annotations

import hashlib

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.identity_utils import create_identity_from_seed
from libp2p.io.msgio import VarIntLengthMsgReadWriter
from libp2p.peer.id import ID

from node.p2p.framing import FrameError, FrameReader, StreamEndedError, encode_frame
from node.p2p.identity import (
    base58_decode,
    base58_encode,
    peer_id_from_public_key,
    peer_id_from_seed,
    public_key_from_peer_id,
    public_key_from_seed,
)

SEEDS = [hashlib.sha256(b"seed %d" % index).digest() for index in range(8)] + [bytes(32)]


# ------------------------------------------------------------------------------ identity


@pytest.mark.parametrize("seed", SEEDS)
def test_peer_ids_match_libp2p(seed: bytes) -> None:
    key_pair = create_identity_from_seed(seed)
    expected = ID.from_pubkey(key_pair.public_key).to_base58()
    assert peer_id_from_seed(seed) == expected
    public_key = public_key_from_seed(seed)
    assert public_key == key_pair.public_key.to_bytes()
    assert peer_id_from_public_key(public_key) == expected
    assert ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key)).to_base58() == expected
    assert public_key_from_peer_id(expected) == public_key


def test_keys_of_the_wrong_size_are_refused() -> None:
    with pytest.raises(ValueError):
        peer_id_from_public_key(bytes(31))
    with pytest.raises(ValueError):
        peer_id_from_seed(bytes(33))
    with pytest.raises(ValueError):
        public_key_from_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")  # sha256 id


@given(st.binary(max_size=64))
def test_base58_round_trips(data: bytes) -> None:
    assert base58_decode(base58_encode(data)) == data


# ------------------------------------------------------------------------------ frames


class _FakeStream:
    """Hands out the given chunks one read at a time, then EOF; records writes."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)
        self.written = bytearray()

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self._chunks or n == 0:
            return b""
        chunk = self._chunks.pop(0)
        if n is not None and 0 < n < len(chunk):
            chunk, rest = chunk[:n], chunk[n:]
            self._chunks.insert(0, rest)
        return chunk

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        pass


FRAMES = [b"", b"x", bytes(127), bytes(128), bytes(300), bytes(range(256)) * 300]


async def _read_all(chunks: list[bytes], count: int, *, limit: int = 1 << 20) -> list[bytes]:
    reader = FrameReader(_FakeStream(chunks), frame_bytes_max=limit)
    return [await reader.read_frame() for _ in range(count)]


@pytest.mark.parametrize("chunking", ["whole", "byte-by-byte", "uneven"])
async def test_frames_survive_any_chunking(chunking: str) -> None:
    wire = b"".join(encode_frame(frame) for frame in FRAMES)
    if chunking == "whole":
        chunks = [wire]
    elif chunking == "byte-by-byte":  # the big frame would take seconds one byte a time
        wire = b"".join(encode_frame(frame) for frame in FRAMES[:-1])
        chunks = [wire[index : index + 1] for index in range(len(wire))]
    else:
        chunks = [wire[index : index + 1000] for index in range(0, len(wire), 1000)]
    expected = FRAMES[:-1] if chunking == "byte-by-byte" else FRAMES
    assert await _read_all(chunks, len(expected)) == expected


async def test_trailing_bytes_stay_for_the_next_frame() -> None:
    wire = encode_frame(b"first") + encode_frame(b"second")[:3]
    reader = FrameReader(_FakeStream([wire]), frame_bytes_max=100)
    assert await reader.read_frame() == b"first"
    with pytest.raises(StreamEndedError, match="inside a frame"):
        await reader.read_frame()


async def test_msgio_reads_our_frames_and_we_read_msgio_frames() -> None:
    ours = _FakeStream([])
    for frame in FRAMES:
        ours.written += encode_frame(frame)
    msgio_reader = VarIntLengthMsgReadWriter(_FakeStream([bytes(ours.written)]), 1 << 20)  # type: ignore[arg-type]
    assert [await msgio_reader.read_msg() for _ in FRAMES] == FRAMES

    sink = _FakeStream([])
    msgio_writer = VarIntLengthMsgReadWriter(sink, 1 << 20)  # type: ignore[arg-type]
    for frame in FRAMES:
        await msgio_writer.write_msg(frame)
    assert await _read_all([bytes(sink.written)], len(FRAMES)) == FRAMES


async def test_oversized_and_malformed_lengths_are_refused() -> None:
    with pytest.raises(FrameError, match="limit"):
        await _read_all([encode_frame(bytes(101))], 1, limit=100)
    with pytest.raises(FrameError, match="10 bytes"):
        await _read_all([b"\xff" * 11], 1)


async def test_a_silent_stream_times_out() -> None:
    class _Silent(_FakeStream):
        async def read(self, n: int | None = None) -> bytes:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

    reader = FrameReader(_Silent([]), frame_bytes_max=100)
    with pytest.raises(trio.TooSlowError):
        await reader.read_frame(read_timeout_s=0.05)
