"""Pure queries over the application state, for the RPC layer (and the SDK's tests).

Every function takes a :class:`StateReader` and returns plain data: dicts and lists of
str, int, bool, None and bytes (the RPC layer turns bytes into 0x-hex at its edge); enum
values are lower-case names. Lists are bounded by ``limit`` (at most QUERY_ITEMS_MAX) and
come in key order.

:func:`run_query` dispatches a JSON-RPC method name (``records_get``, ``consent_inForce``,
...) with its params dict to the function; ``now_ms`` is the time of the node's last
applied block, used where a status depends on time (proposal deadlines, break-glass
expiry and overdue reviews, consents in force when no time is given).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ledger.app import layout
from ledger.app.genesis import MEMBERS_MAX
from ledger.app.model import (
    AuditEntry,
    AuditKind,
    BreakGlassState,
    ClaimState,
    ConsentState,
    CoverageState,
    DelegationState,
    KeyGrantState,
    KeyState,
    MemberState,
    NonceState,
    PartyState,
    PremiumState,
    ProposalState,
    ProposalStatus,
    RecordState,
    RecordVersionState,
    RemittanceState,
    VoteState,
)
from ledger.app.state import StateReader, decode_value, load
from ledger.bodies import ID, Decision, GrantBasis, PartyKind, Purpose
from ledger.codec import Struct
from ledger.errors import DecodeError, RemoteError

S = TypeVar("S", bound=Struct)

# Items in one query answer: bounds the work and the size of one RPC response.
QUERY_ITEMS_MAX = 1000
QUERY_ITEMS_DEFAULT = 100
# Replaced claims followed back from one claim (a claim is rarely corrected twice).
CLAIM_CHAIN_MAX = 16


class QueryError(RemoteError):
    """A query that cannot be answered as asked."""


class UnknownQueryMethod(QueryError):
    pass


class InvalidQueryParams(QueryError):
    pass


# ---- plain data ---------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A Struct (or a field value) as plain data: dicts, lists, names for enum members."""
    if isinstance(value, Struct):
        return {name: plain(getattr(value, name)) for name, _ in value.SCHEMA}
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    assert value is None or isinstance(value, str | int | bytes), type(value)
    return value


def _items(
    state: StateReader, prefix: bytes, struct_class: type[S], limit: int
) -> list[S]:
    return [
        decode_value(key, value, struct_class)
        for key, value in state.iterate(prefix, limit=_bounded(limit))
    ]


def _indexed(
    state: StateReader,
    prefix: bytes,
    target: Callable[[str], bytes],
    struct_class: type[S],
    limit: int,
) -> list[S]:
    """Follow an index (``prefix`` NUL id -> Marker) to the values it names."""
    found = []
    for key, _ in state.iterate(prefix, limit=_bounded(limit)):
        value = load(state, target(layout.last_part(key)), struct_class)
        assert value is not None, f"index {key!r} names a missing value"
        found.append(value)
    return found


def _bounded(limit: int) -> int:
    return max(0, min(limit, QUERY_ITEMS_MAX))


# ---- governance ---------------------------------------------------------------------------


def members(state: StateReader) -> list[dict[str, Any]]:
    prefix = layout.table_prefix(layout.MEMBER)
    return [plain(member) for member in _items(state, prefix, MemberState, MEMBERS_MAX)]


def _proposal_status(proposal: ProposalState, now_ms: int) -> str:
    if proposal.status is ProposalStatus.OPEN and now_ms >= proposal.deadline_ms:
        return "expired"
    return proposal.status.name.lower()


def proposal(state: StateReader, proposal_id: str, *, now_ms: int) -> dict[str, Any] | None:
    found = load(state, layout.proposal_key(proposal_id), ProposalState)
    if found is None:
        return None
    answer: dict[str, Any] = plain(found)
    answer["status"] = _proposal_status(found, now_ms)
    answer["votes"] = [
        {"org_id": layout.last_part(key), **plain(decode_value(key, value, VoteState))}
        for key, value in state.iterate(layout.votes_prefix(proposal_id), limit=MEMBERS_MAX)
    ]
    return answer


