"""``medledger demo``: the healthcare story (ledger/sdk/demo.py) against a running node,
through JSON-RPC."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ledger.errors import ConfigError
from ledger.sdk.demo import DemoConsortium, DemoReport, run_demo
from node.client import RpcClient, RpcError

WAIT_POLL_SECONDS = 0.1


class RpcLedgerClient:
    """ledger.sdk.LedgerClient over a node's JSON-RPC port."""

    def __init__(self, url: str) -> None:
        self._rpc = RpcClient(url)
        self._chain_id: str = self._rpc.call("node_status")["chain_id"]

    @property
    def chain_id(self) -> str:
        return self._chain_id

    def submit(self, raw: bytes) -> tuple[bool, int, str]:
        try:
            answer = self._rpc.call("tx_submit", {"raw": "0x" + raw.hex()})
        except RpcError as error:
            data = error.data if isinstance(error.data, dict) else {}
            return False, int(data.get("code", -1)), str(data.get("message", error.message))
        return bool(answer["accepted"]), int(answer["code"]), str(answer.get("message", ""))

    def wait_committed(self, tx_id: bytes, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._rpc.call("tx_status", {"tx_id": "0x" + tx_id.hex()})
            if status.get("state") == "committed":
                return int(status.get("code", status.get("result", 0)))
            time.sleep(WAIT_POLL_SECONDS)
        raise TimeoutError(f"tx 0x{tx_id.hex()} not committed within {timeout_s} s")

    def query(self, method: str, params: dict[str, Any]) -> Any:
        try:
            return self._rpc.call(method, _to_json(params))
        except RpcError as error:
            if error.code == -32001:
                return None
            raise

    def close(self) -> None:
        self._rpc.close()


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {key: _to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(item) for item in value]
    return value


def consortium_for(directory: Path) -> DemoConsortium:
    """The consortium a devnet directory was created with."""
    manifest = directory / "devnet.json"
    if not manifest.exists():
        raise ConfigError(f"{manifest} not found: run `medledger devnet --dir {directory}` first")
    return DemoConsortium(chain_id=json.loads(manifest.read_text())["chain_id"])


def run_demo_against(url: str, directory: Path) -> DemoReport:
    client = RpcLedgerClient(url)
    try:
        return run_demo(client, print, consortium=consortium_for(directory))
    finally:
        client.close()
