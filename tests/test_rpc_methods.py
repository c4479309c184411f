"""Every method's happy path (and its documented errors) over HTTP, admin auth, domain
methods, rpc.discover and the probe endpoints."""

from __future__ import annotations

from typing import Any

from factories import signed
from prometheus_client.parser import text_string_to_metric_families
from rpc_fakes import FakeNode, hex0x, http_client, quick_limits, result_of, rpc, running_server, tx

from ledger.errors import ValidationError
from ledger.merkle import MerkleProof, verify_proof
from ledger.txtypes import TxType
from node.rpc import errors
from node.rpc.app_methods import AppMethodSpec, app_method_from_description
from node.rpc.registry import NonNegativeInt, ParamSpec

TOKEN = "s3cret-token"


async def test_node_methods() -> None:
    node = FakeNode()
    block = node.commit([tx(1).raw])
    async with running_server(node) as running, http_client(running) as client:
        status = await result_of(client, "node_status")
        assert status["height"] == 1 and status["head_hash"] == hex0x(block.hash)
        assert status["role"] == "leader" and status["leader_id"] == "12D3KooWself"
        assert status["validators"] == ["12D3KooWself", "12D3KooWpeerA"]
        assert status["extra"] == {"data_dir": "/tmp/fake"}
        health = await result_of(client, "node_health")
        assert health == {"live": True, "ready": True,
                          "details": {"started": True, "seconds_since_last_commit": 0.5,
                                      "role": "leader"}}
        peers = await result_of(client, "node_peers")
        assert peers == [
            {"peer_id": "12D3KooWpeerA", "validator": True, "connected": True},
            {"peer_id": "12D3KooWobserver", "validator": False, "connected": False},
        ]


async def test_chain_head_and_get_block_by_height_and_hash() -> None:
    node = FakeNode()
    async with running_server(node) as running, http_client(running) as client:
        assert await result_of(client, "chain_head") == {"height": 0, "hash": hex0x(bytes(32))}
        first, second = tx(1), tx(2)
        block = node.commit([first.raw, second.raw], codes=[0, 100])
        assert await result_of(client, "chain_head") == {"height": 1, "hash": hex0x(block.hash)}
        by_height = await result_of(client, "chain_getBlock", {"height": 1})
        by_hash = await result_of(client, "chain_getBlock", {"hash": hex0x(block.hash)})
        assert by_height == by_hash
        assert by_height["hash"] == hex0x(block.hash)
        assert by_height["header"]["tx_root"] == hex0x(block.header.tx_root)
        assert by_height["header"]["proposer"] == hex0x(block.header.proposer)
        assert by_height["tx_ids"] == [hex0x(first.tx_id), hex0x(second.tx_id)]
        assert "txs" not in by_height
        full = await result_of(client, "chain_getBlock", {"height": 1, "full": True})
        assert full["txs"][0]["raw"] == hex0x(first.raw)
        assert full["txs"][0]["type"] == "CONSENT_REVOKE"
        assert full["txs"][0]["body"] == {"consent_id": "consent-1"}
        for params in ({"height": 2}, {"hash": hex0x(bytes(32))}):
            answer = await rpc(client, "chain_getBlock", params)
            assert answer["error"]["code"] == errors.NOT_FOUND


async def test_chain_get_tx_returns_a_proof_that_verifies_against_the_header() -> None:
    node = FakeNode()
    txs = [tx(nonce) for nonce in range(1, 8)]
    node.commit([item.raw for item in txs], codes=[0, 0, 0, 0, 0, 100, 0])
    async with running_server(node) as running, http_client(running) as client:
        block = await result_of(client, "chain_getBlock", {"height": 1})
        for position, item in enumerate(txs):
            found = await result_of(client, "chain_getTx", {"tx_id": hex0x(item.tx_id)})
            assert found["raw"] == hex0x(item.raw)
            assert found["tx"]["nonce"] == item.nonce
            assert found["height"] == 1 and found["position"] == position
            assert found["block_hash"] == block["hash"]
            proof_view = found["proof"]
            assert proof_view["size"] == block["header"]["tx_count"]
            proof = MerkleProof(
                proof_view["index"], proof_view["size"],
                tuple(bytes.fromhex(sibling[2:]) for sibling in proof_view["siblings"]),
            )
            root = bytes.fromhex(block["header"]["tx_root"][2:])
            assert verify_proof(item.tx_id, proof, root)
        sixth = await result_of(client, "chain_getTx", {"tx_id": hex0x(txs[5].tx_id)})
        assert (sixth["code"], sixth["code_name"]) == (100, "NONCE_STALE")
        missing = await rpc(client, "chain_getTx", {"tx_id": hex0x(bytes(32))})
        assert missing["error"]["code"] == errors.NOT_FOUND


