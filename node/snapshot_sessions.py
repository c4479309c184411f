"""Snapshot sessions: a running node serves a consistent copy of its state to
``medledger snapshot save --rpc`` (admin_snapshotBegin / admin_snapshotChunk /
admin_snapshotEnd), while it keeps applying blocks.

A session is one LevelDB snapshot (storage.statesync.export_state): the head, applied
index and every state item as of one instant. Begin reads the first chunk, the head block
and the state root of that height; each chunk call reads the next chunk. Every LevelDB
read runs in a worker thread (trio.to_thread), so a save under load costs the event loop
nothing but the JSON. Bounded: at most SNAPSHOT_SESSIONS_MAX sessions at once, each chunk
at most SNAPSHOT_CHUNK_BYTES_MAX of keys and values, and a session idle for
SNAPSHOT_SESSION_IDLE_SECONDS_MAX is closed (an open LevelDB snapshot keeps old versions
of every key it covers from compaction: an abandoned one must not live for ever).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio

from ledger.app.layout import STATE_LAYOUT_VERSION
from ledger.errors import LocalError, RemoteError
from ledger.evaluation import Roots, roots_key
from node.clock import Clock, SystemClock
from storage.backup import SNAPSHOT_CHUNK_BYTES_MAX
from storage.errors import BlockPrunedError
from storage.statesync import StateChunk, export_state
from storage.store import Store

# Sessions open at once: each holds a LevelDB snapshot and runs its reads in a worker
# thread; two lets an operator run a second save while a first one finishes.
SNAPSHOT_SESSIONS_MAX = 2
# A session nobody asked for a chunk for this long is closed; a save asks for its next
# chunk within milliseconds, so a minute only ever catches abandoned ones.
SNAPSHOT_SESSION_IDLE_SECONDS_MAX = 60.0
# How often idle sessions are looked for.
SNAPSHOT_EXPIRY_INTERVAL_SECONDS = 5.0
SESSION_ID_BYTES = 16


class SnapshotSessionNotFoundError(RemoteError):
    """No open session with that id (never opened, ended, or expired)."""


class SnapshotUnavailableError(LocalError):
    """The node cannot start a snapshot now: every session is in use, or it has no block
    to snapshot yet."""


@dataclass(frozen=True, slots=True)
class SnapshotOpened:
    session_id: str
    chain_id: str
    genesis_hash: bytes
    state_layout: int
    height: int
    block_hash: bytes
    applied_index: int
    state_root: bytes
    head_block: bytes


@dataclass(frozen=True, slots=True)
class SnapshotChunkData:
    sequence: int
    done: bool
    data: bytes  # the StateChunk's canonical encoding


class _Session:
    def __init__(self, session_id: str, chunks: Iterator[StateChunk], now: float) -> None:
        self.session_id = session_id
        self.chunks = chunks
        self.last: SnapshotChunkData | None = None
        self.used_at = now
        self.busy = False
        self.closed = False

    def close(self) -> None:
        """Close the LevelDB snapshot (the generator's finally). Not while a worker
        thread runs it: the call that owns it closes it when it returns."""
        self.closed = True
        if not self.busy:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()


class SnapshotSessions:
    def __init__(self, *, store: Callable[[], Store], chain_id: str, genesis_hash: bytes,
                 log: Any, clock: Clock | None = None,
                 chunk_bytes_max: int = SNAPSHOT_CHUNK_BYTES_MAX) -> None:
        assert 0 < chunk_bytes_max <= SNAPSHOT_CHUNK_BYTES_MAX
        self._store = store
        self._chain_id = chain_id
        self._genesis_hash = genesis_hash
        self._log = log
        self._clock: Clock = clock or SystemClock()
        self._chunk_bytes_max = chunk_bytes_max
        self._sessions: dict[str, _Session] = {}
        self.opened = 0
        self.expired = 0
        self.chunks_served = 0

    def statistics(self) -> dict[str, int]:
        return {"open": len(self._sessions), "opened": self.opened, "expired": self.expired,
                "chunks_served": self.chunks_served}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(SNAPSHOT_EXPIRY_INTERVAL_SECONDS)
            self.expire_idle()

    def expire_idle(self) -> None:
        now = self._clock.monotonic()
        for session in list(self._sessions.values()):
            if not session.busy and now - session.used_at > SNAPSHOT_SESSION_IDLE_SECONDS_MAX:
                self._drop(session)
                self.expired += 1
                self._log.warning("snapshot session expired", session=session.session_id,
                                  idle_seconds_max=SNAPSHOT_SESSION_IDLE_SECONDS_MAX)

    def close_all(self) -> None:
        """Before the store closes or reopens."""
        for session in list(self._sessions.values()):
            self._drop(session)

    async def begin(self) -> SnapshotOpened:
        if len(self._sessions) >= SNAPSHOT_SESSIONS_MAX:
            raise SnapshotUnavailableError(
                f"{SNAPSHOT_SESSIONS_MAX} snapshot sessions are open already (at most "
                f"{SNAPSHOT_SESSIONS_MAX}): end one (admin_snapshotEnd) or wait for it to "
                f"expire ({SNAPSHOT_SESSION_IDLE_SECONDS_MAX:g} s idle)")
        session_id = "0x" + secrets.token_hex(SESSION_ID_BYTES)
        store = self._store()
        chunks = export_state(store.blocks, self._chunk_bytes_max)
        session = _Session(session_id, chunks, self._clock.monotonic())
        self._sessions[session_id] = session  # counts against the cap from now on
        session.busy = True
        try:
            first, head_block, roots = await trio.to_thread.run_sync(
                self._open_in_thread, store, chunks)
        except BaseException:
            session.busy = False
            self._drop(session)
            raise
        session.busy = False
        session.last = SnapshotChunkData(0, first.done, first.encode())
        session.used_at = self._clock.monotonic()
        if session.closed:  # closed while its first read ran
            self._drop(session)
            raise SnapshotSessionNotFoundError("the snapshot session was closed (the node "
                                               "is stopping)")
        self.opened += 1
        self._log.info("snapshot session opened", session=session_id, height=first.height,
                       applied_index=first.applied_index)
        return SnapshotOpened(session_id, self._chain_id, self._genesis_hash,
                              STATE_LAYOUT_VERSION, first.height,
                              first.block_hash, first.applied_index, roots.state_root,
                              head_block)

    @staticmethod
    def _open_in_thread(store: Store, chunks: Iterator[StateChunk],
                        ) -> tuple[StateChunk, bytes, Roots]:
        first = next(chunks)
        height = first.height
        if height == 0:
            raise SnapshotUnavailableError("the chain has no block yet: nothing to snapshot")
        # The head block and the roots of the snapshot's height never change once
        # applied, so reading them now (outside the LevelDB snapshot) reads what the
        # snapshot holds; only pruning could remove the block, and it never prunes a
        # node's head (a head that moved on meanwhile is refused here, and save retried).
        try:
            stored = store.blocks.block(height)
        except BlockPrunedError:
            stored = None
        if stored is None or stored.block_hash != first.block_hash:
            raise SnapshotUnavailableError(
                f"block {height} was pruned while the snapshot opened: try again")
        roots = store.blocks.state_get(roots_key(height))
        assert roots is not None, f"the roots of applied height {height} are missing"
        return first, stored.block_bytes, Roots.decode(roots)

    async def chunk(self, session_id: str, sequence: int) -> SnapshotChunkData:
        """Chunk ``sequence``: the next one, or the last one served again (a retry)."""
        session = self._session(session_id)
        last = session.last
        assert last is not None
        if sequence == last.sequence:
            session.used_at = self._clock.monotonic()
            return last
        if sequence != last.sequence + 1 or last.done:
            expected = "none: the snapshot is complete" if last.done else str(
                last.sequence + 1)
            raise SnapshotSessionNotFoundError(
                f"no chunk {sequence} in snapshot session {session_id}: chunks are read in "
                f"order, the next is {expected}")
        if session.busy:
            raise SnapshotSessionNotFoundError(
                f"snapshot session {session_id} is reading chunk {sequence} already")
        session.busy = True
        try:
            chunk = await trio.to_thread.run_sync(next, session.chunks)
        except BaseException:
            session.busy = False
            self._drop(session)
            raise
        session.busy = False
        if session.closed:
            self._drop(session)
            raise SnapshotSessionNotFoundError(
                f"snapshot session {session_id} was closed while it read chunk {sequence}")
        assert chunk.sequence == sequence
        session.last = SnapshotChunkData(sequence, chunk.done, chunk.encode())
        session.used_at = self._clock.monotonic()
        self.chunks_served += 1
        return session.last

    def end(self, session_id: str) -> None:
        session = self._session(session_id)
        self._drop(session)
        self._log.info("snapshot session ended", session=session_id)

    def _session(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise SnapshotSessionNotFoundError(
                f"no snapshot session {session_id} (it ended, or expired after "
                f"{SNAPSHOT_SESSION_IDLE_SECONDS_MAX:g} s idle)")
        return session

    def _drop(self, session: _Session) -> None:
        self._sessions.pop(session.session_id, None)
        session.close()


__all__ = [
    "SNAPSHOT_SESSIONS_MAX",
    "SNAPSHOT_SESSION_IDLE_SECONDS_MAX",
    "SnapshotChunkData",
    "SnapshotOpened",
    "SnapshotSessionNotFoundError",
    "SnapshotSessions",
    "SnapshotUnavailableError",
]
