"""``medledger start``: one node process, with signal handling and a clear exit code.

Exit codes: 0 after a clean stop; 2 when the node could not start (a bad config, a
missing genesis or key file, a data directory in use or made for another chain, a port
in use): one line ``medledger: ...`` on stderr with the hint that fixes it; 1 when a
running node failed (the JSON log says why, with the traceback); 130 on Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import trio

from ledger.errors import MedledgerError
from node.keys import read_key_file
from node.logs import bind_process_context, configure_logging, get_logger
from node.p2p.identity import peer_id_from_seed
from node.rpc.server import RpcBindError
from storage.errors import ChainMismatchError, DataDirectoryInUseError, SchemaMismatchError

EXIT_STARTUP_FAILED = 2

# Hints that fix a start-up error, by its type (the message already says what is wrong).
HINTS: dict[type[Exception], str] = {
    DataDirectoryInUseError: "stop the other node, or give this one its own [node] data_dir",
    ChainMismatchError: "point [node] genesis_file at this chain's genesis, or use another "
                        "[node] data_dir",
    SchemaMismatchError: "use a data directory made by this medledger version",
    RpcBindError: "choose another [rpc] port or host",
}


def run_node(config_path: Path) -> int:
    try:
        config = _load(config_path)
    except MedledgerError as error:
        return _startup_failed(error)
    configure_logging(level=config.log.level, format=config.log.format)
    log = get_logger()
    started: list[bool] = []
    try:
        trio.run(_serve, config, started)
    except BaseException as raised:
        if isinstance(raised, KeyboardInterrupt):
            return 130
        failure = _single_error(raised)
        if failure is not None and not started:
            return _startup_failed(failure)
        if failure is not None:
            log.error("node stopped", error=str(failure), error_type=type(failure).__name__)
            return 1
        log.exception("node crashed", error_type=type(raised).__name__)
        return 1
    log.info("node stopped cleanly")
    return 0


def _load(config_path: Path) -> Any:
    from node.config import load_config

    config = load_config(config_path)
    bind_process_context(node=peer_id_from_seed(read_key_file(config.key_file).seed))
    return config


def _single_error(raised: BaseException) -> MedledgerError | None:
    """The one MedledgerError that ``raised`` is or wraps (nurseries wrap what their tasks
    raise in exception groups), or None."""
    while isinstance(raised, BaseExceptionGroup) and len(raised.exceptions) == 1:
        raised = raised.exceptions[0]
    return raised if isinstance(raised, MedledgerError) else None


def _startup_failed(error: MedledgerError) -> int:
    hint = next((text for kind, text in HINTS.items() if isinstance(error, kind)), None)
    line = f"medledger: {error}" + (f" ({hint})" if hint else "")
    print(" ".join(line.split()), file=sys.stderr)
    return EXIT_STARTUP_FAILED


async def _serve(config: Any, started: list[bool]) -> None:
    from node.service import Node

    node = Node(config)
    log = get_logger()
    # Once shutting down, a further SIGTERM/SIGINT (Ctrl-C reaches the whole process group,
    # and a supervisor such as `medledger devnet` then sends SIGTERM too) must not kill
    # the node half way through closing LevelDB. Trio hands signals still pending when
    # the receiver closes to the handlers from before it: make those ignore them.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            started.append(True)

            async def stop_on_signal() -> None:
                async for received in signals:
                    log.info("shutting down", signal=signal.Signals(received).name)
                    await node.hand_over_leadership()
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)


__all__ = ["run_node"]
