"""``medledger member propose|vote|list``: the governance txs (PROPOSE_MEMBER, VOTE),
signed with a member's admin key and sent through a node's JSON-RPC port, and the
consortium as the node sees it (the ``gov_members`` and ``gov_proposals`` queries).

Proposals and votes are built by :class:`ledger.sdk.builders.TransactionBuilder`, as the
SDK's demo builds them, and submitted and waited for as ``medledger tx submit`` does.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import bodies
from ledger.errors import ConfigError, DecodeError
from ledger.results import ResultCode
from ledger.sdk.builders import TransactionBuilder
from ledger.tx import Transaction
from node.client import RpcClient, RpcError
from node.keys import hash_from_user, public_key_from_user, read_key_file
from node.p2p.identity import public_key_from_peer_id

DAY_MS = 86_400_000
# A proposal open longer than a year is a mistake (the ledger closes it at its deadline).
DEADLINE_DAYS_MAX = 365
# Evidence files are hashed, never sent: read in chunks of this size.
EVIDENCE_CHUNK_BYTES = 1_048_576
ACTIONS = {
    "add": bodies.ProposalAction.ADD_MEMBER,
    "remove": bodies.ProposalAction.REMOVE_MEMBER,
    "revoke-key": bodies.ProposalAction.REVOKE_KEY,
}
# JSON-RPC error code of an application query that found nothing.
RPC_NOT_FOUND = -32001
KINDS = {kind.name.lower(): kind for kind in bodies.MemberKind}


@dataclass(frozen=True, slots=True)
class Signer:
    """A member's admin key and the chain it signs for, with the next free nonce."""

    builder: TransactionBuilder
    rpc: str


def admin_signer(rpc: str, key_file: str) -> Signer:
    """The builder for ``key_file``'s key. Its first nonce is above both the ledger's last
    used nonce of the key and the wall clock in milliseconds (what ``tx submit`` uses),
    so a tx still waiting in a mempool is not reused."""
    key = read_key_file(Path(key_file), role="admin key file",
                        hint="make one with `medledger keygen -o FILE`")
    with RpcClient(rpc) as client:
        chain_id = str(client.call("node_status")["chain_id"])
        try:
            info = client.call("gov_key", {"public_key": "0x" + key.public_key.hex()})
        except RpcError as error:
            if error.code != RPC_NOT_FOUND:
                raise
            info = None  # the key never signed a tx here
    last_used = 0 if info is None else int(info["last_nonce"])
    last_nonce = max(last_used, int(time.time() * 1000))
    return Signer(TransactionBuilder(chain_id, key, last_nonce=last_nonce), rpc)


def propose(args: argparse.Namespace) -> dict[str, Any]:
    # The inputs first, so that a typo is reported before any key or node is used.
    action = ACTIONS[args.action]
    kind = KINDS[args.kind] if args.kind else None
    admin_key = None if args.admin_key is None else public_key_from_user(args.admin_key,
                                                                         "--admin-key")
    node_key = None if args.node_key is None else node_key_from_user(args.node_key)
    if args.validator and node_key is None:
        raise ConfigError("--validator needs --node-key (the node's public key or peer id)")
    if not 1 <= args.deadline_days <= DEADLINE_DAYS_MAX:
        raise ConfigError(f"--deadline-days must be in 1..{DEADLINE_DAYS_MAX}")
    evidence_hash = _evidence_hash(args)
    if action is bodies.ProposalAction.ADD_MEMBER and (admin_key is None or kind is None):
        raise ConfigError(f"--action add needs --admin-key (the public key `medledger "
                          f"keygen` printed) and --kind ({', '.join(KINDS)})")
    if action is bodies.ProposalAction.REVOKE_KEY and admin_key is None:
        raise ConfigError("--action revoke-key needs --admin-key (the key to revoke)")
    signer = admin_signer(args.rpc, args.key)
    if admin_key is None or kind is None:
        # Removing a member: it is named by its org id; the key and kind are its own.
        member = _member(args.rpc, args.org_id)
        if admin_key is None:
            admin_key = public_key_from_user(member["admin_key"], f"{args.org_id}'s admin key")
        if kind is None:
            kind = KINDS[str(member["kind"]).lower()]
    with RpcClient(args.rpc) as client:
        chain_now_ms = int(client.call("gov_chainTime", {})["now_ms"])
    # The ledger compares the deadline with the time of the block that includes the tx,
    # which the leader stamps from its clock. The chain's time is that of the last block
    # (the genesis time on a new chain, perhaps months ago), so a deadline counted from it
    # alone can be past on arrival; counted from the later of it and our clock, it is not.
    now_ms = max(chain_now_ms, int(time.time() * 1000))
    tx = _built(lambda: signer.builder.propose_member(
        proposal_id=args.proposal_id, org_id=args.org_id, kind=kind, admin_key=admin_key,
        node_key=node_key, validator=args.validator, evidence_hash=evidence_hash,
        deadline_ms=now_ms + args.deadline_days * DAY_MS, action=action,
    ))
    return {"proposal_id": args.proposal_id, **submit(signer, tx, wait_s=args.wait)}


