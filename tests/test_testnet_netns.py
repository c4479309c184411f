"""node.testnet.netns: two hosts on a private bridge; TCP works, a blackhole blocks it,
unblackhole heals it, link down/up likewise, and cleanup leaves no namespace behind."""

from __future__ import annotations

import select
import subprocess
import sys
import time

import pytest

from node.testnet.netns import Network, leftover_namespaces, namespaces_supported

_REASON = namespaces_supported()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

PORT = 7000
CONNECT_TIMEOUT_S = 2.0
SERVER_READY_TIMEOUT_S = 10.0

_SERVER = f"PORT = {PORT}\n" + """
import socket
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", PORT))
server.listen(8)
print("ready", flush=True)
for _ in range(64):
    connection, _ = server.accept()
    connection.sendall(b"pong")
    connection.close()
"""

_CLIENT = f"PORT, TIMEOUT = {PORT}, {CONNECT_TIMEOUT_S}\n" + """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], PORT), timeout=TIMEOUT) as connection:
        sys.exit(0 if connection.recv(4) == b"pong" else 3)
except OSError as error:
    print(error, file=sys.stderr)
    sys.exit(1)
"""


def _connects(network: Network, source: str, target: str) -> bool:
    completed = subprocess.run(
        network.exec_args(source, [sys.executable, "-c", _CLIENT, network.host(target).address]),
        capture_output=True, timeout=CONNECT_TIMEOUT_S + 10, check=False,
    )
    return completed.returncode == 0


def test_two_hosts_talk_blackhole_blocks_and_cleanup_removes_all() -> None:
    with Network(["a", "b"]) as network:
        prefix = network.prefix
        assert set(leftover_namespaces(prefix)) == {
            prefix + "a", prefix + "b", prefix + "switch"}
        server = subprocess.Popen(network.exec_args("b", [sys.executable, "-c", _SERVER]),
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            readable, _, _ = select.select([server.stdout], [], [], SERVER_READY_TIMEOUT_S)
            assert readable, "the server in host b did not start"
            assert server.stdout.readline().strip() == "ready"
            assert _connects(network, "a", "b")
            network.blackhole("a", "b")
            assert not _connects(network, "a", "b")
            network.unblackhole("a", "b")
            assert _connects(network, "a", "b")
            network.link_down("b")
            assert not _connects(network, "a", "b")
            network.link_up("b")
            assert _connects(network, "a", "b")
        finally:
            server.kill()
            server.wait(timeout=10)
    assert leftover_namespaces(prefix) == []


def test_cleanup_on_exception_kills_processes_inside() -> None:
    prefix = ""
    sleeper: subprocess.Popen[bytes] | None = None
    with pytest.raises(RuntimeError, match="planted"), Network(["only"]) as network:
        prefix = network.prefix
        sleeper = subprocess.Popen(network.exec_args("only", ["sleep", "300"]))
        # Only once it runs inside: `ip netns exec` enters the namespace after a moment.
        namespace = network.host("only").namespace
        deadline = time.monotonic() + 10
        while not subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                                 text=True, timeout=10).stdout.split():
            assert time.monotonic() < deadline, "the sleeper never entered the namespace"
            time.sleep(0.05)
        raise RuntimeError("planted")
    assert leftover_namespaces(prefix) == []
    assert sleeper is not None
    assert sleeper.wait(timeout=10) == -9
