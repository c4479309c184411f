"""State plumbing of the application: overlays, the in-memory reader, the key layout,
genesis, the query dispatcher, and the result-code table."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_world import clinic_world, member_genesis
from hypothesis import given
from hypothesis import strategies as st

from ledger import bodies as b
from ledger.app import (
    Genesis,
    GenesisMember,
    MemoryState,
    Overlay,
    Parameters,
    genesis_writes,
    layout,
    validators,
)
from ledger.app.queries import QUERY_METHODS, InvalidQueryParams, UnknownQueryMethod, run_query
from ledger.errors import ConfigError
from ledger.results import ResultCode

ROOT = Path(__file__).resolve().parent.parent

# ---- overlays -----------------------------------------------------------------------------

keys = st.builds(
    lambda table, parts: table + b"\x00" + b"\x00".join(parts),
    st.sampled_from([b"a", b"ab", b"b"]),
    st.lists(st.sampled_from([b"x", b"y", b"xy", b""]), min_size=1, max_size=3),
)
writes = st.lists(st.tuples(keys, st.none() | st.binary(max_size=3)), max_size=25)
prefixes = st.sampled_from(
    [b"a", b"a\x00", b"a\x00x", b"a\x00x\x00", b"ab\x00", b"", b"b\x00y\x00"]
)


@given(base=st.dictionaries(keys, st.binary(max_size=3), max_size=20), block_writes=writes,
       tx_writes=writes, prefix=prefixes, limit=st.integers(0, 30))
def test_overlays_read_and_iterate_like_the_state_they_would_write(
    base: dict[bytes, bytes],
    block_writes: list[tuple[bytes, bytes | None]],
    tx_writes: list[tuple[bytes, bytes | None]],
    prefix: bytes,
    limit: int,
) -> None:
    state = MemoryState(base)
    block = Overlay(state)
    for key, value in block_writes:
        block.put(key, value)
    tx = Overlay(block)
    for key, value in tx_writes:
        tx.put(key, value)
    model = dict(base)
    for key, value in [*block_writes, *tx_writes]:
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value
    expected = sorted((k, v) for k, v in model.items() if k.startswith(prefix))[:limit]
    assert tx.iterate(prefix, limit=limit) == expected
    for key in model:
        assert tx.get(key) == model[key]
    block.merge(tx)
    assert block.iterate(prefix, limit=limit) == expected
    state.apply(dict(block.changes))
    assert list(state.iterate(prefix, limit=limit)) == expected


def test_the_memory_state_iterates_in_key_order_up_to_its_limit() -> None:
    state = MemoryState({b"b": b"2", b"a": b"1", b"ab": b"3", b"c": b"4"})
    assert list(state.iterate(b"a", limit=5)) == [(b"a", b"1"), (b"ab", b"3")]
    assert list(state.iterate(b"", limit=2)) == [(b"a", b"1"), (b"ab", b"3")]
    state.apply({b"a": None, b"d": b"5"})
    assert [key for key, _ in state.items()] == [b"ab", b"b", b"c", b"d"]


# ---- layout -------------------------------------------------------------------------------


def test_keys_order_numerically_and_stay_clear_of_the_nodes_prefix() -> None:
    assert layout.record_version_key("r", 2) < layout.record_version_key("r", 10)
    assert layout.review_due_key(9, "z") < layout.review_due_key(10, "a")
    assert layout.review_due_of(layout.review_due_key(123, "btg-1")) == (123, "btg-1")
    assert layout.last_part(layout.consent_live_key("p", "g", 5, "c-1")) == "c-1"
    assert layout.end_ms_of(layout.consent_live_key("p", "g", 2**40 + 7, "c-1")) == 2**40 + 7
    for table in layout.TABLES:
        assert not table.startswith(b"\xff") and b"\x00" not in table
    state = clinic_world().ledger.state
    for key, _ in state.items():
        assert key.split(b"\x00")[0] in layout.TABLES


# ---- genesis ------------------------------------------------------------------------------


def test_genesis_json_round_trip_and_initial_state() -> None:
    genesis = member_genesis()
    assert Genesis.from_json(genesis.to_json()) == genesis
    state = MemoryState(genesis_writes(genesis))
    assert [org for org, _ in validators(state)] == ["hospital-a", "hospital-b", "lab"]
    assert run_query(state, "gov_members", {}, now_ms=0)[0]["kind"] == "provider"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(chain_id="bad id"), "chain_id"),
        (lambda d: d["members"].append(dict(d["members"][0])), "twice"),
        (lambda d: d["members"][0].update(kind="bank"), "kind"),
        (lambda d: d["members"][0].update(admin_key="12"), "0x-hex"),
        (lambda d: [m.update(validator=False) for m in d["members"]], "no validator"),
        (lambda d: d["members"][3].update(validator=True, node_key=None), "no node key"),
        (lambda d: d["parameters"].update(btg_max_hours=72), "btg_max_hours"),
        (lambda d: d["parameters"].update(consent_max_days=400), "consent_max_days"),
        (lambda d: d.update(extra=1), "unknown fields"),
    ],
)
def test_an_inconsistent_genesis_is_a_config_error(change: object, message: str) -> None:
    document = member_genesis().to_json()
    change(document)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message):
        genesis_writes(Genesis.from_json(document))


def test_genesis_parameters_default_to_the_domain_limits() -> None:
    assert Parameters() == Parameters(btg_review_days=7, btg_max_hours=24, consent_max_days=365)
    member = GenesisMember("o", b.MemberKind.INSURER, bytes(32), bytes(range(32)), True)
    genesis = Genesis("c", 0, (member,), Parameters())
    assert Genesis.from_wire(genesis.to_wire()) == genesis


# ---- queries ------------------------------------------------------------------------------


def test_the_query_dispatcher_checks_its_params() -> None:
    world = clinic_world()
    state = world.ledger.state
    with pytest.raises(UnknownQueryMethod):
        run_query(state, "records_nope", {}, now_ms=0)
    with pytest.raises(InvalidQueryParams, match="missing"):
        run_query(state, "records_get", {}, now_ms=0)
    with pytest.raises(InvalidQueryParams, match="unknown"):
        run_query(state, "records_get", {"record_id": "r", "x": 1}, now_ms=0)
    with pytest.raises(InvalidQueryParams, match="must be int"):
        run_query(state, "records_byPatient", {"patient": "alice", "limit": "9"}, now_ms=0)
    key = world.parties["alice"].key
    by_hex = run_query(state, "gov_key", {"public_key": "0x" + key.hex()}, now_ms=0)
    assert by_hex == run_query(state, "gov_key", {"public_key": key}, now_ms=0)
    assert by_hex["owner_id"] == "alice" and by_hex["last_nonce"] == 0
    with pytest.raises(InvalidQueryParams, match="hex"):
        run_query(state, "gov_key", {"public_key": "0xzz"}, now_ms=0)
    assert run_query(state, "records_get", {"record_id": "none"}, now_ms=0) is None
    records = run_query(state, "records_byPatient", {"patient": "alice", "limit": 1}, now_ms=0)
    assert [record["record_id"] for record in records] == ["rec-lab"]
    assert run_query(state, "gov_chainTime", {}, now_ms=42) == {"now_ms": 42}


def test_every_query_method_answers_on_a_populated_state() -> None:
    world = clinic_world()
    params = {
        "proposal_id": "p", "public_key": bytes(32), "party_id": "alice", "record_id": "rec-lab",
        "patient": "alice", "grant_id": "g", "consent_id": "c", "grantee": "grey",
        "delegate": "carol", "btg_id": "b", "claim_id": "c", "coverage_id": "c",
        "remittance_id": "r",
    }
    for method, spec in QUERY_METHODS.items():
        given_params = {name: params[name] for name in spec.params if name not in spec.optional}
        run_query(world.ledger.state, method, given_params, now_ms=world.now)


# ---- result codes -------------------------------------------------------------------------


def test_every_application_code_names_a_rule_that_uses_it() -> None:
    source = "\n".join(path.read_text() for path in (ROOT / "ledger" / "app").rglob("*.py"))
    unused = [
        code.name
        for code in ResultCode
        if code.is_application
        and f"R.{code.name}" not in source
        and f"ResultCode.{code.name}" not in source
    ]
    assert unused == []
    assert all(not code.is_stateless for code in ResultCode if code.is_application)
