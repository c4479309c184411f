"""The unmeasured preparation of a load-test round, over a small async port.

1. Find the members whose admin keys we hold (devnet keys, key files, or members the load
   tester added earlier) and their last nonces.
2. If there are fewer usable lane members than workers, add ``loadtest-N`` provider
   members by governance (propose + two-thirds of votes), once per chain: later runs
   find them. Only without key files (a devnet or test chain): their keys derive from
   the chain id, so a real consortium gets an error naming the key-file setting instead.
3. Register each lane's parties, then anchor their records, grant their consents and
   (by the insurer) their coverage; every stage is committed before the next.

The port is implemented over the node's WebSocket (node.loadtest.client) and, in tests,
over the in-process ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ledger import bodies as b
from ledger.crypto import SigningKey
from ledger.errors import ConfigError, RemoteError
from ledger.sdk.builders import TransactionBuilder
from ledger.tx import Transaction
from node.loadtest.config import (
    KEY_FILE_OPTION,
    KEY_FILES_SETTING,
    key_file_setting,
    read_member_key,
)
from node.loadtest.workload import (
    LOADTEST_MEMBER_PREFIX,
    LaneSpec,
    LaneWorkload,
    MemberSigner,
    lane_capabilities,
    lane_exclusions,
    loadtest_member_key,
    membership_additions,
    patients_needed,
)

MEMBER_KINDS = {kind.name.lower(): kind for kind in b.MemberKind}


class PreparationPort(Protocol):
    async def query(self, method: str, params: dict[str, Any]) -> Any:
        """An application query (gov_members, gov_key, gov_chainTime)."""
        ...

    async def commit(self, raws: Sequence[bytes], stage: str) -> list[int]:
        """Submit ``raws`` in this order and wait until every one is committed; their
        result codes, in order. Raises on refusal or timeout."""
        ...


class PreparationError(RemoteError):
    """The chain refused a preparation tx (or the consortium cannot host the lanes)."""


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A configured (weighted) tx type some lanes do not submit, and why."""

    tx_type: str
    weight: int
    lanes: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Prepared:
    specs: tuple[LaneSpec, ...]  # the lanes, nonces past the preparation
    preparation_txs: int
    members_added: tuple[str, ...]
    now_ms: int
    configured_weights: tuple[tuple[str, int], ...] = ()  # what the mix asked for
    left_out: tuple[LeftOut, ...] = ()


# The fix an error about missing member keys names.
GIVE_KEYS_HINT = (f"give members' admin key files with {KEY_FILE_OPTION} ORG=PATH or "
                  f"{KEY_FILES_SETTING}, or fewer --workers")


def _known_key(org_id: str, chain_id: str, key_files: Mapping[str, str]) -> SigningKey:
    from ledger.sdk.devnet import devnet_admin_key

    if org_id in key_files:
        return read_member_key(org_id, key_files[org_id])
    if org_id.startswith(LOADTEST_MEMBER_PREFIX):
        return loadtest_member_key(chain_id, org_id)
    return devnet_admin_key(org_id)


async def discover_members(port: PreparationPort, chain_id: str,
                           key_files: Mapping[str, str]) -> tuple[list[MemberSigner], int]:
    """The active members whose admin key we hold, in org id order, with their last
    nonces; and the number of active members."""
    members = await port.query("gov_members", {})
    active = [member for member in members if member.get("active")]
    strangers = sorted(set(key_files) - {str(member["org_id"]) for member in active})
    if strangers:
        raise ConfigError(f"{KEY_FILES_SETTING} names {strangers}, not active members of "
                          f"chain {chain_id}")
    signers: list[MemberSigner] = []
    for member in sorted(active, key=lambda item: str(item["org_id"])):
        key = _known_key(member["org_id"], chain_id, key_files)
        if "0x" + key.public_key.hex() != member["admin_key"]:
            if member["org_id"] in key_files:
                raise ConfigError(
                    f"member key file ({key_file_setting(member['org_id'])}) "
                    f"{key_files[member['org_id']]} holds admin key 0x{key.public_key.hex()}"
                    f", but member {member['org_id']}'s admin key is {member['admin_key']}")
            continue
        info = await port.query("gov_key", {"public_key": "0x" + key.public_key.hex()})
        last_nonce = 0 if info is None else int(info["last_nonce"])
        signers.append(MemberSigner(member["org_id"], MEMBER_KINDS[member["kind"]], key.seed,
                                    last_nonce))
    return signers, len(active)


def _lane_members(signers: Sequence[MemberSigner], healthcare: bool) -> list[MemberSigner]:
    insurer = any(signer.kind is b.MemberKind.INSURER for signer in signers)
    usable = [signer for signer in signers
              if lane_capabilities(signer.kind, healthcare, insurer)]
    # Providers first: they can do every measured type.
    return sorted(usable, key=lambda signer: (signer.kind is not b.MemberKind.PROVIDER,
                                              signer.org_id))


