"""The application's rules one by one, beyond the bad inputs of DOMAIN.md: the valid paths,
the other refusals and their codes, and what the queries then report."""

from __future__ import annotations

from app_invariants import check_indexes, decode_state
from app_world import (
    DAY_MS,
    HOUR_MS,
    World,
    claim_lines,
    clinic_world,
    digest,
    insured_world,
    member_genesis,
    signing_key,
)

from ledger import bodies as b
from ledger.app import BlockContext, ValidatorAction, apply_block, layout, validator_node_keys
from ledger.app.events import BreakGlassFlagged, BreakGlassReviewed, ProposalDecided
from ledger.app.model import (
    BreakGlassState,
    ClaimState,
    ClaimStatus,
    PairCountState,
    ProposalStatus,
)
from ledger.app.state import StateReader, load
from ledger.results import ResultCode as R
from ledger.sdk.builders import TransactionBuilder
from ledger.tx import Transaction

# ---- governance ---------------------------------------------------------------------------


def propose(world: World, proposal_id: str, org_id: str, *, validator: bool = False,
            action: b.ProposalAction = b.ProposalAction.ADD_MEMBER,
            admin_key: bytes | None = None) -> Transaction:
    return world.members["hospital-a"].propose_member(
        proposal_id=proposal_id, org_id=org_id, kind=b.MemberKind.PROVIDER,
        admin_key=admin_key or signing_key("admin/" + org_id).public_key,
        node_key=signing_key("node/" + org_id).public_key, validator=validator,
        evidence_hash=digest("evidence"), deadline_ms=world.now + 2 * DAY_MS, action=action,
    )


def test_a_proposal_passes_at_more_than_two_thirds_and_changes_the_validator_set() -> None:
    world = World()  # 5 members: 4 approvals needed (4 * 3 > 5 * 2, 3 * 3 is not)
    world.ok(propose(world, "p-1", "clinic", validator=True))
    for org in ("hospital-a", "hospital-b", "lab"):
        world.ok(world.members[org].vote("p-1"))
    assert world.query("gov_proposal", proposal_id="p-1")["status"] == "open"  # type: ignore[index]
    outcome = world.ledger.commit_block([world.members["insurer"].vote("p-1")])
    assert outcome.codes == (R.OK,)
    (change,) = outcome.validator_changes
    assert (change.org_id, change.action) == ("clinic", ValidatorAction.ADD)
    assert change.node_key == signing_key("node/clinic").public_key
    assert [e.status for e in outcome.events if isinstance(e, ProposalDecided)] == [
        ProposalStatus.PASSED
    ]
    assert signing_key("node/clinic").public_key in validator_node_keys(world.ledger.state)
    world.refused(world.members["vault"].vote("p-1"), R.VOTE_PROPOSAL_CLOSED)
    clinic = TransactionBuilder(world.genesis.chain_id, signing_key("admin/clinic"))
    world.ok(clinic.register_party(party_id="pat-c", kind=b.PartyKind.PATIENT,
                                   signing_key=signing_key("pat-c").public_key,
                                   encryption_key=bytes(32)))


def test_a_proposal_is_rejected_once_it_can_no_longer_pass() -> None:
    world = World()
    world.ok(propose(world, "p-1", "clinic"))
    world.ok(world.members["hospital-b"].vote("p-1", approve=False))
    world.ok(world.members["lab"].vote("p-1", approve=False))
    assert world.query("gov_proposal", proposal_id="p-1")["status"] == "rejected"  # type: ignore[index]
    world.refused(world.members["insurer"].vote("p-1"), R.VOTE_PROPOSAL_CLOSED)


def test_removing_a_member_stops_its_key_and_its_validator() -> None:
    world = World()
    world.ok(propose(world, "p-1", "lab", action=b.ProposalAction.REMOVE_MEMBER))
    changes = []
    for org in ("hospital-a", "hospital-b", "insurer", "vault"):
        changes += world.ledger.commit_block([world.members[org].vote("p-1")]).validator_changes
    assert [(c.org_id, c.action) for c in changes] == [("lab", ValidatorAction.REMOVE)]
    world.refused(world.anchor("rec-x", "nobody"), R.SIGNER_INACTIVE)


def test_the_last_validator_cannot_be_removed() -> None:
    world = World(member_genesis((("solo", b.MemberKind.PROVIDER, True),
                                  ("other", b.MemberKind.INSURER, False))))
    world.refused(
        world.members["solo"].propose_member(
            proposal_id="p", org_id="solo", kind=b.MemberKind.PROVIDER,
            admin_key=bytes(32), evidence_hash=digest("e"), deadline_ms=world.now + DAY_MS,
            action=b.ProposalAction.REMOVE_MEMBER,
        ),
        R.PROPOSAL_REMOVES_LAST_VALIDATOR,
    )


def test_proposal_refusals() -> None:
    world = clinic_world()
    world.ok(propose(world, "p-1", "clinic"))
    world.refused(propose(world, "p-1", "clinic-2"), R.PROPOSAL_ID_EXISTS)
    world.refused(propose(world, "p-2", "lab"), R.PROPOSAL_ORG_EXISTS)
    world.refused(propose(world, "p-3", "alice"), R.PROPOSAL_ORG_EXISTS)
    world.refused(propose(world, "p-4", "clinic-3", admin_key=world.members["lab"].public_key),
                  R.PROPOSAL_KEY_IN_USE)
    world.refused(propose(world, "p-5", "nobody", action=b.ProposalAction.REMOVE_MEMBER),
                  R.PROPOSAL_ORG_NOT_ACTIVE)
    world.refused(
        world.members["hospital-a"].propose_member(
            proposal_id="p-6", org_id="c", kind=b.MemberKind.PROVIDER, admin_key=bytes(32),
            node_key=None, validator=True, evidence_hash=digest("e"),
            deadline_ms=world.now + DAY_MS,
        ),
        R.PROPOSAL_VALIDATOR_WITHOUT_NODE_KEY,
    )
    world.refused(
        world.members["hospital-a"].propose_member(
            proposal_id="p-7", org_id="c", kind=b.MemberKind.PROVIDER, admin_key=bytes(32),
            evidence_hash=digest("e"), deadline_ms=world.now,
        ),
        R.PROPOSAL_DEADLINE_PAST,
    )
    grey = world.parties["grey"].builder
    world.refused(grey.sign(b.TxType.PROPOSE_MEMBER, propose(world, "p-8", "c").body),
                  R.PROPOSER_NOT_ACTIVE_MEMBER)
    world.refused(grey.vote("p-1"), R.VOTER_NOT_ACTIVE_MEMBER)
    world.refused(world.members["lab"].vote("p-none"), R.VOTE_PROPOSAL_UNKNOWN)
    world.advance(2 * DAY_MS)
    world.refused(world.members["lab"].vote("p-1"), R.VOTE_PROPOSAL_CLOSED)
    assert world.query("gov_proposal", proposal_id="p-1")["status"] == "expired"  # type: ignore[index]


