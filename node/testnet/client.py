"""The testnet's client, run inside the *client* namespace (the nodes' addresses exist only
on the bridge): ``python -m node.testnet.client workload|membership SPEC.json``.

``workload``: prepares the load tester's lanes (node.loadtest.prepare, on chain), signs
their txs (node.loadtest.workload), then until the file ``stop`` appears in the output
directory: each lane submits its txs at its share of the rate to its node over a WebSocket
(node.loadtest.client), reconnecting when the node goes away, and records every commit
notification as an acknowledgement; a monitor polls every node's head, status and peers.
At the end it reads every node's whole chain. Everything goes to JSON-lines files in the
output directory (times are wall-clock seconds, shared with the orchestrator):

    events.jsonl  ready / lane errors / failed submits     acks.jsonl   one per commit
    heads.jsonl   (t, node, height) on change              peers.jsonl  (t, node, connected)
    status.json   the latest node_status of every node     chains.json  the chains at the end

``membership``: a newcomer member proposed by the insurer and voted in by the board
(ledger.sdk builders), waiting for each commit; prints one JSON line.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
import trio

from ledger import bodies as b
from ledger.sdk.builders import TransactionBuilder
from ledger.sdk.devnet import devnet_admin_key
from node.loadtest.chain import with_preparation
from node.loadtest.client import (
    RpcCallError,
    RpcConnectionError,
    RpcTimeoutError,
    WebSocketRpc,
    open_rpc,
    result_of,
)
from node.loadtest.config import DEFAULT_WEIGHTS
from node.loadtest.pool import watch_and_submit_text, worker_pool
from node.loadtest.prepare import prepare
from node.loadtest.runner import NOTIFICATION_METHOD
from node.loadtest.workload import generate_pool

SUBMIT_INTERVAL_S = 0.1
CREDIT_S_MAX = 0.5  # after an outage a lane sends at most half a second's txs at once
CALL_TIMEOUT_S = 5.0
RECONNECT_S = 0.5
HEAD_POLL_S = 0.25
STATUS_POLL_S = 1.0
HTTP_TIMEOUT_S = 1.0
CHAIN_READ_TIMEOUT_S = 30.0
BLOCKS_PER_REQUEST = 100
DRAIN_S = 3.0
POOL_SPARE = 1.3  # signed txs per planned tx: a lane never runs dry
PREPARE_ATTEMPTS = 5
COMMIT_WAIT_S = 60.0
LEADER_WAIT_S = 60.0
DAY_MS = 86_400_000


class Output:
    """Append-only JSON lines, flushed per line (the orchestrator reads them live)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, TextIO] = {}

    def write(self, name: str, record: dict[str, Any]) -> None:
        if name not in self.files:
            self.files[name] = open(self.directory / name, "a")  # noqa: SIM115 - kept open
        self.files[name].write(json.dumps(record, separators=(",", ":")) + "\n")
        self.files[name].flush()

    def replace(self, name: str, value: Any) -> None:
        temporary = self.directory / (name + ".tmp")
        temporary.write_text(json.dumps(value))
        temporary.replace(self.directory / name)


async def _http(client: httpx.AsyncClient, url: str, calls: list[tuple[str, dict[str, Any]]],
                timeout_s: float) -> list[Any]:
    """One HTTP JSON-RPC batch; the results in order (an error raises RpcCallError)."""
    body = [{"jsonrpc": "2.0", "id": index, "method": method, "params": params}
            for index, (method, params) in enumerate(calls)]
    response = await client.post(url, json=body, timeout=timeout_s)
    answers = {answer["id"]: answer for answer in response.json()}
    return [result_of(method, answers[index]) for index, (method, _) in enumerate(calls)]


# ---- the workload -----------------------------------------------------------------------------


