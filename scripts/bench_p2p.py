"""bench-p2p: raft frame throughput and latency between two libp2p transports on their one
raft stream, and gossip messages/s among three. Prints ONE JSON line.

    scripts/bench-p2p                      # defaults
    BENCH_P2P_FRAMES=5000 BENCH_P2P_GOSSIP=500 scripts/bench-p2p

Everything runs in one process (one Trio loop, so one core does all the work); the
machine is shared and noisy: compare numbers taken in one run.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
from typing import Any

import trio

from node.p2p.host import Libp2pTransport, peer_id_from_seed
from node.p2p.limits import Timings

FRAMES = int(os.environ.get("BENCH_P2P_FRAMES", "3000"))
PINGS = int(os.environ.get("BENCH_P2P_PINGS", "1000"))
GOSSIP_MESSAGES = int(os.environ.get("BENCH_P2P_GOSSIP", "300"))
REQUESTS = int(os.environ.get("BENCH_P2P_REQUESTS", "300"))
TOPIC = "bench"
TIMEOUT_S = 600


def _seed(index: int) -> bytes:
    return hashlib.sha256(b"medledger/bench-p2p/%d" % index).digest()


async def _start(nursery: trio.Nursery, count: int) -> list[Libp2pTransport]:
    validators = {peer_id_from_seed(_seed(index)) for index in range(count)}
    transports: list[Libp2pTransport] = []
    addresses: list[str] = []
    for index in range(count):
        transport = Libp2pTransport(seed=_seed(index), bootstrap=addresses,
                                    validators=validators, timings=Timings())
        addresses = addresses + list(await nursery.start(transport.run))
        transports.append(transport)
    return transports


async def _wait(predicate: Any, what: str) -> None:
    with trio.fail_after(60):
        while not predicate():
            await trio.sleep(0.005)


def _raft_up(transports: list[Libp2pTransport]) -> bool:
    return all(state.raft_stream for transport in transports for state in transport.peers())


async def _send(transport: Libp2pTransport, peer_id: str, frame: bytes) -> None:
    while not await transport.send_frame(peer_id, frame):
        await trio.sleep(0.0005)


async def bench_raft_latency(first: Libp2pTransport, second: Libp2pTransport) -> dict[str, Any]:
    """Round trips: first sends a frame, second's handler sends it straight back."""
    echoed = trio.Event()

    async def echo(peer_id: str, frame: bytes) -> None:
        await _send(second, peer_id, frame)

    async def back(peer_id: str, frame: bytes) -> None:
        echoed.set()

    second.on_frame(echo)
    first.on_frame(back)
    round_trips = []
    for sequence in range(PINGS):
        echoed = trio.Event()
        started = time.perf_counter()
        await _send(first, second.peer_id, b"ping %d" % sequence)
        await echoed.wait()
        round_trips.append(time.perf_counter() - started)
    round_trips.sort()
    return {
        "round_trips": PINGS,
        "round_trip_ms_p50": round(statistics.median(round_trips) * 1e3, 3),
        "round_trip_ms_p99": round(round_trips[int(len(round_trips) * 0.99)] * 1e3, 3),
        "round_trips_per_s": round(PINGS / sum(round_trips)),
    }


async def bench_raft_throughput(first: Libp2pTransport, second: Libp2pTransport,
                                size: int, count: int) -> dict[str, Any]:
    """One-way: first sends ``count`` frames as fast as its queue takes them."""
    received = 0
    done = trio.Event()
    latencies: list[float] = []

    async def count_frame(peer_id: str, frame: bytes) -> None:
        nonlocal received
        received += 1
        latencies.append(time.perf_counter() - float(frame[:20]))
        if received == count:
            done.set()

    second.on_frame(count_frame)
    padding = bytes(max(0, size - 20))
    started = time.perf_counter()
    for _ in range(count):
        await _send(first, second.peer_id, b"%20.6f" % time.perf_counter() + padding)
    await done.wait()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "frame_bytes": size,
        "frames": count,
        "frames_per_s": round(count / elapsed),
        "megabytes_per_s": round(count * size / elapsed / 1e6, 2),
        "queue_to_handler_ms_p50": round(statistics.median(latencies) * 1e3, 2),
        "queue_to_handler_ms_p99": round(latencies[int(len(latencies) * 0.99)] * 1e3, 2),
    }


