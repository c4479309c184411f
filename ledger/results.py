"""Result codes: the stable, documented reason a transaction was accepted or refused.

Codes below 100 come from the stateless check (before a tx enters the mempool: a refused
tx changes nothing and does not use its nonce). Codes from 100 come from the application's
stateful rules (the tx is in a block, recorded as invalid, and its nonce is used).
"""

from __future__ import annotations

import enum


class ResultCode(enum.IntEnum):
    OK = 0
    # ---- stateless (1-99) ----
    MALFORMED = 1  # not the canonical encoding of a valid transaction
    OVERSIZE = 2  # larger than TX_SIZE_BYTES_MAX
    WRONG_CHAIN = 3  # signed for another chain id
    BAD_VERSION = 4  # unknown envelope version
    BAD_SIGNATURE = 5  # signature does not verify for signer, domain and chain
    DUPLICATE = 6  # same tx id already in the mempool or on chain
    MEMPOOL_FULL = 7  # the node is at its mempool bound; retry later

    # ---- application (100+): one per stateful rule of DOMAIN.md, named after it ----
    # Every code below is given to a tx that is in a block: its nonce is used (except
    # NONCE_STALE, which had no fresh nonce to use), and nothing else changes.

    # envelope rules, checked for every tx before its type's rules
    NONCE_STALE = 100  # nonce not greater than the signer key's last used nonce (a replay)
    SIGNER_UNKNOWN = 101  # the signing key belongs to no member or party
    SIGNER_KEY_REVOKED = 102  # the signing key is revoked and its invalidity time has come
    SIGNER_KEY_ROTATED = 103  # the signing key was superseded by ROTATE_KEY
    SIGNER_INACTIVE = 104  # the signing member was removed from the consortium

    # governance
    PROPOSER_NOT_ACTIVE_MEMBER = 120
    PROPOSAL_ID_EXISTS = 121
    PROPOSAL_ORG_EXISTS = 122  # adding an org id that is (or was) a member
    PROPOSAL_ORG_NOT_ACTIVE = 123  # removing / revoking for an org that is not an active member
    PROPOSAL_KEY_IN_USE = 124  # the new member's admin or node key is already known
    PROPOSAL_VALIDATOR_WITHOUT_NODE_KEY = 125
    PROPOSAL_DEADLINE_PAST = 126
    PROPOSAL_REMOVES_LAST_VALIDATOR = 127
    MEMBER_LIMIT_REACHED = 128
    PROPOSAL_KEY_NOT_OF_ORG = 129  # a key revocation proposal naming a key the org does not own
    VOTER_NOT_ACTIVE_MEMBER = 130
    VOTE_PROPOSAL_UNKNOWN = 131
    VOTE_PROPOSAL_CLOSED = 132  # decided, executed, or past its deadline
    VOTE_DUPLICATE = 133  # this member already voted on this proposal
    ROTATE_NEW_KEY_IN_USE = 135
    ROTATE_NEW_KEY_SIGNATURE_INVALID = 136
    REVOKE_KEY_UNKNOWN = 138
    REVOKE_KEY_ALREADY_REVOKED = 139
    REVOKE_NOT_AUTHORISED = 140  # neither the owner, the owner's org, nor a passed vote
    REVOKE_PROPOSAL_INVALID = 141  # not a passed, unexecuted revocation vote for this key

    # parties and records
    PARTY_REGISTRAR_NOT_MEMBER = 150
    PARTY_ID_EXISTS = 151
    PARTY_KEY_IN_USE = 152
    PARTY_ROLES_INVALID = 153  # duplicate roles, or a role the party kind cannot hold
    PARTY_MINOR_NOT_PATIENT = 154
    PATIENT_UNKNOWN = 155  # the named patient is not a registered patient
    ANCHOR_SIGNER_NOT_CUSTODIAN_MEMBER = 160  # not an active provider / custodian member
    RECORD_VERSION_NOT_NEXT = 161
    RECORD_CUSTODIAN_MISMATCH = 162  # another party adds a version
    RECORD_PATIENT_MISMATCH = 163
    RECORD_HASH_MALFORMED = 164  # an all-zero (placeholder) hash
    RECORD_PREVIOUS_HASH_MISMATCH = 165
    RECORD_PATIENT_WRAP_MISSING = 166
    RECORD_WRAP_RECIPIENT_UNKNOWN = 167
    RECORD_WRAP_DUPLICATE = 168
    RECORD_SHREDDED = 169
    RECORD_UNKNOWN = 170
    SHRED_SIGNER_NOT_CUSTODIAN = 171
    RECORD_VERSION_LIMIT_REACHED = 172
    RECORD_SIZE_INVALID = 173  # an empty ciphertext

    # consent and access
    CONSENT_ID_EXISTS = 180
    CONSENT_SIGNER_NOT_PATIENT_OR_DELEGATE = 181
    CONSENT_PERIOD_REVERSED = 182
    CONSENT_PERIOD_PAST = 183
    CONSENT_PERIOD_TOO_LONG = 184
    CONSENT_GRANTEE_UNKNOWN = 185
    CONSENT_RECORD_NOT_PATIENTS = 186
    CONSENT_CUSTODIAN_UNKNOWN = 187
    CONSENT_CONFIDENTIALITY_ABOVE_DELEGATION = 188
    CONSENT_LIMIT_REACHED = 189  # too many live consents for one (patient, grantee)
    CONSENT_UNKNOWN = 190
    CONSENT_ALREADY_REVOKED = 191
    DELEGATION_EXPIRED = 192  # a delegate acting after the delegation's end
    DELEGATION_POWER_MISSING = 193
    DELEGATION_ID_EXISTS = 195
    DELEGATION_SIGNER_NOT_PATIENT = 196  # adult: the patient; minor: a provider member
    DELEGATE_CANNOT_DELEGATE = 197
    DELEGATE_UNKNOWN = 198
    DELEGATION_VALIDITY_PAST = 199
    DELEGATION_CONFIDENTIALITY_ABOVE_LIMIT = 200  # a minor's delegation above R
    DELEGATION_LIMIT_REACHED = 201
    BTG_ID_EXISTS = 205
    BTG_SIGNER_NOT_EMERGENCY_PRACTITIONER = 206
    BTG_HOURS_OUT_OF_RANGE = 207
    BTG_RECORD_NOT_PATIENTS = 208
    BTG_UNKNOWN = 209
    BTG_NOT_HOLDER = 210  # closing someone else's break-glass
    BTG_ALREADY_ENDED = 211
    BTG_REVIEWER_NOT_ORG = 212  # only the practitioner's organisation reviews
    BTG_ALREADY_REVIEWED = 213
    BTG_NOT_ENDED = 214
    KEY_GRANT_ID_EXISTS = 215
    KEY_GRANT_SIGNER_NOT_AUTHORISED = 216
    KEY_GRANT_VERSION_NOT_CURRENT = 217
    KEY_GRANT_RECIPIENT_UNKNOWN = 218
    KEY_GRANT_CONSENT_UNKNOWN = 219
    KEY_GRANT_CONSENT_REVOKED = 220
    KEY_GRANT_CONSENT_NOT_IN_PERIOD = 221
    KEY_GRANT_CONSENT_NOT_COVERING = 222  # grantee, action, record or decision
    KEY_GRANT_CONFIDENTIALITY_ABOVE_CONSENT = 223
    KEY_GRANT_DENIED_BY_CONSENT = 224  # a live covering deny beats the permit
    KEY_GRANT_BTG_OTHER_HOLDER = 225
    KEY_GRANT_BTG_ENDED = 226  # closed or expired
    KEY_GRANT_BTG_RECORD_NOT_INCLUDED = 227
    KEY_GRANT_BTG_UNKNOWN = 228
    KEY_GRANT_CONFIDENTIALITY_ABOVE_DELEGATION = 229
    ACCESS_LOG_SIGNER_NOT_GATEWAY = 230
    ACCESS_LOG_BATCH_EXISTS = 231
    ACCESS_LOG_PERIOD_INVALID = 232

    # insurance
    COVERAGE_SIGNER_NOT_INSURER = 240
    COVERAGE_ID_EXISTS = 241
    COVERAGE_PERIOD_INVALID = 242
    COVERAGE_UNKNOWN = 243
    CURRENCY_MISMATCH = 244
    PREMIUM_SIGNER_NOT_INSURER = 245  # not the coverage's insurer
    PAYMENT_ID_REUSED = 246  # same payment id, different body
    PREMIUM_PERIOD_OUT_OF_RANGE = 247
    PREMIUM_PERIOD_ALREADY_PAID = 248
    PREMIUM_AMOUNT_NOT_DUE = 249
    CLAIM_SIGNER_NOT_PROVIDER = 255
    CLAIM_ID_NOT_PROVIDERS = 256  # a claim id is "<provider org id>:<claim number>"
    CLAIM_ID_REUSED = 257  # same claim id, different body
    CLAIM_TOTAL_MISMATCH = 258
    CLAIM_COVERAGE_MISMATCH = 259  # coverage beneficiary is not the claim's patient
    CLAIM_DUPLICATE_SERVICE = 260  # a duplicate key is live on another claim
    CLAIM_DUPLICATE_LINE = 261  # the same duplicate key twice in one claim
    CLAIM_ORIGINAL_MISSING = 262  # replacement / void without a live original
    CLAIM_REPLACES_ON_ORIGINAL = 263  # an original claim naming a claim it replaces
    CLAIM_VOID_MISMATCH = 264  # a void whose lines differ from the original's
    CLAIM_ORIGINAL_PAID = 265  # voiding a paid claim
    CLAIM_UNKNOWN = 270
    CLAIM_ADJUDICATOR_NOT_INSURER = 271
    CLAIM_NOT_ADJUDICABLE = 272  # already decided, replaced, voided or paid
    CLAIM_BENEFITS_LENGTH_MISMATCH = 273
    CLAIM_BENEFIT_EXCEEDS_CHARGE = 274
    CLAIM_DECISION_CONTRADICTS_AMOUNTS = 275
    CLAIM_REASON_CODE_MISSING = 276  # partial and denied decisions name a reason
    CLAIM_BENEFIT_BELOW_PAID = 277  # benefit below what a replaced claim already paid
    REMITTANCE_ID_EXISTS = 280
    REMITTANCE_TOTAL_MISMATCH = 281
    REMITTANCE_SIGNER_NOT_INSURER = 282
    CLAIM_NOT_PAYABLE = 283
    CLAIM_ALREADY_PAID = 284
    REMITTANCE_AMOUNT_MISMATCH = 285  # not the benefit minus what was already paid
    REMITTANCE_DUPLICATE_ALLOCATION = 286

    @property
    def is_stateless(self) -> bool:
        return 0 < self.value < 100

    @property
    def is_application(self) -> bool:
        return self.value >= 100
