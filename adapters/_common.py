"""What every framework adapter shares: one decision per guarded request, one answer shape.

Framework-free: the ASGI, WSGI, Flask, FastAPI and Django adapters translate
their request and response objects into these calls and nothing else.

Status codes (the same in every adapter; the body is always JSON and never
carries record data; the decision id is in the ``X-Gatekeeper-Decision``
header and the body):

=====  ==========================  =============================================
403    ``access_denied``           deny or escalate: the view is not called
409    ``release_held``            permit whose blocking obligations (for
                                   example NOTIFY_PARENT_PRE) are pending, or a
                                   bulk permit: nothing is released yet
503    ``gatekeeper_unavailable``  no policy decision (engine or audit failure:
                                   ``reason`` says which); try again later
500    ``invalid_access_request``  the application built an AccessRequest that
                                   does not validate (audited as a deny)
500    ``request_builder_failed``  the application's request builder raised
500    ``unredactable_response``   the guarded view answered with something
                                   other than JSON (or compressed, streamed,
                                   too large, a non-record JSON value)
=====  ==========================  =============================================

A permitted view's JSON response is redacted to the decision's allowed
fields (a record, a list of records, nested records; a key the policy never
saw is dropped). A non-JSON error response (status 400 or more) keeps its
status, but its body is replaced (an error page can show a view's local
variables); an empty body passes as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gatekeeper._logging import get_logger, raised_at
from gatekeeper.decision import Decision
from gatekeeper.errors import RequestError
from gatekeeper.guard import AccessDenied, Gatekeeper, Grant, ReleaseHeld, RequestInput
from gatekeeper.redact import Redactor

__all__ = [
    "DECISION_HEADER",
    "MAX_BODY_BYTES",
    "NO_STORE",
    "OTHER_CACHE_HEADERS",
    "Unredactable",
    "Verdict",
    "builder_failed",
    "decide",
    "is_json",
    "redact_body",
    "unredactable",
    "view_error",
    "view_raised",
]

#: Response header carrying the decision id of a guarded request.
DECISION_HEADER = "X-Gatekeeper-Decision"
#: Every guarded response (a redacted student record, or a refusal) is marked
#: ``Cache-Control: no-store, private``, whatever the view set: no shared or
#: browser cache may keep a student's record. ``private`` too, because some
#: server-side caches ignore ``no-store`` (Django 4.2's per-site cache skips
#: only ``private``); a cached answer would be served again, to anyone,
#: without a decision.
NO_STORE = "no-store, private"
#: Cache directives for particular caches (RFC 9213's CDN-Cache-Control, the
#: Surrogate-Control of reverse proxies) override Cache-Control there: a
#: guarded response drops them.
OTHER_CACHE_HEADERS = ("cdn-cache-control", "surrogate-control")
#: Largest response body a guarded view may return (it is buffered to be redacted).
MAX_BODY_BYTES = 32 * 1024 * 1024

_log = get_logger("gatekeeper.adapters")

#: Blocking obligations the adapters meet themselves (by redacting).
_MET_BY_REDACTION = frozenset({"REDACT_OUT_OF_SCOPE"})


class Unredactable(Exception):
    """A guarded view's response cannot be redacted; it must not leave."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one guarded request: a grant (the view runs) or a refusal.

    ``status`` is 200 for a grant (the view sets the real one); a refusal's
    ``body`` is the JSON object to answer with.
    """

    status: int
    decision: Decision | None = None
    grant: Grant | None = None
    body: Mapping[str, Any] | None = None

    @property
    def decision_id(self) -> str | None:
        return None if self.decision is None else self.decision.decision_id

    def body_bytes(self) -> bytes:
        return json.dumps(dict(self.body or {}), separators=(",", ":")).encode("utf-8")

    def headers(self) -> list[tuple[str, str]]:
        """Headers for a refusal (content type, no caching, decision id)."""
        out = [("Content-Type", "application/json"), ("Cache-Control", NO_STORE)]
        if self.decision_id is not None:
            out.append((DECISION_HEADER, self.decision_id))
        return out


def _body(error: str, decision: Decision, **extra: Any) -> dict[str, Any]:
    return {
        "error": error,
        "decision_id": decision.decision_id,
        "request_id": decision.request_id,
        "decision": str(decision.decision),
        "rules": list(decision.rules),
        "guidance": decision.guidance,
        **extra,
    }


def _refusal(decision: Decision, *, held: bool, pending: Sequence[str] = ()) -> Verdict:
    if decision.reason == RequestError.reason:
        return Verdict(
            500, decision, body=_body("invalid_access_request", decision, reason=decision.reason)
        )
    if decision.reason is not None:
        return Verdict(
            503, decision, body=_body("gatekeeper_unavailable", decision, reason=decision.reason)
        )
    if held:
        if not pending:
            met = [o for o in decision.blocking_obligations if o not in _MET_BY_REDACTION]
            pending = met or decision.blocking_obligations
        return Verdict(
            409, decision, body=_body("release_held", decision, pending_obligations=list(pending))
        )
    return Verdict(403, decision, body=_body("access_denied", decision))


def decide(gatekeeper: Gatekeeper, request: RequestInput, redactor: Redactor | None) -> Verdict:
    """Decide (and audit) one request; a grant only for a permit the adapter may release."""
    try:
        parsed = gatekeeper.parse(request)
    except RequestError as exc:
        _log.error("adapter_invalid_request", path=exc.path)
        return _refusal(gatekeeper.decide(request), held=False)  # audited invalid-request deny
    try:
        with gatekeeper.access(parsed, redactor=redactor) as grant:
            pass
    except ReleaseHeld as exc:
        pending: Sequence[str] = getattr(exc, "pending", ())  # the guard's list, when it has one
        return _refusal(exc.decision, held=True, pending=pending)
    except AccessDenied as exc:
        return _refusal(exc.decision, held=False)
    return Verdict(200, grant.decision, grant=grant)


def builder_failed(exc: BaseException) -> Verdict:
    """The application's request builder raised: refuse, and say so in the log only."""
    # The type and where it was raised, not the message: an application's
    # message may quote record values.
    _log.error("adapter_request_builder_failed", error=raised_at(exc))
    return Verdict(
        500,
        body={
            "error": "request_builder_failed",
            "decision_id": None,
            "message": "the application could not describe this request to the gatekeeper; "
            "nothing was released",
        },
    )


