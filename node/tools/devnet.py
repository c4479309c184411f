"""``medledger devnet``: a local network on loopback, one command.

The first run creates ``DIR`` with a node directory per node (key, config), the devnet
consortium's genesis and a ``devnet.json`` describing ports; later runs reuse them, so the
chain resumes from the data directories. Every node is a separate process
(``medledger start``); Ctrl-C or SIGTERM stops them all (SIGTERM, then SIGKILL after a
grace period) and only them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ledger.crypto import SigningKey
from ledger.errors import ConfigError
from node.config import (
    ConsensusSection,
    NodeConfig,
    NodeSection,
    P2PSection,
    RpcSection,
    render_config,
)
from node.keys import read_key_file, write_key_file

STOP_GRACE_SECONDS = 15.0
READY_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class DevnetNode:
    name: str
    validator: bool
    p2p_port: int
    rpc_port: int
    public_key: str
    peer_id: str

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}/"

    @property
    def multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_id}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def create_devnet(directory: Path, *, validators: int, observers: int, rpc_port: int,
                  chain_id: str, consensus: ConsensusSection | None = None) -> list[DevnetNode]:
    """Create (or load) the devnet layout; returns its nodes. ``rpc_port`` 0 gives every
    node a free port (tests); otherwise node i listens on ``rpc_port + i``."""
    from ledger.sdk.devnet import devnet_genesis
    from node.genesis import write_genesis
    from node.p2p.identity import peer_id_from_public_key

    manifest = directory / "devnet.json"
    if manifest.exists():
        existing = [DevnetNode(**item) for item in json.loads(manifest.read_text())["nodes"]]
        if sum(node.validator for node in existing) != validators or (
            sum(not node.validator for node in existing) != observers
        ):
            raise ConfigError(
                f"{directory} holds a devnet of {len(existing)} nodes with another shape; "
                "use another --dir or remove it"
            )
        _write_member_keys(directory)
        return existing
    if validators < 1:
        raise ConfigError("a devnet needs at least one validator")
    directory.mkdir(parents=True, exist_ok=True)
    nodes: list[DevnetNode] = []
    keys: list[SigningKey] = []
    for index in range(validators + observers):
        name = f"node{index}"
        key_path = directory / name / "node.key"
        key = read_key_file(key_path) if key_path.exists() else SigningKey.generate()
        if not key_path.exists():
            write_key_file(key_path, key)
        keys.append(key)
        nodes.append(DevnetNode(
            name=name, validator=index < validators, p2p_port=free_port(),
            rpc_port=free_port() if rpc_port == 0 else rpc_port + index,
            public_key=key.public_key.hex(),
            peer_id=peer_id_from_public_key(key.public_key),
        ))
    genesis = devnet_genesis(chain_id, [key.public_key for key in keys[:validators]],
                             genesis_time_ms=int(time.time() * 1000))
    write_genesis(directory / "genesis.json", genesis)
    _write_member_keys(directory)
    for node in nodes:
        config = NodeConfig(
            node=NodeSection(data_dir="data", key_file="node.key",
                             genesis_file="../genesis.json"),
            p2p=P2PSection(
                listen=f"/ip4/127.0.0.1/tcp/{node.p2p_port}",
                bootstrap=tuple(other.multiaddr for other in nodes if other is not node),
            ),
            rpc=RpcSection(port=node.rpc_port),
            consensus=consensus or ConsensusSection(),
        )
        (directory / node.name / "node.toml").write_text(render_config(config))
    manifest.write_text(json.dumps({"chain_id": chain_id,
                                    "nodes": [asdict(node) for node in nodes]}, indent=2))
    return nodes


def _write_member_keys(directory: Path) -> None:
    """members/<org>.admin.key: each devnet member's admin key, to sign with
    (``medledger tx submit --key``). These keys derive from a public seed: a devnet's
    members have no secrets (never use them for a real consortium)."""
    from ledger.sdk.devnet import devnet_admin_key
    from node.genesis import load_genesis

    genesis_file = directory / "genesis.json"
    if not genesis_file.exists():
        return
    for member in load_genesis(genesis_file).members:
        path = directory / "members" / f"{member.org_id}.admin.key"
        key = devnet_admin_key(member.org_id)
        if not path.exists() and key.public_key == member.admin_key:
            write_key_file(path, key)


def die_with_parent() -> None:
    """In a child before exec: have the kernel send it SIGTERM when its parent dies, so a
    devnet (or a test) that is killed outright leaves no node behind (Linux only)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1  # noqa: N806 - the kernel's name
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_processes(directory: Path, nodes: list[DevnetNode]) -> list[subprocess.Popen[bytes]]:
    """One ``medledger start`` per node, in the devnet's own process group (so whoever
    signals the group reaches them all) and dying with the devnet."""
    processes = []
    for node in nodes:
        log_path = directory / node.name / "node.log"
        with open(log_path, "ab") as log_file:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "node.cli", "start", "-c",
                 str(directory / node.name / "node.toml")],
                stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            ))
    return processes


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process we started, then SIGKILL what is left after the grace."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def wait_ready(nodes: list[DevnetNode], *, timeout_s: float = READY_TIMEOUT_SECONDS) -> bool:
    from node.client import RpcClient

    deadline = time.monotonic() + timeout_s
    pending = list(nodes)
    while pending and time.monotonic() < deadline:
        still = []
        for node in pending:
            try:
                with RpcClient(node.rpc_url, timeout_s=2.0) as client:
                    status = client.call("node_status")
                if node.validator and not status.get("leader_id"):
                    still.append(node)
            except Exception:
                still.append(node)
        pending = still
        if pending:
            time.sleep(0.5)
    return not pending


def run_devnet(directory: Path, *, validators: int, observers: int, rpc_port: int,
               chain_id: str) -> int:
    nodes = create_devnet(directory, validators=validators, observers=observers,
                          rpc_port=rpc_port, chain_id=chain_id)
    processes = start_processes(directory, nodes)
    stopping = False

    def on_signal(number: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {number: signal.signal(number, on_signal)
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"devnet {chain_id}: {len(nodes)} nodes in {directory} (logs: */node.log)")
        for node in nodes:
            role = "validator" if node.validator else "observer"
            print(f"  {node.name}  {role:9}  rpc {node.rpc_url}  p2p {node.multiaddr}")
        ready = wait_ready(nodes)
        print("devnet ready: a leader is elected; Ctrl-C stops it" if ready
              else "devnet started, but not every node reported ready (see node.log)")
        sys.stdout.flush()
        while not stopping:
            for node, process in zip(nodes, processes, strict=True):
                if process.poll() is not None:
                    print(f"{node.name} exited with {process.returncode}; stopping the devnet")
                    stopping = True
            time.sleep(0.5)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        print("stopping the devnet ...")
        stop_processes(processes)
    codes = [process.returncode for process in processes]
    print(f"devnet stopped (exit codes {codes})")
    return 0 if all(code == 0 for code in codes) else 1


__all__ = ["DevnetNode", "create_devnet", "os", "run_devnet"]
