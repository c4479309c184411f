"""Raft frames, as a validator's raft stream delivers them: varint-framed bytes through the
node's FrameReader, each frame through ``decode_messages``, and each message whose sender is
the peer's node id stepped into a real RawNode (a follower and a leader), whose Ready loop
is then run the way node/raft_driver.py runs it (persist, apply conf changes, advance).

Allowed: FrameError / StreamEndedError (framing), DecodeError (the batch or a conf change),
InvalidMessageError / UnknownPeerError / RemoteError (messages Raft refuses, which the
driver logs), ConfChangeError (a committed conf change Raft cannot apply), and one
assertion on purpose: a heartbeat committing beyond our log (``_is_log_lost_stop``)."""

from __future__ import annotations

import contextlib
import random
import traceback

from consensus.config import Config
from consensus.errors import InvalidMessageError, UnknownPeerError
from consensus.memory import MemoryStorage
from consensus.raw_node import RawNode
from consensus.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    decode_conf_change,
    decode_messages,
    encode_messages,
)
from fuzz.common import read_frames
from ledger.errors import DecodeError, RemoteError
from node.p2p.framing import FrameError, StreamEndedError, encode_frame

ALLOWED = (FrameError, StreamEndedError, DecodeError, InvalidMessageError, UnknownPeerError,
           RemoteError)
US, PEER, OTHER = 1, 2, 3
VOTERS = (US, PEER, OTHER)
# What one input may make the harness read; the node's limit (2 blobs) is far larger, but
# the fuzzer's inputs are small.
FRAME_BYTES_MAX = 1_048_576
READY_ROUNDS_MAX = 8


class _Node:
    """A RawNode with its storage, as the driver holds them."""

    def __init__(self) -> None:
        self.storage = MemoryStorage(ConfState(voters=VOTERS))
        self.raw = RawNode(Config(node_id=US), self.storage, random.Random(0))


def _follower() -> _Node:
    return _Node()


def _leader() -> _Node:
    node = _Node()
    node.raw.campaign()
    _drain(node)
    term = node.raw.raft.term + 1
    node.raw.step(Message(type=MessageType.PRE_VOTE_RESPONSE, to=US, from_=PEER, term=term))
    _drain(node)
    node.raw.step(Message(type=MessageType.VOTE_RESPONSE, to=US, from_=PEER,
                          term=node.raw.raft.term))
    _drain(node)
    assert node.raw.raft.role.name == "LEADER", node.raw.raft.role
    return node


def _drain(holder: _Node) -> None:
    """The driver's Ready loop: persist, (send), apply conf changes, advance."""
    node = holder.raw
    for _ in range(READY_ROUNDS_MAX):
        ready = node.ready()
        if ready is None:
            return
        holder.storage.persist(hard_state=ready.hard_state, entries=ready.entries,
                               snapshot=ready.snapshot, sync=ready.must_sync)
        for entry in ready.committed_entries:
            if entry.type is EntryType.CONF_CHANGE:
                # The driver skips an undecodable one; see the module docstring.
                with contextlib.suppress(DecodeError, RemoteError):
                    node.apply_conf_change(decode_conf_change(entry.data))
        node.advance(ready)


def _is_log_lost_stop(error: AssertionError) -> bool:
    """The one assertion a validator's message may trip on purpose: RaftLog.commit_to's
    "commit beyond the last index" (etcd's "was the raft log lost?" panic). A node whose
    durable log lost entries must stop rather than carry on, and the simulator's checkers
    rely on it (test_sim_bugs); raft frames are accepted only from validators."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].name == "commit_to" and "beyond the last index" in str(
        error)


def _step_all(holder: _Node, messages: tuple[Message, ...]) -> bool:
    """Step and drain; False once the node stopped on purpose (see _is_log_lost_stop)."""
    for message in messages:
        if message.from_ != PEER:
            continue  # handle_frame drops a message whose sender is not the peer's node
        try:
            with contextlib.suppress(InvalidMessageError, UnknownPeerError, RemoteError):
                holder.raw.step(message)
        except AssertionError as error:
            if not _is_log_lost_stop(error):
                raise
            return False
    _drain(holder)
    return True


def one_input(data: bytes) -> None:
    frames = read_frames(data, frame_bytes_max=FRAME_BYTES_MAX)
    batches = []
    for frame in frames:
        if not frame:
            continue  # the keepalive
        try:
            batches.append(decode_messages(frame))
        except DecodeError:
            continue
    if not batches:
        return
    for node in (_follower(), _leader()):
        for batch in batches:
            if not _step_all(node, batch):
                break


def seeds() -> dict[str, bytes]:
    change = ConfChange((ConfChangeSingle(ConfChangeType.ADD_LEARNER, 4),)).encode()
    entries = (Entry(2, 1, EntryType.NORMAL, b"block"), Entry(2, 2, EntryType.CONF_CHANGE, change))
    snapshot = Snapshot(SnapshotMetadata(5, 2, ConfState(voters=VOTERS)), b"state")
    messages = {
        "append": Message(MessageType.APPEND, US, PEER, term=2, log_term=0, index=0,
                          entries=entries, commit=2),
        "heartbeat": Message(MessageType.HEARTBEAT, US, PEER, term=2, commit=1),
        "vote": Message(MessageType.VOTE, US, PEER, term=3, log_term=2, index=9),
        "pre-vote": Message(MessageType.PRE_VOTE, US, PEER, term=3, log_term=2, index=9),
        "append-response": Message(MessageType.APPEND_RESPONSE, US, PEER, term=2, index=1),
        "snapshot": Message(MessageType.SNAPSHOT, US, PEER, term=2, snapshot=snapshot),
        "timeout-now": Message(MessageType.TIMEOUT_NOW, US, PEER, term=2),
        "transfer": Message(MessageType.TRANSFER_LEADER, US, PEER, term=2),
        "heartbeat-response": Message(MessageType.HEARTBEAT_RESPONSE, US, PEER, term=2),
    }
    found = {f"raft-{name}": encode_frame(encode_messages([message]))
             for name, message in messages.items()}
    found["raft-two-frames"] = (encode_frame(encode_messages([messages["heartbeat"]]))
                                + encode_frame(b"")
                                + encode_frame(encode_messages(list(messages.values()))))
    found["varint-too-long"] = b"\xff" * 11
    found["frame-truncated"] = encode_frame(b"\x92\x01\x90")[:-1] + b"\x05"
    return found


def regressions() -> dict[str, bytes]:
    """Inputs that once escaped as untyped errors (kept as corpus files and suite cases)."""
    return {
        # AssertionError in RaftLog.commit_to: a heartbeat committing beyond our log. Kept as
        # the intended stop (etcd's "was the raft log lost?"), see _is_log_lost_stop.
        "heartbeat-commit-beyond-log": encode_frame(encode_messages([
            Message(MessageType.HEARTBEAT, US, PEER, term=2, commit=5)])),
    }
