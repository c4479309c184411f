"""The ``medledger`` command line.

    medledger keygen -o FILE              a member's admin key (prints its public key)
    medledger init --dir DIR --listen ... node key + commented config for one node
    medledger genesis -m members.toml     consortium genesis from members' public keys
    medledger start -c node.toml          run a node (SIGTERM/Ctrl-C: graceful stop)
    medledger devnet                      a local network of validators and observers
    medledger status --rpc URL            a node's status
    medledger tx submit ...               sign and submit a transaction
    medledger member propose|vote|list    consortium governance: proposals and votes
    medledger snapshot save|restore|verify  backups: a node's state in one checked file
    medledger simulate ...                the deterministic cluster simulator
    medledger demo --rpc URL              the healthcare story against a running devnet
    medledger disclosures --patient ID    a patient's accounting of disclosures (HIPAA)
    medledger proof tx TX_ID -o FILE      a tx's proof against certified headers
    medledger proof trail --patient ID    a patient's whole access trail, as a proof
    medledger verify FILE --genesis F     check a proof offline, against the genesis file
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
    """Setting up and running a node: keygen, init, genesis, start, status, tx, member."""
    keygen = commands.add_parser("keygen", help="make a member's admin key (Ed25519)")
    keygen.add_argument("-o", "--output", required=True,
                        help="the key file to write (mode 0600)")
    keygen.add_argument("--force", action="store_true", help="overwrite an existing file")
    keygen.set_defaults(handler=_bad_input_exits_2(_keygen))

    init = commands.add_parser("init", help="create a node key and a commented config")
    init.add_argument("--dir", default=".", help="node directory (default: .)")
    init.add_argument("--listen", metavar="MULTIADDR",
                      help="p2p address, e.g. /ip4/0.0.0.0/tcp/30333 (default: "
                           "/ip4/127.0.0.1/tcp/<--p2p-port>)")
    init.add_argument("--p2p-port", type=int,
                      help="p2p port on 127.0.0.1, when --listen is not given (default: 0, "
                           "a random port)")
    init.add_argument("--rpc-host", default="127.0.0.1")
    init.add_argument("--rpc-port", type=int, default=8545)
    init.add_argument("--bootstrap", action="append", default=[], metavar="MULTIADDR",
                      help="a peer's full address, ending /p2p/<peer id> (repeatable)")
    init.add_argument("--genesis", metavar="FILE",
                      help="the genesis file (default: genesis.json beside node.toml)")
    init.add_argument("--data-dir", help="the data directory (default: data beside node.toml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing config")
    init.set_defaults(handler=_bad_input_exits_2(_init))

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
    _add_member_commands(commands)
    _add_snapshot_commands(commands)


def _add_member_commands(commands: Any) -> None:
    """Consortium governance: PROPOSE_MEMBER and VOTE, and the members as the node sees."""
    member = commands.add_parser("member", help="consortium members: propose, vote, list")
    actions = member.add_subparsers(metavar="ACTION")
    propose = actions.add_parser("propose", help="propose to add or remove a member, or "
                                                 "to revoke a member's key")
    vote = actions.add_parser("vote", help="vote on an open proposal")
    listing = actions.add_parser("list", help="members and proposals")
    for parser in (propose, vote, listing):
        parser.add_argument("--rpc", default=DEFAULT_RPC)
    for parser in (propose, vote):
        parser.add_argument("--key", required=True, metavar="FILE",
                            help="your member's admin key file (`medledger keygen`)")
        parser.add_argument("--proposal-id", required=True,
                            help="the proposal's id, e.g. add-clinic-2026")
        parser.add_argument("--wait", type=float, default=10.0,
                            help="seconds to wait for the commit (0: do not wait)")
    from node.tools.members import ACTIONS, KINDS

    propose.add_argument("--action", choices=list(ACTIONS), default="add")
    propose.add_argument("--org-id", required=True, help="the member the proposal is about")
    propose.add_argument("--kind", choices=list(KINDS), help="the new member's kind (add)")
    propose.add_argument("--admin-key", help="its admin public key, hex (add; for "
                                             "revoke-key the key to revoke)")
    propose.add_argument("--node-key", help="its node's public key (hex) or peer id")
    propose.add_argument("--validator", action="store_true",
                         help="the new member's node becomes a validator")
    propose.add_argument("--evidence-hash", help="SHA-256 (hex) of the evidence document")
    propose.add_argument("--evidence-file", help="the evidence document (its SHA-256 is "
                                                 "sent, never the file)")
    propose.add_argument("--deadline-days", type=int, default=7,
                         help="days the proposal stays open (default: 7)")
    propose.set_defaults(handler=_bad_input_exits_2(_member_propose))
    vote.add_argument("--reject", action="store_true", help="vote against (default: for)")
    vote.set_defaults(handler=_bad_input_exits_2(_member_vote))
    listing.set_defaults(handler=_member_list)


SNAPSHOT_HELP = """\
A snapshot file holds one consistent state of the chain at one height: the chain id, the
genesis hash, the height, the head block, the state root and the state, with a SHA-256
over all of it. `restore` checks the whole file, and that it is of the chain of the
genesis file given, before it writes anything; it imports the state, checks that it adds
up to the file's state root, and makes an OBSERVER's data directory at that height: the
node started on it follows the chain by block sync from there. It holds no Raft state
(term, vote, log): a validator is not restored from a file (it could vote twice in a
term); restore its data directory as an observer's, or rejoin it with a new one."""


