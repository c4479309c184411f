"""The Raft driver: the one task that owns the RawNode and honours its Ready contract.

Inputs (ticks, peer messages, proposals) are fed to the RawNode from the Trio thread,
then the loop takes each Ready and:

1. persists it (one LevelDB batch, fsync when ``must_sync``) in a worker thread, so the
   Trio loop keeps serving while the disk syncs;
2. sends its messages, batched into one frame per peer;
3. applies membership changes of committed CONF_CHANGE entries at once (they depend only
   on the log) and hands every committed entry, in order, to the apply task through a
   bounded channel (signature checks and the application run there, off this loop, so
   heartbeats are never late because a big block is being applied);
4. advances.

Snapshots and log compaction are also done here, because this task owns the raft storage.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from consensus.errors import InvalidMessageError, UnknownPeerError
from consensus.ports import RaftStorage
from consensus.raw_node import RawNode, Ready
from consensus.ready import (
    ConfChangeApplied,
    Persist,
    Restore,
    Send,
    SoftStateChanged,
    ready_steps,
)
from consensus.state import ProposalOutcome, Role, SoftState
from consensus.types import (
    ConfChange,
    Entry,
    Message,
    decode_messages,
    encode_messages,
    message_batches,
)
from ledger.errors import DecodeError, RemoteError
from node.diskfull import DiskFullGuard
from node.logs import get_logger
from node.p2p.limits import RAFT_FRAME_BYTES_MAX
from node.p2p.transport import MessageTooLargeError, Transport

# Committed entries waiting for the apply task. Generous: the leader caps its own
# pipeline (block.max_inflight); this bound only stops a follower that cannot keep up
# from buffering without limit.
APPLY_QUEUE_ENTRIES_MAX = 4096
# Messages in one frame (the consensus codec's batch limit is 4096), and the bytes one
# frame aims at: half the frame limit, so a snapshot message fits alone. (A leader whose
# sends stalled on a paused peer once batched 159 MB of appends for one follower into one
# frame, which the transport refuses: the node stopped.)
FRAME_MESSAGES_MAX = 1024
FRAME_BYTES_TARGET = RAFT_FRAME_BYTES_MAX // 2
# Proposals whose commit time is being measured (entries lost to a leader change are
# never committed here; the bound keeps their timestamps from piling up).
PROPOSALS_TIMED_MAX = 1024
# How often a leader handing over checks whether it still leads.
HANDOVER_POLL_S = 0.005


@dataclass(frozen=True, slots=True)
class SnapshotToRestore:
    """Put on the apply channel when Raft installed a snapshot: the application must
    catch up (by block sync) to the snapshot's height before applying later entries."""

    index: int
    data: bytes


ApplyItem = Entry | SnapshotToRestore


