"""JSON-RPC params: a well-formed request for every registered method (the application's
query methods too, and the WebSocket-only and admin ones, over an authenticated WebSocket
connection) with params built from the input. Every call must get a result or a JSON-RPC
error, never -32603 from an unexpected exception.

The input is read as a small program (see ``_Reader``): the first byte picks the method,
the rest builds the params value (object or array), biased towards the method's own param
names and the shapes its params take (0x-hex, identifiers, integers at the boundaries), so
the fuzzer reaches past the param checks into the handlers.

Allowed: nothing."""

from __future__ import annotations

import json
from typing import Any

import trio

from fuzz.rpc_world import world

ALLOWED: tuple[type[BaseException], ...] = ()
# Nesting of a generated value; the registry's types are at most two deep (arrays of hex).
DEPTH_MAX = 3
ITEMS_MAX = 6
INTEGERS = (0, 1, 2, 3, -1, 255, 256, 2**31, 2**53, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30)
STRINGS = ("", "0x", "0x00", "0x" + "00" * 32, "0x" + "ab" * 32, "0x" + "ab" * 33, "0xzz",
           "org-hospital-a", "org-lab", "pat-1", "newBlocks", "txResults", "x" * 300, "\u0000",
           "é", "0X00", " 0x00", "1", "true", "null")


class _Reader:
    """Bytes -> choices; reading past the end gives zeros (so every input means a call)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def byte(self) -> int:
        value = self._data[self._position] if self._position < len(self._data) else 0
        self._position += 1
        return value

    def pick(self, options: Any) -> Any:
        return options[self.byte() % len(options)]

    def text(self) -> str:
        length = self.byte() % 40
        start = self._position
        self._position += length
        return self._data[start : start + length].decode("utf-8", errors="replace")

    def value(self, names: list[str], depth: int = 0) -> Any:
        kind = self.byte() % (10 if depth < DEPTH_MAX else 7)
        if kind == 0:
            return None
        if kind == 1:
            return bool(self.byte() & 1)
        if kind == 2:
            return self.pick(INTEGERS)
        if kind == 3:
            return self.pick(STRINGS)
        if kind == 4:
            return "0x" + bytes(self.byte() for _ in range(self.byte() % 40)).hex()
        if kind == 5:
            return self.text()
        if kind == 6:
            return self.pick((0.5, -0.0, 1e308, 3.0))
        if kind in (7, 8):
            return [self.value(names, depth + 1) for _ in range(self.byte() % ITEMS_MAX)]
        return self.object(names, depth + 1)

    def object(self, names: list[str], depth: int) -> dict[str, Any]:
        keys = [*names, "full", "topic", "tx_ids", "batch", "extra"]
        return {self.pick(keys): self.value(names, depth) for _ in range(self.byte() % ITEMS_MAX)}


def request_for(data: bytes) -> dict[str, Any]:
    registry = world().server.context.registry
    specs = list(registry)
    reader = _Reader(data)
    spec = reader.pick(specs)
    names = [param.name for param in spec.params]
    shape = reader.byte() % 4
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": spec.name}
    if shape == 0:
        request["params"] = {name: reader.value(names) for name in names if reader.byte() & 1}
    elif shape == 1:
        request["params"] = [reader.value(names) for _ in range(reader.byte() % (len(names) + 2))]
    elif shape == 2:
        request["params"] = reader.object(names, 0)
    return request


def one_input(data: bytes) -> None:
    current = world()
    body = json.dumps(request_for(data))
    response = trio.run(lambda: current.answer(body, websocket=True))
    current.check(response)
    assert response is not None
    answer = json.loads(response)
    assert ("result" in answer) != ("error" in answer), answer


def seeds() -> dict[str, bytes]:
    specs = list(world().server.context.registry)
    return {f"params-{spec.name}": bytes([index, 0]) + bytes(range(1, 40, 3))
            for index, spec in enumerate(specs)}
