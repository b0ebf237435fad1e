"""The web view as a Starlette app: pages, the sign-in gate, security headers.

    >>> from gatekeeper.ui import LogView, UiConfig, create_app
    >>> app = create_app(view, UiConfig.for_host("127.0.0.1"))      # doctest: +SKIP

Every page is a GET that reads; the only POSTs sign in and out (they change
a session, never the log). Each response carries a Content-Security-Policy
with no script source at all, ``Cache-Control: no-store`` (pages hold
student and requester ids), ``X-Frame-Options: DENY``, ``nosniff`` and
``Referrer-Policy: same-origin``. The stylesheet is served by the view
itself: nothing is fetched from elsewhere.

On loopback (:attr:`UiConfig.sign_in` false) a request must name a loopback
host in its ``Host`` header (a page on another site cannot reach the view
through DNS rebinding). Otherwise every page but the sign-in form needs a
session cookie: a GET without one is sent to ``/signin`` (303), any other
method gets 401.
"""

from __future__ import annotations

import base64
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekeeper.audit.serve import is_loopback
from gatekeeper.errors import GatekeeperError
from gatekeeper.ui._auth import FailureThrottle, PasswordHash, Sessions, UiError

if TYPE_CHECKING:
    from jinja2 import Environment
    from starlette.requests import Request
    from starlette.responses import Response

    from gatekeeper.ui._view import LogView

