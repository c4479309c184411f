"""JSON-RPC 2.0 envelope over HTTP against the real hypercorn server: errors, batches,
notifications, caps, routes, logging."""

from __future__ import annotations

import json
from typing import Any

import structlog
from rpc_fakes import FakeNode, http_client, quick_limits, rpc, running_server

from node.rpc import errors


async def post_raw(client: Any, body: bytes | str) -> Any:
    return await client.post("/", content=body, headers={"content-type": "application/json"})


async def test_malformed_json_is_parse_error_with_null_id() -> None:
    async with running_server() as running, http_client(running) as client:
        for body in (b'{"jsonrpc": "2.0", "method": "chain_head", "id": 1', b"\xff\xfe{}",
                     b'{"jsonrpc":"2.0","id":1,"method":"chain_head","params":[NaN]}',
                     b"[" * 100_000):
            response = await post_raw(client, body)
            assert response.status_code == 200
            answer = response.json()
            assert answer["id"] is None
            assert answer["error"]["code"] == errors.PARSE_ERROR, answer


async def test_invalid_requests() -> None:
    cases: list[Any] = [
        {"jsonrpc": "1.0", "id": 1, "method": "chain_head"},
        {"id": 1, "method": "chain_head"},
        {"jsonrpc": "2.0", "id": 1, "method": 5},
        {"jsonrpc": "2.0", "id": 1, "method": "chain_head", "params": "x"},
        {"jsonrpc": "2.0", "id": 1, "method": "chain_head", "params": None},
        {"jsonrpc": "2.0", "id": {"a": 1}, "method": "chain_head"},
        {"jsonrpc": "2.0", "id": True, "method": "chain_head"},
        42,
        "chain_head",
    ]
    async with running_server() as running, http_client(running) as client:
        for case in cases:
            answer = (await post_raw(client, json.dumps(case))).json()
            assert answer["error"]["code"] == errors.INVALID_REQUEST, (case, answer)
            assert answer["id"] == (case.get("id") if isinstance(case, dict) and not isinstance(
                case.get("id"), dict | bool) else None)
        answer = (await post_raw(client, "[]")).json()
        assert answer == {"jsonrpc": "2.0", "id": None,
                          "error": {"code": -32600, "message": "Invalid Request: empty batch"}}


async def test_unknown_method_and_ids_are_echoed() -> None:
    async with running_server() as running, http_client(running) as client:
        answer = await rpc(client, "chain_nope", {}, rpc_id="abc")
        assert answer["id"] == "abc"
        assert answer["error"]["code"] == errors.METHOD_NOT_FOUND
        assert "chain_nope" in answer["error"]["message"]
        answer = await rpc(client, "chain_head", rpc_id=None)  # id null is a request
        assert answer["id"] is None and "result" in answer


async def test_bad_params_name_the_field() -> None:
    cases = [
        ("chain_getBlock", {"height": -1}, "params.height: expected non-negative integer"),
        ("chain_getBlock", {"height": 1.5}, "params.height: expected non-negative integer"),
        ("chain_getBlock", {"height": True}, "params.height: expected non-negative integer"),
        ("chain_getBlock", {"hash": "0x12"}, "params.hash: expected 32 bytes"),
        ("chain_getBlock", {}, "params.height or params.hash: give exactly one, got 0"),
        ("chain_getBlock", {"height": 1, "hash": "0x" + "00" * 32}, "give exactly one, got 2"),
        ("chain_getBlock", {"height": 1, "fulll": True}, "params.fulll: unknown parameter"),
        ("chain_getBlock", {"height": 1, "full": "yes"}, "params.full: expected boolean"),
        ("chain_getTx", {}, "params.tx_id: required"),
        ("chain_getTx", {"tx_id": "abc"}, "params.tx_id: expected 0x-prefixed hex"),
        ("tx_submit", {"raw": 7}, "params.raw: expected 0x-prefixed hex string, got integer"),
        ("tx_submitBatch", {"raws": []}, "params.raws: 0 items is outside"),
        ("tx_submitBatch", {"raws": ["0x00", 5]}, "params.raws[1]: expected 0x-prefixed"),
        ("chain_head", [1], "params: chain_head takes at most 0 positional params, got 1"),
    ]
    async with running_server() as running, http_client(running) as client:
        for method, params, message in cases:
            answer = await rpc(client, method, params)
            error = answer["error"]
            assert error["code"] == errors.INVALID_PARAMS, (method, params, answer)
            assert message in error["message"], (message, error["message"])


