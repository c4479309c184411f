"""Determinism and atomicity of apply_block (DOMAIN.md principles 3 and 4, invariant 9).

- The same blocks, with valid and invalid txs, applied to two fresh states give the same
  codes, writes, events and byte-identical state.
- Arbitrary well-formed txs (any body the schema admits, from member, party and unknown
  keys) never crash the application, and a refused one writes nothing but its nonce.
"""

from __future__ import annotations

import dataclasses

import pytest
from app_world import (
    CHAIN_ID,
    DAY_MS,
    World,
    clinic_world,
    digest,
    member_genesis,
    signing_key,
)
from hypothesis import given
from hypothesis import strategies as st
from strategies import for_struct

from ledger import bodies as b
from ledger.app import (
    BlockContext,
    MemoryState,
    apply_block,
    genesis_writes,
    layout,
    state_digest,
)
from ledger.app.model import NonceState
from ledger.bodies import BODY_CLASSES
from ledger.commitment import accumulator_of, item_hash
from ledger.results import ResultCode
from ledger.tx import Transaction, decode_transaction, sign_transaction
from ledger.txtypes import TxType


def replay(world: World) -> MemoryState:
    """Every block of ``world`` applied again to a fresh state built from its genesis."""
    replica = MemoryState(genesis_writes(world.genesis))
    for block in world.ledger.blocks:
        txs = [decode_transaction(raw) for raw in block.raws]
        outcome = apply_block(replica, block.context, txs)
        assert outcome.codes == block.codes
        replica.apply(outcome.writes)
    return replica


def mixed_blocks() -> list[tuple[BlockContext, list[Transaction | None], list[int]]]:
    """A history with valid txs, refused txs, stale nonces and stateless refusals."""
    world = clinic_world()
    alice, lab = world.parties["alice"].builder, world.members["lab"]
    consent = world.consent(alice, "consent-1", "alice", "grey")
    grant = world.grant(lab, "grant-1", "rec-lab", "grey", "consent-1")
    forged = world.consent(world.members["hospital-b"], "consent-2", "alice", "grey")
    wrong_version = world.grant(lab, "grant-2", "rec-lab", "grey", "consent-1", version=9)
    glass = world.parties["ross"].builder.btg_open(
        btg_id="btg-1", patient="alice", records=["rec-lab"], hours=4,
        justification_hash=digest("j"),
    )
    history = [tx for block in world.ledger.blocks for tx in map(_decode, block.raws)]
    base = world.ledger.blocks[-1].context
    blocks: list[tuple[BlockContext, list[Transaction | None], list[int]]] = [
        (BlockContext(1, base.timestamp_ms - 9_000, bytes(32)), list(history), [0] * len(history)),
        (
            BlockContext(2, base.timestamp_ms + 1_000, bytes(32)),
            [consent, grant, forged, None, consent, wrong_version],
            [0, 0, 0, int(ResultCode.BAD_SIGNATURE), 0, 0],
        ),
        (BlockContext(3, base.timestamp_ms + 10 * DAY_MS, bytes(32)), [glass], [0]),
        (BlockContext(4, base.timestamp_ms + 20 * DAY_MS, bytes(32)), [], []),
    ]
    return blocks


def _decode(raw: bytes) -> Transaction:
    return decode_transaction(raw)


def run(blocks: list[tuple[BlockContext, list[Transaction | None], list[int]]]) -> tuple[
    MemoryState, list[object]
]:
    state = MemoryState(genesis_writes(member_genesis()))
    outcomes: list[object] = []
    for context, txs, codes in blocks:
        outcome = apply_block(state, context, txs, codes)
        state.apply(outcome.writes)
        outcomes.append(outcome)
    return state, outcomes


def test_the_same_blocks_give_the_same_state_on_two_fresh_states() -> None:
    first, first_outcomes = run(mixed_blocks())
    second, second_outcomes = run(mixed_blocks())
    assert first_outcomes == second_outcomes
    assert first.items() == second.items()
    assert state_digest(first.items()) == state_digest(second.items())
    codes = first_outcomes[1].codes  # type: ignore[attr-defined]
    assert codes == (
        ResultCode.OK, ResultCode.OK, ResultCode.CONSENT_SIGNER_NOT_PATIENT_OR_DELEGATE,
        ResultCode.BAD_SIGNATURE, ResultCode.NONCE_STALE,
        ResultCode.KEY_GRANT_VERSION_NOT_CURRENT,
    )
    # the break-glass opened at block 3 is flagged by block 4 (review overdue after 7 days)
    flagged = [type(event).__name__ for event in first_outcomes[3].events]  # type: ignore[attr-defined]
    assert flagged == ["BreakGlassFlagged"]


