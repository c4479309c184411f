"""Node configuration: TOML with documented defaults, overridable from the environment.

Every key has a default; a config file names only what differs. An environment variable
``MEDLEDGER_<SECTION>_<KEY>`` (upper case) overrides ``[section] key``, e.g.
``MEDLEDGER_RPC_PORT=8545``. Unknown sections or keys are errors (a typo must not be
silently ignored), and so are values of the wrong type.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import limits
from ledger.errors import ConfigError


@dataclass(frozen=True, slots=True)
class NodeSection:
    data_dir: str = "data"
    # 32-byte Ed25519 seed, hex, one line; the node's libp2p identity and block signing key.
    key_file: str = "node.key"
    genesis_file: str = "genesis.json"
    # Processes that verify signatures of large batches (0: verify in the node's own
    # threads). A dedicated machine gains ~1.7x with 2 (scripts/bench-core).
    validation_workers: int = 0
    # No block applied for this long while peers are ahead (or raft has committed more):
    # the node is stalled, and /healthz and /readyz answer 503.
    stall_timeout_s: int = 60


@dataclass(frozen=True, slots=True)
class P2PSection:
    listen: str = "/ip4/127.0.0.1/tcp/0"
    # Multiaddrs with /p2p/<peer id> of peers to dial at start and keep dialing.
    bootstrap: tuple[str, ...] = ()
    # Serve gossip and sync to peers that are not validators (observer nodes).
    open_for_observers: bool = True
    # Gossip every accepted tx batch to all nodes (a new leader then has them already).
    gossip_txs: bool = True


@dataclass(frozen=True, slots=True)
class RpcSection:
    host: str = "127.0.0.1"
    port: int = 8545
    # Bearer token for admin_ methods; empty disables them.
    admin_token: str = ""
    # HTTPS and WSS on the RPC port: a PEM certificate (chain) and its PEM private key,
    # both or neither (neither: plain HTTP, for 127.0.0.1 or behind a TLS proxy).
    tls_cert_file: str = ""
    tls_key_file: str = ""


@dataclass(frozen=True, slots=True)
class ConsensusSection:
    # One raft tick. Heartbeats go every heartbeat_ticks, elections start after a random
    # [election_ticks, 2 * election_ticks) ticks without a leader: 50 ms x 10 = 0.5-1 s.
    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    # Raft entries kept behind the applied index after a snapshot, so slow followers can
    # catch up from the log instead of a snapshot.
    snapshot_entries: int = 10_000
    compaction_margin_entries: int = 1_000


@dataclass(frozen=True, slots=True)
class BlockSection:
    max_txs: int = 2_000
    max_bytes: int = 1_048_576
    interval_ms: int = 100
    # Proposed but not yet applied blocks the leader may have in flight (pipelining).
    max_inflight: int = 4


@dataclass(frozen=True, slots=True)
class MempoolSection:
    max_txs: int = 100_000
    max_bytes: int = 64 * 1_048_576


@dataclass(frozen=True, slots=True)
class StorageSection:
    # Observers only: keep the bodies of the newest this many blocks and delete older ones
    # in the background (0: keep every block). Older blocks, and txs in them, are then
    # answered with an error naming the oldest block held. Validators ignore it: their
    # peers may still need every block.
    retain_blocks: int = 0


@dataclass(frozen=True, slots=True)
class SyncSection:
    # Keep a state snapshot every this many blocks, to serve nodes joining by state sync
    # (0: none). Taking one is a LevelDB snapshot (apply never waits); its manifest is
    # computed in the background the first time a peer asks.
    snapshot_interval_blocks: int = 1000
    snapshots_kept: int = 2
    # A node whose chain is still at genesis (a new observer) joins from the newest
    # snapshot its peers hold below this block, whose hash it trusts (0: it replays every
    # block instead). Take both from a node you trust: `medledger status`.
    trust_height: int = 0
    trust_hash: str = ""


@dataclass(frozen=True, slots=True)
class LogSection:
    level: str = "info"
    # "json" (default, for services) or "console" (for people at a terminal).
    format: str = "json"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node: NodeSection = field(default_factory=NodeSection)
    p2p: P2PSection = field(default_factory=P2PSection)
    rpc: RpcSection = field(default_factory=RpcSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    block: BlockSection = field(default_factory=BlockSection)
    mempool: MempoolSection = field(default_factory=MempoolSection)
    storage: StorageSection = field(default_factory=StorageSection)
    sync: SyncSection = field(default_factory=SyncSection)
    log: LogSection = field(default_factory=LogSection)
    # The directory relative paths are resolved against (the config file's directory).
    base_dir: str = "."

    def path(self, value: str) -> Path:
        candidate = Path(value)
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate

    @property
    def data_dir(self) -> Path:
        return self.path(self.node.data_dir)

    @property
    def key_file(self) -> Path:
        return self.path(self.node.key_file)

    @property
    def genesis_file(self) -> Path:
        return self.path(self.node.genesis_file)

    @property
    def rpc_tls_files(self) -> tuple[Path, Path] | None:
        """(certificate, private key) of the RPC port's TLS, or None for plain HTTP."""
        if not self.rpc.tls_cert_file:
            return None
        return self.path(self.rpc.tls_cert_file), self.path(self.rpc.tls_key_file)


