"""``medledger start``: one node process, with signal handling and a clear exit code."""

from __future__ import annotations

import signal
from pathlib import Path

import trio

from ledger.errors import MedledgerError
from node.config import NodeConfig, load_config
from node.keys import read_key_file
from node.logs import bind_process_context, configure_logging, get_logger
from node.p2p.identity import peer_id_from_seed


def run_node(config_path: Path) -> int:
    config = load_config(config_path)
    configure_logging(level=config.log.level, format=config.log.format)
    log = get_logger()
    try:
        bind_process_context(node=peer_id_from_seed(read_key_file(config.key_file).seed))
        trio.run(_serve, config)
    except MedledgerError as error:
        log.error("node stopped", error=str(error), error_type=type(error).__name__)
        return 1
    except BaseException as error:  # a crashed service: say so, exit non-zero
        if isinstance(error, KeyboardInterrupt):
            return 130
        log.exception("node crashed", error_type=type(error).__name__)
        return 1
    log.info("node stopped cleanly")
    return 0


async def _serve(config: NodeConfig) -> None:
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

            async def stop_on_signal() -> None:
                async for received in signals:
                    log.info("shutting down", signal=signal.Signals(received).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
