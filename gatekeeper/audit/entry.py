"""Audit entries: the exact RFC 8785 (JCS) bytes of one decision.

    >>> from gatekeeper.audit.entry import canonical
    >>> canonical({"b": 1, "a": [True, None]})
    b'{"a":[true,null],"b":1}'

An entry names who asked, for whom, which fields (names only, never record
values), on what basis, and what was decided by which rules and policy
revision; it also keeps the policy input the decision was computed from, so
any past decision can be replayed. Entries are stored and served as these
bytes, never re-serialized. No floats; at most 64 KiB (the C2SP tiles'
uint16 length prefix).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import rfc8785

from gatekeeper.decision import Decision
from gatekeeper.errors import GatekeeperError
from gatekeeper.request import AccessRequest

__all__ = [
    "MAX_ENTRY_BYTES",
    "SCHEMA",
    "AuditError",
    "canonical",
    "decision_entry",
    "entry_moment",
    "invalid_request_entry",
    "parse_canonical",
    "policy_input_of",
    "timestamp",
]

SCHEMA = "gatekeeper.audit/v1"
MAX_ENTRY_BYTES = 65535


class AuditError(GatekeeperError):
    """The audit log cannot be written or read; a decision that needs it is a deny."""

    reason = "audit_unavailable"


def canonical(value: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON bytes of ``value`` (floats are refused).

    For the values audit entries hold (objects with BMP-only keys, strings,
    integers within ±2^53, booleans, null) RFC 8785 output is exactly what
    ``json.dumps`` writes with sorted keys, no spaces and no ASCII escaping:
    the same escapes (``\\"``, ``\\\\``, ``\\b\\f\\n\\r\\t``, other controls as
    lowercase ``\\u00xx``), and for BMP-only keys UTF-16 order is code-point
    order. The ``json.dumps`` text is returned only once reading it back proves
    the value is of that kind (and equal to it); else a walk decides, and
    anything else (a supplementary-plane key, a huge integer, a non-string
    key, another type) goes to the ``rfc8785`` package, which is the reference
    (``tests/test_merkle_vectors.py`` checks the two agree).
    """
    try:
        data = json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
        ).encode("utf-8")
        # Proof by reading it back (C speed, about half the cost of walking
        # the value in Python): JSON types only, no float (refused here), no
        # integer past 2^53, and equal to the value (no key was coerced to a
        # string, no tuple stood for a list); BMP-only text (key order).
        if (data.isascii() or _WIDE.search(data) is None) and json.loads(
            data, parse_float=_no_float, parse_constant=_no_constant, parse_int=_jcs_int
        ) == value:
            return data
    except (TypeError, ValueError, UnicodeEncodeError, _NotJcsInteger):
        pass  # rfc8785 decides (or refuses) below
    if _plain(value):
        try:
            return json.dumps(
                value, ensure_ascii=False, separators=(",", ":"), sort_keys=True
            ).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: rfc8785 refuses it with its own error
    return bytes(rfc8785.dumps(value))


_JCS_INT_MAX = 2**53 - 1
#: UTF-8 lead bytes of characters past U+CFFF (and invalid bytes): where
#: UTF-16 key order may differ from code-point order; rfc8785 decides.
_WIDE = re.compile(rb"[\xed-\xff]")


class _NotJcsInteger(Exception):
    pass


def _jcs_int(text: str) -> int:
    number = int(text)
    if not -_JCS_INT_MAX <= number <= _JCS_INT_MAX:
        raise _NotJcsInteger
    return number


def _no_float(text: str) -> Any:
    raise AuditError(f"audit entries hold no floats ({text[:20]})", reason="audit_entry_invalid")


def _no_constant(text: str) -> Any:
    raise AuditError(f"not JSON: {text}", reason="audit_entry_invalid")