def proposals(
    state: StateReader, *, now_ms: int, limit: int = QUERY_ITEMS_DEFAULT
) -> list[dict[str, Any]]:
    prefix = layout.table_prefix(layout.PROPOSAL)
    answer = []
    for found in _items(state, prefix, ProposalState, limit):
        item = plain(found)
        item["status"] = _proposal_status(found, now_ms)
        answer.append(item)
    return answer


def key(state: StateReader, public_key: bytes) -> dict[str, Any] | None:
    """Who owns a signing key, its status, and its last used nonce."""
    found = load(state, layout.public_key_key(public_key), KeyState)
    nonce = last_nonce(state, public_key)
    if found is None:
        return None if nonce == 0 else {"public_key": public_key, "last_nonce": nonce}
    return {**plain(found), "last_nonce": nonce}


def last_nonce(state: StateReader, public_key: bytes) -> int:
    """The key's last used nonce (0 if it never signed an included tx): the next tx of
    that key needs a greater one."""
    found = load(state, layout.nonce_key(public_key), NonceState)
    return 0 if found is None else found.last_nonce


def validator_set(state: StateReader) -> list[dict[str, Any]]:
    return [
        {"org_id": member["org_id"], "node_key": member["node_key"]}
        for member in members(state)
        if member["active"] and member["validator"]
    ]


# ---- parties and records ------------------------------------------------------------------


def party(state: StateReader, party_id: str) -> dict[str, Any] | None:
    found = load(state, layout.party_key(party_id), PartyState)
    return None if found is None else plain(found)


def record(state: StateReader, record_id: str) -> dict[str, Any] | None:
    """A record's head and its versions (none left once it is shredded)."""
    head = load(state, layout.record_key(record_id), RecordState)
    if head is None:
        return None
    answer: dict[str, Any] = plain(head)
    answer["versions"] = [
        plain(version)
        for version in _items(
            state, layout.record_versions_prefix(record_id), RecordVersionState, QUERY_ITEMS_MAX
        )
    ]
    return answer


def patient_records(
    state: StateReader, patient: str, *, limit: int = QUERY_ITEMS_DEFAULT
) -> list[dict[str, Any]]:
    answer = []
    for key, _ in state.iterate(layout.patient_records_prefix(patient), limit=_bounded(limit)):
        found = record(state, layout.last_part(key))
        assert found is not None
        answer.append(found)
    return answer


def key_grant(state: StateReader, grant_id: str) -> dict[str, Any] | None:
    found = load(state, layout.key_grant_key(grant_id), KeyGrantState)
    return None if found is None else plain(found)


# ---- consent and access -------------------------------------------------------------------


def consent(state: StateReader, consent_id: str) -> dict[str, Any] | None:
    found = load(state, layout.consent_key(consent_id), ConsentState)
    return None if found is None else plain(found)


def patient_consents(
    state: StateReader, patient: str, *, limit: int = QUERY_ITEMS_DEFAULT
) -> list[dict[str, Any]]:
    return [
        plain(found)
        for found in _indexed(
            state,
            layout.patient_consents_prefix(patient),
            layout.consent_key,
            ConsentState,
            limit,
        )
    ]


def consents_in_force(
    state: StateReader,
    patient: str,
    grantee: str,
    *,
    at_ms: int,
    limit: int = QUERY_ITEMS_DEFAULT,
) -> dict[str, Any]:
    """The consents of ``patient`` in force at ``at_ms`` that apply to ``grantee`` (named
    directly, or through the org that registered a practitioner grantee), split into
    permits and denies. A live deny beats any permit it covers."""
    grantees = {grantee}
    grantee_party = load(state, layout.party_key(grantee), PartyState)
    if grantee_party is not None and grantee_party.kind is PartyKind.PRACTITIONER:
        grantees.add(grantee_party.registered_by)
    permits: list[Any] = []
    denies: list[Any] = []
    for found in _indexed(
        state, layout.patient_consents_prefix(patient), layout.consent_key, ConsentState,
        QUERY_ITEMS_MAX,
    ):
        if found.grantee in grantees and found.live_at(at_ms):
            target = permits if found.decision is Decision.PERMIT else denies
            target.append(plain(found))
    return {
        "patient": patient,
        "grantee": grantee,
        "at_ms": at_ms,
        "permits": permits[: _bounded(limit)],
        "denies": denies[: _bounded(limit)],
    }


