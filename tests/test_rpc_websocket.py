"""JSON-RPC over WebSocket: subscriptions, filters, slow subscribers, auth, limits and
graceful shutdown, against the real hypercorn server."""

from __future__ import annotations

import json

import pytest
import trio
import trio_websocket
from rpc_fakes import (
    TEST_TIMEOUT_SECONDS,
    FakeNode,
    WsClient,
    hex0x,
    http_client,
    quick_limits,
    rpc,
    running_server,
    tx,
    ws_client,
)

from node.rpc import errors
from node.rpc.server import RpcBindError, RpcServer

TOKEN = "s3cret-token"


async def test_new_blocks_are_delivered_in_order() -> None:
    node = FakeNode()
    async with running_server(node) as running, ws_client(running) as ws:
        plain = await ws.result("chain_subscribe", {"topic": "newBlocks"})
        full = await ws.result("chain_subscribe", {"topic": "newBlocks", "full": True})
        assert plain != full and plain.startswith("0x") and len(plain) == 18
        blocks = [node.commit([tx(height).raw]) for height in range(1, 6)]
        received: dict[str, list[dict[str, object]]] = {plain: [], full: []}
        for _ in range(10):
            message = await ws.next_notification()
            params = message["params"]
            received[params["subscription"]].append(params["result"])
        assert [item["hash"] for item in received[plain]] == [hex0x(b.hash) for b in blocks]
        assert [item["height"] for item in received[full]] == [1, 2, 3, 4, 5]
        assert "txs" not in received[plain][0]
        assert received[full][0]["txs"][0]["raw"] == hex0x(blocks[0].txs[0])


