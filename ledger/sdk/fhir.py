"""FHIR validation of record and consent metadata, on the client only.

``fhir.resources`` (pydantic models of FHIR R5) is heavy to import (~1 s) and its output
may change between versions, so it never runs inside consensus: clients validate the
DocumentReference / Consent they keep off the ledger, and the ledger holds only a keyed
hash of its canonical JSON. Imported lazily, on first use.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from ledger.sdk.errors import MetadataError
from ledger.sdk.privacy import keyed_hash

# resourceType -> (module, class) in fhir.resources
_RESOURCES = {
    "DocumentReference": ("fhir.resources.documentreference", "DocumentReference"),
    "Consent": ("fhir.resources.consent", "Consent"),
}
# FHIR R5 DocumentReference.status and Consent.status value sets (the models accept any
# code string, so the binding is checked here).
_STATUS_CODES = {
    "DocumentReference": ("current", "superseded", "entered-in-error"),
    "Consent": ("draft", "active", "inactive", "not-done", "entered-in-error", "unknown"),
}


def validate_resource(resource: dict[str, Any], resource_type: str) -> bytes:
    """Validate ``resource`` as a FHIR R5 ``resource_type`` and return its canonical JSON
    (sorted keys, no whitespace, no nulls). MetadataError says what is wrong."""
    if resource_type not in _RESOURCES:
        raise MetadataError(f"unsupported resource type {resource_type!r}")
    if resource.get("resourceType") != resource_type:
        raise MetadataError(f"expected a {resource_type}, got {resource.get('resourceType')!r}")
    module_name, class_name = _RESOURCES[resource_type]
    model = getattr(importlib.import_module(module_name), class_name)
    try:
        parsed = model.model_validate(resource)
    except Exception as error:  # pydantic.ValidationError and the models' own checks
        raise MetadataError(f"invalid {resource_type}: {error}") from None
    status = resource.get("status")
    if status not in _STATUS_CODES[resource_type]:
        raise MetadataError(f"{resource_type}.status {status!r} is not a valid code")
    if resource_type == "DocumentReference" and not resource.get("content"):
        raise MetadataError("DocumentReference.content needs at least one attachment")
    document = json.loads(parsed.model_dump_json(exclude_none=True))
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def metadata_hash(key: bytes, resource: dict[str, Any], resource_type: str) -> bytes:
    """The ledger's metadata / consent hash: a keyed hash of the validated canonical JSON
    (metadata may be guessable: never hashed without a key)."""
    return keyed_hash(key, "fhir/" + resource_type, validate_resource(resource, resource_type))