async def _ensure_lanes(port: PreparationPort, chain_id: str, workers: int, healthcare: bool,
                        key_files: Mapping[str, str],
                        now_ms: int) -> tuple[list[MemberSigner], tuple[str, ...], int]:
    signers, active = await discover_members(port, chain_id, key_files)
    lane_members = _lane_members(signers, healthcare)
    missing = workers - len(lane_members)
    if missing <= 0:
        return signers, (), 0
    held = f"{[signer.org_id for signer in lane_members]}" if lane_members else "none"
    if key_files:
        # A real consortium: members with keys derived from the chain id (anyone can
        # derive them) must not be voted into it.
        raise ConfigError(
            f"{workers} workers need {workers} member keys that sign lanes (providers or "
            f"custodians); the key files give {held}: {GIVE_KEYS_HINT}")
    if len(signers) * 3 <= active * 2:
        raise ConfigError(
            f"{workers} workers need {missing} more member keys, and the load tester holds "
            f"only {len(signers)} of {active} members' keys (no two-thirds to vote them in): "
            f"{GIVE_KEYS_HINT}")
    taken = {signer.org_id for signer in signers}
    new_org_ids: list[str] = []
    number = 1
    while len(new_org_ids) < missing:
        org_id = f"{LOADTEST_MEMBER_PREFIX}{number}"
        if org_id not in taken:
            new_org_ids.append(org_id)
        number += 1
    txs = membership_additions(chain_id, signers, active, new_org_ids, now_ms)
    await _commit_all(port, txs, "membership")
    signers, _ = await discover_members(port, chain_id, key_files)
    return signers, tuple(new_org_ids), len(txs)


async def _commit_all(port: PreparationPort, txs: Sequence[Transaction], stage: str) -> None:
    if not txs:
        return
    codes = await port.commit([tx.raw for tx in txs], stage)
    refused = [code for code in codes if code != 0]
    if refused:
        raise PreparationError(
            f"preparation stage {stage}: {len(refused)} of {len(codes)} txs invalid "
            f"(codes {sorted(set(refused))}); is another client signing with these keys?"
        )


def lane_weights(config_weights: Mapping[str, int], allowed: set[str],
                 healthcare: bool) -> tuple[tuple[str, int], ...]:
    if not healthcare:
        return (("REGISTER_PARTY", 1),)
    return tuple((kind, weight) for kind, weight in config_weights.items()
                 if weight > 0 and kind in allowed)


async def prepare(
    port: PreparationPort,
    *,
    chain_id: str,
    run_tag: str,
    workers: int,
    healthcare: bool,
    weights: Mapping[str, int],
    lane_txs: Callable[[int], int],
    key_files: Mapping[str, str],
) -> Prepared:
    """Lanes for ``workers`` workers, prepared on chain. ``lane_txs(lanes)`` is how many
    measured txs each lane will sign (it sizes the prepared patients)."""
    now_ms = int((await port.query("gov_chainTime", {}))["now_ms"])
    signers, added, membership_txs = await _ensure_lanes(
        port, chain_id, workers, healthcare, key_files, now_ms)
    insurers = [signer for signer in signers if signer.kind is b.MemberKind.INSURER]
    members = _lane_members(signers, healthcare)[:workers]
    assert len(members) == workers, "_ensure_lanes provides a member per worker"
    configured = lane_weights(weights, set(weights), healthcare)
    specs = []
    for lane, member in enumerate(members):
        allowed = lane_capabilities(member.kind, healthcare, bool(insurers))
        lane_mix = lane_weights(weights, allowed, healthcare)
        if not lane_mix:
            excluded = lane_exclusions(member.kind, healthcare, bool(insurers))
            raise ConfigError(f"lane {lane} ({member.org_id}) can sign none of the weighted "
                              f"types {sorted(weights)}: {excluded}")
        patients = patients_needed(dict(lane_mix), lane_txs(workers)) if healthcare else 0
        specs.append(LaneSpec(chain_id, run_tag, lane, member, lane_mix, patients, now_ms,
                              healthcare=healthcare,
                              insurer_org=insurers[0].org_id if insurers else None))
    workloads = [LaneWorkload(spec) for spec in specs]
    preparation_txs = membership_txs
    if healthcare:
        preparation_txs += await _prepare_parties(port, workloads, insurers[:1], chain_id)
    return Prepared(tuple(workload.after_preparation() for workload in workloads),
                    preparation_txs, added, now_ms, configured,
                    left_out(configured, members, healthcare, bool(insurers)))


def left_out(configured: Sequence[tuple[str, int]], members: Sequence[MemberSigner],
             healthcare: bool, insurer: bool) -> tuple[LeftOut, ...]:
    """The configured types each lane (``members[lane]``) leaves out, grouped by reason."""
    lanes_by_reason: dict[tuple[str, str], list[int]] = {}
    for lane, member in enumerate(members):
        excluded = lane_exclusions(member.kind, healthcare, insurer)
        for tx_type, _ in configured:
            if tx_type in excluded:
                lanes_by_reason.setdefault((tx_type, excluded[tx_type]), []).append(lane)
    weight_of = dict(configured)
    return tuple(LeftOut(tx_type, weight_of[tx_type], tuple(lanes), reason)
                 for (tx_type, reason), lanes in lanes_by_reason.items())


async def _prepare_parties(port: PreparationPort, workloads: Sequence[LaneWorkload],
                           insurers: Sequence[MemberSigner], chain_id: str) -> int:
    registrations = [tx for workload in workloads
                     for tx in workload.preparation_registrations()]
    await _commit_all(port, registrations, "registrations")
    dependents = [tx for workload in workloads for tx in workload.preparation_dependents()]
    if insurers:
        insurer = TransactionBuilder(chain_id, insurers[0].key,
                                     last_nonce=insurers[0].last_nonce)
        for workload in workloads:
            if any(kind == "CLAIM_SUBMIT" for kind, _ in workload.spec.weights):
                dependents.extend(workload.coverage(insurer, index)
                                  for index in range(workload.spec.patients))
    await _commit_all(port, dependents, "records, consents and coverage")
    return len(registrations) + len(dependents)

