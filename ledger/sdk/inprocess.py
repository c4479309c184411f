"""A LedgerClient over the pure application, in one process: no node, no network.

Every accepted tx is committed at once as a block of its own (or several as one block with
:meth:`InProcessLedger.commit_block`), with a logical clock that advances by
``block_interval_ms`` per block (and by :meth:`advance_time`). The stateless check is the
node's (:func:`ledger.validation.check_transaction`) and a tx id already committed is
refused as DUPLICATE, as the node does. Every block is kept (:attr:`blocks`), so a test can
replay them on a fresh state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.app import (
    BlockContext,
    BlockOutcome,
    Genesis,
    MemoryState,
    apply_block,
    genesis_writes,
)
from ledger.app.events import Event
from ledger.app.queries import run_query
from ledger.results import ResultCode
from ledger.sdk.client import Submission
from ledger.tx import Transaction
from ledger.validation import check_transaction

BLOCK_INTERVAL_MS_DEFAULT = 1000
PROPOSER = bytes(32)  # the in-process chain has no real proposer key


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    context: BlockContext
    raws: tuple[bytes, ...]
    codes: tuple[int, ...]


class InProcessLedger:
    def __init__(
        self, genesis: Genesis, *, block_interval_ms: int = BLOCK_INTERVAL_MS_DEFAULT
    ) -> None:
        assert block_interval_ms > 0
        self.genesis = genesis
        self.state = MemoryState(genesis_writes(genesis))
        self.height = 0
        self.time_ms = genesis.genesis_time_ms
        self.block_interval_ms = block_interval_ms
        self.blocks: list[CommittedBlock] = []
        self.events: list[Event] = []
        self.results: dict[bytes, int] = {}
        self.messages: dict[bytes, str] = {}

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    # ---- LedgerClient ----

    def submit(self, raw: bytes) -> Submission:
        check = check_transaction(raw, self.chain_id)
        if not check.ok:
            return Submission(False, int(check.code), check.message)
        assert check.tx is not None
        if check.tx.tx_id in self.results:
            return Submission(False, int(ResultCode.DUPLICATE), "already committed")
        self.commit_block([check.tx])
        return Submission(True, int(ResultCode.OK), "")

    def wait_committed(self, tx_id: bytes, timeout_s: float) -> int:
        code = self.results.get(tx_id)
        if code is None:
            raise TimeoutError(f"tx {tx_id.hex()} was never submitted here")
        return code

    def query(self, method: str, params: dict[str, Any]) -> Any:
        return run_query(self.state, method, params, now_ms=self.time_ms)

    # ---- for tests ----

    def advance_time(self, milliseconds: int) -> None:
        """Let time pass before the next block (blocks are stamped on commit)."""
        assert milliseconds >= 0
        self.time_ms += milliseconds

    def commit_block(
        self, txs: Sequence[Transaction | None], codes: Sequence[int] | None = None
    ) -> BlockOutcome:
        """Apply ``txs`` as the next block (None with a stateless code, as the node does)."""
        self.height += 1
        self.time_ms += self.block_interval_ms
        context = BlockContext(height=self.height, timestamp_ms=self.time_ms, proposer=PROPOSER)
        outcome = apply_block(self.state, context, txs, codes)
        self.state.apply(outcome.writes)
        raws = tuple(b"" if tx is None else tx.raw for tx in txs)
        self.blocks.append(CommittedBlock(context, raws, outcome.codes))
        self.events.extend(outcome.events)
        for tx, code, message in zip(txs, outcome.codes, outcome.messages, strict=True):
            if tx is not None and tx.tx_id not in self.results:  # a replay keeps the first
                self.results[tx.tx_id] = code
                self.messages[tx.tx_id] = message
        return outcome

    def submit_transaction(self, tx: Transaction) -> int:
        """Submit and return the final code (stateless refusal or committed result)."""
        submission = self.submit(tx.raw)
        if not submission.accepted:
            return submission.code
        return self.results[tx.tx_id]