async def test_tx_results_in_order_and_filtered_by_tx_id() -> None:
    node = FakeNode()
    txs = [tx(nonce) for nonce in range(1, 7)]
    watched = [txs[1], txs[4]]
    async with running_server(node) as running, ws_client(running) as ws:
        everything = await ws.result("chain_subscribe", {"topic": "txResults"})
        filtered = await ws.result("chain_subscribe", {
            "topic": "txResults", "tx_ids": [hex0x(item.tx_id) for item in watched],
        })
        node.commit([item.raw for item in txs[:3]], codes=[0, 100, 0])
        node.commit([item.raw for item in txs[3:]])
        results: dict[str, list[dict[str, object]]] = {everything: [], filtered: []}
        for _ in range(len(txs) + len(watched)):
            params = (await ws.next_notification())["params"]
            results[params["subscription"]].append(params["result"])
        assert [item["tx_id"] for item in results[everything]] == [hex0x(t.tx_id) for t in txs]
        assert [(item["height"], item["position"]) for item in results[everything]] == [
            (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
        assert results[filtered] == [
            {"tx_id": hex0x(txs[1].tx_id), "height": 1, "position": 1, "code": 100,
             "code_name": "NONCE_STALE"},
            {"tx_id": hex0x(txs[4].tx_id), "height": 2, "position": 1, "code": 0,
             "code_name": "OK"},
        ]
        # Delivered ids leave the filter; more can be added to it.
        later = tx(99)
        added = await ws.result("chain_addTxFilter", {"subscription": filtered,
                                                      "tx_ids": [hex0x(later.tx_id)]})
        assert added == {"outstanding": 1}
        node.commit([tx(50).raw, later.raw])
        seen = [(await ws.next_notification())["params"] for _ in range(3)]
        assert [p["result"]["tx_id"] for p in seen if p["subscription"] == filtered] == [
            hex0x(later.tx_id)]
        answer = await ws.call("chain_addTxFilter", {"subscription": everything, "tx_ids": []})
        assert answer["error"]["code"] == errors.NOT_FOUND


async def test_tx_filter_size_is_capped() -> None:
    limits = quick_limits(tx_filter_ids_max=2)
    async with running_server(limits=limits) as running, ws_client(running) as ws:
        ids = [hex0x(bytes([index]) * 32) for index in range(3)]
        answer = await ws.call("chain_subscribe", {"topic": "txResults", "tx_ids": ids})
        assert answer["error"]["code"] == errors.INVALID_PARAMS
        assert "params.tx_ids: 3 items" in answer["error"]["message"]
        subscription = await ws.result("chain_subscribe",
                                       {"topic": "txResults", "tx_ids": ids[:2]})
        answer = await ws.call("chain_addTxFilter",
                               {"subscription": subscription, "tx_ids": ids[2:]})
        assert answer["error"]["code"] == errors.INVALID_PARAMS
        assert "maximum 2" in answer["error"]["message"]


async def test_unsubscribe_and_subscription_limits() -> None:
    node = FakeNode()
    limits = quick_limits(subscriptions_per_connection_max=2)
    async with running_server(node, limits=limits) as running, ws_client(running) as ws:
        first = await ws.result("chain_subscribe", {"topic": "newBlocks"})
        second = await ws.result("chain_subscribe", {"topic": "txResults"})
        answer = await ws.call("chain_subscribe", {"topic": "newBlocks"})
        assert answer["error"]["code"] == errors.TOO_MANY_SUBSCRIPTIONS
        assert await ws.result("chain_unsubscribe", {"subscription": first}) is True
        answer = await ws.call("chain_unsubscribe", {"subscription": first})
        assert answer["error"]["code"] == errors.NOT_FOUND
        third = await ws.result("chain_subscribe", {"topic": "newBlocks"})
        node.commit([tx(1).raw])
        received = {(await ws.next_notification())["params"]["subscription"] for _ in range(2)}
        assert received == {second, third}
        with trio.move_on_after(0.2):
            extra = await ws.next_notification()
            pytest.fail(f"unexpected notification {extra}")


async def test_subscription_params_are_checked() -> None:
    async with running_server() as running, ws_client(running) as ws:
        answer = await ws.call("chain_subscribe", {"topic": "everything"})
        assert answer["error"]["code"] == errors.INVALID_PARAMS
        assert answer["error"]["message"].startswith("params.topic: expected one of newBlocks")
        answer = await ws.call("chain_subscribe", {"topic": "newBlocks", "tx_ids": []})
        assert answer["error"]["message"] == "params.tx_ids: only for the txResults topic"
        answer = await ws.call("chain_unsubscribe", {"subscription": "0xnothex"})
        assert answer["error"]["code"] == errors.INVALID_PARAMS


async def test_websocket_only_methods_are_not_found_over_http() -> None:
    async with running_server() as running, http_client(running) as client:
        answer = await rpc(client, "chain_subscribe", {"topic": "newBlocks"})
        assert answer["error"]["code"] == errors.METHOD_NOT_FOUND
        assert "only available over WebSocket" in answer["error"]["message"]


async def test_batches_and_notifications_over_websocket() -> None:
    async with running_server() as running, ws_client(running) as ws:
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "chain_head"},
            {"jsonrpc": "2.0", "method": "chain_head"},
            {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        ]
        await ws.connection.send_message(json.dumps(batch))
        answers = json.loads(await ws.connection.get_message())
        assert [answer["id"] for answer in answers] == [1, 2]
        await ws.connection.send_message(json.dumps(batch[1]))  # no answer at all
        await ws.connection.send_message(b"not json")  # binary messages work too
        answer = json.loads(await ws.connection.get_message())
        assert answer["error"]["code"] == errors.PARSE_ERROR


async def test_slow_subscriber_loses_its_subscription_not_the_server() -> None:
    node = FakeNode()
    limits = quick_limits(outbox_messages_max=4, outbox_bytes_max=256 * 1024)
    big_block = node.commit([tx(nonce).raw for nonce in range(1, 101)])
    async with running_server(node, limits=limits) as running:
        async with ws_client(running, message_queue_size=1) as slow:
            subscription = await slow.result("chain_subscribe",
                                             {"topic": "newBlocks", "full": True})
            # The slow client reads nothing: socket buffers fill, then its outbox.
            statistics = running.server.statistics()
            published = 0
            while statistics.subscription_overflows == 0:
                node.publish(big_block, [0] * 100)
                published += 1
                await trio.sleep(0.001)
            # Meanwhile the node and the other clients are served.
            async with http_client(running) as client:
                assert (await rpc(client, "chain_head"))["result"]["height"] == 1
            # Reading now: some notifications, then the overflow notice, then nothing more.
            notifications = []
            while True:
                message = await slow.next_notification()
                notifications.append(message)
                if "error" in message["params"]:
                    break
            error = notifications[-1]["params"]
            assert error["subscription"] == subscription
            assert error["error"]["code"] == errors.SUBSCRIPTION_OVERFLOW
            assert 0 < len(notifications) - 1 < published
            # The connection is still usable, the subscription is gone.
            answer = await slow.call("chain_unsubscribe", {"subscription": subscription})
            assert answer["error"]["code"] == errors.NOT_FOUND
            assert (await slow.result("chain_head"))["height"] == 1
        async with http_client(running) as client:
            text = (await client.get("/metrics")).text
            assert "medledger_rpc_subscription_overflows_total 1.0" in text


async def test_node_side_overflow_also_closes_the_subscription() -> None:
    node = FakeNode()
    node.subscriber_buffer_events = 2
    async with running_server(node) as running, ws_client(running) as ws:
        subscription = await ws.result("chain_subscribe", {"topic": "newBlocks"})
        for height in range(1, 6):  # no checkpoint in between: the node buffer overflows
            node.commit([tx(height).raw])
        messages = []
        while not messages or "error" not in messages[-1]["params"]:
            messages.append(await ws.next_notification())
        heights = [m["params"]["result"]["height"] for m in messages[:-1]]
        assert heights == list(range(1, len(heights) + 1)) and len(heights) < 5
        assert messages[-1]["params"] == {
            "subscription": subscription,
            "error": {"code": errors.SUBSCRIPTION_OVERFLOW,
                      "message": messages[-1]["params"]["error"]["message"]},
        }
        assert node.block_subscribers == []


async def test_admin_over_websocket_by_header_or_authenticate() -> None:
    async with running_server(admin_token=TOKEN) as running:
        async with ws_client(running, token=TOKEN) as ws:
            assert (await ws.result("admin_peers"))[0]["raft_stream"] is True
            statistics = await ws.result("admin_rpcStatistics")
            assert statistics["websocket_connections"] == 1
        async with ws_client(running) as ws:
            answer = await ws.call("admin_peers")
            assert answer["error"]["code"] == errors.UNAUTHORIZED
            answer = await ws.call("rpc.authenticate", {"token": "wrong"})
            assert answer["error"]["code"] == errors.UNAUTHORIZED
            assert await ws.result("rpc.authenticate", {"token": TOKEN}) == {"authenticated": True}
            assert len(await ws.result("admin_peers")) == 2


async def test_repeated_wrong_tokens_close_the_connection() -> None:
    async with running_server(admin_token=TOKEN) as running, ws_client(running) as ws:
        for _ in range(3):
            answer = await ws.call("rpc.authenticate", {"token": "guess"})
            assert answer["error"]["code"] == errors.UNAUTHORIZED
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            await ws.connection.get_message()
        assert closed.value.reason.code == 1008


async def test_oversized_message_closes_only_that_connection() -> None:
    limits = quick_limits(websocket_message_bytes_max=1_000)
    async with running_server(limits=limits) as running:
        async with ws_client(running) as ws:
            await ws.connection.send_message(json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "chain_head", "params": ["x" * 2_000]}))
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await ws.connection.get_message()
            assert closed.value.reason.code == 1009  # Message Too Big
        async with ws_client(running) as ws:
            assert (await ws.result("chain_head"))["height"] == 0


