"""The peer-level harness: a real node (one validator, open to observers, as devnets and
the default config are) on 127.0.0.1, and a fresh libp2p identity that no genesis lists
opening streams on every protocol the node serves and writing random and mutated frames
to them (seeded; random/mutational, not coverage-guided: the node is another process).

After every batch the node must still be running and answer ``node_status`` over RPC. A
node that exits, or stops answering, is a crash: the batch that did it is kept under
``fuzz-out/crashes/peer/`` with the tail of the node's log.

``python tests/fuzz/fuzz_peer.py --seconds S [--seed N]`` prints one JSON line (harness,
seconds, executions = frames written, batches, crashes, per-protocol stream counts).
The suite runs it briefly (tests/test_p2p_hostile_peer.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]

import multiaddr  # noqa: E402
import trio  # noqa: E402
from libp2p import new_host  # noqa: E402
from libp2p.crypto.ed25519 import create_new_key_pair  # noqa: E402
from libp2p.custom_types import TProtocol  # noqa: E402
from libp2p.peer.peerinfo import info_from_p2p_addr  # noqa: E402

from fuzz.common import ROOT, corpus, mutate  # noqa: E402
from node.config import ConsensusSection  # noqa: E402
from node.p2p.framing import encode_frame  # noqa: E402
from node.p2p.limits import RAFT_PROTOCOL, SYNC_PROTOCOL  # noqa: E402

OUT_DIR = ROOT / "fuzz-out"
PROTOCOLS = (RAFT_PROTOCOL, SYNC_PROTOCOL, "/meshsub/1.1.0", "/meshsub/1.0.0",
             "/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0", "/ipfs/ping/1.0.0")
# Which corpus seeds the frames of each protocol (the rest get mutated random bytes).
CORPUS_OF = {RAFT_PROTOCOL: "raft_frame", SYNC_PROTOCOL: "sync", "/meshsub/1.1.0": "gossip",
             "/meshsub/1.0.0": "gossip"}
FRAMES_PER_BATCH_MAX = 8
# How long a write or an open may take before the stream is given up (the node may be slow
# to reset a stream it refuses; that is not a crash).
STREAM_SECONDS_MAX = 3.0
CONNECT_SECONDS_MAX = 10.0
# Streams refused one after another before this identity is given up (dropped or banned).
STREAMS_REFUSED_IN_A_ROW_MAX = 3
# The node must answer RPC within this after every batch.
RPC_SECONDS_MAX = 10.0
NODE_READY_SECONDS_MAX = 60.0
# A node that fails is given this long to finish writing its log before we read it.
EXIT_GRACE_SECONDS = 1.0


@dataclass
class Statistics:
    frames: int = 0
    batches: int = 0
    streams_opened: dict[str, int] = field(default_factory=dict)
    streams_refused: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    connects_failed: int = 0
    identities: int = 0
    crashes: list[str] = field(default_factory=list)


def _frame_for(protocol: str, rng: random.Random, pools: dict[str, list[bytes]]) -> bytes:
    pool = pools.get(CORPUS_OF.get(protocol, ""), [])
    roll = rng.random()
    if protocol.startswith("/meshsub/") and roll < 0.05:
        return encode_frame(b"\xff" * 16)  # the frame of issue 11
    if not pool or roll < 0.2:
        return encode_frame(bytes(rng.randrange(256) for _ in range(rng.randrange(64))))
    if roll < 0.3:
        return rng.choice(pool)
    return mutate(rng.choice(pool), rng, pool=pool)


class NodeUnderTest:
    """One validator as its own process (tests/node_harness.py), stopped by pid."""

    def __init__(self, directory: Path) -> None:
        from node_harness import NodeProcess, wait_for

        from node.tools.devnet import create_devnet

        nodes = create_devnet(directory, validators=1, observers=0, rpc_port=0,
                              chain_id="medledger-test", consensus=ConsensusSection())
        self.process = NodeProcess(nodes[0], directory)
        self.process.start()
        wait_for(lambda: self.process.try_call("node_status"), timeout_s=NODE_READY_SECONDS_MAX,
                 what="the node's RPC")

    @property
    def multiaddr(self) -> str:
        return self.process.node.multiaddr

    def healthy(self) -> str | None:
        """None, or why the node is not healthy."""
        assert self.process.process is not None
        code = self.process.process.poll()
        if code is not None:
            return f"the node exited with code {code}"
        if self.process.try_call("node_status") is None:
            return "the node did not answer node_status"
        return None

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.process.log_text().splitlines()[-lines:])

    def stop(self) -> int | None:
        code = self.process.stop()
        self.process.client.close()
        return code


async def _write_batch(host: Any, peer: Any, protocol: str, frames: list[bytes],
                       statistics: Statistics) -> bool:
    """Write ``frames`` on a new stream; False if no stream could be opened."""
    stream = None
    try:
        with trio.move_on_after(STREAM_SECONDS_MAX):
            stream = await host.new_stream(peer.peer_id, [TProtocol(protocol)])
    except Exception:
        pass
    if stream is None:
        statistics.streams_refused[protocol] = statistics.streams_refused.get(protocol, 0) + 1
        return False
    statistics.streams_opened[protocol] = statistics.streams_opened.get(protocol, 0) + 1
    try:
        with trio.move_on_after(STREAM_SECONDS_MAX):
            for frame in frames:
                await stream.write(frame)
                statistics.frames += 1
            await trio.sleep(0.05)
    except Exception:
        pass  # the node reset the stream: that is how it refuses
    try:
        with trio.move_on_after(STREAM_SECONDS_MAX):
            await stream.reset()
    except Exception:
        pass
    return True


async def fuzz(node: NodeUnderTest, *, seconds: float, seed: int) -> Statistics:
    """Batches of frames until ``seconds`` pass or the node fails. A node may drop and ban
    a peer that misbehaves (issue 11): when one identity can no longer connect, the next
    batch comes from a fresh one, as a hostile peer's would."""
    rng = random.Random(seed)
    pools = {name: corpus(name) for name in set(CORPUS_OF.values())}
    statistics = Statistics()
    deadline = time.monotonic() + seconds
    identity = 0
    while time.monotonic() < deadline and not statistics.crashes:
        identity += 1
        await _fuzz_as(identity, node, rng, pools, statistics, deadline, seed)
    statistics.identities = identity
    return statistics


