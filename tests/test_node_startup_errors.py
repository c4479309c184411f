"""Bad start-up inputs: each ends ``medledger start`` with exit code 2 and one line
``medledger: ...`` on stderr that names the problem and the fix (no traceback, no JSON).
Real processes on 127.0.0.1; each test stops what it started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.tools.devnet import DevnetNode, create_devnet, free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
START_TIMEOUT_S = 60


@pytest.fixture
def node(tmp_path: Path) -> DevnetNode:
    (only,) = create_devnet(tmp_path, validators=1, observers=0, rpc_port=0,
                            chain_id="medledger-startup-test")
    return only


def config_of(tmp_path: Path, node: DevnetNode) -> Path:
    return tmp_path / node.name / "node.toml"


def start(config: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", "start", "-c", str(config)],
        capture_output=True, text=True, timeout=START_TIMEOUT_S, cwd=ROOT,
        env={**os.environ, **environment},
    )


def one_line_refusal(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("medledger: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    assert "Traceback" not in result.stdout + result.stderr
    return line


@pytest.fixture
def listening_socket() -> Iterator[tuple[socket.socket, int]]:
    """A port held the way py-libp2p holds one (SO_REUSEPORT), on 127.0.0.1."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield holder, holder.getsockname()[1]
    finally:
        holder.close()


def test_a_missing_genesis_file_says_how_to_make_one(tmp_path: Path, node: DevnetNode) -> None:
    (tmp_path / "genesis.json").unlink()
    one_line_refusal(start(config_of(tmp_path, node)), "genesis file", "medledger genesis")


def test_a_taken_p2p_port_is_refused(tmp_path: Path, node: DevnetNode,
                                     listening_socket: tuple[socket.socket, int]) -> None:
    _, port = listening_socket
    result = start(config_of(tmp_path, node),
                   MEDLEDGER_P2P_LISTEN=f"/ip4/127.0.0.1/tcp/{port}")
    one_line_refusal(result, f"port {port}", "[p2p] listen")


def test_a_taken_rpc_port_is_refused(tmp_path: Path, node: DevnetNode,
                                     listening_socket: tuple[socket.socket, int]) -> None:
    _, port = listening_socket
    result = start(config_of(tmp_path, node), MEDLEDGER_RPC_PORT=str(port),
                   MEDLEDGER_P2P_LISTEN=f"/ip4/127.0.0.1/tcp/{free_port()}")
    one_line_refusal(result, str(port), "[rpc] port")


def test_a_data_directory_in_use_is_refused(tmp_path: Path, node: DevnetNode) -> None:
    config = config_of(tmp_path, node)
    holder = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "storage_lock_holder.py"),
         str(tmp_path / node.name / "data"), "medledger-startup-test"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        one_line_refusal(start(config), "in use", "stop the other node")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)


def test_a_bootstrap_address_without_a_peer_id_is_refused(tmp_path: Path,
                                                          node: DevnetNode) -> None:
    result = start(config_of(tmp_path, node),
                   MEDLEDGER_P2P_BOOTSTRAP="/ip4/127.0.0.1/tcp/4001")
    one_line_refusal(result, "/p2p/<peer id>")


def test_a_bad_environment_override_names_its_variable(tmp_path: Path,
                                                       node: DevnetNode) -> None:
    result = start(config_of(tmp_path, node), MEDLEDGER_RPC_PORT="eighty")
    one_line_refusal(result, "MEDLEDGER_RPC_PORT", "[rpc] port")


def test_tx_submit_with_raw_that_is_not_hex_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", "tx", "submit", "--raw", "0xzz",
         "--rpc", "http://127.0.0.1:9/"],
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        "medledger: --raw '0xzz' is not hex (a signed tx, 0x-prefixed or not)"]


def test_a_data_directory_of_another_genesis_is_refused(tmp_path: Path,
                                                        node: DevnetNode) -> None:
    """The node ran on this data directory with one genesis; its genesis file changed."""
    import json

    from node.bootstrap import open_store
    from node.config import load_config
    from node.genesis import genesis_hash, load_genesis

    config = load_config(config_of(tmp_path, node), environ={})
    first = load_genesis(config.genesis_file)
    open_store(config.data_dir, first, config.genesis_file).close()
    document = json.loads(config.genesis_file.read_text())
    document["genesis_time_ms"] += 1
    config.genesis_file.write_text(json.dumps(document))
    second = load_genesis(config.genesis_file)
    one_line_refusal(start(config_of(tmp_path, node)), "another genesis",
                     genesis_hash(first).hex(), genesis_hash(second).hex(), "data_dir")
