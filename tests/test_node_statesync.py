"""State sync with real node processes: a new observer joins a devnet that committed a
20,000-tx healthcare workload, and a join SIGKILLed at random moments never leaves a
data directory that serves wrong state."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from node_harness import ROOT, NodeProcess, dump_logs, network, wait_for

from node.client import RpcError
from node.loadtest.command import run
from node.loadtest.config import LoadtestConfig, validate


def _set(process: NodeProcess, **values: object) -> None:
    path = process.directory / process.node.name / "node.toml"
    lines = path.read_text().splitlines()
    for key, value in values.items():
        prefix = f"{key} = "
        assert any(line.startswith(prefix) for line in lines), key
        lines = [f"{key} = {json.dumps(value)}" if line.startswith(prefix) else line
                 for line in lines]
    path.write_text("\n".join(lines) + "\n")


def test_a_new_observer_joins_a_20000_tx_chain_and_answers_like_an_old_node() -> None:
    """scripts/bench-join without the replay observer: the state-synced observer reaches
    the head, and every party, record, consent and claim query (and each patient's
    consents and claims) answers as on a validator."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_join.py"), "--txs", "20000",
         "--no-replay", "--join-timeout", "180"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, (line, result.stderr[-3000:])
    assert line["committed"] >= 20_000
    assert line["state_imported"] is True
    assert line["queries_compared"] > 10_000
    assert line["query_mismatches"] == 0


def test_sigkill_during_state_sync_never_leaves_wrong_state(tmp_path: Path) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    print(f"kill timing seed {seed}")
    with network(tmp_path, validators=3, observers=1, start=False) as processes:
        validators, observer = processes[:3], processes[3]
        for process in validators:
            # Two snapshots below any trust point: headers under load commit to states a
            # few blocks back, so the newest snapshot may not be committed to yet.
            _set(process, snapshot_interval_blocks=3, snapshots_kept=3)
            process.start()
        for process in validators:
            wait_for(lambda p=process: p.try_call("chain_head"), timeout_s=60,
                     what=f"{process.node.name} up")
        config = LoadtestConfig(
            urls=tuple(p.node.rpc_url for p in validators), workers=3, tx_count=6000,
            duration_seconds=600.0, warmup_seconds=0.0, controller="maximum",
            in_flight_txs_max=1500, report_directory=str(tmp_path / "reports"),
            report_name="statesync-kill", progress=False)
        validate(config)
        run(config, stream=sys.stderr)
        head = validators[0].call("chain_head")
        height = int(head["height"])
        assert height > 6, head
        _set(observer, trust_height=height, trust_hash=head["hash"])
        killed_mid_sync = 0
        for _ in range(6):
            log_before = len(observer.log_text())

            def joining(log_before: int = log_before) -> bool:
                if "state sync: snapshot chosen" in observer.log_text()[log_before:]:
                    return True
                now = observer.try_call("chain_head")  # joined already: following
                return now is not None and now.get("height", 0) > 0

            observer.start()
            wait_for(joining, timeout_s=60, interval_s=0.01,
                     what="the observer to start its join")
            time.sleep(rng.uniform(0.0, 0.1))  # the import of this state takes ~0.2-0.5 s
            observer.kill()
            run_log = observer.log_text()[log_before:]
            if "snapshot chosen" in run_log and "state imported" not in run_log:
                killed_mid_sync += 1
            elif "snapshot chosen" not in run_log:
                break  # it had joined before this start: nothing left to interrupt
        observer.start()
        try:
            wait_for(lambda: (observer.try_call("chain_head") or {}).get("height", 0) >= height,
                     timeout_s=120, what="the observer to reach the trusted height")
        except AssertionError:
            raise AssertionError(dump_logs([observer])) from None
        for check in (height, height - 1):
            mine = observer.call("chain_getRoots", {"height": check})
            theirs = validators[0].call("chain_getRoots", {"height": check})
            assert mine == theirs, (check, mine, theirs)
        assert observer.call("chain_head")["hash"] == validators[1].call(
            "chain_getBlock", {"height": observer.call("chain_head")["height"]})["hash"]
        assert killed_mid_sync >= 1, "no kill landed inside a join: " + observer.log_text()[-3000:]


@pytest.mark.parametrize("held_blocks", [False, True], ids=["at-genesis", "behind"])
def test_a_validator_far_behind_joins_from_the_raft_snapshot_by_state_sync(
        tmp_path: Path, held_blocks: bool) -> None:
    """A genesis validator started late (or one that held a few blocks and was down while
    the chain grew), whose peers compacted their raft logs: raft hands it a snapshot naming
    the leader's head, and it joins by state sync from that trust point (then block
    sync), votes and commits with the others. One that held blocks keeps none below the
    imported state (reading one is answered as pruned)."""
    from test_node_integration import TxFactory, committed_on, submit, wait_ready

    with network(tmp_path, validators=3, observers=0, start=False) as processes:
        for process in processes:
            path = process.directory / process.node.name / "node.toml"
            text = path.read_text().replace("snapshot_entries = 10000", "snapshot_entries = 8")
            path.write_text(text.replace("compaction_margin_entries = 1000",
                                         "compaction_margin_entries = 2"))
            _set(process, snapshot_interval_blocks=10)
        late = processes[2]
        factory = TxFactory()
        last = ""

        def grow_to(height: int) -> None:
            # One tx at a time: an idle leader cuts a block per tx, so the chain grows past
            # the height at which a node behind joins by state sync.
            nonlocal last
            while processes[0].call("chain_head")["height"] < height:
                last = submit(processes[0], factory.next())
                wait_for(lambda t=last: committed_on(processes[0], t), timeout_s=30, what=last)

        held = 0
        if held_blocks:
            for process in processes:
                process.start()
            wait_ready(processes)
            grow_to(6)
            wait_for(lambda: committed_on(late, last), timeout_s=30, what="the third validator")
            held = late.call("chain_head")["height"]
            assert late.stop() == 0
            grow_to(held + 120)
        else:
            for process in processes[:2]:
                process.start()
            wait_ready(processes[:2])
            grow_to(120)
        late.start()
        head = processes[0].call("chain_head")["height"]
        try:
            wait_for(lambda: (late.try_call("chain_head") or {}).get("height", 0) >= head,
                     timeout_s=90, what="the late validator to catch up")
        except AssertionError:
            raise AssertionError(dump_logs(processes)) from None
        log = late.log_text()
        assert "installing snapshot: joining by state sync" in log, log[-3000:]
        assert "state sync: state imported" in log
        for height in (head - 1, head):
            assert late.call("chain_getRoots", {"height": height}) == processes[0].call(
                "chain_getRoots", {"height": height})
        oldest = late.call("node_status")["extra"]["oldest_block_height"]
        assert oldest > held + 100, oldest
        if held_blocks:
            with pytest.raises(RpcError, match="-32012"):
                late.call("chain_getBlock", {"height": held})
        later = submit(late, factory.next())
        for process in processes:
            wait_for(lambda p=process: committed_on(p, later), timeout_s=30,
                     what=f"a new tx on {process.node.name}")
