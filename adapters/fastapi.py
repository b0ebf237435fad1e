"""A FastAPI dependency that decides a route's request with its typed path params and user.

    import gatekeeper
    from fastapi import Depends, FastAPI
    from gatekeeper.adapters.asgi import GatekeeperMiddleware
    from gatekeeper.adapters.fastapi import gate

    gk = gatekeeper.open()
    app = FastAPI()
    app.add_middleware(GatekeeperMiddleware, gatekeeper=gk)    # owns the response: redaction

    def grades_request(student_id: str, user: User = Depends(current_user)) -> dict:
        return {"channel": "api", "requester": user.as_requester(), "purpose": "educational",
                "student": {"id": student_id}, "fields": ["grades", "attendance"]}

    @app.get("/students/{student_id}/grades", dependencies=[Depends(gate(grades_request))])
    def grades(student_id: str) -> dict:
        return sis.record(student_id)         # redacted to the allowed fields on the way out

``gate(request_for)`` builds a dependency with ``request_for``'s own
signature, so FastAPI injects path and query parameters and sub-dependencies
(the current user) into it. The dependency decides before the endpoint runs
(in a worker thread); a deny or escalate (403), a held permit (409) or a
failure (503) raises an HTTPException, so the endpoint never runs, and the
middleware answers with the common refusal body. On a permit it returns the
:class:`~gatekeeper.Decision` (declare it as a parameter,
``decision: Decision = Depends(gate(...))``, to read ``decision_id``) and the
middleware redacts the endpoint's JSON response. Without the middleware the
dependency refuses to run (500): nothing could redact the response.
Use one gate per request, not a gate on a route the middleware's own
``request_for`` already decides.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException
from starlette.requests import Request

from gatekeeper.decision import Decision
from gatekeeper.guard import Gatekeeper, RequestInput
from gatekeeper.redact import Redactor

from ._common import builder_failed
from .asgi import SCOPE_KEY, Exchange, build_request, decide_async

__all__ = ["gate"]

_REQUEST_PARAM = "gatekeeper_http_request"


def gate(
    request_for: Callable[..., RequestInput | Awaitable[RequestInput | None] | None],
    *,
    gatekeeper: Gatekeeper | None = None,
    redactor: Redactor | None = None,
) -> Callable[..., Awaitable[Decision | None]]:
    """A dependency deciding ``request_for(**its params)`` before the endpoint runs.

    ``gatekeeper`` and ``redactor`` default to the middleware's. Returns the
    permit's Decision, or None when ``request_for`` returns None (the
    request holds no student records).
    """
    try:
        signature = inspect.signature(request_for, eval_str=True)
    except NameError as exc:
        raise TypeError(
            f"gate(): cannot resolve the annotations of {request_for!r} ({exc}); "
            "define it and its dependencies at module level"
        ) from exc
    if _REQUEST_PARAM in signature.parameters:
        raise TypeError(f"a request builder cannot have a parameter named {_REQUEST_PARAM}")
    params = list(signature.parameters.values())
    params.append(
        inspect.Parameter(_REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
    )

    async def dependency(**kwargs: Any) -> Decision | None:
        http_request: Request = kwargs.pop(_REQUEST_PARAM)
        exchange = http_request.scope.get(SCOPE_KEY)
        if not isinstance(exchange, Exchange):
            raise RuntimeError(
                "gatekeeper.adapters.fastapi.gate needs GatekeeperMiddleware to redact the "
                "response: app.add_middleware(GatekeeperMiddleware, gatekeeper=gk)"
            )
        if exchange.verdict is not None:
            raise RuntimeError("this request is already decided: use one gate per request")
        try:
            built = await build_request(request_for, **kwargs)
        except Exception as exc:
            exchange.verdict = builder_failed(exc)
            raise _refused(exchange) from None
        if built is None:
            return None
        exchange.verdict = await decide_async(
            gatekeeper or exchange.gatekeeper, built, redactor or exchange.redactor
        )
        if exchange.verdict.grant is None:
            raise _refused(exchange)
        return exchange.verdict.decision

    dependency.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=inspect.Signature.empty
    )
    dependency.__name__ = f"gate_{getattr(request_for, '__name__', 'request')}"
    dependency.__doc__ = request_for.__doc__
    return dependency


def _refused(exchange: Exchange) -> HTTPException:
    verdict = exchange.verdict
    assert verdict is not None and verdict.body is not None
    # The middleware replaces this answer with the common refusal body; the
    # detail is the same body, so even an unexpected path discloses nothing.
    return HTTPException(verdict.status, detail=dict(verdict.body), headers=dict(verdict.headers()))
