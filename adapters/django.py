"""Django middleware: decide in ``process_view`` (the resolved view and its kwargs), redact
the view's JSON response.

settings.py::

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "gatekeeper.adapters.django.GatekeeperMiddleware",   # after authentication
    ]
    GATEKEEPER = {
        # a Gatekeeper, or a dotted path to one or to a function returning one
        "GATEKEEPER": "sis.records.open_gatekeeper",
        # (request, view_func, view_args, view_kwargs) -> AccessRequest dict | None
        "REQUEST_FOR": "sis.records.access_request",
        # optional: a Redactor, or {record key or dotted path: catalog field}
        "FIELD_MAP": {"math_grade": "grades"},
    }

sis/records.py::

    import gatekeeper

    def open_gatekeeper():
        return gatekeeper.open(data_dir="/var/lib/gatekeeper")

    def access_request(request, view_func, view_args, view_kwargs):
        if "student_id" not in view_kwargs:
            return None                       # not a student-record view
        return {"channel": "api", "requester": requester_of(request.user),
                "purpose": "educational", "student": {"id": view_kwargs["student_id"]},
                "fields": ["grades", "attendance"]}

A refusal is returned from ``process_view``, so the view is not called. On a
permit, the view's JSON response is redacted on the way out; a streaming or
file response, or any other non-JSON one, is replaced by a 500 (and a non-JSON
error page keeps its status with a neutral body: Django's debug page shows a
view's local variables). The decision is ``request.gatekeeper_decision``.
Status codes and the ``X-Gatekeeper-Decision`` header are those of
:mod:`gatekeeper.adapters._common`. The middleware is synchronous (Django
adapts it for async views); decisions block the worker while the audit
entry is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.module_loading import import_string

from gatekeeper.guard import Gatekeeper, RequestInput
from gatekeeper.redact import Redactor

from ._common import (
    DECISION_HEADER,
    MAX_BODY_BYTES,
    NO_STORE,
    OTHER_CACHE_HEADERS,
    Verdict,
    builder_failed,
    decide,
    redact_body,
    unredactable,
)

__all__ = ["GatekeeperMiddleware"]

RequestBuilder = Callable[
    [HttpRequest, Callable[..., Any], tuple[Any, ...], dict[str, Any]], RequestInput | None
]

_VERDICT_ATTR = "_gatekeeper_verdict"


def _resolve(value: Any) -> Any:
    return import_string(value) if isinstance(value, str) else value


def _refusal(verdict: Verdict) -> HttpResponse:
    response = HttpResponse(verdict.body_bytes(), status=verdict.status)
    for key, value in verdict.headers():
        response[key] = value
    return response


class GatekeeperMiddleware:
    """Django middleware configured by ``settings.GATEKEEPER``; see the module documentation."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        config = getattr(settings, "GATEKEEPER", None)
        if not isinstance(config, Mapping):
            raise ImproperlyConfigured("settings.GATEKEEPER must be a dict (see gatekeeper docs)")
        unknown = set(config) - {"GATEKEEPER", "REQUEST_FOR", "FIELD_MAP", "MAX_BODY_BYTES"}
        if unknown:
            raise ImproperlyConfigured(f"settings.GATEKEEPER: unknown key(s) {sorted(unknown)}")
        try:
            gk = _resolve(config["GATEKEEPER"])
            builder = _resolve(config["REQUEST_FOR"])
        except KeyError as exc:
            raise ImproperlyConfigured(f"settings.GATEKEEPER needs {exc.args[0]!r}") from exc
        except ImportError as exc:
            raise ImproperlyConfigured(f"settings.GATEKEEPER: {exc}") from exc
        if not isinstance(gk, Gatekeeper):
            gk = gk() if callable(gk) else gk
        if not isinstance(gk, Gatekeeper):
            raise ImproperlyConfigured("settings.GATEKEEPER['GATEKEEPER'] is not a Gatekeeper")
        if not callable(builder):
            raise ImproperlyConfigured("settings.GATEKEEPER['REQUEST_FOR'] is not callable")
        field_map = _resolve(config.get("FIELD_MAP"))
        self.gatekeeper: Gatekeeper = gk
        self.request_for: RequestBuilder = builder
        self.redactor: Redactor | None = (
            field_map
            if isinstance(field_map, Redactor) or field_map is None
            else Redactor(field_map)
        )
        self.max_body_bytes = int(config.get("MAX_BODY_BYTES", MAX_BODY_BYTES))

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        verdict: Verdict | None = getattr(request, _VERDICT_ATTR, None)
        if verdict is None or verdict.grant is None:
            return response  # not guarded, or our own refusal from process_view
        return self._redacted(verdict, response)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        try:
            built = self.request_for(request, view_func, view_args, view_kwargs)
        except Exception as exc:
            verdict = builder_failed(exc)
            setattr(request, _VERDICT_ATTR, verdict)
            return _refusal(verdict)
        if built is None:
            return None
        verdict = decide(self.gatekeeper, built, self.redactor)
        setattr(request, _VERDICT_ATTR, verdict)
        request.gatekeeper_decision = verdict.decision
        if verdict.grant is None:
            return _refusal(verdict)  # the view is not called
        return None

    def _redacted(self, verdict: Verdict, response: HttpResponseBase) -> HttpResponseBase:
        if response.streaming or not isinstance(response, HttpResponse):
            return _refusal(unredactable(verdict, "a streaming or file response"))
        body = response.content
        if len(body) > self.max_body_bytes:
            return _refusal(unredactable(verdict, "body too large"))
        replacement, redacted = redact_body(
            verdict,
            status=response.status_code,
            content_type=response.get("Content-Type"),
            content_encoding=response.get("Content-Encoding"),
            body=body,
        )
        if replacement is not None:
            return _refusal(replacement)
        response.content = redacted
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(redacted))
        response["Cache-Control"] = NO_STORE
        for header in OTHER_CACHE_HEADERS:
            if response.has_header(header):
                del response[header]
        response[DECISION_HEADER] = str(verdict.decision_id)
        return response
