"""The node's own methods (namespaces node_, chain_, tx_, admin_, rpc.) and the registry
that holds them. Domain methods (records_, consent_, ...) are in :mod:`node.rpc.app_methods`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from ledger import limits as ledger_limits
from ledger.codec import IDENTIFIER_PATTERN
from ledger.crypto import HASH_SIZE
from node.api import SubmitResult
from node.jsonview import (
    block_view,
    certified_view,
    handover_view,
    hex_bytes,
    proof_view,
    raw_transaction_view,
    result_code_name,
    to_json_value,
)
from node.logs import LEVELS, set_level
from node.rpc import openrpc
from node.rpc.context import CallContext
from node.rpc.errors import (
    InvalidParams,
    NotFound,
    NotReady,
    Pruned,
    Timeout,
    TooManySubscriptions,
    TxRejected,
    Unauthorized,
)
from node.rpc.limits import (
    SUBMIT_BATCH_TXS_MAX,
    TX_FILTER_IDS_MAX,
    TX_SIZE_BYTES_MAX,
)
from node.rpc.registry import (
    ArrayOf,
    Boolean,
    Choice,
    HexBytes,
    MethodSpec,
    NonNegativeInt,
    ParamSpec,
    Registry,
    ResultSpec,
    Text,
)
from node.rpc.subscriptions import (
    SUBSCRIPTION_ID_BYTES,
    SUBSCRIPTION_ID_PATTERN,
    TOPIC_NEW_BLOCKS,
    TOPICS,
    WebSocketSession,
)
from node.snapshot_sessions import (
    SESSION_ID_BYTES,
    SnapshotSessionNotFoundError,
    SnapshotUnavailableError,
)
from storage.errors import BlockPrunedError

# Admin tokens are compared whole; anything longer than this is not one of ours.
TOKEN_LENGTH_MAX = 256

HASH = HexBytes(size=HASH_SIZE)
RAW_TX = HexBytes(size_max=TX_SIZE_BYTES_MAX)
PATIENT_ID = Text(length_max=ledger_limits.IDENTIFIER_LENGTH_MAX, length_min=1,
                  pattern=IDENTIFIER_PATTERN)
SUBSCRIPTION_ID = Text(
    length_max=2 + 2 * SUBSCRIPTION_ID_BYTES, length_min=1, pattern=SUBSCRIPTION_ID_PATTERN
)
OBJECT: dict[str, Any] = {"type": "object"}
ARRAY_OF_OBJECTS: dict[str, Any] = {"type": "array", "items": {"type": "object"}}


def _session(call: CallContext) -> WebSocketSession:
    session = call.connection.session
    assert isinstance(session, WebSocketSession), "websocket_only methods run with a session"
    return session


# ---- node_ ---------------------------------------------------------------------------------


async def node_status(call: CallContext, params: dict[str, Any]) -> Any:
    return to_json_value(call.node.status())


async def node_health(call: CallContext, params: dict[str, Any]) -> Any:
    return {"live": True, "ready": call.node.ready(), "details": to_json_value(call.node.health())}


async def node_peers(call: CallContext, params: dict[str, Any]) -> Any:
    return [
        {"peer_id": peer.peer_id, "validator": peer.validator, "connected": peer.connected}
        for peer in call.node.peers()
    ]


# ---- chain_ --------------------------------------------------------------------------------


async def chain_head(call: CallContext, params: dict[str, Any]) -> Any:
    height, head_hash = call.node.head()
    return {"height": height, "hash": hex_bytes(head_hash)}


def pruned(error: BlockPrunedError) -> Pruned:
    return Pruned(
        f"Pruned: block {error.height} is no longer held by this node, which keeps only "
        f"recent blocks; the oldest block it holds is {error.oldest_height}",
        data={"height": error.height, "oldest_height": error.oldest_height},
    )


async def chain_get_block(call: CallContext, params: dict[str, Any]) -> Any:
    try:
        if params["height"] is not None:
            block = call.node.block_by_height(params["height"])
            key = f"height {params['height']}"
        else:
            block = call.node.block_by_hash(params["hash"])
            key = f"hash {hex_bytes(params['hash'])}"
    except BlockPrunedError as error:
        raise pruned(error) from None
    if block is None:
        raise NotFound(f"Not found: no block with {key}")
    return block_view(block, full=params["full"])


async def chain_get_tx(call: CallContext, params: dict[str, Any]) -> Any:
    try:
        location = call.node.tx(params["tx_id"])
    except BlockPrunedError as error:
        raise pruned(error) from None
    if location is None:
        raise NotFound(f"Not found: no committed tx {hex_bytes(params['tx_id'])}")
    header = location.block.header
    return {
        "tx_id": hex_bytes(location.tx_id),
        "raw": hex_bytes(location.raw),
        "tx": raw_transaction_view(location.raw),
        "height": location.height,
        "position": location.position,
        "code": location.code,
        "code_name": result_code_name(location.code),
        "block_hash": hex_bytes(location.block.hash),
        "tx_root": hex_bytes(header.tx_root),
        "proof": proof_view(location.proof),
    }


async def chain_get_certificate(call: CallContext, params: dict[str, Any]) -> Any:
    height = params["height"]
    try:
        found = call.node.certificate(height)
    except BlockPrunedError as error:
        raise pruned(error) from None
    if found is None:
        raise NotFound(f"Not found: no certificate of block {height} (not applied yet, or "
                       "its validators' votes are still arriving)")
    return certified_view(found)


async def chain_get_handovers(call: CallContext, params: dict[str, Any]) -> Any:
    try:
        found = call.node.validator_handovers(params["to_height"])
    except BlockPrunedError as error:
        raise pruned(error) from None
    return [handover_view(handover) for handover in found]


async def chain_get_trail_proof(call: CallContext, params: dict[str, Any]) -> Any:
    from node.trailproofs import TrailProofUnavailable, proof_view_parts

    patient = params["patient"]
    try:
        proof = await call.node.trail_proof(patient)
        handovers = call.node.validator_handovers(proof.block.header.height)
    except TrailProofUnavailable as error:
        raise NotFound(f"Not found: {error}") from None
    except BlockPrunedError as error:
        raise pruned(error) from None
    views = [handover_view(handover) for handover in handovers]
    return {
        "format": "medledger-proof/1", "kind": "trail",
        "chain_id": proof.block.header.chain_id, "patient": patient,
        "handovers": [{"header": view["header_raw"], "certificate": view["certificate_raw"]}
                      for view in views],
        "validator_sets": {view["validators_hash"]: view["validators"] for view in views},
        **proof_view_parts(proof),
    }


async def chain_get_roots(call: CallContext, params: dict[str, Any]) -> Any:
    height = params["height"]
    roots = call.node.roots(height)
    if roots is None:
        raise NotFound(f"Not found: height {height} is not applied yet")
    results_root, state_root = roots
    return {"height": height, "results_root": hex_bytes(results_root),
            "state_root": hex_bytes(state_root)}


async def chain_subscribe(call: CallContext, params: dict[str, Any]) -> Any:
    session = _session(call)
    topic = params["topic"]
    if topic == TOPIC_NEW_BLOCKS:
        if params["tx_ids"] is not None:
            raise InvalidParams("params.tx_ids: only for the txResults topic")
        if params["batch"]:
            raise InvalidParams("params.batch: only for the txResults topic")
        return session.subscribe_blocks(full=bool(params["full"]))
    if params["full"]:
        raise InvalidParams("params.full: only for the newBlocks topic")
    return session.subscribe_tx_results(tx_ids=params["tx_ids"], batch=bool(params["batch"]))


async def chain_unsubscribe(call: CallContext, params: dict[str, Any]) -> Any:
    _session(call).unsubscribe(params["subscription"])
    return True


async def chain_add_tx_filter(call: CallContext, params: dict[str, Any]) -> Any:
    outstanding = _session(call).add_tx_filter(params["subscription"], params["tx_ids"])
    return {"outstanding": outstanding}


# ---- tx_ -----------------------------------------------------------------------------------


async def _submit(call: CallContext, raws: Sequence[bytes]) -> list[SubmitResult]:
    try:
        with trio.fail_after(call.limits.node_call_timeout_seconds):
            results = await call.node.submit(raws)
    except trio.TooSlowError:
        raise Timeout(
            f"Timeout: the node did not admit the txs within "
            f"{call.limits.node_call_timeout_seconds} s"
        ) from None
    assert len(results) == len(raws), "NodeAPI.submit answers once per raw tx"
    return results


def submit_view(result: SubmitResult) -> dict[str, Any]:
    return {
        "tx_id": None if result.tx_id is None else hex_bytes(result.tx_id),
        "accepted": result.accepted,
        "code": int(result.code),
        "reason": result.code.name,
        "message": result.message,
    }


async def tx_submit(call: CallContext, params: dict[str, Any]) -> Any:
    (result,) = await _submit(call, [params["raw"]])
    view = submit_view(result)
    if not result.accepted:
        detail = f": {result.message}" if result.message else ""
        raise TxRejected(f"Transaction rejected: {result.code.name}{detail}", data=view)
    return view


async def tx_submit_batch(call: CallContext, params: dict[str, Any]) -> Any:
    return [submit_view(result) for result in await _submit(call, params["raws"])]


async def tx_status(call: CallContext, params: dict[str, Any]) -> Any:
    status = call.node.tx_status(params["tx_id"])
    return {
        "tx_id": hex_bytes(status.tx_id),
        "state": status.state,
        "height": status.height,
        "code": status.code,
        "code_name": None if status.code is None else result_code_name(status.code),
    }


# ---- rpc. and admin_ -------------------------------------------------------------------------


async def rpc_discover(call: CallContext, params: dict[str, Any]) -> Any:
    return openrpc.document(call.server.registry)


async def rpc_authenticate(call: CallContext, params: dict[str, Any]) -> Any:
    connection = call.connection
    if not call.server.admin_enabled:
        raise Unauthorized("Unauthorized: admin methods are disabled on this node")
    if not call.server.token_valid(params["token"]):
        connection.authentication_failures += 1
        call.server.log.warning("rpc authentication failed", request_id=connection.request_id,
                                failures=connection.authentication_failures)
        raise Unauthorized("Unauthorized: wrong token")
    connection.authenticated = True
    return {"authenticated": True}


async def admin_peers(call: CallContext, params: dict[str, Any]) -> Any:
    return [to_json_value(peer) for peer in call.node.peers()]


async def admin_set_log_level(call: CallContext, params: dict[str, Any]) -> Any:
    level = params["level"]
    previous = set_level(level)
    call.server.log.warning("log level changed", level=level, previous=previous,
                            request_id=call.connection.request_id)
    return {"level": level, "previous": previous}


async def admin_rpc_statistics(call: CallContext, params: dict[str, Any]) -> Any:
    statistics = to_json_value(call.server.statistics)
    statistics["methods"] = len(call.server.registry)
    statistics["limits"] = to_json_value(call.limits)
    session = call.connection.session
    if isinstance(session, WebSocketSession):
        statistics["this_connection_subscriptions"] = session.views()
    return statistics


async def admin_snapshot_begin(call: CallContext, params: dict[str, Any]) -> Any:
    try:
        opened = await call.node.snapshot_begin()
    except SnapshotUnavailableError as error:
        raise NotReady(f"Not ready: {error}") from None
    call.server.log.info("snapshot session opened", session=opened.session_id,
                         height=opened.height, request_id=call.connection.request_id)
    return {
        "session": opened.session_id,
        "chain_id": opened.chain_id,
        "genesis_hash": hex_bytes(opened.genesis_hash),
        "state_layout": opened.state_layout,
        "height": opened.height,
        "block_hash": hex_bytes(opened.block_hash),
        "applied_index": opened.applied_index,
        "state_root": hex_bytes(opened.state_root),
        "head_block": hex_bytes(opened.head_block),
    }


async def admin_snapshot_chunk(call: CallContext, params: dict[str, Any]) -> Any:
    try:
        chunk = await call.node.snapshot_chunk(params["session"], params["sequence"])
    except SnapshotSessionNotFoundError as error:
        raise NotFound(f"Not found: {error}") from None
    return {"sequence": chunk.sequence, "done": chunk.done, "chunk": hex_bytes(chunk.data)}


async def admin_snapshot_end(call: CallContext, params: dict[str, Any]) -> Any:
    try:
        call.node.snapshot_end(params["session"])
    except SnapshotSessionNotFoundError as error:
        raise NotFound(f"Not found: {error}") from None
    return True


# ---- the registry ----------------------------------------------------------------------------


def _node_methods() -> list[MethodSpec]:
    return [
        MethodSpec(
            "node_status", "Role, term, leader, head, indexes, mempool and peers of this node.",
            node_status, ResultSpec("status", "NodeStatus: bytes as 0x-hex", OBJECT),
        ),
        MethodSpec(
            "node_health", "Liveness details and readiness.",
            node_health,
            ResultSpec("health", "{live, ready, details}", OBJECT),
        ),
        MethodSpec(
            "node_peers", "Known peers: id, validator, connected.",
            node_peers, ResultSpec("peers", "one object per peer", ARRAY_OF_OBJECTS),
        ),
    ]


def _chain_methods(limits_tx_filter_ids_max: int) -> list[MethodSpec]:
    tx_ids = ArrayOf(HASH, length_max=limits_tx_filter_ids_max)
    return [
        MethodSpec(
            "chain_head", "Height and hash of the last applied block.",
            chain_head, ResultSpec("head", "{height, hash}", OBJECT),
        ),
        MethodSpec(
            "chain_getBlock", "A block by height or by hash.",
            chain_get_block,
            ResultSpec("block", "{hash, height, header, signature, tx_ids[, txs]}", OBJECT),
            params=(
                ParamSpec("height", NonNegativeInt(), "block height", required=False),
                ParamSpec("hash", HASH, "block hash", required=False),
                ParamSpec("full", Boolean(), "include every tx, raw and decoded",
                          required=False, default=False),
            ),
            errors=(NotFound, Pruned),
            exactly_one_of=("height", "hash"),
        ),
        MethodSpec(
            "chain_getTx", "A committed tx: raw and decoded, its result, its block and a "
            "Merkle proof {index, size, siblings} against the header's tx_root.",
            chain_get_tx,
            ResultSpec("tx", "{tx_id, raw, tx, height, position, code, code_name, "
                       "block_hash, tx_root, proof}", OBJECT),
            params=(ParamSpec("tx_id", HASH, "SHA-256 of the raw tx"),),
            errors=(NotFound, Pruned),
        ),
        MethodSpec(
            "chain_getCertificate", "The quorum certificate of a block: the signatures of "
            "a majority of the validator set its header names (validators_hash, with the "
            "set's keys), and the block that carries it (in_block; null for the head's, "
            "this node's collection of votes so far).",
            chain_get_certificate,
            ResultSpec("certificate", "{height, block_hash, signatures: [{validator, "
                       "signature}], validators_hash, validators, in_block}", OBJECT),
            params=(ParamSpec("height", NonNegativeInt(), "an applied height"),),
            errors=(NotFound, Pruned),
        ),
        MethodSpec(
            "chain_getHandovers", "Every block up to to_height whose header hands over to "
            "another validator set (next_validators_hash), with its certificate and the "
            "new set's keys, in height order: what `medledger verify` follows from the "
            "genesis set.",
            chain_get_handovers,
            ResultSpec("handovers", "[{height, hash, header_raw, certificate_raw, "
                       "validators_hash, validators}]", {"type": "array"}),
            params=(ParamSpec("to_height", NonNegativeInt(), "the highest block to look at"),),
            errors=(Pruned,),
        ),
        MethodSpec(
            "chain_getTrailProof", "A patient's whole access trail (every key grant, "
            "break-glass and access log entry) as of the state the newest certified block "
            "commits to, as a proof document `medledger verify` checks offline: the "
            "certified header, the validator-set handovers, the trail head's proof in the "
            "header's trails root, and the entries.",
            chain_get_trail_proof,
            ResultSpec("proof", "a medledger-proof/1 trail document", OBJECT),
            params=(ParamSpec("patient", PATIENT_ID, "the patient's party id"),),
            errors=(NotFound, Pruned),
        ),
        MethodSpec(
            "chain_getRoots", "The results root and state root of an applied height, as "
            "this node's state holds them (a later header commits to them).",
            chain_get_roots,
            ResultSpec("roots", "{height, results_root, state_root}", OBJECT),
            params=(ParamSpec("height", NonNegativeInt(), "an applied height"),),
            errors=(NotFound,),
        ),
        MethodSpec(
            "chain_subscribe", "Subscribe to newBlocks or txResults; notifications are "
            "chain_subscription messages on this connection.",
            chain_subscribe,
            ResultSpec("subscription", "the subscription id", {"type": "string"}),
            params=(
                ParamSpec("topic", Choice(TOPICS), "newBlocks or txResults"),
                ParamSpec("full", Boolean(), "newBlocks: include every tx (default false)",
                          required=False),
                ParamSpec("tx_ids", tx_ids, "txResults: only these txs (each delivered "
                          "once, then dropped from the filter)", required=False),
                ParamSpec("batch", Boolean(), "txResults: each notification is a list of "
                          "the results that arrived together (default false)", required=False),
            ),
            errors=(TooManySubscriptions,),
            websocket_only=True,
        ),
        MethodSpec(
            "chain_unsubscribe", "End a subscription of this connection.",
            chain_unsubscribe, ResultSpec("unsubscribed", "true", {"type": "boolean"}),
            params=(ParamSpec("subscription", SUBSCRIPTION_ID, "subscription id"),),
            errors=(NotFound,),
            websocket_only=True,
        ),
        MethodSpec(
            "chain_addTxFilter", "Watch more tx ids on a filtered txResults subscription.",
            chain_add_tx_filter,
            ResultSpec("filter", "{outstanding}: tx ids still watched", OBJECT),
            params=(
                ParamSpec("subscription", SUBSCRIPTION_ID, "a filtered txResults subscription"),
                ParamSpec("tx_ids", tx_ids, "tx ids to add"),
            ),
            errors=(NotFound,),
            websocket_only=True,
        ),
    ]


def _tx_methods(submit_batch_txs_max: int) -> list[MethodSpec]:
    submit_result = "{tx_id, accepted, code, reason, message}"
    return [
        MethodSpec(
            "tx_submit", "Submit one signed tx (stateless check, then the mempool).",
            tx_submit, ResultSpec("submitted", submit_result, OBJECT),
            params=(ParamSpec("raw", RAW_TX, "the signed tx, canonical encoding"),),
            errors=(TxRejected, Timeout),
            description="A refused tx is error -32000 whose data is the same object, "
            "with the ResultCode name as reason.",
        ),
        MethodSpec(
            "tx_submitBatch", "Submit signed txs; one result per tx, in order.",
            tx_submit_batch,
            ResultSpec("submitted", f"[{submit_result}]", ARRAY_OF_OBJECTS),
            params=(
                ParamSpec("raws", ArrayOf(RAW_TX, length_max=submit_batch_txs_max, length_min=1),
                          "signed txs"),
            ),
            errors=(Timeout,),
        ),
        MethodSpec(
            "tx_status", "pending (in the mempool), committed (with height and code) or unknown.",
            tx_status,
            ResultSpec("status", "{tx_id, state, height, code, code_name}", OBJECT),
            params=(ParamSpec("tx_id", HASH, "SHA-256 of the raw tx"),),
        ),
    ]


def _rpc_and_admin_methods() -> list[MethodSpec]:
    return [
        MethodSpec(
            "rpc.discover", "This API as an OpenRPC 1.2 document.",
            rpc_discover, ResultSpec("openrpc", "OpenRPC document", OBJECT),
        ),
        MethodSpec(
            "rpc.authenticate", "Present the admin token on this WebSocket connection.",
            rpc_authenticate, ResultSpec("authenticated", "{authenticated: true}", OBJECT),
            params=(ParamSpec("token", Text(length_max=TOKEN_LENGTH_MAX, length_min=1),
                              "the admin bearer token"),),
            errors=(Unauthorized,),
            websocket_only=True,
            description="After too many wrong tokens the connection is closed (1008).",
        ),
        MethodSpec(
            "admin_peers", "Peers with addresses and raft stream state.",
            admin_peers, ResultSpec("peers", "PeerInfo objects", ARRAY_OF_OBJECTS),
            errors=(Unauthorized,), admin=True,
        ),
        MethodSpec(
            "admin_setLogLevel", "Change the node's log level now (until it restarts); "
            "GET /logspec reads it.",
            admin_set_log_level, ResultSpec("level", "{level, previous}", OBJECT),
            params=(ParamSpec("level", Choice(tuple(LEVELS)), "debug, info, warning or error"),),
            errors=(Unauthorized,), admin=True,
        ),
        MethodSpec(
            "admin_rpcStatistics", "The RPC server's counters, limits and this connection's "
            "subscriptions.",
            admin_rpc_statistics, ResultSpec("statistics", "counters and limits", OBJECT),
            errors=(Unauthorized,), admin=True,
        ),
        *_snapshot_methods(),
    ]


SNAPSHOT_SESSION = Text(length_max=2 + 2 * SESSION_ID_BYTES, length_min=1,
                        pattern="0x[0-9a-f]+")


def _snapshot_methods() -> list[MethodSpec]:
    """A consistent copy of the state for `medledger snapshot save --rpc`
    (node.snapshot_sessions)."""
    session = ParamSpec("session", SNAPSHOT_SESSION, "the id admin_snapshotBegin returned")
    return [
        MethodSpec(
            "admin_snapshotBegin", "Open a snapshot session: one consistent view of the "
            "state at the head, read in chunks while the node keeps applying blocks.",
            admin_snapshot_begin,
            ResultSpec("snapshot", "{session, chain_id, genesis_hash, state_layout, height, "
                       "block_hash, applied_index, state_root, head_block}", OBJECT),
            errors=(Unauthorized, NotReady), admin=True,
            description="At most 2 sessions at once (else -32010 not_ready); a session "
            "idle for 60 s is closed. Chunk 0 is read at once.",
        ),
        MethodSpec(
            "admin_snapshotChunk", "Chunk `sequence` of a snapshot session: the next one, "
            "or the last one again (a retry).",
            admin_snapshot_chunk,
            ResultSpec("chunk", "{sequence, done, chunk}: chunk is a StateChunk's canonical "
                       "encoding, at most 1 MiB of keys and values", OBJECT),
            params=(session, ParamSpec("sequence", NonNegativeInt(), "0, 1, ... in order")),
            errors=(Unauthorized, NotFound), admin=True,
        ),
        MethodSpec(
            "admin_snapshotEnd", "Close a snapshot session (its LevelDB snapshot).",
            admin_snapshot_end, ResultSpec("ended", "true", {"type": "boolean"}),
            params=(session,),
            errors=(Unauthorized, NotFound), admin=True,
        ),
    ]


def default_registry(
    *,
    submit_batch_txs_max: int = SUBMIT_BATCH_TXS_MAX,
    tx_filter_ids_max: int = TX_FILTER_IDS_MAX,
) -> Registry:
    registry = Registry()
    for spec in (
        _node_methods()
        + _chain_methods(tx_filter_ids_max)
        + _tx_methods(submit_batch_txs_max)
        + _rpc_and_admin_methods()
    ):
        registry.add(spec)
    return registry

