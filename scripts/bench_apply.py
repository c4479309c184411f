"""bench-apply: does applying a tx get slower as the chain ages?

Prints ONE JSON line. Run through ``scripts/bench-apply`` (repo venv).

The load tester's healthcare mix (its preparation, then its lanes' txs, signed before
anything is timed) is applied in process through ``node.chain.Chain`` into a fresh
LevelDB store in a temp directory, in blocks of BLOCK_TXS txs interleaved across lanes as
the leader would cut them. Signatures are checked before timing and handed to the chain
as a validator's mempool does, so the figure is apply alone: decode, the rules, the roots
and the LevelDB batch. Measured windows of WINDOW_TXS txs are timed after 0, 50,000 and
200,000 txs of history (the mix's txs, applied untimed between windows):

* ``apply_us_per_tx``: wall time of ``Chain.apply_entry`` per tx in each window;
* ``apply_cpu_us_per_tx``: process CPU (all threads: LevelDB's compaction thread too);
* ``growth_ratio``: the 200,000 figure over the 0 figure (target <= 1.25: work per tx
  must not grow with history);
* ``invalid``: txs the rules refused (must be 0: the mix is valid in order).

Environment: BENCH_APPLY_HISTORY (comma-separated, default "0,50000,200000"),
BENCH_APPLY_WINDOW (default 5000), BENCH_APPLY_LANES (default 3).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consensus.types import Entry, EntryType
from ledger.app.queries import run_query
from ledger.crypto import SigningKey
from ledger.results import ResultCode
from ledger.sdk.devnet import devnet_genesis
from ledger.tx import Transaction
from ledger.validation import check_batch
from node.bootstrap import write_genesis_record
from node.chain import Chain
from node.jsonview import to_json_value
from node.loadtest.config import DEFAULT_WEIGHTS
from node.loadtest.prepare import prepare
from node.loadtest.workload import generate_pool
from storage.store import Store

CHAIN_ID = "medledger-bench-apply"
HISTORY = [int(part) for part in os.environ.get("BENCH_APPLY_HISTORY", "0,50000,200000")
           .split(",")]
WINDOW_TXS = int(os.environ.get("BENCH_APPLY_WINDOW", "5000"))
LANES = int(os.environ.get("BENCH_APPLY_LANES", "3"))
BLOCK_TXS = 500
BLOCK_INTERVAL_MS = 100
TARGET_GROWTH_RATIO = 1.25
KEYS = [SigningKey(bytes([index + 1]) * 32) for index in range(3)]


class Bench:
    def __init__(self, directory: Path) -> None:
        genesis = devnet_genesis(CHAIN_ID, [key.public_key for key in KEYS],
                                 genesis_time_ms=int(time.time() * 1000))
        store = Store.open(directory / "data", chain_id=CHAIN_ID)
        write_genesis_record(store, genesis)
        self.checked: dict[bytes, Transaction] = {}
        self.chain = Chain(chain_id=CHAIN_ID, store=store, genesis_time_ms=genesis.genesis_time_ms,
                           sync_applies=False, checked_lookup=self.checked.get)
        self.store = store
        self.index = 0
        self.codes: Counter[int] = Counter()

    # the PreparationPort of the load tester
    async def query(self, method: str, params: dict[str, Any]) -> Any:
        converted = {key: bytes.fromhex(value[2:])
                     if isinstance(value, str) and value.startswith("0x") else value
                     for key, value in params.items()}
        # As the JSON-RPC edge answers it (the load tester reads those answers).
        return to_json_value(run_query(self.chain.state, method, converted,
                                       now_ms=self.chain.head_timestamp_ms))

    async def commit(self, raws: Sequence[bytes], stage: str) -> list[int]:
        return self.apply(self.check(raws))[1]

    def check(self, raws: Sequence[bytes]) -> list[Transaction]:
        results = check_batch(list(raws), CHAIN_ID)
        txs = []
        for result in results:
            assert result.tx is not None, f"the mix made an invalid tx: {result.message}"
            txs.append(result.tx)
        return txs

    def apply(self, txs: Sequence[Transaction]) -> tuple[float, list[int]]:
        """Build the next block of ``txs`` (untimed) and apply it; the seconds applying."""
        for tx in txs:
            self.checked[tx.tx_id] = tx
        height, head_hash, timestamp_ms = self.chain.head()
        self.index += 1
        block = self.chain.build_block(
            KEYS[0], list(txs), height=height + 1, previous_hash=head_hash,
            previous_timestamp_ms=timestamp_ms, now_ms=timestamp_ms + BLOCK_INTERVAL_MS,
            raft_term=1, raft_index=self.index,
        previous_state_height=self.chain.named_state_height(),
            validators_hash=self.chain.head_validator_sets()[1],
            certificate=self.chain.certify_head(KEYS))
        entry = Entry(1, self.index, EntryType.NORMAL, block.encode())
        started = time.perf_counter()
        result = self.chain.apply_entry(entry)
        elapsed = time.perf_counter() - started
        assert result.applied is not None, result.skipped_reason
        for tx in txs:
            del self.checked[tx.tx_id]
        codes = list(result.applied.codes)
        self.codes.update(codes)
        return elapsed, codes


def interleave(lanes: Sequence[Sequence[bytes]], start: int, stop: int) -> list[bytes]:
    """Txs ``start`` to ``stop`` of the lanes in turn (each lane's nonces stay in order)."""
    per_lane = [lane[start // len(lanes): stop // len(lanes)] for lane in lanes]
    return [raw for group in itertools.zip_longest(*per_lane) for raw in group if raw]


def main() -> int:
    directory = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    try:
        bench = Bench(directory)
        total = max(HISTORY) + WINDOW_TXS
        lane_txs = -(-total // LANES)
        prepared = asyncio.run(prepare(
            bench, chain_id=CHAIN_ID, run_tag="bench", workers=LANES, healthcare=True,
            weights=DEFAULT_WEIGHTS, lane_txs=lambda lanes: lane_txs, key_files={}))
        started = time.monotonic()
        lanes = generate_pool(prepared.specs, [lane_txs] * LANES, processes=os.cpu_count() or 1)
        print(f"signed {lane_txs * LANES} txs in {time.monotonic() - started:.0f} s",
              file=sys.stderr)
        bench.codes.clear()  # the preparation's; from here the mix's
        figures: dict[str, float] = {}
        cpu_figures: dict[str, float] = {}
        applied = 0  # txs of the mix applied so far (history and earlier windows)
        for history in sorted(HISTORY):
            goal = max(history, applied)  # earlier windows count as history
            for start in range(applied, goal, BLOCK_TXS * 10):
                raws = interleave(lanes, start, min(goal, start + BLOCK_TXS * 10))
                txs = bench.check(raws)
                for first in range(0, len(txs), BLOCK_TXS):
                    bench.apply(txs[first:first + BLOCK_TXS])
            applied = goal
            window = bench.check(interleave(lanes, applied, applied + WINDOW_TXS))
            wall = 0.0
            cpu_started = time.process_time()
            for first in range(0, len(window), BLOCK_TXS):
                wall += bench.apply(window[first:first + BLOCK_TXS])[0]
            cpu = time.process_time() - cpu_started
            applied += WINDOW_TXS
            figures[str(history)] = round(wall / len(window) * 1e6, 1)
            cpu_figures[str(history)] = round(cpu / len(window) * 1e6, 1)
            print(f"after {history} txs of history: {figures[str(history)]} us/tx",
                  file=sys.stderr)
        low, high = str(min(HISTORY)), str(max(HISTORY))
        growth = figures[high] / figures[low]
        invalid = sum(count for code, count in bench.codes.items() if code != ResultCode.OK)
        print(json.dumps({
            "apply_us_per_tx": figures,
            "apply_cpu_us_per_tx": cpu_figures,
            "growth_ratio": round(growth, 3),
            "target_growth_ratio": TARGET_GROWTH_RATIO,
            "window_txs": WINDOW_TXS,
            "block_txs": BLOCK_TXS,
            "lanes": LANES,
            "txs_applied": applied,
            "invalid": invalid,
        }))
        bench.store.close()
        return 0 if growth <= TARGET_GROWTH_RATIO and invalid == 0 else 1
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
