"""Benchmark: a guarded lookup (decide + durable audit entry + redaction) against
the same lookup unguarded, measured in one run.

    python3 bench/guarded.py                  # 300 single lookups, 5 rosters
    python3 bench/guarded.py --rounds 1000 --rosters 10

The records live in an SQLite table read through SQLAlchemy Core (the
``gatekeeper.adapters.sqlalchemy`` source); the Gatekeeper is the embedded
default (regopy, SQLite audit log with synchronous=FULL, a generated key).

1. Single student: ``GuardedSource.get(request)`` against the same
   ``SqlAlchemySource.get(id)`` unguarded (baseline).
2. 1,000-student roster, two ways the product offers:
   a. ``GuardedSource.get_many``: one decision and one audit entry per
      student (how the guard API scopes a roster), then one query;
   b. one bulk decision (a teacher's roster, FERPA-1, as the proxy releases
      it): decide + audit once, one query, every record redacted;
   against the same 1,000-row query unguarded (baseline).

Prints medians and p99 for both sides and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The public cases are scenarios of their own day (as_of 2026-04-02): replayed
# as such, without the live as_of check (max_as_of_skew; subprocesses inherit it).
os.environ.setdefault("GATEKEEPER_MAX_AS_OF_SKEW", "off")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine  # noqa: E402

import gatekeeper  # noqa: E402
from gatekeeper.adapters.sqlalchemy import SqlAlchemySource, guarded_source  # noqa: E402
from gatekeeper.redact import Redactor  # noqa: E402

STUDENTS = 1000
AS_OF = "2026-04-02T10:00:00-07:00"
TEACHER = {
    "id": "E1001",
    "kind": "district_staff",
    "agency": "LAUSD",
    "role": "teacher_of_record",
    "identity_verified": True,
}
FIELDS = ["grades", "attendance", "home_address"]  # home_address is denied to a teacher


def build_table(path: Path, count: int) -> tuple[Any, Table]:
    engine = create_engine(f"sqlite:///{path}")
    meta = MetaData()
    students = Table(
        "students",
        meta,
        Column("student_id", String, primary_key=True),
        Column("name", String),
        Column("grade_level", Integer),
        Column("grades", String),
        Column("attendance", String),
        Column("home_address", String),
        Column("birth_country", String),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            students.insert(),
            [
                {
                    "student_id": f"S{i:05d}",
                    "name": f"Student {i}",
                    "grade_level": 1 + i % 12,
                    "grades": "math A; reading B+; science A-",
                    "attendance": f"{170 + i % 10}/180 days",
                    "home_address": f"{100 + i} Main St",
                    "birth_country": "never released",
                }
                for i in range(count)
            ],
        )
    return engine, students


def one_request(student_id: str) -> dict[str, Any]:
    return {
        "as_of": AS_OF,
        "channel": "internal",
        "requester": TEACHER,
        "purpose": "educational",
        "student": {"id": student_id, "age": 12},
        "fields": FIELDS,
    }


def roster_request() -> dict[str, Any]:
    return {
        "as_of": AS_OF,
        "channel": "internal",
        "requester": TEACHER,
        "purpose": "educational",
        "bulk": {"scope": "roster", "description": "homeroom"},
        "fields": FIELDS,
    }


def timed(fn: Callable[[int], object], rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        started = time.perf_counter_ns()
        fn(i)
        out.append((time.perf_counter_ns() - started) / 1000)
    return out


def p99(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * 0.99))]


def show(label: str, base: list[float], guarded: list[float], unit: str = "us") -> None:
    scale = 1000.0 if unit == "ms" else 1.0
    print(
        f"{label}\n"
        f"  unguarded lookup (baseline): median {statistics.median(base) / scale:10.1f} {unit}"
        f"  p99 {p99(base) / scale:10.1f} {unit}\n"
        f"  guarded lookup:              median {statistics.median(guarded) / scale:10.1f} {unit}"
        f"  p99 {p99(guarded) / scale:10.1f} {unit}\n"
        f"  ratio (median guarded / median unguarded) = "
        f"{statistics.median(guarded) / statistics.median(base):.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=300, help="single-student lookups")
    parser.add_argument("--rosters", type=int, default=5, help="1,000-student rosters")
    parser.add_argument("--students", type=int, default=STUDENTS, help="roster size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine, table = build_table(Path(tmp) / "sis.sqlite", args.students)
        gk = gatekeeper.open(data_dir=Path(tmp) / "gk")
        plain = SqlAlchemySource(engine, table, id_column="student_id")
        guarded = guarded_source(gk, engine, table, id_column="student_id")
        ids = [f"S{i:05d}" for i in range(args.students)]

        # Warm up both paths (the compiled pack, the connection pool, the log).
        for sid in ids[:20]:
            plain.get(sid, fields=FIELDS)
            assert set(guarded.get(one_request(sid)) or {}) == {"grades", "attendance"}

        base_one: list[float] = []
        guarded_one: list[float] = []
        for i in range(args.rounds):  # interleaved: the machine's noise hits both alike
            sid = ids[i % len(ids)]
            base_one += timed(lambda _i, s=sid: plain.get(s, fields=FIELDS), 1)
            guarded_one += timed(lambda _i, s=sid: guarded.get(one_request(s)), 1)
        show(f"single student ({args.rounds} lookups)", base_one, guarded_one)

        redactor = Redactor()

        def bulk(_i: int) -> list[dict[str, Any]]:
            decision = gk.decide(roster_request())
            assert decision.decision.value == "permit", decision.rules
            rows = [r for _sid, r in plain.get_many(ids, fields=decision.allowed_fields)]
            return redactor.redact_many(rows, decision.allowed_fields)

        def per_student(_i: int) -> None:
            roster = guarded.get_many(one_request(s) for s in ids)
            assert len(roster.records) == len(ids) and not roster.refused

        base_roster: list[float] = []
        bulk_roster: list[float] = []
        each_roster: list[float] = []
        for _ in range(args.rosters):
            base_roster += timed(lambda _i: list(plain.get_many(ids, fields=FIELDS)), 1)
            bulk_roster += timed(bulk, 1)
            each_roster += timed(per_student, 1)
        show(
            f"{len(ids):,}-student roster, one bulk decision ({args.rosters} rosters)",
            base_roster,
            bulk_roster,
            "ms",
        )
        show(
            f"{len(ids):,}-student roster, one decision per student, GuardedSource.get_many "
            f"({args.rosters} rosters)",
            base_roster,
            each_roster,
            "ms",
        )
        assert gk.audit is not None
        print(f"audit entries written: {gk.audit.size():,}")
        gk.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