class RaftDriver:
    def __init__(
        self,
        *,
        raw_node: RawNode,
        storage: RaftStorage,
        transport: Transport,
        peer_of: Callable[[int], str | None],
        node_of: Callable[[str], int | None],
        tick_seconds: float,
        apply_channel: trio.MemorySendChannel[ApplyItem],
        on_soft_state: Callable[[SoftState], None],
        snapshot_entries: int,
        compaction_margin_entries: int,
        disk: DiskFullGuard,
        metrics: Any = None,
        log: Any = None,
    ) -> None:
        self.raw_node = raw_node
        self._disk = disk
        self._storage = storage
        self._transport = transport
        self._peer_of = peer_of
        self._node_of = node_of
        self._tick_seconds = tick_seconds
        self._apply_channel = apply_channel
        self._on_soft_state = on_soft_state
        self._snapshot_entries = snapshot_entries
        self._compaction_margin_entries = compaction_margin_entries
        self._metrics = metrics
        self._wakeup = trio.Event()
        self._log = (log if log is not None else get_logger()).bind(component="raft")
        self._last_snapshot_index = storage.snapshot().metadata.index
        self._snapshot_due: tuple[int, bytes] | None = None
        self._proposed_at: dict[int, float] = {}
        self.role = Role.FOLLOWER
        self.leader = 0
        self.term_start_index = 0  # first index of our term while we lead

    # ------------------------------------------------------------------ inputs

    def wake(self) -> None:
        self._wakeup.set()

    async def hand_over_leadership(self, *, timeout_s: float) -> int | None:
        """On the leader, before it stops: hand leadership to the voter whose log matches
        ours furthest (etcd does the same), so the cluster is not without a leader until an
        election notices us gone; wait until we are a follower. Returns the target's raft
        id, or None when we do not lead, have no other active voter, or the transfer did
        not finish within ``timeout_s`` (logged either way when we led)."""
        if self.raw_node.status().soft_state.role is not Role.LEADER:
            return None
        started = time.perf_counter()
        target: int | None = None
        candidates: list[Any] = []
        with trio.move_on_after(timeout_s):
            # Every election timeout the leader forgets who was active until they answer
            # again (check-quorum): a stop in that window waits for the next answers.
            while not candidates:
                status = self.raw_node.status()
                if status.soft_state.role is not Role.LEADER:
                    break
                voters = set(status.conf_state.voters) - {status.node_id}
                if not voters:
                    break  # no one to hand over to
                candidates = [peer for peer in status.peers
                              if peer.node_id in voters and peer.recent_active]
                if not candidates:
                    await trio.sleep(HANDOVER_POLL_S)
            if candidates:
                chosen = max(candidates, key=lambda peer: (peer.match, -peer.node_id)).node_id
                self.raw_node.transfer_leadership(chosen)
                self.wake()
                while self.role is Role.LEADER:
                    await trio.sleep(HANDOVER_POLL_S)
                target = chosen
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        if target is None:
            self._log.warning("leadership not handed over before stopping",
                              waited_ms=elapsed_ms, candidates=len(candidates))
        else:
            self._log.info("leadership handed over", to=self._peer_of(target),
                           raft_target=target, elapsed_ms=elapsed_ms)
        return target

    async def handle_frame(self, peer_id: str, frame: bytes) -> None:
        """A frame of raft messages from ``peer_id``: each must claim to be from the node
        id that peer has (a validator cannot speak for another)."""
        sender = self._node_of(peer_id)
        if sender is None:
            self._log.warning("raft frame from a non-validator refused", peer=peer_id)
            return
        try:
            messages = decode_messages(frame)
        except DecodeError as error:
            self._log.warning("undecodable raft frame", peer=peer_id, error=str(error))
            return
        for message in messages:
            if message.from_ != sender:
                self._log.warning("raft message with a forged sender", peer=peer_id)
                continue
            try:
                self.raw_node.step(message)
            except (InvalidMessageError, UnknownPeerError, RemoteError) as error:
                self._log.info("raft message refused", peer=peer_id, error=str(error))
        self.wake()

    def propose(self, data: bytes) -> ProposalOutcome:
        outcome = self.raw_node.propose(data)
        # propose-to-commit time, for the "replication" stage histogram
        if outcome is ProposalOutcome.APPENDED and len(self._proposed_at) < PROPOSALS_TIMED_MAX:
            self._proposed_at[self.raw_node.status().last_index] = time.perf_counter()
        self.wake()
        return outcome

    def propose_conf_change(self, change: ConfChange) -> ProposalOutcome:
        outcome = self.raw_node.propose_conf_change(change)
        self.wake()
        return outcome

    def note_applied(self, index: int, snapshot_data: Callable[[], bytes]) -> None:
        """The apply task finished ``index``; ``snapshot_data`` describes the application
        state as of exactly that index. Maybe snapshot and compact."""
        if index - self._last_snapshot_index >= self._snapshot_entries:
            self._snapshot_due = (index, snapshot_data())
            self.wake()

    # ------------------------------------------------------------------ the loop

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ticker)
            task_status.started()
            self.wake()
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                while (ready := self.raw_node.ready()) is not None:
                    await self._handle(ready)
                if self._snapshot_due is not None:
                    index, data = self._snapshot_due
                    self._snapshot_due = None
                    await self._snapshot_and_compact(index, data)
        raise AssertionError("the raft driver should never complete")

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self._tick_seconds)
            self.raw_node.tick()
            self.wake()

    async def _handle(self, ready: Ready) -> None:
        """Carry out ``ready`` step by step, in the contract's order (consensus.ready)."""
        for step in ready_steps(self.raw_node, ready):
            if isinstance(step, SoftStateChanged):
                self._soft_state_changed(step.soft_state)
            elif isinstance(step, Persist):
                await self._persist(step)
            elif isinstance(step, Restore):
                metadata = step.snapshot.metadata
                self._last_snapshot_index = metadata.index
                await self._apply_channel.send(
                    SnapshotToRestore(metadata.index, step.snapshot.data))
            elif isinstance(step, Send):
                await self._send(step.messages)
            elif isinstance(step, ConfChangeApplied):
                await self._record_conf_change(step)
            else:
                proposed = self._proposed_at.pop(step.entry.index, None)
                if proposed is not None and self._metrics is not None:
                    self._metrics.observe_stage("replication", time.perf_counter() - proposed)
                await self._apply_channel.send(step.entry)

    async def _persist(self, step: Persist) -> None:
        persist = functools.partial(self._storage.persist, hard_state=step.hard_state,
                                    entries=step.entries, snapshot=step.snapshot,
                                    sync=step.sync)
        started = time.perf_counter()
        # A full disk stalls here, before anything of this Ready is sent or applied.
        await self._disk.run_in_thread(persist, what="persisting raft state")
        if self._metrics is not None:
            self._metrics.observe_stage("persist", time.perf_counter() - started)

    def _soft_state_changed(self, soft: SoftState) -> None:
        was_leader = self.role is Role.LEADER
        self.role, self.leader = soft.role, soft.leader
        if soft.role is Role.LEADER and not was_leader:
            # The no-op of our term is the last entry now: until it is applied, earlier
            # terms' entries may still be in flight and we must not build on them.
            self.term_start_index = self.raw_node.status().last_index
        self._log.info("raft role", role=soft.role.name.lower(), leader=soft.leader,
                       term=self.raw_node.status().hard_state.term)
        self._on_soft_state(soft)

    async def _record_conf_change(self, step: ConfChangeApplied) -> None:
        """Record the configuration a committed conf change made, before its entry is
        applied (a refused one changes nothing, alike on every node)."""
        entry, conf_state = step.entry, step.conf_state
        if conf_state is None:
            self._log.error("committed conf change refused", index=entry.index,
                            error=step.refused)
            return
        await self._disk.run_in_thread(
            functools.partial(self._storage.set_conf_state, conf_state, index=entry.index,
                              sync=True),
            what="recording the conf state")
        self._log.info("membership changed", index=entry.index, voters=list(conf_state.voters),
                       learners=list(conf_state.learners),
                       joint=bool(conf_state.voters_outgoing))

    async def _send(self, messages: tuple[Message, ...]) -> None:
        by_peer: dict[int, list[Message]] = {}
        for message in messages:
            by_peer.setdefault(message.to, []).append(message)
        for node_id, batch in by_peer.items():
            peer_id = self._peer_of(node_id)
            if peer_id is None:
                self.raw_node.report_unreachable(node_id)
                continue
            for messages_of_frame in message_batches(batch, bytes_max=FRAME_BYTES_TARGET,
                                                      messages_max=FRAME_MESSAGES_MAX):
                frame = encode_messages(messages_of_frame)
                try:
                    sent = await self._transport.send_frame(peer_id, frame)
                except MessageTooLargeError as error:  # a bound above is wrong: not fatal
                    self._log.error("raft frame too large; not sent", peer=peer_id,
                                    error=str(error))
                    sent = False
                if not sent:
                    self.raw_node.report_unreachable(node_id)
                    break

    async def _snapshot_and_compact(self, snapshot_index: int, data: bytes) -> None:
        conf_state = self.raw_node.status().conf_state
        if snapshot_index <= self._last_snapshot_index:
            return

        def work() -> None:
            # Idempotent: a full disk may make the guard run it again after a reopen.
            if self._storage.snapshot().metadata.index < snapshot_index:
                self._storage.create_snapshot(snapshot_index, conf_state, data)
            compact_to = snapshot_index - self._compaction_margin_entries
            if compact_to > self._storage.first_index():
                self._storage.compact(compact_to)

        await self._disk.run_in_thread(work, what="taking a raft snapshot")
        self._last_snapshot_index = snapshot_index
        self._log.info("snapshot taken", index=snapshot_index)
