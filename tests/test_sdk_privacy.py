"""The SDK's record privacy scheme (DOMAIN.md): encrypt, wrap, unwrap, decrypt; what fails;
what reaches the ledger; keyed hashes; FHIR metadata; the custodian store."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from Crypto.Protocol import HPKE
from Crypto.PublicKey import ECC

from ledger import bodies as b
from ledger.sdk.builders import TransactionBuilder
from ledger.sdk.custodian import CustodianStore
from ledger.sdk.errors import MetadataError, NotHeld, RecordDecryptionError, Shredded
from ledger.sdk.fhir import metadata_hash, validate_resource
from ledger.sdk.keys import EncryptionKey, MemberKeys, NonceCounter, PartyKeys
from ledger.sdk.privacy import (
    GCM_NONCE_SIZE,
    KeyWrap,
    SealedRecord,
    claim_duplicate_key,
    decrypt_record,
    key_id,
    keyed_hash,
    open_record,
    pseudonym,
    seal_record,
    unwrap_data_key,
    wrap_data_key,
    wrap_for_readers,
    wrap_info,
)

PLAINTEXT = b"Alice Example, DOB 1984-02-29, HbA1c 6.1 percent, drawn 2026-01-05"
RECORD_ID = "rec-7f3a"


def sealed_and_wrapped() -> tuple[SealedRecord, EncryptionKey, KeyWrap]:
    reader = EncryptionKey.generate()
    sealed = seal_record(PLAINTEXT, record_id=RECORD_ID, version=2)
    wrap = wrap_data_key(
        sealed.data_key, record_id=RECORD_ID, version=2, recipient="prac-1",
        recipient_public_key=reader.public_key,
    )
    return sealed, reader, wrap


def test_round_trip_encrypt_wrap_unwrap_decrypt() -> None:
    sealed, reader, wrap = sealed_and_wrapped()
    assert decrypt_record(sealed.ciphertext, wrap, reader) == PLAINTEXT
    assert unwrap_data_key(wrap, reader) == sealed.data_key


def test_each_version_gets_a_fresh_data_key_and_nonce() -> None:
    first = seal_record(PLAINTEXT, record_id=RECORD_ID, version=1)
    again = seal_record(PLAINTEXT, record_id=RECORD_ID, version=1)
    assert first.data_key != again.data_key
    assert first.ciphertext[:GCM_NONCE_SIZE] != again.ciphertext[:GCM_NONCE_SIZE]
    assert first.ciphertext_hash == hashlib.sha256(first.ciphertext).digest()


def test_the_wrong_recipient_cannot_unwrap() -> None:
    sealed, _, wrap = sealed_and_wrapped()
    stranger = EncryptionKey.generate()
    with pytest.raises(RecordDecryptionError):
        decrypt_record(sealed.ciphertext, wrap, stranger)
    # even when the wrap claims the stranger's key id, HPKE refuses to open it
    relabelled = dataclasses.replace(wrap, recipient_key_id=key_id(stranger.public_key))
    with pytest.raises(RecordDecryptionError):
        unwrap_data_key(relabelled, stranger)


@pytest.mark.parametrize("position", [0, GCM_NONCE_SIZE, -1])
def test_a_tampered_ciphertext_fails(position: int) -> None:
    sealed, reader, wrap = sealed_and_wrapped()
    ciphertext = bytearray(sealed.ciphertext)
    ciphertext[position] ^= 0x01
    with pytest.raises(RecordDecryptionError):
        decrypt_record(bytes(ciphertext), wrap, reader)
    with pytest.raises(RecordDecryptionError):
        decrypt_record(sealed.ciphertext[:-1], wrap, reader)


def test_a_tampered_wrap_fails() -> None:
    _, reader, wrap = sealed_and_wrapped()
    sealed_key = bytearray(wrap.sealed)
    sealed_key[-1] ^= 0x80
    with pytest.raises(RecordDecryptionError):
        unwrap_data_key(dataclasses.replace(wrap, sealed=bytes(sealed_key)), reader)


def test_a_wrap_or_ciphertext_is_bound_to_its_record_and_version() -> None:
    sealed, reader, wrap = sealed_and_wrapped()
    for other in ({"record_id": "rec-other"}, {"version": 3}):
        moved = dataclasses.replace(wrap, **other)
        with pytest.raises(RecordDecryptionError):
            unwrap_data_key(moved, reader)
    with pytest.raises(RecordDecryptionError):
        open_record(sealed.ciphertext, sealed.data_key, record_id=RECORD_ID, version=3)


def test_our_wraps_open_with_another_rfc_9180_implementation() -> None:
    sealed, reader, wrap = sealed_and_wrapped()
    receiver = ECC.construct(curve="Curve25519", seed=reader.secret)
    opened = HPKE.new(
        receiver_key=receiver,
        aead_id=HPKE.AEAD.AES256_GCM,
        enc=wrap.sealed[:32],
        info=wrap_info(RECORD_ID, 2, key_id(reader.public_key)),
    ).unseal(wrap.sealed[32:])
    assert opened == sealed.data_key


def test_ledger_facing_fields_carry_no_plaintext() -> None:
    """An anchor built the SDK's way holds hashes, pseudonyms and sizes only."""
    secret = b"consortium shared key for tests"
    patient = PartyKeys.generate(pseudonym(secret, "pat", "MRN-000123"))
    custodian = MemberKeys.generate("lab")
    sealed = seal_record(PLAINTEXT, record_id=pseudonym(secret, "rec", "MRN-000123/7"), version=1)
    wraps = wrap_for_readers(
        sealed,
        [(patient.party_id, patient.encryption.public_key),
         ("lab", custodian.encryption.public_key)],
    )
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "description": "HbA1c for Alice Example",
        "content": [{"attachment": {"contentType": "text/plain", "title": "Alice Example"}}],
    }
    tx = TransactionBuilder("chain", custodian.admin).anchor_record(
        record_id=sealed.record_id, version=1, patient=patient.party_id,
        confidentiality=b.Confidentiality.R, document_type=b.DocumentType.LAB_RESULT,
        ciphertext_hash=sealed.ciphertext_hash, ciphertext_size=sealed.ciphertext_size,
        wraps=[b.Wrap(wrap.recipient, wrap.wrap_hash) for wrap in wraps],
        metadata_hash=metadata_hash(secret, document, "DocumentReference"),
    )
    for needle in (b"Alice", b"MRN-000123", b"HbA1c", b"1984-02-29", PLAINTEXT[:16],
                   sealed.data_key, hashlib.sha256(PLAINTEXT).digest(),
                   hashlib.sha256(b"MRN-000123").digest()):
        assert needle not in tx.raw
    for wrap in wraps:
        assert wrap.sealed not in tx.raw


