"""Complete access trails: each patient's audit entries form a hash chain, and a sparse
Merkle tree over patients (ledger/smt.py) holds every chain's head; its root is in each
header (``trails_root``, of the state the header commits to).

The application writes a patient's audit entries (key grants, break-glass open, close,
review and flag, access logs) under ``audit/<patient>/<height><slot><number>``, in chain
order. After each block, every new entry extends its patient's chain, in key order:

    head' = SHA-256("medledger/trail/v1" 0x00 || head || count (8 bytes) ||
                    len(key) (4 bytes) || key || value)

from ``head = 32 zero bytes, count = 0``; the state keeps ``(count, head)`` per patient
and the tree maps SHA-256(patient id) to SHA-256("medledger/trail-head/v1" 0x00 ||
count || head). A trail proof is a certified header, the patient's leaf proved against its
``trails_root``, and the entries: an entry left out, reordered or altered gives another
count or head. Pure and consensus-critical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

from ledger import smt
from ledger.app.layout import AUDIT, SEPARATOR, table_prefix

TRAIL_PREFIX = b"\xffnode/trail/"  # patient -> count (8 bytes) || head (32)
SMT_PREFIX = b"\xffnode/smt/"  # the tree's nodes, by path (ledger/smt.py)
TRAILS_AT_PREFIX = b"\xffnode/trails-at/"  # height -> the tree's root then
AUDIT_PREFIX = table_prefix(AUDIT)
_ENTRY_DOMAIN = b"medledger/trail/v1\x00"
_HEAD_DOMAIN = b"medledger/trail-head/v1\x00"
ZERO = bytes(32)
_sha256 = hashlib.sha256

Get = Callable[[bytes], bytes | None]


def trail_key(patient: str) -> bytes:
    return TRAIL_PREFIX + patient.encode()


def trails_at_key(height: int) -> bytes:
    return TRAILS_AT_PREFIX + height.to_bytes(8, "big")


def patient_key(patient: str) -> bytes:
    """The patient's key in the tree."""
    return _sha256(patient.encode()).digest()


def patient_of(audit_key: bytes) -> str:
    """The patient an audit entry's key names."""
    assert audit_key.startswith(AUDIT_PREFIX)
    return audit_key[len(AUDIT_PREFIX):].split(SEPARATOR, 1)[0].decode()


def extend(head: bytes, count: int, key: bytes, value: bytes) -> bytes:
    """The chain's head after the entry (``key``, ``value``) numbered ``count``."""
    return _sha256(_ENTRY_DOMAIN + head + count.to_bytes(8, "big")
                   + len(key).to_bytes(4, "big") + key + value).digest()


def encode_head(count: int, head: bytes) -> bytes:
    return count.to_bytes(8, "big") + head


def decode_head(data: bytes | None) -> tuple[int, bytes]:
    if data is None:
        return 0, ZERO
    assert len(data) == 40, "a trail head is 40 bytes"
    return int.from_bytes(data[:8], "big"), data[8:]


def head_value_hash(count: int, head: bytes) -> bytes:
    """What the tree holds for a patient whose chain has ``count`` entries and ``head``."""
    return _sha256(_HEAD_DOMAIN + encode_head(count, head)).digest()


def chain_of(entries: Sequence[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """(count, head) of a chain of entries, from the start."""
    head = ZERO
    for count, (key, value) in enumerate(entries):
        head = extend(head, count, key, value)
    return len(entries), head


def block_writes(get: Get, writes: Mapping[bytes, bytes | None]
                 ) -> tuple[dict[bytes, bytes | None], bytes | None]:
    """The trail state a block's ``writes`` lead to (``get`` reads the state with the
    block's writes): each patient's new chain head and the tree's updated nodes, and the
    tree's new root (None: no audit entry written, the root is unchanged)."""
    entries = sorted((key, value) for key, value in writes.items()
                     if key.startswith(AUDIT_PREFIX) and value is not None)
    if not entries:
        return {}, None
    heads: dict[str, tuple[int, bytes]] = {}
    for key, value in entries:
        patient = patient_of(key)
        count, head = heads.get(patient) or decode_head(get(trail_key(patient)))
        heads[patient] = (count + 1, extend(head, count, key, value))
    out: dict[bytes, bytes | None] = {}

    def tree_get(path: bytes) -> bytes | None:
        key = SMT_PREFIX + path
        return out[key] if key in out else get(key)

    root = smt.root_of(tree_get)
    for patient in sorted(heads):
        count, head = heads[patient]
        out[trail_key(patient)] = encode_head(count, head)
        nodes, root = smt.update(tree_get, patient_key(patient), head_value_hash(count, head))
        for path, node in nodes.items():
            out[SMT_PREFIX + path] = node
    return out, root


def prove_head(get: Get, patient: str) -> tuple[int, bytes, smt.SmtProof]:
    """(count, head) of the patient's chain and its proof in the tree, read through
    ``get`` (one consistent state)."""
    count, head = decode_head(get(trail_key(patient)))
    return count, head, smt.prove(lambda path: get(SMT_PREFIX + path), patient_key(patient))


__all__ = [
    "AUDIT_PREFIX",
    "SMT_PREFIX",
    "TRAILS_AT_PREFIX",
    "TRAIL_PREFIX",
    "block_writes",
    "chain_of",
    "decode_head",
    "encode_head",
    "extend",
    "head_value_hash",
    "patient_key",
    "patient_of",
    "prove_head",
    "trail_key",
    "trails_at_key",
]
