"""What goes into the outbox for a decision, and into the log for an acknowledgment.

Payloads carry what a recipient needs to act (the decision, its rules and
guidance, the obligation, the student's id or the bulk scope, who asked and
why, the names of the fields) and never a record value.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from gatekeeper.audit.entry import SCHEMA, canonical, timestamp
from gatekeeper.audit.outbox import NewObligation, ObligationRecord
from gatekeeper.decision import BLOCKING_OBLIGATIONS, Decision, Effect
from gatekeeper.request import AccessRequest

__all__ = [
    "ACK_KIND",
    "ACK_VERSION",
    "MET_BY_REDACTION",
    "REDACTION_ACTOR",
    "RELEASE_KIND",
    "RELEASE_VERSION",
    "ack_entry",
    "blocking_codes",
    "outbox_rows",
    "release_entry",
]

#: The kind of an acknowledgment entry, and the version of its fields.
ACK_KIND = "obligation_ack"
ACK_VERSION = 1
#: The kind of the entry a held permit's release leaves, and its version.
RELEASE_KIND = "release"
RELEASE_VERSION = 1

#: Blocking obligations the gatekeeper meets itself: its redaction at release
#: releases only the allowed fields of the one student a request names.
MET_BY_REDACTION = frozenset({"REDACT_OUT_OF_SCOPE"})
REDACTION_ACTOR = "gatekeeper:redaction"

MAX_ACTOR = 256
MAX_NOTE = 1024


def blocking_codes(pack_data: Any) -> frozenset[str]:
    """The blocking (⛔) obligation codes: ``data.catalog.blocking_obligations`` of
    the pack when it lists them, else the built-in list of RULES.md."""
    catalog = pack_data.get("catalog") if isinstance(pack_data, dict) else None
    listed = catalog.get("blocking_obligations") if isinstance(catalog, dict) else None
    if isinstance(listed, list) and all(isinstance(c, str) for c in listed):
        return frozenset(listed)
    return BLOCKING_OBLIGATIONS


def _payload(
    decision: Decision, request: AccessRequest, code: str, blocking: bool
) -> dict[str, Any]:
    requester = request.requester
    return {
        "decision_id": decision.decision_id,
        "request_id": decision.request_id,
        "decision": str(decision.decision),
        "rules": list(decision.rules),
        "obligation": code,
        "blocking": blocking,
        "obligations": list(decision.obligations),
        "guidance": decision.guidance,
        "student": None if request.student is None else {"id": request.student.id},
        "bulk": None
        if request.bulk is None
        else {"scope": request.bulk.scope, "grades": list(request.bulk.grades)},
        "requester": {
            "id": requester.id,
            "kind": requester.kind,
            "agency": requester.agency,
            "role": requester.role,
        },
        "on_behalf_of": request.on_behalf_of,
        "purpose": request.purpose,
        "channel": request.channel,
        "as_of": request.as_of.isoformat(),
        "allowed_fields": list(decision.allowed_fields),
        "denied_fields": list(decision.denied_fields),
        "policy_revision": decision.policy_revision,
    }


def outbox_rows(
    decision: Decision,
    request: AccessRequest,
    blocking: Collection[str],
    *,
    now: datetime | None = None,
) -> list[NewObligation]:
    """One row per obligation of the decision.

    REDACT_OUT_OF_SCOPE on a single-student permit is recorded as met at once
    (the guard's redaction releases only the allowed fields); on a bulk
    request it stays pending: which students a bulk basis covers is for the
    SIS to scope, and someone must acknowledge that it did.
    """
    created = (now or datetime.now(UTC)).astimezone(UTC)
    rows = []
    for code in dict.fromkeys(decision.obligations):
        is_blocking = code in blocking
        met = (
            code in MET_BY_REDACTION and decision.decision is Effect.PERMIT and request.bulk is None
        )
        rows.append(
            NewObligation(
                decision_id=decision.decision_id,
                request_id=decision.request_id,
                code=code,
                blocking=is_blocking,
                payload=_payload(decision, request, code, is_blocking),
                created_at=created,
                met_by=REDACTION_ACTOR if met else None,
            )
        )
    return rows


def _clean(text: str, limit: int, what: str) -> str:
    if any(ord(c) < 32 and c not in "\t" for c in text):
        raise ValueError(f"{what} must be one line without control characters")
    text = text.strip()
    if len(text) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    return text


def ack_entry(row: ObligationRecord, *, by: str, note: str | None, when: datetime) -> bytes:
    """The ``obligation_ack`` entry for one outbox row (no record values).

    The decision's id is kept under ``obligation``, not at the top level, so
    that the entry is never mistaken for (or counted as) a decision.
    """
    actor = _clean(by, MAX_ACTOR, "the acknowledging person")
    if not actor:
        raise ValueError("an acknowledgment must name who acknowledges (--by)")
    value: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": ACK_KIND,
        "version": ACK_VERSION,
        "timestamp": timestamp(when),
        "obligation": {
            "id": row.id,
            "code": row.code,
            "blocking": row.blocking,
            "decision_id": row.decision_id,
            "request_id": row.request_id,
            "decision_entry": row.entry_index,
        },
        "acknowledged_by": actor,
        "note": None if note is None else _clean(note, MAX_NOTE, "the note"),
    }
    return canonical(value)


def release_entry(decision: Decision, *, when: datetime) -> bytes:
    """The ``release`` entry of a held permit, appended before its Grant is
    handed out: the record of disclosures dates the disclosure by it.

    It names the decision (id and entry) and the fields it lets go (names
    only); like an acknowledgment it keeps the decision's id under
    ``release``, so it is never counted as a decision.
    """
    audit = decision.audit or {}
    value: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": RELEASE_KIND,
        "version": RELEASE_VERSION,
        "timestamp": timestamp(when),
        "release": {
            "decision_id": decision.decision_id,
            "request_id": decision.request_id,
            "decision_entry": audit.get("index"),
            "allowed_fields": list(decision.allowed_fields),
        },
    }
    return canonical(value)
