"""The OpenRPC 1.2 document (https://spec.open-rpc.org), generated from the registry.

``rpc.discover`` returns it. It is built from the same :class:`MethodSpec` objects that
check params, so what the document promises is what the server enforces.
"""

from __future__ import annotations

from typing import Any

from node.rpc import errors
from node.rpc.registry import MethodSpec, Registry

OPENRPC_VERSION = "1.2.6"
API_VERSION = "1.0.0"
TITLE = "medledger JSON-RPC"
DESCRIPTION = (
    "JSON-RPC 2.0 over HTTP POST / and WebSocket /ws of a medledger node. Bytes are "
    "0x-prefixed hex, heights and indexes integers. Params may be given by name (object) "
    "or by position (array, in the order listed). Admin methods need "
    "'Authorization: Bearer <token>' (over WebSocket: at connect, or rpc.authenticate)."
)


def method_object(spec: MethodSpec) -> dict[str, Any]:
    description = spec.description
    if spec.exactly_one_of:
        names = ", ".join(spec.exactly_one_of)
        description = (description + " " if description else "") + f"Give exactly one of: {names}."
    method: dict[str, Any] = {
        "name": spec.name,
        "summary": spec.summary,
        "paramStructure": "either",
        "params": [
            {
                "name": param.name,
                "description": param.description,
                "required": param.required,
                "schema": param.type.schema(),
            }
            for param in spec.params
        ],
        "result": {
            "name": spec.result.name,
            "description": spec.result.description,
            "schema": dict(spec.result.schema),
        },
        "errors": [
            {"code": error.code, "message": error.default_message} for error in spec.all_errors
        ],
    }
    if description:
        method["description"] = description
    tags = []
    if spec.admin:
        tags.append({"name": "admin", "description": "needs the admin bearer token"})
    if spec.websocket_only:
        tags.append({"name": "websocket", "description": "only over WebSocket (/ws)"})
    if tags:
        method["tags"] = tags
    return method


def document(registry: Registry, *, node_version: str = "") -> dict[str, Any]:
    info: dict[str, Any] = {"title": TITLE, "version": API_VERSION, "description": DESCRIPTION}
    if node_version:
        info["x-node-version"] = node_version
    return {
        "openrpc": OPENRPC_VERSION,
        "info": info,
        "methods": [method_object(spec) for spec in registry],
        "components": {
            "errors": {
                error.name: {"code": error.code, "message": error.default_message}
                for error in errors.ERROR_CLASSES
            }
        },
    }