def test_a_key_revoked_by_a_passed_vote() -> None:
    world = World()
    target = world.members["hospital-b"].public_key
    world.ok(propose(world, "p-1", "hospital-b", action=b.ProposalAction.REVOKE_KEY,
                     admin_key=target))
    for org in ("hospital-a", "lab", "insurer", "vault"):
        world.ok(world.members[org].vote("p-1"))
    lab = world.members["lab"]
    revoke = lab.revoke_key(target, reason=b.RevocationReason.KEY_COMPROMISE,
                            invalidity_ms=world.now, proposal_id="p-none")
    world.refused(revoke, R.REVOKE_PROPOSAL_INVALID)
    world.ok(lab.revoke_key(target, reason=b.RevocationReason.KEY_COMPROMISE,
                            invalidity_ms=world.now, proposal_id="p-1"))
    assert world.query("gov_proposal", proposal_id="p-1")["status"] == "executed"  # type: ignore[index]
    world.refused(world.members["hospital-b"].vote("p-1"), R.SIGNER_KEY_REVOKED)


def test_rotate_key_needs_the_new_keys_signature_and_retires_the_old_key() -> None:
    world = clinic_world()
    alice = world.parties["alice"].builder
    new_key = signing_key("alice/new")
    forged_body = b.RotateKey(new_key.public_key, bytes(64))
    world.refused(alice.sign(b.TxType.ROTATE_KEY, forged_body), R.ROTATE_NEW_KEY_SIGNATURE_INVALID)
    world.refused(alice.rotate_key(signing_key("party/grey")), R.ROTATE_NEW_KEY_IN_USE)
    world.ok(alice.rotate_key(new_key))
    world.refused(world.consent(alice, "consent-1", "alice", "grey"), R.SIGNER_KEY_ROTATED)
    world.ok(world.consent(alice.rotated(new_key), "consent-1", "alice", "grey"))
    party = world.query("records_party", party_id="alice")
    assert party["signing_key"] == new_key.public_key  # type: ignore[index]


def test_a_revocation_with_a_future_invalidity_time_takes_effect_then() -> None:
    world = clinic_world()
    alice = world.parties["alice"].builder
    world.ok(world.members["hospital-a"].revoke_key(
        alice.public_key, reason=b.RevocationReason.SUPERSEDED,
        invalidity_ms=world.now + HOUR_MS))
    world.ok(world.consent(alice, "consent-1", "alice", "grey"))
    world.advance(HOUR_MS)
    world.refused(world.consent(alice, "consent-2", "alice", "grey"), R.SIGNER_KEY_REVOKED)


def test_revocation_refusals() -> None:
    world = clinic_world()
    grey = world.parties["grey"].builder
    alice_key = world.parties["alice"].key
    world.refused(grey.revoke_key(alice_key, reason=b.RevocationReason.UNSPECIFIED,
                                  invalidity_ms=0), R.REVOKE_NOT_AUTHORISED)
    world.refused(world.members["hospital-b"].revoke_key(
        alice_key, reason=b.RevocationReason.UNSPECIFIED, invalidity_ms=0),
        R.REVOKE_NOT_AUTHORISED)
    world.refused(grey.revoke_key(bytes(32), reason=b.RevocationReason.UNSPECIFIED,
                                  invalidity_ms=0), R.REVOKE_KEY_UNKNOWN)
    hospital = world.members["hospital-a"]
    world.ok(hospital.revoke_key(alice_key, reason=b.RevocationReason.AFFILIATION_CHANGED,
                                 invalidity_ms=world.now + DAY_MS))
    world.refused(hospital.revoke_key(alice_key, reason=b.RevocationReason.KEY_COMPROMISE,
                                      invalidity_ms=0), R.REVOKE_KEY_ALREADY_REVOKED)


# ---- parties and records ------------------------------------------------------------------


def test_party_registration_refusals() -> None:
    world = clinic_world()
    hospital = world.members["hospital-a"]

    def register(party_id: str, kind: b.PartyKind = b.PartyKind.PATIENT,
                 key: bytes | None = None, roles: tuple[b.PartyRole, ...] = (),
                 minor: bool = False) -> Transaction:
        return hospital.register_party(
            party_id=party_id, kind=kind, signing_key=key or signing_key(party_id).public_key,
            encryption_key=bytes(32), roles=roles, minor=minor)

    world.refused(register("alice"), R.PARTY_ID_EXISTS)
    world.refused(register("lab"), R.PARTY_ID_EXISTS)
    world.refused(register("eve", key=world.parties["grey"].key), R.PARTY_KEY_IN_USE)
    world.refused(register("eve", roles=(b.PartyRole.EMERGENCY,)), R.PARTY_ROLES_INVALID)
    world.refused(register("eve", b.PartyKind.PRACTITIONER,
                           roles=(b.PartyRole.ATTENDING, b.PartyRole.ATTENDING)),
                  R.PARTY_ROLES_INVALID)
    world.refused(register("eve", b.PartyKind.RELATED_PERSON, minor=True),
                  R.PARTY_MINOR_NOT_PATIENT)
    world.refused(world.parties["grey"].builder.sign(b.TxType.REGISTER_PARTY,
                                                     register("eve").body),
                  R.PARTY_REGISTRAR_NOT_MEMBER)