async def test_positional_params_follow_the_declared_order() -> None:
    node = FakeNode()
    node.commit([])
    async with running_server(node) as running, http_client(running) as client:
        answer = await rpc(client, "chain_getBlock", [1])
        assert answer["result"]["height"] == 1


async def test_batch_with_mixed_results_and_notifications() -> None:
    node = FakeNode()
    node.commit([])
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "chain_head"},
        {"jsonrpc": "2.0", "method": "chain_head"},  # notification: no answer
        {"jsonrpc": "2.0", "id": 2, "method": "chain_getBlock", "params": {"height": 9}},
        {"jsonrpc": "2.0", "id": 3, "method": "nope"},
        "garbage",
        {"jsonrpc": "2.0", "id": 4, "method": "chain_getBlock", "params": {"height": 1}},
    ]
    async with running_server(node) as running, http_client(running) as client:
        answers = (await post_raw(client, json.dumps(batch))).json()
        assert [answer["id"] for answer in answers] == [1, 2, 3, None, 4]
        assert answers[0]["result"]["height"] == 1
        assert answers[1]["error"]["code"] == errors.NOT_FOUND
        assert answers[2]["error"]["code"] == errors.METHOD_NOT_FOUND
        assert answers[3]["error"]["code"] == errors.INVALID_REQUEST
        assert answers[4]["result"]["height"] == 1


async def test_notifications_get_no_response() -> None:
    async with running_server() as running, http_client(running) as client:
        single = {"jsonrpc": "2.0", "method": "chain_head"}
        response = await post_raw(client, json.dumps(single))
        assert response.status_code == 204 and response.content == b""
        # Even a failing notification is not answered.
        response = await post_raw(client, json.dumps([single, {"jsonrpc": "2.0", "method": "x"}]))
        assert response.status_code == 204 and response.content == b""


async def test_oversized_body_is_413_and_the_server_keeps_serving() -> None:
    limits = quick_limits(request_body_bytes_max=10_000)
    async with running_server(limits=limits) as running, http_client(running) as client:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tx_submit",
                           "params": {"raw": "0x" + "00" * 20_000}})
        response = await post_raw(client, body)
        assert response.status_code == 413
        answer = response.json()
        assert answer["error"]["code"] == errors.REQUEST_TOO_LARGE
        assert answer["error"]["data"] == {"bytes_max": 10_000}

        async def chunks() -> Any:  # no Content-Length: the cap applies while reading
            for _ in range(30):
                yield b" " * 1_000

        response = await client.post("/", content=chunks())
        assert response.status_code == 413
        assert (await rpc(client, "chain_head"))["result"]["height"] == 0


async def test_oversized_batch_is_refused_and_the_server_keeps_serving() -> None:
    limits = quick_limits(batch_calls_max=5)
    async with running_server(limits=limits) as running, http_client(running) as client:
        batch = [{"jsonrpc": "2.0", "id": index, "method": "chain_head"} for index in range(6)]
        answer = (await post_raw(client, json.dumps(batch))).json()
        assert answer["id"] is None
        assert answer["error"]["code"] == errors.BATCH_TOO_LARGE
        assert answer["error"]["data"] == {"calls": 6, "calls_max": 5}
        answers = (await post_raw(client, json.dumps(batch[:5]))).json()
        assert len(answers) == 5


async def test_internal_errors_do_not_leak_and_are_logged() -> None:
    node = FakeNode()

    def broken() -> tuple[int, bytes]:
        raise RuntimeError("secret detail /var/lib/medledger")

    node.head = broken  # type: ignore[method-assign]
    async with running_server(node) as running, http_client(running) as client:
        with structlog.testing.capture_logs() as logs:
            answer = await rpc(client, "chain_head", headers={"x-request-id": "req-42"})
        assert answer["error"] == {"code": errors.INTERNAL_ERROR, "message": "Internal error",
                                   "data": {"request_id": "req-42"}}
        assert "secret" not in json.dumps(answer)
        failure = [entry for entry in logs if entry["event"] == "rpc internal error"]
        assert failure and failure[0]["request_id"] == "req-42"
        assert failure[0]["exc_info"] is True
        assert (await rpc(client, "node_peers"))["result"][0]["peer_id"] == "12D3KooWpeerA"


