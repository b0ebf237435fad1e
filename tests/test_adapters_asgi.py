"""The pure ASGI middleware (Starlette) and the FastAPI dependency, through their TestClients.

Real decisions: the embedded engine and a SQLite audit log in tmp_path.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header
from fastapi.responses import HTMLResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import gatekeeper
from gatekeeper import Decision, Gatekeeper
from gatekeeper.adapters.asgi import GatekeeperMiddleware
from gatekeeper.adapters.fastapi import gate
from tests.adapter_support import (
    STUDENT_OF,
    TEACHER_VIEW,
    access_request,
    assert_no_record_data,
    record,
)

HEADER = "X-Gatekeeper-Decision"


@pytest.fixture
def gk(tmp_path: Path) -> Iterator[Gatekeeper]:
    opened = gatekeeper.open(data_dir=tmp_path)
    yield opened
    opened.close()


# ------------------------------------------------------------------ Starlette


def starlette_app(gk: Gatekeeper, calls: list[str]) -> Starlette:
    async def student(request: Request) -> Response:
        calls.append(request.path_params["sid"])
        return JSONResponse(record(request.path_params["sid"]))

    async def history(request: Request) -> Response:
        calls.append("history")
        sid = request.path_params["sid"]
        return JSONResponse([record(sid), record(sid), "not a record"])

    async def report_card(request: Request) -> Response:
        calls.append("html")
        return PlainTextResponse(f"<h1>{record(request.path_params['sid'])}</h1>")

    async def stream(request: Request) -> Response:
        calls.append("stream")

        async def chunks() -> Any:
            yield b'{"grades": {"math": "A"}, '
            yield b'"home_address": "1 Main St"}'

        return StreamingResponse(chunks(), media_type="application/json")

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    def request_for(request: Request) -> dict[str, Any] | None:
        parts = request.url.path.strip("/").split("/")
        if parts[0] != "students":
            return None
        return access_request(request.headers.get("x-user"), parts[1])

    return Starlette(
        routes=[
            Route("/students/{sid}", student),
            Route("/students/{sid}/history", history),
            Route("/students/{sid}/report-card", report_card),
            Route("/students/{sid}/stream", stream),
            Route("/health", health),
        ],
        middleware=[Middleware(GatekeeperMiddleware, gatekeeper=gk, request_for=request_for)],
    )


def test_starlette_deny_never_calls_the_view(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = TestClient(starlette_app(gk, calls))
    response = client.get(f"/students/{STUDENT_OF['ice']}", headers={"X-User": "ice"})
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "access_denied" and body["decision"] == "deny"
    assert body["rules"][0].startswith("IMM-")
    assert body["guidance"]
    assert response.headers[HEADER] == body["decision_id"]
    assert response.headers["cache-control"] == "no-store, private"
    assert_no_record_data(response.content)
    assert calls == []


def test_starlette_escalate_is_a_403_too(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = TestClient(starlette_app(gk, calls))
    sid = STUDENT_OF["hsi_unreviewed"]
    response = client.get(f"/students/{sid}", headers={"X-User": "hsi_unreviewed"})
    assert response.status_code == 403
    assert response.json()["decision"] == "escalate"
    assert calls == []


def test_starlette_permit_is_redacted(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = TestClient(starlette_app(gk, calls))
    sid = STUDENT_OF["teacher"]
    response = client.get(f"/students/{sid}", headers={"X-User": "teacher"})
    assert response.status_code == 200
    assert response.json() == TEACHER_VIEW
    assert response.headers["content-length"] == str(len(response.content))
    assert len(response.headers[HEADER]) == 32
    assert response.headers["cache-control"] == "no-store, private"  # no cache keeps a record
    assert_no_record_data(response.content)
    # a list of records: each one redacted, non-records dropped
    response = client.get(f"/students/{sid}/history", headers={"X-User": "teacher"})
    assert response.json() == [TEACHER_VIEW, TEACHER_VIEW]
    assert calls == [sid, "history"]


def test_starlette_held_permit_releases_nothing(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = TestClient(starlette_app(gk, calls))
    sid = STUDENT_OF["family_court"]
    response = client.get(f"/students/{sid}", headers={"X-User": "family_court"})
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "release_held" and body["decision"] == "permit"
    assert "NOTIFY_PARENT_PRE" in body["pending_obligations"]
    assert "REDACT_OUT_OF_SCOPE" not in body["pending_obligations"]
    assert calls == []


def test_starlette_audit_store_locked_is_a_503(tmp_path: Path) -> None:
    config = tmp_path / "gatekeeper.toml"
    # Long enough for the healthy request on a loaded machine (the lock below
    # is held for the whole of the second one: it waits this out, then 503).
    config.write_text("audit_timeout = 2.0\n")
    gk = gatekeeper.open(data_dir=tmp_path / "d", config=config)
    calls: list[str] = []
    client = TestClient(starlette_app(gk, calls))
    sid = STUDENT_OF["teacher"]
    assert client.get(f"/students/{sid}", headers={"X-User": "teacher"}).status_code == 200
    # Another process holds the audit database's write lock.
    locker = sqlite3.connect(tmp_path / "d" / "audit.sqlite", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        response = client.get(f"/students/{sid}", headers={"X-User": "teacher"})
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        gk.close()
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "gatekeeper_unavailable" and body["decision"] == "deny"
    assert body["reason"].startswith("audit")
    assert response.headers[HEADER] == body["decision_id"]
    assert_no_record_data(response.content)
    assert calls == [sid]  # only the first, audited, request reached the view


def test_starlette_closed_audit_log_is_a_503(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = TestClient(starlette_app(gk, calls))
    assert gk.audit is not None
    gk.audit.close()
    response = client.get(f"/students/{STUDENT_OF['teacher']}", headers={"X-User": "teacher"})
    assert response.status_code == 503
    assert response.json()["reason"] == "audit_unavailable"
    assert calls == []


def test_starlette_non_json_responses_never_leak(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = TestClient(starlette_app(gk, calls))
    sid = STUDENT_OF["teacher"]
    for path in (f"/students/{sid}/report-card", f"/students/{sid}/stream"):
        response = client.get(path, headers={"X-User": "teacher"})
        if path.endswith("stream"):  # JSON, streamed: buffered, then redacted
            assert response.status_code == 200
            assert response.json() == {"grades": {"math": "A"}}
        else:
            assert response.status_code == 500
            assert response.json()["error"] == "unredactable_response"
            assert response.headers[HEADER] == response.json()["decision_id"]
        assert_no_record_data(response.content)
    assert calls == ["html", "stream"]


def test_starlette_view_exception_shows_no_debug_page(gk: Gatekeeper) -> None:
    # Starlette's debug page (outside every middleware) prints the exception,
    # and an application's message may quote the record it was working on.
    async def broken(request: Request) -> Response:
        raise ValueError(f"cannot render {record(request.path_params['sid'])}")

    def request_for(request: Request) -> dict[str, Any] | None:
        return access_request("teacher", request.path_params.get("sid", STUDENT_OF["teacher"]))

    app = Starlette(
        debug=True,
        routes=[Route("/students/{sid}", broken)],
        middleware=[Middleware(GatekeeperMiddleware, gatekeeper=gk, request_for=request_for)],
    )
    client = TestClient(app, raise_server_exceptions=False)
    response = client.get(f"/students/{STUDENT_OF['teacher']}")
    assert response.status_code == 500
    assert response.json()["error"] == "unredactable_response"
    assert response.headers[HEADER] == response.json()["decision_id"]
    assert_no_record_data(response.content)


def test_starlette_builder_failures_and_unguarded_routes(
    gk: Gatekeeper, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    client = TestClient(starlette_app(gk, calls))
    caplog.set_level(logging.ERROR, logger="gatekeeper")
    response = client.get("/students/S001", headers={"X-User": "broken"})
    assert response.status_code == 500
    assert response.json()["error"] == "request_builder_failed"
    # The log says where the builder failed (type, file, line), not its message.
    (line,) = [r.getMessage() for r in caplog.records if "builder_failed" in r.getMessage()]
    assert re.search(r'"error": "\w+ at \w+\.py:\d+"', line), line
    response = client.get("/students/S001", headers={"X-User": "invalid"})
    assert response.status_code == 500
    assert response.json()["error"] == "invalid_access_request"
    assert response.json()["reason"] == "invalid_request"
    assert calls == []
    response = client.get("/health")
    assert response.text == "ok" and HEADER not in response.headers
    # every method is decided: no preflight shortcut
    response = client.options(f"/students/{STUDENT_OF['ice']}", headers={"X-User": "ice"})
    assert response.status_code == 403


def test_websockets_are_refused_unless_allowed(gk: Gatekeeper) -> None:
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(record("S001"))
        await websocket.close()

    for mode, refused in (("refuse", True), ("pass", False)):
        app = Starlette(
            routes=[WebSocketRoute("/ws", ws)],
            middleware=[Middleware(GatekeeperMiddleware, gatekeeper=gk, websockets=mode)],
        )
        with TestClient(app) as client:
            if refused:
                with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws") as c:
                    c.receive_json()
            else:
                with client.websocket_connect("/ws") as c:
                    assert c.receive_json()["id"] == "S001"


# ------------------------------------------------------------------ FastAPI


def current_user(x_user: Annotated[str | None, Header()] = None) -> str | None:
    """The application's own authentication (here: a header naming the test user)."""
    return x_user