def test_record_versions_follow_each_other_from_the_one_custodian() -> None:
    world = clinic_world()
    first = world.ledger.query("records_get", {"record_id": "rec-lab"})
    v1_hash = first["ciphertext_hash"]
    world.refused(world.anchor("rec-lab", "alice", version=3, previous=v1_hash),
                  R.RECORD_VERSION_NOT_NEXT)
    world.refused(world.anchor("rec-lab", "alice", version=1), R.RECORD_VERSION_NOT_NEXT)
    world.refused(world.anchor("rec-lab", "alice", version=2, previous=digest("other")),
                  R.RECORD_PREVIOUS_HASH_MISMATCH)
    world.refused(world.anchor("rec-lab", "alice", version=2, previous=v1_hash,
                               org="hospital-a"), R.RECORD_CUSTODIAN_MISMATCH)
    world.refused(world.anchor("rec-lab", "bob", version=2, previous=v1_hash),
                  R.RECORD_PATIENT_MISMATCH)
    world.ok(world.anchor("rec-lab", "alice", version=2, previous=v1_hash))
    record = world.ledger.query("records_get", {"record_id": "rec-lab"})
    assert record["version"] == 2 and [v["version"] for v in record["versions"]] == [1, 2]


def test_record_anchor_refusals() -> None:
    world = clinic_world()
    patient_wrap = b.Wrap("alice", digest("w"))
    cases = [
        (world.anchor("rec-2", "alice", wraps=(b.Wrap("lab", digest("w")),)),
         R.RECORD_PATIENT_WRAP_MISSING),
        (world.anchor("rec-2", "alice", wraps=(patient_wrap, b.Wrap("ghost", digest("x")))),
         R.RECORD_WRAP_RECIPIENT_UNKNOWN),
        (world.anchor("rec-2", "alice", wraps=(patient_wrap, patient_wrap)),
         R.RECORD_WRAP_DUPLICATE),
        (world.anchor("rec-2", "alice", wraps=(b.Wrap("alice", bytes(32)),)),
         R.RECORD_HASH_MALFORMED),
        (world.anchor("rec-2", "grey"), R.PATIENT_UNKNOWN),
        (world.anchor("rec-2", "alice", org="insurer"), R.ANCHOR_SIGNER_NOT_CUSTODIAN_MEMBER),
    ]
    for tx, code in cases:
        world.refused(tx, code)
    world.ok(world.anchor("rec-2", "alice", org="vault"))  # a custodian member may anchor


def test_shredding_leaves_a_tombstone_and_refuses_what_follows() -> None:
    world = clinic_world()
    world.refused(world.members["hospital-a"].shred_record("rec-lab", request_hash=digest("r")),
                  R.SHRED_SIGNER_NOT_CUSTODIAN)
    world.refused(world.members["lab"].shred_record("rec-none", request_hash=digest("r")),
                  R.RECORD_UNKNOWN)
    world.ok(world.members["lab"].shred_record("rec-lab", request_hash=digest("r")))
    record = world.ledger.query("records_get", {"record_id": "rec-lab"})
    assert record["shredded"] and record["versions"] == [] and record["ciphertext_hash"] is None
    world.refused(world.members["lab"].shred_record("rec-lab", request_hash=digest("r")),
                  R.RECORD_SHREDDED)
    world.refused(world.anchor("rec-lab", "alice", version=2), R.RECORD_SHREDDED)
    assert world.ledger.state.get(layout.record_version_key("rec-lab", 1)) is None


# ---- consent and key grants ---------------------------------------------------------------


def test_consent_period_and_party_refusals() -> None:
    world = clinic_world()
    alice = world.parties["alice"].builder
    now = world.next_block_ms
    world.refused(world.consent(alice, "c", "alice", "grey", start_ms=now, end_ms=now),
                  R.CONSENT_PERIOD_REVERSED)
    world.refused(world.consent(alice, "c", "alice", "grey", start_ms=now - 10 * DAY_MS,
                                end_ms=now - DAY_MS), R.CONSENT_PERIOD_PAST)
    world.refused(world.consent(alice, "c", "alice", "grey", days=366),
                  R.CONSENT_PERIOD_TOO_LONG)
    world.ok(world.consent(alice, "c-year", "alice", "grey", days=365))
    world.refused(world.consent(alice, "c", "alice", "ghost"), R.CONSENT_GRANTEE_UNKNOWN)
    world.refused(world.consent(alice, "c", "alice", "grey", records=("rec-none",)),
                  R.CONSENT_RECORD_NOT_PATIENTS)
    world.refused(world.consent(alice, "c", "alice", "grey", custodian="ghost"),
                  R.CONSENT_CUSTODIAN_UNKNOWN)
    world.refused(world.consent(alice, "c-year", "alice", "grey"), R.CONSENT_ID_EXISTS)
    world.refused(world.consent(alice, "c", "grey", "grey"), R.PATIENT_UNKNOWN)
    world.refused(world.parties["bob"].builder.consent_revoke("c-year"),
                  R.CONSENT_SIGNER_NOT_PATIENT_OR_DELEGATE)
    world.refused(alice.consent_revoke("c-none"), R.CONSENT_UNKNOWN)
    world.ok(alice.consent_revoke("c-year"))
    world.refused(alice.consent_revoke("c-year"), R.CONSENT_ALREADY_REVOKED)