__all__ = ["CSP", "REPORT_CSP", "UiConfig", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: No script of any kind; styles from the view itself; forms post only to it.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
#: A report is a self-contained page with its CSS inline (and still no script).
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SESSION_COOKIE = "gk_ui_session"
PRESESSION_COOKIE = "gk_ui_signin"
#: Paths served without a session (the sign-in form and its stylesheet).
_OPEN_PATHS = frozenset({"/signin", "/ui.css"})
_MAX_FORM_BYTES = 8192
_HERE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class UiConfig:
    """How the view guards itself.

    ``sign_in``: every page needs a session (required off loopback).
    ``password``: the hash a sign-in is checked against. ``secure_cookie``:
    mark the session cookie ``Secure`` always (it is anyway on a request that
    arrived over https, e.g. through a local TLS-terminating proxy).
    """

    sign_in: bool = False
    password: PasswordHash | None = None
    secure_cookie: bool = False
    session_hours: float = 8.0

    def __post_init__(self) -> None:
        if self.sign_in and self.password is None:
            raise UiError(
                "sign-in is required off loopback, and no password is configured: set "
                "GATEKEEPER_UI_PASSWORD, or give --password-file with a hash from "
                "`gatekeeper ui --hash-password`",
                reason="config",
            )

    @classmethod
    def for_host(
        cls, host: str, password: PasswordHash | None = None, *, secure_cookie: bool = False
    ) -> UiConfig:
        """Sign-in off loopback (refused without a password); none on loopback."""
        return cls(sign_in=not is_loopback(host), password=password, secure_cookie=secure_cookie)


@lru_cache(maxsize=1)
def _environment() -> Environment:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda value: f"{value:,}" if isinstance(value, int) else str(value)
    env.filters["b64"] = lambda value: base64.b64encode(value).decode("ascii")
    env.filters["hex"] = lambda value: value.hex()
    return env


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    """A cookie's value (Starlette's lenient parser: other apps on the same host
    name may set cookies the strict one rejects)."""
    from starlette.requests import cookie_parser

    raw = _header(scope, b"cookie")
    return cookie_parser(raw).get(name) if raw else None


def _host_name(host_header: str | None) -> str:
    """The host of a ``Host`` header, without the port (``[::1]:8900`` -> ``::1``)."""
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class _Guard:
    """Security headers on every response; the loopback Host check; the sign-in gate."""

    def __init__(self, app: ASGIApp, config: UiConfig, sessions: Sessions) -> None:
        self.app = app
        self.config = config
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {bytes(k).lower() for k, _ in headers}
                defaults = (
                    (b"content-security-policy", CSP),
                    (b"cache-control", "no-store"),
                    (b"x-content-type-options", "nosniff"),
                    (b"x-frame-options", "DENY"),
                    (b"referrer-policy", "same-origin"),
                    (b"cross-origin-opener-policy", "same-origin"),
                    (b"cross-origin-resource-policy", "same-origin"),
                )
                for name, value in defaults:
                    if name not in present:
                        headers.append((name, value.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        if not self.config.sign_in:
            if not is_loopback(_host_name(_header(scope, b"host"))):
                await _plain(421, "this view answers on a loopback host name only")(
                    scope, receive, send_with_headers
                )
                return
        elif scope["path"] not in _OPEN_PATHS:
            if not self.sessions.valid(_cookie(scope, SESSION_COOKIE)):
                if scope["method"] in ("GET", "HEAD"):
                    target = scope["path"]
                    query = bytes(scope.get("query_string", b"")).decode("latin-1")
                    if query:
                        target += "?" + query
                    location = "/signin?" + urllib.parse.urlencode({"next": target})
                    response = _redirect(location)
                else:
                    response = _plain(401, "sign in first")
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


def _plain(status: int, text: str) -> Response:
    from starlette.responses import PlainTextResponse

    return PlainTextResponse(text + "\n", status_code=status)


def _redirect(location: str) -> Response:
    from starlette.responses import RedirectResponse

    return RedirectResponse(location, status_code=303)


def _safe_next(target: str | None) -> str:
    """A local path to return to after signing in (never another site)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(c in target for c in "\r\n\\")
        or target.startswith("/signin")
    ):
        return "/"
    return target


def create_app(view: LogView, config: UiConfig | None = None) -> Any:
    """The Starlette app of the web view over ``view`` (never written to)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    from gatekeeper.ui._search import Search
    from gatekeeper.ui._view import REPORTS

    settings = config or UiConfig()
    sessions = Sessions(lifetime=settings.session_hours * 3600)
    throttle = FailureThrottle()
    env = _environment()
    stylesheet = (_HERE / "static" / "ui.css").read_bytes()

    def page(request: Request, template: str, code: int = 200, **values: Any) -> HTMLResponse:
        token = _cookie(request.scope, SESSION_COOKIE) if settings.sign_in else None
        binding = sessions.session_binding(token)
        html = env.get_template(template).render(
            sign_in=settings.sign_in,
            signed_in=binding is not None,
            signout_csrf=sessions.csrf_token(binding) if binding else "",
            path=request.url.path,
            **values,
        )
        return HTMLResponse(html, status_code=code)

    def error(request: Request, status: int, message: str) -> HTMLResponse:
        return page(request, "error.html.j2", status, title=f"{status}", message=message)

    def overview(request: Request) -> Response:
        status = view.status()
        try:
            head = view.store.size()
            checkpoint, latest_error = view.latest()
        except GatekeeperError as exc:
            head, checkpoint, latest_error = status.size, None, str(exc)
        return page(
            request,
            "overview.html.j2",
            status=status,
            head=head,
            latest=checkpoint,
            latest_error=latest_error,
            just_verified=request.query_params.get("verified") == "1",
        )

    def verify(request: Request) -> Response:
        view.verify()
        return _redirect("/?verified=1")

    def entries(request: Request) -> Response:
        try:
            search = Search.from_params(request.query_params)
        except UiError as exc:
            return page(
                request, "entries.html.j2", 400, search=Search(), result=None, problem=str(exc)
            )
        try:
            result = view.search(search)
        except GatekeeperError as exc:
            return error(request, 503, f"the audit log cannot be read: {exc}")
        return page(request, "entries.html.j2", search=search, result=result, problem=None)

    def entry(request: Request) -> Response:
        index: int = request.path_params["index"]
        try:
            detail = view.entry(index)
        except GatekeeperError as exc:
            return error(request, 503, f"the audit log cannot be read: {exc}")
        if detail is None:
            return error(request, 404, f"the log has no entry {index}")
        return page(request, "entry.html.j2", e=detail)

    def reports(request: Request) -> Response:
        return page(request, "reports.html.j2", status=view.status())

    def report(request: Request) -> Response:
        from gatekeeper.reports import render

        kind: str = request.path_params["kind"]
        if kind not in REPORTS:
            return error(request, 404, f"no report {kind!r}")
        params = request.query_params
        fmt = params.get("format", "html")
        if fmt not in ("html", "csv", "json"):
            return error(request, 400, "format: html, csv or json")
        student = params.get("student", "").strip() or None
        if kind == "disclosures" and not student:
            return error(request, 400, "a record of disclosures needs a student id")
        if student is not None and len(student) > 200:
            return error(request, 400, "student: at most 200 characters")
        try:
            made = view.report(
                kind,
                start=params.get("from") or None,
                end=params.get("to") or None,
                student=student,
            )
        except UiError as exc:
            return error(request, 503, str(exc))
        except GatekeeperError as exc:
            return error(request, 400, str(exc))
        body = render(made, fmt)
        media = {"html": "text/html", "csv": "text/csv", "json": "application/json"}[fmt]
        headers = {}
        if fmt == "html":
            headers["Content-Security-Policy"] = REPORT_CSP
        else:
            headers["Content-Disposition"] = f'attachment; filename="{kind}.{fmt}"'
        return Response(body, media_type=f"{media}; charset=utf-8", headers=headers)

    def css(request: Request) -> Response:
        return Response(
            stylesheet,
            media_type="text/css; charset=utf-8",
            headers={"Cache-Control": "private, max-age=300"},
        )

    # -- sign-in ---------------------------------------------------------------------

    def signin_form(request: Request) -> Response:
        if not settings.sign_in:
            return _redirect("/")
        import secrets

        binding = _cookie(request.scope, PRESESSION_COOKIE)
        if not binding or len(binding) > 64:
            binding = secrets.token_urlsafe(24)
        response = page(
            request,
            "signin.html.j2",
            csrf=sessions.csrf_token(binding),
            next=_safe_next(request.query_params.get("next")),
            failed=False,
        )
        _set_cookie(request, response, PRESESSION_COOKIE, binding, max_age=3600)
        return response

    def same_origin(request: Request) -> bool:
        """The POST came from this site (Origin, or Sec-Fetch-Site, when sent)."""
        origin = request.headers.get("origin")
        if origin is not None:
            expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
            if origin.lower() != expected.lower():
                return False
        site = request.headers.get("sec-fetch-site")
        return site in (None, "same-origin", "none")

    async def form(request: Request) -> dict[str, str] | None:
        if request.headers.get("content-type", "").split(";")[0].strip() != (
            "application/x-www-form-urlencoded"
        ):
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_FORM_BYTES:
                return None
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), max_num_fields=8)
        except (UnicodeDecodeError, ValueError):
            return None
        return dict(pairs)

    async def signin(request: Request) -> Response:
        if not settings.sign_in or settings.password is None:
            return _redirect("/")
        client = request.client.host if request.client else "?"
        wait = throttle.blocked(client)
        if wait:
            return Response(
                "too many failed sign-ins; try again later\n",
                status_code=429,
                media_type="text/plain; charset=utf-8",
                headers={"Retry-After": str(int(wait))},
            )
        fields = await form(request)
        binding = _cookie(request.scope, PRESESSION_COOKIE)
        if (
            fields is None
            or not same_origin(request)
            or not sessions.csrf_valid(binding, fields.get("csrf"))
        ):
            return error(request, 403, "the sign-in form expired or came from elsewhere")
        password = settings.password
        ok = await run_in_threadpool(password.verify, fields.get("password", ""))
        target = _safe_next(fields.get("next"))
        if not ok:
            throttle.failed(client)
            return page(
                request,
                "signin.html.j2",
                401,
                csrf=sessions.csrf_token(binding or ""),
                next=target,
                failed=True,
            )
        response = _redirect(target)
        _set_cookie(
            request,
            response,
            SESSION_COOKIE,
            sessions.issue(),
            max_age=int(settings.session_hours * 3600),
        )
        response.delete_cookie(PRESESSION_COOKIE, path="/")
        return response

    async def signout(request: Request) -> Response:
        token = _cookie(request.scope, SESSION_COOKIE)
        fields = await form(request)
        binding = sessions.session_binding(token)
        if (
            fields is None
            or not same_origin(request)
            or not sessions.csrf_valid(binding, fields.get("csrf"))
        ):
            return error(request, 403, "the sign-out form expired or came from elsewhere")
        sessions.revoke(token)
        response = _redirect("/signin")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def _set_cookie(
        request: Request, response: Response, name: str, value: str, *, max_age: int
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookie or request.url.scheme == "https",
        )

    routes = [
        Route("/", overview, methods=["GET"]),
        Route("/verify", verify, methods=["GET"]),
        Route("/entries", entries, methods=["GET"]),
        Route("/entries/{index:int}", entry, methods=["GET"]),
        Route("/reports", reports, methods=["GET"]),
        Route("/reports/{kind}", report, methods=["GET"]),
        Route("/ui.css", css, methods=["GET"]),
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
    ]

    def not_found(request: Request, exc: Exception) -> Response:
        return error(request, 404, "no such page")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The verifier runs once before the first request is served.
        await run_in_threadpool(view.status)
        yield

    app = Starlette(routes=routes, exception_handlers={404: not_found}, lifespan=lifespan)
    app.state.view = view
    return _Guard(app, settings, sessions)
