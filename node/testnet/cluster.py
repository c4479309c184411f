"""A consortium set up like a real one, through the CLI: ``medledger init`` per node (key
and config), the config edited as an operator would (listen on the host's address,
bootstrap to the others), ``medledger genesis`` from a members file, then one
``medledger start`` per node inside its namespace.

Members: one provider per node (``hospital-N``: the workload's lanes sign with their
admin keys), an insurer (coverage in the preparation), and a governance board of
custodians (``board-N``) that, with the insurer, holds the two-thirds majority that votes
a newcomer in during the run; the lanes' keys never sign governance, so their nonces stay
in order. Admin keys are the devnet's (derived from the org id: test chains only), so the
load tester's preparation finds them; the member key files are written to ``members/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import ConfigError
from ledger.sdk.devnet import devnet_admin_key
from node.config import config_from_dict, render_config
from node.keys import write_key_file
from node.testnet.netns import Network
from node.tools.devnet import die_with_parent

P2P_PORT = 7000
RPC_PORT = 8545
CLI_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
LANE_ORG_PREFIX = "hospital-"
BOARD_ORG_PREFIX = "board-"
INSURER_ORG = "insurer"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str  # also its host's name
    validator: bool
    address: str
    peer_id: str
    public_key: str  # 0x-hex
    directory: Path

    @property
    def rpc_url(self) -> str:
        return f"http://{self.address}:{RPC_PORT}/"

    @property
    def multiaddr(self) -> str:
        return f"/ip4/{self.address}/tcp/{P2P_PORT}/p2p/{self.peer_id}"

    @property
    def config(self) -> Path:
        return self.directory / "node.toml"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "node.log"


def cli(*arguments: str) -> str:
    """Run ``medledger ARGUMENTS`` (this interpreter's); its stdout, or a ConfigError."""
    command = [sys.executable, "-m", "node.cli", *arguments]
    completed = subprocess.run(command, capture_output=True, text=True,
                               timeout=CLI_TIMEOUT_S, check=False)
    if completed.returncode != 0:
        raise ConfigError(f"medledger {' '.join(arguments)}: {completed.stderr.strip()}")
    return completed.stdout


def board_size(lanes: int) -> int:
    """Board members so that board + insurer pass a proposal (approvals * 3 > active * 2)
    with the lanes abstaining, also after one newcomer joined."""
    board = 0
    while (board + 1) * 3 <= (lanes + 1 + board + 1) * 2:
        board += 1
    return board


def governance_orgs(lanes: int) -> list[str]:
    """The voters of a membership change: the insurer and the board."""
    board = [f"{BOARD_ORG_PREFIX}{index}" for index in range(1, board_size(lanes) + 1)]
    return [INSURER_ORG, *board]


def create(directory: Path, network: Network, *, validators: list[str], observers: list[str],
           chain_id: str) -> list[NodeSpec]:
    """Init every node, write the members file and genesis, edit the configs."""
    directory.mkdir(parents=True, exist_ok=True)
    nodes = []
    for name in validators + observers:
        node_dir = directory / name
        printed = json.loads(cli("init", "--dir", str(node_dir), "--rpc-port", str(RPC_PORT),
                                 "--p2p-port", str(P2P_PORT)))
        nodes.append(NodeSpec(name, name in validators, network.host(name).address,
                              printed["peer_id"],
                              "0x" + printed["node_public_key"].removeprefix("0x"), node_dir))
    members = directory / "members.toml"
    members.write_text(_members_toml(chain_id, nodes))
    cli("genesis", "-m", str(members), "-o", str(directory / "genesis.json"))
    for node in nodes:
        _edit_config(node, nodes, directory / "genesis.json")
    return nodes


def _members_toml(chain_id: str, nodes: list[NodeSpec]) -> str:
    lines = [f'chain_id = "{chain_id}"', f"genesis_time_ms = {int(time.time() * 1000)}", ""]
    lanes = len(nodes)
    entries: list[tuple[str, str, NodeSpec | None]] = [
        (f"{LANE_ORG_PREFIX}{index}", "provider", node)
        for index, node in enumerate(nodes, start=1)
    ]
    entries += [(org, "insurer" if org == INSURER_ORG else "custodian", None)
                for org in governance_orgs(lanes)]
    for org, kind, node in entries:
        admin = devnet_admin_key(org).public_key.hex()
        lines += ["[[member]]", f'org_id = "{org}"', f'kind = "{kind}"',
                  f'admin_key = "0x{admin}"']
        if node is not None and node.validator:
            lines += [f'node_key = "{node.public_key}"', "validator = true"]
        else:
            lines += ["validator = false"]
        lines.append("")
    return "\n".join(lines)


def write_member_keys(directory: Path, orgs: list[str]) -> None:
    for org in orgs:
        path = directory / "members" / f"{org}.admin.key"
        if not path.exists():
            write_key_file(path, devnet_admin_key(org))


def _edit_config(node: NodeSpec, nodes: list[NodeSpec], genesis: Path) -> None:
    document = tomllib.loads(node.config.read_text())
    document.setdefault("node", {})["genesis_file"] = str(genesis)
    document["node"]["data_dir"] = "data"
    document.setdefault("p2p", {})["listen"] = f"/ip4/{node.address}/tcp/{P2P_PORT}"
    document["p2p"]["bootstrap"] = [other.multiaddr for other in nodes if other is not node]
    document.setdefault("rpc", {})["host"] = node.address
    document["rpc"]["port"] = RPC_PORT
    config = config_from_dict(document, base_dir=str(node.directory), environ={})
    node.config.write_text(render_config(config))


class NodeProcesses:
    """``medledger start`` per node inside its namespace; stops only the pids it started."""

    def __init__(self, network: Network, nodes: list[NodeSpec], *,
                 plant: str | None = None) -> None:
        self.network = network
        # A bug planted in the first validator (node.testnet.plants), or None.
        self.plant = plant
        self.planted = next((node.name for node in nodes if node.validator), None) \
            if plant else None
        self.nodes = {node.name: node for node in nodes}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.intended_exit: set[str] = set()
        self.paused: set[str] = set()

    def start(self, name: str) -> None:
        node = self.nodes[name]
        argv = [sys.executable, "-m", "node.cli", "start", "-c", str(node.config)]
        if name == self.planted and self.plant:
            argv[2:3] = ["node.testnet.plants", self.plant]
        with open(node.log, "ab") as log_file:
            self.processes[name] = subprocess.Popen(
                self.network.exec_args(name, argv), stdout=log_file,
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.intended_exit.discard(name)

    def kill(self, name: str) -> None:
        self.intended_exit.add(name)
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=CLI_TIMEOUT_S)

    def pause(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGSTOP)
            self.paused.add(name)

    def resume(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
        self.paused.discard(name)

    def crashed(self) -> list[tuple[str, int]]:
        """(name, exit code) of nodes that exited without us stopping them."""
        return [(name, process.returncode) for name, process in self.processes.items()
                if process.poll() is not None and name not in self.intended_exit]

    def stop_all(self) -> dict[str, int | None]:
        """SIGCONT (a paused node cannot stop), SIGTERM, SIGKILL after the grace; exit codes."""
        for name in list(self.paused):
            self.resume(name)
        for name, process in self.processes.items():
            if process.poll() is None:
                self.intended_exit.add(name)
                process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                codes[name] = process.wait(timeout=STOP_GRACE_S)
        return codes
