"""End to end on a devnet: the demo story completes, then every key and value in every
node's LevelDB is scanned for the demo's plaintext record contents and patient names.
None may be there. (A control shows the scan does find what is legitimately stored.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from node_harness import dump_logs, network
from test_node_integration import wait_ready

from ledger.sdk.demo import _DemoRun
from node.tools.demo import RpcLedgerClient, consortium_for
from storage.raw import open_raw

pytestmark = pytest.mark.slow


def scan(data_dir: Path, needles: list[bytes]) -> tuple[int, dict[bytes, int]]:
    """Every key and value of one LevelDB (values as LevelDB returns them: decompressed):
    the number of entries read and how often each needle occurs."""
    found = dict.fromkeys(needles, 0)
    entries = 0
    with open_raw(data_dir) as database:
        for key, value in database.items():
            entries += 1
            for needle in needles:
                if needle in key or needle in value:
                    found[needle] += 1
    return entries, found


def test_demo_on_a_devnet_leaves_no_plaintext_in_any_leveldb(tmp_path: Path) -> None:
    with network(tmp_path, validators=3, observers=1) as processes:
        wait_ready(processes)
        client = RpcLedgerClient(processes[1].node.rpc_url)
        lines: list[str] = []
        run = _DemoRun(client, lines.append, consortium_for(tmp_path), "e2e", 60.0)
        try:
            run.story()
        except BaseException:
            print("\n".join(lines), dump_logs(processes))
            raise
        finally:
            client.close()
        failures = [step for step in run.steps if not step.matched]
        assert run.steps and not failures, "\n".join(lines)
        head = processes[1].call("chain_head")["height"]
        observer = processes[3]
        # the observer follows by gossip and sync: wait until it has the whole chain
        from node_harness import wait_for

        wait_for(lambda: observer.call("chain_head")["height"] >= head, timeout_s=60,
                 what="the observer to have every block")
        for process in processes:
            process.stop()

    secrets = [*run.plaintexts, *(actor.label.encode() for actor in run.actors.values()),
               b"Alice Example", b"Bob Example"]
    secrets = [secret for secret in secrets if len(secret) >= 5]
    assert len(secrets) >= 5, secrets
    controls = [b"hospital-a", b"insurer"]  # member ids: on the ledger by design
    for process in processes:
        data_dir = process.directory / process.node.name / "data"
        entries, found = scan(data_dir, secrets + controls)
        assert entries > 100, (process.node.name, entries)
        assert all(found[control] > 0 for control in controls), (process.node.name, found)
        leaked = {secret: count for secret, count in found.items()
                  if count and secret not in controls}
        assert leaked == {}, (process.node.name, leaked)
