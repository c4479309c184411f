"""The load tester's workload against the pure application (in process): every prepared
and measured tx is valid, in the order the workers submit it, for both mixes, and with
members added by governance when there are more workers than member keys."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from ledger.crypto import SigningKey
from ledger.results import ResultCode
from ledger.sdk.devnet import devnet_genesis
from ledger.sdk.inprocess import InProcessLedger
from ledger.tx import decode_transaction
from node.loadtest.config import DEFAULT_WEIGHTS
from node.loadtest.prepare import prepare
from node.loadtest.workload import generate_pool, weighted_cycle

CHAIN_ID = "medledger-loadtest-unit"
# The genesis time a devnet takes: now.
GENESIS_TIME_MS = int(time.time() * 1000)


def _json(value: Any) -> Any:
    """What the JSON-RPC edge does to query answers: bytes as 0x-hex."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    if hasattr(value, "name") and hasattr(value, "value"):
        return value.name.lower()
    return value


class InProcessPort:
    """PreparationPort over the in-process ledger: one block per stage."""

    def __init__(self, ledger: InProcessLedger) -> None:
        self.ledger = ledger
        self.stages: list[str] = []

    async def query(self, method: str, params: dict[str, Any]) -> Any:
        converted = {
            key: bytes.fromhex(value[2:]) if isinstance(value, str) and value.startswith("0x")
            else value
            for key, value in params.items()
        }
        return _json(self.ledger.query(method, converted))

    async def commit(self, raws: Sequence[bytes], stage: str) -> list[int]:
        self.stages.append(stage)
        return commit_block(self.ledger, raws)


def commit_block(ledger: InProcessLedger, raws: Sequence[bytes]) -> list[int]:
    txs = [decode_transaction(raw) for raw in raws]
    return list(ledger.commit_block(txs).codes)


def new_ledger() -> InProcessLedger:
    node_keys = [SigningKey(bytes([index + 1]) * 32).public_key for index in range(3)]
    return InProcessLedger(devnet_genesis(CHAIN_ID, node_keys, genesis_time_ms=GENESIS_TIME_MS))


def interleave(lanes: Sequence[Sequence[bytes]], batch: int) -> list[list[bytes]]:
    """Blocks as the node would cut them from workers submitting batches in turn."""
    batches = [
        [lane[start:start + batch] for start in range(0, len(lane), batch)] for lane in lanes
    ]
    blocks = []
    for round_batches in itertools.zip_longest(*batches, fillvalue=[]):
        blocks.append([raw for part in round_batches for raw in part])
    return [block for block in blocks if block]


async def _prepared(ledger: InProcessLedger, *, workers: int, healthcare: bool,
                    txs: int) -> Any:
    return await prepare(
        InProcessPort(ledger), chain_id=CHAIN_ID, run_tag="unit", workers=workers,
        healthcare=healthcare, weights=DEFAULT_WEIGHTS, lane_txs=lambda lanes: txs,
        key_files={},
    )


async def test_healthcare_mix_is_valid_in_submission_order() -> None:
    ledger = new_ledger()
    prepared = await _prepared(ledger, workers=3, healthcare=True, txs=400)
    assert prepared.members_added == ()
    lanes = generate_pool(prepared.specs, [400] * 3, processes=0)
    codes: Counter[int] = Counter()
    for block in interleave(lanes, batch=37):
        codes.update(commit_block(ledger, block))
    assert codes == Counter({ResultCode.OK: 1200}), codes
    kinds = Counter(decode_transaction(raw).type.name for raw in lanes[0])
    assert set(kinds) == set(DEFAULT_WEIGHTS), kinds
    assert kinds["ANCHOR_RECORD"] == 100  # 25 % of 400, exactly


async def test_more_workers_than_member_keys_adds_members_once() -> None:
    ledger = new_ledger()
    prepared = await _prepared(ledger, workers=6, healthcare=False, txs=50)
    assert prepared.members_added == ("loadtest-1", "loadtest-2")
    assert len({spec.member.org_id for spec in prepared.specs}) == 6
    lanes = generate_pool(prepared.specs, [50] * 6, processes=0)
    for block in interleave(lanes, batch=10):
        assert set(commit_block(ledger, block)) == {ResultCode.OK}
    again = await prepare(
        InProcessPort(ledger), chain_id=CHAIN_ID, run_tag="second", workers=6,
        healthcare=False, weights=DEFAULT_WEIGHTS, lane_txs=lambda lanes: 10, key_files={},
    )
    assert again.members_added == ()
    lanes = generate_pool(again.specs, [10] * 6, processes=0)
    for block in interleave(lanes, batch=10):
        assert set(commit_block(ledger, block)) == {ResultCode.OK}


async def test_pool_in_processes_equals_pool_in_process() -> None:
    ledger = new_ledger()
    prepared = await _prepared(ledger, workers=2, healthcare=True, txs=300)
    here = generate_pool(prepared.specs, [300, 300], processes=0)
    pooled = generate_pool(prepared.specs, [300, 300], processes=2, in_process_txs_max=0)
    assert here == pooled


def test_weighted_cycle_is_exact_and_spread() -> None:
    cycle = weighted_cycle((("A", 3), ("B", 1)))
    first = [next(cycle) for _ in range(8)]
    assert first.count("A") == 6 and first.count("B") == 2
    assert "BB" not in "".join(first)


@pytest.mark.parametrize("weights", [{"REGISTER_PARTY": 1}, {"CONSENT_GRANT": 1}])
async def test_single_type_mixes(weights: dict[str, int]) -> None:
    ledger = new_ledger()
    prepared = await prepare(
        InProcessPort(ledger), chain_id=CHAIN_ID, run_tag="single", workers=1,
        healthcare=True, weights=weights, lane_txs=lambda lanes: 600, key_files={},
    )
    (lane,) = generate_pool(prepared.specs, [600], processes=0)
    for block in interleave([lane], batch=200):
        assert set(commit_block(ledger, block)) == {ResultCode.OK}
