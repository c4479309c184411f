"""``medledger loadtest``: drive nodes' JSON-RPC with valid healthcare txs and report
Caliper-style figures with percentiles.

::

    medledger loadtest --url http://127.0.0.1:8545/ --controller fixed --rate 500
    medledger loadtest -c configs/loadtest.toml --controller maximum --in-flight 8000

Phases: discover the targets; prepare the lanes on chain (parties, records, consents,
coverage; not measured); sign every tx of the round (a process pool; not measured); run
the warm-up and the measured round; drain; check the chain; write
``<report-dir>/<name>.json`` and ``.html``. The exit status is 0 when the round ran and
the chain agrees with what the load tester saw committed, 1 otherwise, 2 on a bad
configuration (a missing or unreadable key file among them).

Modules of node/loadtest/: config (options), rate (controllers), workload and prepare
(the txs), client (WebSocket JSON-RPC), runner (the round), chain (targets, preparation
port, chain check), system (CPU, memory, /metrics), stats (percentiles, series), report
(JSON, HTML), render (the report's screenshot), progress (the terminal).

The report says what ran: the tx types submitted and committed, and the configured types
left out with the reason (CLAIM_SUBMIT without an insurer's key, say); and what the nodes
spent: CPU seconds per committed tx, resident memory and open files of every target from
its own /metrics (any host), besides /proc figures of local processes.
"""

from __future__ import annotations

import math
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import trio

from ledger.errors import ConfigError, MedledgerError
from node.loadtest.chain import (
    MetricsScrape,
    TargetInfo,
    check_against_chain,
    discover_targets,
    head_height,
    scrape_metrics,
    with_preparation,
)
from node.loadtest.config import MIX_HEALTHCARE, LoadtestConfig, load
from node.loadtest.environment import describe as describe_environment
from node.loadtest.pool import worker_pool
from node.loadtest.prepare import Prepared, prepare
from node.loadtest.progress import Progress
from node.loadtest.rate import CONTROLLER_RAMP, FixedRate, RateController, split
from node.loadtest.runner import Round, RoundOutcome, RoundPlan
from node.loadtest.stats import (
    RoundRecords,
    by_type,
    latency_cdf,
    latency_histogram,
    per_second_series,
    summarize,
)
from node.loadtest.system import (
    NodeMetricsSampler,
    ProcessSampler,
    ProcessSeries,
    load_average,
    local_port,
    pid_listening_on,
    stage_difference,
    stage_totals,
)
from node.loadtest.workload import generate_pool, lane_tx_types, summary_of

# How often processes (/proc) and nodes (/metrics) are sampled during the round: a
# /metrics scrape costs a node a few milliseconds of CPU.
SAMPLE_INTERVAL_SECONDS = 1.0


@dataclass(slots=True)
class RunResult:
    report: dict[str, Any]
    json_path: Path
    html_path: Path

    @property
    def ok(self) -> bool:
        check = self.report.get("chain_check", {}).get("status")
        return bool(check == "ok" and self.report["summary"]["committed"] > 0)


@dataclass(slots=True)
class Observation:
    """What runs beside the round: process samples and metrics scrapes."""

    sampler: ProcessSampler
    nodes: NodeMetricsSampler = field(default_factory=NodeMetricsSampler)
    load_average_before: list[float] = field(default_factory=load_average)
    metrics_before: dict[str, str] = field(default_factory=dict)
    metrics_after: dict[str, str] = field(default_factory=dict)


def main(argv: Sequence[str]) -> int:
    if list(argv[:1]) == ["compare"]:
        from node.loadtest.compare import main as compare_main

        return compare_main(argv[1:])
    try:
        config = load(argv)
    except ConfigError as error:
        print(f"medledger loadtest: {error}", file=sys.stderr)
        return 2
    try:
        result = run(config, stream=sys.stdout)
    except (MedledgerError, BaseExceptionGroup) as error:
        cause = operating_error(error)
        if cause is None:
            raise
        print(f"medledger loadtest: {cause}", file=sys.stderr)
        return 2 if isinstance(cause, ConfigError) else 1
    print(f"reports: {result.json_path} {result.html_path}")
    return 0 if result.ok else 1