def test_a_live_deny_beats_a_permit_until_it_ends() -> None:
    world = clinic_world()
    alice, lab = world.parties["alice"].builder, world.members["lab"]
    world.ok(world.consent(alice, "permit", "alice", "grey"))
    world.ok(world.consent(alice, "deny", "alice", "hospital-b", days=2,
                           decision=b.Decision.DENY, confidentiality_max=b.Confidentiality.V))
    world.refused(world.grant(lab, "g-1", "rec-lab", "grey", "permit"),
                  R.KEY_GRANT_DENIED_BY_CONSENT)
    in_force = world.query("consent_inForce", patient="alice", grantee="grey")
    assert [c["consent_id"] for c in in_force["denies"]] == ["deny"]  # type: ignore[index]
    world.advance(2 * DAY_MS)
    world.ok(world.grant(lab, "g-1", "rec-lab", "grey", "permit"))
    world.refused(world.grant(lab, "g-2", "rec-lab", "grey", "deny"),
                  R.KEY_GRANT_CONSENT_NOT_IN_PERIOD)


def test_a_consent_to_an_org_covers_its_practitioners_only() -> None:
    world = clinic_world()
    lab = world.members["lab"]
    world.ok(world.consent(world.parties["alice"].builder, "c-org", "alice", "hospital-b"))
    world.ok(world.grant(lab, "g-1", "rec-lab", "grey", "c-org"))
    world.refused(world.grant(lab, "g-2", "rec-lab", "house", "c-org"),
                  R.KEY_GRANT_CONSENT_NOT_COVERING)


def test_a_consent_scoped_to_a_custodian_or_to_records() -> None:
    world = clinic_world()
    alice = world.parties["alice"].builder
    world.ok(world.consent(alice, "c-lab", "alice", "grey", custodian="lab",
                           confidentiality_max=b.Confidentiality.V))
    world.ok(world.consent(alice, "c-rec", "alice", "grey", records=("rec-lab",),
                           confidentiality_max=b.Confidentiality.V))
    for consent_id in ("c-lab", "c-rec"):
        world.refused(world.grant(world.members["hospital-a"], "g-" + consent_id, "rec-note",
                                  "grey", consent_id), R.KEY_GRANT_CONSENT_NOT_COVERING)
        world.ok(world.grant(world.members["lab"], "g-" + consent_id, "rec-lab", "grey",
                             consent_id))


def test_key_grant_refusals() -> None:
    world = clinic_world()
    lab = world.members["lab"]
    alice = world.parties["alice"].builder
    world.ok(world.consent(alice, "c-1", "alice", "grey"))
    world.ok(world.consent(world.parties["bob"].builder, "c-bob", "bob", "grey"))
    world.ok(world.grant(alice, "g-1", "rec-lab", "grey", "c-1"))  # the patient may grant
    world.refused(world.grant(lab, "g-1", "rec-lab", "grey", "c-1"), R.KEY_GRANT_ID_EXISTS)
    world.refused(world.grant(lab, "g-2", "rec-none", "grey", "c-1"), R.RECORD_UNKNOWN)
    world.refused(world.grant(lab, "g-2", "rec-lab", "ghost", "c-1"),
                  R.KEY_GRANT_RECIPIENT_UNKNOWN)
    world.refused(world.grant(world.members["hospital-b"], "g-2", "rec-lab", "grey", "c-1"),
                  R.KEY_GRANT_SIGNER_NOT_AUTHORISED)
    world.refused(world.grant(world.parties["grey"].builder, "g-2", "rec-lab", "grey", "c-1"),
                  R.KEY_GRANT_SIGNER_NOT_AUTHORISED)
    world.refused(world.grant(lab, "g-2", "rec-lab", "grey", "c-bob"),
                  R.KEY_GRANT_CONSENT_UNKNOWN)
    world.refused(world.grant(lab, "g-2", "rec-lab", "grey", "c-1", version=2),
                  R.KEY_GRANT_VERSION_NOT_CURRENT)
    world.refused(world.grant(lab, "g-2", "rec-lab", "ross", "c-1"),
                  R.KEY_GRANT_CONSENT_NOT_COVERING)
    world.refused(world.grant(lab, "g-2", "rec-lab", "ross", "btg-none",
                              basis=b.GrantBasis.BREAK_GLASS), R.KEY_GRANT_BTG_UNKNOWN)
    future = world.consent(alice, "c-later", "alice", "grey", start_ms=world.now + DAY_MS)
    world.ok(future)
    world.refused(world.grant(lab, "g-2", "rec-lab", "grey", "c-later"),
                  R.KEY_GRANT_CONSENT_NOT_IN_PERIOD)


def test_delegations() -> None:
    world = clinic_world()
    alice, carol = world.parties["alice"].builder, world.parties["carol"].builder
    hospital = world.members["hospital-a"]

    def delegation(signer: TransactionBuilder, delegation_id: str, patient: str,
                   delegate: str = "carol", *, days: int = 30,
                   powers: tuple[b.DelegatePower, ...] = (b.DelegatePower.CONSENT,),
                   confidentiality: b.Confidentiality = b.Confidentiality.R) -> Transaction:
        return signer.delegate_grant(
            delegation_id=delegation_id, patient=patient, delegate=delegate,
            relationship=b.Relationship.GUARDIAN, valid_until_ms=world.now + days * DAY_MS,
            powers=powers, confidentiality_max=confidentiality)

    world.refused(delegation(hospital, "d-1", "alice"), R.DELEGATION_SIGNER_NOT_PATIENT)
    world.refused(delegation(world.parties["bob"].builder, "d-1", "bob"),
                  R.DELEGATION_SIGNER_NOT_PATIENT)
    world.refused(delegation(hospital, "d-1", "bob", confidentiality=b.Confidentiality.V),
                  R.DELEGATION_CONFIDENTIALITY_ABOVE_LIMIT)
    world.refused(delegation(alice, "d-1", "alice", "ghost"), R.DELEGATE_UNKNOWN)
    world.refused(delegation(alice, "d-1", "alice", "alice"), R.DELEGATE_UNKNOWN)
    world.refused(delegation(alice, "d-1", "alice", days=0), R.DELEGATION_VALIDITY_PAST)
    world.ok(delegation(alice, "d-1", "alice", powers=(b.DelegatePower.KEY_GRANT,)))
    world.refused(delegation(alice, "d-1", "alice"), R.DELEGATION_ID_EXISTS)
    world.refused(delegation(carol, "d-2", "alice", "grey"), R.DELEGATE_CANNOT_DELEGATE)
    world.refused(world.consent(carol, "c-1", "alice", "grey"), R.DELEGATION_POWER_MISSING)
    world.ok(world.consent(alice, "c-1", "alice", "grey", confidentiality_max=b.Confidentiality.V))
    # a delegate with the key-grant power, capped at R, cannot release a V record
    world.ok(world.grant(carol, "g-1", "rec-lab", "grey", "c-1"))
    world.refused(world.grant(carol, "g-2", "rec-note", "grey", "c-1"),
                  R.KEY_GRANT_CONFIDENTIALITY_ABOVE_DELEGATION)
    delegations = world.query("consent_delegations", patient="alice", delegate="carol")
    assert [d["valid"] for d in delegations] == [True]  # type: ignore[union-attr]


