"""Real node processes on several test hosts: each node in its own network namespace with
its own private address, on a bridge that exists only inside the namespaces
(node.testnet.netns). Root only; tests skip with the reason otherwise.

Nodes are made like a devnet (keys, genesis, configs), then each config listens on its
host's address. The test process lives in the root namespace, which has no route to the
bridge: it reaches a node's JSON-RPC by running curl inside that node's own namespace
(so a node cut off from the others still answers us)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node_harness import ROOT

from node.config import ConsensusSection, NodeConfig, P2PSection, RpcSection, render_config
from node.testnet.netns import Network, namespaces_supported
from node.tools.devnet import DevnetNode, create_devnet, die_with_parent

P2P_PORT = 30333
RPC_PORT = 8545
RPC_TIMEOUT_S = 3.0


def skip_reason() -> str | None:
    """Why multi-host tests cannot run here (None: they can)."""
    return namespaces_supported()


@dataclass
class HostNode:
    node: DevnetNode
    host: str  # the namespace host name in the Network
    address: str
    directory: Path
    network: Network
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / self.node.name / "node.log"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self.network.exec_args(self.host, [
                    sys.executable, "-m", "node.cli", "start", "-c",
                    str(self.directory / self.node.name / "node.toml")]),
                stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=die_with_parent,
            )

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def call(self, method: str, params: Any = None) -> Any:
        """JSON-RPC from inside the node's namespace; None when it does not answer."""
        request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                              "params": params if params is not None else {}})
        try:
            completed = subprocess.run(
                self.network.exec_args(self.host, [
                    "curl", "-s", "-m", str(RPC_TIMEOUT_S), "-H",
                    "content-type: application/json", "-d", request,
                    f"http://{self.address}:{RPC_PORT}/"]),
                capture_output=True, timeout=RPC_TIMEOUT_S + 5, check=False)
            answer = json.loads(completed.stdout or b"null")
        except (subprocess.TimeoutExpired, json.JSONDecodeError):
            return None
        if not isinstance(answer, dict) or "result" not in answer:
            return None
        return answer["result"]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def cluster(directory: Path, *, validators: int = 3,
            observers: int = 0) -> Iterator[tuple[Network, list[HostNode]]]:
    """Start ``validators`` + ``observers`` nodes, one per test host."""
    nodes = create_devnet(directory, validators=validators, observers=observers,
                          rpc_port=0, chain_id="medledger-test",
                          consensus=ConsensusSection())
    names = [node.name for node in nodes]
    with Network(names) as network:
        addresses = {node.name: network.host(node.name).address for node in nodes}

        def multiaddr(node: DevnetNode) -> str:
            return f"/ip4/{addresses[node.name]}/tcp/{P2P_PORT}/p2p/{node.peer_id}"

        members = []
        for node in nodes:
            config = NodeConfig(
                p2p=P2PSection(listen=f"/ip4/{addresses[node.name]}/tcp/{P2P_PORT}",
                               bootstrap=tuple(multiaddr(o) for o in nodes if o is not node)),
                rpc=RpcSection(host=addresses[node.name], port=RPC_PORT),
            )
            text = render_config(config)
            # Keep the devnet's node section (key, data dir, genesis path).
            original = (directory / node.name / "node.toml").read_text()
            node_section = original.split("[p2p]")[0]
            (directory / node.name / "node.toml").write_text(
                node_section + text[text.index("[p2p]"):])
            members.append(HostNode(node, node.name, addresses[node.name], directory,
                                    network))
        try:
            for member in members:
                member.start()
            yield network, members
        finally:
            for member in members:
                member.stop()


def leader(members: list[HostNode]) -> HostNode | None:
    for member in members:
        status = member.call("node_status")
        if status and status.get("role") == "leader":
            return member
    return None


def all_connected(members: list[HostNode], validators: int) -> bool:
    """Every node connected to every validator but itself."""
    for member in members:
        peers = member.call("node_peers")
        if peers is None:
            return False
        connected = [p for p in peers if p["validator"] and p["connected"]]
        expected = validators - (1 if member.node.validator else 0)
        if len(connected) < expected:
            return False
    return True


def dump_logs(members: list[HostNode], lines: int = 60) -> str:
    return "\n".join(f"==== {m.node.name}\n" + "\n".join(m.log_text().splitlines()[-lines:])
                     for m in members)
