"""Setting up a consortium member's node: ``medledger keygen`` (a member's admin key) and
``medledger init`` (a node key and a commented node.toml).

What each prints is what the other operators need from us: the admin public key for the
members file, the node public key for the members file (validators), and the node's full
multiaddr for their bootstrap lists.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.crypto import SigningKey
from ledger.errors import ConfigError
from node.config import (
    NodeConfig,
    NodeSection,
    P2PSection,
    RpcSection,
    config_from_dict,
    render_config,
)
from node.keys import read_key_file, write_key_file
from node.p2p.identity import peer_id_from_public_key

NODE_CONFIG_NAME = "node.toml"
NODE_KEY_NAME = "node.key"
# Addresses a node may listen on: an IP address and a TCP port (what the p2p layer binds).
LISTEN_EXAMPLE = "/ip4/0.0.0.0/tcp/30333"
UNSPECIFIED_HOSTS = ("0.0.0.0", "::")


def keygen(path: Path, *, force: bool = False) -> dict[str, str]:
    """Write a new Ed25519 key (a member's admin key) to ``path``, mode 0600, in the key
    file format of node keys; return its public key for the members file."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: give the key file's name (-o FILE)")
    if path.exists() and not force:
        raise ConfigError(f"{path} exists: a key file is never overwritten unless you pass "
                          "--force (the key in it would be lost for good)")
    key = SigningKey.generate()
    write_key_file(path, key, overwrite=force)
    return {"key_file": str(path), "public_key": "0x" + key.public_key.hex()}


@dataclass(frozen=True, slots=True)
class InitRequest:
    """What ``medledger init`` was asked for (paths as the user gave them)."""

    directory: Path
    listen: str
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 8545
    bootstrap: tuple[str, ...] = ()
    genesis_file: str | None = None
    data_dir: str | None = None
    force: bool = False


def init_node(request: InitRequest) -> dict[str, Any]:
    """Check the request, create the node key (kept if one exists: it is the node's
    identity) and write a commented node.toml. Nothing is written if an input is bad."""
    config_path = request.directory / NODE_CONFIG_NAME
    key_path = request.directory / NODE_KEY_NAME
    if config_path.exists() and not request.force:
        raise ConfigError(f"{config_path} exists (use --force to overwrite)")
    check_listen_address(request.listen)
    if not request.rpc_host.strip():
        raise ConfigError("--rpc-host is empty (e.g. 127.0.0.1, or 0.0.0.0 for all "
                          "interfaces)")
    key = read_key_file(key_path) if key_path.exists() else SigningKey.generate()
    peer_id = peer_id_from_public_key(key.public_key)
    check_bootstrap_addresses(request.bootstrap, peer_id)
    config = NodeConfig(
        node=NodeSection(
            data_dir=_user_path(request.data_dir, NodeSection().data_dir),
            key_file=NODE_KEY_NAME,
            genesis_file=_user_path(request.genesis_file, NodeSection().genesis_file),
        ),
        p2p=P2PSection(listen=request.listen, bootstrap=request.bootstrap),
        rpc=RpcSection(host=request.rpc_host, port=request.rpc_port),
    )
    text = commented_config(config)
    # What `medledger start` will read must load, by the same parser, as what we meant.
    try:
        document = tomllib.loads(text)
    except ValueError as error:  # a control character in a value given
        raise ConfigError(f"the inputs do not make a valid node.toml: {error}") from None
    loaded = config_from_dict(document, base_dir=str(request.directory), environ={})
    assert (loaded.node, loaded.p2p, loaded.rpc) == (config.node, config.p2p, config.rpc)
    request.directory.mkdir(parents=True, exist_ok=True)
    if not key_path.exists():
        write_key_file(key_path, key)
    config_path.write_text(text)
    printed: dict[str, Any] = {
        "config": str(config_path),
        "key_file": str(key_path),
        "node_public_key": key.public_key.hex(),
        "peer_id": peer_id,
        "multiaddr": f"{request.listen}/p2p/{peer_id}",
    }
    notes = _listen_notes(request.listen)
    if notes:
        printed["notes"] = notes
    return printed


def _user_path(given: str | None, default: str) -> str:
    """A path from the command line is taken from the current directory, and written
    absolute (the config resolves relative paths against its own directory)."""
    return default if given is None else str(Path(given).resolve())


