"""The OneRoster proxy: decide, audit, forward, redact — in front of a SIS you cannot change.

    >>> from gatekeeper.oneroster import start_proxy                 # doctest: +SKIP
    >>> proxy = start_proxy("examples/proxy.toml", upstream=sis.url,
    ...                     data_dir=".gatekeeper")                   # doctest: +SKIP
    >>> proxy.base_url                                                # doctest: +SKIP
    'http://127.0.0.1:45321/ims/oneroster/rostering/v1p2'
    >>> proxy.stop()                                                  # doctest: +SKIP

Every GET below ``/ims/oneroster/rostering/v1p2`` goes through these steps,
in this order; any failure answers without forwarding:

1. **Route**: only the known OneRoster endpoints (``gatekeeper.oneroster.mapping.ROUTES``);
   anything else is 404, any other method 405. Nothing unknown is forwarded.
2. **Authenticate**: the bearer token's SHA-256 names a configured client;
   otherwise 401 (an unknown token on a student endpoint is also decided and
   audited, as a deny for an unidentified requester, at a bounded rate).
3. **Read the query**: ``fields``, ``filter`` and ``sort`` name OneRoster
   fields; the catalog fields they touch are part of the request (a filter on
   ``countryOfBirthCode`` asks for ``birth_country`` as surely as selecting
   it). A filter or sort on a field the map does not know is 400.
4. **Decide and audit** (student endpoints): one AccessRequest — a single
   student for ``/students/{id}``, ``/users/{id}``, ``/demographics/{id}``; a
   bulk request (scope ``roster``, ``school`` or ``district``) for
   collections — decided by the Gatekeeper in a worker thread, its signed
   audit entry durable before the answer. deny/escalate: 403 with the
   decision id, rules and guidance. A permit with pending blocking
   obligations (anything but REDACT_OUT_OF_SCOPE, which the proxy meets by
   redacting), or a bulk permit whose deciding rule is not one whose basis
   covers every student the endpoint returns (``bulk_release_rules``): 403
   ``release_held``. No policy decision (engine or audit down): 503.
5. **Forward** with the proxy's own upstream credential (the client's
   Authorization never leaves), passing ``limit``/``offset``/``filter``/
   ``sort``/``orderBy``/``fields``. Upstream unreachable or failing: 502.
6. **Redact** record by record: structural fields and mapped fields the
   decision allows; everything else is dropped. Collections stream: parsed
   incrementally as they arrive, emitted record by record; ``X-Total-Count``
   and ``Link`` (rewritten to the proxy) pass, ``Content-Length`` does not.

Classes and schools carry no student data: they are forwarded for any
authenticated client without a decision, and redacted to their structural
fields. Every decided response carries ``X-Gatekeeper-Decision: <effect>; id=<decision_id>``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute

from gatekeeper._logging import get_logger
from gatekeeper._serving import ServerHandle, serve_forever, start_in_thread
from gatekeeper.config import Settings, load_settings
from gatekeeper.decision import Decision
from gatekeeper.errors import GatekeeperError
from gatekeeper.guard import Gatekeeper
from gatekeeper.oneroster.config import ProxyConfig, hash_token, load_proxy_config
from gatekeeper.oneroster.mapping import ONEROSTER_PREFIX, RESOURCE_KINDS, RecordRedactor
from gatekeeper.oneroster.plan import (
    PASSED_PARAMS,
    Plan,
    Refusal,
    Unauthenticated,
    plan_request,
    shown_path,
)
from gatekeeper.oneroster.stream import CollectionRedactor, StreamError
from gatekeeper.request import parse_request

__all__ = [
    "PASSED_PARAMS",  # from gatekeeper.oneroster.plan
    "OneRosterProxy",
    "ProxyHandle",
    "open_proxy",
    "proxy_settings",
    "run_proxy",
    "start_proxy",
]

_log = get_logger("gatekeeper.oneroster")

#: Blocking obligations the proxy meets itself, by redacting.
_RELEASE_MET_BY_PROXY: Final = frozenset({"REDACT_OUT_OF_SCOPE"})
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([A-Za-z]+)"?')
_METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _body(error: str, description: str, **extra: Any) -> dict[str, Any]:
    """An error body: gatekeeper's keys plus OneRoster's statusInfoSet basics."""
    return {
        "error": error,
        **extra,
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
    }


def _error(
    status: int,
    error: str,
    description: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        _body(error, description, **extra),
        status_code=status,
        headers={"Cache-Control": "no-store, private", **(headers or {})},
    )


def _decision_header(decision: Decision) -> dict[str, str]:
    return {"X-Gatekeeper-Decision": f"{decision.decision}; id={decision.decision_id}"}


class _Bucket:
    """A token bucket: at most ``rate`` events a second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: float = 20.0) -> None:
        self.rate = rate
        self.burst = max(burst, rate)
        self._level = self.burst
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        if self.rate <= 0:
            return False
        with self._lock:
            now = time.monotonic()
            self._level = min(self.burst, self._level + (now - self._last) * self.rate)
            self._last = now
            if self._level >= 1:
                self._level -= 1
                return True
            return False