def delegations(
    state: StateReader, patient: str, delegate: str, *, now_ms: int
) -> list[dict[str, Any]]:
    answer = []
    for found in _indexed(
        state,
        layout.delegation_pair_prefix(patient, delegate),
        layout.delegation_key,
        DelegationState,
        QUERY_ITEMS_MAX,
    ):
        item = plain(found)
        item["valid"] = now_ms < found.valid_until_ms
        answer.append(item)
    return answer


def break_glass(state: StateReader, btg_id: str, *, now_ms: int) -> dict[str, Any] | None:
    """A break-glass with its access status (open / closed / expired) and its review status
    (reviewed / flagged / overdue, i.e. due but not yet flagged by a block / pending)."""
    found = load(state, layout.break_glass_key(btg_id), BreakGlassState)
    if found is None:
        return None
    answer: dict[str, Any] = plain(found)
    if found.open_at(now_ms):
        answer["access"] = "open"
    elif found.closed_ms is not None and found.closed_ms < found.expires_ms:
        answer["access"] = "closed"
    else:
        answer["access"] = "expired"
    if found.review_outcome is not None:
        answer["review"] = "reviewed"
    elif found.flagged:
        answer["review"] = "flagged"
    elif now_ms > found.review_due_ms:
        answer["review"] = "overdue"
    else:
        answer["review"] = "pending"
    return answer


def audit_trail(
    state: StateReader, patient: str, *, limit: int = QUERY_ITEMS_DEFAULT
) -> list[dict[str, Any]]:
    """The patient's access audit trail in chain order: every key grant and break-glass
    open / close / review / flag, each with the tx id, height and position of its tx (a
    flag names the opening tx and has no position)."""
    return [
        plain(entry)
        for entry in _items(state, layout.audit_prefix(patient), AuditEntry, limit)
    ]


# ---- accounting of disclosures (HIPAA 45 CFR 164.528) -------------------------------------

# The accounting covers the six years before the request when no period is asked for:
# six 365-day years plus the two leap days six years can hold, so never a day too short.
DISCLOSURE_WINDOW_MS_DEFAULT = (6 * 365 + 2) * 86_400_000
# Trail entries that are not disclosures (a break-glass's close, review and flag: at most
# three per disclosure) read per disclosure answered, so one call reads at most this many
# entries per item of its limit, however long the patient's history.
AUDIT_ENTRIES_PER_DISCLOSURE_MAX = 4
# layout.audit_key: the part after the patient is the height as 16 hex digits, then the
# slot and the entry's number; every entry of one height has its block's time.
_AUDIT_HEIGHT_DIGITS = 16
_HEX_DIGITS = b"0123456789abcdef"
_DISCLOSURE_KINDS = (AuditKind.KEY_GRANT, AuditKind.BTG_OPEN)