def test_keyed_hashes_need_the_key_and_separate_their_parts() -> None:
    key, other = b"k" * 32, b"o" * 32
    assert keyed_hash(key, "x", "ab", "c") != keyed_hash(key, "x", "a", "bc")
    assert keyed_hash(key, "x", "a") != keyed_hash(other, "x", "a")
    assert keyed_hash(key, "x", "a") != hashlib.sha256(b"a").digest()
    line = {"patient": "pat-1", "service_date": "2026-01-05", "procedure": "99214"}
    assert claim_duplicate_key(key, **line) == claim_duplicate_key(key, **line)
    assert claim_duplicate_key(key, **line) != claim_duplicate_key(key, **line, units=2)
    assert claim_duplicate_key(key, **line) != claim_duplicate_key(other, **line)
    name = pseudonym(key, "pat", "MRN-1")
    assert name.startswith("pat-") and len(name) == 28 and "MRN" not in name


def test_fhir_metadata_is_validated_on_the_client() -> None:
    good = {"resourceType": "DocumentReference", "status": "current",
            "content": [{"attachment": {"contentType": "text/plain"}}]}
    canonical = validate_resource(good, "DocumentReference")
    assert canonical.startswith(b'{"content"')
    for bad in (
        {**good, "status": "bogus"},
        {**good, "content": []},
        {**good, "unknownField": 1},
        {**good, "resourceType": "Patient"},
    ):
        with pytest.raises(MetadataError):
            validate_resource(bad, "DocumentReference")
    consent = {"resourceType": "Consent", "status": "active", "decision": "permit"}
    assert metadata_hash(b"k" * 32, consent, "Consent") != metadata_hash(
        b"k" * 32, {**consent, "decision": "deny"}, "Consent"
    )


def test_the_custodian_store_crypto_shreds_a_record() -> None:
    store = CustodianStore()
    sealed, _, wrap = sealed_and_wrapped()
    store.put_version(sealed, [wrap])
    assert store.ciphertext_of(RECORD_ID, 2) == sealed.ciphertext
    assert store.wrap(RECORD_ID, 2, "prac-1") == wrap
    receipt = store.shred(RECORD_ID)
    assert (receipt.ciphertexts, receipt.data_keys, receipt.wraps) == (1, 1, 1)
    assert not store.holds_anything_of(RECORD_ID)
    with pytest.raises(NotHeld):
        store.ciphertext(sealed.ciphertext_hash)
    for action in (
        lambda: store.data_key(RECORD_ID, 2),
        lambda: store.wrap(RECORD_ID, 2, "prac-1"),
        lambda: store.put_wrap(wrap),
    ):
        with pytest.raises(Shredded):
            action()


def test_nonce_counters_only_move_forward() -> None:
    counter = NonceCounter()
    assert [counter.take(), counter.take()] == [1, 2]
    counter.skip_to(10)
    counter.skip_to(3)
    assert counter.peek() == 11


def test_secrets_are_not_printed() -> None:
    key = EncryptionKey.generate()
    assert key.secret.hex() not in repr(key)
    sealed = seal_record(b"x", record_id="r", version=1)
    assert sealed.data_key.hex() not in repr(sealed)
