"""Prometheus metrics of one node, in a registry of its own.

Each :class:`Metrics` holds its own ``CollectorRegistry`` (never the process-global one),
so several nodes in one process (tests, the devnet, the simulator) never clash. ``/metrics``
serves :meth:`Metrics.render`.

Where each pipeline stage is observed (issue 7: a bottleneck shows up as the stage whose
histogram moves), with :meth:`Metrics.observe_stage` or the :meth:`Metrics.time_stage`
context manager:

=============  ================================================================
stage          measured from / to
=============  ================================================================
rpc_decode     an RPC body arrives / JSON parsed and every call's params checked
validation     a batch of raw txs / their stateless check is done
mempool        checked txs / admitted to (or refused by) the mempool
block_build    the leader starts cutting a block / the block is proposed
replication    an entry is proposed / it is committed (a majority persisted it)
persist        a raft Ready / its entries and hard state are on disk (fsync)
apply          a committed entry / block, results and state written in one batch
=============  ================================================================

``commit_latency_seconds`` is submit-to-commit as seen by the node that took the tx.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from node.api import NodeStatus
from node.jsonview import result_code_name
from node.version import build_info

NAMESPACE = "medledger"
# generate_latest writes the classic text format (names escaped to underscores); label it
# 0.0.4, which every Prometheus version scrapes (newer clients default to announcing 1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

STAGES = (
    "rpc_decode",
    "validation",
    "mempool",
    "block_build",
    "replication",
    "persist",
    "apply",
)

# Stage durations span 100 µs (decoding one small request) to 10 s (an fsync on a sick
# disk, a replication round during a partition): about three buckets per decade.
STAGE_BUCKETS_SECONDS = (
    0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05,
    0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)
# Submit-to-commit is at least one block interval and one raft round trip (milliseconds)
# and, under overload or an election, seconds; 30 s catches the stuck tail.
COMMIT_LATENCY_BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05,
    0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
    10.0, 30.0,
)

# The raft_role gauge has one series per role, 1 for the current one. A fixed set keeps
# the label cardinality bounded whatever a caller passes.
RAFT_ROLES = ("follower", "pre-candidate", "candidate", "leader", "learner", "observer")

# Outcome labels are the snake_case names of node.rpc.errors plus "ok"; the method label
# is a registered method name or "unknown" (never a raw client string).
UNKNOWN_METHOD_LABEL = "unknown"


class Metrics:
    """The node's metrics. Setters and observers are cheap, synchronous and never raise
    for valid input; an unknown stage or role is a programmer error (assertion)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # The standard process_* metrics (CPU seconds, resident memory, open and maximum
        # file descriptors, start time), read from /proc at each scrape.
        ProcessCollector(registry=self.registry)
        self._define_gauges()
        self._define_counters()
        self._define_histograms()

    # ---- definitions ---------------------------------------------------------------------

    def _define_gauges(self) -> None:
        registry = self.registry

        def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, documentation, labels, namespace=NAMESPACE, registry=registry)

        build = gauge("build_info", "1, labelled with this medledger's version and runtime.",
                      ["version", "python", "libp2p"])
        info = build_info()
        build.labels(version=info["version"], python=info["python"],
                     libp2p=info["libp2p"]).set(1)
        self.height = gauge("height", "Height of the last applied block.")
        self.mempool_txs = gauge("mempool_txs", "Transactions in the mempool.")
        self.mempool_bytes = gauge("mempool_bytes", "Bytes of transactions in the mempool.")
        self.peers = gauge("peers", "Connected peers.")
        self.raft_term = gauge("raft_term", "Current raft term.")
        self.raft_role = gauge("raft_role", "1 for this node's current raft role.", ["role"])
        for role in RAFT_ROLES:
            self.raft_role.labels(role=role).set(0)
        self.commit_index = gauge("commit_index", "Highest raft index known committed.")
        self.applied_index = gauge("applied_index", "Highest raft index applied.")
        self.rpc_websocket_connections = gauge(
            "rpc_websocket_connections", "Open JSON-RPC WebSocket connections."
        )
        self.rpc_subscriptions = gauge("rpc_subscriptions", "Active RPC subscriptions.")
        self.data_dir_free_bytes = gauge(
            "data_dir_free_bytes", "Free bytes on the data directory's file system (writes "
            "stall below 32 MiB).")
        self.behind = gauge("behind", "Raft entries committed but not applied (validators), "
                            "or blocks below the highest head a peer answered (observers).")
        self.stalled = gauge("stalled", "1 while no block was applied for [node] "
                             "stall_timeout_s though the chain is ahead (/healthz 503).")

    def _define_counters(self) -> None:
        registry = self.registry

        def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, documentation, labels, namespace=NAMESPACE, registry=registry)

        self.txs_applied_total = counter("txs_applied", "Transactions in applied blocks.")
        self.txs_rejected_total = counter(
            "txs_rejected",
            "Transactions refused (stateless, at submit) or invalid (stateful, in a block).",
            ["reason"],
        )
        self.blocks_applied_total = counter("blocks_applied", "Blocks applied.")
        self.rpc_requests_total = counter(
            "rpc_requests", "JSON-RPC calls by method and outcome.", ["method", "outcome"]
        )
        self.rpc_subscription_overflows_total = counter(
            "rpc_subscription_overflows",
            "Subscriptions closed because the subscriber read too slowly.",
        )
        self.statesync_bad_answers_total = counter(
            "statesync_bad_answers",
            "State sync: answers from a peer that failed verification (a false manifest, "
            "chunk or block), by peer.", ["peer"],
        )

    def _define_histograms(self) -> None:
        registry = self.registry
        self.commit_latency_seconds = Histogram(
            "commit_latency_seconds",
            "From submit to commit of a transaction, as seen by the node that took it.",
            namespace=NAMESPACE,
            registry=registry,
            buckets=COMMIT_LATENCY_BUCKETS_SECONDS,
        )
        self.stage_seconds = Histogram(
            "stage_seconds",
            "Time spent in each pipeline stage.",
            ["stage"],
            namespace=NAMESPACE,
            registry=registry,
            buckets=STAGE_BUCKETS_SECONDS,
        )
        self._stage_children = {stage: self.stage_seconds.labels(stage=stage) for stage in STAGES}
        self.rpc_request_seconds = Histogram(
            "rpc_request_seconds",
            "Time to answer one JSON-RPC call, by method.",
            ["method"],
            namespace=NAMESPACE,
            registry=registry,
            buckets=STAGE_BUCKETS_SECONDS,
        )

    # ---- gauges --------------------------------------------------------------------------

    def set_height(self, height: int) -> None:
        self.height.set(height)

    def set_mempool(self, txs: int, size_bytes: int) -> None:
        self.mempool_txs.set(txs)
        self.mempool_bytes.set(size_bytes)

    def set_peers(self, peers: int) -> None:
        self.peers.set(peers)

    def set_raft_term(self, term: int) -> None:
        self.raft_term.set(term)

    def set_raft_role(self, role: str) -> None:
        """``role`` is a :data:`RAFT_ROLES` name (``consensus.state.Role`` values, plus
        ``learner`` and ``observer``)."""
        assert role in RAFT_ROLES, f"unknown raft role {role!r}"
        for name in RAFT_ROLES:
            self.raft_role.labels(role=name).set(1 if name == role else 0)

    def set_commit_index(self, index: int) -> None:
        self.commit_index.set(index)

    def set_applied_index(self, index: int) -> None:
        self.applied_index.set(index)

    def update_from_status(self, status: NodeStatus) -> None:
        """Refresh every gauge NodeStatus covers (the RPC server does this per scrape)."""
        self.set_height(status.height)
        self.set_mempool(status.mempool_txs, status.mempool_bytes)
        self.set_peers(status.peers)
        self.set_raft_term(status.term)
        if status.role in RAFT_ROLES:
            self.set_raft_role(status.role)
        self.set_commit_index(status.commit_index)
        self.set_applied_index(status.applied_index)
        extra = status.extra
        if "data_dir_free_bytes" in extra:
            self.data_dir_free_bytes.set(extra["data_dir_free_bytes"])
        if extra.get("behind") is not None:
            self.behind.set(extra["behind"])
        if "stalled" in extra:
            self.stalled.set(1 if extra["stalled"] else 0)

    # ---- counters ------------------------------------------------------------------------

    def block_applied(self, height: int, tx_count: int, codes: Sequence[int]) -> None:
        """One applied block: its height, its tx count, and each tx's result code (the
        invalid ones count as rejected under their code's name)."""
        assert len(codes) == tx_count, "one result code per transaction"
        self.blocks_applied_total.inc()
        self.txs_applied_total.inc(tx_count)
        self.height.set(height)
        for code in codes:
            if code != 0:
                self.txs_rejected_total.labels(reason=result_code_name(code).lower()).inc()

    def tx_rejected(self, reason: str, count: int = 1) -> None:
        """``reason`` is a lowercase result code name (``bad_signature``, ``mempool_full``)."""
        self.txs_rejected_total.labels(reason=reason).inc(count)

    def rpc_request(self, method: str, outcome: str, seconds: float) -> None:
        self.rpc_requests_total.labels(method=method, outcome=outcome).inc()
        self.rpc_request_seconds.labels(method=method).observe(seconds)

    def subscription_overflowed(self) -> None:
        self.rpc_subscription_overflows_total.inc()

    # ---- histograms ----------------------------------------------------------------------

    def observe_commit_latency(self, seconds: float) -> None:
        self.commit_latency_seconds.observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        child = self._stage_children.get(stage)
        assert child is not None, f"unknown pipeline stage {stage!r}; see STAGES"
        child.observe(seconds)

    @contextmanager
    def time_stage(self, stage: str) -> Iterator[None]:
        """``with metrics.time_stage("persist"): ...`` observes the block's duration."""
        assert stage in self._stage_children, f"unknown pipeline stage {stage!r}"
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe_stage(stage, time.perf_counter() - started)

    # ---- exposition ----------------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text exposition of this node's registry (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
