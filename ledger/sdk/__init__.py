"""The Python client SDK: keys, transaction builders, the record privacy scheme, a
custodian store, and the demo story.

It runs on clients: it may generate keys and nonces from ``os.urandom`` and validate FHIR
metadata (lazily imported), but it never reads a clock nor opens a socket (a
:class:`LedgerClient` is handed in).

- :mod:`ledger.sdk.keys` -- PartyKeys / MemberKeys (Ed25519 signing, X25519 encryption),
  derived from seeds or generated; NonceCounter.
- :mod:`ledger.sdk.builders` -- TransactionBuilder: one method per tx type, signs with its
  key and the key's next nonce; ROTATE_KEY's double signature.
- :mod:`ledger.sdk.privacy` -- AES-256-GCM record encryption, HPKE key wraps, hashes for
  the ledger, keyed hashes (pseudonyms, claim duplicate keys).
- :mod:`ledger.sdk.fhir` -- FHIR R5 validation of DocumentReference / Consent metadata.
- :mod:`ledger.sdk.disclosures` -- a patient's accounting of disclosures as a FHIR R5
  Bundle of AuditEvents, or as a readable table.
- :mod:`ledger.sdk.custodian` -- CustodianStore (ciphertexts, data keys, wraps; shred).
- :mod:`ledger.sdk.client` -- the LedgerClient port; :mod:`ledger.sdk.inprocess` -- an
  in-process implementation over the pure application.
- :mod:`ledger.sdk.demo` -- DemoConsortium and run_demo.
"""

from __future__ import annotations

from ledger.sdk.builders import TransactionBuilder, sign_unchecked
from ledger.sdk.client import LedgerClient, Submission, as_bytes
from ledger.sdk.custodian import CustodianStore, ShredReceipt
from ledger.sdk.keys import EncryptionKey, MemberKeys, NonceCounter, PartyKeys
from ledger.sdk.privacy import (
    KeyWrap,
    SealedRecord,
    claim_duplicate_key,
    decrypt_record,
    keyed_hash,
    open_record,
    pseudonym,
    seal_record,
    unwrap_data_key,
    wrap_data_key,
)

__all__ = [
    "CustodianStore",
    "EncryptionKey",
    "KeyWrap",
    "LedgerClient",
    "MemberKeys",
    "NonceCounter",
    "PartyKeys",
    "SealedRecord",
    "ShredReceipt",
    "Submission",
    "TransactionBuilder",
    "as_bytes",
    "claim_duplicate_key",
    "decrypt_record",
    "keyed_hash",
    "open_record",
    "pseudonym",
    "seal_record",
    "sign_unchecked",
    "unwrap_data_key",
    "wrap_data_key",
]
