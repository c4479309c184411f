"""The method registry: every RPC method with its params, result and errors.

One :class:`MethodSpec` per method is the single source of truth: the dispatcher checks
params with it, and ``rpc.discover`` generates the OpenRPC document from it, so the two
cannot drift apart. Param types are small objects that both *parse* a JSON value (strictly,
naming the offending field) and *describe* it as a JSON Schema.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from node import jsonview
from node.jsonview import JsonFieldError
from node.rpc.errors import COMMON_ERRORS, InvalidParams, RpcError

# Method names: a namespace, an underscore, a lowerCamelCase name (or rpc.<name>).
METHOD_NAME_PATTERN = re.compile(r"(rpc\.[a-z][A-Za-z]*|[a-z]+_[a-z][A-Za-z0-9]*)")
# Names of unknown params are quoted back in errors: cut them to keep errors small.
PARAM_NAME_QUOTED_LENGTH_MAX = 40


class ParamType(Protocol):
    def parse(self, value: Any, path: str) -> Any:
        """Check a JSON value and return its Python form; raise JsonFieldError."""
        ...

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the accepted JSON values."""
        ...


@dataclass(frozen=True, slots=True)
class HexBytes:
    """``0x`` hex of exactly ``size`` bytes, or at most ``size_max`` bytes -> ``bytes``."""

    size: int | None = None
    size_max: int | None = None

    def __post_init__(self) -> None:
        assert (self.size is None) != (self.size_max is None)

    def parse(self, value: Any, path: str) -> bytes:
        return jsonview.parse_hex(value, path, size=self.size, size_max=self.size_max)

    def schema(self) -> dict[str, Any]:
        if self.size is not None:
            pattern = f"^0x[0-9a-fA-F]{{{2 * self.size}}}$"
            return {"type": "string", "pattern": pattern, "description": f"{self.size} bytes"}
        return {
            "type": "string",
            "pattern": "^0x([0-9a-fA-F]{2})*$",
            "maxLength": 2 + 2 * (self.size_max or 0),
        }


@dataclass(frozen=True, slots=True)
class NonNegativeInt:
    maximum: int = jsonview.JSON_INTEGER_MAX

    def parse(self, value: Any, path: str) -> int:
        return jsonview.parse_non_negative_int(value, path, maximum=self.maximum)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": 0, "maximum": self.maximum}


@dataclass(frozen=True, slots=True)
class Boolean:
    def parse(self, value: Any, path: str) -> bool:
        return jsonview.parse_bool(value, path)

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, slots=True)
class Text:
    length_max: int
    length_min: int = 0
    pattern: str | None = None

    def parse(self, value: Any, path: str) -> str:
        compiled = re.compile(self.pattern) if self.pattern is not None else None
        return jsonview.parse_string(
            value, path, length_max=self.length_max, length_min=self.length_min,
            pattern=compiled,
        )

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "string", "minLength": self.length_min, "maxLength": self.length_max,
        }
        if self.pattern is not None:
            schema["pattern"] = f"^{self.pattern}$"
        return schema


@dataclass(frozen=True, slots=True)
class Choice:
    choices: tuple[str, ...]

    def parse(self, value: Any, path: str) -> str:
        return jsonview.parse_choice(value, path, self.choices)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True, slots=True)
class ArrayOf:
    item: ParamType
    length_max: int
    length_min: int = 0

    def parse(self, value: Any, path: str) -> list[Any]:
        items = jsonview.parse_array(
            value, path, length_max=self.length_max, length_min=self.length_min
        )
        parse_item = self.item.parse
        return [parse_item(item, f"{path}[{index}]") for index, item in enumerate(items)]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "items": self.item.schema(),
            "minItems": self.length_min,
            "maxItems": self.length_max,
        }


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: ParamType
    description: str = ""
    required: bool = True
    default: Any = None  # the value handlers see when an optional param is absent


@dataclass(frozen=True, slots=True)
class ResultSpec:
    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=dict)


# async handler(call: node.rpc.context.CallContext, params: dict) -> result. The context
# module builds on this one, so the call's type is not named here.
Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    summary: str
    handler: Handler
    result: ResultSpec
    params: tuple[ParamSpec, ...] = ()
    errors: tuple[type[RpcError], ...] = ()
    description: str = ""
    admin: bool = False  # needs the bearer token
    websocket_only: bool = False  # subscriptions live on a connection
    exactly_one_of: tuple[str, ...] = ()  # e.g. ("height", "hash")

    def __post_init__(self) -> None:
        assert METHOD_NAME_PATTERN.fullmatch(self.name), f"bad method name {self.name!r}"
        names = [param.name for param in self.params]
        assert len(set(names)) == len(names), f"{self.name}: duplicate param names"
        for name in self.exactly_one_of:
            assert name in names, f"{self.name}: exactly_one_of names unknown param {name}"
        for param in self.params:
            assert not (param.required and param.name in self.exactly_one_of)

    @property
    def all_errors(self) -> tuple[type[RpcError], ...]:
        errors = list(self.errors)
        errors += [error for error in COMMON_ERRORS if error not in errors]
        return tuple(errors)

    def parse_params(self, params: Any) -> dict[str, Any]:
        """Params by name (object) or by position (array) -> checked values by name.

        Unknown names, missing required params and malformed values are InvalidParams
        whose message names the param (``params.height: expected non-negative integer``).
        """
        by_name = self._by_name(params)
        values: dict[str, Any] = {}
        try:
            for param in self.params:
                if param.name in by_name:
                    values[param.name] = param.type.parse(
                        by_name[param.name], f"params.{param.name}"
                    )
                elif param.required:
                    raise JsonFieldError(f"params.{param.name}", "required")
                else:
                    values[param.name] = param.default
        except JsonFieldError as error:
            raise InvalidParams(str(error)) from None
        if self.exactly_one_of:
            given = [name for name in self.exactly_one_of if name in by_name]
            if len(given) != 1:
                names = " or ".join(f"params.{name}" for name in self.exactly_one_of)
                raise InvalidParams(f"{names}: give exactly one, got {len(given)}")
        return values

    def _by_name(self, params: Any) -> dict[str, Any]:
        if params is None:
            return {}
        if isinstance(params, list):
            if len(params) > len(self.params):
                raise InvalidParams(
                    f"params: {self.name} takes at most {len(self.params)} positional "
                    f"params, got {len(params)}"
                )
            return {param.name: value for param, value in zip(self.params, params, strict=False)}
        assert isinstance(params, dict), "the envelope check allows only object or array"
        known = {param.name for param in self.params}
        for name in params:
            if name not in known:
                quoted = name[:PARAM_NAME_QUOTED_LENGTH_MAX]
                raise InvalidParams(f"params.{quoted}: unknown parameter")
        return params


class Registry:
    """The methods one server answers, by name."""

    def __init__(self) -> None:
        self._methods: dict[str, MethodSpec] = {}
        self.generation = 0  # bumped on every change, so cached documents know to rebuild

    def add(self, spec: MethodSpec) -> None:
        assert spec.name not in self._methods, f"method {spec.name} registered twice"
        self._methods[spec.name] = spec
        self.generation += 1

    def get(self, name: str) -> MethodSpec | None:
        return self._methods.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def __iter__(self) -> Iterator[MethodSpec]:
        return iter(sorted(self._methods.values(), key=lambda spec: spec.name))

    def __len__(self) -> int:
        return len(self._methods)

    def names(self) -> Sequence[str]:
        return sorted(self._methods)
