"""The SDK's operating errors, under the project's one root (ledger.errors)."""

from __future__ import annotations

from ledger.errors import LocalError, RemoteError


class RecordDecryptionError(RemoteError):
    """A ciphertext or key wrap does not open: tampered, truncated, for another record or
    version, or sealed for another recipient."""


class MetadataError(RemoteError):
    """Record or consent metadata is not a valid FHIR resource of the expected type."""


class CustodianError(LocalError):
    """The custodian store cannot serve a request."""


class NotHeld(CustodianError):
    """The store holds no such ciphertext, data key or wrap."""


class Shredded(CustodianError):
    """The record was crypto-shredded: its ciphertexts, data keys and wraps are gone."""