async def test_websocket_connections_are_capped() -> None:
    limits = quick_limits(websocket_connections_max=1)
    async with running_server(limits=limits) as running, ws_client(running) as first:
        assert (await first.result("chain_head"))["height"] == 0
        with pytest.raises(trio_websocket.HandshakeError):
            async with ws_client(running):
                pass
        assert running.server.statistics().websocket_connections_refused == 1


async def test_cancelling_the_server_closes_websockets_gracefully() -> None:
    node = FakeNode()
    server = RpcServer(node, host="127.0.0.1", port=0, limits=quick_limits())
    with trio.fail_after(TEST_TIMEOUT_SECONDS):
        async with trio.open_nursery() as nursery:
            server_scope = trio.CancelScope()

            async def serve(*, task_status: trio.TaskStatus[int]) -> None:
                with server_scope:
                    await server.run(task_status=task_status)

            port = await nursery.start(serve)
            url = f"ws://127.0.0.1:{port}/ws"
            async with trio_websocket.open_websocket_url(url) as connection:
                ws = WsClient(connection)
                await ws.result("chain_subscribe", {"topic": "newBlocks"})
                started = trio.current_time()
                server_scope.cancel()
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await connection.get_message()
                assert closed.value.reason.code == 1001  # Going Away
        assert trio.current_time() - started < 3.0
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


