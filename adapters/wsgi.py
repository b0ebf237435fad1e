"""Pure WSGI middleware (any WSGI app): decide before the app runs, redact its JSON after.

    import gatekeeper
    from gatekeeper.adapters.wsgi import GatekeeperWSGIMiddleware

    def access_request(environ):             # the WSGI environ -> dict | None
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/students/"):
            return None                       # not a student-record route
        return {"channel": "api", "requester": {...}, "purpose": "educational",
                "student": {"id": path.rsplit("/", 1)[-1]}, "fields": ["grades"]}

    application = GatekeeperWSGIMiddleware(application, gatekeeper=gatekeeper.open(),
                                           request_for=access_request)

For Flask, :mod:`gatekeeper.adapters.flask` decides after URL matching, with
the view's arguments; this middleware sees only the environ (put
authentication, which sets e.g. ``REMOTE_USER``, outside it).

On a guarded request (``request_for`` returned an AccessRequest) the
decision is made first; a refusal is answered here and the app is not called.
On a permit the app's whole answer is collected, and only its JSON body,
redacted, leaves. Status codes and the ``X-Gatekeeper-Decision`` header are
those of :mod:`gatekeeper.adapters._common`.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["ENVIRON_KEY", "GatekeeperWSGIMiddleware", "respond"]

#: Where the verdict of a guarded request is kept in the WSGI environ.
ENVIRON_KEY = "gatekeeper.verdict"

_REASONS = {
    200: "OK",
    403: "Forbidden",
    409: "Conflict",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _status_line(status: int) -> str:
    if status in _REASONS:
        return f"{status} {_REASONS[status]}"
    from http import HTTPStatus

    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def respond(verdict: Verdict, start_response: StartResponse) -> list[bytes]:
    """Answer with a refusal's JSON body."""
    body = verdict.body_bytes()
    headers = [*verdict.headers(), ("Content-Length", str(len(body)))]
    start_response(_status_line(verdict.status), headers)
    return [body]


def _log_to_server(environ: WSGIEnvironment) -> None:
    """Write the exception being handled to the server's error stream (``wsgi.errors``),
    where a WSGI server logs an application's exception; never to the client."""
    stream = environ.get("wsgi.errors")
    if stream is None:
        return
    # A broken error stream loses the traceback only (never re-raise: the outer
    # debugger would print the original exception chained to it).
    with contextlib.suppress(Exception):
        traceback.print_exc(file=stream)


class GatekeeperWSGIMiddleware:
    """WSGI middleware; see the module documentation."""

    def __init__(
        self,
        app: WSGIApplication,
        *,
        gatekeeper: Gatekeeper,
        request_for: Callable[[WSGIEnvironment], RequestInput | None],
        redactor: Redactor | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.gatekeeper = gatekeeper
        self.request_for = request_for
        self.redactor = redactor
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            built = self.request_for(environ)
        except Exception as exc:
            return respond(builder_failed(exc), start_response)
        if built is None:
            return self.app(environ, start_response)
        verdict = decide(self.gatekeeper, built, self.redactor)
        environ[ENVIRON_KEY] = verdict
        if verdict.grant is None:
            return respond(verdict, start_response)  # the app is not called

        started: list[tuple[str, list[tuple[str, str]]]] = []
        written: list[bytes] = []
        size = 0
        too_large = False

        def write(chunk: bytes) -> None:  # the legacy write() callable: buffered and counted
            nonlocal size, too_large
            size += len(chunk)
            if size > self.max_body_bytes:
                too_large = True
            else:
                written.append(chunk)

        def capture(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            started[:] = [(status, list(headers))]
            return write

        try:
            result = self.app(environ, capture)
            try:
                for chunk in result:
                    if too_large:
                        break
                    write(chunk)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception as exc:
            # Answer here: an outer error page (Werkzeug's debugger) would print
            # the exception, and its message may quote record data.
            _log_to_server(environ)
            return respond(view_raised(verdict, exc), start_response)
        if not started:
            return respond(unredactable(verdict, "no response"), start_response)
        if too_large:
            return respond(
                unredactable(verdict, f"body larger than {self.max_body_bytes} bytes"),
                start_response,
            )
        status_line, headers = started[0]
        replacement, body = redact_body(
            verdict,
            status=int(status_line.split(" ", 1)[0]),
            content_type=_header(headers, "content-type"),
            content_encoding=_header(headers, "content-encoding"),
            body=b"".join(written),
        )
        if replacement is not None:
            return respond(replacement, start_response)
        drop = {"content-length", "cache-control", DECISION_HEADER.lower(), *OTHER_CACHE_HEADERS}
        kept = [(k, v) for k, v in headers if k.lower() not in drop]
        kept += [
            ("Content-Length", str(len(body))),
            ("Cache-Control", NO_STORE),
            (DECISION_HEADER, str(verdict.decision_id)),
        ]
        start_response(status_line, kept)
        return [body]


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None