def disclosures(
    state: StateReader,
    patient: str,
    *,
    now_ms: int,
    from_ms: int | None = None,
    to_ms: int | None = None,
    limit: int = QUERY_ITEMS_DEFAULT,
) -> dict[str, Any] | None:
    """The accounting of disclosures of ``patient``'s records in [from_ms, to_ms] (block
    times, both ends included), in chain order: every key grant to another party (under a
    consent or a break-glass) and every break-glass opened on the patient (the emergency
    override is itself a disclosure), each with its date, recipient, what was disclosed,
    purpose, basis and tx. ``to_ms`` defaults to ``now_ms`` (the last block's time),
    ``from_ms`` to six years before ``to_ms``. None when no party ``patient`` exists.

    At most ``limit`` disclosures; when there are more, ``complete`` is false and
    ``next_from_ms`` is the date of the first one left out (asking again from there
    answers again those of that block already answered: a block has one time).
    """
    _check_disclosure_params(patient, from_ms, to_ms, limit)
    to_ms = now_ms if to_ms is None else to_ms
    from_ms = max(0, to_ms - DISCLOSURE_WINDOW_MS_DEFAULT) if from_ms is None else from_ms
    if from_ms > to_ms:
        raise InvalidQueryParams(
            f"audit_disclosures: from_ms {from_ms} is after to_ms {to_ms} (to_ms defaults "
            f"to the last block's time, {now_ms})"
        )
    found = load(state, layout.party_key(patient), PartyState)
    if found is None:
        return None
    if found.kind is not PartyKind.PATIENT:
        raise InvalidQueryParams(
            f"audit_disclosures: {patient} is a {found.kind.name.lower()}, not a patient"
        )
    wanted = _bounded(limit)
    answered: list[dict[str, Any]] = []
    next_from_ms = None
    entries_max = (wanted + 1) * AUDIT_ENTRIES_PER_DISCLOSURE_MAX
    trail = _trail_from(state, patient, from_ms, entries_max)
    for read, entry in enumerate(trail, start=1):
        if entry.time_ms > to_ms:
            break
        if entry.kind in _DISCLOSURE_KINDS and entry.recipient != patient:
            # (A key for the patient is no disclosure: 164.528(a)(1)(ii).)
            if len(answered) == wanted:
                next_from_ms = entry.time_ms
                break
            answered.append(_disclosure(state, entry))
        if read == entries_max:  # the patient's own keys filled the reading: go on later
            next_from_ms = entry.time_ms
    return {
        "patient": patient,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "as_of_ms": now_ms,
        "disclosures": answered,
        "complete": next_from_ms is None,
        "next_from_ms": next_from_ms,
    }


def _check_disclosure_params(
    patient: str, from_ms: int | None, to_ms: int | None, limit: int
) -> None:
    try:
        ID.from_wire(patient)
    except DecodeError as error:
        raise InvalidQueryParams(f"audit_disclosures: patient is not a party id: {error}") from None
    for name, value in (("from_ms", from_ms), ("to_ms", to_ms), ("limit", limit)):
        if value is not None and not 0 <= value < 2**64:
            raise InvalidQueryParams(
                f"audit_disclosures: {name} must be in [0, 2**64), not {value}"
            )


def _disclosure(state: StateReader, entry: AuditEntry) -> dict[str, Any]:
    assert entry.basis is not None and entry.basis_id is not None, entry
    if entry.kind is AuditKind.KEY_GRANT:
        assert entry.record_id is not None and entry.recipient is not None, entry
        recipient = _recipient(state, entry.recipient)
        records = [_disclosed_record(state, entry.record_id, entry.version)]
        if entry.basis is GrantBasis.CONSENT:
            consent = load(state, layout.consent_key(entry.basis_id), ConsentState)
            assert consent is not None, f"grant {entry.tx_id.hex()} names a missing consent"
            purpose = consent.purpose
        else:
            purpose = Purpose.EMERGENCY
    else:
        btg = load(state, layout.break_glass_key(entry.basis_id), BreakGlassState)
        assert btg is not None, f"audit entry names a missing break-glass {entry.basis_id}"
        recipient = _recipient(state, btg.practitioner, organisation=btg.organisation)
        records = [_disclosed_record(state, record_id, None) for record_id in btg.records]
        purpose = Purpose.EMERGENCY
    return {
        "kind": "key_grant" if entry.kind is AuditKind.KEY_GRANT else "break_glass",
        "date_ms": entry.time_ms,
        "recipient": recipient,
        "records": records,
        "purpose": plain(purpose),
        "basis": plain(entry.basis),
        "basis_id": entry.basis_id,
        "released_by": _releaser(state, entry.actor),
        "tx_id": entry.tx_id,
        "height": entry.height,
        "position": entry.position,
    }


def _recipient(
    state: StateReader, party_id: str, *, organisation: str | None = None
) -> dict[str, Any]:
    """A recipient as state knows it: pseudonymous, so a kind and an organisation (the
    member that registered a practitioner), never a name."""
    found = load(state, layout.party_key(party_id), PartyState)
    assert found is not None, f"a disclosure names a missing party {party_id}"
    if organisation is None and found.kind is PartyKind.PRACTITIONER:
        organisation = found.registered_by
    member = None if organisation is None else load(
        state, layout.member_key(organisation), MemberState
    )
    return {
        "party_id": party_id,
        "kind": plain(found.kind),
        "organisation": organisation,
        "organisation_kind": None if member is None else plain(member.kind),
    }


