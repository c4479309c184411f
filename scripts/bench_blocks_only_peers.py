"""What peers that join only the blocks topic cost a node under load (issue: any peer could
make a node hold ~90 MB and flood its log).

Two rounds on a fresh 3-validator devnet each (loopback): a fixed-rate load test alone,
then the same with PEERS bare libp2p hosts (GossipSub, subscribed to the blocks topic and
nothing else) connected to node0 for the whole round. Prints one JSON line: node0's peak
RSS in each round and the growth, and the most times any one libp2p warning was logged
for one peer within a minute.

    scripts/bench-blocks-only-peers [--peers 50] [--rate 200] [--seconds 30]

``--serve-peers`` is the helper mode that runs the peers (a process of its own).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
PEERS_READY_TIMEOUT_S = 120.0
RSS_SAMPLE_S = 0.5


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except OSError:
                return
            time.sleep(RSS_SAMPLE_S)


def warnings_per_peer_minute(log_text: str) -> int:
    """The most times one libp2p warning (same event text with the peer id masked) was
    logged for one peer within any minute."""
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    peer_pattern = re.compile(r"12D3KooW[1-9A-HJ-NP-Za-km-z]{44}")
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("component") != "libp2p":
            continue
        event = str(entry.get("event", ""))
        peers = peer_pattern.findall(event)
        if not peers:
            continue
        key = (peer_pattern.sub("<peer>", event)[:120], peers[0])
        stamp = time.mktime(time.strptime(entry["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
        times[key].append(stamp)
    worst = 0
    for stamps in times.values():
        stamps.sort()
        start = 0
        for end, at in enumerate(stamps):
            while at - stamps[start] >= 60.0:
                start += 1
            worst = max(worst, end - start + 1)
    return worst


def run_round(directory: Path, *, peers: int, rate: float, seconds: float) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from node.client import RpcClient
    from node.tools.devnet import create_devnet, start_processes, stop_processes

    chain_id = f"bench-peers-{peers}"
    nodes = create_devnet(directory, validators=3, observers=0, rpc_port=0, chain_id=chain_id)
    processes = start_processes(directory, nodes)
    helper: subprocess.Popen[str] | None = None
    try:
        clients = [RpcClient(node.rpc_url, timeout_s=5.0) for node in nodes]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not any(_role(client) == "leader" for client in clients):
            if time.monotonic() > deadline:
                raise SystemExit("no leader within the ready timeout")
            time.sleep(0.2)
        if peers:
            helper = subprocess.Popen(
                [sys.executable, __file__, "--serve-peers", "--peers", str(peers),
                 "--target", nodes[0].multiaddr, "--topic", f"/medledger/{chain_id}/blocks/1"],
                stdout=subprocess.PIPE, text=True, cwd=ROOT)
            assert helper.stdout is not None
            line = _read_line(helper, PEERS_READY_TIMEOUT_S)
            if not line.startswith("ready"):
                raise SystemExit(f"peers did not start: {line!r}")
        with PeakRss(processes[0].pid) as peak:
            completed = subprocess.run(
                [sys.executable, "-m", "node.cli", "loadtest",
                 *[arg for node in nodes for arg in ("--url", node.rpc_url)],
                 "--controller", "fixed", "--rate", str(rate), "--duration", str(seconds),
                 "--warmup", "2", "--no-progress", "--report-dir", str(directory / "reports")],
                capture_output=True, text=True, cwd=ROOT, check=False)
        try:
            connected: int | None = len(
                [p for p in clients[0].call("node_peers") if p["connected"]])
        except Exception:  # node0 is gone: reported below
            connected = None
        return {
            "peers": peers,
            "node0_rss_peak_mb": round(peak.peak / 1_048_576, 1),
            "node0_exit_code": processes[0].poll(),
            "node0_connected_peers": connected,
            "loadtest_exit": completed.returncode,
            "repeated_warning_max_per_peer_minute": warnings_per_peer_minute(
                (directory / nodes[0].name / "node.log").read_text(errors="replace")),
        }
    finally:
        if helper is not None:
            helper.terminate()
            helper.wait(timeout=20)
        stop_processes(processes)


def _role(client: Any) -> str | None:
    try:
        return str(client.call("node_status")["role"])
    except Exception:
        return None


def _read_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    result: list[str] = []
    reader = threading.Thread(
        target=lambda: result.append(process.stdout.readline() if process.stdout else ""),
        daemon=True)
    reader.start()
    reader.join(timeout_s)
    return result[0] if result else ""


def serve_peers(count: int, target: str, topic: str) -> None:
    """``count`` bare GossipSub hosts subscribed to ``topic`` only, connected to
    ``target``, until terminated."""
    import multiaddr
    import trio
    from libp2p import new_host
    from libp2p.crypto.x25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.identity_utils import create_identity_from_seed
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux
    from libp2p.tools.anyio_service import background_trio_service

    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    ready = 0

    async def one(index: int) -> None:
        nonlocal ready
        key_pair = create_identity_from_seed(b"bench-blocks-only-%04d".ljust(32, b".") % index)
        host = new_host(
            key_pair=key_pair,
            sec_opt={TProtocol(NOISE_PROTOCOL_ID): NoiseTransport(
                key_pair, noise_privkey=create_new_key_pair().private_key)},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux})
        router = GossipSub(protocols=[TProtocol(PROTOCOL_ID_V11)], degree=6, degree_low=4,
                           degree_high=12, heartbeat_interval=1)
        pubsub = Pubsub(host, router)
        async with (background_trio_service(pubsub), background_trio_service(router),
                    host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")])):
            await pubsub.wait_until_ready()
            subscription = await pubsub.subscribe(topic)
            await host.connect(info)
            ready += 1
            while True:
                await subscription.get()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(one, index)
            with trio.fail_after(PEERS_READY_TIMEOUT_S):
                while ready < count:
                    await trio.sleep(0.2)
            print("ready", flush=True)

    trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--serve-peers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_peers:
        serve_peers(args.peers, args.target, args.topic)
        return
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as scratch:
        without = run_round(Path(scratch) / "without", peers=0, rate=args.rate,
                            seconds=args.seconds)
        with_peers = run_round(Path(scratch) / "with", peers=args.peers, rate=args.rate,
                               seconds=args.seconds)
    print(json.dumps({
        "bench": "blocks-only-peers", "rate_tx_per_s": args.rate, "seconds": args.seconds,
        "without": without, "with": with_peers,
        "node0_rss_growth_mb": round(with_peers["node0_rss_peak_mb"]
                                     - without["node0_rss_peak_mb"], 1),
    }))


if __name__ == "__main__":
    main()
