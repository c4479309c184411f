"""bench-storage: the block apply path vs raw plyvel batched puts, in one run.

Prints ONE JSON line. Run through ``scripts/bench-storage`` (repo venv).

What each figure counts:

* ``raw_puts_per_s``: plyvel ``WriteBatch`` of 1,000 puts (32 B random keys, 250 B random
  values), ``sync=True``, one batch after another, into a fresh LevelDB opened with the
  same options the store uses.
* ``store_txs_per_s``: ``BlockStore.apply_block`` of 1,000-tx blocks, ``sync=True``, one
  call per block. Per block: ~250 KB of opaque block bytes (1,000 x 250 B), 1,000 tx-index
  entries (32 B ids), 1,000 state writes (40 B keys, 150 B values), the hash index, head and
  applied index — all checksummed, one batch. One "tx" is its share of all of that.
* ``ratio`` = store_txs_per_s / raw_puts_per_s: a tx costs two keyed writes plus 250 B of
  block bytes, a raw put one 282 B write.

Each round opens a fresh raw LevelDB and a fresh store side by side and alternates one raw
batch and one block, so machine noise and background compaction hit both alike; only the
write calls are timed (inputs are generated before). 150 blocks per round write ~80 MB to
the store and ~42 MB raw: past the memtable, so compaction is part of both figures. Figures
are medians over rounds (best in ``*_best``). Environment: BENCH_STORAGE_ROUNDS (default
5), BENCH_STORAGE_BLOCKS (blocks and raw batches per round, default 150).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import plyvel

from storage.database import DatabaseOptions
from storage.store import Store

TXS_PER_BLOCK = 1000
TX_BYTES = 250
RAW_KEY_BYTES = 32
RAW_VALUE_BYTES = 250
STATE_KEY_BYTES = 40
STATE_VALUE_BYTES = 150
TARGET_RATIO = 0.5

ROUNDS = int(os.environ.get("BENCH_STORAGE_ROUNDS", "5"))
BLOCKS = int(os.environ.get("BENCH_STORAGE_BLOCKS", "150"))


def _open_raw(path: Path, options: DatabaseOptions) -> Any:
    return plyvel.DB(
        str(path),
        create_if_missing=True,
        write_buffer_size=options.write_buffer_bytes,
        max_file_size=options.table_file_bytes_max,
        lru_cache_size=options.read_cache_bytes,
        bloom_filter_bits=options.bloom_filter_bits_per_key,
        max_open_files=options.open_files_max,
        compression=options.compression,
    )


def _make_inputs() -> tuple[list[Any], list[Any]]:
    raw_batches = [
        [(os.urandom(RAW_KEY_BYTES), os.urandom(RAW_VALUE_BYTES)) for _ in range(TXS_PER_BLOCK)]
        for _ in range(BLOCKS)
    ]
    blocks = [
        (
            os.urandom(32),
            os.urandom(TX_BYTES * TXS_PER_BLOCK),
            [os.urandom(32) for _ in range(TXS_PER_BLOCK)],
            {
                b"consent/" + os.urandom(STATE_KEY_BYTES // 2 - 4).hex().encode():
                os.urandom(STATE_VALUE_BYTES)
                for _ in range(TXS_PER_BLOCK)
            },
        )
        for _ in range(BLOCKS)
    ]
    return raw_batches, blocks


def _round(directory: Path, options: DatabaseOptions) -> tuple[float, float]:
    """One raw batch, then one block (order alternating), BLOCKS times, into a fresh raw
    LevelDB and a fresh store side by side: noise and background compaction hit both."""
    raw_batches, blocks = _make_inputs()
    results = [0] * TXS_PER_BLOCK
    raw_db = _open_raw(directory / "raw", options)
    store = Store.open(directory / "store", chain_id="medledger-bench", options=options)
    raw_seconds = store_seconds = 0.0
    clock = time.perf_counter
    try:
        apply_block = store.blocks.apply_block
        for height in range(BLOCKS):
            for turn in (height % 2, 1 - height % 2):
                started = clock()
                if turn == 0:
                    batch = raw_db.write_batch(sync=True)
                    put = batch.put
                    for key, value in raw_batches[height]:
                        put(key, value)
                    batch.write()
                    raw_seconds += clock() - started
                else:
                    block_hash, block_bytes, tx_ids, writes = blocks[height]
                    apply_block(
                        height=height,
                        block_hash=block_hash,
                        block_bytes=block_bytes,
                        tx_ids=tx_ids,
                        tx_results=results,
                        state_writes=writes,
                        applied_index=height + 1,
                        sync=True,
                    )
                    store_seconds += clock() - started
    finally:
        store.close()
        raw_db.close()
    operations = BLOCKS * TXS_PER_BLOCK
    return operations / raw_seconds, operations / store_seconds


def main() -> int:
    options = DatabaseOptions()
    raw_rates: list[float] = []
    store_rates: list[float] = []
    root = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    try:
        for round_number in range(ROUNDS):
            directory = root / str(round_number)
            directory.mkdir()
            raw_rate, store_rate = _round(directory, options)
            raw_rates.append(raw_rate)
            store_rates.append(store_rate)
            shutil.rmtree(directory)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    raw = statistics.median(raw_rates)
    stored = statistics.median(store_rates)
    ratio = stored / raw
    print(
        json.dumps(
            {
                "bench": "storage",
                "store_txs_per_s": round(stored),
                "store_txs_per_s_best": round(max(store_rates)),
                "store_counts": (
                    f"apply_block of {TXS_PER_BLOCK}-tx blocks, sync: per tx {TX_BYTES} B of "
                    f"block bytes + 1 tx-index entry + 1 state write "
                    f"({STATE_KEY_BYTES} B key, {STATE_VALUE_BYTES} B value), checksummed"
                ),
                "raw_puts_per_s": round(raw),
                "raw_puts_per_s_best": round(max(raw_rates)),
                "raw_counts": (
                    f"plyvel WriteBatch of {TXS_PER_BLOCK} puts ({RAW_KEY_BYTES} B key, "
                    f"{RAW_VALUE_BYTES} B value), sync, same LevelDB options"
                ),
                "ratio": round(ratio, 3),
                "target_ratio": TARGET_RATIO,
                "meets_target": ratio >= TARGET_RATIO,
                "rounds": ROUNDS,
                "blocks_per_round": BLOCKS,
                "leveldb_options": {
                    "write_buffer_bytes": options.write_buffer_bytes,
                    "table_file_bytes_max": options.table_file_bytes_max,
                    "compression": options.compression,
                    "bloom_filter_bits_per_key": options.bloom_filter_bits_per_key,
                },
            }
        ),
        flush=True,
    )
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
