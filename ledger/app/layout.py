"""The application's state key layout (DOMAIN.md, "State layout").

Every key is ``table NUL part NUL part ...``: an ASCII table name, then the parts of the key
separated by a NUL byte. Identifiers cannot contain NUL (``codec.IDENTIFIER_PATTERN``), byte
strings (public keys, duplicate keys) are lower-case hex and integers are fixed-width
lower-case hex, so a key is printable apart from its separators, a NUL-terminated prefix
selects exactly one table or one sub-range, and LevelDB's byte order is numeric order for
the integer parts. No application key starts with ``0xff`` (the node keeps its own
per-height roots there).

Values are canonical :class:`ledger.codec.Struct` encodings (:mod:`ledger.app.model`).

=============================================  =========================  ===================
key                                            value                      written by
=============================================  =========================  ===================
``cfg NUL parameters``                         StoredParameters           genesis
``cfg NUL consortium``                         ConsortiumState (counts)   genesis, VOTE
``member NUL org``                             MemberState                genesis, VOTE
``proposal NUL id``                            ProposalState              PROPOSE_MEMBER, VOTE
``vote NUL proposal NUL org``                  VoteState                  VOTE
``key NUL hex(public key)``                    KeyState (owner, status,   genesis, VOTE,
                                               revoked at)                REGISTER_PARTY,
                                                                          ROTATE/REVOKE_KEY
``nonce NUL hex(public key)``                  NonceState (last nonce)    every included tx
``party NUL id``                               PartyState                 REGISTER_PARTY
``record NUL id``                              RecordState (head,         ANCHOR_RECORD,
                                               tombstone)                 SHRED_RECORD
``version NUL record NUL u64``                 RecordVersionState (wrap   ANCHOR_RECORD
                                               hashes); deleted by shred
``patient-record NUL patient NUL record``      Marker (index)             ANCHOR_RECORD
``consent NUL id``                             ConsentState               CONSENT_GRANT/REVOKE
``consent-live NUL patient NUL grantee         Marker: live consents of   CONSENT_GRANT (adds,
NUL u64 end ms NUL id``                        one pair, in end order,    prunes ended ones),
                                               at most                    CONSENT_REVOKE
                                               CONSENTS_PER_PAIR_MAX
``consent-deny NUL patient NUL grantee         Marker: the live deny      the same
NUL u64 end ms NUL id``                        consents among them
``consent-count NUL patient NUL grantee``      PairCountState: how many   the same
                                               consent-live entries
``patient-consent NUL patient NUL id``         Marker (every consent)     CONSENT_GRANT
``delegation NUL id``                          DelegationState            DELEGATE_GRANT
``delegation-pair NUL patient NUL delegate     Marker, at most            DELEGATE_GRANT
NUL id``                                       DELEGATIONS_PER_PAIR_MAX
``btg NUL id``                                 BreakGlassState            BTG_*, block start
``btg-due NUL u64 due ms NUL id``              Marker: review pending     BTG_OPEN; removed by
                                                                          BTG_REVIEW or flag
``audit NUL patient NUL u64 height u32 slot    AuditEntry                 KEY_GRANT, BTG_*,
u16 n``                                                                   block start (flags)
``grant NUL id``                               KeyGrantState              KEY_GRANT
``access-log NUL id``                          AccessLogState             ACCESS_LOG
``coverage NUL id``                            CoverageState              COVERAGE
``beneficiary-coverage NUL patient NUL id``    Marker (index)             COVERAGE
``premium NUL coverage NUL u32 period``        PremiumState               PREMIUM_PAID
``payment NUL id``                             PaymentState (body hash)   PREMIUM_PAID
``claim NUL id``                               ClaimState (lines, status, CLAIM_*, REMITTANCE
                                               benefit, paid, history)
``patient-claim NUL patient NUL claim``        Marker (index)             CLAIM_SUBMIT
``duplicate NUL hex(duplicate key)``           DuplicateState: the live   CLAIM_SUBMIT
                                               claim holding the key
``remittance NUL id``                          RemittanceState            REMITTANCE
=============================================  =========================  ===================

A pair's consents are indexed in end order with their count beside them, so a grant
reads the count and only the entries that ended (each removed once), and a deny check
reads only the pair's deny consents: the work per tx does not grow with the pair's
history (state layout 2; layout 1 kept every live consent in one index that each grant
read and decoded whole).

The audit slot is 0 for entries written at the start of a block (break-glass reviews that
became overdue) and ``position + 1`` for entries of the tx at ``position``; ``n`` numbers
the entries of one slot. So a patient's trail is in chain order.
"""

