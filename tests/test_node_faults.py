"""Real node processes under faults a network sees every day: a validator paused (SIGSTOP)
longer than the raft link's inactivity timeout, then resumed. On 127.0.0.1 with free
ports; each test stops exactly the processes it started, by pid.

What must hold: the paused node reconnects to every validator and catches up; the
cluster keeps committing; a client that submits in nonce order to one node gets every tx
committed in that order (no NONCE_STALE) across the leader changes the pauses cause."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from node_harness import NodeProcess, dump_logs, leader_of, network, wait_for
from test_node_integration import ADMIN, TxFactory, wait_ready

pytestmark = pytest.mark.slow

# Longer than the raft link's read inactivity timeout (5 s): the links to the paused
# node are declared wedged and dropped while it sleeps.
PAUSE_S = 8.0
PAUSES = 2
RATE_TX_PER_S = 40.0


def all_validators_connected(processes: list[NodeProcess]) -> bool:
    for process in processes:
        peers = process.try_call("node_peers")
        if peers is None:
            return False
        validators = [peer for peer in peers if peer["validator"]]
        if len(validators) != len(processes) - 1 or not all(p["connected"] for p in validators):
            return False
    return True


class InOrderClient:
    """One signer, increasing nonces, all to one node; records every accepted tx id."""

    def __init__(self, target: NodeProcess) -> None:
        self.target = target
        self.factory = TxFactory(ADMIN, "fault")
        self.accepted: list[str] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        raw: bytes | None = None
        while not self._stop.is_set():
            raw = raw or self.factory.next()
            try:
                answer = self.target.call("tx_submit", {"raw": "0x" + raw.hex()})
            except Exception:
                answer = None
            if answer and answer.get("accepted"):
                self.accepted.append(str(answer["tx_id"]))
                raw = None  # the next nonce only once this one is accepted
            else:
                self.refused += 1
            time.sleep(1.0 / RATE_TX_PER_S)


def test_paused_validators_reconnect_and_in_order_txs_commit_in_order(tmp_path: Path) -> None:
    with network(tmp_path, validators=3, observers=0) as processes:
        leader = wait_ready(processes)
        wait_for(lambda: all_validators_connected(processes), timeout_s=30,
                 what="a full mesh")
        # The client talks to a node we never pause.
        steady = next(p for p in processes if p is not leader)
        client = InOrderClient(steady)
        client.start()
        try:
            for _ in range(PAUSES):
                paused = leader_of(processes) or leader
                if paused is steady:
                    paused = next(p for p in processes if p is not steady)
                assert paused.process is not None
                os.kill(paused.process.pid, signal.SIGSTOP)
                time.sleep(PAUSE_S)
                os.kill(paused.process.pid, signal.SIGCONT)
                healed_at = time.monotonic()
                try:
                    wait_for(lambda: all_validators_connected(processes), timeout_s=30,
                             interval_s=0.1, what="every validator connected after a pause")
                except AssertionError:
                    print(dump_logs(processes, lines=80))
                    raise
                print(f"RECONNECT: {time.monotonic() - healed_at:.2f} s after SIGCONT")
                time.sleep(2.0)
        finally:
            client.stop()
        assert len(client.accepted) > 100, client.accepted[:5]
        last = client.accepted[-1]

        def everywhere(tx_id: str) -> bool:
            return all((p.try_call("tx_status", {"tx_id": tx_id}) or {}).get("state")
                       == "committed" for p in processes)

        wait_for(lambda: everywhere(last), timeout_s=30, what="the last tx everywhere")
        codes: dict[str, int] = {}
        for tx_id in client.accepted:
            status: dict[str, Any] = steady.call("tx_status", {"tx_id": tx_id})
            assert status["state"] == "committed", status
            codes[status["code_name"]] = codes.get(status["code_name"], 0) + 1
        assert set(codes) == {"OK"}, codes


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_stalls_writes_and_the_node_resumes_when_space_returns(
    tmp_path: Path,
) -> None:
    """LevelDB failing with ENOSPC used to stop the node (StorageError out of the raft
    driver). Now writes stall while less than the reserve is free, health says so, and
    writes resume after; a restart on the full disk waits for space too."""
    import subprocess

    with network(tmp_path, validators=1, observers=0, start=False) as processes:
        node = processes[0]
        data = tmp_path / node.node.name / "data"
        data.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(data)],
                       check=True, timeout=10)
        try:
            node.start()
            wait_ready(processes)
            factory = TxFactory(ADMIN, "disk")
            first = node.call("tx_submit", {"raw": "0x" + factory.next().hex()})["tx_id"]
            wait_for(lambda: (node.try_call("tx_status", {"tx_id": first}) or {}).get("state")
                     == "committed", timeout_s=20, what="a commit before the disk fills")
            filler = data / "filler"
            with open(filler, "wb") as handle:
                try:
                    while True:
                        handle.write(b"\0" * 65536)
                except OSError:
                    pass
            stuck = node.call("tx_submit", {"raw": "0x" + factory.next().hex()})["tx_id"]
            wait_for(lambda: ((node.try_call("node_health") or {}).get("details") or {}).get(
                "disk_full"),
                     timeout_s=20, what="health reporting the full disk")
            time.sleep(2.0)
            assert node.process is not None and node.process.poll() is None, node.log_text()
            assert (node.call("tx_status", {"tx_id": stuck}) or {}).get("state") != "committed"
            filler.unlink()
            wait_for(lambda: (node.try_call("tx_status", {"tx_id": stuck}) or {}).get("state")
                     == "committed", timeout_s=30, what="the stalled tx committed after")
            health = node.call("node_health")
            assert health["ready"] and not health["details"]["disk_full"], health
            assert "disk full: writes stalled" in node.log_text()
            # A restart while the disk is full waits for space instead of failing.
            node.stop()
            with open(filler, "wb") as handle:
                try:
                    while True:
                        handle.write(b"\0" * 65536)
                except OSError:
                    pass
            node.start()
            wait_for(lambda: '"what": "opening the database"' in node.log_text(),
                     timeout_s=20, what="the restarted node waiting for space")
            time.sleep(1.0)
            assert node.process is not None and node.process.poll() is None, node.log_text()
            filler.unlink()
            wait_ready(processes)
        finally:
            node.stop()
            subprocess.run(["umount", "-l", str(data)], check=False, timeout=10)


def test_txs_submitted_at_an_observer_reach_the_leader_by_forwarding(tmp_path: Path) -> None:
    """Observers forward their clients' txs like followers do (to the newest block's
    proposer). Gossip alone no longer gets a tx proposed: the leader holds gossip-only txs
    for 30 s, waiting for their owner's forward."""
    with network(tmp_path, validators=3, observers=1) as processes:
        wait_ready(processes)
        observer = processes[-1]
        factory = TxFactory(ADMIN, "obs")
        tx_ids = []
        started = time.monotonic()
        for _ in range(20):
            answer = observer.call("tx_submit", {"raw": "0x" + factory.next().hex()})
            assert answer["accepted"], answer
            tx_ids.append(answer["tx_id"])
        wait_for(lambda: all((observer.try_call("tx_status", {"tx_id": t}) or {}).get("state")
                             == "committed" for t in tx_ids),
                 timeout_s=10, interval_s=0.1, what="the observer's txs committed")
        print(f"OBSERVER TXS COMMITTED in {time.monotonic() - started:.2f} s")
        codes = {observer.call("tx_status", {"tx_id": t})["code_name"] for t in tx_ids}
        assert codes == {"OK"}, codes
