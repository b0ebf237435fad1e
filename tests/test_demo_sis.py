"""The demo SIS: deterministic data, and a real OneRoster 1.2 API on loopback (uvicorn)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gatekeeper.sis.data import DEFAULT_SEED, generate, open_database
from gatekeeper.sis.demo import DemoSISHandle, start_demo_sis
from tests.oneroster_support import PREFIX, SIS_TOKEN, STUDENTS, demo_db

__all__ = ["demo_db"]  # the fixture, re-exported for pytest


@pytest.fixture(scope="module")
def sis(demo_db: Path) -> Iterator[DemoSISHandle]:
    with start_demo_sis(db=demo_db, students=STUDENTS, token=SIS_TOKEN) as handle:
        yield handle


@pytest.fixture(scope="module")
def client(sis: DemoSISHandle) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sis.base_url, headers={"Authorization": f"Bearer {SIS_TOKEN}"}, timeout=30
    ) as c:
        yield c


def ids(response: httpx.Response, key: str = "users") -> list[str]:
    assert response.status_code == 200, response.text
    return [r["sourcedId"] for r in response.json()[key]]


# --------------------------------------------------------------------------- data


def test_generation_is_deterministic_and_seeded() -> None:
    a = generate(students=120, seed=5)
    assert a == generate(students=120, seed=5)
    assert a.students != generate(students=120, seed=6).students
    assert len(a.students) == len(a.demographics) == 120
    assert [d["sourcedId"] for d in a.demographics] == [s["sourcedId"] for s in a.students]
    enrolled = {e["user"]["sourcedId"] for e in a.enrollments if e["role"] == "student"}
    assert enrolled == {s["sourcedId"] for s in a.students}


def test_records_have_the_oneroster_shape_and_extension_fields() -> None:
    data = generate(students=50, seed=DEFAULT_SEED)
    student = data.students[0]
    for key in ("sourcedId", "status", "dateLastModified", "givenName", "familyName", "roles"):
        assert key in student
    assert student["roles"][0]["role"] == "student"
    for key in ("homeAddress", "homePhone", "marks", "attendance", "discipline", "allergies"):
        assert key in student["metadata"]
    demo = data.demographics[0]
    for key in ("birthDate", "countryOfBirthCode", "cityOfBirth", "stateOfBirthAbbreviation"):
        assert key in demo
    assert {o["type"] for o in data.orgs} == {"district", "school"}
    assert all(c["school"]["sourcedId"].startswith("sch-") for c in data.classes)


def test_database_is_reused_when_it_matches(tmp_path: Path) -> None:
    path = open_database(tmp_path / "d.sqlite", students=40, seed=1)
    stamp = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert open_database(path, students=40, seed=1).stat().st_mtime_ns == stamp
    open_database(path, students=41, seed=1)
    assert path.stat().st_mtime_ns != stamp


# --------------------------------------------------------------------------- API


def test_single_records(client: httpx.Client) -> None:
    user = client.get("/students/stu-00001").json()["user"]
    assert user["sourcedId"] == "stu-00001" and user["roles"][0]["role"] == "student"
    assert "homeAddress" in user["metadata"]
    assert client.get("/users/stu-00001").json()["user"] == user
    demo = client.get("/demographics/stu-00001").json()["demographics"]
    assert demo["sourcedId"] == "stu-00001" and "countryOfBirthCode" in demo
    teacher = client.get("/users/tch-0001").json()["user"]
    assert teacher["roles"][0]["role"] == "teacher"
    assert client.get("/students/tch-0001").status_code == 404  # a teacher is not a student
    missing = client.get("/students/stu-99999")
    assert missing.status_code == 404
    assert missing.json()["imsx_codeMajor"] == "failure"
    assert client.get("/schools/sch-01").json()["org"]["type"] == "school"


def test_paging_total_and_links(client: httpx.Client) -> None:
    first = client.get("/students", params={"limit": 7, "offset": 0})
    assert first.headers["X-Total-Count"] == str(STUDENTS)
    assert ids(first) == [f"stu-{n:05d}" for n in range(1, 8)]
    links = dict(
        (rel, url) for url, rel in re.findall(r'<([^>]*)>; rel="(\w+)"', first.headers["Link"])
    )
    assert set(links) == {"first", "next", "last"}
    assert "offset=7" in links["next"] and "limit=7" in links["next"]
    assert f"offset={(STUDENTS - 1) // 7 * 7}" in links["last"]
    second = client.get(links["next"])
    assert ids(second) == [f"stu-{n:05d}" for n in range(8, 15)]
    assert 'rel="prev"' in second.headers["Link"]
    assert "Content-Length" not in first.headers  # streamed
    everything = client.get("/students", params={"limit": STUDENTS})
    assert len(ids(everything)) == STUDENTS


def test_filter_sort_and_fields(client: httpx.Client) -> None:
    ninth = client.get("/students", params={"filter": "grades='09'", "limit": 5000})
    records = ninth.json()["users"]
    assert records and all(r["grades"] == ["09"] for r in records)
    assert ninth.headers["X-Total-Count"] == str(len(records))

    both = client.get(
        "/students", params={"filter": "grades='09' AND familyName='Garcia'", "limit": 5000}
    ).json()["users"]
    assert both and all(r["familyName"] == "Garcia" and r["grades"] == ["09"] for r in both)

    either = client.get(
        "/students", params={"filter": "grades='09' OR grades='10'", "limit": 5000}
    ).json()["users"]
    assert {r["grades"][0] for r in either} == {"09", "10"}

    contains = client.get("/students", params={"filter": "familyName~'ngu'", "limit": 5000})
    assert all("ngu" in r["familyName"].lower() for r in contains.json()["users"])

    newer = client.get(
        "/students", params={"filter": "dateLastModified>'2026-03-25'", "limit": 5000}
    ).json()["users"]
    assert newer and all(r["dateLastModified"] > "2026-03-25" for r in newer)

    mexico = client.get(
        "/demographics", params={"filter": "countryOfBirthCode='MX'", "limit": 5000}
    ).json()["demographics"]
    assert mexico and all(d["countryOfBirthCode"] == "MX" for d in mexico)

    ordered = client.get(
        "/students", params={"sort": "familyName", "orderBy": "desc", "limit": 50}
    ).json()["users"]
    names = [r["familyName"] for r in ordered]
    assert names == sorted(names, reverse=True)

    slim = client.get("/students", params={"fields": "sourcedId,givenName", "limit": 3})
    assert all(set(r) == {"sourcedId", "givenName"} for r in slim.json()["users"])
    # OneRoster: a field name the record does not have selects the whole record.
    whole = client.get("/students/stu-00002", params={"fields": "sourcedId,nosuchfield"})
    assert "metadata" in whole.json()["user"]


def test_bad_queries_are_400(client: httpx.Client) -> None:
    for params in (
        {"filter": "status"},
        {"filter": "status='active' XOR grades='09'"},
        {"limit": "0"},
        {"limit": "many"},
        {"offset": "-1"},
        {"sort": "a;drop"},
        {"sort": "familyName", "orderBy": "sideways"},
    ):
        response = client.get("/students", params=params)
        assert response.status_code == 400, params
        assert response.json()["imsx_codeMajor"] == "failure"


def test_nested_collections(client: httpx.Client) -> None:
    enrollments = client.get(
        "/enrollments", params={"filter": "class.sourcedId='cls-01-01-home-1'", "limit": 500}
    ).json()["enrollments"]
    expected = sorted(e["user"]["sourcedId"] for e in enrollments if e["role"] == "student")
    roster = client.get("/classes/cls-01-01-home-1/students", params={"limit": 500})
    assert sorted(ids(roster)) == expected and expected
    school = client.get("/schools/sch-02/students", params={"limit": 5000}).json()["users"]
    assert school and all(r["roles"][0]["org"]["sourcedId"] == "sch-02" for r in school)
    schools = client.get("/schools").json()["orgs"]
    assert schools and all(o["type"] == "school" for o in schools)
    assert client.get("/classes/nope/students").status_code == 404
    assert client.get("/classes", params={"limit": 1}).json()["classes"][0]["sourcedId"]


def test_token_required_and_requests_counted(sis: DemoSISHandle) -> None:
    before = sis.stats.count
    anonymous = httpx.get(sis.base_url + "/students/stu-00001")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = httpx.get(
        sis.base_url + "/students/stu-00001", headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    assert sis.stats.count == before + 2
    assert [s.authorization for s in sis.stats.recent(2)] == [False, False]
    stats = httpx.get(
        sis.url + "/_demo/stats", headers={"Authorization": f"Bearer {SIS_TOKEN}"}
    ).json()
    assert stats["requests"] == before + 2  # /_demo/* is not counted
    assert stats["recent"][-1]["path"] == PREFIX + "/students/stu-00001"


def test_cli_serves_on_an_ephemeral_port(tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_SIS_TOKEN": "cli-token"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gatekeeper", "demo-sis", "--port", "0", "--students", "80",
         "--db", str(tmp_path / "cli.sqlite")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"(http://\S+v1p2)", line)
        assert found, line + (process.stderr.read() if process.poll() is not None else "")
        response = httpx.get(
            found[1] + "/students", headers={"Authorization": "Bearer cli-token"}, timeout=10
        )
        assert response.headers["X-Total-Count"] == "80"
    finally:
        process.terminate()
        process.wait(10)