from __future__ import annotations

# The layout below, as a number: nodes that apply blocks with different layouts compute
# different state roots, so they refuse each other at hello (node/p2p/hello.py) and a
# data directory of another layout is refused at open (storage.SCHEMA_VERSION).
#   1: the first layout.  2: consent-live / consent-deny / consent-count.
#   3: the state root commits to the whole state (ledger/commitment.py) and committed tx
#      ids are state (ledger.evaluation.TX_SEEN_PREFIX), so a verified state suffices.
#   4: each height's validator set hash and every validator set are state
#      (ledger.evaluation.VALIDATORS_AT_PREFIX, VALIDATOR_SET_PREFIX), and blocks are of
#      version 2 (ledger/certificate.py: headers name validator sets, blocks carry their
#      predecessor's quorum certificate).
STATE_LAYOUT_VERSION = 4

SEPARATOR = b"\x00"


def _key(table: bytes, *parts: str) -> bytes:
    assert "\x00" not in "".join(parts), "identifiers never contain NUL"
    return table + SEPARATOR + SEPARATOR.join(part.encode() for part in parts)


def table_prefix(table: bytes) -> bytes:
    return table + SEPARATOR


def _u64(value: int) -> str:
    assert 0 <= value < 2**64
    return f"{value:016x}"


# ---- table names --------------------------------------------------------------------------
CONFIG = b"cfg"
MEMBER = b"member"
PROPOSAL = b"proposal"
VOTE = b"vote"
KEY = b"key"
NONCE = b"nonce"
PARTY = b"party"
RECORD = b"record"
RECORD_VERSION = b"version"
PATIENT_RECORD = b"patient-record"
CONSENT = b"consent"
CONSENT_LIVE = b"consent-live"
CONSENT_DENY = b"consent-deny"
CONSENT_COUNT = b"consent-count"
PATIENT_CONSENT = b"patient-consent"
DELEGATION = b"delegation"
DELEGATION_PAIR = b"delegation-pair"
BREAK_GLASS = b"btg"
REVIEW_DUE = b"btg-due"
AUDIT = b"audit"
KEY_GRANT = b"grant"
ACCESS_LOG = b"access-log"
COVERAGE = b"coverage"
BENEFICIARY_COVERAGE = b"beneficiary-coverage"
PREMIUM = b"premium"
PAYMENT = b"payment"
CLAIM = b"claim"
PATIENT_CLAIM = b"patient-claim"
DUPLICATE = b"duplicate"
REMITTANCE = b"remittance"

TABLES = (
    CONFIG, MEMBER, PROPOSAL, VOTE, KEY, NONCE, PARTY, RECORD, RECORD_VERSION,
    PATIENT_RECORD, CONSENT, CONSENT_LIVE, CONSENT_DENY, CONSENT_COUNT, PATIENT_CONSENT,
    DELEGATION, DELEGATION_PAIR, BREAK_GLASS, REVIEW_DUE, AUDIT, KEY_GRANT, ACCESS_LOG,
    COVERAGE, BENEFICIARY_COVERAGE, PREMIUM, PAYMENT, CLAIM, PATIENT_CLAIM, DUPLICATE, REMITTANCE,
)

PARAMETERS_KEY = _key(CONFIG, "parameters")
CONSORTIUM_KEY = _key(CONFIG, "consortium")


def member_key(org_id: str) -> bytes:
    return _key(MEMBER, org_id)


def proposal_key(proposal_id: str) -> bytes:
    return _key(PROPOSAL, proposal_id)


def vote_key(proposal_id: str, org_id: str) -> bytes:
    return _key(VOTE, proposal_id, org_id)


def votes_prefix(proposal_id: str) -> bytes:
    return _key(VOTE, proposal_id, "")


def public_key_key(public_key: bytes) -> bytes:
    return _key(KEY, public_key.hex())


def nonce_key(public_key: bytes) -> bytes:
    return _key(NONCE, public_key.hex())


def party_key(party_id: str) -> bytes:
    return _key(PARTY, party_id)


def record_key(record_id: str) -> bytes:
    return _key(RECORD, record_id)


def record_version_key(record_id: str, version: int) -> bytes:
    return _key(RECORD_VERSION, record_id, _u64(version))


def record_versions_prefix(record_id: str) -> bytes:
    return _key(RECORD_VERSION, record_id, "")


def patient_record_key(patient: str, record_id: str) -> bytes:
    return _key(PATIENT_RECORD, patient, record_id)


