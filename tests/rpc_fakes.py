"""A FakeNode implementing node.api.NodeAPI over real blocks and txs, and helpers to run
the real RPC server against it on 127.0.0.1, port 0."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import trio
import trio_websocket
from factories import CHAIN_ID, signed

from ledger.block import ZERO_HASH, Block, make_block
from ledger.certificate import certify, validators_hash
from ledger.crypto import SigningKey
from ledger.merkle import EMPTY_ROOT, merkle_proof
from ledger.results import ResultCode
from ledger.tx import Transaction
from ledger.txtypes import TxType
from ledger.validation import check_transaction
from node.api import (
    CertifiedBlock,
    Handover,
    NodeStatus,
    PeerInfo,
    SubmitResult,
    TxLocation,
    TxResultEvent,
    TxStatus,
)
from node.rpc.limits import RpcLimits
from node.rpc.server import RpcServer
from node.snapshot_sessions import (
    SnapshotChunkData,
    SnapshotOpened,
    SnapshotSessionNotFoundError,
    SnapshotUnavailableError,
)

PROPOSER = SigningKey(bytes(range(100, 132)))
# Like the real node: a bounded buffer per subscriber, dropped (iterator ends) when full.
SUBSCRIBER_BUFFER_EVENTS = 10_000

def quick_limits(**overrides: Any) -> RpcLimits:
    """Server limits for tests: no WebSocket pings (hypercorn's ping task sleeps through a
    close, which would make every shutdown wait the grace period), no read timeout."""
    options: dict[str, Any] = {"websocket_ping_interval_seconds": None,
                               "read_timeout_seconds": None}
    options.update(overrides)
    return RpcLimits(**options)


# Every test runs under this deadline: a hang fails fast instead of stalling the suite.
TEST_TIMEOUT_SECONDS = 15


class FakeNode:
    """In-memory chain: ``commit`` makes a real signed block and publishes it."""

    def __init__(self, *, chain_id: str = CHAIN_ID) -> None:
        self.chain_id = chain_id
        self.blocks: list[Block] = []
        self.by_hash: dict[bytes, Block] = {}
        self.codes: dict[int, list[int]] = {}
        self.index: dict[bytes, tuple[int, int]] = {}
        self.pending: dict[bytes, bytes] = {}
        self.is_ready = True
        self.submit_delay_seconds = 0.0
        self.subscriber_buffer_events = SUBSCRIBER_BUFFER_EVENTS
        self.replay_on_subscribe: list[Block] = []  # queued for a subscriber at once
        self.block_subscribers: list[trio.MemorySendChannel[Block]] = []
        self.result_subscribers: list[trio.MemorySendChannel[TxResultEvent]] = []
        self.app_handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.app_calls: list[tuple[str, dict[str, Any]]] = []
        self.peer_list = [
            PeerInfo("12D3KooWpeerA", ("/ip4/10.0.0.2/tcp/4001",), True, True, True),
            PeerInfo("12D3KooWobserver", ("/ip4/10.0.0.9/tcp/4001",), False, False, False),
        ]

    # ---- building the chain ----------------------------------------------------------------

    def commit(self, raws: Sequence[bytes], codes: Sequence[int] | None = None) -> Block:
        height = len(self.blocks) + 1
        previous = self.blocks[-1].hash if self.blocks else ZERO_HASH
        members = [PROPOSER.public_key]
        block = make_block(
            PROPOSER, chain_id=self.chain_id, height=height, previous_hash=previous,
            timestamp_ms=1_700_000_000_000 + height, txs=raws, state_height=height - 1,
            results_root=EMPTY_ROOT, state_root=ZERO_HASH, raft_term=2, raft_index=height + 1,
            validators_hash=validators_hash(members), next_validators_hash=validators_hash(members),
            certificate=None if height == 1 else certify(
                [PROPOSER], chain_id=self.chain_id, height=height - 1, block_hash=previous,
                members=members),
            trails_root=ZERO_HASH,
        )
        codes = list(codes) if codes is not None else [0] * len(raws)
        self.blocks.append(block)
        self.by_hash[block.hash] = block
        self.codes[height] = codes
        for position, tx_id in enumerate(block.tx_ids()):
            self.index[tx_id] = (height, position)
            self.pending.pop(tx_id, None)
        self.publish(block, codes)
        return block

    def commit_pending(self) -> Block:
        return self.commit(list(self.pending.values()))

    def publish(self, block: Block, codes: Sequence[int]) -> None:
        for channel in list(self.block_subscribers):
            self._offer(self.block_subscribers, channel, block)
        for position, (tx_id, code) in enumerate(zip(block.tx_ids(), codes, strict=True)):
            event = TxResultEvent(tx_id, block.header.height, position, code)
            for channel in list(self.result_subscribers):
                self._offer(self.result_subscribers, channel, event)

    @staticmethod
    def _offer(subscribers: list[Any], channel: Any, item: Any) -> None:
        try:
            channel.send_nowait(item)
        except (trio.WouldBlock, trio.BrokenResourceError):
            subscribers.remove(channel)
            channel.close()

    # ---- NodeAPI -----------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        height, head_hash = self.head()
        return NodeStatus(
            node_id="12D3KooWself", chain_id=self.chain_id, role="leader", term=2,
            leader_id="12D3KooWself", height=height, head_hash=head_hash,
            applied_index=height + 1, commit_index=height + 1, mempool_txs=len(self.pending),
            mempool_bytes=sum(len(raw) for raw in self.pending.values()), peers=1,
            validators=["12D3KooWself", "12D3KooWpeerA"], version="0.1.0-test",
            extra={"data_dir": "/tmp/fake"},
        )

    def health(self) -> dict[str, Any]:
        return {"started": True, "seconds_since_last_commit": 0.5, "role": "leader"}

    def ready(self) -> bool:
        return self.is_ready

    def peers(self) -> Sequence[PeerInfo]:
        return self.peer_list

    def roots(self, height: int) -> tuple[bytes, bytes] | None:
        return (EMPTY_ROOT, ZERO_HASH) if height <= len(self.blocks) else None

    async def trail_proof(self, patient: str) -> Any:
        from node.trailproofs import TrailProofUnavailable

        raise TrailProofUnavailable("this fake node keeps no trails")

    def validator_handovers(self, up_to_height: int) -> list[Handover]:
        return []  # one validator, never changed

    def certificate(self, height: int) -> CertifiedBlock | None:
        if not 1 <= height < len(self.blocks):
            return None
        certificate = self.blocks[height].certificate
        assert certificate is not None
        members = (PROPOSER.public_key,)
        return CertifiedBlock(certificate, validators_hash(members), members, height + 1)

    async def snapshot_begin(self) -> SnapshotOpened:
        raise SnapshotUnavailableError("this fake node holds no store to snapshot")

    async def snapshot_chunk(self, session_id: str, sequence: int) -> SnapshotChunkData:
        raise SnapshotSessionNotFoundError(f"no snapshot session {session_id}")

    def snapshot_end(self, session_id: str) -> None:
        raise SnapshotSessionNotFoundError(f"no snapshot session {session_id}")

    def head(self) -> tuple[int, bytes]:
        if not self.blocks:
            return 0, ZERO_HASH
        return len(self.blocks), self.blocks[-1].hash

    def block_by_height(self, height: int) -> Block | None:
        return self.blocks[height - 1] if 1 <= height <= len(self.blocks) else None

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        return self.by_hash.get(block_hash)

    def tx(self, tx_id: bytes) -> TxLocation | None:
        found = self.index.get(tx_id)
        if found is None:
            return None
        height, position = found
        block = self.blocks[height - 1]
        return TxLocation(tx_id, block.txs[position], height, position,
                          self.codes[height][position], block,
                          merkle_proof(block.tx_ids(), position))

    def tx_status(self, tx_id: bytes) -> TxStatus:
        found = self.index.get(tx_id)
        if found is not None:
            height, position = found
            return TxStatus(tx_id, "committed", height, self.codes[height][position])
        if tx_id in self.pending:
            return TxStatus(tx_id, "pending")
        return TxStatus(tx_id, "unknown")

    async def submit(self, raws: Sequence[bytes]) -> list[SubmitResult]:
        await trio.sleep(self.submit_delay_seconds)
        results = []
        for raw in raws:
            checked = check_transaction(raw, self.chain_id)
            if checked.tx is None:
                results.append(SubmitResult(None, checked.code, checked.message))
            elif checked.tx.tx_id in self.index:
                results.append(SubmitResult(checked.tx.tx_id, ResultCode.DUPLICATE,
                                            "already committed"))
            else:
                self.pending[checked.tx.tx_id] = raw
                results.append(SubmitResult(checked.tx.tx_id, ResultCode.OK))
        return results

    def subscribe_blocks(self) -> AsyncIterator[Block]:
        send, receive = trio.open_memory_channel[Block](self.subscriber_buffer_events)
        for block in self.replay_on_subscribe:
            send.send_nowait(block)
        self.block_subscribers.append(send)
        return _iterate(receive)

    def subscribe_tx_results(self) -> AsyncIterator[TxResultEvent]:
        send, receive = trio.open_memory_channel[TxResultEvent](self.subscriber_buffer_events)
        self.result_subscribers.append(send)
        return _iterate(receive)

    def app_query(self, method: str, params: dict[str, Any]) -> Any:
        self.app_calls.append((method, params))
        return self.app_handlers[method](params)


async def _iterate(receive: trio.MemoryReceiveChannel[Any]) -> AsyncIterator[Any]:
    async with receive:
        async for item in receive:
            yield item


def tx(nonce: int = 1, tx_type: TxType = TxType.CONSENT_REVOKE) -> Transaction:
    return signed(tx_type, nonce=nonce)


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


# ---- running the server ------------------------------------------------------------------


@dataclass
class Running:
    server: RpcServer
    node: FakeNode
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@asynccontextmanager
async def running_server(
    node: FakeNode | None = None,
    *,
    admin_token: str | None = "s3cret-token",
    limits: RpcLimits | None = None,
    **options: Any,
) -> AsyncIterator[Running]:
    node = node if node is not None else FakeNode()
    limits = limits if limits is not None else quick_limits()
    server = RpcServer(node, host="127.0.0.1", port=0, admin_token=admin_token,
                       limits=limits, **options)
    with trio.fail_after(TEST_TIMEOUT_SECONDS):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.run)
            try:
                yield Running(server, node, port)
            finally:
                nursery.cancel_scope.cancel()


@asynccontextmanager
async def http_client(running: Running, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.url, timeout=5.0, **options) as client:
        yield client


async def rpc(client: httpx.AsyncClient, method: str, params: Any = None,
              *, rpc_id: Any = 1, headers: dict[str, str] | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc_id, "method": method}
    if params is not None:
        request["params"] = params
    response = await client.post("/", json=request, headers=headers)
    assert response.status_code == 200, (response.status_code, response.text)
    answer: dict[str, Any] = response.json()
    return answer


async def result_of(client: httpx.AsyncClient, method: str, params: Any = None) -> Any:
    answer = await rpc(client, method, params)
    assert "error" not in answer, answer
    return answer["result"]


class WsClient:
    """JSON-RPC over one trio-websocket connection; notifications are kept aside."""

    def __init__(self, connection: trio_websocket.WebSocketConnection) -> None:
        self.connection = connection
        self.notifications: list[dict[str, Any]] = []
        self._next_id = 0

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        self._next_id += 1
        rpc_id = self._next_id
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc_id, "method": method}
        if params is not None:
            request["params"] = params
        await self.connection.send_message(json.dumps(request))
        while True:
            message = json.loads(await self.connection.get_message())
            if message.get("id") == rpc_id:
                answer: dict[str, Any] = message
                return answer
            self.notifications.append(message)

    async def result(self, method: str, params: Any = None) -> Any:
        answer = await self.call(method, params)
        assert "error" not in answer, answer
        return answer["result"]

    async def next_notification(self) -> dict[str, Any]:
        if self.notifications:
            return self.notifications.pop(0)
        message: dict[str, Any] = json.loads(await self.connection.get_message())
        assert message.get("method") == "chain_subscription", message
        return message


@asynccontextmanager
async def ws_client(running: Running, *, token: str | None = None,
                    **options: Any) -> AsyncIterator[WsClient]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else None
    async with trio_websocket.open_websocket_url(running.ws_url, extra_headers=headers,
                                                 **options) as connection:
        yield WsClient(connection)