def _releaser(state: StateReader, actor: str) -> dict[str, Any]:
    """Who signed the release: a member (the custodian) or a party (the patient, a
    delegate; for a break-glass, the practitioner)."""
    member = load(state, layout.member_key(actor), MemberState)
    if member is not None:
        return {"id": actor, "member": True, "kind": plain(member.kind)}
    party = load(state, layout.party_key(actor), PartyState)
    assert party is not None, f"a disclosure names an unknown signer {actor}"
    return {"id": actor, "member": False, "kind": plain(party.kind)}


def _disclosed_record(state: StateReader, record_id: str, version: int | None) -> dict[str, Any]:
    head = load(state, layout.record_key(record_id), RecordState)
    assert head is not None, f"a disclosure names a missing record {record_id}"
    found: RecordState | RecordVersionState = head
    if version is not None:  # a shredded record keeps only its head
        found = load(state, layout.record_version_key(record_id, version),
                     RecordVersionState) or head
    return {
        "record_id": record_id,
        "version": version,
        "document_type": plain(found.document_type),
        "confidentiality": plain(found.confidentiality),
        "custodian": head.custodian,
    }


def _trail_from(
    state: StateReader, patient: str, from_ms: int, entries_max: int
) -> Iterator[AuditEntry]:
    """The patient's audit entries from the first of time ``from_ms`` or later, in chain
    order, at most ``entries_max``. StateReader reads by prefix only, so the start is found
    by descending the hex digits of the height (times grow with heights): at most 16
    reads per digit, however long the trail before it."""
    prefix = layout.audit_prefix(patient)
    height_digits = _first_height_from(state, prefix, from_ms, b"")
    if height_digits is None:
        return
    for key, value in _iterate_from_height(state, prefix, height_digits, entries_max):
        yield decode_value(key, value, AuditEntry)


def _first_audit(state: StateReader, prefix: bytes, under: bytes) -> tuple[bytes, int] | None:
    """The height digits and time of the first audit entry under ``prefix + under``."""
    for key, value in state.iterate(prefix + under, limit=1):
        height_digits = key[len(prefix) : len(prefix) + _AUDIT_HEIGHT_DIGITS]
        return height_digits, decode_value(key, value, AuditEntry).time_ms
    return None


def _first_height_from(
    state: StateReader, prefix: bytes, from_ms: int, digits: bytes
) -> bytes | None:
    """The hex digits of the first height under ``prefix + digits`` whose entries' time
    is ``from_ms`` or later, or None. Each call reads 16 children at most and descends
    into one, so a search reads at most 16 x 16 entries."""
    if len(digits) == _AUDIT_HEIGHT_DIGITS:  # one height: one block time
        first = _first_audit(state, prefix, digits)
        return None if first is None or first[1] < from_ms else digits
    earlier: bytes | None = None  # the last child whose first entry is before from_ms
    for digit in _HEX_DIGITS:
        child = digits + bytes([digit])
        first = _first_audit(state, prefix, child)
        if first is None:
            continue
        if first[1] >= from_ms:
            # Only the child before may still end with entries this late; else this
            # child's first height is the answer.
            inside = None if earlier is None else _first_height_from(
                state, prefix, from_ms, earlier
            )
            return first[0] if inside is None else inside
        earlier = child
    return None if earlier is None else _first_height_from(state, prefix, from_ms, earlier)


def _iterate_from_height(
    state: StateReader, prefix: bytes, height_digits: bytes, limit: int
) -> Iterator[tuple[bytes, bytes]]:
    """The items under ``prefix`` of height ``height_digits`` and later, in key order, at
    most ``limit``: that height's, then each later sibling of each of its digits, from
    the last digit up."""
    assert len(height_digits) == _AUDIT_HEIGHT_DIGITS, height_digits
    ranges = [prefix + height_digits]
    for depth in range(_AUDIT_HEIGHT_DIGITS - 1, -1, -1):
        later = _HEX_DIGITS[_HEX_DIGITS.index(height_digits[depth]) + 1 :]
        ranges += [prefix + height_digits[:depth] + bytes([digit]) for digit in later]
    left = limit
    for range_prefix in ranges:
        if left == 0:
            return
        for item in state.iterate(range_prefix, limit=left):
            left -= 1
            yield item


