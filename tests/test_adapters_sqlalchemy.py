"""RecordSource, GuardedSource and the SQLAlchemy source, on a real SQLite database.

Every SQL statement is captured: a refused request runs none, and a permitted
one selects only the columns holding allowed fields.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    select,
    text,
)

import gatekeeper
from gatekeeper import (
    AccessDenied,
    Gatekeeper,
    GuardedSource,
    InMemorySource,
    RecordSource,
    ReleaseHeld,
    RequestError,
    SourceError,
)
from gatekeeper.adapters.sqlalchemy import SqlAlchemySource, guarded_source
from tests.adapter_support import CASES, STUDENT_OF, USERS, access_request, record

metadata = MetaData()
students = Table(
    "students",
    metadata,
    Column("sid", String, primary_key=True),
    Column("given_name", String),
    Column("math_grade", String),
    Column("street", String),
    Column("birth_country", String),
    Column("internal_notes", String),
    Column("profile", JSON),
)
schools = Table(
    "schools", metadata, Column("id", Integer, primary_key=True), Column("name", String)
)
enrollments = Table(
    "enrollments",
    metadata,
    Column("student_no", Integer, primary_key=True),
    Column("sid", String, ForeignKey("students.sid")),
    Column("school_id", Integer, ForeignKey("schools.id")),
    Column("status", String),
)

FIELD_MAP = {
    "given_name": "name",
    "math_grade": "grades",
    "street": "home_address",
    "profile.phone": "phone",
}
IDS = sorted(set(STUDENT_OF.values()) | {"S002", "S003"})


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[Engine, list[str]]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'sis.sqlite'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(schools.insert().values(id=1, name="Roosevelt High"))
        for n, sid in enumerate(IDS):
            conn.execute(
                students.insert().values(
                    sid=sid,
                    given_name=f"Student {sid}",
                    math_grade="A",
                    street="1 Main St",
                    birth_country="MX",
                    internal_notes="counselor only",
                    profile={"phone": "555-0100", "nickname": "Ana"},
                )
            )
            conn.execute(
                enrollments.insert().values(student_no=100 + n, sid=sid, school_id=1, status="ok")
            )
    statements: list[str] = []
    event.listen(
        engine, "before_cursor_execute", lambda c, cur, stmt, *rest: statements.append(stmt)
    )
    yield engine, statements
    engine.dispose()


@pytest.fixture
def gk(tmp_path: Path) -> Iterator[Gatekeeper]:
    opened = gatekeeper.open(data_dir=tmp_path / "gk")
    yield opened
    opened.close()


def clerk(student_id: str) -> dict[str, Any]:
    request = copy.deepcopy(USERS["teacher"])
    request["requester"].update(id="E7", role="enrollment_clerk")
    request["student"]["id"] = student_id
    request["fields"] = ["name", "phone", "grades"]  # grades: outside a clerk's interest
    return request


def test_sqlalchemy_source_is_a_record_source(db: tuple[Engine, list[str]]) -> None:
    engine, _ = db
    source = SqlAlchemySource(engine, students, id_column="sid", field_map=FIELD_MAP)
    assert isinstance(source, RecordSource)
    assert isinstance(InMemorySource({}), RecordSource)
    assert source.get("nobody") is None
    with pytest.raises(SourceError, match="id column"):
        SqlAlchemySource(engine, students, id_column="student_id")


def test_permit_queries_only_allowed_columns_and_redacts(
    db: tuple[Engine, list[str]], gk: Gatekeeper
) -> None:
    engine, statements = db
    records = guarded_source(gk, engine, students, id_column="sid", field_map=FIELD_MAP)
    sid = STUDENT_OF["teacher"]
    assert records.get(access_request("teacher", sid)) == {"math_grade": "A"}
    [sql] = statements
    assert "math_grade" in sql
    for never in ("street", "birth_country", "internal_notes", "profile", "given_name"):
        assert never not in sql, never
    # a JSON column is selected for a nested allowed path, and only that path leaves
    assert records.get(clerk(sid)) == {
        "given_name": f"Student {sid}",
        "profile": {"phone": "555-0100"},
    }
    assert "birth_country" not in statements[-1]


@pytest.mark.parametrize(
    ("user", "error", "decision"),
    [
        ("ice", AccessDenied, "deny"),  # I-200 administrative warrant
        ("hsi_unreviewed", AccessDenied, "escalate"),
        ("family_court", ReleaseHeld, "permit"),  # NOTIFY_PARENT_PRE pending
    ],
)
def test_refusals_run_no_query(
    db: tuple[Engine, list[str]], gk: Gatekeeper, user: str, error: type[Exception], decision: str
) -> None:
    engine, statements = db
    records = guarded_source(gk, engine, students, id_column="sid", field_map=FIELD_MAP)
    with pytest.raises(error) as info:
        records.get(access_request(user, STUDENT_OF[user]))
    assert isinstance(info.value, AccessDenied)
    assert info.value.decision.decision == decision
    assert info.value.decision.audit is not None  # audited before refusing
    assert statements == []


def test_failures_run_no_query(db: tuple[Engine, list[str]], gk: Gatekeeper) -> None:
    engine, statements = db
    records = guarded_source(gk, engine, students, id_column="sid", field_map=FIELD_MAP)
    with pytest.raises(AccessDenied) as info:
        records.get(access_request("invalid", "S001"))
    assert info.value.decision.reason == "invalid_request"
    bulk = CASES["A23"]
    with pytest.raises(RequestError, match="student"):
        records.get(bulk)
    assert gk.audit is not None
    gk.audit.close()
    with pytest.raises(AccessDenied) as info:
        records.get(access_request("teacher", STUDENT_OF["teacher"]))
    assert info.value.decision.reason == "audit_unavailable"
    assert statements == []


def test_database_errors_become_source_errors(db: tuple[Engine, list[str]], gk: Gatekeeper) -> None:
    engine, _ = db
    records = guarded_source(gk, engine, students, id_column="sid", field_map=FIELD_MAP)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE enrollments"))
        conn.execute(text("DROP TABLE students"))
    with pytest.raises(SourceError) as info:
        records.get(access_request("teacher", STUDENT_OF["teacher"]))
    assert info.value.reason == "source_error"
    assert isinstance(info.value, gatekeeper.GatekeeperError)


def test_select_with_join_and_integer_ids(db: tuple[Engine, list[str]], gk: Gatekeeper) -> None:
    engine, statements = db
    query = (
        select(
            enrollments.c.student_no,
            students.c.math_grade,
            students.c.street,
            schools.c.name.label("school"),
        )
        .join(students, students.c.sid == enrollments.c.sid)
        .join(schools, schools.c.id == enrollments.c.school_id)
        .where(enrollments.c.status == "ok")
    )
    source = SqlAlchemySource(engine, query, id_column="student_no", field_map=FIELD_MAP)
    records = GuardedSource(gk, source)
    sid = STUDENT_OF["teacher"]
    number = str(100 + IDS.index(sid))
    assert records.get(access_request("teacher", number)) == {"math_grade": "A"}
    assert "street" not in statements[-1] and "status" in statements[-1]  # filter kept
    assert records.get(access_request("teacher", "not-a-number")) is None
    assert records.get(access_request("teacher", "999")) is None


def test_integer_ids_match_only_their_own_spelling(
    db: tuple[Engine, list[str]], gk: Gatekeeper
) -> None:
    # The decision (and its audit entry) is about the id as asked: "0100" or
    # "1_00" is not student 100, whose own request may well be refused.
    engine, _statements = db
    source = SqlAlchemySource(engine, enrollments, id_column="student_no", field_map=FIELD_MAP)
    records = GuardedSource(gk, source)
    number = str(100 + IDS.index(STUDENT_OF["teacher"]))
    assert records.get(access_request("teacher", number)) is not None
    for alias in ("0" + number, f" {number}", "+" + number, f"{number[0]}_{number[1:]}",
                  "\uff11" + number[1:]):  # fmt: skip
        assert records.get(access_request("teacher", alias)) is None, alias
    alias = "0" + number
    roster = records.get_many([access_request("teacher", number), access_request("teacher", alias)])
    assert set(roster.records) == {number} and roster.missing == (alias,)


def test_roster_decides_each_student_then_queries_once(
    db: tuple[Engine, list[str]], gk: Gatekeeper
) -> None:
    engine, statements = db
    records = guarded_source(gk, engine, students, id_column="sid", field_map=FIELD_MAP)
    requests = [
        access_request("teacher", "S001"),
        access_request("teacher", "S003"),
        access_request("teacher", "S404"),  # permitted, not in the SIS
        access_request("ice", STUDENT_OF["ice"]),
        access_request("family_court", STUDENT_OF["family_court"]),
    ]
    roster = records.get_many(requests)
    assert roster.records == {"S001": {"math_grade": "A"}, "S003": {"math_grade": "A"}}
    assert roster.missing == ("S404",)
    assert roster.refused == (STUDENT_OF["ice"], STUDENT_OF["family_court"])
    assert roster.decisions[STUDENT_OF["ice"]].decision == "deny"
    assert len(roster.decisions) == 5
    [sql] = statements  # one query, for the permitted students only
    assert "IN" in sql and "street" not in sql
    with pytest.raises(RequestError, match="twice"):
        records.get_many([access_request("teacher", "S001")] * 2)


def test_in_memory_source_through_the_guard(gk: Gatekeeper) -> None:
    sid = STUDENT_OF["teacher"]
    records = GuardedSource(gk, InMemorySource({sid: record(sid)}))
    assert records.get(access_request("teacher", sid)) == {"grades": {"math": "A", "history": "B+"}}
    roster = records.get_many([access_request("teacher", sid)])
    assert roster.records == {sid: {"grades": {"math": "A", "history": "B+"}}}


def test_the_core_imports_no_framework_or_driver() -> None:
    code = (
        "import sys, gatekeeper, gatekeeper.source\n"
        "bad = {'sqlalchemy', 'starlette', 'fastapi', 'flask', 'django', 'werkzeug'}\n"
        "loaded = sorted(bad & {m.split('.')[0] for m in sys.modules})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