SECTIONS: dict[str, type[Any]] = {
    field_.name: field_.type if isinstance(field_.type, type) else globals()[str(field_.type)]
    for field_ in dataclasses.fields(NodeConfig)
    if field_.name != "base_dir"
}


# An integer given as text (an environment override): ASCII digits only, as TOML's, and
# few enough for int() (which refuses over 4300 digits); every key fits in 20.
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,20}")


def _coerce(section: str, key: str, value: Any, expected: Any) -> Any:
    where = f"[{section}] {key}"
    expected_name = str(expected)
    if expected_name in ("int", int):
        if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
            return int(value)
        if type(value) is not int:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if expected_name in ("bool", bool):
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if type(value) is not bool:
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if expected_name.startswith("tuple"):
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _section(name: str, values: Any, environ: dict[str, str]) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}]: expected a table, got {values!r}")
    section_class = SECTIONS[name]
    known = {field_.name: field_.type for field_ in dataclasses.fields(section_class)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"[{name}]: unknown key(s) {', '.join(unknown)}")
    merged = dict(values)
    from_environment: dict[str, str] = {}
    for key in known:
        variable = f"MEDLEDGER_{name.upper()}_{key.upper()}"
        if variable in environ:
            merged[key] = environ[variable]
            from_environment[key] = variable
    coerced = {}
    for key, value in merged.items():
        try:
            coerced[key] = _coerce(name, key, value, known[key])
        except ConfigError as error:
            if key not in from_environment:
                raise
            raise ConfigError(f"{error} (set by the environment variable "
                              f"{from_environment[key]})") from None
    return section_class(**coerced)


def config_from_dict(
    document: dict[str, Any], *, base_dir: str = ".", environ: dict[str, str] | None = None
) -> NodeConfig:
    environ = dict(os.environ) if environ is None else environ
    unknown = sorted(set(document) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)}")
    sections = {
        name: _section(name, document.get(name, {}), environ) for name in SECTIONS
    }
    config = NodeConfig(base_dir=base_dir, **sections)
    try:
        validate(config)
    except ConfigError as error:
        # "[section] key ..." names the setting; say so when the environment set it.
        named = _SETTING_NAMED.match(str(error))
        variable = named and f"MEDLEDGER_{named[1].upper()}_{named[2].upper()}"
        if variable and variable in environ:
            raise ConfigError(f"{error} (set by the environment variable {variable})") from None
        raise
    return config


_SETTING_NAMED = re.compile(r"\[(\w+)\] (\w+)")


def load_config(path: Path | str, *, environ: dict[str, str] | None = None) -> NodeConfig:
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8: {error}") from None
    except ValueError as error:  # TOMLDecodeError, or an integer of over 4300 digits
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    return config_from_dict(document, base_dir=str(path.resolve().parent), environ=environ)


# Bounds of the block settings: a block holds at most the ledger's BLOCK_TXS_MAX txs; its
# bytes stay well under one raft entry (BLOB_SIZE_BYTES_MAX) with room for a header; a
# pipeline deeper than this only queues work behind a lost proposal.
BLOCK_BYTES_MIN = 4096
BLOCK_BYTES_MAX = 8 * 1_048_576
BLOCK_INFLIGHT_MAX = 64


SNAPSHOTS_KEPT_MAX = 16


