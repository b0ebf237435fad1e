"""The WSGI middleware and the Flask extension, through Flask's (Werkzeug's) test client.

Real decisions: the embedded engine and a SQLite audit log in tmp_path.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, g, jsonify, request, send_file
from werkzeug.debug import DebuggedApplication
from werkzeug.test import Client

import gatekeeper
from gatekeeper import Gatekeeper
from gatekeeper.adapters.flask import FlaskGatekeeper
from gatekeeper.adapters.wsgi import GatekeeperWSGIMiddleware
from gatekeeper.engines.opa import OpaServerEngine
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


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_down(real: Any) -> OpaServerEngine:
    """A real OPA engine client whose server is not running: every decision
    fails (connection refused), as when the OPA sidecar is down. The refusal
    is immediate: the generous deadline only keeps a stall on a loaded machine
    from reading as ``engine_timeout``."""
    return OpaServerEngine(real.pack, url=f"http://127.0.0.1:{closed_port()}", timeout=5.0)


# ------------------------------------------------------------------ plain WSGI


def wsgi_app(calls: list[str]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        calls.append(path)
        sid = path.strip("/").split("/")[1] if path.startswith("/students/") else ""
        if path.endswith("/page"):
            start_response("200 OK", [("Content-Type", "text/html")])
            return [f"<p>{record(sid)}</p>".encode()]
        if path.endswith("/raise"):  # the message quotes the record
            raise ValueError(f"cannot render {record(sid)}")
        if path.endswith("/raise-late"):  # raises while its body is read

            def late() -> Iterator[bytes]:
                yield b"{"
                raise ValueError(f"cannot render {record(sid)}")

            start_response("200 OK", [("Content-Type", "application/json")])
            return late()
        if path.endswith("/write-only"):  # the whole body through write()
            write = start_response("200 OK", [("Content-Type", "application/json")])
            write(json.dumps(record(sid)).encode())
            return []
        if path.endswith("/legacy-write"):  # the old write() callable, then a JSON body
            write = start_response("200 OK", [("Content-Type", "application/json")])
            write(json.dumps(record(sid))[:20].encode())
            return [json.dumps(record(sid))[20:].encode()]
        if path.startswith("/students/"):
            body = json.dumps(record(sid)).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def wsgi_request_for(environ: dict[str, Any]) -> dict[str, Any] | None:
    path = environ.get("PATH_INFO", "")
    if not path.startswith("/students/"):
        return None
    return access_request(environ.get("HTTP_X_USER"), path.strip("/").split("/")[1])


def wsgi_client(gk: Gatekeeper, calls: list[str], **options: Any) -> Client:
    wrapped = GatekeeperWSGIMiddleware(
        wsgi_app(calls), gatekeeper=gk, request_for=wsgi_request_for, **options
    )
    return Client(wrapped)


def test_wsgi_deny_escalate_held(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = wsgi_client(gk, calls)
    expected = {"ice": (403, "deny"), "hsi_unreviewed": (403, "escalate")}
    expected["family_court"] = (409, "permit")
    for user, (status, decision) in expected.items():
        response = client.get(f"/students/{STUDENT_OF[user]}", headers={"X-User": user})
        assert response.status_code == status
        body = response.get_json()
        assert body["decision"] == decision and body["rules"] and body["guidance"]
        assert response.headers[HEADER] == body["decision_id"]
        assert_no_record_data(response.data)
    assert calls == []


def test_wsgi_permit_is_redacted(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = wsgi_client(gk, calls)
    sid = STUDENT_OF["teacher"]
    response = client.get(f"/students/{sid}", headers={"X-User": "teacher"})
    assert response.status_code == 200
    assert response.get_json() == TEACHER_VIEW
    assert response.headers["Content-Length"] == str(len(response.data))
    assert HEADER in response.headers
    assert response.headers["Cache-Control"] == "no-store, private"
    response = client.get(f"/students/{sid}/legacy-write", headers={"X-User": "teacher"})
    assert response.get_json() == TEACHER_VIEW
    response = client.get(f"/students/{sid}/page", headers={"X-User": "teacher"})
    assert response.status_code == 500
    assert response.get_json()["error"] == "unredactable_response"
    assert_no_record_data(response.data)
    assert client.get("/health").data == b"ok"


def test_wsgi_view_exception_shows_no_debug_page(gk: Gatekeeper) -> None:
    # Werkzeug's debugger (outside the middleware) prints the exception, and
    # an application's message may quote the record it was working on.
    calls: list[str] = []
    wrapped = GatekeeperWSGIMiddleware(wsgi_app(calls), gatekeeper=gk, request_for=wsgi_request_for)
    errors = io.StringIO()
    client = Client(DebuggedApplication(wrapped, evalex=False))
    sid = STUDENT_OF["teacher"]
    for path in ("raise", "raise-late"):
        response = client.get(
            f"/students/{sid}/{path}", headers={"X-User": "teacher"}, errors_stream=errors
        )
        assert response.status_code == 500, path
        assert response.get_json()["error"] == "unredactable_response"
        assert response.headers[HEADER] == response.get_json()["decision_id"]
        assert_no_record_data(response.data)
    assert "ValueError" in errors.getvalue()  # logged on the server's error stream


def test_wsgi_size_cap_counts_write_callable(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = wsgi_client(gk, calls, max_body_bytes=50)
    sid = STUDENT_OF["teacher"]
    assert len(json.dumps(record(sid))) > 50
    response = client.get(f"/students/{sid}/write-only", headers={"X-User": "teacher"})
    assert response.status_code == 500
    assert response.get_json()["error"] == "unredactable_response"
    assert "larger than 50 bytes" in response.get_json()["message"]
    assert_no_record_data(response.data)


def test_wsgi_engine_down_is_a_503(gk: Gatekeeper) -> None:
    broken = Gatekeeper(engine=engine_down(gk.engine), audit=gk.audit)
    calls: list[str] = []
    client = wsgi_client(broken, calls)
    response = client.get(f"/students/{STUDENT_OF['teacher']}", headers={"X-User": "teacher"})
    assert response.status_code == 503
    body = response.get_json()
    assert body["reason"] == "engine_unreachable" and body["decision"] == "deny"
    assert calls == []
    response = client.get("/students/S001", headers={"X-User": "broken"})
    assert response.status_code == 500 and calls == []


# ------------------------------------------------------------------ Flask


def flask_request_for(req: Any) -> dict[str, Any] | None:
    return access_request(g.get("user"), req.view_args["student_id"])


#: The bodies an app's own after_request hook (registered before init_app) saw.
APP_HOOK_SAW: list[bytes] = []


def flask_app(gk: Gatekeeper, calls: list[str], *, global_builder: bool = False) -> Flask:
    app = Flask(__name__)

    @app.before_request
    def authenticate() -> None:  # the application's own login, registered first
        g.user = request.headers.get("X-User")

    @app.after_request
    def cache_for_cdn(response: Any) -> Any:  # registered first: Flask runs it after ours
        APP_HOOK_SAW.append(response.get_data())  # as a compressing hook would
        response.headers["Cache-Control"] = "public, max-age=300"
        response.headers["CDN-Cache-Control"] = "max-age=3600"
        return response

    records = FlaskGatekeeper(
        gatekeeper=gk,
        request_for=(
            (lambda req: flask_request_for(req) if req.view_args else None)
            if global_builder
            else None
        ),
    )
    records.init_app(app)

    @app.get("/students/<student_id>")
    @records.guarded(flask_request_for)
    def student(student_id: str) -> Any:
        calls.append(student_id)
        assert g.gatekeeper_decision.decision == "permit"
        return record(student_id)

    @app.get("/students/<student_id>/history")
    @records.guarded(flask_request_for)
    def history(student_id: str) -> Any:
        calls.append("history")
        return jsonify([record(student_id), record(student_id)])

    @app.get("/students/<student_id>/page")
    @records.guarded(flask_request_for)
    def page(student_id: str) -> Any:
        calls.append("page")
        return f"<p>{record(student_id)}</p>"

    @app.get("/students/<student_id>/file")
    @records.guarded(flask_request_for)
    def file(student_id: str) -> Response:
        calls.append("file")
        import io

        return send_file(io.BytesIO(json.dumps(record(student_id)).encode()), "application/json")

    @app.get("/students/<student_id>/missing")
    @records.guarded(flask_request_for)
    def missing(student_id: str) -> Any:
        calls.append("missing")
        return f"no record for {record(student_id)['home_address']}", 404

    @app.get("/students/<student_id>/raise")
    @records.guarded(flask_request_for)
    def broken(student_id: str) -> Any:
        calls.append("raise")
        raise ValueError(f"cannot render {record(student_id)}")

    @app.get("/unguarded-broken")
    def unguarded_broken() -> Any:
        return 1 // 0

    @app.get("/unguarded/<student_id>")
    def unguarded(student_id: str) -> Any:
        return {"ok": True}

    return app


def test_flask_deny_escalate_held(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = flask_app(gk, calls).test_client()
    expected = {"ice": (403, "deny"), "hsi_unreviewed": (403, "escalate")}
    expected["family_court"] = (409, "permit")
    for user, (status, decision) in expected.items():
        response = client.get(f"/students/{STUDENT_OF[user]}", headers={"X-User": user})
        assert response.status_code == status
        body = response.get_json()
        assert set(body) >= {"decision_id", "decision", "rules", "guidance"}
        assert body["decision"] == decision
        assert response.headers[HEADER] == body["decision_id"]
        assert_no_record_data(response.data)
    assert calls == []


def test_flask_permit_is_redacted(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = flask_app(gk, calls).test_client()
    sid = STUDENT_OF["teacher"]
    response = client.get(f"/students/{sid}", headers={"X-User": "teacher"})
    assert response.status_code == 200
    assert response.get_json() == TEACHER_VIEW
    assert response.headers["Content-Length"] == str(len(response.data))
    assert len(response.headers[HEADER]) == 32
    # The app's own hook set public caching (and a CDN's); the gatekeeper's runs last.
    assert response.headers["Cache-Control"] == "no-store, private"
    assert APP_HOOK_SAW[-1] == response.data  # it saw the redacted body only
    assert "CDN-Cache-Control" not in response.headers
    refused = client.get(f"/students/{STUDENT_OF['ice']}", headers={"X-User": "ice"})
    assert refused.status_code == 403  # a refusal passes the app's hook too
    assert refused.headers["Cache-Control"] == "no-store, private"
    assert "CDN-Cache-Control" not in refused.headers
    response = client.get(f"/students/{sid}/history", headers={"X-User": "teacher"})
    assert response.get_json() == [TEACHER_VIEW, TEACHER_VIEW]
    for path, status in (("page", 500), ("file", 500), ("missing", 404)):
        response = client.get(f"/students/{sid}/{path}", headers={"X-User": "teacher"})
        assert response.status_code == status, path
        assert response.is_json
        assert_no_record_data(response.data)
    assert calls == [sid, "history", "page", "file", "missing"]
    # a route without a builder is not touched
    response = client.get("/unguarded/S001")
    assert response.get_json() == {"ok": True} and HEADER not in response.headers


def test_flask_global_builder_decides_every_route(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = flask_app(gk, calls, global_builder=True).test_client()
    response = client.get(f"/unguarded/{STUDENT_OF['ice']}", headers={"X-User": "ice"})
    assert response.status_code == 403


def test_flask_view_exception_shows_no_debug_page(gk: Gatekeeper) -> None:
    # Debug mode propagates the exception to Werkzeug's debugger, which prints it.
    calls: list[str] = []
    app = flask_app(gk, calls)
    app.debug = True
    client = Client(DebuggedApplication(app, evalex=False))
    sid = STUDENT_OF["teacher"]
    response = client.get(f"/students/{sid}/raise", headers={"X-User": "teacher"})
    assert response.status_code == 500
    assert response.get_json()["error"] == "unredactable_response"
    assert response.headers[HEADER] == response.get_json()["decision_id"]
    assert_no_record_data(response.data)
    assert calls == ["raise"]
    # an unguarded route's exception is the application's own business
    app.testing = True
    with pytest.raises(ZeroDivisionError):
        app.test_client().get("/unguarded-broken")


def test_flask_failures_are_503_or_500(gk: Gatekeeper) -> None:
    calls: list[str] = []
    client = flask_app(gk, calls).test_client()
    assert gk.audit is not None
    gk.audit.close()
    response = client.get(f"/students/{STUDENT_OF['teacher']}", headers={"X-User": "teacher"})
    assert response.status_code == 503
    assert response.get_json()["reason"] == "audit_unavailable"
    response = client.get("/students/S001", headers={"X-User": "broken"})
    assert response.status_code == 500
    assert response.get_json()["error"] == "request_builder_failed"
    assert calls == []
