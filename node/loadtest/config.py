"""The load tester's configuration: a TOML file (see configs/loadtest.toml) and command
line options; an option given on the command line wins over the file.

Every key has a default; unknown keys and values of the wrong type are errors (a typo must
not silently run another test than the one asked for).
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.crypto import SigningKey
from ledger.errors import ConfigError
from node.keys import read_key_file
from node.loadtest.rate import (
    CONTROLLER_FIXED,
    CONTROLLER_RAMP,
    CONTROLLERS,
    FixedRate,
    LinearRamp,
    MaximumRate,
    RateController,
)

MIX_HEALTHCARE = "healthcare"
MIX_REGISTER_PARTY = "register-party"
MIXES = (MIX_HEALTHCARE, MIX_REGISTER_PARTY)

# The healthcare mix by default: a hospital day's shape (records and access dominate,
# registrations and claims follow, gateways post a few access logs).
DEFAULT_WEIGHTS: dict[str, int] = {
    "REGISTER_PARTY": 15,
    "ANCHOR_RECORD": 25,
    "CONSENT_GRANT": 20,
    "KEY_GRANT": 20,
    "CLAIM_SUBMIT": 15,
    "ACCESS_LOG": 5,
}
MEASURED_TYPES = tuple(DEFAULT_WEIGHTS)

# tx_submitBatch takes at most 1,000 txs (node.rpc.limits.SUBMIT_BATCH_TXS_MAX); half of
# that keeps one call's validation short enough that commits flow while we submit.
BATCH_TXS_MAX_DEFAULT = 500
BATCH_TXS_LIMIT = 1_000
# A txResults filter holds at most 100,000 outstanding ids per subscription
# (node.rpc.limits.TX_FILTER_IDS_MAX): the in-flight bound of one worker stays below it.
IN_FLIGHT_TXS_LIMIT = 100_000
WORKERS_MAX = 60  # one member key each; a consortium has at most 64 members

# Where the member admin keys come from, as an operator writes them: the names errors and
# `--help` give for the setting.
KEY_FILES_SETTING = "[workload] key_files"
KEY_FILE_OPTION = "--key-file"
KEY_FILES_HELP = f"""\
member keys: on a devnet the load tester knows every member's admin key. In a real
consortium give the admin key file of each member it may sign for (a 32-byte seed as hex
on one line, as `medledger keygen` writes it): {KEY_FILE_OPTION} ORG=PATH (repeatable), or
in the config file {KEY_FILES_SETTING} = {{ ORG = "PATH", ... }}; the option wins for its
org. Each worker signs with its own member's key, so give at least as many provider or
custodian keys as workers; CLAIM_SUBMIT also needs an insurer's key (it signs the
patients' coverage) and is sent by provider lanes only: otherwise it is left out of the
mix and the report says so. With key files the load tester never votes members in."""


@dataclass(frozen=True, slots=True)
class LoadtestConfig:
    # [target]
    urls: tuple[str, ...] = ("http://127.0.0.1:8545/",)
    pids: tuple[int, ...] = ()  # node processes to sample; local ones are found by port
    # [round]
    workers: int = 3
    duration_seconds: float = 30.0
    tx_count: int = 0  # > 0: the round ends after this many submitted txs instead
    warmup_seconds: float = 5.0
    batch_txs_max: int = BATCH_TXS_MAX_DEFAULT
    batch_interval_seconds: float = 0.02  # how often a paced worker looks at its schedule
    drain_timeout_seconds: float = 30.0  # after the round: wait this long for commits
    call_timeout_seconds: float = 30.0  # one RPC call over the WebSocket
    # [rate]
    controller: str = CONTROLLER_FIXED
    tx_per_second: float = 200.0
    ramp_from_tx_per_second: float = 100.0
    ramp_to_tx_per_second: float = 1_000.0
    in_flight_txs_max: int = 20_000
    expected_tx_per_second: float = 10_000.0  # maximum rate: pre-generated txs per second
    # [workload]
    mix: str = MIX_HEALTHCARE
    weights: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    generator_processes: int = 2  # 0 or 1: sign in this process
    # org id -> admin seed file ([workload] key_files, --key-file ORG=PATH)
    key_files: dict[str, str] = field(default_factory=dict)
    run_tag: str = ""  # empty: random (ids of this run must be new on the chain)
    # [report]
    report_directory: str = "reports"
    report_name: str = ""  # empty: loadtest-<time>-<tag>
    progress: bool = True

    def controller_for_round(self) -> RateController:
        if self.controller == CONTROLLER_FIXED:
            return FixedRate(self.tx_per_second, self.in_flight_txs_max)
        if self.controller == CONTROLLER_RAMP:
            return LinearRamp(self.ramp_from_tx_per_second, self.ramp_to_tx_per_second,
                              self.duration_seconds, self.in_flight_txs_max)
        return MaximumRate(self.in_flight_txs_max, self.expected_tx_per_second)

    def to_json(self) -> dict[str, Any]:
        return {item.name: _plain(getattr(self, item.name)) for item in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


# TOML layout: section -> keys (each a LoadtestConfig field).
SECTIONS: dict[str, tuple[str, ...]] = {
    "target": ("urls", "pids"),
    "round": ("workers", "duration_seconds", "tx_count", "warmup_seconds", "batch_txs_max",
              "batch_interval_seconds", "drain_timeout_seconds", "call_timeout_seconds"),
    "rate": ("controller", "tx_per_second", "ramp_from_tx_per_second",
             "ramp_to_tx_per_second", "in_flight_txs_max", "expected_tx_per_second"),
    "workload": ("mix", "weights", "generator_processes", "key_files", "run_tag"),
    "report": ("report_directory", "report_name", "progress"),
}
_FIELD_TYPES = {item.name: item.type for item in dataclasses.fields(LoadtestConfig)}


def _coerce(name: str, value: Any) -> Any:
    expected = str(_FIELD_TYPES[name])
    if expected == "float" and type(value) in (int, float):
        return float(value)
    if expected == "int" and type(value) is int:
        return value
    if expected == "bool" and type(value) is bool:
        return value
    if expected == "str" and isinstance(value, str):
        return value
    if expected.startswith("tuple[str") and isinstance(value, list) and all(
        isinstance(item, str) for item in value
    ):
        return tuple(value)
    if expected.startswith("tuple[int") and isinstance(value, list) and all(
        type(item) is int for item in value
    ):
        return tuple(value)
    if expected.startswith("dict[str, int]") and isinstance(value, dict) and all(
        type(item) is int for item in value.values()
    ):
        return dict(value)
    if expected.startswith("dict[str, str]") and isinstance(value, dict) and all(
        isinstance(item, str) for item in value.values()
    ):
        return dict(value)
    raise ConfigError(f"loadtest config: {name} expects {expected}, got {value!r}")


def values_from_toml(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"loadtest config {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"loadtest config {path} is not valid TOML: {error}") from None
    values: dict[str, Any] = {}
    unknown_sections = sorted(set(document) - set(SECTIONS))
    if unknown_sections:
        raise ConfigError(f"loadtest config: unknown section(s) {unknown_sections}")
    for section, table in document.items():
        if not isinstance(table, dict):
            raise ConfigError(f"loadtest config: [{section}] must be a table")
        unknown = sorted(set(table) - set(SECTIONS[section]))
        if unknown:
            raise ConfigError(f"loadtest config: [{section}] unknown key(s) {unknown}")
        for key, value in table.items():
            values[key] = _coerce(key, value)
    return values


def validate(config: LoadtestConfig) -> None:
    checks = [
        (bool(config.urls), "at least one target URL"),
        (1 <= config.workers <= WORKERS_MAX, f"workers in 1..{WORKERS_MAX}"),
        (config.duration_seconds > 0 or config.tx_count > 0, "a duration or a tx count"),
        (config.tx_count >= 0, "tx_count >= 0"),
        (config.warmup_seconds >= 0, "warmup_seconds >= 0"),
        (1 <= config.batch_txs_max <= BATCH_TXS_LIMIT, f"batch_txs_max in 1..{BATCH_TXS_LIMIT}"),
        (config.batch_interval_seconds > 0, "batch_interval_seconds > 0"),
        (config.drain_timeout_seconds > 0, "drain_timeout_seconds > 0"),
        (config.call_timeout_seconds > 0, "call_timeout_seconds > 0"),
        (config.controller in CONTROLLERS, f"controller one of {CONTROLLERS}"),
        (config.tx_per_second > 0, "tx_per_second > 0"),
        (config.ramp_from_tx_per_second >= 0 and config.ramp_to_tx_per_second >= 0,
         "ramp rates >= 0"),
        (config.ramp_from_tx_per_second + config.ramp_to_tx_per_second > 0,
         "a ramp with some rate"),
        (config.controller != CONTROLLER_RAMP or config.duration_seconds > 0,
         "a ramp needs duration_seconds"),
        (config.workers <= config.in_flight_txs_max <= IN_FLIGHT_TXS_LIMIT * config.workers,
         f"in_flight_txs_max in workers..{IN_FLIGHT_TXS_LIMIT} per worker"),
        (config.expected_tx_per_second > 0, "expected_tx_per_second > 0"),
        (config.mix in MIXES, f"mix one of {MIXES}"),
        (set(config.weights) <= set(MEASURED_TYPES),
         f"weights only for {list(MEASURED_TYPES)}"),
        (all(weight >= 0 for weight in config.weights.values())
         and sum(config.weights.values()) > 0, "weights >= 0, some positive"),
        (config.generator_processes >= 0, "generator_processes >= 0"),
    ]
    for ok, wanted in checks:
        if not ok:
            raise ConfigError(f"loadtest config: {wanted} is required")


def key_file_setting(org_id: str) -> str:
    """How an operator names ``org_id``'s key file: the TOML key and the option."""
    return f"{KEY_FILES_SETTING}.{org_id} / {KEY_FILE_OPTION} {org_id}=PATH"