async def bench_sync(first: Libp2pTransport, second: Libp2pTransport,
                     concurrency: int) -> dict[str, Any]:
    """Request/response exchanges (one stream each) of 64 bytes, ``concurrency`` at once."""
    async def serve(peer_id: str, data: bytes) -> bytes:
        return data

    second.on_request(serve)
    durations: list[float] = []

    async def client(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await first.request(second.peer_id, bytes(64), timeout_s=10)
            durations.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(client, REQUESTS // concurrency)
    elapsed = time.perf_counter() - started
    durations.sort()
    return {
        "concurrency": concurrency,
        "requests": len(durations),
        "requests_per_s": round(len(durations) / elapsed),
        "request_ms_p50": round(statistics.median(durations) * 1e3, 2),
        "request_ms_p99": round(durations[int(len(durations) * 0.99)] * 1e3, 2),
    }


async def bench_gossip(transports: list[Libp2pTransport], count: int,
                       publishers: int) -> dict[str, Any]:
    """``publishers`` nodes each publish ``count`` messages of 256 bytes; the rate is
    messages delivered to every other node per second."""
    counts = [0] * len(transports)

    def handler_for(index: int) -> Any:
        async def handle(origin: str, data: bytes) -> bool:
            counts[index] += 1
            return True
        return handle

    topic = f"{TOPIC}-{publishers}"
    for index, transport in enumerate(transports):
        transport.on_gossip(topic, handler_for(index))
    await _wait(lambda: all(len(t.gossip_mesh_peers(topic)) == len(transports) - 1
                            for t in transports), "mesh")
    expected = [count * (publishers - (1 if index < publishers else 0))
                for index in range(len(transports))]

    async def publish(transport: Libp2pTransport) -> None:
        for sequence in range(count):
            await transport.publish(topic, b"%08d" % sequence + bytes(248))

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for transport in transports[:publishers]:
            nursery.start_soon(publish, transport)
    publish_s = time.perf_counter() - started
    await _wait(lambda: counts == expected, "delivery")
    elapsed = time.perf_counter() - started
    return {
        "nodes": len(transports),
        "publishers": publishers,
        "messages_published": count * publishers,
        "published_per_s": round(count * publishers / publish_s),
        "delivered_everywhere_per_s": round(count * publishers / elapsed),
        "publish_waits": sum(t.statistics().gossip.publish_waits for t in transports),
    }


async def main() -> dict[str, Any]:
    result: dict[str, Any] = {"yamux_release_on_read": os.environ["PY_YAMUX_RELEASE_ON_READ"]}
    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            first, second = await _start(nursery, 2)
            await _wait(lambda: _raft_up([first, second]), "raft stream")
            result["raft_latency"] = await bench_raft_latency(first, second)
            result["raft_small"] = await bench_raft_throughput(first, second, 256, FRAMES)
            result["raft_64k"] = await bench_raft_throughput(first, second, 65536, FRAMES // 10)
            result["sync_sequential"] = await bench_sync(first, second, 1)
            result["sync_concurrent"] = await bench_sync(first, second, 16)
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            transports = await _start(nursery, 3)
            result["gossip_one_publisher"] = await bench_gossip(transports, GOSSIP_MESSAGES, 1)
            result["gossip_three_publishers"] = await bench_gossip(
                transports, GOSSIP_MESSAGES // 3, 3)
            nursery.cancel_scope.cancel()
    return result


if __name__ == "__main__":
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(json.dumps(trio.run(main)))
    sys.exit(0)
