"""A Flask extension: decide in ``before_request`` (with the view's arguments), redact in
``after_request``.

    import gatekeeper
    from flask import Flask, g, request
    from gatekeeper.adapters.flask import FlaskGatekeeper

    records = FlaskGatekeeper(gatekeeper=gatekeeper.open())

    def grades_request(req):                  # flask.Request -> dict | None
        return {"channel": "api", "requester": g.user.as_requester(), "purpose": "educational",
                "student": {"id": req.view_args["student_id"]}, "fields": ["grades"]}

    app = Flask(__name__)
    records.init_app(app)

    @app.get("/students/<student_id>/grades")
    @records.guarded(grades_request)          # below the route decorator
    def grades(student_id):
        return sis.record(student_id)         # redacted to the allowed fields

``FlaskGatekeeper(request_for=...)`` instead decides *every* request with one
builder (returning None for routes that hold no student records);
``guarded(...)`` on a view takes precedence over it. Register the
extension's hooks after your authentication's ``before_request`` (they run in
registration order), so the builder sees the user.

A refusal is answered from ``before_request`` and the view is not called.
On a permit the view's JSON response is redacted; a streamed or file
response, or any other non-JSON one, is replaced by a 500. The decision is in
``flask.g.gatekeeper_decision``. Status codes and the
``X-Gatekeeper-Decision`` header are those of :mod:`gatekeeper.adapters._common`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, Response, current_app, g, request
from flask import Request as FlaskRequest

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
    view_raised,
)
from .wsgi import ENVIRON_KEY, _log_to_server, respond

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["FlaskGatekeeper"]

_F = TypeVar("_F", bound=Callable[..., Any])
_VIEW_ATTR = "__gatekeeper_request_for__"
_EXTENSION = "gatekeeper"

RequestBuilder = Callable[[FlaskRequest], RequestInput | None]


@dataclass(frozen=True, slots=True)
class _AppState:
    gatekeeper: Gatekeeper
    request_for: RequestBuilder | None
    redactor: Redactor | None
    max_body_bytes: int


def _refusal(verdict: Verdict) -> Response:
    response = Response(verdict.body_bytes(), status=verdict.status)
    for key, value in verdict.headers():
        response.headers[key] = value
    return response


class FlaskGatekeeper:
    """The Flask extension (``init_app`` pattern; one instance may serve several apps)."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        gatekeeper: Gatekeeper | None = None,
        request_for: RequestBuilder | None = None,
        redactor: Redactor | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.gatekeeper = gatekeeper
        self.request_for = request_for
        self.redactor = redactor
        self.max_body_bytes = max_body_bytes
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, gatekeeper: Gatekeeper | None = None) -> None:
        """Register the hooks on ``app``; ``gatekeeper`` overrides the constructor's."""
        chosen = gatekeeper or self.gatekeeper
        if chosen is None:
            raise ValueError("FlaskGatekeeper needs a Gatekeeper (gatekeeper=gatekeeper.open())")
        app.extensions[_EXTENSION] = _AppState(
            chosen, self.request_for, self.redactor, self.max_body_bytes
        )
        app.before_request(self._before)
        # Redaction is an ordinary after_request hook: hooks registered before
        # init_app run after it and see only the redacted body (compression,
        # say). Flask runs after_request hooks in reverse order of registration,
        # so the cache marking goes first in the list and runs last: no app
        # hook can make a guarded answer cacheable again.
        app.after_request(self._after)
        app.after_request_funcs.setdefault(None, []).insert(0, self._mark_no_store)
        app.wsgi_app = _AnswerViewErrors(app.wsgi_app)  # type: ignore[method-assign]

    @staticmethod
    def guarded(request_for: RequestBuilder) -> Callable[[_F], _F]:
        """Mark a view: decide ``request_for(flask.request)`` before it runs."""

        def mark(view: _F) -> _F:
            setattr(view, _VIEW_ATTR, request_for)
            return view

        return mark

    @staticmethod
    def _state() -> _AppState:
        state = current_app.extensions[_EXTENSION]
        assert isinstance(state, _AppState)
        return state

    def _before(self) -> Response | None:
        state = self._state()
        view = current_app.view_functions.get(request.endpoint or "")
        builder = getattr(view, _VIEW_ATTR, None) or state.request_for
        if builder is None:
            return None
        try:
            built = builder(request)
        except Exception as exc:
            g.gatekeeper_verdict = builder_failed(exc)
            return _refusal(g.gatekeeper_verdict)
        if built is None:
            return None
        verdict = decide(state.gatekeeper, built, state.redactor)
        g.gatekeeper_verdict = verdict
        request.environ[ENVIRON_KEY] = verdict  # for _AnswerViewErrors
        g.gatekeeper_decision = verdict.decision
        if verdict.grant is None:
            return _refusal(verdict)  # Flask skips the view
        return None

    def _after(self, response: Response) -> Response:
        verdict: Verdict | None = g.get("gatekeeper_verdict")
        if verdict is None or verdict.grant is None:
            return response  # not guarded, or our own refusal
        if response.is_streamed or response.direct_passthrough:
            return _refusal(unredactable(verdict, "a streamed or file response"))
        body = response.get_data()
        if len(body) > self._state().max_body_bytes:
            return _refusal(unredactable(verdict, "body too large"))
        replacement, redacted = redact_body(
            verdict,
            status=response.status_code,
            content_type=response.headers.get("Content-Type"),
            content_encoding=response.headers.get("Content-Encoding"),
            body=body,
        )
        if replacement is not None:
            return _refusal(replacement)
        response.set_data(redacted)
        response.headers[DECISION_HEADER] = str(verdict.decision_id)
        return response

    @staticmethod
    def _mark_no_store(response: Response) -> Response:
        """Last of all hooks: a guarded answer (a record or a refusal) is kept out
        of every cache, whatever the app's own hooks set."""
        if g.get("gatekeeper_verdict") is None:
            return response  # not guarded
        return _no_store(response)


def _no_store(response: Response) -> Response:
    """Whatever the app's own hooks set: no cache keeps a guarded answer."""
    response.headers["Cache-Control"] = NO_STORE
    for header in OTHER_CACHE_HEADERS:
        response.headers.pop(header, None)
    return response


class _AnswerViewErrors:
    """Around ``app.wsgi_app``: a guarded view's exception that Flask propagates
    (debug mode, ``PROPAGATE_EXCEPTIONS``) is answered with a 500 here, so an outer
    debugger page cannot print its message, which may quote record data."""

    def __init__(self, wsgi_app: WSGIApplication) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self.wsgi_app(environ, start_response)
        except Exception as exc:
            verdict = environ.get(ENVIRON_KEY)
            if not isinstance(verdict, Verdict) or verdict.grant is None:
                raise
            _log_to_server(environ)
            return respond(view_raised(verdict, exc), start_response)
