"""The Django middleware, through Django's test Client, configured by settings.

Real decisions: the embedded engine and a SQLite audit log in tmp_path.
This module is also the test URLconf (ROOT_URLCONF).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="gatekeeper-tests",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        USE_TZ=True,
    )
    django.setup()

from django.core.exceptions import ImproperlyConfigured
from django.http import FileResponse, HttpResponse, JsonResponse
from django.test import Client, override_settings
from django.urls import path

import gatekeeper
from gatekeeper import Gatekeeper
from tests.adapter_support import (
    STUDENT_OF,
    TEACHER_VIEW,
    access_request,
    assert_no_record_data,
    record,
)

HEADER = "X-Gatekeeper-Decision"
MIDDLEWARE = ["gatekeeper.adapters.django.GatekeeperMiddleware"]
CALLS: list[str] = []


def student(request: Any, student_id: str) -> JsonResponse:
    CALLS.append(student_id)
    assert request.gatekeeper_decision.decision == "permit"
    return JsonResponse(record(student_id))


def history(request: Any, student_id: str) -> JsonResponse:
    CALLS.append("history")
    return JsonResponse([record(student_id), record(student_id)], safe=False)


def page(request: Any, student_id: str) -> HttpResponse:
    CALLS.append("page")
    return HttpResponse(f"<p>{record(student_id)}</p>")


def download(request: Any, student_id: str) -> FileResponse:
    CALLS.append("download")
    import io
    import json

    return FileResponse(io.BytesIO(json.dumps(record(student_id)).encode()))


def health(request: Any) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("students/<str:student_id>", student),
    path("students/<str:student_id>/history", history),
    path("students/<str:student_id>/page", page),
    path("students/<str:student_id>/download", download),
    path("health", health),
]


def request_for(
    request: Any, view_func: Any, view_args: tuple[Any, ...], view_kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """The application's builder: the resolved view's kwargs and the (header) user."""
    if "student_id" not in view_kwargs:
        return None
    return access_request(request.headers.get("X-User"), view_kwargs["student_id"])


@pytest.fixture
def gk(tmp_path: Path) -> Iterator[Gatekeeper]:
    opened = gatekeeper.open(data_dir=tmp_path)
    CALLS.clear()
    yield opened
    opened.close()


def configured(gk: Gatekeeper | str, builder: Any = request_for) -> Any:
    return override_settings(
        MIDDLEWARE=MIDDLEWARE, GATEKEEPER={"GATEKEEPER": gk, "REQUEST_FOR": builder}
    )


def test_django_deny_escalate_held(gk: Gatekeeper) -> None:
    expected = {"ice": (403, "deny"), "hsi_unreviewed": (403, "escalate")}
    expected["family_court"] = (409, "permit")
    with configured(gk):
        client = Client()
        for user, (status, decision) in expected.items():
            response = client.get(f"/students/{STUDENT_OF[user]}", headers={"X-User": user})
            assert response.status_code == status
            body = response.json()
            assert set(body) >= {"decision_id", "decision", "rules", "guidance"}
            assert body["decision"] == decision
            assert response.headers[HEADER] == body["decision_id"]
            assert_no_record_data(response.content)
    assert CALLS == []


def test_django_permit_is_redacted(gk: Gatekeeper) -> None:
    sid = STUDENT_OF["teacher"]
    with configured(gk):
        client = Client()
        response = client.get(f"/students/{sid}", headers={"X-User": "teacher"})
        assert response.status_code == 200
        assert response.json() == TEACHER_VIEW
        assert len(response.headers[HEADER]) == 32
        assert response.headers["Cache-Control"] == "no-store, private"
        response = client.get(f"/students/{sid}/history", headers={"X-User": "teacher"})
        assert response.json() == [TEACHER_VIEW, TEACHER_VIEW]
        for view in ("page", "download"):
            response = client.get(f"/students/{sid}/{view}", headers={"X-User": "teacher"})
            assert response.status_code == 500
            assert response.json()["error"] == "unredactable_response"
            assert_no_record_data(response.content)
        assert client.get("/health").content == b"ok"
    assert CALLS == [sid, "history", "page", "download"]


def test_django_failures(gk: Gatekeeper) -> None:
    assert gk.audit is not None
    gk.audit.close()
    with configured(gk):
        client = Client()
        response = client.get(f"/students/{STUDENT_OF['teacher']}", headers={"X-User": "teacher"})
        assert response.status_code == 503
        assert response.json()["reason"] == "audit_unavailable"
        response = client.get("/students/S001", headers={"X-User": "broken"})
        assert response.status_code == 500
        assert response.json()["error"] == "request_builder_failed"
    assert CALLS == []


def test_django_settings_by_dotted_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEEPER_DATA_DIR", str(tmp_path))
    with configured("gatekeeper.open", f"{__name__}.request_for"):
        response = Client().get(f"/students/{STUDENT_OF['ice']}", headers={"X-User": "ice"})
        assert response.status_code == 403
    with (
        override_settings(MIDDLEWARE=MIDDLEWARE, GATEKEEPER={"REQUEST_FOR": request_for}),
        pytest.raises(ImproperlyConfigured, match="GATEKEEPER"),
    ):
        Client().get("/health")


def test_django_per_site_cache_never_serves_a_guarded_answer_again(gk: Gatekeeper) -> None:
    """Django's per-site cache (UpdateCacheMiddleware first, FetchFromCacheMiddleware
    last, the gatekeeper between): without a Cache-Control on guarded answers it
    cached the teacher's permitted record and served it to the next caller of
    the same URL before any decision (an ICE agent got the teacher's view;
    checked by removing the header). Django 5 skips ``no-store``; Django 4.2
    skips only ``private``: guarded answers carry both."""
    middleware = [
        "django.middleware.cache.UpdateCacheMiddleware",
        *MIDDLEWARE,
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with (
        configured(gk),
        override_settings(MIDDLEWARE=middleware, CACHES=caches, CACHE_MIDDLEWARE_SECONDS=600),
    ):
        from django.core.cache import caches as opened

        opened["default"].clear()
        client = Client()
        path = f"/students/{STUDENT_OF['teacher']}"
        assert client.get(path, headers={"X-User": "teacher"}).status_code == 200
        again = client.get(path, headers={"X-User": "ice"})
        assert again.status_code == 403, again.content
        assert again.json()["decision"] == "deny"