def run(config: LoadtestConfig, *, stream: TextIO,
        processes: Sequence[tuple[str, int]] = (),
        around_measure: Callable[[], AbstractContextManager[Any]] = nullcontext) -> RunResult:
    """The whole load test. ``processes`` (name, pid) are sampled besides the local
    targets found by port; progress goes to ``stream``; ``around_measure`` is entered
    for the measured round and the drain (bench-cluster's profiler)."""
    targets = trio.run(discover_targets, config.urls)
    run_tag = config.run_tag or secrets.token_hex(4)
    say = Progress(stream, enabled=config.progress)
    say.line(f"targets: {', '.join(f'{t.url} ({t.role})' for t in targets)}; "
             f"chain {targets[0].chain_id}; run {run_tag}")
    started = time.monotonic()
    prepared = trio.run(_prepare, config, targets, run_tag)
    say.line(f"prepared {len(prepared.specs)} lanes with {prepared.preparation_txs} txs "
             f"in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    counts = [_lane_txs(config, len(prepared.specs))] * len(prepared.specs)
    raws = generate_pool(prepared.specs, counts, processes=config.generator_processes)
    pools = tuple(worker_pool(lane, lane_tx_types(spec, len(lane)))
                  for spec, lane in zip(prepared.specs, raws, strict=True))
    signing_seconds = time.monotonic() - started
    say.line(f"signed {sum(counts)} txs in {signing_seconds:.1f} s "
             f"({sum(counts) / max(signing_seconds, 1e-9):,.0f} tx/s)")
    named = _processes(config, targets, processes)
    outcome, observation, chain_check = trio.run(
        _measure, config, _plan(config, pools), named, say, around_measure)
    report = build_report(config, run_tag, targets, prepared, outcome, observation,
                          chain_check, signing_seconds=signing_seconds, pool_txs=sum(counts))
    report["environment"] = trio.run(describe_environment, targets)
    from node.loadtest.report import write_reports

    name = config.report_name or f"loadtest-{time.strftime('%Y%m%d-%H%M%S')}-{run_tag}"
    report["name"] = name
    json_path, html_path = write_reports(report, Path(config.report_directory), name)
    say.summary(report)
    return RunResult(report, json_path, html_path)


def operating_error(error: BaseException) -> MedledgerError | None:
    """The operating error behind ``error`` (Trio wraps a task's errors in groups), or
    None when something else (a bug) is in there too."""
    if isinstance(error, MedledgerError):
        return error
    if isinstance(error, BaseExceptionGroup):
        causes = [operating_error(inner) for inner in error.exceptions]
        if causes and all(cause is not None for cause in causes):
            return causes[0]
    return None


# ---- phases ---------------------------------------------------------------------------------


async def _prepare(config: LoadtestConfig, targets: Sequence[TargetInfo],
                   run_tag: str) -> Prepared:
    """On the leader if it is a target (it orders the preparation's txs as sent)."""
    leader = next((target for target in targets if target.role == "leader"), targets[0])

    async def work(port: Any) -> Prepared:
        return await prepare(
            port, chain_id=targets[0].chain_id, run_tag=run_tag, workers=config.workers,
            healthcare=config.mix == MIX_HEALTHCARE, weights=config.weights,
            lane_txs=lambda lanes: _lane_txs(config, lanes), key_files=config.key_files,
        )

    result: Prepared = await with_preparation(leader.url, work)
    return result


def warmup_controller(config: LoadtestConfig) -> RateController:
    if config.controller == CONTROLLER_RAMP:
        return FixedRate(max(config.ramp_from_tx_per_second, 1.0), config.in_flight_txs_max)
    return config.controller_for_round()


def _lane_txs(config: LoadtestConfig, lanes: int) -> int:
    """Txs one lane signs: its share of the warm-up and the round, and a batch to spare."""
    warmup = split(warmup_controller(config), lanes).planned_txs(config.warmup_seconds)
    if config.tx_count:
        measured = math.ceil(config.tx_count / lanes)
    else:
        measured = split(config.controller_for_round(), lanes).planned_txs(
            config.duration_seconds)
    return warmup + measured + config.batch_txs_max


def _plan(config: LoadtestConfig, pools: Sequence[Any]) -> RoundPlan:
    workers = len(pools)
    urls = tuple(config.urls[index % len(config.urls)] for index in range(workers))
    duration = config.duration_seconds if config.duration_seconds > 0 else math.inf
    quota = math.ceil(config.tx_count / workers) if config.tx_count else 0
    return RoundPlan(
        urls=urls, pools=tuple(pools),
        warmup_controllers=tuple([split(warmup_controller(config), workers)] * workers),
        controllers=tuple([split(config.controller_for_round(), workers)] * workers),
        warmup_seconds=config.warmup_seconds, duration_seconds=duration,
        measured_txs_per_worker=quota, batch_txs_max=config.batch_txs_max,
        batch_interval_seconds=config.batch_interval_seconds,
        drain_timeout_seconds=config.drain_timeout_seconds,
        call_timeout_seconds=config.call_timeout_seconds,
    )


def _processes(config: LoadtestConfig, targets: Sequence[TargetInfo],
               given: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    named = list(given)
    known = {pid for _, pid in named}
    for target in targets:
        port = local_port(target.url)
        pid = None if port is None else pid_listening_on(port)
        if pid is not None and pid not in known:
            named.append((f"node {target.url} with its child processes", pid))
            known.add(pid)
    named += [(f"pid {pid}", pid) for pid in config.pids if pid not in known]
    named.append(("loadtest", os.getpid()))
    return named


async def _measure(config: LoadtestConfig, plan: RoundPlan, processes: Sequence[tuple[str, int]],
                   say: Progress,
                   around_measure: Callable[[], AbstractContextManager[Any]] = nullcontext,
                   ) -> tuple[RoundOutcome, Observation, dict[str, Any]]:
    first_height = await head_height(config.urls[0])
    round_ = Round(plan)
    observation = Observation(ProcessSampler(processes))
    async with trio.open_nursery() as nursery:
        await nursery.start(round_.run)
        nursery.start_soon(_sample, round_, observation)
        nursery.start_soon(_sample_nodes, round_, observation, config.urls)
        nursery.start_soon(say.follow, round_, config)
        await trio.sleep(max(0.0, round_.warmup_end - time.monotonic()))
        observation.metrics_before = await _scrape_nodes(round_, observation, config.urls)
        with around_measure():  # the measured round and the drain
            await round_.finished.wait()
        observation.metrics_after = await _scrape_nodes(round_, observation, config.urls)
        nursery.cancel_scope.cancel()
    outcome = round_.outcome()
    say.line("checking the chain ...")
    return outcome, observation, await _check_chain(config.urls, first_height, outcome)


async def _check_chain(urls: Sequence[str], first_height: int,
                       outcome: RoundOutcome) -> dict[str, Any]:
    """On the first target that answers (one may have gone down during the round)."""
    errors = []
    for url in urls:
        try:
            return await check_against_chain(url, first_height, outcome)
        except MedledgerError as error:
            errors.append(f"{url}: {error}")
    return {"status": "unavailable", "errors": errors}


async def _scrape_nodes(round_: Round, observation: Observation,
                        urls: Sequence[str]) -> dict[str, str]:
    """Every target's /metrics, its process figures kept as a sample; the texts."""
    scrapes: dict[str, MetricsScrape] = await scrape_metrics(urls)
    for url, scrape in scrapes.items():
        observation.nodes.add(url, scrape.received_at - round_.tracker.start, scrape.text)
    return {url: scrape.text for url, scrape in scrapes.items()}


async def _sample(round_: Round, observation: Observation) -> None:
    while True:
        observation.sampler.sample(time.monotonic() - round_.tracker.start)
        await trio.sleep(SAMPLE_INTERVAL_SECONDS)


async def _sample_nodes(round_: Round, observation: Observation, urls: Sequence[str]) -> None:
    while True:
        await _scrape_nodes(round_, observation, urls)
        await trio.sleep(SAMPLE_INTERVAL_SECONDS)


# ---- the report -----------------------------------------------------------------------------


def _records(outcome: RoundOutcome, config: LoadtestConfig) -> RoundRecords:
    planned = config.duration_seconds if not config.tx_count else 0.0
    submitted_window = outcome.submit_end_seconds - outcome.measured_start_seconds
    return RoundRecords(
        duration_seconds=min(planned, submitted_window) if planned else submitted_window,
        submit_seconds=outcome.measured_submit_seconds,
        commits=outcome.measured_commits,
        rejected=outcome.measured.rejected,
        failed=outcome.measured.failed,
        timed_out=outcome.measured.timed_out,
        committed_without_latency=outcome.measured.committed_without_latency,
    )


def _resources(observation: Observation, outcome: RoundOutcome) -> dict[str, Any]:
    start, end = outcome.measured_start_seconds, outcome.submit_end_seconds
    sampler = observation.sampler
    return {
        "cpus": os.cpu_count(),
        "load_average_before": observation.load_average_before,
        "load_average_after": load_average(),
        "host_busy_cores": sampler.host.window(start, end)["cores_used"],
        "measured_window": [series.window(start, end) for series in sampler.series],
        "series": [_series_json(series) for series in [*sampler.series, sampler.host]],
    }


def _series_json(series: ProcessSeries) -> dict[str, Any]:
    return {"name": series.name, "pid": series.pid, "seconds": series.seconds,
            "cores": series.cores_series(), "rss_bytes": series.rss_bytes,
            "open_fds": series.open_fds}


def _nodes(observation: Observation, outcome: RoundOutcome) -> dict[str, Any]:
    """Each target's CPU, memory and open files from its /metrics, over the measured round
    and the drain (the commits of the measured txs end there)."""
    start, end = outcome.measured_start_seconds, outcome.done_seconds
    committed = outcome.measured.committed
    return {
        "source": "the node's /metrics process_* metrics: the node process, not its "
                  "validation worker processes",
        "window_seconds": [start, end],
        "committed_txs": committed,
        "by_node": observation.nodes.figures(start, end, committed),
        "series": [_series_json(series) for series in observation.nodes.series.values()],
    }


def _mix(prepared: Prepared, outcome: RoundOutcome) -> dict[str, Any]:
    """What the mix asked for and what ran: per type its configured weight, the measured
    txs submitted and committed valid, and the configured types lanes left out."""
    configured = dict(prepared.configured_weights)
    weight_total = sum(configured.values())
    measured = outcome.measured
    submitted_total = sum(measured.submitted_by_type.values())
    kinds = list(configured) + sorted(set(measured.submitted_by_type) - set(configured))
    return {
        "by_type": [
            {"tx_type": kind, "weight": configured.get(kind, 0),
             "configured_share": configured.get(kind, 0) / weight_total if weight_total else None,
             "submitted": measured.submitted_by_type[kind],
             "submitted_share": (measured.submitted_by_type[kind] / submitted_total
                                 if submitted_total else None),
             "committed": measured.committed_by_type[kind]}
            for kind in kinds
        ],
        "warmup_submitted": dict(outcome.warmup.submitted_by_type),
        "left_out": [{"tx_type": item.tx_type, "weight": item.weight, "lanes": list(item.lanes),
                      "all_lanes": len(item.lanes) == len(prepared.specs),
                      "reason": item.reason}
                     for item in prepared.left_out],
    }


def _mix_words(config: LoadtestConfig, prepared: Prepared) -> str:
    """The mix in a few words: "healthcare mix without CLAIM_SUBMIT"."""
    lanes = len(prepared.specs)
    gone = sorted({item.tx_type for item in prepared.left_out if len(item.lanes) == lanes})
    partly = {item.tx_type: len(item.lanes) for item in prepared.left_out
              if len(item.lanes) < lanes}
    words = f"{config.mix} mix"
    if gone:
        words += f" without {', '.join(gone)}"
    for kind, missing in sorted(partly.items()):
        words += f", {kind} in {lanes - missing} of {lanes} lanes"
    return words


def build_report(config: LoadtestConfig, run_tag: str, targets: Sequence[TargetInfo],
                 prepared: Prepared, outcome: RoundOutcome, observation: Observation,
                 chain_check: dict[str, Any], *, signing_seconds: float,
                 pool_txs: int) -> dict[str, Any]:
    records = _records(outcome, config)
    latencies = [commit.latency_seconds for commit in records.commits]
    warmup = outcome.warmup
    return {
        "description": (f"{config.controller} rate, {config.workers} workers, "
                        f"{_mix_words(config, prepared)}, against {len(targets)} node(s); "
                        f"run {run_tag}"),
        "run_tag": run_tag,
        "chain_id": targets[0].chain_id,
        "targets": [{"url": target.url, "role": target.role} for target in targets],
        "summary": summarize(records),
        "warmup": {"submitted": warmup.submitted, "committed": warmup.committed,
                   "invalid_by_reason": dict(warmup.invalid), "rejected": dict(warmup.rejected),
                   "failed": warmup.failed, "timed_out": warmup.timed_out},
        "series": per_second_series(records),
        "latency_histogram": latency_histogram(latencies),
        "latency_cdf": latency_cdf(latencies),
        "by_type": by_type(records, outcome.measured.submitted_by_type,
                           outcome.measured.committed_by_type),
        "mix": _mix(prepared, outcome),
        "resources": _resources(observation, outcome),
        "nodes": _nodes(observation, outcome),
        "node_stages": {
            url: stage_difference(stage_totals(observation.metrics_before.get(url, "")),
                                  stage_totals(text))
            for url, text in observation.metrics_after.items() if text
        },
        "chain_check": chain_check,
        "preparation": {"txs": prepared.preparation_txs,
                        "members_added": list(prepared.members_added),
                        "lanes": summary_of(prepared.specs)},
        "pool": {"txs": pool_txs, "signing_seconds": signing_seconds,
                 "exhausted": outcome.pool_exhausted},
        "round": {"measured_start_seconds": outcome.measured_start_seconds,
                  "submit_end_seconds": outcome.submit_end_seconds,
                  "done_seconds": outcome.done_seconds,
                  "subscription_overflows": outcome.subscription_overflows,
                  "unknown_notifications": outcome.unknown_notifications,
                  "stopped_workers": outcome.stopped_workers,
                  "error_samples": outcome.error_samples},
        "config": config.to_json(),
    }