def student_request(
    student_id: str, user: Annotated[str | None, Depends(current_user)]
) -> dict[str, Any] | None:
    """The application's request builder: typed path param and current user, injected."""
    return access_request(user, student_id)


def fastapi_app(gk: Gatekeeper, calls: list[str], *, middleware: bool = True) -> FastAPI:
    app = FastAPI()
    if middleware:
        app.add_middleware(GatekeeperMiddleware, gatekeeper=gk)

    @app.get("/students/{student_id}")
    def read_student(
        student_id: str, decision: Annotated[Decision | None, Depends(gate(student_request))]
    ) -> dict[str, Any]:
        calls.append(student_id)
        assert decision is not None and decision.decision == "permit"
        return record(student_id)

    @app.get("/students/{student_id}/card", dependencies=[Depends(gate(student_request))])
    def card(student_id: str) -> HTMLResponse:
        calls.append("card")
        return HTMLResponse(f"<p>{record(student_id)}</p>")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def test_fastapi_deny_escalate_held(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = TestClient(fastapi_app(gk, calls))
    expected = {"ice": (403, "deny"), "hsi_unreviewed": (403, "escalate")}
    expected["family_court"] = (409, "permit")
    for user, (status, decision) in expected.items():
        response = client.get(f"/students/{STUDENT_OF[user]}", headers={"X-User": user})
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) >= {"decision_id", "decision", "rules", "guidance"}
        assert "detail" not in body  # the middleware's common body, not FastAPI's
        assert body["decision"] == decision
        assert response.headers[HEADER] == body["decision_id"]
        assert_no_record_data(response.content)
    assert calls == []


