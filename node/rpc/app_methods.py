"""Domain methods (records_, consent_, audit_, claims_, gov_), routed to
``NodeAPI.app_query(method, params)``.

The application layer (``ledger/app``, pure) names its queries; the node registers them
with :func:`register_app_methods`, either as :class:`AppMethodSpec` objects or from plain
descriptions (:func:`app_method_from_description`) so that the pure layer need not import
``node``. Params are checked here, by the same registry that documents them in
``rpc.discover``; ``app_query`` receives the checked values by name (hex params as
``bytes``, absent optional params as ``None``).

What ``app_query`` may raise, and what the caller sees:

- ``LookupError`` (``KeyError``): -32001 not found, with the exception's message;
- ``ledger.errors.RemoteError`` (``ValidationError``, ``DecodeError``): -32602 invalid
  params, with the exception's message;
- anything else: -32603 internal error (logged with its traceback, never returned).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger import limits as ledger_limits
from ledger.codec import IDENTIFIER_PATTERN
from ledger.crypto import HASH_SIZE, PUBLIC_KEY_SIZE
from ledger.errors import RemoteError
from node.jsonview import to_json_value
from node.rpc.context import CallContext
from node.rpc.errors import InvalidParams, NotFound
from node.rpc.registry import (
    ArrayOf,
    Boolean,
    Handler,
    HexBytes,
    MethodSpec,
    NonNegativeInt,
    ParamSpec,
    ParamType,
    Registry,
    ResultSpec,
    Text,
)

APP_NAMESPACES = ("records_", "consent_", "audit_", "claims_", "gov_")

# The vocabulary of plain descriptions: a type name -> its param type ("name[]" is an
# array of it, of at most ledger's LIST_LENGTH_MAX items).
PARAM_TYPES: dict[str, ParamType] = {
    "string": Text(length_max=ledger_limits.TEXT_LENGTH_MAX),
    "identifier": Text(
        length_max=ledger_limits.IDENTIFIER_LENGTH_MAX, length_min=1, pattern=IDENTIFIER_PATTERN
    ),
    "integer": NonNegativeInt(),
    "boolean": Boolean(),
    "hash": HexBytes(size=HASH_SIZE),
    "public_key": HexBytes(size=PUBLIC_KEY_SIZE),
    "bytes": HexBytes(size_max=ledger_limits.BYTES_LENGTH_MAX),
}


@dataclass(frozen=True, slots=True)
class AppMethodSpec:
    name: str
    summary: str
    params: tuple[ParamSpec, ...] = ()
    result_description: str = ""
    result_schema: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    exactly_one_of: tuple[str, ...] = ()


def app_method_from_description(description: Mapping[str, Any]) -> AppMethodSpec:
    """Build a spec from plain data::

        {"name": "consent_get", "summary": "A consent by id",
         "params": [{"name": "consent_id", "type": "identifier", "required": True,
                     "description": "..."}],
         "result": "the consent, or null"}
    """
    params = tuple(
        ParamSpec(
            name=param["name"],
            type=_param_type(param["type"]),
            description=param.get("description", ""),
            required=param.get("required", True),
        )
        for param in description.get("params", ())
    )
    return AppMethodSpec(
        name=description["name"],
        summary=description.get("summary", ""),
        params=params,
        result_description=description.get("result", ""),
        description=description.get("description", ""),
        exactly_one_of=tuple(description.get("exactly_one_of", ())),
    )


def app_method_specs() -> list[AppMethodSpec]:
    """The application's queries as RPC method specs (params typed for validation and for
    the OpenRPC document)."""
    from ledger.app.queries import QUERY_METHODS

    type_names = {str: "identifier", int: "integer", bytes: "bytes", bool: "boolean"}
    specs = []
    for name, method in QUERY_METHODS.items():
        params = [
            {"name": param, "type": type_names[param_type],
             "required": param not in method.optional}
            for param, param_type in method.params.items()
        ]
        summary = name.split("_", 1)[1]
        specs.append(app_method_from_description(
            {"name": name, "summary": f"application query {summary}", "params": params,
             "result": "JSON view of the ledger state, or null when not found",
             "description": method.description}))
    return specs


def _param_type(name: str) -> ParamType:
    if name.endswith("[]"):
        return ArrayOf(_param_type(name[:-2]), length_max=ledger_limits.LIST_LENGTH_MAX)
    param_type = PARAM_TYPES.get(name)
    assert param_type is not None, f"unknown app param type {name!r}; see PARAM_TYPES"
    return param_type


def register_app_methods(registry: Registry, specs: Iterable[AppMethodSpec]) -> None:
    for spec in specs:
        assert spec.name.startswith(APP_NAMESPACES), (
            f"app method {spec.name} is outside the namespaces {APP_NAMESPACES}"
        )
        registry.add(
            MethodSpec(
                name=spec.name,
                summary=spec.summary,
                handler=_app_handler(spec.name),
                result=ResultSpec("result", spec.result_description, spec.result_schema),
                params=spec.params,
                errors=(NotFound,),
                description=spec.description,
                exactly_one_of=spec.exactly_one_of,
            )
        )


def _app_handler(method: str) -> Handler:
    async def handle(call: CallContext, params: dict[str, Any]) -> Any:
        try:
            result = call.node.app_query(method, params)
        except LookupError as error:
            raise NotFound(f"Not found: {_message(error)}") from None
        except RemoteError as error:
            raise InvalidParams(f"Invalid params: {_message(error)}") from None
        return to_json_value(result)

    return handle


def _message(error: Exception) -> str:
    # KeyError's str() is the repr of its key: use the key itself when that is all it has.
    if isinstance(error, KeyError) and len(error.args) == 1:
        return str(error.args[0])
    return str(error)
