"""Transaction types (their bodies are in :mod:`ledger.bodies`)."""

from __future__ import annotations

import enum


class TxType(enum.IntEnum):
    # governance
    PROPOSE_MEMBER = 1
    VOTE = 2
    ROTATE_KEY = 3
    REVOKE_KEY = 4
    # parties and records
    REGISTER_PARTY = 10
    ANCHOR_RECORD = 11
    SHRED_RECORD = 12
    # consent and access
    CONSENT_GRANT = 20
    CONSENT_REVOKE = 21
    DELEGATE_GRANT = 22
    BTG_OPEN = 23
    BTG_CLOSE = 24
    BTG_REVIEW = 25
    KEY_GRANT = 26
    ACCESS_LOG = 27
    # insurance
    COVERAGE = 30
    PREMIUM_PAID = 31
    CLAIM_SUBMIT = 32
    CLAIM_ADJUDICATE = 33
    REMITTANCE = 34