async def test_one_canonical_log_line_per_call_with_the_request_id() -> None:
    async with running_server() as running, http_client(running) as client:
        with structlog.testing.capture_logs() as logs:
            response = await client.post(
                "/", json={"jsonrpc": "2.0", "id": 7, "method": "chain_head"},
                headers={"x-request-id": "trace-1"},
            )
        assert response.headers["x-request-id"] == "trace-1"
        lines = [entry for entry in logs if entry["event"] == "rpc call"]
        assert len(lines) == 1
        line = lines[0]
        assert line["method"] == "chain_head" and line["outcome"] == "ok"
        assert line["request_id"] == "trace-1" and line["rpc_id"] == 7
        assert isinstance(line["duration_ms"], float) and line["transport"] == "http"
        # A request id that is not short and plain is replaced by a fresh one.
        response = await client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "chain_head"},
                                     headers={"x-request-id": "bad id" + "x" * 100})
        assert response.headers["x-request-id"] != "bad id"
        assert len(response.headers["x-request-id"]) == 16


async def test_routes_and_methods() -> None:
    async with running_server() as running, http_client(running) as client:
        response = await client.get("/")
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        response = await client.post("/healthz")
        assert response.status_code == 405 and response.headers["allow"] == "GET"
        response = await client.get("/nowhere")
        assert response.status_code == 404


async def test_rpc_requests_are_counted_by_method_and_outcome() -> None:
    async with running_server() as running, http_client(running) as client:
        await rpc(client, "chain_head")
        await rpc(client, "chain_getBlock", {"height": 5})
        await rpc(client, "made_up_method_name")
        text = (await client.get("/metrics")).text
        assert 'medledger_rpc_requests_total{method="chain_head",outcome="ok"} 1.0' in text
        assert ('medledger_rpc_requests_total{method="chain_getBlock",outcome="not_found"} 1.0'
                in text)
        unknown = 'medledger_rpc_requests_total{method="unknown",outcome="method_not_found"} 1.0'
        assert unknown in text
        assert "made_up_method_name" not in text
        assert 'medledger_stage_seconds_count{stage="rpc_decode"}' in text


async def test_the_access_line_is_debug_and_the_log_level_changes_at_run_time() -> None:
    """admin_setLogLevel (admin token) changes what the node logs now; /logspec reads it;
    a logger bound before the change follows it too."""
    from node.logs import configure_logging, current_level, get_logger, set_level

    saved = structlog.get_config()
    configure_logging(level="info", format="json")
    bound_before = get_logger(component="test")
    try:
        async with running_server(admin_token="t0ken") as running, http_client(running) as client:
            with structlog.testing.capture_logs() as logs:
                await rpc(client, "chain_head")
            assert [entry["log_level"] for entry in logs if entry["event"] == "rpc call"] == [
                "debug"]
            assert (await client.get("/logspec")).json() == {"level": "info"}
            refused = await rpc(client, "admin_setLogLevel", {"level": "debug"})
            assert refused["error"]["code"] == errors.UNAUTHORIZED and current_level() == "info"
            bad = await rpc(client, "admin_setLogLevel", {"level": "loud"},
                            headers={"authorization": "Bearer t0ken"})
            assert bad["error"]["code"] == errors.INVALID_PARAMS and current_level() == "info"
            answer = await rpc(client, "admin_setLogLevel", {"level": "warning"},
                               headers={"authorization": "Bearer t0ken"})
            assert answer["result"] == {"level": "warning", "previous": "info"}
            assert (await client.get("/logspec")).json() == {"level": "warning"}
        from node.logs import _below_level_dropped

        with_level = {"event": "x"}
        for method, dropped in (("info", True), ("debug", True), ("warning", False),
                                ("error", False), ("exception", False)):
            try:
                _below_level_dropped(bound_before, method, dict(with_level))
                assert not dropped, method
            except structlog.DropEvent:
                assert dropped, method
    finally:
        set_level("info")
        structlog.configure(**saved)  # the other tests' logging as it was
