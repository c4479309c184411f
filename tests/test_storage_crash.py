"""Crash consistency with real processes: SIGKILL a syncing writer at random moments.

tests/storage_crash_writer.py persists Raft entries and applies 1,000-tx blocks with sync
writes, printing each height after its write returned. We kill it (only the pid we
started) at least KILLS times, at random moments (during recovery and open too), restart
it on the same data directory each time, and after each kill open the store ourselves and
check: every acknowledged block is present and intact; no block is partial (no tx-index
entry of the block after the head exists); the tx index of every block is complete and
points at existing blocks; nothing exists beyond the head; the applied index and the head
agree with the schedule; the Raft log is readable and consistent with both; the state
matches the schedule.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from storage_crash_writer import (
    CONF,
    OPTIONS,
    STATE_KEYS,
    TXS_PER_BLOCK,
    raft_index_of_block,
    state_writes,
    tx_results,
)
from storage_helpers import (
    CHAIN_ID,
    REPO_ROOT,
    block_bytes,
    block_hash,
    indexed,
    subprocess_environment,
    tx_id,
    tx_ids,
)

from consensus.types import ConfState
from ledger.evaluation import TX_LOCATION, TX_SEEN_PREFIX
from storage import Store, TxLocation, keys

KILLS = 24
WALL_SECONDS_MAX = 150  # hang guard only: ~20-45 s measured (quiet vs loaded 2-core machine)
RUN_SECONDS_MAX = 0.5  # longest a writer lives before its kill


class Writer:
    def __init__(self, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "tests" / "storage_crash_writer.py"), str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_environment(),
            cwd=REPO_ROOT,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode().strip()
            self.lines.append(line)
            if line.startswith("ready"):
                self.ready.set()
        self.ready.set()

    def kill(self) -> tuple[list[str], bytes]:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.process.stderr is not None
        stderr = self.process.stderr.read()
        self.process.stdout.close()  # type: ignore[union-attr]
        self.process.stderr.close()
        return self.lines, stderr


class Checker:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.previous_head = -1
        self.checked_head = -1  # blocks up to here had their tx ids checked
        self.acknowledged_heights = -1
        self.acknowledged_noop = 0

    def check(self, lines: list[str], rng: random.Random) -> int:
        acknowledged_this_run = -1
        for line in lines:
            kind, *numbers = line.split()
            if kind == "block":
                acknowledged_this_run = max(acknowledged_this_run, int(numbers[0]))
            elif kind == "noop":
                self.acknowledged_noop = max(self.acknowledged_noop, int(numbers[0]))
        self.acknowledged_heights = max(self.acknowledged_heights, acknowledged_this_run)
        with Store.open(self.data_dir, chain_id=CHAIN_ID, options=OPTIONS) as store:
            head_record = store.blocks.head()
            head = -1 if head_record is None else head_record.height
            # Every acknowledged block is there; at most one unacknowledged block more.
            assert head >= self.acknowledged_heights, (head, self.acknowledged_heights)
            assert head <= max(self.previous_head, acknowledged_this_run) + 1
            assert head >= self.previous_head, "a block disappeared"
            self._check_blocks(store, head)
            self._check_tx_index(store, head, rng)
            self._check_nothing_beyond(store, head)
            self._check_applied_and_raft(store, head)
            self._check_state_sample(store, head, rng)
        self.previous_head = head
        return head

    def _check_blocks(self, store: Store, head: int) -> None:
        height = 0
        while height <= head:
            chunk = store.blocks.blocks(height, head, size_bytes_max=8 << 20)
            assert chunk, f"block {height} missing below head {head}"
            for block in chunk:
                assert block.height == height
                assert block.block_hash == block_hash(height)
                assert block.block_bytes == block_bytes(height, TXS_PER_BLOCK), height
                height += 1
        if head >= 0:
            assert store.blocks.head().block_hash == block_hash(head)  # type: ignore[union-attr]
            assert store.blocks.block_by_hash(block_hash(head)).height == head  # type: ignore[union-attr]

    def _check_tx_index(self, store: Store, head: int, rng: random.Random) -> None:
        """Walk the whole tx index (every value's checksum is verified on the way): each
        entry belongs to a block at or below the head, with the scheduled result; every
        block has exactly its 1,000 positions; entries of blocks not seen before also
        have exactly the scheduled tx id. Then look a sample up through the read API."""
        positions_seen = [0] * (head + 1)
        count = 0
        index_prefix = keys.state_prefix(store.blocks.live_generation) + TX_SEEN_PREFIX
        for key, payload in store.database.iterate(start=index_prefix,
                                                   stop=keys.prefix_end(index_prefix)):
            height, position, result = TX_LOCATION.unpack(payload)
            assert height <= head, f"tx index entry for block {height} beyond head {head}"
            assert position < TXS_PER_BLOCK and result == (height + position) % 4
            if height > self.checked_head:
                assert key[len(index_prefix):] == tx_id(height, position)
            positions_seen[height] += 1
            count += 1
        assert count == (head + 1) * TXS_PER_BLOCK, (count, head)
        assert all(seen == TXS_PER_BLOCK for seen in positions_seen)
        for _ in range(100 if head >= 0 else 0):
            height = rng.randrange(head + 1)
            position = rng.randrange(TXS_PER_BLOCK)
            location, block = store.blocks.transaction_block(tx_id(height, position))  # type: ignore[misc]
            assert location == TxLocation(height, position, (height + position) % 4)
            assert block.height == height
        self.checked_head = max(self.checked_head, head)

    def _check_nothing_beyond(self, store: Store, head: int) -> None:
        assert store.blocks.block(head + 1) is None
        assert store.blocks.blocks(head + 1, head + 50, size_bytes_max=1 << 30) == []
        assert store.blocks.block_by_hash(block_hash(head + 1)) is None
        for position in range(0, TXS_PER_BLOCK, 97):
            tx = tx_id(head + 1, position)
            assert store.blocks.transaction(tx) is None, "a partial block's tx index"

    def _check_applied_and_raft(self, store: Store, head: int) -> None:
        applied = store.blocks.applied_index()
        raft = store.raft
        if head < 0:
            assert applied == 0
        else:
            block_index = raft_index_of_block(head)
            allowed = {block_index}
            if head % 5 == 4:
                allowed.add(block_index + 1)  # the no-op after it
            assert applied in allowed, (head, applied)
        assert self.acknowledged_noop <= applied
        # The Raft log: at most one entry persisted beyond the applied index.
        assert applied <= raft.last_index() <= applied + 1, (applied, raft.last_index())
        assert raft.first_index() <= applied + 1
        hard_state, conf_state = raft.initial_state()
        assert hard_state.commit == raft.last_index() or raft.last_index() == 0
        assert conf_state == (CONF if not raft.snapshot().is_empty else ConfState())
        first, last = raft.first_index(), raft.last_index()
        if last >= first:
            entries = raft.entries(first, last + 1, 1 << 30)
            assert [entry.index for entry in entries] == list(range(first, last + 1))
            assert all(entry.term == 1 for entry in entries)
            if last > applied:
                pending = entries[-1]
                expected_height = head + 1
                if pending.data:
                    assert pending.index == raft_index_of_block(expected_height)
                    assert pending.data == block_bytes(expected_height, TXS_PER_BLOCK)
                else:
                    assert head % 5 == 4 and pending.index == raft_index_of_block(head) + 1
        snapshot = raft.snapshot()
        if not snapshot.is_empty:
            assert snapshot.metadata.index <= applied
            assert raft.term(first - 1) == 1

    def _check_state_sample(self, store: Store, head: int, rng: random.Random) -> None:
        for key_number in rng.sample(range(STATE_KEYS), 40):
            key = b"acct/%04d" % key_number
            expected = None
            for height in range(head, -1, -1):
                # state_writes(height) covers acct/(7h .. 7h + 999) mod STATE_KEYS.
                if (key_number - 7 * height) % STATE_KEYS < TXS_PER_BLOCK:
                    expected = b"h%d" % height
                    break
            assert store.blocks.state_get(key) == expected, (key, head)

    def check_full_state(self, head: int) -> None:
        expected: dict[bytes, bytes] = {}
        for height in range(head + 1):
            expected.update(indexed(height, tx_ids(height, TXS_PER_BLOCK),  # type: ignore[arg-type]
                                    tx_results(height), state_writes(height)))
        with Store.open(self.data_dir, chain_id=CHAIN_ID, options=OPTIONS) as store:
            assert dict(store.blocks.state_items()) == expected


def test_state_schedule_shortcut_matches_writer() -> None:
    for height in (0, 1, 713, 5000):
        written = state_writes(height)
        for key_number in range(STATE_KEYS):
            covered = (key_number - 7 * height) % STATE_KEYS < TXS_PER_BLOCK
            assert covered == (b"acct/%04d" % key_number in written)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seed = int(os.environ.get("STORAGE_CRASH_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    print(f"storage crash test seed {seed} (STORAGE_CRASH_SEED={seed} to replay the timing)")
    data_dir = tmp_path / "node"
    checker = Checker(data_dir)
    started = time.monotonic()
    kills = 0
    killed_before_ready = 0
    head = -1
    check_seconds = 0.0
    while kills < KILLS:
        writer = Writer(data_dir)
        if rng.random() < 0.2:
            # Kill during start-up: open, recovery of unapplied entries, garbage collection.
            time.sleep(rng.uniform(0.0, 0.4))
            killed_before_ready += not writer.ready.is_set()
        else:
            assert writer.ready.wait(timeout=30), "writer never became ready"
            time.sleep(rng.uniform(0.02, RUN_SECONDS_MAX))
        lines, stderr = writer.kill()
        kills += 1
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")
        check_started = time.monotonic()
        head = checker.check(lines, rng)
        check_seconds += time.monotonic() - check_started
        assert time.monotonic() - started < WALL_SECONDS_MAX, (
            f"crash test too slow: {kills} kills in {time.monotonic() - started:.1f} s"
        )
    checker.check_full_state(head)
    elapsed = time.monotonic() - started
    print(
        f"storage crash test: {kills} SIGKILLs ({killed_before_ready} before ready), "
        f"{head + 1} blocks of {TXS_PER_BLOCK} txs, {elapsed:.1f} s "
        f"({check_seconds:.1f} s checking)"
    )
    assert head >= KILLS, "the writer should make progress between kills"
