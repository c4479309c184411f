"""``medledger disclosures``: a patient's accounting of disclosures (HIPAA 45 CFR 164.528)
from a node's ``audit_disclosures`` query, as a table or as a validated FHIR R5 Bundle
(ledger/sdk/disclosures.py).

The node answers from its state, which does not keep a key grant's id beside the audit
entry; each grant's id is read here from its tx (``chain_getTx``), and left out where the
node no longer holds the block (an observer that prunes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.app.queries import QUERY_ITEMS_MAX
from ledger.errors import ConfigError
from ledger.sdk.disclosures import disclosure_table, fhir_bundle, tx_hex
from node.client import RpcClient, RpcError, RpcUnreachableError

FORMATS = ("table", "fhir")
# Pages of QUERY_ITEMS_MAX asked for one accounting: a bound on one command's work (a
# patient with more disclosures in the period is told to ask for a shorter one).
PAGES_MAX = 100
RPC_INVALID_PARAMS = -32602
RPC_METHOD_NOT_FOUND = -32601
RPC_NOT_FOUND = -32001
RPC_PRUNED = -32012


@dataclass(frozen=True, slots=True)
class Accounting:
    chain_id: str
    answer: dict[str, Any]  # the audit_disclosures answer, pages joined
    grant_ids: dict[str, str]  # tx id (hex) -> key grant id, where the block is held


def time_ms_from_user(text: str, flag: str, *, end_of_day: bool = False) -> int:
    """An ISO 8601 date or date-time (UTC unless it names an offset) as milliseconds
    since the epoch. A bare date is its first millisecond, or with ``end_of_day`` its
    last (``--to 2026-03-31`` includes that day)."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None:
        moment = datetime.combine(day, time(), tzinfo=UTC)
        if end_of_day:
            moment += timedelta(days=1, milliseconds=-1)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"{flag} {text!r} is not an ISO 8601 date (2026-03-31) or "
                              "date-time (2026-03-31T14:00:00Z)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    epoch_ms = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    if epoch_ms < 0:
        raise ConfigError(f"{flag} {text!r} is before 1970")
    return epoch_ms


def check_rpc_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--rpc {url!r} is not a node's RPC URL (http://HOST:PORT/)")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise ConfigError(f"--rpc {url!r} has a bad port") from None


def fetch_accounting(
    url: str, patient: str, *, from_ms: int | None = None, to_ms: int | None = None
) -> Accounting:
    """The whole accounting for ``patient`` in the period (pages joined), with the key
    grant ids read from the grants' txs."""
    check_rpc_url(url)
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise ConfigError("--from is after --to")
    try:
        with RpcClient(url) as client:
            chain_id = str(client.call("node_status")["chain_id"])
            answer = _all_pages(client, patient, from_ms, to_ms)
            grant_ids = _grant_ids(client, answer["disclosures"])
    except RpcUnreachableError as error:
        raise RpcUnreachableError(f"no node answers at {error}") from None
    return Accounting(chain_id, answer, grant_ids)


def _all_pages(
    client: RpcClient, patient: str, from_ms: int | None, to_ms: int | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"patient": patient, "limit": QUERY_ITEMS_MAX}
    if from_ms is not None:
        params["from_ms"] = from_ms
    if to_ms is not None:
        params["to_ms"] = to_ms
    answer = _page(client, params)
    seen = {tx_hex(disclosure) for disclosure in answer["disclosures"]}
    for _ in range(PAGES_MAX - 1):
        if answer["complete"]:
            break
        # A block has one time: the next page repeats what this one had of that block.
        page = _page(client, {**params, "from_ms": answer["next_from_ms"],
                              "to_ms": answer["to_ms"]})
        new = [item for item in page["disclosures"] if tx_hex(item) not in seen]
        if not new and not page["complete"]:
            break  # one block holds more than a page: report it as incomplete
        seen.update(tx_hex(item) for item in new)
        answer = {**answer, "disclosures": answer["disclosures"] + new,
                  "complete": page["complete"], "next_from_ms": page["next_from_ms"]}
    return answer


def _page(client: RpcClient, params: dict[str, Any]) -> dict[str, Any]:
    try:
        answer = client.call("audit_disclosures", params)
    except RpcError as error:
        if error.code == RPC_INVALID_PARAMS:
            raise ConfigError(f"the node refused the request: {error.message}") from None
        if error.code == RPC_METHOD_NOT_FOUND:
            raise ConfigError(f"the node at {client.url} does not serve audit_disclosures "
                              "(an older release)") from None
        raise
    if answer is None:
        raise ConfigError(f"--patient {params['patient']!r} is not a party on this ledger")
    return dict(answer)


def _grant_ids(client: RpcClient, disclosures: list[dict[str, Any]]) -> dict[str, str]:
    """Each key grant's id, from its tx (checked: its bytes hash to the id)."""
    grant_ids = {}
    for disclosure in disclosures:
        if disclosure["kind"] != "key_grant":
            continue
        tx_id = tx_hex(disclosure)
        try:
            found = client.call("chain_getTx", {"tx_id": "0x" + tx_id})
        except RpcError as error:
            if error.code in (RPC_NOT_FOUND, RPC_PRUNED):
                continue  # the block is not held here: the grant id stays unknown
            raise
        raw = bytes.fromhex(str(found["raw"])[2:])
        view = found["tx"]
        if hashlib.sha256(raw).hexdigest() == tx_id and view.get("type") == "KEY_GRANT":
            grant_ids[tx_id] = str(view["body"]["grant_id"])
    return grant_ids


def render(accounting: Accounting, output_format: str) -> str:
    if output_format == "fhir":
        bundle = fhir_bundle(accounting.answer, ledger_id=accounting.chain_id,
                             grant_ids=accounting.grant_ids)
        return json.dumps(bundle, indent=2) + "\n"
    return disclosure_table(accounting.answer, grant_ids=accounting.grant_ids) + "\n"


def write_output(text: str, output: str | None, *, force: bool) -> None:
    if output is None:
        print(text, end="")
        return
    path = Path(output)
    if path.exists() and not force:
        raise ConfigError(f"{path} exists: pass --force to overwrite it")
    try:
        path.write_text(text)
    except OSError as error:
        raise ConfigError(f"-o {output}: {error}") from None