class OneRosterProxy:
    """The proxy as an ASGI app (``.app``) around a :class:`~gatekeeper.Gatekeeper`.

    ``transport`` replaces the upstream HTTP transport (tests). The proxy
    closes the Gatekeeper on :meth:`close` only when ``owns_gatekeeper``.
    """

    def __init__(
        self,
        config: ProxyConfig,
        gatekeeper: Gatekeeper,
        *,
        upstream: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        owns_gatekeeper: bool = False,
    ) -> None:
        self.config = config
        self.gatekeeper = gatekeeper
        self.upstream = config.upstream_base(upstream)
        self._upstream_path = httpx.URL(self.upstream).path.rstrip("/")
        self._transport = transport
        self._owns_gatekeeper = owns_gatekeeper
        self._executor = ThreadPoolExecutor(
            max_workers=config.decision_workers, thread_name_prefix="gatekeeper-decide"
        )
        self._redactors: dict[str, RecordRedactor] = {
            kind: config.mapping.redactor(kind) for kind in RESOURCE_KINDS
        }
        self._unknown_tokens = _Bucket(config.unauthenticated_audit_per_second)
        self._client: httpx.AsyncClient | None = None
        self.app = Starlette(
            routes=[StarletteRoute("/{path:path}", self.handle, methods=_METHODS)],
            lifespan=self._lifespan,
        )

    # -- lifecycle --------------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        timeout = httpx.Timeout(self.config.upstream_timeout, connect=5.0)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
        async with httpx.AsyncClient(
            transport=self._transport,
            timeout=timeout,
            limits=limits,
            follow_redirects=False,
            trust_env=False,  # no ambient HTTP(S)_PROXY between us and the SIS
        ) as client:
            self._client = client
            await asyncio.get_running_loop().run_in_executor(None, self.warm_up)
            try:
                yield
            finally:
                self._client = None

    def warm_up(self) -> None:
        """Compile the policy in every decision thread now, not on the first requests.

        Evaluates a synthetic input with the engine alone (no decision, no
        audit entry) in each worker thread at once.
        """
        workers = self.config.decision_workers
        barrier = threading.Barrier(workers)
        sample = parse_request(
            {
                "channel": "api",
                "purpose": "educational",
                "requester": {"id": "warm-up", "kind": "district_staff", "role": "none"},
                "student": {"id": "warm-up"},
                "fields": ["name"],
            }
        ).to_policy_input(self.gatekeeper.timezone)

        def warm() -> None:
            try:
                barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass
            try:
                self.gatekeeper.engine.evaluate(sample)
            except Exception as exc:  # the first real request will fail closed
                reason = exc.reason if isinstance(exc, GatekeeperError) else type(exc).__name__
                _log.warning("warm_up_failed", reason=reason)

        for future in [self._executor.submit(warm) for _ in range(workers)]:
            future.result()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._owns_gatekeeper:
            self.gatekeeper.close()

    # -- the request path -------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        # Steps 1-3, pure (gatekeeper.oneroster.plan): route, headers, token, query.
        scope = request.scope
        outcome = plan_request(
            self.config,
            request.method,
            scope["path"],
            scope.get("query_string", b""),
            scope["headers"],
        )
        if isinstance(outcome, Refusal):
            return _error(outcome.status, outcome.error, outcome.description, outcome.headers)
        if isinstance(outcome, Unauthenticated):
            return await self._unauthenticated(outcome)
        plan = outcome
        client = plan.client
        match = plan.match
        decision: Decision | None = None
        if plan.access is not None:
            decision = await self._decide(plan.access)
            refusal = self._refusal(decision, plan)
            if refusal is not None:
                _log.info(
                    "refused",
                    client=client.name,
                    endpoint=match.route.pattern.pattern,
                    decision=str(decision.decision),
                    decision_id=decision.decision_id,
                    status=refusal.status_code,
                )
                return refusal
        return await self._forward(request, plan, decision)

    async def _decide(self, access: dict[str, Any]) -> Decision:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self.gatekeeper.decide, access)
        except Exception as exc:  # decide never raises; if it does, nothing is released
            _log.error("decide_failed", error=type(exc).__name__)
            return Decision.fail_closed(
                request_id=access.get("request_id"),
                reason="internal_error",
                policy_revision=self.gatekeeper.policy_revision,
                engine=self.gatekeeper.engine.name,
            )

    def _refusal(self, decision: Decision, plan: Plan) -> Response | None:
        """The response that refuses this decision, or None for a releasable permit."""
        headers = {**_decision_header(decision), "X-Request-Id": plan.request_id}
        ids = {"decision_id": decision.decision_id, "decision": str(decision.decision)}
        if decision.reason == "invalid_request":
            # Audited as a deny with the error; the client is told what it was.
            why = _why_invalid(plan.access) or decision.guidance
            return _error(400, "invalid_request", why, headers, **ids)
        unaudited = decision.audit is None and not self.gatekeeper.allow_unaudited
        if decision.reason is not None or (decision.permitted and unaudited):
            headers["Retry-After"] = "5"
            return _error(
                503,
                "unavailable",
                "no policy decision could be made and audited; nothing was released",
                headers,
                reason=decision.reason or "audit_unavailable",
                **ids,
            )
        detail = {**ids, "rules": list(decision.rules), "guidance": decision.guidance}
        if not decision.permitted:
            return _error(403, "access_denied", decision.guidance, headers, **detail)
        blocking = self.gatekeeper.blocking_obligations  # the pack's catalog, not the built-in set
        pending = [
            o for o in decision.obligations if o in blocking and o not in _RELEASE_MET_BY_PROXY
        ]
        if pending:
            return _error(
                403,
                "release_held",
                "permitted, but blocking obligations must be met before release",
                headers,
                held_for=pending,
                **detail,
            )
        unreadable = [f for f in plan.read_fields if f not in decision.allowed_fields]
        if unreadable:
            # Which records come back (and X-Total-Count) would tell those fields' values.
            return _error(
                403,
                "access_denied",
                "filter or sort on a field this decision does not release",
                headers,
                denied_read=unreadable,
                **detail,
            )
        access = plan.access or {}
        if (
            "bulk" in access
            and (decision.rules[:1] or ("",))[0] not in self.config.bulk_release_rules
        ):
            return _error(
                403,
                "release_held",
                "a bulk permit on this basis must be scoped student by student by the SIS",
                headers,
                held_for=["REDACT_OUT_OF_SCOPE"],
                **detail,
            )
        return None

    async def _unauthenticated(self, attempt: Unauthenticated) -> Response:
        match, subpath, token, request_id = (
            attempt.match,
            attempt.subpath,
            attempt.token,
            attempt.request_id,
        )
        headers = {"WWW-Authenticate": 'Bearer realm="gatekeeper"', "X-Request-Id": request_id}
        extra: dict[str, Any] = {}
        route = match.route
        if token and route.student_data and self._unknown_tokens.take():
            shown = shown_path(subpath)
            # An attempt with a credential we do not know: decided and audited
            # as an unidentified requester (never with the token itself).
            access: dict[str, Any] = {
                "request_id": request_id,
                "channel": "api",
                "requester": {
                    "id": f"unknown-token:{hash_token(token)[:12]}",
                    "kind": "other",
                    "identity_verified": False,
                },
                "purpose": "unspecified",
                "purpose_text": f"OneRoster GET {shown} with an unknown bearer token"[:256],
                "fields": list(self.config.mapping.catalog_fields(route.kind))
                or ["enrollment_status"],
            }
            if route.single:
                access["student"] = {"id": match.sourced_id}
            else:
                access["bulk"] = {"scope": "district"}
            decision = await self._decide(access)
            headers.update(_decision_header(decision))
            extra["decision_id"] = decision.decision_id
        return _error(401, "unauthorized", "missing or unknown bearer token", headers, **extra)

    # -- forwarding ---------------------------------------------------------------

    async def _forward(self, request: Request, plan: Plan, decision: Decision | None) -> Response:
        client = self._client
        if client is None:
            return _error(503, "unavailable", "the proxy is not running")
        route = plan.match.route
        encoded = plan.upstream_path
        url = self.upstream + encoded
        if httpx.URL(url).raw_path.decode("ascii") != self._upstream_path + encoded:
            # Belt and braces: the URL must not normalize into another resource.
            return _error(404, "not_found", "not a OneRoster resource path")
        params = httpx.QueryParams(list(plan.params))
        headers = {"Accept": "application/json", "X-Request-Id": plan.request_id}
        if self.config.upstream_token is not None:
            headers["Authorization"] = "Bearer " + self.config.upstream_token.reveal()
        if decision is not None:
            headers["X-Gatekeeper-Decision"] = decision.decision_id
        # Student records (and refusals) are never to be kept by a cache.
        out_headers = {"X-Request-Id": plan.request_id, "Cache-Control": "no-store, private"}
        if decision is not None:
            out_headers.update(_decision_header(decision))
        try:
            upstream = await client.send(
                client.build_request("GET", url, params=params, headers=headers), stream=True
            )
        except httpx.HTTPError as exc:
            _log.warning(
                "upstream_unreachable", error=type(exc).__name__, request_id=plan.request_id
            )
            return _error(502, "upstream_unavailable", "the SIS did not answer", out_headers)
        try:
            failure = _upstream_failure(upstream, out_headers)
        except BaseException:
            await upstream.aclose()
            raise
        if failure is not None:
            await upstream.aclose()
            _log.warning("upstream_status", status=upstream.status_code, request_id=plan.request_id)
            return failure
        allowed = decision.allowed_fields if decision is not None else ()
        redact = self._redactors[route.kind].bind(allowed)
        if route.single:
            return await self._single(upstream, route.key, redact, out_headers)
        total = upstream.headers.get("X-Total-Count", "")
        if total.isdigit():
            out_headers["X-Total-Count"] = total
        link = self._rewrite_links(upstream.headers.get("Link", ""), request)
        if link:
            out_headers["Link"] = link
        stream = CollectionRedactor(route.key, redact)
        return StreamingResponse(
            self._relay(upstream, stream, plan.request_id),
            media_type="application/json",
            headers=out_headers,
        )

    async def _single(
        self,
        upstream: httpx.Response,
        key: str,
        redact: Callable[[Mapping[str, Any]], dict[str, Any]],
        headers: dict[str, str],
    ) -> Response:
        limit = self.config.max_record_bytes
        body = bytearray()
        try:
            async for chunk in upstream.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    return _error(502, "upstream_malformed", "the SIS record is too large", headers)
            document = json.loads(body)
        except httpx.HTTPError as exc:
            _log.warning("upstream_broken", error=type(exc).__name__)
            return _error(502, "upstream_unavailable", "the SIS answer broke off", headers)
        except ValueError:
            return _error(502, "upstream_malformed", "the SIS answer is not JSON", headers)
        finally:
            await upstream.aclose()
        record = document.get(key) if isinstance(document, dict) else None
        if not isinstance(record, dict):
            return _error(
                502, "upstream_malformed", f"the SIS answer has no {key!r} object", headers
            )
        return JSONResponse({key: redact(record)}, headers=headers)

    async def _relay(
        self, upstream: httpx.Response, stream: CollectionRedactor, request_id: str
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_bytes():
                out = stream.feed(chunk)
                if out:
                    yield out
            yield stream.finish()
        except (httpx.HTTPError, StreamError) as exc:
            # Headers are gone already: abort the response so the client sees
            # a broken transfer, never a short list that looks complete.
            _log.warning("upstream_stream_failed", error=type(exc).__name__, request_id=request_id)
            raise
        finally:
            await upstream.aclose()

    def _rewrite_links(self, value: str, request: Request) -> str:
        """Upstream Link URLs, pointed at the proxy; links elsewhere are dropped."""
        if not value:
            return ""
        public = str(request.base_url).rstrip("/") + ONEROSTER_PREFIX
        out = []
        for url, rel in _LINK.findall(value):
            if url.startswith(self.upstream + "/") or url.startswith(self.upstream + "?"):
                rest = url[len(self.upstream) :]
            elif url.startswith(self._upstream_path + "/"):
                rest = url[len(self._upstream_path) :]
            else:
                continue
            out.append(f'<{public}{rest}>; rel="{rel}"')
        return ", ".join(out)


def _why_invalid(access: Mapping[str, Any] | None) -> str | None:
    """The parser's message for an AccessRequest the Gatekeeper found invalid (rare path)."""
    try:
        parse_request(dict(access or {}))
    except GatekeeperError as exc:
        return str(exc)
    return None


def _upstream_failure(upstream: httpx.Response, headers: dict[str, str]) -> Response | None:
    """The answer for an upstream status other than a JSON 200 (bodies never pass)."""
    status = upstream.status_code
    if status == 200:
        if "json" not in upstream.headers.get("content-type", ""):
            return _error(502, "upstream_malformed", "the SIS did not answer JSON", headers)
        return None
    if status == 404:
        return _error(404, "not_found", "the SIS has no such record", headers)
    if status == 400:
        return _error(400, "invalid_query", "the SIS rejected the query", headers)
    return _error(502, "upstream_error", f"the SIS answered {status}", headers)


# --------------------------------------------------------------------------- running


def proxy_settings(
    config: ProxyConfig, settings_file: str | Path | None = None, **overrides: Any
) -> Settings:
    """The Gatekeeper's settings: ``settings_file`` if given, else the proxy file's
    ``[gatekeeper]`` section, else the defaults; ``overrides`` (data_dir, ...) win."""
    if settings_file is not None:
        return load_settings(settings_file, **overrides)
    if config.gatekeeper is not None and config.source is not None:
        return load_settings(config.source, **overrides)
    section = dict(config.gatekeeper or {})
    section.update({k: v for k, v in overrides.items() if v is not None})
    return load_settings(None, **section)


def open_proxy(
    config: ProxyConfig | str | Path,
    *,
    upstream: str | None = None,
    data_dir: str | Path | None = None,
    gatekeeper: Gatekeeper | None = None,
    settings: Settings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> OneRosterProxy:
    """A proxy from a configuration (object or TOML path).

    The Gatekeeper is ``gatekeeper`` if given (the caller closes it), else one
    opened from ``settings``, else from :func:`proxy_settings` with ``data_dir``.
    """
    from gatekeeper import open_with

    loaded = config if isinstance(config, ProxyConfig) else load_proxy_config(config)
    owns = gatekeeper is None
    gk = gatekeeper or open_with(settings or proxy_settings(loaded, data_dir=data_dir))
    try:
        return OneRosterProxy(
            loaded, gk, upstream=upstream, transport=transport, owns_gatekeeper=owns
        )
    except BaseException:
        if owns:
            gk.close()
        raise


class ProxyHandle:
    """A proxy serving in a background thread: ``url``, ``base_url``, ``proxy``, ``stop()``."""

    def __init__(self, server: ServerHandle, proxy: OneRosterProxy) -> None:
        self.server = server
        self.proxy = proxy
        self.url = server.url
        self.base_url = server.url + ONEROSTER_PREFIX

    @property
    def gatekeeper(self) -> Gatekeeper:
        return self.proxy.gatekeeper

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> ProxyHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_proxy(
    config: ProxyConfig | str | Path,
    *,
    upstream: str | None = None,
    data_dir: str | Path | None = None,
    gatekeeper: Gatekeeper | None = None,
    settings: Settings | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> ProxyHandle:
    """Open the proxy and serve it from a thread (``port`` 0: an ephemeral port)."""
    proxy = open_proxy(
        config, upstream=upstream, data_dir=data_dir, gatekeeper=gatekeeper, settings=settings
    )
    try:
        server = start_in_thread(
            proxy.app, host, port, name="gatekeeper-proxy", on_stop=proxy.close
        )
    except BaseException:
        proxy.close()
        raise
    return ProxyHandle(server, proxy)


def run_proxy(
    config: ProxyConfig | str | Path,
    *,
    upstream: str | None = None,
    data_dir: str | Path | None = None,
    settings: Settings | None = None,
    host: str = "127.0.0.1",
    port: int = 8700,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the proxy in the foreground (``gatekeeper proxy``) until interrupted."""
    proxy = open_proxy(config, upstream=upstream, data_dir=data_dir, settings=settings)
    try:
        serve_forever(proxy.app, host, port, ready=ready)
    finally:
        proxy.close()