# ---- insurance ----------------------------------------------------------------------------


def claim(state: StateReader, claim_id: str) -> dict[str, Any] | None:
    """A claim with its history, and the claims it replaced (newest first)."""
    found = load(state, layout.claim_key(claim_id), ClaimState)
    if found is None:
        return None
    answer: dict[str, Any] = plain(found)
    answer["benefit_total"] = found.benefit_total
    answer["payable_amount"] = found.payable_amount
    chain: list[Any] = []
    replaced = found.replaces
    while replaced is not None and len(chain) < CLAIM_CHAIN_MAX:
        earlier = load(state, layout.claim_key(replaced), ClaimState)
        if earlier is None:
            break
        chain.append(plain(earlier))
        replaced = earlier.replaces
    answer["replaced_claims"] = chain
    return answer


def patient_claims(
    state: StateReader, patient: str, *, limit: int = QUERY_ITEMS_DEFAULT
) -> list[dict[str, Any]]:
    return [
        plain(found)
        for found in _indexed(
            state, layout.patient_claims_prefix(patient), layout.claim_key, ClaimState, limit
        )
    ]


def coverage(state: StateReader, coverage_id: str) -> dict[str, Any] | None:
    """A coverage and the premium periods paid so far."""
    found = load(state, layout.coverage_key(coverage_id), CoverageState)
    if found is None:
        return None
    answer: dict[str, Any] = plain(found)
    premiums = []
    for key, value in state.iterate(layout.premiums_prefix(coverage_id), limit=1200):
        premiums.append(
            {"period": int(layout.last_part(key), 16), **plain(decode_value(key, value,
                                                                            PremiumState))}
        )
    answer["premiums"] = premiums
    return answer


def patient_coverages(
    state: StateReader, patient: str, *, limit: int = QUERY_ITEMS_DEFAULT
) -> list[dict[str, Any]]:
    answer = []
    for key, _ in state.iterate(
        layout.beneficiary_coverages_prefix(patient), limit=_bounded(limit)
    ):
        found = coverage(state, layout.last_part(key))
        assert found is not None
        answer.append(found)
    return answer


def remittance(state: StateReader, remittance_id: str) -> dict[str, Any] | None:
    found = load(state, layout.remittance_key(remittance_id), RemittanceState)
    return None if found is None else plain(found)


# ---- dispatch -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryMethod:
    """A query the RPC layer exposes: its parameters (name -> type) and how to run it."""

    params: Mapping[str, type]
    run: Callable[[StateReader, dict[str, Any], int], Any]
    optional: tuple[str, ...] = ()
    description: str = ""  # for the OpenRPC document (rpc.discover)


