"""Wire format of Raft messages and configuration changes: canonical and strict."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.types import (
    MESSAGE_BATCH_MESSAGES_MAX,
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
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
from ledger.codec import encode_tree
from ledger.errors import DecodeError

uint = st.integers(min_value=0, max_value=2**64 - 1)
node_ids = st.integers(min_value=0, max_value=2**16)
entries = st.builds(
    Entry,
    term=uint,
    index=uint,
    type=st.sampled_from(EntryType),
    data=st.binary(max_size=64),
)
id_tuples = st.lists(st.integers(min_value=1, max_value=99), max_size=5).map(tuple)
conf_states = st.builds(
    ConfState,
    voters=id_tuples,
    learners=id_tuples,
    voters_outgoing=id_tuples,
    learners_next=id_tuples,
    auto_leave=st.booleans(),
)
snapshots = st.builds(
    Snapshot,
    metadata=st.builds(SnapshotMetadata, index=uint, term=uint, conf_state=conf_states),
    data=st.binary(max_size=64),
)
messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    to=node_ids,
    from_=node_ids,
    term=uint,
    log_term=uint,
    index=uint,
    entries=st.lists(entries, max_size=4).map(tuple),
    commit=uint,
    reject=st.booleans(),
    reject_hint=uint,
    snapshot=st.none() | snapshots,
    context=st.binary(max_size=64),
)
conf_changes = st.builds(
    ConfChange,
    changes=st.lists(
        st.builds(
            ConfChangeSingle,
            type=st.sampled_from(ConfChangeType),
            node_id=st.integers(min_value=1, max_value=2**64 - 1),
        ),
        max_size=4,
    ).map(tuple),
    transition=st.sampled_from(ConfChangeTransition),
    context=st.binary(max_size=32),
)


@settings(max_examples=200)
@given(st.lists(messages, max_size=6))
def test_message_batches_round_trip(batch: list[Message]) -> None:
    data = encode_messages(batch)
    assert decode_messages(data) == tuple(batch)
    # One value, one encoding.
    assert encode_messages(list(decode_messages(data))) == data


@settings(max_examples=100)
@given(st.lists(messages, min_size=1, max_size=3), st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_refused(batch: list[Message], trailing: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_messages(encode_messages(batch) + trailing)


@settings(max_examples=100)
@given(st.lists(messages, min_size=1, max_size=3), st.data())
def test_truncated_batches_are_refused(batch: list[Message], data: st.DataObject) -> None:
    encoded = encode_messages(batch)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode_messages(encoded[:cut])


@settings(max_examples=100)
@given(conf_changes)
def test_conf_changes_round_trip(change: ConfChange) -> None:
    assert decode_conf_change(change.encode()) == change


def test_decode_is_strict() -> None:
    message = Message(type=MessageType.HEARTBEAT, to=2, from_=1, term=3, commit=4)
    good = encode_messages([message])
    assert decode_messages(good) == (message,)
    wire = message.to_wire()
    with pytest.raises(DecodeError):  # wrong version
        decode_messages(encode_tree([2, [wire]]))
    with pytest.raises(DecodeError):  # a field missing
        decode_messages(encode_tree([1, [wire[:-1]]]))
    with pytest.raises(DecodeError):  # unknown message type
        decode_messages(encode_tree([1, [[99, *wire[1:]]]]))
    with pytest.raises(DecodeError):  # a bool where an integer belongs
        decode_messages(encode_tree([1, [[wire[0], True, *wire[2:]]]]))
    with pytest.raises(DecodeError):  # not a batch
        decode_messages(encode_tree([1, 2, 3]))
    with pytest.raises(DecodeError):  # over the size limit
        decode_messages(good, size_bytes_max=len(good) - 1)
    with pytest.raises(DecodeError):  # too many messages
        decode_messages(encode_tree([1, [wire] * (MESSAGE_BATCH_MESSAGES_MAX + 1)]))
    with pytest.raises(DecodeError):
        decode_messages(b"")


def test_message_round_trips_byte_by_byte_prefixes_fail() -> None:
    message = Message(
        type=MessageType.APPEND,
        to=2,
        from_=1,
        term=5,
        log_term=4,
        index=10,
        entries=(Entry(term=5, index=11, type=EntryType.NORMAL, data=b"block"),),
        commit=9,
    )
    data = encode_messages([message])
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_messages(data[:cut])


def test_message_batches_keep_every_frame_under_its_byte_bound() -> None:
    """A leader whose sends stalled once put 159 MB of appends for one follower into one
    frame, which the transport refuses; batches are now split by bytes as well."""
    from consensus.types import message_batches

    entry_bytes = 1 << 20
    appends = [
        Message(type=MessageType.APPEND, to=2, from_=1, term=3, index=index,
                entries=(Entry(3, index + 1, EntryType.NORMAL,
                               bytes([index % 251]) * entry_bytes),))
        for index in range(150)
    ]
    bytes_max = 16 * entry_bytes
    batches = list(message_batches(appends, bytes_max=bytes_max))
    assert [message for batch in batches for message in batch] == appends
    assert len(batches) >= 150 * entry_bytes // bytes_max
    for batch in batches:
        assert len(encode_messages(batch)) <= bytes_max
    # One message over the bound goes alone, and a count bound holds too.
    huge = Message(type=MessageType.APPEND, to=2, from_=1,
                   entries=(Entry(3, 1, EntryType.NORMAL, b"x" * (2 * bytes_max)),))
    assert [len(batch) for batch in message_batches([appends[0], huge, appends[1]],
                                                    bytes_max=bytes_max)] == [1, 1, 1]
    beats = [Message(type=MessageType.HEARTBEAT, to=2, from_=1)] * 10
    assert [len(batch) for batch in message_batches(beats, bytes_max=bytes_max,
                                                    messages_max=4)] == [4, 4, 2]
