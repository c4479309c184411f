"""The load tester's conversations with the chain outside the measured round: target
discovery, the preparation port, and the after-round check that the txs the load tester
saw committed are exactly the run's txs in the blocks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from ledger.errors import RemoteError
from node.loadtest.client import RpcCallError, WebSocketRpc, open_rpc, result_of
from node.loadtest.runner import NOTIFICATION_METHOD, RoundOutcome

# chain_getBlock calls per HTTP JSON-RPC batch (the node's BATCH_CALLS_MAX is 100).
BLOCKS_PER_REQUEST = 100
HTTP_TIMEOUT_SECONDS = 30.0
# A /metrics scrape taken once a second during the round: a node that does not answer
# within this is missing from that sample, not a stall of the next one.
METRICS_TIMEOUT_SECONDS = 5.0
# Preparation: txs per tx_submitBatch, and how long one stage may take to commit.
PREPARATION_BATCH_TXS = 500
PREPARATION_COMMIT_TIMEOUT_SECONDS = 120.0
# The node we walk may apply the last blocks a moment after the node that notified us.
HEAD_WAIT_TIMEOUT_SECONDS = 30.0
HEAD_POLL_SECONDS = 0.2


class ChainCheckError(RemoteError):
    """The chain could not be read back after the round."""


@dataclass(frozen=True, slots=True)
class TargetInfo:
    url: str
    chain_id: str
    role: str
    height: int
    metrics_url: str


def metrics_url(url: str) -> str:
    return url.rstrip("/") + "/metrics"


async def _http_call(client: httpx.AsyncClient, url: str, method: str,
                     params: Any = None) -> Any:
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        request["params"] = params
    try:
        response = await client.post(url, json=request)
    except httpx.HTTPError as error:
        raise ChainCheckError(f"{url}: {method}: {error!r}") from None
    return result_of(method, response.json())


async def discover_targets(urls: Sequence[str]) -> list[TargetInfo]:
    """node_status of every target; they must serve one chain."""
    infos = []
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
        for url in urls:
            status = await _http_call(client, url, "node_status")
            infos.append(TargetInfo(url, status["chain_id"], status["role"], status["height"],
                                    metrics_url(url)))
    chains = {info.chain_id for info in infos}
    if len(chains) != 1:
        raise ChainCheckError(f"the targets serve different chains: {sorted(chains)}")
    return infos


@dataclass(frozen=True, slots=True)
class MetricsScrape:
    text: str  # "" where the node did not answer with 200
    received_at: float  # time.monotonic() when the answer (or the failure) came


async def scrape_metrics(urls: Iterable[str], *,
                         timeout_seconds: float = METRICS_TIMEOUT_SECONDS
                         ) -> dict[str, MetricsScrape]:
    """The /metrics of every target, fetched concurrently, each with its time."""
    urls = list(urls)
    scrapes: dict[str, MetricsScrape] = {}
    async with httpx.AsyncClient(timeout=timeout_seconds) as client:

        async def scrape(url: str) -> None:
            try:
                response = await client.get(metrics_url(url))
                text = response.text if response.status_code == 200 else ""
            except httpx.HTTPError:
                text = ""
            scrapes[url] = MetricsScrape(text, time.monotonic())

        async with trio.open_nursery() as nursery:
            for url in urls:
                nursery.start_soon(scrape, url)
    return {url: scrapes[url] for url in urls}


async def head_height(url: str) -> int:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
        return int((await _http_call(client, url, "chain_head"))["height"])


async def wait_for_height(url: str, height: int) -> int:
    with trio.move_on_after(HEAD_WAIT_TIMEOUT_SECONDS):
        while True:
            current = await head_height(url)
            if current >= height:
                return current
            await trio.sleep(HEAD_POLL_SECONDS)
    return await head_height(url)


async def block_tx_ids(url: str, first_height: int, last_height: int) -> list[str]:
    """Every tx id in blocks first_height..last_height, in chain order."""
    tx_ids: list[str] = []
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
        for start in range(first_height, last_height + 1, BLOCKS_PER_REQUEST):
            heights = range(start, min(start + BLOCKS_PER_REQUEST, last_height + 1))
            batch = [{"jsonrpc": "2.0", "id": height, "method": "chain_getBlock",
                      "params": {"height": height}} for height in heights]
            try:
                response = await client.post(url, json=batch)
                answers = {answer["id"]: answer for answer in response.json()}
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
                raise ChainCheckError(f"{url}: reading blocks {start}..: {error!r}") from None
            for height in heights:
                block = result_of("chain_getBlock", answers[height])
                tx_ids.extend(block["tx_ids"])
    return tx_ids


async def check_against_chain(url: str, first_height: int,
                              outcome: RoundOutcome) -> dict[str, Any]:
    """Walk the blocks after ``first_height`` on ``url`` and compare the run's txs found
    there with those the load tester saw committed (warm-up and measured)."""
    head = await wait_for_height(url, outcome.highest_height)
    on_chain = [tx_id for tx_id in await block_tx_ids(url, first_height + 1, head)
                if tx_id in outcome.submitted_ids]
    found = set(on_chain)
    seen = outcome.committed_ids
    measured_on_chain = len(found & outcome.measured_ids)
    measured_seen = len(seen & outcome.measured_ids)
    ok = found == seen and len(on_chain) == len(found)
    return {
        "status": "ok" if ok else "mismatch",
        "node": url,
        "heights": [first_height + 1, head],
        "run_txs_on_chain": len(on_chain),
        "run_txs_seen_committed": len(seen),
        "measured_txs_on_chain": measured_on_chain,
        "measured_txs_seen_committed": measured_seen,
        "on_chain_not_seen": len(found - seen),
        "seen_not_on_chain": len(seen - found),
        "duplicates_on_chain": len(on_chain) - len(found),
    }


# ---- the preparation port over a WebSocket ----------------------------------------------------


class WebSocketPreparation:
    """node.loadtest.prepare.PreparationPort over one node's WebSocket."""

    def __init__(self, rpc: WebSocketRpc) -> None:
        self.rpc = rpc
        self.subscription = ""
        self.codes: dict[str, int] = {}
        self.arrived = trio.Event()

    def on_notification(self, message: dict[str, Any], received_at: float) -> None:
        if message.get("method") != NOTIFICATION_METHOD:
            return
        result = (message.get("params") or {}).get("result")
        for item in result if isinstance(result, list) else [result] if result else []:
            self.codes[item["tx_id"]] = int(item["code"])
        self.arrived.set()

    async def query(self, method: str, params: dict[str, Any]) -> Any:
        try:
            return await self.rpc.call(method, params)
        except RpcCallError as error:
            if error.code == -32001:  # not found
                return None
            raise

    async def commit(self, raws: Sequence[bytes], stage: str) -> list[int]:
        import hashlib

        ids = ["0x" + hashlib.sha256(raw).hexdigest() for raw in raws]
        if not self.subscription:
            self.subscription = str(await self.rpc.call(
                "chain_subscribe", {"topic": "txResults", "tx_ids": [], "batch": True}))
        for start in range(0, len(raws), PREPARATION_BATCH_TXS):
            chunk = slice(start, start + PREPARATION_BATCH_TXS)
            await self.rpc.call("chain_addTxFilter",
                                {"subscription": self.subscription, "tx_ids": ids[chunk]})
            results = await self.rpc.call(
                "tx_submitBatch", {"raws": ["0x" + raw.hex() for raw in raws[chunk]]})
            refused = [result for result in results if not result["accepted"]]
            if refused:
                raise RemoteError(f"preparation stage {stage}: {len(refused)} txs refused, "
                                  f"e.g. {json.dumps(refused[0])}")
        with trio.move_on_after(PREPARATION_COMMIT_TIMEOUT_SECONDS):
            while any(tx_id not in self.codes for tx_id in ids):
                self.arrived = trio.Event()
                await self.arrived.wait()
        missing = sum(tx_id not in self.codes for tx_id in ids)
        if missing:
            raise RemoteError(f"preparation stage {stage}: {missing} of {len(ids)} txs not "
                              f"committed within {PREPARATION_COMMIT_TIMEOUT_SECONDS} s")
        return [self.codes[tx_id] for tx_id in ids]


async def with_preparation(url: str, work: Any) -> Any:
    """Run ``await work(port)`` with a preparation port on ``url``."""
    holder: list[WebSocketPreparation] = []

    def dispatch(message: dict[str, Any], received_at: float) -> None:
        if holder:
            holder[0].on_notification(message, received_at)

    async with open_rpc(url, dispatch) as rpc:
        port = WebSocketPreparation(rpc)
        holder.append(port)
        return await work(port)
