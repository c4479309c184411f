"""bench-cluster's profiler: stacks go to the subsystem of their innermost named frame,
each thread's /proc CPU is split by its samples, and on a live process py-spy's samples
and /proc agree on where the time went."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from node.loadtest.profile import (
    NATIVE,
    OTHER,
    WORKERS,
    NodeProfile,
    ProfileError,
    attribute,
    category_of,
    parse_raw,
    py_spy_path,
    render_table,
    table,
)

APPLY = "apply (rules, chain, storage)"
ADMISSION = "admission and signatures"
RPC = "rpc and json"


def test_a_stack_belongs_to_its_innermost_named_frame() -> None:
    decode_in_apply = ["run (trio/_core/_run.py:1)", "apply_entry (node/chain.py:220)",
                       "decode (ledger/codec.py:470)"]
    assert category_of(decode_in_apply) == APPLY
    check_in_rpc = ["handle (node/rpc/app.py:10)", "submit (node/admission.py:87)",
                    "verify (cryptography/hazmat/x.py:3)"]
    assert category_of(check_in_rpc) == ADMISSION
    assert category_of(["dumps (json/__init__.py:231)"]) == RPC
    assert category_of(["append (storage/raftlog.py:50)", "put (storage/database.py:9)"]) \
        == "raft log persistence"
    assert category_of(["<module> (spin.py:1)"]) == OTHER


def test_raw_output_by_thread_and_cpu_split_by_samples() -> None:
    lines = [
        "thread (100): MainThread;run (trio/_core/_run.py:1);apply_entry (node/chain.py:2) 30\n",
        "thread (100): MainThread;run (trio/_core/_run.py:1);dumps (json/__init__.py:3) 10\n",
        "thread (101): Trio thread 0;check (ledger/validation.py:4) 5\n",
        "garbage without a count\n",
    ]
    samples = parse_raw(lines)
    assert samples == {100: Counter({APPLY: 30, RPC: 10}), 101: Counter({ADMISSION: 5})}
    # Thread 102 was never sampled: it runs no Python (LevelDB's background thread).
    seconds = attribute(samples, {100: 2.0, 101: 0.5, 102: 0.25}, workers_cpu=1.0)
    assert seconds[APPLY] == pytest.approx(1.5) and seconds[RPC] == pytest.approx(0.5)
    assert seconds[ADMISSION] == pytest.approx(0.5)
    assert seconds[NATIVE] == pytest.approx(0.25) and seconds[WORKERS] == pytest.approx(1.0)
    assert sum(seconds.values()) == pytest.approx(3.75)  # everything /proc measured
    per_tx = table([NodeProfile("v0", 1, Path("-"), cpu_seconds=seconds)], committed=1000)
    assert per_tx["v0"]["total"] == pytest.approx(3750.0)
    assert "native threads" in render_table(per_tx)


SPINNER = textwrap.dedent("""
    import json, sys, threading, time
    def encode():
        while True:
            json.dumps({"a": list(range(200))})
    threading.Thread(target=encode, daemon=True).start()
    print("spinning", flush=True)
    time.sleep(60)
""")


def test_a_live_process_is_profiled_where_it_spends_its_cpu(tmp_path: Path) -> None:
    try:
        py_spy_path()
    except ProfileError as error:
        pytest.skip(str(error))
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER], stdout=subprocess.PIPE)
    try:
        assert spinner.stdout is not None and spinner.stdout.readline() == b"spinning\n"
        profile = NodeProfile("spinner", spinner.pid, tmp_path / "spinner.txt")
        profile.start()
        time.sleep(2.0)
        try:
            profile.stop()
        except ProfileError as error:
            if "ptrace" in str(error).lower() or "permission" in str(error).lower():
                pytest.skip(f"py-spy may not attach here: {error}")
            raise
    finally:
        spinner.kill()
        spinner.wait()
    assert profile.samples > 50
    total = sum(profile.cpu_seconds.values())
    assert total > 0.5  # it spun for about 2 s of CPU (less on a busy machine)
    assert profile.cpu_seconds[RPC] / total > 0.8, profile.cpu_seconds  # json.dumps
