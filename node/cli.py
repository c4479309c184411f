"""The ``medledger`` command line.

    medledger init --dir DIR              node key + config for one node
    medledger genesis -m members.toml     consortium genesis from members' public keys
    medledger start -c node.toml          run a node (SIGTERM/Ctrl-C: graceful stop)
    medledger devnet                      a local network of validators and observers
    medledger status --rpc URL            a node's status
    medledger tx submit ...               sign and submit a transaction
    medledger simulate ...                the deterministic cluster simulator
    medledger demo --rpc URL              the healthcare story against a running devnet
    medledger loadtest ...                the load generator (see `medledger loadtest -h`)
    medledger testnet ...                 a chaos testnet in network namespaces (root)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ledger.errors import ConfigError, MedledgerError

DEFAULT_RPC = "http://127.0.0.1:8545/"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["loadtest"]:
        # The load tester parses its own options (argparse's REMAINDER would refuse a
        # first argument that looks like an option, such as -c or --help).
        from node.loadtest.command import main as loadtest_main

        return _guarded(lambda: int(loadtest_main(arguments[1:])))
    parser = _parser()
    args = parser.parse_args(arguments)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return _guarded(lambda: int(args.handler(args) or 0))


def _guarded(command: Callable[[], int]) -> int:
    try:
        return command()
    except MedledgerError as error:
        print(f"medledger: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medledger", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from node.version import VERSION

    parser.add_argument("--version", action="version", version=f"medledger {VERSION}")
    commands = parser.add_subparsers(metavar="COMMAND")
    _add_node_commands(commands)
    _add_tool_commands(commands)
    # Listed for `medledger --help` only: main() hands `loadtest ...` to the load tester.
    commands.add_parser("loadtest", help="load generator", add_help=False)
    return parser


def _add_node_commands(commands: Any) -> None:
    """Setting up and running a node: init, genesis, start, status, tx."""
    init = commands.add_parser("init", help="create a node key and config")
    init.add_argument("--dir", default=".", help="node directory (default: .)")
    init.add_argument("--rpc-port", type=int, default=8545)
    init.add_argument("--p2p-port", type=int, default=0)
    init.add_argument("--force", action="store_true", help="overwrite an existing config")
    init.set_defaults(handler=_init)

    genesis = commands.add_parser("genesis", help="write a consortium genesis file")
    genesis.add_argument("-m", "--members", required=True,
                         help="TOML file: chain_id, genesis_time_ms, [[member]] entries")
    genesis.add_argument("-o", "--output", default="genesis.json")
    genesis.add_argument("--genesis-time-ms", type=int,
                         help="the chain's start (ms since the epoch), if not in the file")
    genesis.add_argument("--force", action="store_true", help="overwrite an existing output")
    genesis.set_defaults(handler=_genesis)

    start = commands.add_parser("start", help="run a node")
    start.add_argument("-c", "--config", required=True)
    start.set_defaults(handler=_start)

    status = commands.add_parser("status", help="show a node's status")
    status.add_argument("--rpc", default=DEFAULT_RPC)
    status.set_defaults(handler=_status)

    tx = commands.add_parser("tx", help="transactions")
    tx_commands = tx.add_subparsers(metavar="ACTION")
    submit = tx_commands.add_parser("submit", help="sign (or take) a tx and submit it")
    submit.add_argument("--rpc", default=DEFAULT_RPC)
    submit.add_argument("--raw", help="an already signed tx, 0x-hex")
    submit.add_argument("--key", help="file with the signer's 32-byte seed (hex)")
    submit.add_argument("--type", help="tx type, e.g. CONSENT_REVOKE")
    submit.add_argument("--body", help="the body as JSON (field names as in the schema)")
    submit.add_argument("--nonce", type=int, help="default: milliseconds since the epoch")
    submit.add_argument("--chain-id", help="default: asked from the node")
    submit.add_argument("--wait", type=float, default=10.0,
                        help="seconds to wait for the commit (0: do not wait)")
    submit.set_defaults(handler=_tx_submit)


def _add_tool_commands(commands: Any) -> None:
    """Tools around nodes: devnet, simulate, demo, testnet."""
    devnet = commands.add_parser("devnet", help="run a local network on loopback")
    devnet.add_argument("--validators", type=int, default=3)
    devnet.add_argument("--observers", type=int, default=1)
    devnet.add_argument("--dir", default="devnet-data")
    devnet.add_argument("--rpc-port", type=int, default=8545,
                        help="first RPC port (node i listens on rpc-port + i)")
    devnet.add_argument("--chain-id", default="medledger-devnet")
    devnet.set_defaults(handler=_devnet)

    from consensus.sim.cli import add_arguments as add_simulate_arguments

    simulate = commands.add_parser("simulate", help="deterministic cluster simulator")
    add_simulate_arguments(simulate)
    simulate.set_defaults(handler=_simulate)

    demo = commands.add_parser("demo", help="play the healthcare story on a devnet")
    demo.add_argument("--rpc", default=DEFAULT_RPC)
    demo.add_argument("--dir", default="devnet-data",
                      help="the devnet directory (its consortium keys sign the story)")
    demo.set_defaults(handler=_demo)

    testnet = commands.add_parser("testnet", help="chaos testnet in network namespaces (root)")
    testnet.add_argument("--validators", type=int, default=3)
    testnet.add_argument("--observers", type=int, default=1)
    testnet.add_argument("--seconds", type=float, default=300.0)
    testnet.add_argument("--seed", type=int, default=1)
    testnet.add_argument("--rate", type=float, default=100.0, help="txs per second, all nodes")
    testnet.add_argument("--dir", default="testnet-data", help="node directories and logs")
    testnet.add_argument("--report-dir", default="reports", help="JSON and HTML reports")
    testnet.add_argument("--keep", action="store_true", help="keep the run's directory on a pass")
    from node.testnet import PLANTS

    testnet.add_argument("--plant", choices=PLANTS,
                         help="plant a bug in the first validator (to test the checker)")
    testnet.set_defaults(handler=_testnet)


# ---------------------------------------------------------------------------- handlers


def _init(args: argparse.Namespace) -> int:
    from ledger.crypto import SigningKey
    from node.config import NodeConfig, P2PSection, RpcSection, render_config
    from node.keys import write_key_file
    from node.p2p.identity import peer_id_from_public_key

    directory = Path(args.dir)
    config_path = directory / "node.toml"
    key_path = directory / "node.key"
    if config_path.exists() and not args.force:
        print(f"medledger: {config_path} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    if key_path.exists():
        from node.keys import read_key_file

        key = read_key_file(key_path)
    else:
        key = SigningKey.generate()
        write_key_file(key_path, key)
    config = NodeConfig(
        p2p=P2PSection(listen=f"/ip4/127.0.0.1/tcp/{args.p2p_port}"),
        rpc=RpcSection(port=args.rpc_port),
    )
    directory.mkdir(parents=True, exist_ok=True)
    config_path.write_text(render_config(config))
    print(json.dumps({
        "config": str(config_path),
        "key_file": str(key_path),
        "node_public_key": key.public_key.hex(),
        "peer_id": peer_id_from_public_key(key.public_key),
    }, indent=2))
    return 0


def _genesis(args: argparse.Namespace) -> int:
    from node.genesis import genesis_from_members_file, genesis_hash, write_genesis

    output = Path(args.output)
    if output.exists() and not args.force:
        raise ConfigError(f"{output} exists: a genesis is never overwritten unless you pass "
                          "--force (nodes started from the old one would refuse the new)")
    genesis = genesis_from_members_file(Path(args.members),
                                        genesis_time_ms=args.genesis_time_ms)
    write_genesis(output, genesis)
    print(f"wrote {args.output}: chain {genesis.chain_id}, "
          f"hash 0x{genesis_hash(genesis).hex()}")
    return 0


def _start(args: argparse.Namespace) -> int:
    from node.run import run_node

    return run_node(Path(args.config))


def _devnet(args: argparse.Namespace) -> int:
    from node.tools.devnet import run_devnet

    return run_devnet(
        Path(args.dir), validators=args.validators, observers=args.observers,
        rpc_port=args.rpc_port, chain_id=args.chain_id,
    )


def _testnet(args: argparse.Namespace) -> int:
    from node.testnet.run import main_from_args

    return main_from_args(args)


def _status(args: argparse.Namespace) -> int:
    from node.client import RpcClient

    with RpcClient(args.rpc) as client:
        print(json.dumps(client.call("node_status"), indent=2))
    return 0


def _tx_submit(args: argparse.Namespace) -> int:
    from node.tools.txcli import submit_from_args

    result = submit_from_args(args)
    print(json.dumps(result, indent=2))
    return 0 if result.get("committed", result.get("accepted")) else 1


def _simulate(args: argparse.Namespace) -> int:
    from consensus.sim.cli import run_simulate

    return int(run_simulate(args))


def _demo(args: argparse.Namespace) -> int:
    from node.tools.demo import run_demo_against

    report = run_demo_against(args.rpc, Path(args.dir))
    return 0 if report.all_matched else 1


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    sys.exit(main())
