"""The pruner: an observer with ``[storage] retain_blocks = N`` keeps the bodies of its
newest N blocks and deletes older ones, in the background.

It listens to the applier's events; once PRUNE_BATCH_BLOCKS_MAX blocks lie below the
newest N, it deletes them oldest first, one bounded LevelDB batch at a time
(storage.blockstore.BlockStore.prune_blocks_below), each batch run through the applier
like any other write: applies wait for at most one small batch, never for a whole pass.
So a node that prunes steadily holds between N and N + PRUNE_BATCH_BLOCKS_MAX blocks.

Validators never prune: their peers (a validator catching up after a snapshot, an
observer syncing from genesis) may need any block. The node says so in one WARNING at
start; a node that governance makes a validator later stops pruning then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from node.applier import Applier
from node.chain import Chain
from node.events import Applied
from storage.blockstore import GENESIS_HEIGHT, PRUNE_BATCH_BLOCKS_MAX


class Pruner:
    def __init__(self, *, chain: Chain, applier: Applier, retain_blocks: int,
                 is_validator: Callable[[], bool], log: Any,
                 batch_blocks: int = PRUNE_BATCH_BLOCKS_MAX) -> None:
        assert retain_blocks >= 1, "the pruner runs only when retain_blocks is set"
        assert 0 < batch_blocks <= PRUNE_BATCH_BLOCKS_MAX
        self._chain = chain
        self._applier = applier
        self._retain_blocks = retain_blocks
        self._is_validator = is_validator
        self._log = log
        self._batch_blocks = batch_blocks
        self._wakeup = trio.Event()
        self._warned_validator = False
        self.batches = 0
        self.blocks_pruned = 0

    def statistics(self) -> dict[str, int]:
        return {"batches": self.batches, "blocks_pruned": self.blocks_pruned,
                "oldest_block_height": self._chain.blocks.oldest_held_height()}

    def keep_from(self) -> int:
        """The oldest height to keep now: the newest ``retain_blocks`` blocks stay."""
        return max(GENESIS_HEIGHT + 1, self._chain.height - self._retain_blocks + 1)

    def prunable_blocks(self) -> int:
        oldest = max(GENESIS_HEIGHT + 1, self._chain.blocks.oldest_held_height())
        return max(0, self.keep_from() - oldest)

    def on_applied(self, event: Applied) -> None:
        if event.applied is not None and self.prunable_blocks() >= self._batch_blocks:
            self._wakeup.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if self._is_validator():
            self._warned_validator = True
            self._log.warning("[storage] retain_blocks is ignored on a validator: its peers "
                              "may still need every block, so it keeps them all",
                              retain_blocks=self._retain_blocks)
        # At start, whatever piled up while stopped (or before retain_blocks was set).
        await self.prune()
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            await self.prune()
        raise AssertionError("the pruner should never complete")

    async def prune(self) -> int:
        """Delete every block body below :meth:`keep_from`, one batch at a time. Returns
        the number of heights deleted."""
        pruned = 0
        blocks = self._chain.blocks
        while self.prunable_blocks() > 0:
            if self._is_validator():
                if not self._warned_validator:
                    self._warned_validator = True
                    self._log.warning("this node is a validator now: pruning stopped "
                                      "([storage] retain_blocks is ignored on validators)",
                                      oldest_block_height=blocks.oldest_held_height())
                return pruned
            keep_from = self.keep_from()
            deleted = await self._applier.apply_in_thread(
                lambda target: blocks.prune_blocks_below(target, blocks_max=self._batch_blocks),
                keep_from)
            pruned += deleted
            self.batches += 1
            self.blocks_pruned += deleted
            await trio.lowlevel.checkpoint()  # whoever waits to apply goes first
        if pruned:
            self._log.info("blocks pruned", blocks=pruned,
                           oldest_block_height=blocks.oldest_held_height(),
                           retain_blocks=self._retain_blocks)
        return pruned