class Lane:
    def __init__(self, index: int, url: str, raws: Sequence[bytes], rate: float,
                 output: Output) -> None:
        self.index = index
        self.url = url
        self.pool = worker_pool(raws)
        self.rate = rate
        self.output = output
        self.cursor = 0
        self.sent_at: dict[str, float] = {}
        # Txs whose submit failed or timed out: they may still commit, but out of the
        # lane's order (the node may read them late), so their codes prove nothing.
        self.unconfirmed: set[str] = set()

    def on_notification(self, message: dict[str, Any], received_at: float) -> None:
        if message.get("method") != NOTIFICATION_METHOD:
            return
        result = (message.get("params") or {}).get("result")
        now = time.time()
        for item in result if isinstance(result, list) else [result]:
            if not isinstance(item, dict) or item.get("tx_id") not in self.sent_at:
                continue
            sent = self.sent_at.pop(item["tx_id"])
            self.output.write("acks.jsonl", {
                "tx": item["tx_id"], "h": item["height"], "p": item["position"],
                "code": item.get("code_name"), "sent": sent, "t": now, "lane": self.index,
                "node": self.url, "submit_failed": item["tx_id"] in self.unconfirmed})

    async def run(self, stop: trio.Event) -> None:
        while not stop.is_set() and self.cursor < len(self.pool):
            try:
                async with open_rpc(self.url, self.on_notification) as rpc:
                    await self._session(rpc, stop)
            except (RpcConnectionError, RpcCallError, RpcTimeoutError, OSError,
                    ExceptionGroup) as error:
                # open_rpc's nursery wraps what went wrong in a group; the node went away.
                self.output.write("events.jsonl", {"t": time.time(), "kind": "lane-error",
                                                   "lane": self.index, "error": str(error)})
            with trio.move_on_after(RECONNECT_S):
                await stop.wait()

    async def _session(self, rpc: WebSocketRpc, stop: trio.Event) -> None:
        subscription = await rpc.call(
            "chain_subscribe", {"topic": "txResults", "tx_ids": list(self.sent_at)[-500:],
                                "batch": True}, timeout_seconds=CALL_TIMEOUT_S)
        last = time.monotonic()
        credit = 0.0
        while not stop.is_set() and self.cursor < len(self.pool):
            now = time.monotonic()
            credit = min(credit + (now - last) * self.rate, self.rate * CREDIT_S_MAX)
            last = now
            count = min(int(credit), len(self.pool) - self.cursor)
            if count > 0:
                credit -= count
                await self._submit(rpc, str(subscription), count)
            with trio.move_on_after(SUBMIT_INTERVAL_S):
                await stop.wait()
        with trio.move_on_after(DRAIN_S):
            await trio.sleep_forever()

    async def _submit(self, rpc: WebSocketRpc, subscription: str, count: int) -> None:
        start, pool = self.cursor, self.pool
        self.cursor += count
        ids = pool.ids[start:start + count]
        filter_id, submit_id = rpc.new_id(), rpc.new_id()
        text = watch_and_submit_text(filter_id, submit_id, subscription,
                                     pool.quoted_ids[start:start + count],
                                     pool.quoted_raws[start:start + count])
        sent = time.time()
        for tx_id in ids:
            self.sent_at[tx_id] = sent
        try:
            _, submitted = await rpc.send([filter_id, submit_id], text,
                                          timeout_seconds=CALL_TIMEOUT_S)
            results = result_of("tx_submitBatch", submitted)
        except (RpcCallError, RpcTimeoutError) as error:
            self._failed(ids, str(error))
            return
        except RpcConnectionError as error:
            self._failed(ids, str(error))
            raise
        refused = [(tx_id, result.get("reason")) for tx_id, result in zip(ids, results, strict=True)
                   if not result.get("accepted")]
        if refused:
            self._failed([tx_id for tx_id, _ in refused], str(refused[0][1]))

    def _failed(self, ids: Sequence[str], error: str) -> None:
        # Not acknowledged; a failed submit may still commit (then it is simply unchecked).
        self.unconfirmed.update(ids)
        self.output.write("events.jsonl", {"t": time.time(), "kind": "submit-failed",
                                           "lane": self.index, "txs": len(ids), "error": error})


