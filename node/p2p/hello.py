"""The chain handshake (/medledger/hello/2.0.0): which chain is the peer on, under which
rules?

Both ends of a new connection open one hello stream each; the opener writes its
:class:`Hello` (chain id, genesis hash and the state layout it applies blocks with) and
reads the other's, the handler reads first and answers. A peer whose hello names another
chain id or genesis, or another state layout (a node of another medledger version would
compute other state roots and reject every block), is *foreign*: one ERROR line names
both, its connection is dropped and it is not admitted again for ``FOREIGN_REFUSAL_S``
(then one more hello decides). A peer that never answers (an older medledger speaks only
/medledger/hello/1.0.0) gets one WARNING a minute after a few tries. Nothing of the chain
flows before a peer is greeted: raft streams wait for it (an observer started on another
genesis used to sync and log "does not extend the head" every second forever, and
answered ready).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from ledger.codec import Bytes, Identifier, Struct, UInt, decode
from ledger.tx import CHAIN_ID_LENGTH_MAX
from node.p2p.framing import FrameReader, close_quietly, encode_frame

# 2.0.0: the hello carries the state layout.
HELLO_PROTOCOL = "/medledger/hello/2.0.0"
HELLO_BYTES_MAX = 128
# A peer that named another chain is refused this long before it may say hello again.
FOREIGN_REFUSAL_S = 60.0
# A hello not completed within this long is tried again (the connection may be new).
HELLO_TIMEOUT_S = 5.0
HELLO_RETRY_S = 1.0
# Unanswered hellos in a row before the WARNING (then at most one a minute per peer).
HELLO_FAILURES_WARN = 5
HELLO_WARNING_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class Hello(Struct):
    chain_id: str
    genesis_hash: bytes
    state_layout: int  # ledger.app.layout.STATE_LAYOUT_VERSION

    SCHEMA = (("chain_id", Identifier(CHAIN_ID_LENGTH_MAX)), ("genesis_hash", Bytes(32)),
              ("state_layout", UInt(maximum=2**32 - 1)))

    def describe(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "genesis_hash": self.genesis_hash.hex(),
                "state_layout": self.state_layout}


async def say_hello(stream: Any, ours: Hello, *, timeout_s: float) -> Hello:
    """The opener's side: write ours, read theirs. Raises on any failure."""
    with trio.fail_after(timeout_s):
        await stream.write(encode_frame(ours.encode()))
        return await _read_hello(stream)


async def answer_hello(stream: Any, ours: Hello, *, timeout_s: float) -> Hello:
    """The handler's side: read theirs, answer ours. Raises on any failure."""
    with trio.fail_after(timeout_s):
        theirs = await _read_hello(stream)
        await stream.write(encode_frame(ours.encode()))
        return theirs


async def _read_hello(stream: Any) -> Hello:
    frame = await FrameReader(stream, frame_bytes_max=HELLO_BYTES_MAX).read_frame()
    return decode(Hello, frame, size_bytes_max=HELLO_BYTES_MAX)


class Greeter:
    """The host's side of the handshake: who has been greeted on their current
    connection, who is foreign, and the hello tasks."""

    def __init__(self, ours: Hello, *, opener: Any, log: Any,
                 is_connected: Callable[[str], bool], on_greeted: Callable[[], None],
                 drop: Callable[[str], None]) -> None:
        self.ours = ours
        self._opener = opener
        self._log = log
        self._is_connected = is_connected
        self._on_greeted = on_greeted
        self._drop = drop
        self._greeted: set[str] = set()
        self._greeting: set[str] = set()
        self._foreign_since: dict[str, float] = {}  # peer -> trio time of its hello
        self._warned_at: dict[str, float] = {}  # peer -> trio time of its last WARNING
        self.foreign_hellos = 0

    def is_greeted(self, peer_id: str) -> bool:
        return peer_id in self._greeted

    def is_foreign(self, peer_id: str) -> bool:
        since = self._foreign_since.get(peer_id)
        return since is not None and trio.current_time() - since < FOREIGN_REFUSAL_S

    def forget(self, peer_id: str) -> None:
        """The peer's connection is gone: a new one says hello again."""
        self._greeted.discard(peer_id)

    def should_greet(self, peer_id: str) -> bool:
        return peer_id not in self._greeted and peer_id not in self._greeting

    async def greet(self, peer_id: str) -> None:
        """Say hello on ``peer_id``'s connection until it is answered (or it closes)."""
        self._greeting.add(peer_id)
        failures = 0
        try:
            while self._is_connected(peer_id) and peer_id not in self._greeted:
                try:
                    stream = await self._opener.open(peer_id, HELLO_PROTOCOL,
                                                     timeout_s=HELLO_TIMEOUT_S)
                    try:
                        theirs = await say_hello(stream, self.ours, timeout_s=HELLO_TIMEOUT_S)
                    finally:
                        await close_quietly(stream)
                except Exception as error:  # no stream, a reset, a bad answer: again later
                    failures += 1
                    self._log.debug("hello failed", peer=peer_id, error=repr(error))
                    if failures >= HELLO_FAILURES_WARN:
                        self._warn_unanswered(peer_id, failures, error)
                    await trio.sleep(HELLO_RETRY_S)
                    continue
                self.judge(peer_id, theirs)
                return
        finally:
            self._greeting.discard(peer_id)

    def _warn_unanswered(self, peer_id: str, failures: int, error: Exception) -> None:
        now = trio.current_time()
        last = self._warned_at.get(peer_id)
        if last is not None and now - last < HELLO_WARNING_INTERVAL_S:
            return
        self._warned_at[peer_id] = now
        self._log.warning("peer does not answer our hello: nothing of the chain flows to it "
                          "(an older medledger without " + HELLO_PROTOCOL + "?)",
                          peer=peer_id, attempts=failures, error=repr(error))

    async def handle_stream(self, stream: Any) -> None:
        peer_id = stream.muxed_conn.peer_id.to_base58()
        try:
            # Judged before the close: the peer opens its raft stream once it has our
            # answer, and that stream waits for this judgement.
            self.judge(peer_id, await answer_hello(stream, self.ours,
                                                   timeout_s=HELLO_TIMEOUT_S))
        finally:
            await close_quietly(stream)

    def judge(self, peer_id: str, theirs: Hello) -> bool:
        if theirs == self.ours:
            if peer_id not in self._greeted:
                self._greeted.add(peer_id)
                self._foreign_since.pop(peer_id, None)
                self._on_greeted()
            return True
        self._greeted.discard(peer_id)
        if not self.is_foreign(peer_id):  # one line per refusal period
            same_chain = (theirs.chain_id, theirs.genesis_hash) == (
                self.ours.chain_id, self.ours.genesis_hash)
            event = ("peer applies another state layout (another medledger version): "
                     "refused; run one version on the whole chain" if same_chain
                     else "peer is on another chain: refused")
            self._log.error(event, peer=peer_id, ours=self.ours.describe(),
                            theirs=theirs.describe(), refused_for_s=FOREIGN_REFUSAL_S)
        self._foreign_since[peer_id] = trio.current_time()
        self.foreign_hellos += 1
        self._drop(peer_id)
        return False