def check_listen_address(listen: str) -> None:
    """A listen address is /ip4/ADDRESS/tcp/PORT or /ip6/ADDRESS/tcp/PORT."""
    import multiaddr

    try:
        address = multiaddr.Multiaddr(listen)
        names = [protocol.name for protocol in address.protocols()]
    except Exception as error:
        raise ConfigError(f"--listen {listen!r} is not a multiaddr such as "
                          f"{LISTEN_EXAMPLE}: {error}") from None
    if names != ["ip4", "tcp"] and names != ["ip6", "tcp"]:
        raise ConfigError(f"--listen {listen!r}: expected /ip4/ADDRESS/tcp/PORT or "
                          f"/ip6/ADDRESS/tcp/PORT, such as {LISTEN_EXAMPLE}")


def check_bootstrap_addresses(entries: tuple[str, ...], own_peer_id: str) -> None:
    """The check ``medledger start`` makes: a multiaddr ending in /p2p/<peer id>."""
    from node.p2p.libp2p_glue import parse_bootstrap

    for entry in entries:
        if "/p2p/" not in entry:
            raise ConfigError(f"--bootstrap {entry!r} has no /p2p/<peer id>: give the "
                              "full address the other operator's `medledger init` printed")
    try:
        parse_bootstrap(entries, own_peer_id)
    except ConfigError as error:
        raise ConfigError(str(error).replace("bootstrap address", "--bootstrap", 1)) from None


def _listen_notes(listen: str) -> list[str]:
    parts = listen.split("/")
    host, port = parts[2], parts[4]
    notes = []
    if host in UNSPECIFIED_HOSTS:
        notes.append(f"listening on all interfaces: other operators dial this host's own "
                     f"address, e.g. /ip4/<address>/tcp/{port}/p2p/<peer id>")
    if port == "0":
        notes.append("port 0 is a new random port at every start: give --listen with a "
                     "fixed port so that peers can dial this node")
    return notes


# The keys `medledger init` writes, by section, each with what it is (every other key
# takes its default).
INIT_KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("node", (
        ("data_dir", "LevelDB data directory (blocks, raft log, state); one node's only"),
        ("key_file", "the node key: a 32-byte Ed25519 seed, hex, mode 0600; the node's "
                     "libp2p identity (peer id) and block signing key"),
        ("genesis_file", "the consortium's genesis (`medledger genesis`), the same file "
                         "on every node"),
    )),
    ("p2p", (
        ("listen", "p2p address, /ip4/ADDRESS/tcp/PORT (0.0.0.0: every interface)"),
        ("bootstrap", "peers to dial and keep dialing: their full multiaddrs, ending "
                      "/p2p/<peer id> (/ip4, /ip6, /dns4, /dns6 or /dns)"),
        ("open_for_observers", "serve gossip and block sync to nodes that are not "
                               "validators"),
    )),
    ("rpc", (
        ("host", "JSON-RPC and HTTP (health, metrics) address; 127.0.0.1 keeps it on "
                 "this host"),
        ("port", "JSON-RPC and HTTP port"),
        ("admin_token", "bearer token for admin_ methods, empty disables them (better: "
                        "MEDLEDGER_RPC_ADMIN_TOKEN from a secret store)"),
    )),
    ("log", (
        ("level", "debug, info, warning or error"),
        ("format", "json (for services) or console (for a terminal)"),
    )),
)

CONFIG_HEADER = """\
# A medledger node, written by `medledger init`; run it with `medledger start -c <this
# file>`. Relative paths are taken from this file's directory. Every key not named here
# takes its default (node/config.py documents each; configs/production.toml shows a
# production validator's), and any key can be overridden from the environment as
# MEDLEDGER_<SECTION>_<KEY> (e.g. MEDLEDGER_RPC_PORT=8545).
"""


def commented_config(config: NodeConfig) -> str:
    """The keys of INIT_KEYS as ``render_config`` writes their values, each under a
    comment saying what it is; the bootstrap list one address a line."""
    rendered: dict[tuple[str, str], str] = {}
    section = ""
    for line in render_config(config).splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif " = " in line:
            rendered[(section, line.split(" = ", 1)[0])] = line
    lines = [CONFIG_HEADER]
    for section, keys in INIT_KEYS:
        lines.append(f"[{section}]")
        for key, comment in keys:
            lines.append(f"# {comment}")
            if (section, key) == ("p2p", "bootstrap") and config.p2p.bootstrap:
                lines.append("bootstrap = [")
                lines += [f"    {json.dumps(entry, ensure_ascii=False)},"
                          for entry in config.p2p.bootstrap]
                lines.append("]")
            else:
                lines.append(rendered[(section, key)])
        lines.append("")
    return "\n".join(lines)
