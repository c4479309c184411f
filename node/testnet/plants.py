"""Bugs planted on purpose, to show the history checker catches them (testing only).

``python -m node.testnet.plants BUG start -c node.toml`` is ``medledger start`` with BUG
planted in that process; ``medledger testnet --plant BUG`` runs its first validator that
way. Nothing here is imported by a node that was not started through this module.

- ``ack-early``: the node tells its clients a tx committed as soon as it admits it, at
  the next height and the tx's position in its submitted batch: an acknowledgement before
  any commit, let alone a durable one. The history check must report those acks lost.
- ``apply-twice``: the first block at or above height APPLY_TWICE_HEIGHT with txs is
  applied twice: the next committed block entry applies a copy of it as the next height
  (its txs again, in a block no other node has). The history check must report
  duplicates and a divergent height.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from ledger.results import ResultCode
from node.testnet import PLANTS

APPLY_TWICE_HEIGHT = 20


def install(name: str) -> None:
    if name not in PLANTS:
        raise SystemExit(f"unknown plant {name!r}; plants: {', '.join(PLANTS)}")
    if name == "apply-twice":
        _install_apply_twice()
    else:
        _install_ack_early()


def _install_apply_twice() -> None:
    from consensus.types import EntryType
    from ledger.block import decode_block, make_block
    from ledger.crypto import SigningKey
    from node.chain import ApplyResult, Chain

    original = Chain.apply_entry
    state: dict[str, Any] = {"done": False, "again": None}

    def apply_entry_twice(self: Any, entry: Any) -> Any:
        again = state["again"]
        if again is not None and entry.type is EntryType.NORMAL and entry.data and \
                entry.index > self.blocks.applied_index():
            # The next block entry applies the copy instead (the applied index must move);
            # the copy carries that block's certificate of its predecessor, as it must to
            # be read back at all (ledger.block.decode_block).
            state["again"] = None
            real = decode_block(entry.data, chain_id=self.chain_id)
            block, header = again
            copy = make_block(
                SigningKey.generate(), chain_id=self.chain_id, height=header.height + 1,
                previous_hash=block.hash, timestamp_ms=header.timestamp_ms + 1,
                txs=list(block.txs), state_height=header.state_height,
                results_root=header.results_root, state_root=header.state_root,
                raft_term=header.raft_term, raft_index=entry.index,
                validators_hash=header.next_validators_hash,
                next_validators_hash=header.next_validators_hash,
                certificate=real.certificate, trails_root=header.trails_root)
            applied = self._apply_block(copy, copy.tx_ids(), copy.encode(),
                                        applied_index=entry.index)
            return ApplyResult(entry.index, applied=applied, tx_ids_in_entry=copy.tx_ids())
        result = original(self, entry)
        applied = result.applied
        if state["done"] or applied is None or not applied.block.txs or \
                applied.block.header.height < APPLY_TWICE_HEIGHT:
            return result
        state["done"] = True
        state["again"] = (applied.block, applied.block.header)
        return result

    Chain.apply_entry = apply_entry_twice  # type: ignore[method-assign]


def _install_ack_early() -> None:
    from node.api import TxResultEvent
    from node.service import Node

    original = Node.submit

    async def submit_and_ack_at_once(self: Any, raws: Sequence[bytes]) -> Any:
        answers = await original(self, raws)
        height = self._chain().height + 1
        for position, answer in enumerate(answers):
            if answer.tx_id is None or answer.code is not ResultCode.OK:
                continue
            self.feeds.send_result(
                TxResultEvent(answer.tx_id, height, position, int(ResultCode.OK)))
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