def test_a_pair_holds_at_most_64_live_consents_and_ended_ones_make_room() -> None:
    world = clinic_world()
    alice = world.parties["alice"].builder
    txs = [world.consent(alice, f"c-{n}", "alice", "grey", days=1 + n % 2) for n in range(64)]
    assert world.ledger.commit_block(txs).codes == (R.OK,) * 64
    world.refused(world.consent(alice, "c-64", "alice", "grey"), R.CONSENT_LIMIT_REACHED)
    world.advance(DAY_MS)  # the 32 one-day consents end
    world.ok(world.consent(alice, "c-64", "alice", "grey"))
    pair = list(world.ledger.state.iterate(layout.consent_live_prefix("alice", "grey"),
                                           limit=100))
    assert len(pair) == 33
    count = load(world.ledger.state, layout.consent_count_key("alice", "grey"), PairCountState)
    assert count is not None and count.live == 33


def _pair_index(world: World) -> tuple[list[str], int]:
    keys = [layout.last_part(key) for key, _ in world.ledger.state.iterate(
        layout.consent_live_prefix("alice", "grey"), limit=100)]
    count = load(world.ledger.state, layout.consent_count_key("alice", "grey"), PairCountState)
    return keys, 0 if count is None else count.live


def test_revoking_an_ended_consent_counts_it_once() -> None:
    world = clinic_world()
    alice = world.parties["alice"].builder
    world.ok(world.consent(alice, "c-1", "alice", "grey", days=1))
    world.ok(world.consent(alice, "c-2", "alice", "grey", days=1))
    world.advance(2 * DAY_MS)
    world.ok(alice.consent_revoke("c-1"))  # ended, still indexed: leaves it now
    assert _pair_index(world) == (["c-2"], 1)
    world.ok(world.consent(alice, "c-3", "alice", "grey"))  # prunes the ended c-2
    assert _pair_index(world) == (["c-3"], 1)
    world.ok(alice.consent_revoke("c-2"))  # pruned already: the count stays
    assert _pair_index(world) == (["c-3"], 1)
    world.ok(alice.consent_revoke("c-3"))
    assert _pair_index(world) == ([], 0)
    check_indexes(decode_state(world.snapshot().items()))  # the indexes agree


class _CountingReader:
    """Counts what a block's apply reads: keys got, and items iterated."""

    def __init__(self, base: StateReader) -> None:
        self.base, self.reads = base, 0

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return self.base.get(key)

    def iterate(self, prefix: bytes, *, limit: int) -> list[tuple[bytes, bytes]]:
        items = list(self.base.iterate(prefix, limit=limit))
        self.reads += 1 + len(items)
        return items


def _reads(world: World, tx: Transaction) -> int:
    reader = _CountingReader(world.ledger.state)
    context = BlockContext(height=world.ledger.height + 1, timestamp_ms=world.next_block_ms,
                           proposer=b"\x01" * 32)
    outcome = apply_block(reader, context, [tx])
    assert outcome.codes == (R.OK,), outcome.codes
    return reader.reads


def test_a_grant_reads_the_same_however_many_consents_the_pair_holds() -> None:
    """Work per tx must not grow with history: layout 1 read every live consent of the
    pair on each CONSENT_GRANT and KEY_GRANT (38 us per grant on a fresh chain, 283 us
    after 36k txs of the load test's mix)."""
    world = clinic_world()
    alice, lab = world.parties["alice"].builder, world.members["lab"]
    world.ok(world.consent(alice, "c-0", "alice", "grey", days=90))
    few = (_reads(world, world.consent(alice, "c-next", "alice", "grey")),
           _reads(world, world.grant(lab, "g-next", "rec-lab", "grey", "c-0")))
    world.ledger.commit_block([world.consent(alice, f"c-{n}", "alice", "grey", days=90)
                               for n in range(1, 60)])
    world.ok(world.consent(alice, "deny-b", "alice", "hospital-b", days=90,
                           decision=b.Decision.DENY, records=("rec-lab",)))
    world.ok(alice.consent_revoke("deny-b"))  # a pair that had a deny and has none now
    many = (_reads(world, world.consent(alice, "c-next", "alice", "grey")),
            _reads(world, world.grant(lab, "g-next", "rec-lab", "grey", "c-0")))
    assert _pair_index(world)[1] == 60
    assert many == few, (few, many)


# ---- break-glass and the audit trail ------------------------------------------------------


def open_glass(world: World, practitioner: str = "ross", hours: int = 4) -> Transaction:
    return world.parties[practitioner].builder.btg_open(
        btg_id="btg-1", patient="alice", records=["rec-lab"], hours=hours,
        justification_hash=digest("justification"))


