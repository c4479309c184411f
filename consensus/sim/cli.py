"""``medledger simulate``: run the cluster simulator over one seed or many.

Mount it on a subcommand with :func:`add_arguments` and :func:`run_simulate`, or run it
alone: ``python -m consensus.sim.cli --seeds 100``. It prints one summary line (or one
JSON object with ``--json``) and, for each failing seed, the violation and the exact command
that replays it; it exits 1 if any seed found a violation, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from consensus.config import RaftBugs
from consensus.sim.simulation import (
    ALL_FAULTS,
    FaultKind,
    Simulation,
    SimulationConfig,
    SimulationResult,
)
from ledger.errors import ConfigError

# Seeds one invocation may run: a bound on the work one command line can ask for
# (20,000 seeds take about an hour on one core).
SEEDS_MAX = 10_000_000

_DEFAULTS = SimulationConfig(seed=0)
_BUG_NAMES = ("commit_previous_term", "vote_twice", "release_before_sync")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser`` (e.g. a ``simulate`` subparser)."""
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument(
        "--seeds", type=int, default=1, metavar="COUNT", help="run COUNT seeds (default 1)"
    )
    parser.add_argument(
        "--first-seed", type=int, default=0, help="first seed of a --seeds run (default 0)"
    )
    parser.add_argument(
        "--nodes",
        default="3",
        help="node count, or a comma list cycled over the seeds, e.g. 3,5,7 (default 3)",
    )
    parser.add_argument(
        "--ticks", type=int, default=_DEFAULTS.ticks, help="ticks of faults per seed"
    )
    parser.add_argument(
        "--faults",
        default="on",
        help="on, off, or a comma list of: " + ",".join(kind.value for kind in FaultKind),
    )
    parser.add_argument(
        "--proposal-rate",
        type=float,
        default=_DEFAULTS.proposal_rate,
        help="client proposals per tick",
    )
    parser.add_argument(
        "--fault-rate", type=float, default=_DEFAULTS.fault_rate, help="fault events per tick"
    )
    parser.add_argument(
        "--fault-duration",
        type=int,
        default=_DEFAULTS.fault_duration_ticks_max,
        help="longest fault (partition, downtime, link fault), in ticks",
    )
    parser.add_argument(
        "--message-bytes",
        type=int,
        default=_DEFAULTS.message_size_bytes_max,
        help="entry bytes per append message (small values split appends)",
    )
    parser.add_argument(
        "--liveness-ticks",
        type=int,
        default=_DEFAULTS.liveness_ticks,
        help="bound on convergence once faults stop",
    )
    parser.add_argument(
        "--crash-mid-ready",
        type=float,
        default=_DEFAULTS.crash_mid_ready_rate,
        help="chance per step of a Ready that the node crashes right after it (0-1)",
    )
    parser.add_argument(
        "--bug",
        action="append",
        choices=_BUG_NAMES,
        default=[],
        help="TEST ONLY: run a deliberately broken Raft, to see the checkers fail",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--verbose", action="store_true", help="print one line per seed")


def _faults(text: str) -> frozenset[FaultKind]:
    if text == "on":
        return ALL_FAULTS
    if text in ("off", ""):
        return frozenset()
    try:
        return frozenset(FaultKind(name.strip()) for name in text.split(","))
    except ValueError:
        raise ConfigError(f"unknown fault in {text!r}") from None


def _node_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--nodes must be integers, got {text!r}") from None
    if not counts:
        raise ConfigError("--nodes is empty")
    return counts


def configs_from_arguments(args: argparse.Namespace) -> list[SimulationConfig]:
    """The runs an invocation asks for. Raises ConfigError on bad values."""
    counts = _node_counts(args.nodes)
    if args.seed is not None:
        seeds = [args.seed]
    else:
        if not 0 < args.seeds <= SEEDS_MAX:
            raise ConfigError(f"--seeds must be in [1, {SEEDS_MAX}]")
        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    faults = _faults(args.faults)
    bugs = RaftBugs(**{name: True for name in args.bug})
    configs = []
    for position, seed in enumerate(seeds):
        config = SimulationConfig(
            seed=seed,
            node_count=counts[position % len(counts)],
            ticks=args.ticks,
            faults=faults,
            proposal_rate=args.proposal_rate,
            fault_rate=args.fault_rate,
            fault_duration_ticks_max=args.fault_duration,
            message_size_bytes_max=args.message_bytes,
            liveness_ticks=args.liveness_ticks,
            crash_mid_ready_rate=args.crash_mid_ready,
            bugs=bugs,
        )
        config.validate()
        configs.append(config)
    return configs


def replay_command(config: SimulationConfig) -> str:
    """The command line that runs exactly ``config`` again."""
    if config.faults == ALL_FAULTS:
        faults = "on"
    elif not config.faults:
        faults = "off"
    else:
        faults = ",".join(sorted(kind.value for kind in config.faults))
    parts = [
        "medledger simulate",
        f"--seed {config.seed}",
        f"--nodes {config.node_count}",
        f"--ticks {config.ticks}",
        f"--faults {faults}",
        f"--proposal-rate {config.proposal_rate:g}",
    ]
    optional = (
        ("--fault-rate", config.fault_rate, _DEFAULTS.fault_rate),
        ("--fault-duration", config.fault_duration_ticks_max, _DEFAULTS.fault_duration_ticks_max),
        ("--message-bytes", config.message_size_bytes_max, _DEFAULTS.message_size_bytes_max),
        ("--liveness-ticks", config.liveness_ticks, _DEFAULTS.liveness_ticks),
    )
    for flag, value, default in optional:
        if value != default:
            parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    parts.extend(f"--bug {name}" for name in config.bugs.enabled)
    return " ".join(parts)


def run_simulate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run what ``args`` asks for; print the summary; return the exit status."""
    out = out if out is not None else sys.stdout
    try:
        configs = configs_from_arguments(args)
    except ConfigError as error:
        print(f"simulate: {error}", file=sys.stderr)
        return 2
    results: list[SimulationResult] = []
    failures: list[tuple[SimulationConfig, SimulationResult]] = []
    interrupted = False
    try:
        for config in configs:
            result = Simulation(config).run()
            results.append(result)
            if args.verbose and not args.json:
                print(_seed_line(result), file=out, flush=True)
            if not result.ok:
                failures.append((config, result))
                if not args.json:
                    _print_failure(config, result, out)
    except KeyboardInterrupt:
        # A long run stopped by hand still reports the seeds it finished.
        interrupted = True
        print(f"simulate: interrupted after {len(results)} seeds", file=sys.stderr)
    if not results:
        return 130 if interrupted else 0
    if args.json:
        print(json.dumps(_summary(args, results, failures), sort_keys=True), file=out)
    else:
        print(_summary_line(args, results, failures), file=out)
    if failures:
        return 1
    return 130 if interrupted else 0


def _seed_line(result: SimulationResult) -> str:
    status = "ok" if result.ok else f"FAIL {result.violations[0].kind}"
    return (
        f"seed={result.seed} nodes={result.node_count} ticks={result.ticks_simulated} "
        f"committed={result.committed_entries} acknowledged={result.proposals_acknowledged} "
        f"crashes={result.crashes} partitions={result.partitions} "
        f"membership={result.membership_changes} converged_ticks={result.convergence_ticks} "
        f"trace={result.trace_hash[:16]} {status}"
    )


def _print_failure(config: SimulationConfig, result: SimulationResult, out: TextIO) -> None:
    print(f"FAIL seed={config.seed} nodes={config.node_count}", file=out)
    for violation in result.violations:
        print(f"  {violation}", file=out)
    print(f"  trace={result.trace_hash}", file=out)
    print(f"  replay: {replay_command(config)}", file=out)


def _combined_hash(results: Sequence[SimulationResult]) -> str:
    if len(results) == 1:
        return results[0].trace_hash
    digest = hashlib.sha256()
    for result in results:
        digest.update(bytes.fromhex(result.trace_hash))
    return digest.hexdigest()


def _summary(
    args: argparse.Namespace,
    results: Sequence[SimulationResult],
    failures: Sequence[tuple[SimulationConfig, SimulationResult]],
) -> dict[str, object]:
    return {
        "seeds": len(results),
        "first_seed": results[0].seed if results else None,
        "nodes": args.nodes,
        "ticks_simulated": sum(result.ticks_simulated for result in results),
        "committed_entries": sum(result.committed_entries for result in results),
        "proposals_acknowledged": sum(result.proposals_acknowledged for result in results),
        "messages_delivered": sum(result.messages_delivered for result in results),
        "crashes": sum(result.crashes for result in results),
        "partitions": sum(result.partitions for result in results),
        "membership_changes": sum(result.membership_changes for result in results),
        "violations": [
            {
                "seed": config.seed,
                "nodes": config.node_count,
                "kind": violation.kind,
                "step": violation.step,
                "description": violation.description,
                "replay": replay_command(config),
            }
            for config, result in failures
            for violation in result.violations
        ],
        "trace_hash": _combined_hash(results),
    }


def _summary_line(
    args: argparse.Namespace,
    results: Sequence[SimulationResult],
    failures: Sequence[tuple[SimulationConfig, SimulationResult]],
) -> str:
    summary = _summary(args, results, failures)
    return (
        f"simulate: seeds={summary['seeds']} nodes={args.nodes} "
        f"ticks={summary['ticks_simulated']} committed={summary['committed_entries']} "
        f"acknowledged={summary['proposals_acknowledged']} crashes={summary['crashes']} "
        f"partitions={summary['partitions']} membership={summary['membership_changes']} "
        f"violations={len(failures)} trace={summary['trace_hash']}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medledger simulate",
        description="Deterministic Raft cluster simulator with fault injection and checkers.",
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_simulate(args)


if __name__ == "__main__":
    raise SystemExit(main())
