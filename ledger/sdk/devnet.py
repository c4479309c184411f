"""The devnet's consortium: the demo members with a devnet's node keys, and their admin
keys (derived from the demo's public seed: for local networks and tests only, never for
a real consortium, whose members make their own keys)."""

from __future__ import annotations

import hashlib

from ledger.app import Genesis, GenesisMember, check_genesis
from ledger.bodies import MemberKind
from ledger.crypto import SigningKey
from ledger.sdk.demo import DemoConsortium

DEVNET_ADMIN_DOMAIN = b"medledger/devnet-admin\x00"


def devnet_admin_key(org_id: str) -> SigningKey:
    """The admin key of a devnet member: the demo consortium's (derived from its public
    seed, so `medledger demo` can sign for the members; never for a real consortium)."""
    for member in DemoConsortium().members:
        if member.org_id == org_id:
            return member.keys.admin
    return SigningKey(hashlib.sha256(DEVNET_ADMIN_DOMAIN + org_id.encode()).digest())


def devnet_genesis(chain_id: str, validator_node_keys: list[bytes], *,
                   genesis_time_ms: int) -> Genesis:
    """The demo consortium (two hospitals, a lab, an insurer) with this devnet's node keys:
    validators are hospital-a, hospital-b, lab, then the insurer; beyond four, extra
    provider orgs (``provider-N``) are added."""
    consortium = DemoConsortium(chain_id=chain_id, genesis_time_ms=genesis_time_ms)
    orgs = [member.org_id for member in consortium.members]
    node_keys = dict(zip(orgs, validator_node_keys, strict=False))
    genesis = consortium.genesis(node_keys=node_keys, validators=list(node_keys))
    extra = [
        GenesisMember(f"provider-{index}", MemberKind.PROVIDER,
                      devnet_admin_key(f"provider-{index}").public_key, node_key, True)
        for index, node_key in enumerate(validator_node_keys[len(orgs):], start=1)
    ]
    if extra:
        genesis = Genesis(genesis.chain_id, genesis.genesis_time_ms,
                          genesis.members + tuple(extra), genesis.parameters)
    check_genesis(genesis)
    return genesis
