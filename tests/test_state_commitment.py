"""The state commitment (state layout 3): a header's state root commits to the whole
state, so a node holding only a state (a snapshot, no blocks) can check it."""

from __future__ import annotations

import random
from pathlib import Path

from app_world import clinic_world, node_keys, replay_chain, signing_key
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.types import Entry, EntryType
from ledger.commitment import (
    accumulate,
    accumulator_of,
    combine,
    decode_accumulator,
    encode_accumulator,
    state_root_of,
)
from ledger.evaluation import (
    ACCUMULATOR_KEY,
    committed_items,
    roots_key,
    state_root_of_items,
    tx_seen_key,
)
from ledger.results import ResultCode
from ledger.tx import tx_id_of
from node.chain import Chain


def _replayed_chain(tmp_path: Path) -> tuple[Chain, list[tuple[bytes, ...]]]:
    """The clinic world's blocks applied by a node's Chain into LevelDB, with the state
    root checked against the whole state after every block."""
    world = clinic_world()
    alice = world.parties["alice"].builder
    world.ok(world.consent(alice, "consent-1", "alice", "grey"))
    world.ok(world.consent(alice, "consent-2", "alice", "ross"))
    chain, proposer = replay_chain(world, tmp_path / "data")
    blocks = []
    for index, committed in enumerate(world.ledger.blocks, start=1):
        raws = tuple(raw for raw in committed.raws if raw)
        _apply(chain, proposer, raws, index, committed.context.timestamp_ms)
        blocks.append(raws)
        height = chain.height
        items = list(chain.blocks.state_items())
        assert chain.roots(height).state_root == state_root_of_items(items, height)
        assert dict(items)[ACCUMULATOR_KEY] == encode_accumulator(
            accumulator_of(committed_items(items, height)))
    return chain, blocks


def _apply(chain: Chain, proposer: object, raws: tuple[bytes, ...], index: int,
           timestamp_ms: int) -> list[int]:
    from ledger.validation import check_batch

    txs = [result.tx for result in check_batch(list(raws), chain.chain_id)]
    height, head_hash, head_ms = chain.head()
    block = chain.build_block(proposer, [tx for tx in txs if tx is not None],  # type: ignore[arg-type]
                              height=height + 1, previous_hash=head_hash,
                              previous_timestamp_ms=head_ms, now_ms=timestamp_ms,
                              raft_term=1, raft_index=index,
        previous_state_height=chain.named_state_height(),
        validators_hash=chain.head_validator_sets()[1],
        certificate=chain.certify_head(node_keys()))
    result = chain.apply_entry(Entry(1, index, EntryType.NORMAL, block.encode()))
    assert result.applied is not None, result
    return list(result.applied.codes)


def test_the_incremental_state_root_is_the_root_of_the_whole_state(tmp_path: Path) -> None:
    chain, blocks = _replayed_chain(tmp_path)
    assert chain.height == len(blocks) > 5
    # Every tx the chain carried is state: a node holding only the state decides DUPLICATE.
    for raws in blocks:
        for raw in raws:
            assert chain.state.get(tx_seen_key(tx_id_of(raw))) is not None


def test_a_committed_tx_repeated_later_is_duplicate_by_state_alone(tmp_path: Path) -> None:
    chain, blocks = _replayed_chain(tmp_path)
    replay = blocks[2]
    assert replay
    # evaluate_block reads no tx index: the state says the txs are committed.
    proposer_org = next(m.org_id for m in clinic_world().genesis.members if m.validator)
    codes = _apply(chain, signing_key("node/" + proposer_org), replay, chain.applied_index() + 1,
                   chain.head()[2] + 1)
    assert codes == [ResultCode.DUPLICATE] * len(replay)


def test_any_change_to_the_state_changes_the_root(tmp_path: Path) -> None:
    chain, _ = _replayed_chain(tmp_path)
    height = chain.height
    items = list(chain.blocks.state_items())
    root = state_root_of_items(items, height)
    rng = random.Random(7)
    position = rng.randrange(len(items))
    key, value = items[position]
    altered = [*items[:position], (key, value + b"\x00"), *items[position + 1:]]
    dropped = items[:position] + items[position + 1:]
    added = [*items, (b"\x01extra", b"value")]
    for other in (altered, dropped, added):
        assert state_root_of_items(other, height) != root
    # The roots of the height itself and the accumulator entry are outside the root.
    outside = [(k, v) for k, v in items if k not in (roots_key(height), ACCUMULATOR_KEY)]
    assert state_root_of_items(outside, height) == root
    # Order and chunking do not matter: the chunks' accumulators add up to the whole.
    shuffled = list(committed_items(items, height))
    rng.shuffle(shuffled)
    chunks = [shuffled[start:start + 7] for start in range(0, len(shuffled), 7)]
    assert state_root_of(combine(accumulator_of(chunk) for chunk in chunks)) == root


_ITEMS = st.dictionaries(st.binary(min_size=1, max_size=8), st.binary(max_size=16),
                         max_size=12)


@settings(max_examples=200, deadline=None)
@given(_ITEMS, st.lists(st.tuples(st.binary(min_size=1, max_size=8),
                                  st.none() | st.binary(max_size=16)), max_size=20))
def test_accumulating_writes_equals_hashing_the_final_state(
    initial: dict[bytes, bytes], writes: list[tuple[bytes, bytes | None]],
) -> None:
    state = dict(initial)
    accumulator = accumulator_of(state.items())
    for key, value in writes:
        old = state.get(key)
        added = [] if value is None else [(key, value)]
        removed = [] if old is None else [(key, old)]
        accumulator = accumulate(accumulator, added, removed)
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    assert accumulator == accumulator_of(state.items())
    assert decode_accumulator(encode_accumulator(accumulator)) == accumulator