def _add_snapshot_commands(commands: Any) -> None:
    """Backups: snapshot save (running node over RPC, or stopped node), restore, verify."""
    snapshot = commands.add_parser(
        "snapshot", help="backups: save a node's state to a file, restore it",
        description=SNAPSHOT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = snapshot.add_subparsers(metavar="ACTION")
    save = actions.add_parser(
        "save", help="save the state of a running node (--rpc) or a stopped one "
                     "(--data-dir)", description=SNAPSHOT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    source = save.add_mutually_exclusive_group(required=True)
    source.add_argument("--rpc", metavar="URL",
                        help="a running node's RPC (admin methods: give --token)")
    source.add_argument("--data-dir", metavar="DIR", help="a stopped node's data directory")
    save.add_argument("--token", help="the node's [rpc] admin_token (--rpc)")
    save.add_argument("--genesis", metavar="FILE", help="the chain's genesis file (--data-dir)")
    save.add_argument("-o", "--output", required=True, help="the snapshot file to write")
    save.add_argument("--force", action="store_true", help="overwrite an existing file")
    save.set_defaults(handler=_bad_input_exits_2(_snapshot_save))
    restore = actions.add_parser(
        "restore", help="make a new (observer's) data directory from a snapshot file",
        description=SNAPSHOT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    restore.add_argument("file", help="the snapshot file")
    restore.add_argument("--dir", required=True,
                         help="the data directory to make (new or empty): the node's "
                              "[node] data_dir")
    restore.add_argument("--genesis", required=True, metavar="FILE",
                         help="the chain's genesis file: a snapshot of another chain is "
                              "refused")
    restore.set_defaults(handler=_bad_input_exits_2(_snapshot_restore))
    verify = actions.add_parser("verify", help="check a snapshot file and show what it holds")
    verify.add_argument("file", help="the snapshot file")
    verify.set_defaults(handler=_snapshot_verify)


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

    _add_disclosures_command(commands)

    proof = commands.add_parser("proof", help="write a proof a patient can check offline")
    proof_kinds = proof.add_subparsers(dest="proof_kind", required=True)
    proof_tx = proof_kinds.add_parser(
        "tx", help="a tx's inclusion in a block certified by the validators in force")
    proof_tx.add_argument("tx_id", metavar="TX_ID")
    proof_tx.add_argument("--rpc", default=DEFAULT_RPC, metavar="URL")
    proof_tx.add_argument("-o", "--output", required=True, metavar="FILE")
    proof_tx.add_argument("--force", action="store_true", help="overwrite FILE")
    proof_tx.set_defaults(handler=_bad_input_exits_2(_proof_tx))
    proof_trail = proof_kinds.add_parser(
        "trail", help="a patient's whole access trail, as a certified header commits to it")
    proof_trail.add_argument("--patient", required=True, metavar="ID")
    proof_trail.add_argument("--rpc", default=DEFAULT_RPC, metavar="URL")
    proof_trail.add_argument("-o", "--output", required=True, metavar="FILE")
    proof_trail.add_argument("--force", action="store_true", help="overwrite FILE")
    proof_trail.set_defaults(handler=_bad_input_exits_2(_proof_trail))

    verify = commands.add_parser(
        "verify", help="check a proof file against the genesis file alone (no node)")
    verify.add_argument("file", metavar="FILE")
    verify.add_argument("--genesis", required=True, metavar="genesis.json")
    verify.set_defaults(handler=_bad_input_exits_2(_verify))

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


DISCLOSURES_HELP = """\
A patient's accounting of disclosures (HIPAA 45 CFR 164.528): every key grant of the
patient's records to another party (under a consent or a break-glass) and every
break-glass opened on the patient, with date, recipient, what was disclosed, purpose,
basis and ledger tx, from the node's audit_disclosures query. The period defaults to the
six years up to the last block; --from and --to take an ISO 8601 date (2026-03-31, a
whole day in UTC) or date-time (2026-03-31T14:00:00Z). --format fhir writes a FHIR R5
Bundle of AuditEvents, validated here (on the client) before it is written."""


def _add_disclosures_command(commands: Any) -> None:
    disclosures = commands.add_parser(
        "disclosures", help="a patient's accounting of disclosures (table or FHIR R5)",
        description=DISCLOSURES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    disclosures.add_argument("--patient", required=True, help="the patient's party id")
    disclosures.add_argument("--rpc", default=DEFAULT_RPC, metavar="URL")
    disclosures.add_argument("--from", dest="from_date", metavar="ISO-DATE",
                             help="first day (or instant) of the period")
    disclosures.add_argument("--to", dest="to_date", metavar="ISO-DATE",
                             help="last day (or instant) of the period")
    from node.tools.disclosures import FORMATS

    disclosures.add_argument("--format", choices=FORMATS, default="table",
                             help="table (default) or fhir (a FHIR R5 Bundle, JSON)")
    disclosures.add_argument("-o", "--output", metavar="FILE",
                             help="write to FILE instead of standard output")
    disclosures.add_argument("--force", action="store_true", help="overwrite FILE")
    disclosures.set_defaults(handler=_bad_input_exits_2(_disclosures))


# ---------------------------------------------------------------------------- handlers


# Exit code of a command refused for a bad input (as `medledger start` refuses one).
EXIT_BAD_INPUT = 2


def _bad_input_exits_2(handler: Callable[[argparse.Namespace], int]
                       ) -> Callable[[argparse.Namespace], int]:
    """A handler whose ConfigError (a bad flag, file or value) ends the command with one
    line ``medledger: ...`` and exit code 2."""

    def checked(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ConfigError as error:
            print(" ".join(f"medledger: {error}".split()), file=sys.stderr)
            return EXIT_BAD_INPUT

    return checked


def _proof_tx(args: argparse.Namespace) -> int:
    from node.tools.proofs import write_tx_proof

    print(json.dumps(write_tx_proof(args.rpc, args.tx_id, Path(args.output),
                                    force=args.force), indent=2))
    return 0


def _proof_trail(args: argparse.Namespace) -> int:
    from node.tools.proofs import write_trail_proof

    print(json.dumps(write_trail_proof(args.rpc, args.patient, Path(args.output),
                                       force=args.force), indent=2))
    return 0


def _verify(args: argparse.Namespace) -> int:
    """Exit 0 and say what is proven; exit 1 naming the check that failed."""
    from node.tools.proofs import ProofError, verify_file

    try:
        proven = verify_file(Path(args.file), Path(args.genesis))
    except ProofError as error:
        print(f"medledger: the proof does not hold: {error}", file=sys.stderr)
        return 1
    print(proven.statement())
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from node.tools.consortium import keygen

    print(json.dumps(keygen(Path(args.output), force=args.force), indent=2))
    return 0


def _init(args: argparse.Namespace) -> int:
    from node.tools.consortium import InitRequest, init_node

    if args.listen is not None and args.p2p_port is not None:
        raise ConfigError("give --listen or --p2p-port, not both")
    listen = args.listen or f"/ip4/127.0.0.1/tcp/{args.p2p_port or 0}"
    printed = init_node(InitRequest(
        directory=Path(args.dir), listen=listen, rpc_host=args.rpc_host,
        rpc_port=args.rpc_port, bootstrap=tuple(args.bootstrap), genesis_file=args.genesis,
        data_dir=args.data_dir, force=args.force,
    ))
    print(json.dumps(printed, indent=2))
    return 0


def _member_propose(args: argparse.Namespace) -> int:
    from node.tools.members import propose, succeeded

    answer = propose(args)
    print(json.dumps(answer, indent=2))
    return 0 if succeeded(answer) else 1


def _member_vote(args: argparse.Namespace) -> int:
    from node.tools.members import succeeded, vote

    answer = vote(args)
    print(json.dumps(answer, indent=2))
    return 0 if succeeded(answer) else 1


def _member_list(args: argparse.Namespace) -> int:
    from node.tools.members import list_members

    print(json.dumps(list_members(args.rpc), indent=2))
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


def _snapshot_save(args: argparse.Namespace) -> int:
    from node.tools.snapshot import save_from_data_dir, save_from_rpc, summary_view

    output = Path(args.output)
    if args.rpc is not None:
        if args.genesis is not None:
            raise ConfigError("--genesis goes with --data-dir (the node knows its chain)")
        summary = save_from_rpc(args.rpc, output, token=args.token, force=args.force)
    else:
        if args.genesis is None:
            raise ConfigError("--data-dir needs --genesis FILE (the chain's genesis file)")
        if args.token is not None:
            raise ConfigError("--token goes with --rpc")
        summary = save_from_data_dir(Path(args.data_dir), Path(args.genesis), output,
                                     force=args.force)
    print(json.dumps({"saved": True, **summary_view(output, summary)}, indent=2))
    return 0


def _snapshot_restore(args: argparse.Namespace) -> int:
    from node.tools.snapshot import restore

    report = restore(Path(args.file), Path(args.dir), Path(args.genesis))
    print(json.dumps(report.view(), indent=2))
    return 0


def _snapshot_verify(args: argparse.Namespace) -> int:
    from node.tools.snapshot import summary_view
    from storage.backup import verify_snapshot_file

    path = Path(args.file)
    print(json.dumps({"verified": True, **summary_view(path, verify_snapshot_file(path))},
                     indent=2))
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


def _disclosures(args: argparse.Namespace) -> int:
    from node.tools.disclosures import (
        fetch_accounting,
        render,
        time_ms_from_user,
        write_output,
    )

    from_ms = None if args.from_date is None else time_ms_from_user(args.from_date, "--from")
    to_ms = None if args.to_date is None else time_ms_from_user(args.to_date, "--to",
                                                                end_of_day=True)
    accounting = fetch_accounting(args.rpc, args.patient, from_ms=from_ms, to_ms=to_ms)
    write_output(render(accounting, args.format), args.output, force=args.force)
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    sys.exit(main())
