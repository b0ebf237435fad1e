"""Pure ASGI middleware (Starlette, FastAPI, any ASGI app): decide before the view, redact after.

    import gatekeeper
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from gatekeeper.adapters.asgi import GatekeeperMiddleware

    def access_request(request):            # starlette.requests.Request -> dict | None
        if not request.url.path.startswith("/students/"):
            return None                      # not a student-record route
        return {"channel": "api", "requester": {...}, "purpose": "educational",
                "student": {"id": request.url.path.rsplit("/", 1)[-1]},
                "fields": request.query_params.getlist("field")}

    app = Starlette(routes=[...], middleware=[
        Middleware(GatekeeperMiddleware, gatekeeper=gatekeeper.open(), request_for=access_request)])

``request_for`` (sync, run in a worker thread, or async) turns the request
into an AccessRequest, or None for routes that hold no student records. It
runs before routing, so it sees the path, query, headers and ``scope["user"]``
(put :class:`~starlette.middleware.authentication.AuthenticationMiddleware`
before this one), not path parameters, and the body is not readable. For
per-route checks with typed path parameters and the current user, use
:func:`gatekeeper.adapters.fastapi.gate`, which needs this middleware too
(with or without ``request_for``): the middleware owns the response.

A guarded request is decided (and audited) in a worker thread, never on the
event loop. Refusals, status codes and the ``X-Gatekeeper-Decision`` header
are described in :mod:`gatekeeper.adapters._common`: a deny or escalate is a
403 and the app is not called; a permit runs the app and its JSON response is
buffered and redacted; anything that cannot be redacted (HTML, a file, a
compressed or oversized body) is replaced by a 500. Put compression
middleware *outside* this one. Every HTTP method is decided the same way
(no CORS-preflight exemption: ``request_for`` decides what OPTIONS means).
WebSocket connections are closed (code 1008) unless ``websockets="pass"``:
websocket frames cannot be redacted.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio.to_thread
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

__all__ = [
    "SCOPE_KEY",
    "Exchange",
    "GatekeeperMiddleware",
    "RequestBuilder",
    "build_request",
    "decide_async",
    "send_verdict",
]

#: Where the middleware keeps the :class:`Exchange` of a request in the ASGI scope.
SCOPE_KEY = "gatekeeper.exchange"

RequestBuilder = Callable[[Request], RequestInput | Awaitable[RequestInput | None] | None]


@dataclass(slots=True)
class Exchange:
    """One HTTP exchange under the middleware: who decides, and the verdict once made."""

    gatekeeper: Gatekeeper
    redactor: Redactor | None
    verdict: Verdict | None = None


@dataclass(slots=True)
class _Buffered:
    passthrough: bool = False
    start: Message | None = None
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    complete: bool = False
    problem: str | None = None


def _is_async(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an async callable object
    )


async def build_request(
    builder: Callable[..., object], *args: object, **kwargs: object
) -> RequestInput | None:
    """Call a request builder: async ones on the loop, sync ones in a worker thread."""
    if _is_async(builder):
        result = builder(*args, **kwargs)
    else:
        result = await anyio.to_thread.run_sync(lambda: builder(*args, **kwargs))
    if inspect.isawaitable(result):
        result = await result
    return result  # type: ignore[return-value]


async def decide_async(
    gatekeeper: Gatekeeper, request: RequestInput, redactor: Redactor | None
) -> Verdict:
    """:func:`~gatekeeper.adapters._common.decide` in a worker thread (regopy and the
    audit write block)."""
    return await anyio.to_thread.run_sync(decide, gatekeeper, request, redactor)


async def send_verdict(send: Send, verdict: Verdict) -> None:
    """Answer with a refusal's JSON body, in one start and one body message."""
    body = verdict.body_bytes()
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in verdict.headers()]
    headers.append((b"content-length", str(len(body)).encode("latin-1")))
    await send({"type": "http.response.start", "status": verdict.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class GatekeeperMiddleware:
    """Pure ASGI middleware; see the module documentation."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        gatekeeper: Gatekeeper,
        request_for: RequestBuilder | None = None,
        redactor: Redactor | None = None,
        websockets: Literal["refuse", "pass"] = "refuse",
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if websockets not in ("refuse", "pass"):
            raise ValueError("websockets must be 'refuse' or 'pass'")
        self.app = app
        self.gatekeeper = gatekeeper
        self.request_for = request_for
        self.redactor = redactor
        self.websockets = websockets
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.websockets == "refuse":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange(self.gatekeeper, self.redactor)
        scope[SCOPE_KEY] = exchange
        if self.request_for is not None:
            try:
                built = await build_request(self.request_for, Request(scope))
            except Exception as exc:
                await send_verdict(send, builder_failed(exc))
                return
            if built is not None:
                exchange.verdict = await decide_async(self.gatekeeper, built, self.redactor)
                if exchange.verdict.grant is None:
                    await send_verdict(send, exchange.verdict)  # the app is not called
                    return

        buffered = _Buffered()

        async def capture(message: Message) -> None:
            if buffered.passthrough:
                await send(message)
                return
            kind = message["type"]
            if kind == "http.response.start":
                if exchange.verdict is None:  # not a guarded request: stream as is
                    buffered.passthrough = True
                    await send(message)
                    return
                buffered.start = message
            elif kind == "http.response.body" and buffered.start is not None:
                chunk = bytes(message.get("body", b""))
                buffered.size += len(chunk)
                if buffered.size > self.max_body_bytes:
                    buffered.problem = f"body larger than {self.max_body_bytes} bytes"
                    buffered.chunks.clear()
                elif buffered.problem is None:
                    buffered.chunks.append(chunk)
                if not message.get("more_body", False):
                    buffered.complete = True
            else:  # http.response.pathsend, zerocopysend, trailers, ...: nothing to redact
                buffered.problem = f"ASGI message {kind}"

        try:
            await self.app(scope, receive, capture)
        except Exception:
            verdict = exchange.verdict
            if buffered.passthrough or verdict is None:
                raise
            # Answer first: an outer error page (Starlette's debug page) would
            # print the exception, and its message may quote record data.
            if verdict.grant is None:
                await send_verdict(send, verdict)
            else:
                await send_verdict(send, unredactable(verdict, "the view raised"))
            raise
        if buffered.passthrough or exchange.verdict is None:
            return
        await self._answer(send, exchange.verdict, buffered)

    async def _answer(self, send: Send, verdict: Verdict, buffered: _Buffered) -> None:
        if verdict.grant is None:  # refused by a gate() dependency: drop the app's answer
            await send_verdict(send, verdict)
            return
        start = buffered.start
        if start is None or not buffered.complete or buffered.problem is not None:
            await send_verdict(send, unredactable(verdict, buffered.problem or "no response"))
            return
        headers = [(bytes(k), bytes(v)) for k, v in start.get("headers", [])]
        status = int(start["status"])
        replacement, body = redact_body(
            verdict,
            status=status,
            content_type=_header(headers, b"content-type"),
            content_encoding=_header(headers, b"content-encoding"),
            body=b"".join(buffered.chunks),
        )
        if replacement is not None:
            await send_verdict(send, replacement)
            return
        decision_header = DECISION_HEADER.lower().encode("latin-1")
        replaced = (
            b"content-length",
            b"cache-control",
            decision_header,
            *(h.encode("latin-1") for h in OTHER_CACHE_HEADERS),
        )
        headers = [(k, v) for k, v in headers if k.lower() not in replaced]
        headers.append((b"content-length", str(len(body)).encode("latin-1")))
        headers.append((b"cache-control", NO_STORE.encode("latin-1")))
        headers.append((decision_header, str(verdict.decision_id).encode("latin-1")))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