async def _fuzz_as(identity: int, node: NodeUnderTest, rng: random.Random,
                   pools: dict[str, list[bytes]], statistics: Statistics, deadline: float,
                   seed: int) -> None:
    secret = hashlib.sha256(f"fuzz-peer/{seed}/{identity}".encode()).digest()
    listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
    host = new_host(key_pair=create_new_key_pair(secret), listen_addrs=[listen])
    peer = info_from_p2p_addr(multiaddr.Multiaddr(node.multiaddr))
    refused_in_a_row = 0
    async with host.run([listen]):
        while (time.monotonic() < deadline and not statistics.crashes
               and refused_in_a_row < STREAMS_REFUSED_IN_A_ROW_MAX):
            if not host.get_network().connections.get(peer.peer_id):
                statistics.reconnects += 1
                try:
                    with trio.fail_after(CONNECT_SECONDS_MAX):
                        await host.connect(peer)
                except Exception:
                    statistics.connects_failed += 1
                if not host.get_network().connections.get(peer.peer_id):
                    problem = await trio.to_thread.run_sync(node.healthy)
                    if problem is not None:
                        _keep_crash("(connect)", [], problem, node)
                        statistics.crashes.append(f"{problem} (found while connecting)")
                    return  # refused or banned: a fresh identity next
            protocol = rng.choice(PROTOCOLS)
            frames = [_frame_for(protocol, rng, pools)
                      for _ in range(rng.randint(1, FRAMES_PER_BATCH_MAX))]
            opened = await _write_batch(host, peer, protocol, frames, statistics)
            refused_in_a_row = 0 if opened else refused_in_a_row + 1
            statistics.batches += 1
            problem = await trio.to_thread.run_sync(node.healthy)
            if problem is not None:
                await trio.sleep(EXIT_GRACE_SECONDS)
                _keep_crash(protocol, frames, problem, node)
                statistics.crashes.append(f"{problem} after frames on {protocol}")


def _keep_crash(protocol: str, frames: list[bytes], problem: str, node: NodeUnderTest) -> None:
    directory = OUT_DIR / "crashes" / "peer"
    directory.mkdir(parents=True, exist_ok=True)
    data = b"".join(frames)
    path = directory / f"crash-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(
        f"{problem}\nprotocol {protocol}\nframes (hex):\n"
        + "\n".join(frame.hex() for frame in frames)
        + "\n\nnode log tail:\n" + node.log_tail() + "\n")
    print(f"CRASH peer: {problem} on {protocol} -> {path}", file=sys.stderr, flush=True)


def run(seconds: float, seed: int, directory: Path) -> dict[str, Any]:
    started = time.monotonic()
    node = NodeUnderTest(directory)
    try:
        statistics = trio.run(lambda: fuzz(node, seconds=seconds, seed=seed))
    finally:
        exit_code = node.stop()
    return {
        "harness": "peer", "engine": "random", "seed": seed,
        "seconds": round(time.monotonic() - started, 1),
        "executions": statistics.frames, "batches": statistics.batches,
        "crashes": len(statistics.crashes), "crash_signatures": statistics.crashes,
        "streams_opened": statistics.streams_opened,
        "streams_refused": statistics.streams_refused, "reconnects": statistics.reconnects,
        "connects_failed": statistics.connects_failed, "identities": statistics.identities,
        "node_exit_code": exit_code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medledger-fuzz-peer-") as directory:
        report = run(arguments.seconds, arguments.seed, Path(directory))
    print(json.dumps(report), flush=True)
    sys.exit(1 if report["crashes"] else 0)


if __name__ == "__main__":
    main()
