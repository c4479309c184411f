"""A worker's pre-signed txs, kept as JSON text fragments, and the one batch message that
watches and submits a slice of them: the load tester's hot path joins strings instead of
encoding JSON per tx."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

# The type of a pool's txs when its builder did not say.
UNTYPED = "untyped"


@dataclass(frozen=True, slots=True)
class WorkerPool:
    """One worker's pre-signed txs, as JSON fragments ready to be joined into a batch."""

    ids: tuple[str, ...]  # "0x..." tx ids
    quoted_ids: tuple[str, ...]  # '"0x..."'
    quoted_raws: tuple[str, ...]  # '"0x..."'
    tx_types: tuple[str, ...]  # each tx's type name (the report counts what ran)

    def __len__(self) -> int:
        return len(self.ids)


def worker_pool(raws: Sequence[bytes], tx_types: Sequence[str] | None = None) -> WorkerPool:
    """``tx_types``: each raw's type name; None: the caller does not count by type (every
    tx is UNTYPED)."""
    types = tuple(tx_types) if tx_types is not None else (UNTYPED,) * len(raws)
    assert len(raws) == len(types), "a type for every tx"
    ids = tuple("0x" + hashlib.sha256(raw).hexdigest() for raw in raws)
    return WorkerPool(ids, tuple(f'"{tx_id}"' for tx_id in ids),
                      tuple(f'"0x{raw.hex()}"' for raw in raws), types)


def watch_and_submit_text(filter_id: int, submit_id: int, subscription: str,
                          quoted_ids: Sequence[str], quoted_raws: Sequence[str]) -> str:
    """One JSON-RPC batch, prebuilt as text: watch these tx ids on the txResults
    subscription, then submit their raws (the ids and raws already JSON-quoted)."""
    return (
        f'[{{"jsonrpc":"2.0","id":{filter_id},"method":"chain_addTxFilter","params":'
        f'{{"subscription":"{subscription}","tx_ids":[' + ",".join(quoted_ids)
        + f']}}}},{{"jsonrpc":"2.0","id":{submit_id},"method":"tx_submitBatch",'
        '"params":{"raws":[' + ",".join(quoted_raws) + "]}}]"
    )
