"""Writer process for tests/test_storage_crash.py, killed with SIGKILL at random moments.

It behaves like a node's Raft driver on one data directory, forever: persist a Raft entry
(sync), apply it (sync), print what returned, repeat. The schedule is deterministic so the
test can check everything after a crash:

* entries go: block 0, block 1, ..., and after every block whose height % 5 == 4 a no-op
  entry (applied with ``record_applied_index``), so block ``h`` is Raft index
  ``h + 1 + h // 5``;
* block ``h`` is ``block_bytes(h, 1000)`` with tx ids ``tx_ids(h, 1000)`` and results
  ``(h + position) % 4``, and writes state keys ``acct/NNNN`` (see ``state_writes``);
* every 20 blocks it records a snapshot at the applied index and compacts the log below.

On start it first applies any entry persisted but not applied (as a node re-applies
committed entries after a restart). Lines printed (flushed) after each call returned:
``ready <head or -1> <applied>``, ``block <height> <index>``, ``noop <index>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from storage_helpers import CHAIN_ID, block_bytes, block_hash, indexed, tx_ids

from consensus.types import ConfState, Entry, EntryType, HardState
from storage import DatabaseOptions, Store

TXS_PER_BLOCK = 1000
STATE_KEYS = 5000
TERM = 1
CONF = ConfState(voters=(1, 2, 3))
# Small LevelDB buffers: memtable flushes and compactions happen while we get killed.
OPTIONS = DatabaseOptions(write_buffer_bytes=1024 * 1024, table_file_bytes_max=1024 * 1024)


def raft_index_of_block(height: int) -> int:
    return height + 1 + height // 5


def state_writes(height: int) -> dict[bytes, bytes | None]:
    start = height * 7
    return {
        b"acct/%04d" % ((start + offset) % STATE_KEYS): b"h%d" % height
        for offset in range(TXS_PER_BLOCK)
    }


def tx_results(height: int) -> list[int]:
    return [(height + position) % 4 for position in range(TXS_PER_BLOCK)]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def apply_entry(store: Store, entry: Entry) -> None:
    if not entry.data:
        store.blocks.record_applied_index(entry.index)
        say(f"noop {entry.index}")
        return
    head = store.blocks.head()
    height = 0 if head is None else head.height + 1
    assert raft_index_of_block(height) == entry.index, (height, entry.index)
    assert entry.data == block_bytes(height, TXS_PER_BLOCK), "raft entry holds the block"
    store.blocks.apply_block(
        height=height,
        block_hash=block_hash(height),
        block_bytes=entry.data,
        tx_ids=tx_ids(height, TXS_PER_BLOCK),
        tx_results=tx_results(height),
        state_writes=indexed(height, tx_ids(height, TXS_PER_BLOCK), tx_results(height),
                             state_writes(height)),
        applied_index=entry.index,
        sync=True,
    )
    say(f"block {height} {entry.index}")
    if height % 20 == 19:
        applied = store.blocks.applied_index()
        store.raft.create_snapshot(applied, CONF, b"snapshot at %d" % applied)
        store.raft.compact(applied - 2)


def main() -> None:
    data_dir = Path(sys.argv[1])
    store = Store.open(data_dir, chain_id=CHAIN_ID, options=OPTIONS)
    raft = store.raft
    # Recovery: apply what was persisted but not applied.
    applied = store.blocks.applied_index()
    if raft.last_index() > applied:
        for entry in raft.entries(applied + 1, raft.last_index() + 1, 1 << 30):
            apply_entry(store, entry)
    head = store.blocks.head()
    say(f"ready {-1 if head is None else head.height} {store.blocks.applied_index()}")
    while True:
        head = store.blocks.head()
        height = 0 if head is None else head.height + 1
        index = raft.last_index() + 1
        if head is not None and head.height % 5 == 4 and index == raft_index_of_block(
            head.height
        ) + 1:
            entry = Entry(term=TERM, index=index, type=EntryType.NORMAL, data=b"")
        else:
            entry = Entry(
                term=TERM,
                index=index,
                type=EntryType.NORMAL,
                data=block_bytes(height, TXS_PER_BLOCK),
            )
        raft.persist(
            hard_state=HardState(term=TERM, vote=1, commit=index),
            entries=[entry],
            snapshot=None,
            sync=True,
        )
        apply_entry(store, entry)


if __name__ == "__main__":
    main()