def test_break_glass_open_close_review_and_the_audit_trail() -> None:
    world = clinic_world()
    world.refused(open_glass(world, "grey"), R.BTG_SIGNER_NOT_EMERGENCY_PRACTITIONER)
    world.refused(
        world.parties["ross"].builder.btg_open(
            btg_id="btg-1", patient="alice", records=["rec-lab", "rec-other"], hours=4,
            justification_hash=digest("j")),
        R.BTG_RECORD_NOT_PATIENTS,
    )
    world.refused(open_glass(world, hours=0), R.BTG_HOURS_OUT_OF_RANGE)
    world.refused(open_glass(world, hours=25), R.BTG_HOURS_OUT_OF_RANGE)
    opened = world.ok(open_glass(world, hours=24))
    world.refused(open_glass(world), R.BTG_ID_EXISTS)
    grant = world.ok(world.grant(world.members["lab"], "g-1", "rec-lab", "ross", "btg-1",
                                 basis=b.GrantBasis.BREAK_GLASS))
    review = world.members["hospital-b"].btg_review(
        "btg-1", outcome=b.ReviewOutcome.APPROPRIATE, review_hash=digest("review"))
    world.refused(review, R.BTG_NOT_ENDED)
    world.ok(world.parties["ross"].builder.btg_close("btg-1"))
    world.refused(world.parties["ross"].builder.btg_close("btg-1"), R.BTG_ALREADY_ENDED)
    world.refused(world.members["hospital-a"].btg_review(
        "btg-1", outcome=b.ReviewOutcome.APPROPRIATE, review_hash=digest("r")),
        R.BTG_REVIEWER_NOT_ORG)
    world.ok(world.members["hospital-b"].btg_review(
        "btg-1", outcome=b.ReviewOutcome.INAPPROPRIATE, review_hash=digest("r")))
    world.refused(world.members["hospital-b"].btg_review(
        "btg-1", outcome=b.ReviewOutcome.APPROPRIATE, review_hash=digest("r")),
        R.BTG_ALREADY_REVIEWED)
    status = world.query("audit_breakGlass", btg_id="btg-1")
    assert (status["access"], status["review"]) == ("closed", "reviewed")  # type: ignore[index]
    trail = world.query("audit_trail", patient="alice")
    assert [entry["kind"] for entry in trail] == [  # type: ignore[union-attr]
        "btg_open", "key_grant", "btg_close", "btg_review"]
    first, second = trail[0], trail[1]  # type: ignore[index]
    assert first["tx_id"] == opened.tx_id and second["tx_id"] == grant.tx_id
    location = world.ledger.blocks[second["height"] - 1]
    assert location.raws[second["position"]] == grant.raw


def test_an_unreviewed_break_glass_is_flagged_by_the_first_block_past_its_due_time() -> None:
    world = clinic_world()  # reviews are due within 7 days
    world.ok(open_glass(world))
    world.advance(7 * DAY_MS - 2_000)
    assert world.ledger.commit_block([]).events == ()  # due time not passed yet
    world.advance(5_000)
    status = world.query("audit_breakGlass", btg_id="btg-1")
    assert status["review"] == "overdue"  # type: ignore[index]  # by query, before a block
    outcome = world.ledger.commit_block([])
    assert [type(event) for event in outcome.events] == [BreakGlassFlagged]
    btg = world.load(layout.break_glass_key("btg-1"), BreakGlassState)
    assert btg is not None and btg.flagged and btg.flagged_height == world.ledger.height
    assert world.ledger.commit_block([]).events == ()  # flagged once
    trail = world.query("audit_trail", patient="alice")
    assert trail[-1]["kind"] == "btg_flagged" and trail[-1]["position"] is None  # type: ignore[index]
    late = world.ledger.commit_block([world.members["hospital-b"].btg_review(
        "btg-1", outcome=b.ReviewOutcome.APPROPRIATE, review_hash=digest("r"))])
    reviewed = [event for event in late.events if isinstance(event, BreakGlassReviewed)]
    assert late.codes == (R.OK,) and reviewed[0].late
    assert world.query("audit_breakGlass", btg_id="btg-1")["review"] == "reviewed"  # type: ignore[index]


def test_access_logs_come_from_a_storage_gateway() -> None:
    world = clinic_world()
    gateway = world.register("gateway", b.PartyKind.PRACTITIONER, org="lab",
                             roles=(b.PartyRole.GATEWAY,)).builder

    def log(signer: TransactionBuilder, batch_id: str, start: int, end: int) -> Transaction:
        return signer.access_log(batch_id=batch_id, period_start_ms=start, period_end_ms=end,
                                 release_count=3, summary_hash=digest("summary"))

    world.ok(log(gateway, "batch-1", world.now - HOUR_MS, world.now))
    world.refused(log(gateway, "batch-1", world.now - HOUR_MS, world.now),
                  R.ACCESS_LOG_BATCH_EXISTS)
    world.refused(log(gateway, "batch-2", world.now, world.now + DAY_MS),
                  R.ACCESS_LOG_PERIOD_INVALID)
    world.refused(log(world.parties["grey"].builder, "batch-3", 1, 2),
                  R.ACCESS_LOG_SIGNER_NOT_GATEWAY)


# ---- insurance ----------------------------------------------------------------------------


def test_premiums_resent_are_a_no_op_and_checked_against_the_coverage() -> None:
    world, coverage = insured_world()
    insurer = world.members["insurer"]

    def paid(payment_id: str, period: int = 1, amount: int = 25_000,
             currency: str = "USD") -> Transaction:
        return insurer.premium_paid(payment_id=payment_id, coverage_id=coverage,
                                    period=period, amount=amount, currency=currency)

    world.ok(paid("820-1"))
    before = world.snapshot()
    world.ok(paid("820-1"))  # the same body again: accepted, changes only the nonce
    changed = {k for k in world.snapshot().keys() | before.keys()
               if world.snapshot().get(k) != before.get(k)}
    assert changed == {layout.nonce_key(insurer.public_key)}
    world.refused(paid("820-1", period=2), R.PAYMENT_ID_REUSED)
    world.refused(paid("820-2", period=2, amount=20_000), R.PREMIUM_AMOUNT_NOT_DUE)
    world.refused(paid("820-2", period=13), R.PREMIUM_PERIOD_OUT_OF_RANGE)
    world.refused(paid("820-2", period=2, currency="EUR"), R.CURRENCY_MISMATCH)
    world.refused(world.members["lab"].premium_paid(
        payment_id="820-2", coverage_id=coverage, period=2, amount=25_000, currency="USD"),
        R.PREMIUM_SIGNER_NOT_INSURER)
    world.refused(insurer.premium_paid(payment_id="820-2", coverage_id="cov-none", period=2,
                                       amount=25_000, currency="USD"), R.COVERAGE_UNKNOWN)
    premiums = world.query("claims_coverage", coverage_id=coverage)["premiums"]  # type: ignore[index]
    assert [(p["period"], p["payment_id"]) for p in premiums] == [(1, "820-1")]