def vote(args: argparse.Namespace) -> dict[str, Any]:
    signer = admin_signer(args.rpc, args.key)
    approve = not args.reject
    tx = _built(lambda: signer.builder.vote(args.proposal_id, approve=approve))
    return {"proposal_id": args.proposal_id, "approve": approve,
            **submit(signer, tx, wait_s=args.wait)}


def list_members(rpc: str) -> dict[str, Any]:
    with RpcClient(rpc) as client:
        return {"chain_id": client.call("node_status")["chain_id"],
                "members": client.call("gov_members", {}),
                "proposals": client.call("gov_proposals", {})}


def submit(signer: Signer, tx: Transaction, *, wait_s: float) -> dict[str, Any]:
    """Submit and wait for the commit exactly as ``medledger tx submit --raw`` does; the
    answer gains the result code's name."""
    from node.tools.txcli import submit_from_args

    answer = submit_from_args(argparse.Namespace(rpc=signer.rpc, raw="0x" + tx.raw.hex(),
                                                 wait=wait_s))
    code = answer.get("result")
    if isinstance(code, int):
        try:
            answer["result_name"] = ResultCode(code).name
        except ValueError:  # a code newer than this client
            answer["result_name"] = None
    return answer


def succeeded(answer: dict[str, Any]) -> bool:
    """Committed with result OK, or (not waiting) accepted by the node."""
    if "committed" in answer:
        return bool(answer["committed"]) and answer.get("result") == ResultCode.OK
    return bool(answer.get("accepted"))


def node_key_from_user(text: str) -> bytes:
    """A node's public key as hex (0x optional) or as its peer id (12D3KooW...)."""
    if text.startswith("12D3Koo"):
        try:
            return public_key_from_peer_id(text)
        except ValueError as error:
            raise ConfigError(f"--node-key: {error}") from None
    return public_key_from_user(text, "--node-key")


def _member(rpc: str, org_id: str) -> dict[str, Any]:
    with RpcClient(rpc) as client:
        members = client.call("gov_members", {})
    for member in members:
        if member["org_id"] == org_id:
            return dict(member)
    raise ConfigError(f"--org-id {org_id!r} is not a member (see `medledger member list`)")


def _evidence_hash(args: argparse.Namespace) -> bytes:
    if (args.evidence_hash is None) == (args.evidence_file is None):
        raise ConfigError("give one of --evidence-hash (SHA-256, hex) or --evidence-file "
                          "(a document the members agreed on; its SHA-256 is sent)")
    if args.evidence_hash is not None:
        return hash_from_user(args.evidence_hash, "--evidence-hash")
    digest = hashlib.sha256()
    try:
        with open(args.evidence_file, "rb") as handle:
            while chunk := handle.read(EVIDENCE_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as error:
        raise ConfigError(f"--evidence-file: {error}") from None
    return digest.digest()


def _built(build: Callable[[], Transaction]) -> Transaction:
    """A tx from the builder; a field the schema refuses (an id with a space, say) is the
    user's input, reported as such."""
    try:
        tx: Transaction = build()
    except DecodeError as error:
        raise ConfigError(f"not a valid governance tx: {error}") from None
    return tx