def parse_canonical(data: bytes) -> tuple[Any, bool]:
    """Parse stored entry bytes: (the value, whether ``data`` is its RFC 8785 form).

    ``verify`` checks every entry this way. JSON text parsed by ``json``
    has only string keys and JSON types, so what :func:`canonical` has to
    walk for is settled while parsing and on the bytes: a float or NaN is
    refused, an integer past ±(2^53 - 1) makes the text not canonical, and
    text with characters past U+CFFF goes to ``rfc8785``; the rest is
    compared with the ``json.dumps`` form. Raises ValueError (or AuditError)
    when ``data`` is not JSON.
    """
    try:
        value = json.loads(
            data, parse_float=_no_float, parse_constant=_no_constant, parse_int=_jcs_int
        )
    except _NotJcsInteger:
        return json.loads(data, parse_float=_no_float, parse_constant=_no_constant), False
    if data.isascii() or _WIDE.search(data) is None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return value, text.encode("utf-8") == data
    try:
        return value, bytes(rfc8785.dumps(value)) == data
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        return value, False


def _plain(value: Any) -> bool:
    """True when ``value`` takes the json.dumps fast path; AuditError on a float."""
    if isinstance(value, str) or value is None or value is True or value is False:
        return True
    if isinstance(value, float):
        raise AuditError("audit entries hold no floats", reason="audit_entry_invalid")
    if type(value) is int:
        return -_JCS_INT_MAX <= value <= _JCS_INT_MAX
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or (key and max(key) >= "\ud800"):
                _refuse_floats(item)
                return False
            if not _plain(item):
                return False
        return True
    if type(value) is list or type(value) is tuple:
        return all(_plain(item) for item in value)
    _refuse_floats(value)
    return False


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise AuditError("audit entries hold no floats", reason="audit_entry_invalid")
    if isinstance(value, Mapping):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)


def timestamp(moment: datetime | None = None) -> str:
    """UTC with fixed microseconds: ``2026-04-02T17:00:00.000000Z``."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_moment(stamp: object) -> datetime | None:
    """An entry's ``timestamp`` as an aware datetime (UTC when it names no
    zone); None when it is missing or not a timestamp."""
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _summaries(request: AccessRequest) -> dict[str, Any]:
    basis = request.legal_basis
    consent = request.consent
    return {
        "as_of": request.as_of.isoformat(),
        "channel": request.channel,
        "requester": {
            "id": request.requester.id,
            "kind": request.requester.kind,
            "agency": request.requester.agency,
            "role": request.requester.role,
            "identity_verified": request.requester.identity_verified,
        },
        "on_behalf_of": request.on_behalf_of,
        "task_force": list(request.task_force),
        "student": None if request.student is None else {"id": request.student.id},
        "bulk": None
        if request.bulk is None
        else {"scope": request.bulk.scope, "grades": list(request.bulk.grades)},
        "fields": list(dict.fromkeys(request.fields)),
        "purpose": request.purpose,
        "purpose_text": request.purpose_text,
        "legal_basis": None
        if basis is None
        else {
            "type": basis.type,
            "jurisdiction": basis.jurisdiction,
            "issuing_court": basis.issuing_court,
            "signed_by": basis.signed_by,
            "case_no": basis.case_no,
            "issued": _day(basis.issued),
            "execute_by": _day(basis.execute_by),
            "return_date": _day(basis.return_date),
            "named_students": len(basis.named_students),
            "nondisclosure_order": basis.nondisclosure_order,
            "directs_lea": basis.directs_lea,
        },
        "legal_review": request.legal_review,
        "consent": None
        if consent is None
        else {
            "signed_by_role": consent.signed_by_role,
            "signed": consent.signed,
            "dated": _day(consent.dated),
            "records": list(consent.records),
            "purpose": consent.purpose,
            "recipient": consent.recipient,
            "received_via": consent.received_via,
            "verified_with_rightholder": consent.verified_with_rightholder,
            "revoked_on": _day(consent.revoked_on),
        },
        "emergency": None
        if request.emergency is None
        else {"district_determination": request.emergency.district_determination},
        "vendor": None
        if request.vendor is None
        else {"id": request.vendor.id, "contract_ref": request.vendor.contract_ref},
    }


def _replayable(policy_input: Mapping[str, Any]) -> dict[str, Any]:
    """The policy input as the entry keeps it.

    JCS (I-JSON) admits integers up to 2**53 only, so ``as_of_ns`` is kept as
    a decimal string; :func:`policy_input_of` turns it back.
    """
    value = dict(policy_input)
    if isinstance(value.get("as_of_ns"), int):
        value["as_of_ns"] = str(value["as_of_ns"])
    return value


def policy_input_of(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The policy input a decision entry recorded, ready to evaluate again."""
    kept = entry.get("policy_input")
    if not isinstance(kept, Mapping):
        return None
    value = dict(kept)
    if isinstance(value.get("as_of_ns"), str):
        value["as_of_ns"] = int(value["as_of_ns"])
    return value