QUERY_METHODS: Mapping[str, QueryMethod] = {
    # The time of the last applied block: clients (which must not read their own clock to
    # build ledger txs) take "now" from here for consent periods and deadlines.
    "gov_chainTime": QueryMethod({}, lambda s, p, now: {"now_ms": now}),
    "gov_members": QueryMethod({}, lambda s, p, now: members(s)),
    "gov_validators": QueryMethod({}, lambda s, p, now: validator_set(s)),
    "gov_proposals": QueryMethod(
        {"limit": int}, lambda s, p, now: proposals(s, now_ms=now, **p), ("limit",)
    ),
    "gov_proposal": QueryMethod(
        {"proposal_id": str}, lambda s, p, now: proposal(s, p["proposal_id"], now_ms=now)
    ),
    "gov_key": QueryMethod({"public_key": bytes}, lambda s, p, now: key(s, p["public_key"])),
    "records_party": QueryMethod({"party_id": str}, lambda s, p, now: party(s, p["party_id"])),
    "records_get": QueryMethod({"record_id": str}, lambda s, p, now: record(s, p["record_id"])),
    "records_byPatient": QueryMethod(
        {"patient": str, "limit": int},
        lambda s, p, now: patient_records(s, **p),
        ("limit",),
    ),
    "records_grant": QueryMethod(
        {"grant_id": str}, lambda s, p, now: key_grant(s, p["grant_id"])
    ),
    "consent_get": QueryMethod(
        {"consent_id": str}, lambda s, p, now: consent(s, p["consent_id"])
    ),
    "consent_byPatient": QueryMethod(
        {"patient": str, "limit": int},
        lambda s, p, now: patient_consents(s, **p),
        ("limit",),
    ),
    "consent_inForce": QueryMethod(
        {"patient": str, "grantee": str, "at_ms": int, "limit": int},
        lambda s, p, now: consents_in_force(
            s, p["patient"], p["grantee"], at_ms=p.get("at_ms", now),
            limit=p.get("limit", QUERY_ITEMS_DEFAULT),
        ),
        ("at_ms", "limit"),
    ),
    "consent_delegations": QueryMethod(
        {"patient": str, "delegate": str},
        lambda s, p, now: delegations(s, p["patient"], p["delegate"], now_ms=now),
    ),
    "audit_trail": QueryMethod(
        {"patient": str, "limit": int}, lambda s, p, now: audit_trail(s, **p), ("limit",)
    ),
    # The patient's accounting of disclosures (HIPAA 45 CFR 164.528): key grants to
    # others and break-glass opens in [from_ms, to_ms], default the six years to now.
    "audit_disclosures": QueryMethod(
        {"patient": str, "from_ms": int, "to_ms": int, "limit": int},
        lambda s, p, now: disclosures(s, p["patient"], now_ms=now, from_ms=p.get("from_ms"),
                                      to_ms=p.get("to_ms"),
                                      limit=p.get("limit", QUERY_ITEMS_DEFAULT)),
        ("from_ms", "to_ms", "limit"),
        "The patient's accounting of disclosures (HIPAA 45 CFR 164.528) in chain order: "
        "every key grant of the patient's records to another party and every break-glass "
        "opened on the patient, with date, recipient, records, purpose, basis and tx. "
        "from_ms and to_ms (block times, inclusive) default to the six years up to the "
        "last block; at most limit items, then complete is false and next_from_ms says "
        "where to ask again.",
    ),
    "audit_breakGlass": QueryMethod(
        {"btg_id": str}, lambda s, p, now: break_glass(s, p["btg_id"], now_ms=now)
    ),
    "claims_get": QueryMethod({"claim_id": str}, lambda s, p, now: claim(s, p["claim_id"])),
    "claims_byPatient": QueryMethod(
        {"patient": str, "limit": int}, lambda s, p, now: patient_claims(s, **p), ("limit",)
    ),
    "claims_coverage": QueryMethod(
        {"coverage_id": str}, lambda s, p, now: coverage(s, p["coverage_id"])
    ),
    "claims_coveragesByPatient": QueryMethod(
        {"patient": str, "limit": int},
        lambda s, p, now: patient_coverages(s, **p),
        ("limit",),
    ),
    "claims_remittance": QueryMethod(
        {"remittance_id": str}, lambda s, p, now: remittance(s, p["remittance_id"])
    ),
}


def run_query(state: StateReader, method: str, params: Mapping[str, Any], *, now_ms: int) -> Any:
    """Run one named query. Bytes params may be given as bytes or 0x-hex strings.

    Raises UnknownQueryMethod (JSON-RPC -32601) or InvalidQueryParams (-32602).
    """
    spec = QUERY_METHODS.get(method)
    if spec is None:
        raise UnknownQueryMethod(f"no query method {method!r}")
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise InvalidQueryParams(f"{method}: unknown params {unknown}")
    checked: dict[str, Any] = {}
    for name, expected in spec.params.items():
        if name not in params:
            if name in spec.optional:
                continue
            raise InvalidQueryParams(f"{method}: missing param {name!r}")
        checked[name] = _param(method, name, params[name], expected)
    return spec.run(state, checked, now_ms)


def _param(method: str, name: str, value: Any, expected: type) -> Any:
    if expected is bytes and isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            raise InvalidQueryParams(f"{method}: {name} is not 0x-hex") from None
    if type(value) is not expected:
        raise InvalidQueryParams(f"{method}: {name} must be {expected.__name__}")
    return value
