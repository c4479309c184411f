"""A patient's accounting of disclosures (HIPAA 45 CFR 164.528), on the client: the
``audit_disclosures`` answer as a FHIR R5 Bundle of AuditEvents, or as a table a patient
can read.

The ledger answers with pseudonymous ids, block times and tx ids; this module only
rearranges that answer. FHIR validation (``fhir.resources``, imported lazily) runs here,
on the client, never in consensus. It reads no clock: the Bundle's timestamp is the
answer's ``as_of_ms`` (the node's last block time), so one answer always gives one
document.

A query answer in process holds bytes; over JSON-RPC it holds 0x-hex: both are read.

Codings (DICOM PS3.16 "DCM" event ids, as the FHIR R5 AuditEvent examples use them):

- A key grant is the release of a record's data key to another party, so that party can
  read the record: a disclosure. DICOM has no "disclosure" event; its Export event
  (DCM 110106, "data has been exported out of the system's control", action R) is what
  the IHE audit profiles use for information leaving the custodian, so it is the
  category, and the ISO 21089 record lifecycle event "disclose" says precisely what
  happened as the code.
- A break-glass open is an emergency override: category DCM 110113 "Security Alert",
  code DCM 110127 "Emergency Override Started", action E, purpose ETREAT, as in the
  specification's own break-glass example.
- The purpose (AuditEvent.authorization in R5) is the consent's purpose as a
  v3-ActReason code (TREAT, HPAYMT, HOPERAT, HRESCH, ETREAT); ETREAT for a break-glass
  and every grant under one.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.sdk.client import as_bytes
from ledger.sdk.errors import MetadataError

DCM = "http://dicom.nema.org/resources/ontology/DCM"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
OUTCOME = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
# Identifier systems of the ledger's pseudonymous ids (no FHIR server holds them).
PARTY_SYSTEM = "urn:medledger:party"
ORGANISATION_SYSTEM = "urn:medledger:org"
RECORD_SYSTEM = "urn:medledger:record"
CONSENT_SYSTEM = "urn:medledger:consent"
TX_SYSTEM = "urn:medledger:tx"
LEDGER_SYSTEM = "urn:medledger:chain"
# fullUrl of each entry: a UUID derived from the tx id (one disclosure per tx).
_ENTRY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medledger:disclosure")

EXPORT = {"system": DCM, "code": "110106", "display": "Export"}
DISCLOSE = {"system": LIFECYCLE, "code": "disclose", "display": "Disclose Record Lifecycle Event"}
SECURITY_ALERT = {"system": DCM, "code": "110113", "display": "Security Alert"}
EMERGENCY_OVERRIDE_STARTED = {"system": DCM, "code": "110127",
                              "display": "Emergency Override Started"}
DESTINATION_ROLE = {"system": DCM, "code": "110152", "display": "Destination Role ID"}
SOURCE_ROLE = {"system": DCM, "code": "110153", "display": "Source Role ID"}
SUCCESS = {"system": OUTCOME, "code": "0", "display": "Success"}
APPLICATION_SERVER = {"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}
REPORT_ROLE = {"system": OBJECT_ROLE, "code": "3", "display": "Report"}
# The ledger's consent purposes (ledger.bodies.Purpose, lower-case) as v3-ActReason.
PURPOSE_CODES = {
    "treatment": ("TREAT", "treatment"),
    "payment": ("HPAYMT", "healthcare payment"),
    "operations": ("HOPERAT", "healthcare operations"),
    "research": ("HRESCH", "healthcare research"),
    "emergency": ("ETREAT", "Emergency Treatment"),
}
PURPOSE_TEXT = {
    "treatment": "treatment",
    "payment": "payment",
    "operations": "healthcare operations",
    "research": "research",
    "emergency": "emergency treatment",
}
_REFERENCE_TYPES = {"patient": "Patient", "practitioner": "Practitioner",
                    "related_person": "RelatedPerson"}
_TX_ID_SHOWN_HEX_DIGITS = 16  # in the table; the FHIR export carries the whole id


def instant(time_ms: int) -> str:
    """A block time as a FHIR instant (UTC, milliseconds)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=time_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ms % 1000:03d}Z"


def tx_hex(disclosure: Mapping[str, Any]) -> str:
    return as_bytes(disclosure["tx_id"]).hex()


# ---- FHIR ---------------------------------------------------------------------------------


