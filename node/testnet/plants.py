"""Bugs planted on purpose, to show the history checker catches them (testing only).

``python -m node.testnet.plants BUG start -c node.toml`` is ``medledger start`` with BUG
planted in that process; ``medledger testnet --plant BUG`` runs its first validator that
way. Nothing here is imported by a node that was not started through this module.

- ``ack-early``: the node tells its clients a tx committed as soon as it admits it, at
  the next height and the tx's position in its submitted batch: an acknowledgement before
  any commit, let alone a durable one. The history check must report those acks lost.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import Any

import trio

from ledger.results import ResultCode

PLANTS = ("ack-early",)


def install(name: str) -> None:
    if name not in PLANTS:
        raise SystemExit(f"unknown plant {name!r}; plants: {', '.join(PLANTS)}")
    from node.api import TxResultEvent
    from node.service import Node

    original = Node.submit

    async def submit_and_ack_at_once(self: Any, raws: Sequence[bytes]) -> Any:
        answers = await original(self, raws)
        height = self._chain().height + 1
        for position, answer in enumerate(answers):
            if answer.tx_id is None or answer.code is not ResultCode.OK:
                continue
            event = TxResultEvent(answer.tx_id, height, position, int(ResultCode.OK))
            for channel in list(self._subscribers.results):
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    channel.send_nowait(event)
        return answers

    Node.submit = submit_and_ack_at_once  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments:
        raise SystemExit(f"usage: python -m node.testnet.plants {{{','.join(PLANTS)}}} "
                         "start -c node.toml")
    install(arguments[0])
    from node.cli import main as cli_main

    return cli_main(arguments[1:])


if __name__ == "__main__":
    sys.exit(main())