async def test_silent_websocket_clients_are_pinged_and_dead_ones_dropped() -> None:
    limits = quick_limits(read_timeout_seconds=1, websocket_ping_interval_seconds=0.2)
    async with running_server(limits=limits) as running:
        # trio-websocket answers pings by itself: a live but silent client stays connected.
        async with ws_client(running) as ws:
            await trio.sleep(1.2)
            assert (await ws.result("chain_head"))["height"] == 0
        # A client that stops reading (so never answers) is dropped after the read timeout.
        stream = await trio.open_tcp_stream("127.0.0.1", running.port)
        await stream.send_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert b"101" in await stream.receive_some(1024)
        with trio.fail_after(3):
            while await stream.receive_some(65536):  # pings, then the close
                pass
        assert running.server.statistics().websocket_connections == 0


async def test_a_port_in_use_fails_the_start() -> None:
    async with running_server() as running:
        second = RpcServer(FakeNode(), host="127.0.0.1", port=running.port)
        with pytest.raises(RpcBindError, match="Address already in use"):
            await second.run()


async def test_batched_tx_results_arrive_as_lists_in_commit_order() -> None:
    node = FakeNode()
    txs = [tx(nonce) for nonce in range(1, 121)]
    watched = {item.tx_id for item in txs[::3]}
    async with running_server(node) as running, ws_client(running) as ws:
        everything = await ws.result("chain_subscribe", {"topic": "txResults", "batch": True})
        filtered = await ws.result("chain_subscribe", {
            "topic": "txResults", "batch": True,
            "tx_ids": [hex0x(tx_id) for tx_id in watched],
        })
        node.commit([item.raw for item in txs[:60]])
        node.commit([item.raw for item in txs[60:]])
        results: dict[str, list[dict[str, object]]] = {everything: [], filtered: []}
        messages = 0
        while len(results[everything]) < len(txs) or len(results[filtered]) < len(watched):
            params = (await ws.next_notification())["params"]
            assert isinstance(params["result"], list) and params["result"]
            results[params["subscription"]].extend(params["result"])
            messages += 1
        assert [item["tx_id"] for item in results[everything]] == [hex0x(t.tx_id) for t in txs]
        assert [item["tx_id"] for item in results[filtered]] == [
            hex0x(t.tx_id) for t in txs if t.tx_id in watched]
        assert messages < len(txs) // 2  # batched, not one message per result
        answer = await ws.call("chain_subscribe", {"topic": "newBlocks", "batch": True})
        assert answer["error"]["message"] == "params.batch: only for the txResults topic"


async def test_batched_subscription_overflows_like_any_other() -> None:
    node = FakeNode()
    node.subscriber_buffer_events = 2
    async with running_server(node) as running, ws_client(running) as ws:
        subscription = await ws.result("chain_subscribe", {"topic": "txResults", "batch": True})
        node.commit([tx(nonce).raw for nonce in range(1, 11)])  # 10 events, room for ~3
        while True:
            params = (await ws.next_notification())["params"]
            if "error" in params:
                break
        assert params == {"subscription": subscription, "error": params["error"]}
        assert params["error"]["code"] == errors.SUBSCRIPTION_OVERFLOW
        assert (await ws.result("chain_head"))["height"] == 1


async def test_the_subscription_id_arrives_before_its_first_notification() -> None:
    node = FakeNode()
    node.replay_on_subscribe = [node.commit([tx(1).raw])]  # ready before the response is
    async with running_server(node) as running, ws_client(running) as ws:
        request = {"jsonrpc": "2.0", "id": 1, "method": "chain_subscribe",
                   "params": {"topic": "newBlocks"}}
        await ws.connection.send_message(json.dumps(request))
        first = json.loads(await ws.connection.get_message())
        second = json.loads(await ws.connection.get_message())
        assert first["id"] == 1
        assert second["params"]["subscription"] == first["result"]
