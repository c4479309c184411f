"""The RPC server's dispatcher driven in-process for the RPC harnesses: the real
registry (with the application's query methods, as node/service.py registers them), over
tests/rpc_fakes.FakeNode with two committed blocks whose ``app_query`` runs the real
queries against the demo consortium's genesis state. No socket is opened."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import trio
from rpc_fakes import FakeNode, quick_limits, tx

from ledger.app import queries
from ledger.sdk.demo import DemoConsortium
from ledger.sdk.inprocess import InProcessLedger
from ledger.txtypes import TxType
from node.rpc.app_methods import app_method_specs
from node.rpc.context import TRANSPORT_HTTP, TRANSPORT_WEBSOCKET, Connection
from node.rpc.errors import INTERNAL_ERROR
from node.rpc.server import RpcServer
from node.rpc.subscriptions import Outbox, WebSocketSession

ADMIN_TOKEN = "fuzz-admin-token"
# A response slower than this is reported (a fuzzed param that makes a query crawl).
CALL_SECONDS_MAX = 5.0


class QueryNode(FakeNode):
    """FakeNode whose application queries are the real ones over a real state."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = InProcessLedger(DemoConsortium(chain_id=self.chain_id).genesis())

    def app_query(self, method: str, params: dict[str, Any]) -> Any:
        given = {name: value for name, value in params.items() if value is not None}
        return queries.run_query(self.ledger.state, method, given, now_ms=self.ledger.time_ms)


class RecordingLog:
    """A structlog stand-in that keeps what ``exception`` was called for."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, BaseException | None]] = []

    def bind(self, **_: Any) -> RecordingLog:
        return self

    def info(self, *_: Any, **__: Any) -> None:
        pass

    warning = debug = error = info

    def exception(self, event: str, *_: Any, **__: Any) -> None:
        self.failures.append((event, sys.exc_info()[1]))


class InternalErrorFound(AssertionError):
    """The dispatcher answered -32603 because a handler raised something unexpected."""


@dataclass
class World:
    server: RpcServer
    log: RecordingLog

    async def answer(self, body: bytes | str, *, websocket: bool) -> str | None:
        transport = TRANSPORT_WEBSOCKET if websocket else TRANSPORT_HTTP
        connection = Connection(transport, "fuzz", authenticated=websocket)
        dispatcher = self.server.application.dispatcher
        with trio.fail_after(CALL_SECONDS_MAX):
            if not websocket:
                return await dispatcher.handle_message(body, connection)
            limits = self.server.context.limits
            outbox = Outbox(messages_max=limits.outbox_messages_max,
                            bytes_max=limits.outbox_bytes_max)
            async with trio.open_nursery() as nursery:
                session = WebSocketSession(self.server.context, nursery, outbox)
                connection.session = session
                try:
                    return await dispatcher.handle_message(body, connection)
                finally:
                    session.close_all()
                    nursery.cancel_scope.cancel()
                    node = self.server.context.node
                    assert isinstance(node, FakeNode)
                    node.block_subscribers.clear()  # nothing is published: no leak per call
                    node.result_subscribers.clear()

    def check(self, response: str | None) -> None:
        """Raise InternalErrorFound (chained to the handler's exception) on -32603."""
        failures, self.log.failures = self.log.failures, []
        if failures:
            event, error = failures[0]
            raise InternalErrorFound(f"{event}: {error!r}") from error
        if response is None:
            return
        document = json.loads(response)
        for answer in document if isinstance(document, list) else [document]:
            code = answer.get("error", {}).get("code")
            if code == INTERNAL_ERROR:
                raise InternalErrorFound(f"-32603 without a logged exception: {answer}")


_world: World | None = None


def world() -> World:
    """One server for the whole run (building the registry costs far more than a call)."""
    global _world
    if _world is None:
        node = QueryNode()
        node.commit([tx(1).raw, tx(2, TxType.VOTE).raw])
        node.commit([])
        log = RecordingLog()
        server = RpcServer(node, host="127.0.0.1", port=0, admin_token=ADMIN_TOKEN,
                           limits=quick_limits(), log=log)
        server.register_app_methods(app_method_specs())
        _world = World(server, log)
    return _world
