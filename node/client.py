"""A small JSON-RPC 2.0 client for the CLI, the demo and the load tester (httpx)."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from ledger.errors import LocalError, RemoteError

# CLI calls are interactive: fail rather than hang when a node does not answer.
REQUEST_TIMEOUT_SECONDS = 30.0


class RpcError(RemoteError):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"RPC error {code}: {message}" + (f" ({data})" if data else ""))
        self.code = code
        self.message = message
        self.data = data


class RpcUnreachableError(LocalError):
    """The node's RPC port does not answer."""


class RpcClient:
    """Blocking client (one HTTP connection kept alive)."""

    def __init__(self, url: str, *, token: str | None = None,
                 timeout_s: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers)
        self._ids = itertools.count(1)

    def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            request["params"] = params
        try:
            response = self._http.post(self.url, json=request)
        except httpx.HTTPError as error:
            raise RpcUnreachableError(f"{self.url}: {error}") from None
        try:
            answer = response.json()
        except ValueError:
            raise RemoteError(f"{self.url}: HTTP {response.status_code}, not JSON") from None
        if "error" in answer:
            failure = answer["error"]
            raise RpcError(failure.get("code", 0), failure.get("message", ""), failure.get("data"))
        return answer.get("result")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