async def _monitor_node(name: str, url: str, output: Output, statuses: dict[str, Any],
                        stop: trio.Event) -> None:
    last_height = -1
    last_connected: list[str] | None = None
    next_status = 0.0
    async with httpx.AsyncClient() as client:
        while not stop.is_set():
            now = time.monotonic()
            try:
                calls: list[tuple[str, dict[str, Any]]] = [("chain_head", {})]
                if now >= next_status:
                    calls += [("node_status", {}), ("node_peers", {})]
                    next_status = now + STATUS_POLL_S
                results = await _http(client, url, calls, HTTP_TIMEOUT_S)
            except (httpx.HTTPError, RpcCallError, ValueError, KeyError, TypeError):
                results = []
            stamp = time.time()
            if results and results[0]["height"] != last_height:
                last_height = results[0]["height"]
                output.write("heads.jsonl", {"t": stamp, "node": name, "height": last_height})
            if len(results) == 3:
                status = results[1]
                statuses[name] = {key: status.get(key) for key in
                                  ("node_id", "role", "term", "leader_id", "height", "peers")}
                statuses[name]["t"] = stamp
                output.replace("status.json", statuses)
                connected = sorted(peer["peer_id"] for peer in results[2] if peer["connected"])
                if connected != last_connected:
                    last_connected = connected
                    output.write("peers.jsonl", {"t": stamp, "node": name,
                                                 "connected": connected})
            with trio.move_on_after(HEAD_POLL_S):
                await stop.wait()


async def _watch_stop(path: Path, stop: trio.Event) -> None:
    while not path.exists():
        await trio.sleep(HEAD_POLL_S)
    stop.set()


async def read_chain(url: str) -> dict[str, Any]:
    """{"head": h, "blocks": [[height, hash, [tx ids]], ...]} or {"error": ...}."""
    blocks: list[Any] = []
    try:
        async with httpx.AsyncClient() as client:
            (head,) = await _http(client, url, [("chain_head", {})], CHAIN_READ_TIMEOUT_S)
            for start in range(1, head["height"] + 1, BLOCKS_PER_REQUEST):
                heights = range(start, min(start + BLOCKS_PER_REQUEST, head["height"] + 1))
                found = await _http(client, url, [("chain_getBlock", {"height": height})
                                                  for height in heights], CHAIN_READ_TIMEOUT_S)
                blocks += [[block["height"], block["hash"], block["tx_ids"]] for block in found]
    except (httpx.HTTPError, RpcCallError, ValueError, KeyError, TypeError) as error:
        return {"head": len(blocks), "blocks": blocks, "error": repr(error)}
    return {"head": head["height"], "blocks": blocks}


async def _prepared_pools(spec: dict[str, Any], output: Output) -> list[list[bytes]]:
    urls: list[str] = list(spec["lane_urls"])
    lanes = len(urls)
    per_lane = math.ceil(spec["rate"] / lanes * spec["seconds_max"] * POOL_SPARE) + 100
    last_error = ""
    for attempt in range(PREPARE_ATTEMPTS):
        url = urls[attempt % lanes]
        try:
            async def work(port: Any) -> Any:
                return await prepare(
                    port, chain_id=spec["chain_id"], run_tag=spec["run_tag"], workers=lanes,
                    healthcare=True, weights=DEFAULT_WEIGHTS, lane_txs=lambda _: per_lane,
                    key_files={})

            prepared = await with_preparation(url, work)
            break
        except (RpcConnectionError, RpcCallError, RpcTimeoutError, OSError,
                ExceptionGroup) as error:
            last_error = f"{url}: {error}"
            output.write("events.jsonl", {"t": time.time(), "kind": "prepare-retry",
                                          "error": last_error})
            await trio.sleep(2.0)
    else:
        raise RuntimeError(f"preparation failed {PREPARE_ATTEMPTS} times: {last_error}")
    return generate_pool(prepared.specs, [per_lane] * lanes, processes=2)


async def _wait_leader(urls: Sequence[str]) -> None:
    """Until every node answers and names a leader (bounded)."""
    deadline = time.monotonic() + LEADER_WAIT_S
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                statuses = [(await _http(client, url, [("node_status", {})], HTTP_TIMEOUT_S))[0]
                            for url in urls]
                if all(status.get("leader_id") for status in statuses):
                    return
            except (httpx.HTTPError, RpcCallError, ValueError, KeyError, TypeError):
                pass
            await trio.sleep(HEAD_POLL_S * 2)


