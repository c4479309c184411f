"""``medledger tx submit``: build a body from JSON by its schema, sign, submit, wait."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ledger.bodies import BODY_CLASSES
from ledger.errors import ConfigError
from ledger.tx import sign_transaction
from ledger.txtypes import TxType
from node.client import RpcClient
from node.keys import read_key_file
from node.tools.structjson import struct_from_json

WAIT_POLL_SECONDS = 0.2


def submit_from_args(args: argparse.Namespace) -> dict[str, Any]:
    with RpcClient(args.rpc) as client:
        if args.raw:
            try:
                raw = bytes.fromhex(args.raw.removeprefix("0x"))
            except ValueError:
                raise ConfigError(f"--raw {args.raw[:80]!r} is not hex (a signed tx, "
                                  "0x-prefixed or not)") from None
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
