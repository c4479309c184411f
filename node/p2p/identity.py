"""libp2p peer ids from Ed25519 node keys, without importing libp2p (0.7 s, ~80 MB).

A peer id for an Ed25519 key is the base58btc encoding of an *identity* multihash of the
protobuf-encoded public key (the key is short enough to be embedded, not hashed):

    0x00 0x24 | 0x08 0x01 0x12 0x20 | 32 key bytes
    identity, | KeyType=Ed25519,     |
    length 36 | Data (32 bytes)      |

``tests/test_p2p_identity.py`` checks this against libp2p's own ``ID.from_pubkey``.
"""

from __future__ import annotations

import nacl.signing

from ledger.crypto import PUBLIC_KEY_SIZE, SEED_SIZE

_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# protobuf PublicKey { Type: Ed25519 (1), Data: 32 bytes }
_ED25519_PROTOBUF_PREFIX = bytes([0x08, 0x01, 0x12, PUBLIC_KEY_SIZE])
# multihash: identity function (0x00), digest length 36
_IDENTITY_MULTIHASH_PREFIX = bytes([0x00, len(_ED25519_PROTOBUF_PREFIX) + PUBLIC_KEY_SIZE])


def base58_encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(_BASE58_ALPHABET[remainder])
    leading_zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * leading_zeros + "".join(reversed(digits))


def base58_decode(text: str) -> bytes:
    number = 0
    for character in text:
        index = _BASE58_ALPHABET.find(character)
        if index < 0:
            raise ValueError(f"not base58: {character!r}")
        number = number * 58 + index
    leading_zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\x00" * leading_zeros + body


def peer_id_from_public_key(public_key: bytes) -> str:
    """The libp2p peer id (base58 string) of an Ed25519 node public key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    return base58_encode(_IDENTITY_MULTIHASH_PREFIX + _ED25519_PROTOBUF_PREFIX + public_key)


def public_key_from_seed(seed: bytes) -> bytes:
    if len(seed) != SEED_SIZE:
        raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
    return bytes(nacl.signing.SigningKey(seed).verify_key)


def peer_id_from_seed(seed: bytes) -> str:
    """The peer id of the node whose key file holds ``seed`` (32 bytes)."""
    return peer_id_from_public_key(public_key_from_seed(seed))


def public_key_from_peer_id(peer_id: str) -> bytes:
    """The Ed25519 public key embedded in a peer id (ValueError if it holds none)."""
    raw = base58_decode(peer_id)
    prefix = _IDENTITY_MULTIHASH_PREFIX + _ED25519_PROTOBUF_PREFIX
    if len(raw) != len(prefix) + PUBLIC_KEY_SIZE or not raw.startswith(prefix):
        raise ValueError(f"{peer_id!r} is not the peer id of an Ed25519 key")
    return raw[len(prefix):]
