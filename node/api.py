"""What the JSON-RPC layer may ask of a running node: one Protocol, so the RPC server is
written and tested against a fake, and the node implements it for real.

All byte values are ``bytes`` here; the RPC layer turns them into 0x-hex at its edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ledger.block import Block
from ledger.certificate import Certificate
from ledger.merkle import MerkleProof
from ledger.results import ResultCode

if TYPE_CHECKING:
    from node.snapshot_sessions import SnapshotChunkData, SnapshotOpened
    from node.trailproofs import TrailProof


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The answer to one submitted tx: accepted into the mempool, or refused (and why)."""

    tx_id: bytes | None  # None when the bytes did not even decode
    code: ResultCode
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.code is ResultCode.OK


@dataclass(frozen=True, slots=True)
class CertifiedBlock:
    """A block's quorum certificate, the validator set it is checked against and where
    the chain carries it (``in_block``: the next block's height; None for the head's,
    still only this node's collection of votes)."""

    certificate: Certificate
    validators_hash: bytes
    validators: tuple[bytes, ...]
    in_block: int | None


@dataclass(frozen=True, slots=True)
class Handover:
    """A block whose header names another set for its successor than its own."""

    block: Block
    certificate: Certificate
    validators: tuple[bytes, ...]  # the keys of the set it hands over to


@dataclass(frozen=True, slots=True)
class TxLocation:
    """A committed tx: its block, position, result, and a proof against the header."""

    tx_id: bytes
    raw: bytes
    height: int
    position: int
    code: int  # ResultCode value (stateless or application code)
    block: Block
    proof: MerkleProof


@dataclass(frozen=True, slots=True)
class TxStatus:
    tx_id: bytes
    state: str  # "pending" (in the mempool), "committed", or "unknown"
    height: int | None = None
    code: int | None = None


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: str  # libp2p peer id
    chain_id: str
    role: str  # "leader", "follower", "candidate", "pre-candidate", "learner", "observer"
    term: int
    leader_id: str | None
    height: int
    head_hash: bytes
    applied_index: int
    commit_index: int
    mempool_txs: int
    mempool_bytes: int
    peers: int
    validators: Sequence[str]
    version: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PeerInfo:
    peer_id: str
    addresses: Sequence[str]
    validator: bool
    connected: bool
    raft_stream: bool


@dataclass(frozen=True, slots=True)
class TxResultEvent:
    """Emitted once per committed tx, in commit order."""

    tx_id: bytes
    height: int
    position: int
    code: int


class NodeAPI(Protocol):
    def status(self) -> NodeStatus: ...

    def health(self) -> dict[str, Any]:
        """Liveness details: services running, last commit age, raft role."""
        ...

    def ready(self) -> bool:
        """True when the node has a leader and is caught up enough to serve."""
        ...

    def peers(self) -> Sequence[PeerInfo]: ...

    def head(self) -> tuple[int, bytes]:
        """(height, block hash) of the last applied block; (0, zero hash) before any."""
        ...

    # The three reads below raise storage.errors.BlockPrunedError (naming the oldest block
    # held) for a block, or a tx in a block, that this node pruned ([storage] retain_blocks).

    def block_by_height(self, height: int) -> Block | None: ...

    def block_by_hash(self, block_hash: bytes) -> Block | None: ...

    def tx(self, tx_id: bytes) -> TxLocation | None: ...

    def tx_status(self, tx_id: bytes) -> TxStatus: ...

    def roots(self, height: int) -> tuple[bytes, bytes] | None:
        """(results root, state root) of an applied height (the state holds them for every
        height, also below a restored snapshot's), or None above the head."""
        ...

    def validator_handovers(self, up_to_height: int) -> list[Handover]:
        """Every block up to ``up_to_height`` that hands over to another validator set,
        with its certificate and the new set's keys, in height order (what a verifier
        follows from genesis). BlockPrunedError as for blocks."""
        ...

    async def trail_proof(self, patient: str) -> TrailProof:
        """The patient's whole access trail as of the state the newest certified block
        commits to, with the tree proof of its head (node/trailproofs.py);
        TrailProofUnavailable when none can be made now."""
        ...

    def certificate(self, height: int) -> CertifiedBlock | None:
        """The quorum certificate of block ``height`` (ledger/certificate.py): the one the
        next block carries, or, for the head, the one this node holds from the votes so
        far; None when there is none (yet). BlockPrunedError as for blocks."""
        ...

    # A consistent copy of the state for `medledger snapshot save` (node.snapshot_sessions):
    # SnapshotSessionNotFoundError for an unknown, ended or expired session or a chunk out
    # of order, SnapshotUnavailableError when every session is in use.

    async def snapshot_begin(self) -> SnapshotOpened: ...

    async def snapshot_chunk(self, session_id: str, sequence: int) -> SnapshotChunkData: ...

    def snapshot_end(self, session_id: str) -> None: ...

    async def submit(self, raws: Sequence[bytes]) -> list[SubmitResult]:
        """Stateless check and mempool admission (forwarded to the leader as needed)."""
        ...

    def subscribe_blocks(self) -> AsyncIterator[Block]:
        """New applied blocks, in order. The iterator ends if the subscriber falls too far
        behind (bounded buffer); the RPC layer then closes the subscription with an error."""
        ...

    def subscribe_tx_results(self) -> AsyncIterator[TxResultEvent]:
        """Results of committed txs, in order, with the same overflow rule."""
        ...

    def app_query(self, method: str, params: dict[str, Any]) -> Any:
        """Domain queries (records_, consent_, audit_, claims_, gov_ namespaces): the
        method name without namespace routing is resolved by the application layer."""
        ...
