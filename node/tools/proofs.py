"""``medledger proof tx`` (write a tx's proof from a node) and ``medledger verify`` (check
a proof file against the genesis file alone, no node): ledger/sdk/proofs.py.

The node that answers is not trusted: the proof carries the certified headers a
verifier needs, and verifying it reads nothing but the file and the genesis file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.errors import ConfigError
from ledger.sdk.proofs import (
    PROOF_FORMAT,
    ProofError,
    ProvenTrail,
    ProvenTx,
    verify_trail_proof,
    verify_tx_proof,
)
from node.client import RpcClient, RpcError, RpcUnreachableError
from node.genesis import load_genesis

RPC_NOT_FOUND = -32001
# How long to wait for the head block's certificate (its validators' votes).
CERTIFICATE_WAIT_S = 10.0


def _tx_id(text: str) -> str:
    body = text.removeprefix("0x")
    if len(body) != 64 or any(char not in "0123456789abcdefABCDEF" for char in body):
        raise ConfigError(f"TX_ID {text!r} is not a 32-byte hex tx id")
    return "0x" + body.lower()


def _certificate(client: RpcClient, height: int) -> dict[str, Any]:
    deadline = time.monotonic() + CERTIFICATE_WAIT_S
    while True:
        try:
            found: dict[str, Any] = client.call("chain_getCertificate", {"height": height})
            return found
        except RpcError as error:
            if error.code != RPC_NOT_FOUND or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def tx_proof_document(rpc_url: str, tx_id: str) -> dict[str, Any]:
    """The proof of a committed tx, from the node at ``rpc_url`` (RpcError /
    RpcUnreachableError as the client raises them)."""
    with RpcClient(rpc_url, timeout_s=30.0) as client:
        found = client.call("chain_getTx", {"tx_id": _tx_id(tx_id)})
        height = int(found["height"])
        block = client.call("chain_getBlock", {"height": height})
        certificate = _certificate(client, height)
        handovers = client.call("chain_getHandovers", {"to_height": height})
    return {
        "format": PROOF_FORMAT,
        "kind": "tx",
        "chain_id": block["header"]["chain_id"],
        "handovers": [{"header": handover["header_raw"],
                       "certificate": handover["certificate_raw"]}
                      for handover in handovers],
        "validator_sets": {handover["validators_hash"]: handover["validators"]
                           for handover in handovers},
        "block": {"header": block["header_raw"], "certificate": certificate["raw"]},
        "tx": {"raw": found["raw"], "position": found["position"], "proof": found["proof"]},
    }


def trail_proof_document(rpc_url: str, patient: str) -> dict[str, Any]:
    """The proof of ``patient``'s whole access trail, from the node at ``rpc_url``;
    retried for a moment while the newest block's votes arrive."""
    deadline = time.monotonic() + CERTIFICATE_WAIT_S
    with RpcClient(rpc_url, timeout_s=60.0) as client:
        while True:
            try:
                document: dict[str, Any] = client.call("chain_getTrailProof",
                                                       {"patient": patient})
                return document
            except RpcError as error:
                if error.code != RPC_NOT_FOUND or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)


def _write(output: Path, force: bool, rpc_url: str, what: str,
           make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if output.exists() and not force:
        raise ConfigError(f"{output} exists; give --force to overwrite it")
    try:
        document = make()
    except RpcUnreachableError as error:
        raise ConfigError(f"no node answers at {rpc_url}: {error}") from None
    except RpcError as error:
        raise ConfigError(f"the node at {rpc_url} could not prove {what}: {error}") from None
    output.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return document


def write_trail_proof(rpc_url: str, patient: str, output: Path, *,
                      force: bool) -> dict[str, Any]:
    document = _write(output, force, rpc_url, f"{patient}'s trail",
                      lambda: trail_proof_document(rpc_url, patient))
    return {"proof": str(output), "patient": patient,
            "entries": len(document["trail"]["entries"]),
            "validator_set_changes": len(document["handovers"])}


def write_tx_proof(rpc_url: str, tx_id: str, output: Path, *, force: bool) -> dict[str, Any]:
    document = _write(output, force, rpc_url, tx_id,
                      lambda: tx_proof_document(rpc_url, tx_id))
    return {"proof": str(output), "tx_id": _tx_id(tx_id),
            "validator_set_changes": len(document["handovers"])}


def verify_file(path: Path, genesis_file: Path) -> ProvenTx | ProvenTrail:
    """Check the proof in ``path`` against ``genesis_file``: ProofError naming the check
    that failed; ConfigError for a file that cannot be read."""
    genesis = load_genesis(genesis_file)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"proof file {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"proof file {path} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"proof file {path} is not a medledger proof")
    validators = [member.node_key for member in genesis.members
                  if member.validator and member.node_key is not None]
    verify = verify_trail_proof if document.get("kind") == "trail" else verify_tx_proof
    return verify(document, chain_id=genesis.chain_id, genesis_validators=validators)


__all__ = [
    "ProofError",
    "trail_proof_document",
    "tx_proof_document",
    "verify_file",
    "write_trail_proof",
    "write_tx_proof",
]
