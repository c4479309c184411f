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
configuration.

Modules of node/loadtest/: config (options), rate (controllers), workload and prepare
(the txs), client (WebSocket JSON-RPC), runner (the round), chain (targets, preparation
port, chain check), system (CPU, memory, /metrics), stats (percentiles, series), report
(JSON, HTML), render (the report's screenshot), progress (the terminal).
"""

from __future__ import annotations

import math
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import trio

from ledger.errors import ConfigError, MedledgerError
from node.loadtest.chain import (
    TargetInfo,
    check_against_chain,
    discover_targets,
    head_height,
    scrape_metrics,
    with_preparation,
)
from node.loadtest.config import MIX_HEALTHCARE, LoadtestConfig, load
from node.loadtest.prepare import Prepared, prepare
from node.loadtest.progress import Progress
from node.loadtest.rate import CONTROLLER_RAMP, FixedRate, RateController, split
from node.loadtest.runner import Round, RoundOutcome, RoundPlan, worker_pool
from node.loadtest.stats import (
    RoundRecords,
    latency_histogram,
    per_second_series,
    summarize,
)
from node.loadtest.system import (
    ProcessSampler,
    load_average,
    local_port,
    pid_listening_on,
    stage_difference,
    stage_totals,
)
from node.loadtest.workload import generate_pool, summary_of

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
    load_average_before: list[float] = field(default_factory=load_average)
    metrics_before: dict[str, str] = field(default_factory=dict)
    metrics_after: dict[str, str] = field(default_factory=dict)


def main(argv: Sequence[str]) -> int:
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
        return 1
    print(f"reports: {result.json_path} {result.html_path}")
    return 0 if result.ok else 1


def run(config: LoadtestConfig, *, stream: TextIO,
        processes: Sequence[tuple[str, int]] = ()) -> RunResult:
    """The whole load test. ``processes`` (name, pid) are sampled besides the local
    targets found by port; progress goes to ``stream``."""
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
    pools = tuple(worker_pool(lane) for lane in raws)
    signing_seconds = time.monotonic() - started
    say.line(f"signed {sum(counts)} txs in {signing_seconds:.1f} s "
             f"({sum(counts) / max(signing_seconds, 1e-9):,.0f} tx/s)")
    named = _processes(config, targets, processes)
    outcome, observation, chain_check = trio.run(
        _measure, config, _plan(config, pools), named, say)
    report = build_report(config, run_tag, targets, prepared, outcome, observation,
                          chain_check, signing_seconds=signing_seconds, pool_txs=sum(counts))
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
            named.append((f"node {target.url}", pid))
            known.add(pid)
    named += [(f"pid {pid}", pid) for pid in config.pids if pid not in known]
    named.append(("loadtest", os.getpid()))
    return named


async def _measure(config: LoadtestConfig, plan: RoundPlan, processes: Sequence[tuple[str, int]],
                   say: Progress) -> tuple[RoundOutcome, Observation, dict[str, Any]]:
    first_height = await head_height(config.urls[0])
    round_ = Round(plan)
    observation = Observation(ProcessSampler(processes))
    async with trio.open_nursery() as nursery:
        await nursery.start(round_.run)
        nursery.start_soon(_sample, round_, observation)
        nursery.start_soon(say.follow, round_, config)
        observation.metrics_before = await _scrape_at(round_, config)
        await round_.finished.wait()
        observation.metrics_after = await scrape_metrics(config.urls)
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


async def _scrape_at(round_: Round, config: LoadtestConfig) -> dict[str, str]:
    await trio.sleep(max(0.0, round_.warmup_end - time.monotonic()))
    return await scrape_metrics(config.urls)


async def _sample(round_: Round, observation: Observation) -> None:
    while True:
        observation.sampler.sample(time.monotonic() - round_.tracker.start)
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
        "series": [{"name": series.name, "pid": series.pid, "seconds": series.seconds,
                    "cores": series.cores_series(), "rss_bytes": series.rss_bytes}
                   for series in [*sampler.series, sampler.host]],
    }


def build_report(config: LoadtestConfig, run_tag: str, targets: Sequence[TargetInfo],
                 prepared: Prepared, outcome: RoundOutcome, observation: Observation,
                 chain_check: dict[str, Any], *, signing_seconds: float,
                 pool_txs: int) -> dict[str, Any]:
    records = _records(outcome, config)
    latencies = [commit.latency_seconds for commit in records.commits]
    warmup = outcome.warmup
    return {
        "description": (f"{config.controller} rate, {config.workers} workers, {config.mix} "
                        f"mix, against {len(targets)} node(s); run {run_tag}"),
        "run_tag": run_tag,
        "chain_id": targets[0].chain_id,
        "targets": [{"url": target.url, "role": target.role} for target in targets],
        "summary": summarize(records),
        "warmup": {"submitted": warmup.submitted, "committed": warmup.committed,
                   "invalid_by_reason": dict(warmup.invalid), "rejected": dict(warmup.rejected),
                   "failed": warmup.failed, "timed_out": warmup.timed_out},
        "series": per_second_series(records),
        "latency_histogram": latency_histogram(latencies),
        "resources": _resources(observation, outcome),
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
