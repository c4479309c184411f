"""Shared by the harnesses, the suite test and ``scripts/fuzz``: the harness list, the
committed corpus, and a seeded byte mutator for fuzzing without atheris."""

from __future__ import annotations

import hashlib
import importlib
import random
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import trio

from node.p2p.framing import FrameError, FrameReader, StreamEndedError

FUZZ_DIR = Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"
ROOT = FUZZ_DIR.parent.parent

# In-process harnesses (coverage-guided under atheris); "peer" is the live-node one.
HARNESSES = (
    "tx", "block", "raft_frame", "gossip", "sync", "rpc_body", "rpc_params", "config",
    "genesis", "snapshot_file",
)
PEER_HARNESS = "peer"

# A mutated input never grows past this: the decoders' own limits are far larger, and
# small inputs keep the suite's brief runs fast.
MUTATED_BYTES_MAX = 64 * 1024
# Mutations stacked on one input (libFuzzer's default is 5).
MUTATIONS_PER_INPUT_MAX = 5

# Values that tend to sit on a boundary: msgpack type bytes, varint continuations, 0/max.
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x90, 0x9F, 0xC0, 0xC1, 0xC2, 0xC3,
                     0xC4, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD9, 0xDC, 0xDD, 0xDE, 0xDF)
INTERESTING_CHUNKS = (b"\xff" * 8, b"\x00" * 8, b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
                      b"\xdd\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"0x", b'"', b"[",
                      b"{", b"]", b"}", b"\\u0000", b"\n[", b"=", b"1e999", b"-1")


def harness_module(name: str) -> ModuleType:
    return importlib.import_module(f"fuzz.fuzz_{name}")


def regressions(module: ModuleType) -> dict[str, bytes]:
    """The inputs that once crashed a harness (its ``regressions()``, if it has one)."""
    found: dict[str, bytes] = getattr(module, "regressions", dict)()
    return found


def corpus_files(name: str) -> list[Path]:
    directory = CORPUS_DIR / name
    return sorted(directory.iterdir()) if directory.is_dir() else []


def corpus(name: str) -> list[bytes]:
    return [path.read_bytes() for path in corpus_files(name)]


def corpus_file_name(data: bytes, label: str) -> str:
    """Deterministic names: a label (what the seed is) and a short digest."""
    return f"{label}-{hashlib.sha256(data).hexdigest()[:12]}"


def mutate(data: bytes, rng: random.Random, *, pool: list[bytes]) -> bytes:
    """One to MUTATIONS_PER_INPUT_MAX random edits of ``data`` (bit flips, interesting
    bytes, inserts, deletes, duplication, truncation, a splice with another input)."""
    buffer = bytearray(data)
    for _ in range(rng.randint(1, MUTATIONS_PER_INPUT_MAX)):
        choice = rng.randrange(9)
        position = rng.randrange(len(buffer) + 1)
        if choice == 0 and buffer:
            index = min(position, len(buffer) - 1)
            buffer[index] ^= 1 << rng.randrange(8)
        elif choice == 1 and buffer:
            buffer[min(position, len(buffer) - 1)] = rng.choice(INTERESTING_BYTES)
        elif choice == 2:
            buffer[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice == 3 and buffer:
            del buffer[position : position + rng.randint(1, 16)]
        elif choice == 4:
            buffer[position:position] = rng.choice(INTERESTING_CHUNKS)
        elif choice == 5 and buffer:
            end = min(len(buffer), position + rng.randint(1, 32))
            buffer[position:position] = buffer[position:end]
        elif choice == 6:
            del buffer[position:]
        elif choice == 7 and pool:
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            buffer[position:] = other[cut:]
        elif buffer:
            index = min(position, len(buffer) - 1)
            buffer[index] = (buffer[index] + rng.choice((1, -1, 16, -16))) % 256
    return bytes(buffer[:MUTATED_BYTES_MAX])


def mutated_inputs(seeds: list[bytes], *, count: int, seed: int) -> Iterator[bytes]:
    """``count`` inputs: random bytes now and then, otherwise mutations of the seeds (and of
    earlier mutations, so edits stack)."""
    rng = random.Random(seed)
    pool = list(seeds) or [b""]
    for _ in range(count):
        if rng.random() < 0.1:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        else:
            data = mutate(rng.choice(pool), rng, pool=pool)
            if len(pool) < 1000 and rng.random() < 0.2:
                pool.append(data)
        yield data


# Frames read from one input: enough to chain an append, a heartbeat and a snapshot.
FRAMES_PER_INPUT_MAX = 8


class ChunkedStream:
    """A stream handing the input over in chunks whose sizes come from the input itself, so
    frames split across reads are exercised too."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0
        self._sizes = [1 + (byte % 7) * 9 for byte in data[:16]] or [1]
        self._reads = 0

    async def read(self, size: int) -> bytes:
        size = min(size, self._sizes[self._reads % len(self._sizes)])
        self._reads += 1
        chunk = self._data[self._position : self._position + size]
        self._position += len(chunk)
        return chunk


def read_frames(data: bytes, *, frame_bytes_max: int) -> list[bytes]:
    """The varint-length frames the node's FrameReader cuts from ``data`` (up to
    FRAMES_PER_INPUT_MAX; a framing error or the end of the input ends the list)."""

    async def read_all() -> list[bytes]:
        reader = FrameReader(ChunkedStream(data), frame_bytes_max=frame_bytes_max)
        frames: list[bytes] = []
        try:
            while len(frames) < FRAMES_PER_INPUT_MAX:
                frames.append(await reader.read_frame())
        except (FrameError, StreamEndedError):
            pass
        return frames

    return trio.run(read_all)
