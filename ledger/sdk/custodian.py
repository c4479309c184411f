"""A custodian's off-ledger store: ciphertexts by SHA-256, data keys and key wraps.

In memory (a real custodian puts the same operations in front of object storage and a key
management service). ``shred`` is crypto-shredding: every ciphertext, data key and wrap of
the record goes, and the store refuses the record from then on; the ledger keeps only the
SHRED_RECORD tombstone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.sdk.errors import NotHeld, Shredded
from ledger.sdk.privacy import KeyWrap, SealedRecord, sha256


@dataclass(frozen=True, slots=True)
class ShredReceipt:
    record_id: str
    ciphertexts: int
    data_keys: int
    wraps: int


class CustodianStore:
    def __init__(self) -> None:
        self._ciphertexts: dict[bytes, bytes] = {}
        self._versions: dict[tuple[str, int], bytes] = {}  # -> ciphertext hash
        self._data_keys: dict[tuple[str, int], bytes] = {}
        self._wraps: dict[tuple[str, int, str], KeyWrap] = {}
        self._shredded: set[str] = set()

    def put_version(self, sealed: SealedRecord, wraps: list[KeyWrap]) -> bytes:
        """Keep a new record version, its data key and its initial wraps; returns the
        ciphertext hash the ledger anchors."""
        self._refuse_shredded(sealed.record_id)
        digest = sealed.ciphertext_hash
        self._ciphertexts[digest] = sealed.ciphertext
        self._versions[(sealed.record_id, sealed.version)] = digest
        self._data_keys[(sealed.record_id, sealed.version)] = sealed.data_key
        for wrap in wraps:
            self.put_wrap(wrap)
        return digest

    def put_wrap(self, wrap: KeyWrap) -> None:
        self._refuse_shredded(wrap.record_id)
        self._wraps[(wrap.record_id, wrap.version, wrap.recipient)] = wrap

    def ciphertext(self, ciphertext_hash: bytes) -> bytes:
        data = self._ciphertexts.get(ciphertext_hash)
        if data is None:
            raise NotHeld(f"no ciphertext {ciphertext_hash.hex()}")
        assert sha256(data) == ciphertext_hash
        return data

    def ciphertext_of(self, record_id: str, version: int) -> bytes:
        self._refuse_shredded(record_id)
        digest = self._versions.get((record_id, version))
        if digest is None:
            raise NotHeld(f"no {record_id} v{version}")
        return self.ciphertext(digest)

    def data_key(self, record_id: str, version: int) -> bytes:
        self._refuse_shredded(record_id)
        data_key = self._data_keys.get((record_id, version))
        if data_key is None:
            raise NotHeld(f"no data key for {record_id} v{version}")
        return data_key

    def wrap(self, record_id: str, version: int, recipient: str) -> KeyWrap:
        self._refuse_shredded(record_id)
        wrap = self._wraps.get((record_id, version, recipient))
        if wrap is None:
            raise NotHeld(f"no wrap of {record_id} v{version} for {recipient}")
        return wrap

    def shred(self, record_id: str) -> ShredReceipt:
        versions = sorted(version for (rid, version) in self._versions if rid == record_id)
        ciphertexts = 0
        for version in versions:
            digest = self._versions.pop((record_id, version))
            if self._ciphertexts.pop(digest, None) is not None:
                ciphertexts += 1
        data_keys = 0
        for version in versions:
            if self._data_keys.pop((record_id, version), None) is not None:
                data_keys += 1
        wrap_keys = sorted(key for key in self._wraps if key[0] == record_id)
        for key in wrap_keys:
            del self._wraps[key]
        self._shredded.add(record_id)
        return ShredReceipt(record_id, ciphertexts, data_keys, len(wrap_keys))

    def is_shredded(self, record_id: str) -> bool:
        return record_id in self._shredded

    def holds_anything_of(self, record_id: str) -> bool:
        return (
            any(rid == record_id for rid, _ in self._versions)
            or any(rid == record_id for rid, _ in self._data_keys)
            or any(key[0] == record_id for key in self._wraps)
        )

    def _refuse_shredded(self, record_id: str) -> None:
        if record_id in self._shredded:
            raise Shredded(f"{record_id} was shredded")