def read_member_key(org_id: str, path: str) -> SigningKey:
    """The admin key in ``org_id``'s key file; a missing, unreadable or malformed file is
    a one-line ConfigError naming the setting and the file."""
    return read_key_file(Path(path), role=f"member key file ({key_file_setting(org_id)})",
                         hint="write one with `medledger keygen`, or fix the path")


def _key_files_option(values: Sequence[str]) -> dict[str, str]:
    """``--key-file ORG=PATH`` options as {org: path}."""
    key_files: dict[str, str] = {}
    for value in values:
        org_id, separator, path = value.partition("=")
        if not separator or not org_id.strip() or not path.strip():
            raise ConfigError(f"{KEY_FILE_OPTION} expects ORG=PATH, got {value!r}")
        key_files[org_id.strip()] = path.strip()
    return key_files


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medledger loadtest",
        description="Drive nodes' JSON-RPC with valid healthcare txs; measure submit-to-"
        "commit latency from txResults notifications; write JSON and HTML reports.",
        epilog=KEY_FILES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("-c", "--config", help="TOML file (configs/loadtest.toml); options override it")
    add("--url", dest="urls", action="append", help="a node's RPC URL (repeat for several)")
    add("--pid", dest="pids", action="append", type=int,
        help="a node process id to sample CPU/memory (local targets are found by port)")
    add("--workers", type=int, help="concurrent submitters (one WebSocket and signer each)")
    add("--duration", dest="duration_seconds", type=float, help="measured seconds")
    add("--txs", dest="tx_count", type=int, help="end the round after this many txs")
    add("--warmup", dest="warmup_seconds", type=float, help="unmeasured seconds first")
    add("--batch", dest="batch_txs_max", type=int, help="txs per tx_submitBatch call")
    add("--drain-timeout", dest="drain_timeout_seconds", type=float,
        help="seconds to wait for commits after the round")
    add("--controller", choices=CONTROLLERS, help="fixed, ramp or maximum rate")
    add("--rate", dest="tx_per_second", type=float, help="fixed rate, tx/s")
    add("--ramp-from", dest="ramp_from_tx_per_second", type=float, help="ramp start, tx/s")
    add("--ramp-to", dest="ramp_to_tx_per_second", type=float, help="ramp end, tx/s")
    add("--in-flight", dest="in_flight_txs_max", type=int,
        help="bound on submitted, not yet committed txs (the maximum rate's knob)")
    add("--expected-rate", dest="expected_tx_per_second", type=float,
        help="maximum rate: pre-generate this many txs per second of the round")
    add("--mix", choices=MIXES, help="healthcare (default) or register-party")
    add("--generator-processes", type=int, help="processes that sign the tx pool")
    add(KEY_FILE_OPTION, dest="key_file_options", action="append", metavar="ORG=PATH",
        help=f"admin key file of member ORG (repeat per member; adds to {KEY_FILES_SETTING})")
    add("--run-tag", help="unique id of this run (default: random)")
    add("--report-dir", dest="report_directory", help="where the reports go (reports/)")
    add("--report-name", help="file name stem of the reports")
    add("--no-progress", dest="progress", action="store_false", default=None,
        help="no progress output")
    return parser


def load(argv: Sequence[str]) -> LoadtestConfig:
    """Defaults, then the TOML file, then the command line."""
    argv = list(argv)
    if argv[:1] == ["--"]:  # `medledger loadtest -- --url ...` (the CLI passes it through)
        argv = argv[1:]
    arguments = parser().parse_args(argv)
    values: dict[str, Any] = {}
    if arguments.config:
        values.update(values_from_toml(Path(arguments.config)))
    for name, value in vars(arguments).items():
        if name not in ("config", "key_file_options") and value is not None:
            values[name] = tuple(value) if isinstance(value, list) else value
    if arguments.key_file_options:
        values["key_files"] = {**values.get("key_files", {}),
                               **_key_files_option(arguments.key_file_options)}
    config = LoadtestConfig(**values)
    validate(config)
    for org_id, path in config.key_files.items():  # fail now, not after target discovery
        read_member_key(org_id, path)
    return config
