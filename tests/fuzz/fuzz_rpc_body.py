"""The JSON-RPC body (HTTP POST ``/``, or one WebSocket message): any bytes must be
answered with a JSON-RPC response (or nothing, for notifications), never an exception and
never -32603 caused by an unexpected exception in a handler.

Allowed: nothing. The dispatcher answers every body."""

from __future__ import annotations

import json

import trio

from fuzz.rpc_world import world

ALLOWED: tuple[type[BaseException], ...] = ()


def one_input(data: bytes) -> None:
    current = world()
    response = trio.run(lambda: current.answer(data, websocket=False))
    current.check(response)
    if response is None:
        return
    document = json.loads(response)
    answers = document if isinstance(document, list) else [document]
    for answer in answers:
        assert answer["jsonrpc"] == "2.0" and ("result" in answer) != ("error" in answer), answer


def seeds() -> dict[str, bytes]:
    calls = {
        "head": {"jsonrpc": "2.0", "id": 1, "method": "chain_head"},
        "block": {"jsonrpc": "2.0", "id": "a", "method": "chain_getBlock",
                  "params": {"height": 1, "full": True}},
        "tx-status": {"jsonrpc": "2.0", "id": 2, "method": "tx_status",
                      "params": ["0x" + "00" * 32]},
        "notification": {"jsonrpc": "2.0", "method": "node_status"},
        "party": {"jsonrpc": "2.0", "id": 3, "method": "records_party",
                  "params": {"party_id": "org-hospital-a"}},
        "submit": {"jsonrpc": "2.0", "id": 4, "method": "tx_submit", "params": {"raw": "0x00"}},
    }
    found = {f"rpc-{name}": json.dumps(call).encode() for name, call in calls.items()}
    found["rpc-batch"] = json.dumps(list(calls.values())).encode()
    found["rpc-empty-batch"] = b"[]"
    found["rpc-deep"] = b"[" * 200 + b"]" * 200
    found["rpc-bad-utf8"] = b'{"jsonrpc":"2.0","id":1,"method":"\xff"}'
    found["rpc-nan"] = b'{"jsonrpc":"2.0","id":NaN,"method":"chain_head"}'
    return found