def trust_hash_bytes(sync: SyncSection) -> bytes | None:
    """The trusted block hash of ``[sync] trust_hash`` (hex, 0x optional), or None."""
    text = sync.trust_hash.removeprefix("0x")
    if len(text) != 64:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def validate(config: NodeConfig) -> None:
    assert BLOCK_BYTES_MAX < limits.BLOB_SIZE_BYTES_MAX
    checks = [
        (config.consensus.tick_ms >= 1, "[consensus] tick_ms must be at least 1"),
        (
            config.consensus.election_ticks > config.consensus.heartbeat_ticks >= 1,
            "[consensus] election_ticks must exceed heartbeat_ticks (>= 1)",
        ),
        (1 <= config.block.max_txs <= limits.BLOCK_TXS_MAX,
         f"[block] max_txs must be in 1..{limits.BLOCK_TXS_MAX}"),
        (BLOCK_BYTES_MIN <= config.block.max_bytes <= BLOCK_BYTES_MAX,
         f"[block] max_bytes must be in {BLOCK_BYTES_MIN}..{BLOCK_BYTES_MAX}"),
        (config.block.interval_ms >= 1, "[block] interval_ms must be at least 1"),
        (1 <= config.block.max_inflight <= BLOCK_INFLIGHT_MAX,
         f"[block] max_inflight must be in 1..{BLOCK_INFLIGHT_MAX}"),
        (config.mempool.max_txs >= config.block.max_txs, "[mempool] max_txs < [block] max_txs"),
        (0 <= config.rpc.port <= 65535, "[rpc] port must be in 0..65535"),
        (config.node.validation_workers >= 0, "[node] validation_workers must be >= 0"),
        (config.node.stall_timeout_s > 0, "[node] stall_timeout_s must be > 0"),
        (config.storage.retain_blocks >= 0,
         "[storage] retain_blocks must be >= 0 (0 keeps every block)"),
        (config.sync.snapshot_interval_blocks >= 0,
         "[sync] snapshot_interval_blocks must be >= 0 (0: keep no snapshots)"),
        (1 <= config.sync.snapshots_kept <= SNAPSHOTS_KEPT_MAX,
         f"[sync] snapshots_kept must be in 1..{SNAPSHOTS_KEPT_MAX}"),
        (config.sync.trust_height >= 0, "[sync] trust_height must be >= 0"),
        (config.sync.trust_height == 0 or trust_hash_bytes(config.sync) is not None,
         "[sync] trust_hash must be the trusted block's hash (64 hex digits) when "
         "trust_height is set"),
        (config.sync.trust_height > 0 or not config.sync.trust_hash,
         "[sync] trust_hash is set but trust_height is not"),
        (config.log.format in ("json", "console"), "[log] format must be json or console"),
        (
            config.log.level in ("debug", "info", "warning", "error"),
            "[log] level must be debug, info, warning or error",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    _validate_rpc_tls(config.rpc)


def _validate_rpc_tls(rpc: RpcSection) -> None:
    """Both TLS files or neither: one alone would silently serve plain HTTP."""
    if bool(rpc.tls_cert_file) == bool(rpc.tls_key_file):
        return
    given, missing = (("tls_cert_file", "tls_key_file") if rpc.tls_cert_file
                      else ("tls_key_file", "tls_cert_file"))
    raise ConfigError(f"[rpc] {given} is set but {missing} is not: set both for HTTPS "
                      "(a PEM certificate and its private key) or neither for plain HTTP")


def render_config(config: NodeConfig) -> str:
    """The config as TOML (used by ``medledger init`` and ``devnet``)."""
    lines: list[str] = []
    for name in SECTIONS:
        lines.append(f"[{name}]")
        section = getattr(config, name)
        for field_ in dataclasses.fields(section):
            value = getattr(section, field_.name)
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int):
                text = str(value)
            elif isinstance(value, tuple):
                text = "[" + ", ".join(_toml_string(item) for item in value) + "]"
            else:
                text = _toml_string(value)
            lines.append(f"{field_.name} = {text}")
        lines.append("")
    return "\n".join(lines)


def _toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = []
    for character in value:
        if character in ('"', "\\"):
            escaped.append("\\" + character)
        elif ord(character) < 0x20 or ord(character) == 0x7F:
            escaped.append(f"\\u{ord(character):04x}")
        else:
            escaped.append(character)
    return '"' + "".join(escaped) + '"'