def _outcome(decision: Decision) -> dict[str, Any]:
    return {
        "decision_id": decision.decision_id,
        "request_id": decision.request_id,
        "decision": str(decision.decision),
        "rules": list(decision.rules),
        "obligations": list(decision.obligations),
        "allowed_fields": list(decision.allowed_fields),
        "denied_fields": list(decision.denied_fields),
        "reason": decision.reason,
        "immigration_context": decision.immigration_context,
        "policy_revision": decision.policy_revision,
        "engine": decision.engine,
    }


def decision_entry(
    decision: Decision,
    request: AccessRequest,
    policy_input: Mapping[str, Any] | None,
    *,
    when: datetime | None = None,
    held_for: Sequence[str] = (),
    as_of_claimed: datetime | None = None,
) -> bytes:
    """The entry for a decision on a parsed request (with its policy input for replay).

    ``held_for``: the blocking obligations that hold a permit's release until
    they are acknowledged (the pack's list at decision time): the record of
    disclosures counts such a permit only from its ``release`` entry.
    ``as_of_claimed``: the request's own ``as_of`` when it was too far from the
    clock and the request was decided as of now (``as_of`` is then now)."""
    value: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "decision",
        "timestamp": timestamp(when),
        **_summaries(request),
        **_outcome(decision),
        "held_for": list(held_for),
        **({} if as_of_claimed is None else {"as_of_claimed": as_of_claimed.isoformat()}),
        "policy_input": None if policy_input is None else _replayable(policy_input),
    }
    data = canonical(value)
    if len(data) > MAX_ENTRY_BYTES:
        # Keep the decision and the summaries; the replay input goes.
        value["policy_input"] = None
        value["truncated"] = True
        data = canonical(value)
    if len(data) > MAX_ENTRY_BYTES:
        value["purpose_text"] = None
        data = canonical(value)
    if len(data) > MAX_ENTRY_BYTES:
        # Still too large (hundreds of long field names, task-force members):
        # long lists become their length and digest, so the decision, its
        # rules and obligations are always logged and always counted.
        for key in ("fields", "denied_fields", "allowed_fields", "task_force"):
            items = value.get(key) or []
            value[key] = {
                "count": len(items),
                "sha256": hashlib.sha256(canonical({"items": list(items)})).hexdigest(),
            }
        if isinstance(value.get("consent"), dict):
            value["consent"]["records"] = len(value["consent"].get("records") or [])
        data = canonical(value)
    if len(data) > MAX_ENTRY_BYTES:
        raise AuditError("audit entry larger than 64 KiB", reason="audit_entry_invalid")
    return data


def invalid_request_entry(
    decision: Decision,
    *,
    path: str,
    message: str,
    raw: bytes | None,
    when: datetime | None = None,
) -> bytes:
    """The deny entry for a request that did not parse or validate.

    Only the error and a digest of the raw request are kept: an invalid
    request may hold anything, so none of its content enters the log.
    """
    value: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "invalid_request",
        "timestamp": timestamp(when),
        **_outcome(decision),
        "error": {"path": path[:512], "message": message[:1024]},
        "request_sha256": None if raw is None else hashlib.sha256(raw).hexdigest(),
        "request_bytes": None if raw is None else len(raw),
    }
    return canonical(value)
