"""The accounting of disclosures (HIPAA 45 CFR 164.528): the ``audit_disclosures`` query
over application states, its FHIR R5 export, and ``medledger disclosures`` against the
demo story served over JSON-RPC."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import trio
from app_world import DAY_MS, GENESIS_TIME_MS, World, clinic_world, digest
from hypothesis import given
from hypothesis import strategies as st
from rpc_fakes import FakeNode, running_server

from ledger import bodies as b
from ledger.app import layout
from ledger.app.model import AuditEntry, AuditKind
from ledger.app.queries import (
    DISCLOSURE_WINDOW_MS_DEFAULT,
    QUERY_ITEMS_MAX,
    InvalidQueryParams,
    disclosures,
    run_query,
)
from ledger.app.state import MemoryState
from ledger.results import ResultCode
from ledger.sdk.demo import DemoConsortium, DemoReport, run_demo
from ledger.sdk.disclosures import disclosure_table, fhir_bundle
from ledger.sdk.errors import MetadataError
from ledger.sdk.inprocess import InProcessLedger
from ledger.sdk.privacy import pseudonym
from ledger.tx import decode_transaction
from ledger.txtypes import TxType
from node.cli import main as cli_main
from node.rpc.app_methods import app_method_specs

YEAR_MS = 365 * DAY_MS
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


def codes(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(coding["system"], coding["code"]) for coding in concept["coding"]}


def heights(answer: Any) -> list[int]:
    return [item["height"] for item in answer["disclosures"]]


# ---- the query over a state built by transactions -----------------------------------------


def disclosure_world() -> tuple[World, dict[str, Any]]:
    """clinic_world plus: a consent and a grant to grey; ten days later a break-glass by
    ross with a grant under it, closed and reviewed; another patient's grant to grey; a
    research consent and a grant to house. Returns the world and the txs by name."""
    world = clinic_world()
    lab, alice = world.members["lab"], world.parties["alice"].builder
    txs: dict[str, Any] = {}
    world.ok(world.consent(alice, "c-grey", "alice", "grey"))
    txs["grant grey"] = world.ok(world.grant(lab, "g-grey", "rec-lab", "grey", "c-grey"))
    world.advance(10 * DAY_MS)
    ross = world.parties["ross"].builder
    txs["open"] = world.ok(ross.btg_open(
        btg_id="btg-1", patient="alice", records=["rec-lab", "rec-note"], hours=4,
        justification_hash=digest("unconscious")))
    txs["grant ross"] = world.ok(world.grant(lab, "g-ross", "rec-lab", "ross", "btg-1",
                                             basis=b.GrantBasis.BREAK_GLASS))
    world.ok(ross.btg_close("btg-1"))
    world.ok(world.members["hospital-b"].btg_review(
        "btg-1", outcome=b.ReviewOutcome.APPROPRIATE, review_hash=digest("review")))
    dave = world.register("dave").builder
    world.ok(world.anchor("rec-dave", "dave"))
    world.ok(world.consent(dave, "c-dave", "dave", "grey"))
    txs["dave"] = world.ok(world.grant(lab, "g-dave", "rec-dave", "grey", "c-dave"))
    world.advance(10 * DAY_MS)
    world.ok(alice.consent_grant(
        consent_id="c-research", patient="alice", grantee="house", start_ms=world.now,
        end_ms=world.now + 30 * DAY_MS, consent_hash=digest("research"),
        purpose=b.Purpose.RESEARCH))
    txs["grant house"] = world.ok(world.grant(lab, "g-house", "rec-lab", "house",
                                              "c-research"))
    return world, txs


def test_the_accounting_lists_grants_and_break_glass_in_chain_order() -> None:
    world, txs = disclosure_world()
    answer: Any = world.query("audit_disclosures", patient="alice")
    assert [item["tx_id"] for item in answer["disclosures"]] == [
        txs["grant grey"].tx_id, txs["open"].tx_id, txs["grant ross"].tx_id,
        txs["grant house"].tx_id]
    assert answer["complete"] and answer["next_from_ms"] is None
    assert (answer["to_ms"], answer["as_of_ms"]) == (world.now, world.now)
    assert answer["from_ms"] == world.now - DISCLOSURE_WINDOW_MS_DEFAULT
    grey, opened, ross, house = answer["disclosures"]
    assert grey == {
        "kind": "key_grant", "date_ms": grey["date_ms"],
        "recipient": {"party_id": "grey", "kind": "practitioner",
                      "organisation": "hospital-b", "organisation_kind": "provider"},
        "records": [{"record_id": "rec-lab", "version": 1, "document_type": "lab_result",
                     "confidentiality": "r", "custodian": "lab"}],
        "purpose": "treatment", "basis": "consent", "basis_id": "c-grey",
        "released_by": {"id": "lab", "member": True, "kind": "provider"},
        "tx_id": txs["grant grey"].tx_id, "height": grey["height"], "position": 0,
    }
    block = world.ledger.blocks[grey["height"] - 1]
    assert block.context.timestamp_ms == grey["date_ms"]
    assert block.raws[grey["position"]] == txs["grant grey"].raw
    assert opened["kind"] == "break_glass" and opened["purpose"] == "emergency"
    assert [record["record_id"] for record in opened["records"]] == ["rec-lab", "rec-note"]
    assert {record["custodian"] for record in opened["records"]} == {"lab", "hospital-a"}
    assert opened["released_by"] == {"id": "ross", "member": False, "kind": "practitioner"}
    assert (opened["basis"], opened["basis_id"]) == ("break_glass", "btg-1")
    assert (ross["kind"], ross["purpose"], ross["basis_id"]) == (
        "key_grant", "emergency", "btg-1")
    assert house["purpose"] == "research"
    # The close and the review are in the audit trail, not in the accounting.
    trail: Any = world.query("audit_trail", patient="alice")
    assert [entry["kind"] for entry in trail] == [
        "key_grant", "btg_open", "key_grant", "btg_close", "btg_review", "key_grant"]


def test_another_patients_grants_are_not_in_the_accounting() -> None:
    world, txs = disclosure_world()
    alice: Any = world.query("audit_disclosures", patient="alice")
    assert txs["dave"].tx_id not in {item["tx_id"] for item in alice["disclosures"]}
    dave: Any = world.query("audit_disclosures", patient="dave")
    assert [item["tx_id"] for item in dave["disclosures"]] == [txs["dave"].tx_id]
    assert world.query("audit_disclosures", patient="bob")["disclosures"] == []  # type: ignore[index]


def test_a_time_window_cuts_the_accounting_at_block_times_both_ends_included() -> None:
    world, _ = disclosure_world()
    every: Any = world.query("audit_disclosures", patient="alice")
    dates = [item["date_ms"] for item in every["disclosures"]]
    all_heights = heights(every)

    def window(**params: int) -> list[int]:
        return heights(world.query("audit_disclosures", patient="alice", **params))

    assert window(from_ms=dates[1]) == all_heights[1:]
    assert window(from_ms=dates[1] + 1) == all_heights[2:]
    assert window(to_ms=dates[1]) == all_heights[:2]
    assert window(to_ms=dates[1] - 1) == all_heights[:1]
    assert window(from_ms=dates[2], to_ms=dates[2]) == [all_heights[2]]
    assert window(from_ms=dates[0] - 5 * DAY_MS, to_ms=dates[0] + 5 * DAY_MS) == \
        all_heights[:1]
    assert window(from_ms=0, to_ms=GENESIS_TIME_MS) == []
    # Six years on, the default window has moved past all of them.
    world.advance(6 * YEAR_MS + 3 * DAY_MS)
    world.ledger.commit_block([])
    assert window() == []
    assert window(from_ms=0) == all_heights


def test_limit_bounds_the_answer_and_says_where_to_go_on() -> None:
    world, _ = disclosure_world()
    every: Any = world.query("audit_disclosures", patient="alice")
    first: Any = world.query("audit_disclosures", patient="alice", limit=3)
    assert first["disclosures"] == every["disclosures"][:3]
    assert not first["complete"]
    assert first["next_from_ms"] == every["disclosures"][3]["date_ms"]
    rest: Any = world.query("audit_disclosures", patient="alice",
                            from_ms=first["next_from_ms"], to_ms=first["to_ms"])
    assert first["disclosures"] + rest["disclosures"] == every["disclosures"]
    none: Any = world.query("audit_disclosures", patient="alice", limit=0)
    assert none["disclosures"] == [] and not none["complete"]
    huge: Any = world.query("audit_disclosures", patient="alice", limit=10**9)
    assert huge["disclosures"] == every["disclosures"]


def test_keys_for_the_patient_herself_are_no_disclosures_and_bound_the_reading() -> None:
    world = clinic_world()
    lab, alice = world.members["lab"], world.parties["alice"].builder
    world.ok(world.consent(alice, "c-grey", "alice", "grey"))
    world.ok(world.consent(alice, "c-self", "alice", "alice"))
    first = world.ok(world.grant(lab, "g-grey-1", "rec-lab", "grey", "c-grey"))
    for number in range(10):  # 164.528(a)(1)(ii): disclosures to the patient are left out
        world.ok(world.grant(lab, f"g-self-{number}", "rec-lab", "alice", "c-self"))
    last = world.ok(world.grant(lab, "g-grey-2", "rec-lab", "grey", "c-grey"))
    every: Any = world.query("audit_disclosures", patient="alice")
    assert [item["tx_id"] for item in every["disclosures"]] == [first.tx_id, last.tx_id]
    # limit 1 reads at most 8 trail entries: the answer says to go on, and going on
    # (as the CLI does) reaches the second disclosure.
    seen = []
    from_ms = 0
    for _ in range(5):
        page: Any = world.query("audit_disclosures", patient="alice", limit=1,
                                from_ms=from_ms)
        seen += [item["tx_id"] for item in page["disclosures"] if item["tx_id"] not in seen]
        if page["complete"]:
            break
        from_ms = page["next_from_ms"]
    assert page["complete"] and seen == [first.tx_id, last.tx_id]


@pytest.mark.parametrize(("params", "message"), [
    ({"from_ms": 10, "to_ms": 9}, "from_ms 10 is after to_ms 9"),
    ({"from_ms": GENESIS_TIME_MS * 2}, "is after to_ms"),
    ({"from_ms": -1}, "from_ms must be in"),
    ({"to_ms": -5}, "to_ms must be in"),
    ({"limit": -1}, "limit must be in"),
    ({"to_ms": 2**64}, "to_ms must be in"),
    ({"from_ms": "2026-01-01"}, "from_ms must be int"),
    ({"limit": True}, "limit must be int"),
    ({"to_ms": 1.5}, "to_ms must be int"),
    ({"patient": "has space"}, "patient is not a party id"),
    ({"patient": ""}, "patient is not a party id"),
    ({"patient": "x" * 129}, "patient is not a party id"),
    ({"patient": 7}, "patient must be str"),
    ({"patient": "grey"}, "grey is a practitioner, not a patient"),
    ({"since": 1}, "unknown params"),
])
def test_bad_params_are_refused_with_a_clear_reason(params: dict[str, Any],
                                                    message: str) -> None:
    world = clinic_world()
    with pytest.raises(InvalidQueryParams, match=message):
        run_query(world.ledger.state, "audit_disclosures", {"patient": "alice", **params},
                  now_ms=world.now)


def test_an_unknown_patient_is_not_found() -> None:
    world = clinic_world()
    assert world.query("audit_disclosures", patient="nobody") is None


def test_the_method_is_served_and_described_like_the_other_audit_methods() -> None:
    specs = {spec.name: spec for spec in app_method_specs()}
    spec = specs["audit_disclosures"]
    assert [(param.name, param.required) for param in spec.params] == [
        ("patient", True), ("from_ms", False), ("to_ms", False), ("limit", False)]
    assert "164.528" in spec.description


# ---- the start of the window is found without reading the trail before it -----------------


class CountingState:
    """A StateReader that counts the entries it yields."""

    def __init__(self, state: MemoryState) -> None:
        self.state = state
        self.reads = 0

    def get(self, key: bytes) -> bytes | None:
        return self.state.get(key)

    def iterate(self, prefix: bytes, *, limit: int) -> Iterable[tuple[bytes, bytes]]:
        for item in self.state.iterate(prefix, limit=limit):
            self.reads += 1
            yield item


def synthetic_trail(extra_heights: list[int]) -> tuple[MemoryState, list[int]]:
    """A clinic state where alice has a consent and key grants at ``extra_heights``
    (beyond the world's own), each with its block's time. Returns the state and every
    height of alice's disclosures."""
    world = clinic_world()
    world.ok(world.consent(world.parties["alice"].builder, "c-1", "alice", "grey"))
    state = world.ledger.state.copy()
    base = world.ledger.height + 1
    for height in extra_heights:
        entries_in_block = 2 if height % 3 == 0 else 1  # some blocks hold two grants
        for slot in range(1, entries_in_block + 1):
            entry = AuditEntry(
                kind=AuditKind.KEY_GRANT, patient="alice", actor="lab",
                tx_id=digest(f"tx {height} {slot}"), height=base + height,
                position=slot - 1, time_ms=GENESIS_TIME_MS + (base + height) * 1000,
                record_id="rec-lab", version=1, recipient="grey",
                basis=b.GrantBasis.CONSENT, basis_id="c-1")
            state.apply({layout.audit_key("alice", base + height, slot, 0): entry.encode()})
    every = [base + height for height in extra_heights
             for _ in range(2 if height % 3 == 0 else 1)]
    return state, every


@given(
    st.lists(st.integers(0, 2**40), min_size=1, max_size=30, unique=True).map(sorted),
    st.data(),
)
def test_the_window_start_is_sought_by_height_digits_not_scanned(
    extra_heights: list[int], data: st.DataObject
) -> None:
    state, every = synthetic_trail(extra_heights)
    time_of = {height: GENESIS_TIME_MS + height * 1000 for height in every}
    start = data.draw(st.sampled_from(every))
    from_ms = time_of[start] + data.draw(st.sampled_from([-1, 0, 1]))
    reader = CountingState(state)
    answer = disclosures(reader, "alice", now_ms=time_of[every[-1]], from_ms=from_ms,
                         to_ms=time_of[every[-1]] + 1, limit=QUERY_ITEMS_MAX)
    assert answer is not None
    assert heights(answer) == [height for height in every if time_of[height] >= from_ms]
    # 16 x 16 first entries to find the start at most, then what is answered (a bound
    # that does not grow with the trail before the window).
    assert reader.reads <= 16 * 17 + len(answer["disclosures"])


def test_a_trail_across_hex_digit_boundaries_is_read_in_order() -> None:
    boundaries = [0xE, 0xF, 0x10, 0xFF, 0x100, 0x101, 0xFFF, 0x1000, 0xFFFF, 0x10000,
                  0xABCDEF, 2**32, 2**40]
    state, every = synthetic_trail(boundaries)
    for from_ms in (0, GENESIS_TIME_MS + every[4] * 1000, GENESIS_TIME_MS + every[-1] * 1000):
        answer = disclosures(state, "alice", now_ms=GENESIS_TIME_MS + every[-1] * 1000,
                             from_ms=from_ms)
        assert answer is not None
        assert heights(answer) == [h for h in every if GENESIS_TIME_MS + h * 1000 >= from_ms]
    paged: list[int] = []
    seen: set[bytes] = set()
    from_ms = 0
    for _ in range(len(every)):
        page = disclosures(state, "alice", now_ms=GENESIS_TIME_MS + every[-1] * 1000,
                           from_ms=from_ms, limit=3)
        assert page is not None
        for item in page["disclosures"]:
            if item["tx_id"] not in seen:  # a page repeats what it had of its first block
                seen.add(item["tx_id"])
                paged.append(item["height"])
        if page["complete"]:
            break
        from_ms = page["next_from_ms"]
    assert paged == every


# ---- the FHIR R5 export -------------------------------------------------------------------


def test_the_export_is_a_valid_fhir_r5_bundle_with_the_dicom_and_purpose_codings() -> None:
    from fhir.resources import __fhir_version__
    from fhir.resources.auditevent import AuditEvent
    from fhir.resources.bundle import Bundle

    assert __fhir_version__.startswith("5.")
    world, txs = disclosure_world()
    answer: Any = world.query("audit_disclosures", patient="alice")
    grant_ids = {txs["grant grey"].tx_id.hex(): "g-grey"}
    bundle = fhir_bundle(answer, ledger_id="medledger-app-test", grant_ids=grant_ids)
    parsed = Bundle.model_validate(bundle)  # the independent check: the R5 model again
    assert parsed.type == "collection" and len(bundle["entry"]) == 4
    events = [entry["resource"] for entry in bundle["entry"]]
    for event in events:
        AuditEvent.model_validate(event)
        assert event["patient"]["identifier"]["value"] == "alice"
    grey, opened, ross, house = events
    assert codes(grey["category"][0]) == {(DCM, "110106")}
    assert codes(grey["code"]) == {
        ("http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle", "disclose")}
    assert codes(grey["authorization"][0]) == {(ACT_REASON, "TREAT")}
    assert grey["action"] == "R"
    assert grey["recorded"].startswith("2026-01-01T")
    assert grey["agent"][0]["who"]["identifier"]["value"] == "grey"
    assert grey["agent"][1]["who"]["identifier"]["value"] == "lab"
    what = [entity["what"]["identifier"]["value"] for entity in grey["entity"]]
    assert what == ["rec-lab", "c-grey", "0x" + txs["grant grey"].tx_id.hex()]
    details = {detail["type"]["text"]: detail for detail in grey["entity"][-1]["detail"]}
    assert details["key grant"]["valueString"] == "g-grey"
    # The break-glass: a security alert, emergency override started, emergency treatment.
    assert codes(opened["category"][0]) == {(DCM, "110113")}
    assert codes(opened["code"]) == {(DCM, "110127")}
    assert codes(opened["authorization"][0]) == {(ACT_REASON, "ETREAT")}
    assert opened["action"] == "E" and opened["agent"][0]["requestor"] is True
    assert {agent["who"]["identifier"]["value"] for agent in opened["agent"][1:]} == {
        "hospital-a", "lab"}
    assert codes(ross["authorization"][0]) == {(ACT_REASON, "ETREAT")}
    assert codes(house["authorization"][0]) == {(ACT_REASON, "HRESCH")}
    assert opened["id"] == txs["open"].tx_id.hex()


def test_the_export_reads_an_answer_as_json_rpc_sends_it() -> None:
    world, _ = disclosure_world()
    answer: Any = world.query("audit_disclosures", patient="alice")
    over_rpc = json.loads(json.dumps(answer, default=lambda value: "0x" + value.hex()))
    assert fhir_bundle(over_rpc, ledger_id="x") == fhir_bundle(answer, ledger_id="x")
    assert disclosure_table(over_rpc) == disclosure_table(answer)


def test_an_export_that_is_not_valid_fhir_is_refused() -> None:
    world, _ = disclosure_world()
    answer: Any = world.query("audit_disclosures", patient="alice")
    answer["disclosures"][0]["position"] = "first"
    with pytest.raises(MetadataError, match="invalid AuditEvent"):
        fhir_bundle(answer, ledger_id="x")


# ---- the demo story, end to end -----------------------------------------------------------

RUN_TAG = "test"


@pytest.fixture(scope="module")
def demo_run() -> tuple[InProcessLedger, DemoConsortium, DemoReport]:
    consortium = DemoConsortium()
    ledger = InProcessLedger(consortium.genesis())
    report = run_demo(ledger, lambda line: None, consortium=consortium, run_tag=RUN_TAG)
    assert report.all_matched, report.failures
    return ledger, consortium, report


def demo_id(consortium: DemoConsortium, prefix: str, name: str) -> str:
    return pseudonym(consortium.shared_key, prefix, f"{RUN_TAG}/{name}")


def alices_disclosures_from_the_blocks(ledger: InProcessLedger, alice: str) -> list[bytes]:
    """Independently of the query: the committed txs that disclosed Alice's records (a
    key grant of one of her records to someone else, a break-glass on her), in order."""
    records: set[str] = set()
    found = []
    for block in ledger.blocks:
        for raw, code in zip(block.raws, block.codes, strict=True):
            tx = decode_transaction(raw)
            if code != ResultCode.OK:
                continue
            if tx.type is TxType.ANCHOR_RECORD and tx.body.patient == alice:  # type: ignore[attr-defined]
                records.add(tx.body.record_id)  # type: ignore[attr-defined]
            grant = tx.type is TxType.KEY_GRANT and tx.body.record_id in records  # type: ignore[attr-defined]
            if grant and tx.body.recipient != alice:  # type: ignore[attr-defined]
                found.append(tx.tx_id)
            if tx.type is TxType.BTG_OPEN and tx.body.patient == alice:  # type: ignore[attr-defined]
                found.append(tx.tx_id)
    return found


def test_the_demo_accounting_for_alice_lists_every_disclosure_the_demo_made(
    demo_run: tuple[InProcessLedger, DemoConsortium, DemoReport],
) -> None:
    ledger, consortium, report = demo_run
    alice = demo_id(consortium, "pat", "Alice Example")
    # The story's own steps: one grant under Alice's consent, one break-glass, one grant
    # under it; the refused grants (above the consent's cap, after the revocation, to
    # another practitioner, of the shredded record) disclosed nothing.
    released = [step for step in report.steps
                if "releases the key" in step.name and step.actual == "OK"]
    opened = [step for step in report.steps if "breaks the glass" in step.name
              and step.actual == "OK"]
    assert (len(released), len(opened)) == (2, 1)
    from_blocks = alices_disclosures_from_the_blocks(ledger, alice)
    assert len(from_blocks) == len(released) + len(opened) == 3
    answer: Any = ledger.query("audit_disclosures", {"patient": alice})
    assert [item["tx_id"] for item in answer["disclosures"]] == from_blocks
    assert [item["kind"] for item in answer["disclosures"]] == [
        "key_grant", "break_glass", "key_grant"]
    assert [item["recipient"]["party_id"] for item in answer["disclosures"]] == [
        demo_id(consortium, "prac", "Dr Grey (attending)"),
        demo_id(consortium, "prac", "Dr Ross (emergency)"),
        demo_id(consortium, "prac", "Dr Ross (emergency)")]
    bundle = fhir_bundle(answer, ledger_id=ledger.chain_id)
    from fhir.resources.bundle import Bundle

    Bundle.model_validate(bundle)
    assert len(bundle["entry"]) == 3
    override = bundle["entry"][1]["resource"]
    assert codes(override["code"]) == {(DCM, "110127")}
    assert codes(override["authorization"][0]) == {(ACT_REASON, "ETREAT")}


class DemoNode(FakeNode):
    """The demo's blocks behind the real RPC server: chain_getTx finds their txs and the
    application queries run over the demo's state."""

    def __init__(self, ledger: InProcessLedger) -> None:
        super().__init__(chain_id=ledger.chain_id)
        self.ledger = ledger
        for block in ledger.blocks:
            self.commit(list(block.raws), list(block.codes))

    def app_query(self, method: str, params: dict[str, Any]) -> Any:
        given = {name: value for name, value in params.items() if value is not None}
        return run_query(self.ledger.state, method, given, now_ms=self.ledger.time_ms)


async def cli(*arguments: str) -> int:
    return await trio.to_thread.run_sync(cli_main, list(arguments))


async def test_the_cli_writes_the_demo_accounting_as_fhir_and_as_a_table(
    demo_run: tuple[InProcessLedger, DemoConsortium, DemoReport], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fhir.resources.bundle import Bundle

    ledger, consortium, _ = demo_run
    alice = demo_id(consortium, "pat", "Alice Example")
    node = DemoNode(ledger)
    node.app_handlers = {}
    from node.rpc.app_methods import app_method_specs as specs

    async with running_server(node) as running:
        running.server.register_app_methods(specs())
        output = tmp_path / "alice.json"
        assert await cli("disclosures", "--patient", alice, "--rpc", running.url,
                         "--format", "fhir", "-o", str(output)) == 0
        bundle = json.loads(output.read_text())
        Bundle.model_validate(bundle)
        events = [entry["resource"] for entry in bundle["entry"]]
        assert len(events) == 3
        grant_details = [
            {detail["type"]["text"]: detail.get("valueString")
             for detail in event["entity"][-1]["detail"]}
            for event in events]
        assert [details.get("key grant") for details in grant_details] == [
            demo_id(consortium, "grant", "lab/Grey/1"), None,
            demo_id(consortium, "grant", "lab/Ross/1")]
        capsys.readouterr()
        assert await cli("disclosures", "--patient", alice, "--rpc", running.url) == 0
        table = capsys.readouterr().out
        assert f"Accounting of disclosures for patient {alice}" in table
        assert "emergency treatment" in table and "treatment" in table
        assert "3 disclosures" in table
        assert demo_id(consortium, "grant", "lab/Ross/1") in table
        # An existing file is kept without --force; a window with nothing in it.
        assert await cli("disclosures", "--patient", alice, "--rpc", running.url,
                         "--format", "fhir", "-o", str(output)) == 2
        assert await cli("disclosures", "--patient", alice, "--rpc", running.url,
                         "--to", "2000-01-01") == 0
        assert "0 disclosures" in capsys.readouterr().out
        # Bad inputs: one line, exit 2.
        for arguments, expected in [
            (("--from", "2026-02-30"), "--from '2026-02-30' is not an ISO 8601 date"),
            (("--from", "2026-03-02", "--to", "2026-03-01"), "--from is after --to"),
            (("--from", "1969-12-31"), "before 1970"),
        ]:
            assert await cli("disclosures", "--patient", alice, "--rpc", running.url,
                             *arguments) == 2
            assert expected in capsys.readouterr().err
        assert await cli("disclosures", "--patient", "nobody", "--rpc", running.url) == 2
        assert "is not a party on this ledger" in capsys.readouterr().err
        assert await cli("disclosures", "--patient", "has space", "--rpc",
                         running.url) == 2
        assert "the node refused the request" in capsys.readouterr().err
        unused_port = running.port
    assert await cli("disclosures", "--patient", alice, "--rpc",
                     f"http://127.0.0.1:{unused_port}/") == 1
    assert "no node answers at" in capsys.readouterr().err
    assert await cli("disclosures", "--patient", alice, "--rpc", "127.0.0.1:8545") == 2
    assert "is not a node's RPC URL" in capsys.readouterr().err
