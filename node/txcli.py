"""``medledger tx submit``: build a body from JSON by its schema, sign, submit, wait."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ledger import codec
from ledger.bodies import BODY_CLASSES
from ledger.codec import Struct
from ledger.errors import ConfigError, DecodeError
from ledger.tx import sign_transaction
from ledger.txtypes import TxType
from node.client import RpcClient
from node.keys import read_key_file

WAIT_POLL_SECONDS = 0.2


def value_from_json(field_type: Any, value: Any, path: str) -> Any:
    """Turn a JSON value into the field's Python value (bytes from 0x-hex, enums from
    names); the codec then checks it strictly when the tx is signed."""
    if isinstance(field_type, codec.Bytes):
        if not isinstance(value, str) or not value.startswith("0x"):
            raise DecodeError(f"{path}: expected 0x-hex bytes", "")
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            raise DecodeError(f"{path}: not hex", "") from None
    if isinstance(field_type, codec.Enum):
        if isinstance(value, str):
            try:
                return field_type.enum_class[value.upper()]
            except KeyError:
                names = ", ".join(member.name for member in field_type.enum_class)
                raise DecodeError(f"{path}: {value!r} is not one of {names}", "") from None
        return value
    if isinstance(field_type, codec.ListOf):
        if not isinstance(value, list):
            raise DecodeError(f"{path}: expected a list", "")
        return tuple(value_from_json(field_type.item, item, f"{path}[{index}]")
                     for index, item in enumerate(value))
    if isinstance(field_type, codec.Optional):
        return None if value is None else value_from_json(field_type.inner, value, path)
    if isinstance(field_type, codec.Nested):
        return struct_from_json(field_type.struct_class, value, path)
    return value


def struct_from_json(struct_class: type[Struct], document: Any, path: str = "body") -> Struct:
    if not isinstance(document, dict):
        raise DecodeError(f"{path}: expected an object with the fields of "
                          f"{struct_class.__name__}", "")
    names = [name for name, _ in struct_class.SCHEMA]
    unknown = sorted(set(document) - set(names))
    missing = [name for name in names if name not in document]
    if unknown or missing:
        raise DecodeError(f"{path}: unknown fields {unknown}, missing fields {missing} "
                          f"(fields of {struct_class.__name__}: {names})", "")
    values = [value_from_json(field_type, document[name], f"{path}.{name}")
              for name, field_type in struct_class.SCHEMA]
    value = struct_class(*values)
    return codec.decode(struct_class, value.encode(), size_bytes_max=1 << 20)


def submit_from_args(args: argparse.Namespace) -> dict[str, Any]:
    with RpcClient(args.rpc) as client:
        if args.raw:
            raw = bytes.fromhex(args.raw.removeprefix("0x"))
        else:
            if not (args.key and args.type and args.body):
                raise ConfigError("give --raw, or --key, --type and --body")
            try:
                tx_type = TxType[args.type.upper()]
            except KeyError:
                raise ConfigError(f"unknown tx type {args.type!r}; one of "
                                  + ", ".join(member.name for member in TxType)) from None
            chain_id = args.chain_id or client.call("node_status")["chain_id"]
            body = struct_from_json(BODY_CLASSES[tx_type], json.loads(args.body))
            tx = sign_transaction(
                read_key_file(Path(args.key)), chain_id=chain_id, tx_type=tx_type,
                nonce=args.nonce if args.nonce is not None else int(time.time() * 1000),
                body=body,
            )
            raw = tx.raw
        answer = client.call("tx_submit", {"raw": "0x" + raw.hex()})
        result: dict[str, Any] = dict(answer)
        if args.wait > 0 and answer.get("accepted"):
            deadline = time.monotonic() + args.wait
            while time.monotonic() < deadline:
                status = client.call("tx_status", {"tx_id": answer["tx_id"]})
                if status.get("state") == "committed":
                    result.update(committed=True, height=status.get("height"),
                                  result=status.get("result", status.get("code")))
                    return result
                time.sleep(WAIT_POLL_SECONDS)
            result["committed"] = False
        return result