def test_writes_are_sorted_and_their_commitment_is_canonical() -> None:
    _, outcomes = run(mixed_blocks())
    for outcome in outcomes:
        writes = outcome.writes  # type: ignore[attr-defined]
        assert list(writes) == sorted(writes)
        items = [(key, value) for key, value in writes.items() if value is not None]
        assert accumulator_of(reversed(items)) == accumulator_of(items)
    # a deleted item is not an empty one; a key and value cannot be split another way
    assert accumulator_of([]) != accumulator_of([(b"k", b"")])
    assert item_hash(b"ab", b"c") != item_hash(b"a", b"bc")


def test_an_in_process_history_replays_to_the_same_state() -> None:
    world = clinic_world()
    world.ok(world.consent(world.parties["alice"].builder, "consent-1", "alice", "grey"))
    world.refused(world.consent(world.members["lab"], "consent-2", "alice", "grey"),
                  ResultCode.CONSENT_SIGNER_NOT_PATIENT_OR_DELEGATE)
    assert state_digest(replay(world).items()) == state_digest(world.ledger.state.items())


# ---- arbitrary well-formed txs ------------------------------------------------------------

SIGNERS = {
    "hospital-a": signing_key("admin/hospital-a"),
    "lab": signing_key("admin/lab"),
    "insurer": signing_key("admin/insurer"),
    "alice": signing_key("party/alice"),
    "ross": signing_key("party/ross"),
    "stranger": signing_key("stranger"),
}

# Ids drawn from the cast, so that arbitrary bodies often name things that exist.
CAST_IDS = st.sampled_from(
    ["alice", "bob", "carol", "grey", "ross", "house", "rec-lab", "rec-note", "lab",
     "hospital-a", "insurer", "consent-1", "btg-1", "cov-alice"]
)


def arbitrary_tx(draw: st.DrawFn) -> Transaction:
    tx_type = draw(st.sampled_from(list(TxType)))
    body = draw(for_struct(BODY_CLASSES[tx_type]))
    # replace the first id field with a cast id half of the time
    name, _ = BODY_CLASSES[tx_type].SCHEMA[0]
    if isinstance(getattr(body, name), str) and draw(st.booleans()):
        body = dataclasses.replace(body, **{name: draw(CAST_IDS)})
    key = SIGNERS[draw(st.sampled_from(sorted(SIGNERS)))]
    nonce = draw(st.integers(0, 50))
    return sign_transaction(key, chain_id=CHAIN_ID, tx_type=tx_type, nonce=nonce, body=body)


arbitrary_txs = st.lists(st.composite(arbitrary_tx)(), min_size=1, max_size=6)

_BASE = clinic_world()
_BASE.ok(_BASE.consent(_BASE.parties["alice"].builder, "consent-1", "alice", "grey"))
_BASE.ok(
    _BASE.members["insurer"].coverage(
        coverage_id="cov-alice", beneficiary="alice", start_ms=_BASE.now,
        end_ms=_BASE.now + 365 * DAY_MS, periods=12, premium=25_000, currency="USD",
    )
)


@given(txs=arbitrary_txs)
def test_arbitrary_txs_never_crash_and_a_refused_tx_writes_only_its_nonce(
    txs: list[Transaction],
) -> None:
    state = _BASE.ledger.state.copy()
    time_ms = _BASE.now
    for height, tx in enumerate(txs, start=_BASE.ledger.height + 1):
        time_ms += 1_000
        before = state.items()
        outcome = apply_block(state, BlockContext(height, time_ms, bytes(32)), [tx])
        (code,) = outcome.codes
        if code == ResultCode.NONCE_STALE:
            assert outcome.writes == {}
        elif code != ResultCode.OK:
            assert outcome.writes == {layout.nonce_key(tx.signer): NonceState(tx.nonce).encode()}
            assert outcome.events == () and outcome.validator_changes == ()
        state.apply(outcome.writes)
        assert (code == ResultCode.OK) or len(state.items()) <= len(before) + 1


@given(txs=arbitrary_txs)
def test_arbitrary_blocks_are_deterministic(txs: list[Transaction]) -> None:
    context = BlockContext(_BASE.ledger.height + 1, _BASE.now + 1_000, bytes(32))
    first = apply_block(_BASE.ledger.state.copy(), context, txs)
    second = apply_block(_BASE.ledger.state.copy(), context, list(txs))
    assert first == second


def test_the_application_refuses_a_block_without_genesis_loudly() -> None:
    with pytest.raises(AssertionError):
        apply_block(MemoryState(), BlockContext(1, 1, bytes(32)), [])


def test_an_identifier_of_maximum_length_fits_in_a_state_key() -> None:
    world = clinic_world()
    tx = world.members["lab"].register_party(
        party_id="x" * 128, kind=b.PartyKind.PATIENT, signing_key=bytes(range(32)),
        encryption_key=bytes(32),
    )
    world.ok(tx)