def test_coverage_refusals() -> None:
    world, coverage = insured_world()

    def cover(signer: TransactionBuilder, coverage_id: str, beneficiary: str = "alice",
              start: int | None = None, end: int | None = None) -> Transaction:
        start = world.now if start is None else start
        return signer.coverage(coverage_id=coverage_id, beneficiary=beneficiary,
                               start_ms=start, end_ms=start + DAY_MS if end is None else end,
                               periods=1, premium=100, currency="USD")

    insurer = world.members["insurer"]
    world.refused(cover(world.members["hospital-a"], "cov-2"), R.COVERAGE_SIGNER_NOT_INSURER)
    world.refused(cover(insurer, coverage), R.COVERAGE_ID_EXISTS)
    world.refused(cover(insurer, "cov-2", "grey"), R.PATIENT_UNKNOWN)
    world.refused(cover(insurer, "cov-2", end=world.now), R.COVERAGE_PERIOD_INVALID)


def submit(world: World, claim_id: str, charges: tuple[int, ...], *, tag: str = "",
           frequency: b.ClaimFrequency = b.ClaimFrequency.ORIGINAL,
           replaces: str | None = None, lines: tuple[b.ClaimLine, ...] | None = None,
           org: str = "hospital-a", coverage: str = "cov-alice",
           patient: str = "alice") -> Transaction:
    return world.members[org].claim_submit(
        claim_id=claim_id, coverage_id=coverage, patient=patient,
        lines=lines or claim_lines(*charges, tag=tag), currency="USD",
        document_hash=digest("claim " + claim_id), frequency=frequency, replaces=replaces)


def adjudicate(world: World, claim_id: str, decision: b.AdjudicationDecision,
               benefits: list[int], reasons: tuple[str, ...] = ("CO45",)) -> Transaction:
    return world.members["insurer"].claim_adjudicate(
        claim_id, decision=decision, benefits=benefits, reason_codes=reasons)


def remit(world: World, remittance_id: str, *allocations: tuple[str, int],
          total: int | None = None) -> Transaction:
    return world.members["insurer"].remittance(
        remittance_id=remittance_id, currency="USD", allocations=list(allocations), total=total)


def test_claim_submission_refusals_and_idempotent_resend() -> None:
    world, _ = insured_world()
    claim = world.ok(submit(world, "hospital-a:1", (100, 200)))
    world.ok(submit(world, "hospital-a:1", (100, 200)))  # same body: a no-op
    world.refused(submit(world, "hospital-a:1", (100, 300)), R.CLAIM_ID_REUSED)
    world.refused(submit(world, "hospital-b:1", (5,), tag="b"), R.CLAIM_ID_NOT_PROVIDERS)
    world.refused(submit(world, "lab:1", (5,), tag="b", org="lab", patient="bob"),
                  R.CLAIM_COVERAGE_MISMATCH)
    world.refused(submit(world, "hospital-a:2", (5,), tag="b", coverage="cov-none"),
                  R.COVERAGE_UNKNOWN)
    same = claim_lines(5, tag="twice")
    world.refused(submit(world, "hospital-a:2", (), lines=(same[0], same[0])),
                  R.CLAIM_DUPLICATE_LINE)
    world.refused(submit(world, "hospital-a:2", (5,), tag="b", replaces="hospital-a:1"),
                  R.CLAIM_REPLACES_ON_ORIGINAL)
    world.refused(submit(world, "hospital-a:2", (5,), tag="b",
                         frequency=b.ClaimFrequency.REPLACEMENT),
                  R.CLAIM_ORIGINAL_MISSING)
    world.refused(world.members["insurer"].sign(b.TxType.CLAIM_SUBMIT, claim.body),
                  R.CLAIM_SIGNER_NOT_PROVIDER)


def test_adjudication_rules() -> None:
    world, _ = insured_world()
    world.ok(submit(world, "hospital-a:1", (100, 200)))
    decision = b.AdjudicationDecision
    world.refused(adjudicate(world, "hospital-a:1", decision.APPROVED, [100]),
                  R.CLAIM_BENEFITS_LENGTH_MISMATCH)
    world.refused(adjudicate(world, "hospital-a:1", decision.PARTIAL, [101, 0]),
                  R.CLAIM_BENEFIT_EXCEEDS_CHARGE)
    world.refused(adjudicate(world, "hospital-a:1", decision.PARTIAL, [100, 200]),
                  R.CLAIM_DECISION_CONTRADICTS_AMOUNTS)
    world.refused(adjudicate(world, "hospital-a:1", decision.DENIED, [1, 0]),
                  R.CLAIM_DECISION_CONTRADICTS_AMOUNTS)
    world.refused(adjudicate(world, "hospital-a:1", decision.PARTIAL, [50, 0], ()),
                  R.CLAIM_REASON_CODE_MISSING)
    world.refused(adjudicate(world, "hospital-a:1", decision.PENDING, [1, 1]),
                  R.CLAIM_BENEFITS_LENGTH_MISMATCH)
    world.refused(adjudicate(world, "hospital-a:9", decision.PENDING, []), R.CLAIM_UNKNOWN)
    world.ok(adjudicate(world, "hospital-a:1", decision.PENDING, []))
    world.ok(adjudicate(world, "hospital-a:1", decision.DENIED, [0, 0]))
    world.refused(adjudicate(world, "hospital-a:1", decision.APPROVED, [100, 200]),
                  R.CLAIM_NOT_ADJUDICABLE)
    world.refused(remit(world, "835-1", ("hospital-a:1", 0)), R.CLAIM_NOT_PAYABLE)
    history = world.query("claims_get", claim_id="hospital-a:1")["history"]  # type: ignore[index]
    assert [(h["kind"], h["status"]) for h in history] == [
        ("submitted", "submitted"), ("adjudicated", "pending"), ("adjudicated", "denied")]