def patient_records_prefix(patient: str) -> bytes:
    return _key(PATIENT_RECORD, patient, "")


def consent_key(consent_id: str) -> bytes:
    return _key(CONSENT, consent_id)


def consent_live_key(patient: str, grantee: str, end_ms: int, consent_id: str) -> bytes:
    return _key(CONSENT_LIVE, patient, grantee, _u64(end_ms), consent_id)


def consent_live_prefix(patient: str, grantee: str) -> bytes:
    return _key(CONSENT_LIVE, patient, grantee, "")


def consent_deny_key(patient: str, grantee: str, end_ms: int, consent_id: str) -> bytes:
    return _key(CONSENT_DENY, patient, grantee, _u64(end_ms), consent_id)


def consent_deny_prefix(patient: str, grantee: str) -> bytes:
    return _key(CONSENT_DENY, patient, grantee, "")


def consent_count_key(patient: str, grantee: str) -> bytes:
    return _key(CONSENT_COUNT, patient, grantee)


def end_ms_of(key: bytes) -> int:
    """The end time in a consent-live or consent-deny key (the part before the id)."""
    return int(key.rsplit(SEPARATOR, 2)[1], 16)


def patient_consent_key(patient: str, consent_id: str) -> bytes:
    return _key(PATIENT_CONSENT, patient, consent_id)


def patient_consents_prefix(patient: str) -> bytes:
    return _key(PATIENT_CONSENT, patient, "")


def delegation_key(delegation_id: str) -> bytes:
    return _key(DELEGATION, delegation_id)


def delegation_pair_key(patient: str, delegate: str, delegation_id: str) -> bytes:
    return _key(DELEGATION_PAIR, patient, delegate, delegation_id)


def delegation_pair_prefix(patient: str, delegate: str) -> bytes:
    return _key(DELEGATION_PAIR, patient, delegate, "")


def break_glass_key(btg_id: str) -> bytes:
    return _key(BREAK_GLASS, btg_id)


def review_due_key(due_ms: int, btg_id: str) -> bytes:
    return _key(REVIEW_DUE, _u64(due_ms), btg_id)


REVIEW_DUE_PREFIX = table_prefix(REVIEW_DUE)


def review_due_of(key: bytes) -> tuple[int, str]:
    """(due ms, btg id) of a ``btg-due`` key."""
    _, due, btg_id = key.split(SEPARATOR)
    return int(due, 16), btg_id.decode()


def audit_key(patient: str, height: int, slot: int, number: int) -> bytes:
    assert 0 <= slot < 2**32 and 0 <= number < 2**16
    return _key(AUDIT, patient, f"{_u64(height)}{slot:08x}{number:04x}")


def audit_prefix(patient: str) -> bytes:
    return _key(AUDIT, patient, "")


def key_grant_key(grant_id: str) -> bytes:
    return _key(KEY_GRANT, grant_id)


def access_log_key(batch_id: str) -> bytes:
    return _key(ACCESS_LOG, batch_id)


def coverage_key(coverage_id: str) -> bytes:
    return _key(COVERAGE, coverage_id)


def beneficiary_coverage_key(patient: str, coverage_id: str) -> bytes:
    return _key(BENEFICIARY_COVERAGE, patient, coverage_id)


def beneficiary_coverages_prefix(patient: str) -> bytes:
    return _key(BENEFICIARY_COVERAGE, patient, "")


def premium_key(coverage_id: str, period: int) -> bytes:
    assert 0 <= period < 2**32
    return _key(PREMIUM, coverage_id, f"{period:08x}")


def premiums_prefix(coverage_id: str) -> bytes:
    return _key(PREMIUM, coverage_id, "")


def payment_key(payment_id: str) -> bytes:
    return _key(PAYMENT, payment_id)


def claim_key(claim_id: str) -> bytes:
    return _key(CLAIM, claim_id)


def patient_claim_key(patient: str, claim_id: str) -> bytes:
    return _key(PATIENT_CLAIM, patient, claim_id)


def patient_claims_prefix(patient: str) -> bytes:
    return _key(PATIENT_CLAIM, patient, "")


def duplicate_key(duplicate: bytes) -> bytes:
    return _key(DUPLICATE, duplicate.hex())


def remittance_key(remittance_id: str) -> bytes:
    return _key(REMITTANCE, remittance_id)


def last_part(key: bytes) -> str:
    """The last part of a key (the id in an index key)."""
    return key.rsplit(SEPARATOR, 1)[1].decode()
