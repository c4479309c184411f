"""Real node processes on 127.0.0.1 for integration tests: start, stop, kill by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from node.client import RpcClient, RpcError, RpcUnreachableError
from node.config import ConsensusSection
from node.tools.devnet import DevnetNode, create_devnet, die_with_parent

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class NodeProcess:
    node: DevnetNode
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    client: RpcClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = RpcClient(self.node.rpc_url, timeout_s=5.0)

    @property
    def log_path(self) -> Path:
        return self.directory / self.node.name / "node.log"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "start", "-c",
                 str(self.directory / self.node.name / "node.toml")],
                stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=die_with_parent,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def call(self, method: str, params: Any = None) -> Any:
        return self.client.call(method, params)

    def try_call(self, method: str, params: Any = None) -> Any:
        try:
            return self.client.call(method, params)
        except (RpcUnreachableError, RpcError):
            return None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_for(predicate: Callable[[], T], *, timeout_s: float, interval_s: float = 0.2,
             what: str = "condition") -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


@contextmanager
def network(tmp_path: Path, *, validators: int = 3, observers: int = 1,
            start: bool = True) -> Iterator[list[NodeProcess]]:
    nodes = create_devnet(
        tmp_path, validators=validators, observers=observers, rpc_port=0,
        chain_id="medledger-test", consensus=ConsensusSection(),
    )
    processes = [NodeProcess(node, tmp_path) for node in nodes]
    try:
        if start:
            for process in processes:
                process.start()
        yield processes
    finally:
        for process in processes:
            process.stop()
            process.client.close()


def leader_of(processes: list[NodeProcess]) -> NodeProcess | None:
    for process in processes:
        status = process.try_call("node_status")
        if status and status.get("role") == "leader":
            return process
    return None


def dump_logs(processes: list[NodeProcess], lines: int = 40) -> str:
    parts = []
    for process in processes:
        tail = process.log_text().splitlines()[-lines:]
        parts.append(f"==== {process.node.name}\n" + "\n".join(tail))
    return "\n".join(parts)
