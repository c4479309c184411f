"""node.metrics: one registry per node, every metric the pipeline needs."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rpc_fakes import FakeNode

from node.metrics import RAFT_ROLES, STAGES, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_two_nodes_in_one_process_do_not_clash() -> None:
    first, second = Metrics(), Metrics()
    first.set_height(5)
    second.set_height(9)
    assert samples(first)[("medledger_height", ())] == 5
    assert samples(second)[("medledger_height", ())] == 9


def test_gauges_counters_and_role() -> None:
    metrics = Metrics()
    metrics.set_mempool(3, 900)
    metrics.set_peers(2)
    metrics.set_raft_term(7)
    metrics.set_raft_role("leader")
    metrics.set_commit_index(11)
    metrics.set_applied_index(10)
    metrics.block_applied(4, 3, [0, 0, 5])
    metrics.tx_rejected("mempool_full", 2)
    metrics.rpc_request("tx_submit", "ok", 0.001)
    found = samples(metrics)
    assert found[("medledger_mempool_txs", ())] == 3
    assert found[("medledger_mempool_bytes", ())] == 900
    assert found[("medledger_peers", ())] == 2
    assert found[("medledger_raft_term", ())] == 7
    assert found[("medledger_raft_role", (("role", "leader"),))] == 1
    assert found[("medledger_raft_role", (("role", "follower"),))] == 0
    assert found[("medledger_commit_index", ())] == 11
    assert found[("medledger_applied_index", ())] == 10
    assert found[("medledger_height", ())] == 4
    assert found[("medledger_blocks_applied_total", ())] == 1
    assert found[("medledger_txs_applied_total", ())] == 3
    assert found[("medledger_txs_rejected_total", (("reason", "bad_signature"),))] == 1
    assert found[("medledger_txs_rejected_total", (("reason", "mempool_full"),))] == 2
    labels = (("method", "tx_submit"), ("outcome", "ok"))
    assert found[("medledger_rpc_requests_total", labels)] == 1


def test_stage_histograms_cover_every_stage_from_100_microseconds_to_10_seconds() -> None:
    metrics = Metrics()
    for stage in STAGES:
        metrics.observe_stage(stage, 0.002)
    with metrics.time_stage("persist"):
        pass
    metrics.observe_commit_latency(0.3)
    found = samples(metrics)
    for stage in STAGES:
        assert found[("medledger_stage_seconds_count", (("stage", stage),))] >= 1
        assert ("medledger_stage_seconds_bucket", (("le", "0.0001"), ("stage", stage))) in found
        assert found[("medledger_stage_seconds_bucket", (("le", "10.0"), ("stage", stage)))] >= 1
    assert found[("medledger_stage_seconds_count", (("stage", "persist"),))] == 2
    assert found[("medledger_commit_latency_seconds_count", ())] == 1
    assert found[("medledger_commit_latency_seconds_bucket", (("le", "0.5"),))] == 1


def test_unknown_stage_or_role_is_a_programmer_error() -> None:
    metrics = Metrics()
    with pytest.raises(AssertionError):
        metrics.observe_stage("warp_drive", 1.0)
    with pytest.raises(AssertionError):
        metrics.set_raft_role("king")


def test_update_from_status_sets_every_status_gauge() -> None:
    node = FakeNode()
    node.commit([])
    metrics = Metrics()
    metrics.update_from_status(node.status())
    found = samples(metrics)
    assert found[("medledger_height", ())] == 1
    assert found[("medledger_applied_index", ())] == 2
    assert sum(found[("medledger_raft_role", (("role", role),))] for role in RAFT_ROLES) == 1


def test_process_metrics_are_exported() -> None:
    """CPU, memory and file descriptors of the node's process, for nodes that are not on
    the load tester's host (it reads them from /metrics)."""
    text = Metrics().render().decode()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_max_fds", "process_start_time_seconds"):
        assert f"\n{name} " in text, name


def test_disk_lag_and_stall_gauges_come_from_the_status() -> None:
    import dataclasses

    node = FakeNode()
    node.commit([])
    metrics = Metrics()
    status = dataclasses.replace(node.status(), extra={
        "data_dir_free_bytes": 5 * 2**30, "behind": 7, "stalled": True})
    metrics.update_from_status(status)
    found = samples(metrics)
    assert found[("medledger_data_dir_free_bytes", ())] == 5 * 2**30
    assert found[("medledger_behind", ())] == 7 and found[("medledger_stalled", ())] == 1
    metrics.update_from_status(dataclasses.replace(status, extra={"stalled": False}))
    assert samples(metrics)[("medledger_stalled", ())] == 0
