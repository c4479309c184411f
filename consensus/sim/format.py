"""Compact, stable text for entries, messages and Readies (scenario output, traces)."""

from __future__ import annotations

from consensus.types import (
    ConfChange,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    decode_conf_change,
)
from ledger.errors import DecodeError

_CHANGE_NAMES = {
    ConfChangeType.ADD_VOTER: "add-voter",
    ConfChangeType.REMOVE_NODE: "remove",
    ConfChangeType.ADD_LEARNER: "add-learner",
}


def describe_conf_change(change: ConfChange) -> str:
    if change.leaves_joint:
        return "leave-joint"
    parts = [f"{_CHANGE_NAMES[single.type]} {single.node_id}" for single in change.changes]
    if change.transition != ConfChangeTransition.AUTO:
        parts.append(f"transition={change.transition.name.lower()}")
    return ", ".join(parts)


def describe_entry(entry: Entry) -> str:
    if entry.type == EntryType.CONF_CHANGE:
        try:
            text = describe_conf_change(decode_conf_change(entry.data))
        except DecodeError:
            text = "undecodable"
        return f"{entry.term}/{entry.index} conf-change({text})"
    return f"{entry.term}/{entry.index} {_quote(entry.data)}"


def _quote(data: bytes) -> str:
    if len(data) <= 32 and all(32 <= byte < 127 and byte != 34 for byte in data):
        return '"' + data.decode("ascii") + '"'
    return f"<{len(data)} bytes>"


def describe_entries(entries: tuple[Entry, ...] | list[Entry]) -> str:
    return "[" + ", ".join(describe_entry(entry) for entry in entries) + "]"


def describe_hard_state(hard_state: HardState) -> str:
    return f"term={hard_state.term} vote={hard_state.vote} commit={hard_state.commit}"


def describe_conf_state(conf_state: ConfState) -> str:
    text = "voters=(" + " ".join(str(i) for i in conf_state.voters) + ")"
    if conf_state.voters_outgoing:
        text += "&&(" + " ".join(str(i) for i in conf_state.voters_outgoing) + ")"
    if conf_state.learners:
        text += " learners=(" + " ".join(str(i) for i in conf_state.learners) + ")"
    if conf_state.learners_next:
        text += " learners_next=(" + " ".join(str(i) for i in conf_state.learners_next) + ")"
    if conf_state.auto_leave:
        text += " autoleave"
    return text


def describe_message(message: Message) -> str:
    kind = message.type
    text = f"{message.from_}->{message.to} {kind.name}"
    if kind not in (MessageType.PROPOSAL, MessageType.TRANSFER_LEADER):
        text += f" term={message.term}"
    if kind in (MessageType.VOTE, MessageType.PRE_VOTE):
        text += f" last={message.log_term}/{message.index}"
        if message.context:
            text += " transfer"
    elif kind == MessageType.APPEND:
        text += f" log={message.log_term}/{message.index} commit={message.commit}"
        text += f" entries={describe_entries(message.entries)}"
    elif kind == MessageType.APPEND_RESPONSE:
        text += f" index={message.index}"
        if message.reject:
            text += f" rejected hint={message.log_term}/{message.reject_hint}"
    elif kind == MessageType.HEARTBEAT:
        text += f" commit={message.commit}"
    elif kind == MessageType.SNAPSHOT and message.snapshot is not None:
        metadata = message.snapshot.metadata
        text += f" snapshot={metadata.term}/{metadata.index}"
        text += f" {describe_conf_state(metadata.conf_state)}"
    elif kind == MessageType.PROPOSAL:
        text += f" entries={describe_entries(message.entries)}"
    elif kind == MessageType.TRANSFER_LEADER:
        text += f" target={message.from_}"
    if kind in (MessageType.VOTE_RESPONSE, MessageType.PRE_VOTE_RESPONSE) and message.reject:
        text += " rejected"
    return text
