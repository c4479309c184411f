"""Client-side checks of a running chain's quorum certificates over JSON-RPC: every
block from height 2 carries its predecessor's certificate, a majority of the validator
set that block's header names signed it, and each set change is handed over by a header
the old set certified (ledger/certificate.py)."""

from __future__ import annotations

from typing import Any

from ledger.certificate import (
    Certificate,
    CommitSignature,
    certificate_problem,
    validators_hash,
)


def _bytes(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


def certificate_of(view: dict[str, Any]) -> Certificate:
    return Certificate(view["height"], _bytes(view["block_hash"]), tuple(
        CommitSignature(_bytes(item["validator"]), _bytes(item["signature"]))
        for item in view["signatures"]))


def check_certified_chain(node: Any, chain_id: str, genesis_validators: list[bytes],
                          ) -> list[tuple[int, list[bytes]]]:
    """Walk ``node``'s chain from block 1 to its head; return each validator set in force
    with the height it first certified. Raises AssertionError on any flaw."""
    head = node.call("chain_head")["height"]
    known = {validators_hash(genesis_validators): sorted(genesis_validators)}
    expected_set = validators_hash(genesis_validators)
    sets: list[tuple[int, list[bytes]]] = [(1, sorted(genesis_validators))]
    previous: dict[str, Any] | None = None
    for height in range(1, head + 1):
        block = node.call("chain_getBlock", {"height": height})
        header = block["header"]
        assert _bytes(header["validators_hash"]) == expected_set, (
            f"block {height} names another set than its predecessor handed over to")
        if previous is None:
            assert block["certificate"] is None
        else:  # certified by the set the previous block named
            members = known[_bytes(previous["header"]["validators_hash"])]
            certificate = certificate_of(block["certificate"])
            problem = certificate_problem(
                certificate, chain_id=chain_id, height=height - 1,
                block_hash=_bytes(previous["hash"]), members=members)
            assert problem is None, f"block {height}: {problem}"
        handed_to = _bytes(header["next_validators_hash"])
        if handed_to not in known:  # a change: the new set's keys, checked by their hash
            found = node.call("chain_getCertificate", {"height": height + 1}) \
                if height < head else None
            assert found is not None, f"the set block {height} hands over to is unknown"
            keys = sorted(_bytes(key) for key in found["validators"])
            assert validators_hash(keys) == handed_to
            known[handed_to] = keys
            sets.append((height + 1, keys))
        expected_set = handed_to
        previous = block
    return sets