def unredactable(verdict: Verdict, why: str) -> Verdict:
    """A guarded view answered with something the gatekeeper cannot redact."""
    _log.error("adapter_unredactable_response", decision_id=verdict.decision_id, why=why)
    return Verdict(
        500,
        verdict.decision,
        body={
            "error": "unredactable_response",
            "decision_id": verdict.decision_id,
            "message": f"a guarded view must answer with JSON records ({why}); "
            "nothing was released",
        },
    )


def view_raised(verdict: Verdict, exc: BaseException) -> Verdict:
    """A guarded view raised: answer 500 here, so no outer debug page shows its message."""
    # The type only: the message may quote the record the view was working on.
    _log.error("adapter_view_raised", decision_id=verdict.decision_id, error=type(exc).__name__)
    return unredactable(verdict, "the view raised")


def view_error(verdict: Verdict, status: int) -> Verdict:
    """A non-JSON error page from a guarded view: keep the status, replace the body."""
    return Verdict(
        status,
        verdict.decision,
        body={"error": "view_error", "decision_id": verdict.decision_id, "status": status},
    )


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<something>+json`` (parameters ignored)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def redact_body(
    verdict: Verdict,
    *,
    status: int,
    content_type: str | None,
    content_encoding: str | None,
    body: bytes,
) -> tuple[Verdict | None, bytes]:
    """The body to send for a granted view's response, or a replacement verdict.

    Returns ``(None, redacted_bytes)`` when the response may leave redacted,
    ``(verdict, b"")`` when it must be replaced by that verdict's JSON.
    """
    grant = verdict.grant
    if grant is None:  # pragma: no cover - callers only pass grants
        raise Unredactable("no grant")
    if not body:
        return None, body
    if content_encoding and content_encoding.strip().lower() not in {"identity", ""}:
        return unredactable(verdict, f"content-encoding {content_encoding}"), b""
    if not is_json(content_type):
        if status >= 400:
            return view_error(verdict, status), b""
        return unredactable(verdict, f"content-type {content_type or 'none'}"), b""
    try:
        data = json.loads(body)
        redacted = grant.redact(data)
    except (ValueError, TypeError, RecursionError) as exc:  # bad JSON, a scalar, too deep
        return unredactable(verdict, type(exc).__name__), b""
    return None, json.dumps(redacted, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
