"""Applying a block: the state machine every node runs on committed blocks.

Per block, in order:

1. Break-glass reviews that became overdue are flagged: every unreviewed break-glass whose
   review due time is before this block's timestamp (at most FLAGS_PER_BLOCK_MAX per block,
   earliest due first; the rest in the next blocks), with an audit entry and an event.
2. Each tx, in block order:
   - a tx that failed the stateless check keeps its code and changes nothing;
   - a tx for another chain gets WRONG_CHAIN and changes nothing;
   - a tx whose nonce is not above its key's last used nonce gets NONCE_STALE and
     changes nothing;
   - otherwise its nonce is used whatever happens next; the signer is resolved (unknown,
     revoked, rotated, removed member are refused) and the rules of its type run in an
     overlay of their own; the overlay is kept only if every rule passed.

The outcome lists the writes sorted by key, so it is a deterministic function of the
state and the block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ledger.app import layout
from ledger.app.events import BreakGlassFlagged, Event, ValidatorChange
from ledger.app.genesis import MEMBERS_MAX
from ledger.app.model import (
    AuditEntry,
    AuditKind,
    BreakGlassState,
    KeyState,
    KeyStatus,
    MemberState,
    NonceState,
    OwnerKind,
    PartyState,
    StoredParameters,
)
from ledger.app.rules import access, governance, insurance, records
from ledger.app.scope import BlockContext, RuleViolation, Signer, TxScope
from ledger.app.state import Overlay, StateReader, decode_value, load
from ledger.bodies import GrantBasis
from ledger.commitment import accumulator_of, encode_accumulator
from ledger.results import ResultCode
from ledger.tx import Transaction
from ledger.txtypes import TxType

# Overdue break-glass reviews flagged by one block: bounds the work a block does before its
# txs; a backlog (say after a long outage) is flagged over the following blocks.
FLAGS_PER_BLOCK_MAX = 1000

Rule = Callable[[TxScope, Any], None]

RULES: Mapping[TxType, Rule] = {
    TxType.PROPOSE_MEMBER: governance.propose_member,
    TxType.VOTE: governance.vote,
    TxType.ROTATE_KEY: governance.rotate_key,
    TxType.REVOKE_KEY: governance.revoke_key,
    TxType.REGISTER_PARTY: records.register_party,
    TxType.ANCHOR_RECORD: records.anchor_record,
    TxType.SHRED_RECORD: records.shred_record,
    TxType.CONSENT_GRANT: access.consent_grant,
    TxType.CONSENT_REVOKE: access.consent_revoke,
    TxType.DELEGATE_GRANT: access.delegate_grant,
    TxType.BTG_OPEN: access.btg_open,
    TxType.BTG_CLOSE: access.btg_close,
    TxType.BTG_REVIEW: access.btg_review,
    TxType.KEY_GRANT: access.key_grant,
    TxType.ACCESS_LOG: access.access_log,
    TxType.COVERAGE: insurance.coverage,
    TxType.PREMIUM_PAID: insurance.premium_paid,
    TxType.CLAIM_SUBMIT: insurance.claim_submit,
    TxType.CLAIM_ADJUDICATE: insurance.claim_adjudicate,
    TxType.REMITTANCE: insurance.remittance,
}
assert set(RULES) == set(TxType), "every tx type has its rules"


@dataclass(frozen=True, slots=True)
class BlockOutcome:
    """What a block did. ``writes`` is sorted by key (None deletes); the caller writes it
    with the block in one batch and must not modify it."""

    codes: tuple[int, ...]
    messages: tuple[str, ...]  # why each refused tx was refused ("" when OK)
    writes: dict[bytes, bytes | None]
    events: tuple[Event, ...]
    validator_changes: tuple[ValidatorChange, ...]


def apply_block(
    state: StateReader,
    context: BlockContext,
    txs: Sequence[Transaction | None],
    codes: Sequence[int] | None = None,
) -> BlockOutcome:
    """Apply one block's txs to ``state`` (which is not modified).

    ``txs[i]`` is None for a tx that failed the stateless check; ``codes[i]`` is then its
    stateless code (and OK for every other tx). Without ``codes`` every tx must be present.
    """
    assert codes is None or len(codes) == len(txs), "one precomputed code per tx"
    parameters = load(state, layout.PARAMETERS_KEY, StoredParameters)
    assert parameters is not None, "apply genesis_writes() before the first block"
    block = Overlay(state)
    events: list[Event] = []
    validator_changes: list[ValidatorChange] = []
    _flag_overdue_reviews(block, context, events)
    out_codes: list[int] = []
    messages: list[str] = []
    for position, tx in enumerate(txs):
        precomputed = ResultCode.OK if codes is None else codes[position]
        if tx is None:
            assert precomputed != ResultCode.OK, "a missing tx has its stateless code"
            out_codes.append(int(precomputed))
            messages.append("refused by the stateless check")
            continue
        assert precomputed == ResultCode.OK, "a present tx passed the stateless check"
        code, message = _apply_tx(
            block, context, parameters, tx, position, events, validator_changes
        )
        out_codes.append(int(code))
        messages.append(message)
    return BlockOutcome(
        codes=tuple(out_codes),
        messages=tuple(messages),
        writes=dict(sorted(block.changes.items())),
        events=tuple(events),
        validator_changes=tuple(validator_changes),
    )


def _apply_tx(
    block: Overlay,
    context: BlockContext,
    parameters: StoredParameters,
    tx: Transaction,
    position: int,
    events: list[Event],
    validator_changes: list[ValidatorChange],
) -> tuple[ResultCode, str]:
    if tx.chain_id != parameters.chain_id:
        return ResultCode.WRONG_CHAIN, f"signed for chain {tx.chain_id!r}"
    nonce_key = layout.nonce_key(tx.signer)
    last = block.load(nonce_key, NonceState)
    last_nonce = 0 if last is None else last.last_nonce
    if tx.nonce <= last_nonce:
        return ResultCode.NONCE_STALE, f"nonce {tx.nonce} is not above {last_nonce}"
    view = Overlay(block)
    try:
        signer = _resolve_signer(block, tx, context.timestamp_ms)
        scope = TxScope(
            view=view,
            block=context,
            chain_id=parameters.chain_id,
            tx=tx,
            position=position,
            signer=signer,
            btg_review_days=parameters.btg_review_days,
            btg_max_hours=parameters.btg_max_hours,
            consent_max_days=parameters.consent_max_days,
        )
        RULES[tx.type](scope, tx.body)
    except RuleViolation as violation:
        block.store(nonce_key, NonceState(tx.nonce))
        return violation.code, violation.message
    block.merge(view)
    block.store(nonce_key, NonceState(tx.nonce))
    events.extend(scope.events)
    validator_changes.extend(scope.validator_changes)
    return ResultCode.OK, ""


def _resolve_signer(reader: Overlay, tx: Transaction, now_ms: int) -> Signer:
    key = reader.load(layout.public_key_key(tx.signer), KeyState)
    if key is None:
        raise RuleViolation(ResultCode.SIGNER_UNKNOWN, "the key belongs to no member or party")
    if key.status is KeyStatus.REVOKED and key.invalid_at(now_ms):
        raise RuleViolation(ResultCode.SIGNER_KEY_REVOKED, "the key is revoked")
    if key.invalid_at(now_ms):
        raise RuleViolation(ResultCode.SIGNER_KEY_ROTATED, "the key was rotated out")
    member = party = None
    if key.owner_kind is OwnerKind.MEMBER:
        member = reader.load(layout.member_key(key.owner_id), MemberState)
        assert member is not None, "a member key names a member"
        if not member.active:
            raise RuleViolation(ResultCode.SIGNER_INACTIVE, f"{member.org_id} was removed")
    else:
        party = reader.load(layout.party_key(key.owner_id), PartyState)
        assert party is not None, "a party key names a party"
    return Signer(public_key=tx.signer, key=key, member=member, party=party)


def _flag_overdue_reviews(block: Overlay, context: BlockContext, events: list[Event]) -> None:
    entries_per_patient: dict[str, int] = {}
    for key, _ in block.iterate(layout.REVIEW_DUE_PREFIX, limit=FLAGS_PER_BLOCK_MAX):
        due_ms, btg_id = layout.review_due_of(key)
        if due_ms >= context.timestamp_ms:
            break  # sorted by due time: the rest are not due yet
        btg = block.load(layout.break_glass_key(btg_id), BreakGlassState)
        assert btg is not None and btg.review_outcome is None and not btg.flagged
        block.delete(key)
        block.store(
            layout.break_glass_key(btg_id),
            replace(btg, flagged=True, flagged_height=context.height),
        )
        number = entries_per_patient.get(btg.patient, 0)
        entries_per_patient[btg.patient] = number + 1
        block.store(
            layout.audit_key(btg.patient, context.height, 0, number),
            AuditEntry(
                kind=AuditKind.BTG_FLAGGED,
                patient=btg.patient,
                actor=btg.practitioner,
                tx_id=btg.open_tx_id,
                height=context.height,
                position=None,
                time_ms=context.timestamp_ms,
                record_id=None,
                version=None,
                recipient=None,
                basis=GrantBasis.BREAK_GLASS,
                basis_id=btg_id,
            ),
        )
        events.append(
            BreakGlassFlagged(
                tx_id=btg.open_tx_id,
                height=context.height,
                btg_id=btg_id,
                patient=btg.patient,
                practitioner=btg.practitioner,
                review_due_ms=btg.review_due_ms,
            )
        )


def state_digest(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A digest of a whole state, given as (key, value) pairs in any order: the state
    commitment's multiset hash (ledger/commitment.py) over every item, so there is one
    definition of "this state" for the chain, state sync and the checkers alike."""
    return encode_accumulator(accumulator_of(items))


def validators(state: StateReader) -> list[tuple[str, bytes]]:
    """(org id, node key) of every active validator member, in org id order."""
    result = []
    prefix = layout.table_prefix(layout.MEMBER)
    for key, value in state.iterate(prefix, limit=MEMBERS_MAX):
        member = decode_value(key, value, MemberState)
        if member.active and member.validator:
            assert member.node_key is not None
            result.append((member.org_id, member.node_key))
    return result


def validator_node_keys(state: StateReader) -> list[bytes]:
    """The node keys of the current validators (the proposers the node accepts)."""
    return [node_key for _, node_key in validators(state)]