def test_remittance_rules() -> None:
    world, _ = insured_world()
    world.ok(submit(world, "hospital-a:1", (100, 200)))
    world.ok(submit(world, "hospital-a:2", (50,), tag="2"))
    world.ok(adjudicate(world, "hospital-a:1", b.AdjudicationDecision.APPROVED, [100, 200]))
    world.ok(adjudicate(world, "hospital-a:2", b.AdjudicationDecision.PARTIAL, [20]))
    world.refused(remit(world, "835-1", ("hospital-a:1", 300), total=301),
                  R.REMITTANCE_TOTAL_MISMATCH)
    world.refused(remit(world, "835-1", ("hospital-a:1", 150), ("hospital-a:1", 150)),
                  R.REMITTANCE_DUPLICATE_ALLOCATION)
    world.refused(remit(world, "835-1", ("hospital-a:9", 1)), R.CLAIM_UNKNOWN)
    world.refused(remit(world, "835-1", ("hospital-a:1", 299)), R.REMITTANCE_AMOUNT_MISMATCH)
    world.refused(world.members["lab"].remittance(
        remittance_id="835-1", currency="USD", allocations=[("hospital-a:1", 300)]),
        R.REMITTANCE_SIGNER_NOT_INSURER)
    world.ok(remit(world, "835-1", ("hospital-a:1", 300), ("hospital-a:2", 20)))
    world.refused(remit(world, "835-1", ("hospital-a:2", 20)), R.REMITTANCE_ID_EXISTS)
    paid = world.query("claims_byPatient", patient="alice")
    assert [(c["claim_id"], c["status"], c["paid"]) for c in paid] == [  # type: ignore[union-attr]
        ("hospital-a:1", "paid", 300), ("hospital-a:2", "paid", 20)]


def test_a_replacement_is_paid_its_benefit_minus_what_the_original_was_paid() -> None:
    world, _ = insured_world()
    original = claim_lines(100, 200, tag="o")
    world.ok(submit(world, "hospital-a:1", (), lines=original))
    world.ok(adjudicate(world, "hospital-a:1", b.AdjudicationDecision.PARTIAL, [100, 50]))
    world.ok(remit(world, "835-1", ("hospital-a:1", 150)))
    corrected = (original[0], original[1], *claim_lines(80, tag="added"))
    world.ok(submit(world, "hospital-a:2", (), lines=corrected,
                    frequency=b.ClaimFrequency.REPLACEMENT, replaces="hospital-a:1"))
    replaced = world.load(layout.claim_key("hospital-a:1"), ClaimState)
    assert replaced is not None and replaced.status is ClaimStatus.REPLACED
    world.refused(adjudicate(world, "hospital-a:2", b.AdjudicationDecision.PARTIAL, [100, 0, 0]),
                  R.CLAIM_BENEFIT_BELOW_PAID)
    world.ok(adjudicate(world, "hospital-a:2", b.AdjudicationDecision.PARTIAL, [100, 150, 80]))
    world.refused(remit(world, "835-2", ("hospital-a:2", 330)), R.REMITTANCE_AMOUNT_MISMATCH)
    world.ok(remit(world, "835-2", ("hospital-a:2", 180)))
    answer = world.query("claims_get", claim_id="hospital-a:2")
    assert answer["prior_paid"] == 150 and answer["paid"] == 180  # type: ignore[index]
    assert [c["claim_id"] for c in answer["replaced_claims"]] == ["hospital-a:1"]  # type: ignore[index]
    # the replaced claim's keys passed to the replacement: billing them again is a duplicate
    world.refused(submit(world, "hospital-a:3", (), lines=(original[0],)),
                  R.CLAIM_DUPLICATE_SERVICE)


def test_a_void_cancels_an_unpaid_claim_and_frees_its_services() -> None:
    world, _ = insured_world()
    lines = claim_lines(100, tag="v")
    world.ok(submit(world, "hospital-a:1", (), lines=lines))
    world.refused(submit(world, "hospital-a:2", (100,), tag="other",
                         frequency=b.ClaimFrequency.VOID, replaces="hospital-a:1"),
                  R.CLAIM_VOID_MISMATCH)
    world.ok(submit(world, "hospital-a:2", (), lines=lines, frequency=b.ClaimFrequency.VOID,
                    replaces="hospital-a:1"))
    assert world.query("claims_get", claim_id="hospital-a:1")["status"] == "voided"  # type: ignore[index]
    assert world.query("claims_get", claim_id="hospital-a:2")["status"] == "void"  # type: ignore[index]
    world.refused(adjudicate(world, "hospital-a:2", b.AdjudicationDecision.APPROVED, [100]),
                  R.CLAIM_NOT_ADJUDICABLE)
    world.ok(submit(world, "hospital-a:3", (), lines=lines))  # the service is free again
    world.ok(adjudicate(world, "hospital-a:3", b.AdjudicationDecision.APPROVED, [100]))
    world.ok(remit(world, "835-1", ("hospital-a:3", 100)))
    world.refused(submit(world, "hospital-a:4", (), lines=lines,
                         frequency=b.ClaimFrequency.VOID, replaces="hospital-a:3"),
                  R.CLAIM_ORIGINAL_PAID)