def test_fastapi_permit_is_redacted(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = TestClient(fastapi_app(gk, calls))
    sid = STUDENT_OF["teacher"]
    response = client.get(f"/students/{sid}", headers={"X-User": "teacher"})
    assert response.status_code == 200, response.text
    assert response.json() == TEACHER_VIEW
    assert HEADER in response.headers
    response = client.get(f"/students/{sid}/card", headers={"X-User": "teacher"})
    assert response.status_code == 500
    assert_no_record_data(response.content)
    assert client.get("/health").json() == {"status": "ok"}  # no gate, untouched
    assert calls == [sid, "card"]


def test_fastapi_failure_is_a_503(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = TestClient(fastapi_app(gk, calls))
    assert gk.audit is not None
    gk.audit.close()
    response = client.get(f"/students/{STUDENT_OF['teacher']}", headers={"X-User": "teacher"})
    assert response.status_code == 503
    assert response.json()["reason"] == "audit_unavailable"
    response = client.get("/students/S001", headers={"X-User": "broken"})
    assert response.status_code == 500
    assert calls == []


def test_fastapi_gate_without_the_middleware_refuses(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = TestClient(fastapi_app(gk, calls, middleware=False), raise_server_exceptions=False)
    response = client.get(f"/students/{STUDENT_OF['teacher']}", headers={"X-User": "teacher"})
    assert response.status_code == 500
    assert_no_record_data(response.content)
    assert calls == []