async def workload(spec: dict[str, Any]) -> None:
    output = Output(Path(spec["out"]))
    await _wait_leader(list(spec["nodes"].values()))
    pools = await _prepared_pools(spec, output)
    output.write("events.jsonl", {"t": time.time(), "kind": "ready",
                                  "signed": sum(len(pool) for pool in pools)})
    stop = trio.Event()
    statuses: dict[str, Any] = {}
    lanes = [Lane(index, url, pool, spec["rate"] / len(pools), output)
             for index, (url, pool) in enumerate(zip(spec["lane_urls"], pools, strict=True))]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_stop, Path(spec["out"]) / "stop", stop)
        for name, url in spec["nodes"].items():
            nursery.start_soon(_monitor_node, name, url, output, statuses, stop)
        for lane in lanes:
            nursery.start_soon(lane.run, stop)
    chains = {name: await read_chain(url) for name, url in spec["nodes"].items()}
    output.replace("chains.json", chains)


# ---- membership -------------------------------------------------------------------------------


async def _commit(client: httpx.AsyncClient, urls: Sequence[str],
                  raws: Sequence[bytes]) -> list[Any]:
    """Submit on the first node that answers, then wait for every tx's commit."""
    ids = ["0x" + hashlib.sha256(raw).hexdigest() for raw in raws]
    submit = [("tx_submitBatch", {"raws": ["0x" + raw.hex() for raw in raws]})]
    for url in urls:
        try:
            await _http(client, url, submit, CALL_TIMEOUT_S)
            break
        except (httpx.HTTPError, RpcCallError, ValueError, KeyError):
            continue
    deadline = time.monotonic() + COMMIT_WAIT_S
    while time.monotonic() < deadline:
        for url in urls:
            try:
                statuses = await _http(client, url, [("tx_status", {"tx_id": tx_id})
                                                     for tx_id in ids], HTTP_TIMEOUT_S * 2)
            except (httpx.HTTPError, RpcCallError, ValueError, KeyError):
                continue
            if all(status["state"] == "committed" for status in statuses):
                return [status["code_name"] for status in statuses]
            break
        await trio.sleep(HEAD_POLL_S)
    return ["TIMEOUT"] * len(ids)


async def membership(spec: dict[str, Any]) -> dict[str, Any]:
    urls: list[str] = list(spec["urls"])
    chain_id, voters = spec["chain_id"], spec["voters"]
    started = time.time()
    async with httpx.AsyncClient() as client:
        for url in urls:
            try:
                now_ms, members, *keys = await _http(client, url, [
                    ("gov_chainTime", {}), ("gov_members", {})] + [
                    ("gov_key", {"public_key": "0x" + devnet_admin_key(org).public_key.hex()})
                    for org in voters], CALL_TIMEOUT_S)
                break
            except (httpx.HTTPError, RpcCallError, ValueError, KeyError):
                continue
        else:
            return {"ok": False, "error": "no node answered", "seconds": time.time() - started}
        active = sum(1 for member in members if member.get("active"))
        builders = [TransactionBuilder(chain_id, devnet_admin_key(org),
                                       last_nonce=int((key or {}).get("last_nonce", 0)))
                    for org, key in zip(voters, keys, strict=True)]
        org_id = spec["newcomer"]
        newcomer = devnet_admin_key(org_id)
        proposal_id = f"{org_id}-admission"
        proposal = builders[0].propose_member(
            proposal_id=proposal_id, org_id=org_id, kind=b.MemberKind.PROVIDER,
            admin_key=newcomer.public_key, evidence_hash=hashlib.sha256(org_id.encode()).digest(),
            deadline_ms=int(now_ms["now_ms"]) + DAY_MS)
        codes = await _commit(client, urls, [proposal.raw])
        needed = active * 2 // 3 + 1
        votes = [builder.vote(proposal_id).raw for builder in builders[:needed]]
        codes += await _commit(client, urls, votes)
    return {"ok": all(code == "OK" for code in codes), "codes": codes,
            "seconds": round(time.time() - started, 3), "newcomer": org_id}


def main(argv: Sequence[str]) -> int:
    mode, spec_path = argv
    spec = json.loads(Path(spec_path).read_text())
    if mode == "workload":
        trio.run(workload, spec)
        return 0
    if mode == "membership":
        print(json.dumps(trio.run(membership, spec)), flush=True)
        return 0
    print(f"unknown mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