async def test_tx_submit_accepts_and_rejects_with_the_reason() -> None:
    node = FakeNode()
    good = tx(1)
    bad_signature = bytearray(tx(2).raw)
    bad_signature[-1] ^= 1
    async with running_server(node) as running, http_client(running) as client:
        submitted = await result_of(client, "tx_submit", {"raw": hex0x(good.raw)})
        assert submitted == {"tx_id": hex0x(good.tx_id), "accepted": True, "code": 0,
                             "reason": "OK", "message": ""}
        answer = await rpc(client, "tx_submit", {"raw": hex0x(bytes(bad_signature))})
        error = answer["error"]
        assert error["code"] == errors.TX_REJECTED
        assert error["data"]["reason"] == "BAD_SIGNATURE" and error["data"]["code"] == 5
        assert error["message"].startswith("Transaction rejected: BAD_SIGNATURE")
        other_chain = signed(TxType.VOTE, chain_id="another-chain")
        answer = await rpc(client, "tx_submit", {"raw": hex0x(other_chain.raw)})
        assert answer["error"]["data"]["reason"] == "WRONG_CHAIN"
        answer = await rpc(client, "tx_submit", {"raw": "0x00"})
        assert answer["error"]["data"]["reason"] == "MALFORMED"
        assert answer["error"]["data"]["tx_id"] is None
        too_big = "0x" + "00" * (64 * 1024 + 1)
        answer = await rpc(client, "tx_submit", {"raw": too_big})
        assert answer["error"]["code"] == errors.INVALID_PARAMS
        assert "params.raw: 65537 bytes exceeds maximum 65536" in answer["error"]["message"]


async def test_tx_submit_batch_and_status() -> None:
    node = FakeNode()
    first, second = tx(1), tx(2)
    async with running_server(node) as running, http_client(running) as client:
        results = await result_of(
            client, "tx_submitBatch", {"raws": [hex0x(first.raw), "0x00", hex0x(second.raw)]}
        )
        assert [item["accepted"] for item in results] == [True, False, True]
        assert results[1]["reason"] == "MALFORMED"
        status = await result_of(client, "tx_status", {"tx_id": hex0x(first.tx_id)})
        assert status == {"tx_id": hex0x(first.tx_id), "state": "pending", "height": None,
                          "code": None, "code_name": None}
        node.commit_pending()
        status = await result_of(client, "tx_status", {"tx_id": hex0x(second.tx_id)})
        assert status["state"] == "committed" and status["height"] == 1
        assert status["code_name"] == "OK"
        unknown = await result_of(client, "tx_status", {"tx_id": hex0x(bytes(32))})
        assert unknown["state"] == "unknown"
        duplicate = await rpc(client, "tx_submit", {"raw": hex0x(first.raw)})
        assert duplicate["error"]["data"]["reason"] == "DUPLICATE"


async def test_tx_submit_batch_length_is_capped() -> None:
    limits = quick_limits(submit_batch_txs_max=3)
    async with running_server(limits=limits) as running, http_client(running) as client:
        answer = await rpc(client, "tx_submitBatch", {"raws": ["0x00"] * 4})
        assert answer["error"]["code"] == errors.INVALID_PARAMS
        assert "params.raws: 4 items is outside [1, 3]" in answer["error"]["message"]


async def test_submit_when_the_node_is_too_slow() -> None:
    node = FakeNode()
    limits = quick_limits(node_call_timeout_seconds=0.2)
    async with running_server(node, limits=limits) as running, http_client(running) as client:
        node.is_ready = False  # no leader: admission (and later forwarding) is the node's call
        assert (await result_of(client, "tx_submit", {"raw": hex0x(tx(2).raw)}))["accepted"]
        node.submit_delay_seconds = 5.0
        answer = await rpc(client, "tx_submitBatch", {"raws": [hex0x(tx(1).raw)]})
        assert answer["error"]["code"] == errors.TIMEOUT
        node.submit_delay_seconds = 0.0
        assert (await result_of(client, "tx_submit", {"raw": hex0x(tx(1).raw)}))["accepted"]


async def test_admin_methods_need_the_bearer_token() -> None:
    async with running_server(admin_token=TOKEN) as running, http_client(running) as client:
        answer = await rpc(client, "admin_peers")
        assert answer["error"]["code"] == errors.UNAUTHORIZED
        answer = await rpc(client, "admin_peers", headers={"authorization": "Bearer wrong"})
        assert answer["error"]["code"] == errors.UNAUTHORIZED
        answer = await rpc(client, "admin_peers", headers={"authorization": TOKEN})
        assert answer["error"]["code"] == errors.UNAUTHORIZED  # no "Bearer" scheme
        answer = await rpc(client, "admin_peers", headers={"authorization": f"Bearer {TOKEN}"})
        peers = answer["result"]
        assert peers[0] == {"peer_id": "12D3KooWpeerA", "addresses": ["/ip4/10.0.0.2/tcp/4001"],
                            "validator": True, "connected": True, "raft_stream": True}
        answer = await rpc(client, "admin_rpcStatistics",
                           headers={"authorization": f"bearer {TOKEN}"})
        statistics = answer["result"]
        assert statistics["http_requests"] >= 4
        assert statistics["limits"]["batch_calls_max"] == 100