def fhir_bundle(
    answer: Mapping[str, Any],
    *,
    ledger_id: str,
    grant_ids: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The accounting as a validated FHIR R5 Bundle (type collection) of AuditEvents, one
    per disclosure, in chain order. ``ledger_id`` (the chain id) names the observer;
    ``grant_ids`` maps a tx id (hex, no 0x) to its key grant id where the client knows
    it. MetadataError if a resource does not validate."""
    grant_ids = grant_ids or {}
    entries = []
    for disclosure in answer["disclosures"]:
        event = _validated(
            audit_event(answer["patient"], disclosure, ledger_id=ledger_id,
                        grant_id=grant_ids.get(tx_hex(disclosure))),
            "AuditEvent",
        )
        entries.append({
            "fullUrl": f"urn:uuid:{uuid.uuid5(_ENTRY_NAMESPACE, tx_hex(disclosure))}",
            "resource": event,
        })
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": instant(answer["as_of_ms"]),
        "entry": entries,
    }
    return _validated(bundle, "Bundle")


def audit_event(
    patient: str, disclosure: Mapping[str, Any], *, ledger_id: str, grant_id: str | None
) -> dict[str, Any]:
    """One disclosure as an (unvalidated) FHIR R5 AuditEvent."""
    break_glass = disclosure["kind"] == "break_glass"
    purpose_code, purpose_display = PURPOSE_CODES[disclosure["purpose"]]
    if break_glass:
        category, code, action = SECURITY_ALERT, EMERGENCY_OVERRIDE_STARTED, "E"
    else:
        category, code, action = EXPORT, DISCLOSE, "R"
    emergency = disclosure["basis"] == "break_glass"
    return {
        "resourceType": "AuditEvent",
        "id": tx_hex(disclosure),
        "category": [{"coding": [category]}],
        "code": {"coding": [code]},
        "action": action,
        # An override is significant and is reviewed later; a grant under consent is
        # the normal course.
        "severity": "notice" if emergency else "informational",
        "recorded": instant(disclosure["date_ms"]),
        "outcome": {"code": SUCCESS},
        "authorization": [{"coding": [{"system": ACT_REASON, "code": purpose_code,
                                       "display": purpose_display}]}],
        "patient": _party_reference(patient, "patient"),
        "agent": _agents(disclosure, requestor=break_glass),
        "source": {
            "observer": {"identifier": {"system": LEDGER_SYSTEM, "value": ledger_id},
                         "display": f"medledger ledger {ledger_id}"},
            "type": [{"coding": [APPLICATION_SERVER]}],
        },
        "entity": _entities(disclosure, grant_id),
    }


def _agents(disclosure: Mapping[str, Any], *, requestor: bool) -> list[dict[str, Any]]:
    """The recipient (who received the key, or broke the glass) and the releaser: the
    party that signed the grant, or for a break-glass the records' custodians."""
    recipient = disclosure["recipient"]
    agents = [{
        "type": {"coding": [DESTINATION_ROLE]},
        "who": _party_reference(recipient["party_id"], recipient["kind"],
                                organisation=recipient["organisation"]),
        "requestor": requestor,
    }]
    if disclosure["kind"] == "break_glass":
        custodians = sorted({record["custodian"] for record in disclosure["records"]})
        sources = [_organisation_reference(custodian) for custodian in custodians]
    else:
        releaser = disclosure["released_by"]
        sources = [_organisation_reference(releaser["id"]) if releaser["member"]
                   else _party_reference(releaser["id"], releaser["kind"])]
    agents += [{"type": {"coding": [SOURCE_ROLE]}, "who": source, "requestor": False}
               for source in sources]
    return agents


def _organisation_reference(org_id: str) -> dict[str, Any]:
    return {"type": "Organization",
            "identifier": {"system": ORGANISATION_SYSTEM, "value": org_id},
            "display": org_id}


def _party_reference(
    party_id: str, kind: str, *, organisation: str | None = None
) -> dict[str, Any]:
    display = party_id if organisation is None else f"{party_id} ({organisation})"
    return {"type": _REFERENCE_TYPES[kind],
            "identifier": {"system": PARTY_SYSTEM, "value": party_id},
            "display": display}


def _entities(disclosure: Mapping[str, Any], grant_id: str | None) -> list[dict[str, Any]]:
    """What was disclosed (each record, with its confidentiality), the basis, and the
    ledger tx that records it (locating it for a Merkle inclusion proof)."""
    entities: list[dict[str, Any]] = []
    for record in disclosure["records"]:
        version = "" if record["version"] is None else f" version {record['version']}"
        entities.append({
            "what": {"type": "DocumentReference",
                     "identifier": {"system": RECORD_SYSTEM, "value": record["record_id"]},
                     "display": f"{_words(record['document_type'])}{version}"},
            "role": {"coding": [REPORT_ROLE]},
            "securityLabel": [{"coding": [{"system": CONFIDENTIALITY,
                                           "code": record["confidentiality"].upper()}]}],
        })
    if disclosure["basis"] == "consent":
        entities.append({"what": {"type": "Consent", "identifier": {
            "system": CONSENT_SYSTEM, "value": disclosure["basis_id"]}}})
    details = [
        _detail("height", valueInteger=disclosure["height"]),
        _detail("basis", valueString=f"{disclosure['basis']} {disclosure['basis_id']}"),
    ]
    if disclosure["position"] is not None:
        details.append(_detail("position", valueInteger=disclosure["position"]))
    if grant_id is not None:
        details.append(_detail("key grant", valueString=grant_id))
    entities.append({
        "what": {"identifier": {"system": TX_SYSTEM, "value": "0x" + tx_hex(disclosure)},
                 "display": f"ledger tx at height {disclosure['height']}"},
        "detail": details,
    })
    return entities


def _detail(name: str, **value: Any) -> dict[str, Any]:
    return {"type": {"text": name}, **value}


def _validated(resource: dict[str, Any], resource_type: str) -> dict[str, Any]:
    """Validate with fhir.resources' R5 model; the resource as the model dumps it."""
    module = importlib.import_module(f"fhir.resources.{resource_type.lower()}")
    model = getattr(module, resource_type)
    try:
        parsed = model.model_validate(resource)
    except Exception as error:  # pydantic.ValidationError and the models' own checks
        raise MetadataError(f"invalid {resource_type}: {error}") from None
    dumped: dict[str, Any] = json.loads(parsed.model_dump_json(exclude_none=True))
    return dumped


# ---- a table for people -------------------------------------------------------------------


def disclosure_table(
    answer: Mapping[str, Any], *, grant_ids: Mapping[str, str] | None = None
) -> str:
    """The accounting as text a patient can read: one row per disclosure (date in UTC,
    recipient, what, purpose, basis, ledger tx), a heading with the period, and a
    closing line that says whether the list is complete."""
    grant_ids = grant_ids or {}
    header = ("date (UTC)", "recipient", "what was disclosed", "purpose", "basis",
              "ledger tx")
    rows = [_row(disclosure, grant_ids.get(tx_hex(disclosure)))
            for disclosure in answer["disclosures"]]
    lines = [
        f"Accounting of disclosures for patient {answer['patient']}",
        f"period: {_date(answer['from_ms'])} to {_date(answer['to_ms'])} (UTC, block times)",
        "",
        *_aligned([header, *rows]),
        "",
    ]
    count = len(rows)
    lines.append(f"{count} disclosure{'' if count == 1 else 's'}" + (
        "" if answer["complete"] else
        f"; more from {_date(answer['next_from_ms'])} (ask again with a later --from)"))
    return "\n".join(lines)


def _row(disclosure: Mapping[str, Any], grant_id: str | None) -> tuple[str, ...]:
    recipient = disclosure["recipient"]
    who = f"{recipient['party_id']} ({_words(recipient['kind'])}"
    who += f", {recipient['organisation']})" if recipient["organisation"] else ")"
    what = "; ".join(_record_text(record) for record in disclosure["records"])
    if disclosure["kind"] == "break_glass":
        what = "emergency access opened to " + what
    elif grant_id is not None:
        what += f" [key grant {grant_id}]"
    basis = ("consent " if disclosure["basis"] == "consent" else "break-glass ") + \
        disclosure["basis_id"]
    tx = f"0x{tx_hex(disclosure)[:_TX_ID_SHOWN_HEX_DIGITS]}... at height " \
         f"{disclosure['height']}"
    return (_date(disclosure["date_ms"]), who, what, PURPOSE_TEXT[disclosure["purpose"]],
            basis, tx)


def _record_text(record: Mapping[str, Any]) -> str:
    version = "" if record["version"] is None else f" v{record['version']}"
    return f"{_words(record['document_type'])} {record['record_id']}{version}"


def _aligned(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in rows]


def _date(time_ms: int) -> str:
    return instant(time_ms)[:19].replace("T", " ")


def _words(name: str) -> str:
    return name.replace("_", " ")