async def test_admin_methods_are_disabled_without_a_configured_token() -> None:
    async with running_server(admin_token=None) as running, http_client(running) as client:
        answer = await rpc(client, "admin_peers", headers={"authorization": "Bearer x"})
        assert answer["error"]["code"] == errors.UNAUTHORIZED
        assert "disabled" in answer["error"]["message"]


async def test_domain_methods_are_routed_to_app_query() -> None:
    node = FakeNode()

    def consent_get(params: dict[str, Any]) -> Any:
        if params["consent_id"] == "missing":
            raise KeyError("no consent missing")
        if params["consent_id"] == "invalid":
            raise ValidationError("CONSENT_ID", "not a consent id")
        return {"consent_id": params["consent_id"], "hash": b"\x01\x02", "limit": params["limit"]}

    node.app_handlers["consent_get"] = consent_get
    async with running_server(node) as running, http_client(running) as client:
        running.server.register_app_methods([
            app_method_from_description({
                "name": "consent_get", "summary": "A consent by id",
                "params": [{"name": "consent_id", "type": "identifier"},
                           {"name": "limit", "type": "integer", "required": False}],
                "result": "the consent",
            }),
            AppMethodSpec("audit_count", "Access log batches",
                          params=(ParamSpec("since_ms", NonNegativeInt()),)),
        ])
        result = await result_of(client, "consent_get", {"consent_id": "c-1", "limit": 3})
        assert result == {"consent_id": "c-1", "hash": "0x0102", "limit": 3}
        assert node.app_calls[-1] == ("consent_get", {"consent_id": "c-1", "limit": 3})
        answer = await rpc(client, "consent_get", {"consent_id": "missing"})
        assert answer["error"] == {"code": errors.NOT_FOUND,
                                   "message": "Not found: no consent missing"}
        answer = await rpc(client, "consent_get", {"consent_id": "invalid"})
        assert answer["error"]["code"] == errors.INVALID_PARAMS
        answer = await rpc(client, "consent_get", {"consent_id": "has space"})
        assert answer["error"]["code"] == errors.INVALID_PARAMS
        assert answer["error"]["message"].startswith("params.consent_id: ")
        answer = await rpc(client, "audit_count", {"since_ms": 5})  # the app has no handler
        assert answer["error"]["code"] == errors.NOT_FOUND
        names = {method["name"] for method in (await result_of(client, "rpc.discover"))["methods"]}
        assert {"consent_get", "audit_count"} <= names


async def test_rpc_discover_lists_every_registered_method_with_its_schema() -> None:
    async with running_server() as running, http_client(running) as client:
        document = await result_of(client, "rpc.discover")
        assert document["openrpc"].startswith("1.2.")
        registry = running.server.context.registry
        methods = {method["name"]: method for method in document["methods"]}
        assert sorted(methods) == list(registry.names())
        for spec in registry:
            method = methods[spec.name]
            assert [param["name"] for param in method["params"]] == [p.name for p in spec.params]
            assert {error["code"] for error in method["errors"]} >= {errors.INVALID_PARAMS,
                                                                     errors.INTERNAL_ERROR}
        get_block = methods["chain_getBlock"]
        height = get_block["params"][0]
        assert height["schema"] == {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
        assert height["required"] is False
        assert "exactly one of: height, hash" in get_block["description"]
        assert {tag["name"] for tag in methods["admin_peers"]["tags"]} == {"admin"}
        assert {tag["name"] for tag in methods["chain_subscribe"]["tags"]} == {"websocket"}
        assert document["components"]["errors"]["subscription_overflow"]["code"] == -32005
        expected = {"node_status", "node_health", "node_peers", "chain_head", "chain_getBlock",
                    "chain_getTx", "chain_subscribe", "chain_unsubscribe", "tx_submit",
                    "tx_submitBatch", "tx_status", "rpc.discover", "admin_peers"}
        assert expected <= set(methods)


async def test_probes_and_metrics_endpoint() -> None:
    node = FakeNode()
    node.commit([tx(1).raw])
    async with running_server(node) as running, http_client(running) as client:
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        response = await client.get("/readyz")
        assert (response.status_code, response.json()) == (200, {"ready": True})
        node.is_ready = False
        response = await client.get("/readyz")
        assert (response.status_code, response.json()) == (503, {"ready": False})
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {family.name for family in text_string_to_metric_families(response.text)}
        assert {"medledger_height", "medledger_mempool_txs", "medledger_raft_role",
                "medledger_stage_seconds", "medledger_commit_latency_seconds",
                "medledger_rpc_requests", "medledger_txs_rejected"} <= families
        assert "medledger_height 1.0" in response.text
        from node.version import VERSION

        assert 'medledger_build_info{libp2p="' in response.text
        assert f'version="{VERSION}"' in response.text
        response = await client.get("/version")
        assert response.status_code == 200 and response.json()["version"] == VERSION
