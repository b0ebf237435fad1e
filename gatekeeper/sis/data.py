"""Synthetic OneRoster 1.2 data for the demo SIS: deterministic from a seed.

    >>> from gatekeeper.sis.data import generate
    >>> data = generate(students=60, seed=7)
    >>> len(data.students), data.students[0]["sourcedId"], data.students[0]["roles"][0]["role"]
    (60, 'stu-00001', 'student')
    >>> generate(students=60, seed=7).students == data.students
    True

Records are the OneRoster 1.2 shapes (users, demographics, orgs, classes,
enrollments). Everything OneRoster has no field for sits in ``metadata``,
as real SIS extensions do: home address, phones, guardians, emergency
contacts, marks, attendance, discipline, health, home language, bus route,
photo, and one key no mapping names (``lunchProgram``), which a proxy must
drop. Demographics carry ``countryOfBirthCode``, ``cityOfBirth`` and
``stateOfBirthAbbreviation``. All names, addresses and phone numbers are
made up (phones are 555 numbers).
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_STUDENTS",
    "GENERATOR_VERSION",
    "DemoDataset",
    "build_database",
    "generate",
    "open_database",
]

DEFAULT_SEED: Final = 20260402
DEFAULT_STUDENTS: Final = 3000
GENERATOR_VERSION: Final = "1"
_PREFIX: Final = "/ims/oneroster/rostering/v1p2"
_SCHOOL_YEAR_START: Final = date(2025, 8, 18)
_SCHOOL_YEAR_END: Final = date(2026, 6, 12)

_GIVEN = (
    "Ana", "Luis", "Maria", "Jose", "Sofia", "Mateo", "Camila", "Diego", "Valeria", "Emma",
    "Liam", "Olivia", "Noah", "Ava", "Ethan", "Mia", "Lucas", "Isabella", "Aiden", "Chloe",
    "Minh", "Linh", "Wei", "Mei", "Hyun", "Ji-woo", "Arjun", "Priya", "Omar", "Fatima",
    "Kofi", "Amara", "Tariq", "Leila", "Nikolai", "Anya", "Malia", "Kai", "Tenzin", "Yara",
    "Gabriel", "Daniela", "Samuel", "Lucia", "Elijah", "Zoe", "Mason", "Nora", "Jayden", "Ruby",
)  # fmt: skip
_FAMILY = (
    "Garcia", "Hernandez", "Lopez", "Martinez", "Gonzalez", "Rodriguez", "Perez", "Sanchez",
    "Ramirez", "Torres", "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis",
    "Nguyen", "Tran", "Le", "Kim", "Park", "Lee", "Chen", "Wang", "Patel", "Singh", "Khan",
    "Ali", "Mensah", "Okafor", "Haddad", "Ivanova", "Petrov", "Cohen", "Silva", "Santos",
    "Reyes", "Flores", "Morales", "Cruz", "Ortiz", "Gutierrez", "Chavez", "Ramos", "Vargas",
)  # fmt: skip
_STREETS = (
    "Elm St", "Oak Ave", "Maple Dr", "Cedar Ln", "Pine St", "Sunset Blvd", "Vermont Ave",
    "Figueroa St", "Alvarado St", "Hoover St", "Main St", "Broadway", "Olympic Blvd", "3rd St",
)  # fmt: skip
_CITIES = ("Riverside", "Eastvale", "Mira Loma", "Jurupa Valley", "Norco")
_SCHOOL_NAMES = (
    "Cesar Chavez", "Dolores Huerta", "Sally Ride", "Jackie Robinson", "Fred Korematsu",
    "Ellen Ochoa", "Harvey Milk", "Maya Angelou", "Sylvia Mendez", "Bayard Rustin",
)  # fmt: skip
#: (country code, weight, cities) — the country of birth mix of a large urban district.
_BIRTH: Final = (
    ("US", 78, ("Los Angeles", "Riverside", "San Bernardino", "Phoenix", "Houston")),
    ("MX", 9, ("Guadalajara", "Puebla", "Oaxaca", "Tijuana")),
    ("GT", 3, ("Guatemala City", "Quetzaltenango")),
    ("SV", 3, ("San Salvador", "Santa Ana")),
    ("HN", 2, ("Tegucigalpa", "San Pedro Sula")),
    ("PH", 1, ("Manila", "Cebu")),
    ("VN", 1, ("Ho Chi Minh City", "Hanoi")),
    ("KR", 1, ("Seoul", "Busan")),
    ("IN", 1, ("Delhi", "Chennai")),
    ("UA", 1, ("Kyiv", "Lviv")),
)
_LANGUAGE: Final = {
    "US": ("English", "English", "English", "Spanish"),
    "MX": ("Spanish",),
    "GT": ("Spanish", "K'iche'"),
    "SV": ("Spanish",),
    "HN": ("Spanish",),
    "PH": ("Tagalog", "English"),
    "VN": ("Vietnamese",),
    "KR": ("Korean",),
    "IN": ("Hindi", "Tamil"),
    "UA": ("Ukrainian",),
}
_LEVELS: Final = (
    ("Elementary School", ("KG", "01", "02", "03", "04", "05"), ("Homeroom",)),
    (
        "Middle School",
        ("06", "07", "08"),
        ("Mathematics", "English Language Arts", "Science", "Social Studies", "Physical Education"),
    ),
    (
        "High School",
        ("09", "10", "11", "12"),
        ("Mathematics", "English", "Biology", "World History", "Physical Education"),
    ),
)
_MARKS = ("A", "A-", "B+", "B", "B-", "C+", "C", "D", "F")
_ALLERGIES = ("peanuts", "tree nuts", "shellfish", "penicillin", "latex", "bee stings")
_MEDICATIONS = ("albuterol inhaler", "EpiPen", "methylphenidate", "insulin")
_INCIDENTS = ("tardiness", "disruption", "dress code", "fighting", "phone use")


@dataclass(frozen=True, slots=True)
class DemoDataset:
    """The generated records, in OneRoster 1.2 shape."""

    seed: int
    orgs: list[dict[str, Any]] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(default_factory=list)
    students: list[dict[str, Any]] = field(default_factory=list)
    teachers: list[dict[str, Any]] = field(default_factory=list)
    demographics: list[dict[str, Any]] = field(default_factory=list)
    enrollments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def schools(self) -> list[dict[str, Any]]:
        return [o for o in self.orgs if o["type"] == "school"]

    def student(self, sourced_id: str) -> dict[str, Any]:
        for record in self.students:
            if record["sourcedId"] == sourced_id:
                return record
        raise KeyError(sourced_id)


def _ref(kind: str, sourced_id: str, path: str) -> dict[str, str]:
    return {"href": f"{_PREFIX}/{path}/{sourced_id}", "sourcedId": sourced_id, "type": kind}


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible on purpose
        self.clock = datetime(2026, 3, 1, 8, 0, 0)

    def stamp(self) -> str:
        moment = self.clock + timedelta(seconds=self.rng.randrange(0, 30 * 86400))
        return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def phone(self) -> str:
        area = self.rng.choice(("213", "323", "951", "909"))
        return f"({area}) 555-{self.rng.randrange(100, 200):04d}"

    def person(self) -> tuple[str, str]:
        return self.rng.choice(_GIVEN), self.rng.choice(_FAMILY)


def _birth_date(gen: _Gen, grade: str) -> date:
    level = 0 if grade == "KG" else int(grade)
    # Five by 1 September of the school year's start, for kindergarten.
    latest = date(2025 - 5 - level, 9, 1)
    return latest - timedelta(days=gen.rng.randrange(0, 365))


def _student_metadata(
    gen: _Gen, family: str, country: str, subjects: tuple[str, ...]
) -> dict[str, Any]:
    rng = gen.rng
    guardians = []
    for relationship in rng.sample(
        ("mother", "father", "guardian", "grandmother"), rng.randint(1, 2)
    ):
        given, _ = gen.person()
        guardians.append(
            {
                "name": f"{given} {family}",
                "relationship": relationship,
                "phone": gen.phone(),
                "email": f"{given.lower()}.{family.lower()}@example.net",
            }
        )
    days = (date(2026, 4, 2) - _SCHOOL_YEAR_START).days * 5 // 7
    absent = min(days, int(rng.expovariate(1 / 5)))
    return {
        "homeAddress": {
            "line1": f"{rng.randrange(100, 9999)} {rng.choice(_STREETS)}",
            "city": rng.choice(_CITIES),
            "state": "CA",
            "postalCode": f"92{rng.randrange(500, 999):03d}",
        },
        "homePhone": gen.phone(),
        "guardians": guardians,
        "emergencyContacts": [
            {"name": " ".join(gen.person()), "relationship": "aunt/uncle", "phone": gen.phone()}
        ],
        "marks": {subject: rng.choice(_MARKS) for subject in subjects},
        "attendance": {"daysEnrolled": days, "daysAbsent": absent, "tardies": rng.randrange(0, 8)},
        "discipline": [
            {
                "date": str(_SCHOOL_YEAR_START + timedelta(days=rng.randrange(0, 200))),
                "incident": rng.choice(_INCIDENTS),
                "action": rng.choice(("warning", "detention", "parent conference")),
            }
            for _ in range(rng.choice((0, 0, 0, 0, 1, 2)))
        ],
        "allergies": rng.sample(_ALLERGIES, rng.choice((0, 0, 0, 1, 2))),
        "medications": rng.sample(_MEDICATIONS, rng.choice((0, 0, 0, 0, 0, 1))),
        "immunizations": rng.choice(("complete", "complete", "complete", "incomplete")),
        "iep": rng.random() < 0.12,
        "homeLanguage": rng.choice(_LANGUAGE[country]),
        "busRoute": rng.choice((None, None, f"R{rng.randrange(1, 40):02d}")),
        "busStop": f"{rng.choice(_STREETS)} & {rng.choice(_STREETS)}",
        "photo": f"https://photos.invalid/students/{rng.randrange(10**8):08d}.jpg",
        "lunchProgram": rng.choice(("free", "reduced", "paid", "paid")),
    }


def generate(*, students: int = DEFAULT_STUDENTS, seed: int = DEFAULT_SEED) -> DemoDataset:
    """A district of ``students`` students; the same seed gives the same records."""
    if not 1 <= students <= 200_000:
        raise ValueError("students must be between 1 and 200000")
    gen = _Gen(seed)
    rng = gen.rng
    data = DemoDataset(seed=seed)
    district = "org-district"
    data.orgs.append(
        {
            "sourcedId": district,
            "status": "active",
            "dateLastModified": gen.stamp(),
            "name": "Riverside Unified School District (demo)",
            "type": "district",
            "identifier": "RUSD",
            "children": [],
        }
    )
    n_schools = max(3, math.ceil(students / 500))
    schools: list[tuple[str, int]] = []  # (sourcedId, level index)
    for i in range(n_schools):
        level = i % 3
        sid = f"sch-{i + 1:02d}"
        schools.append((sid, level))
        name = f"{_SCHOOL_NAMES[i % len(_SCHOOL_NAMES)]} {_LEVELS[level][0]}"
        data.orgs.append(
            {
                "sourcedId": sid,
                "status": "active",
                "dateLastModified": gen.stamp(),
                "name": name,
                "type": "school",
                "identifier": f"{100 + i}",
                "parent": _ref("org", district, "orgs"),
            }
        )
        data.orgs[0]["children"].append(_ref("org", sid, "orgs"))

    # Students: a school, then a grade of that school's level.
    roster: dict[tuple[str, str], list[int]] = {}
    placed: list[tuple[str, str, int]] = []
    for n in range(students):
        sid, level = schools[rng.randrange(n_schools)]
        grade = rng.choice(_LEVELS[level][1])
        placed.append((sid, grade, level))
        roster.setdefault((sid, grade), []).append(n)

    # Classes: sections of ~25 per grade and subject; one teacher per class.
    class_of: dict[int, list[str]] = {}
    teacher_n = 0
    term = _ref("academicSession", "term-2025-26", "terms")
    for (sid, grade), members in sorted(roster.items()):
        level = next(lv for s, lv in schools if s == sid)
        subjects = _LEVELS[level][2]
        sections = max(1, math.ceil(len(members) / 25))
        for subject in subjects:
            for section in range(sections):
                cid = f"cls-{sid[4:]}-{grade}-{subject[:4].lower()}-{section + 1}"
                teacher_n += 1
                tid = f"tch-{teacher_n:04d}"
                given, family = gen.person()
                data.teachers.append(
                    {
                        "sourcedId": tid,
                        "status": "active",
                        "dateLastModified": gen.stamp(),
                        "enabledUser": True,
                        "username": f"{given.lower()}.{family.lower()}{teacher_n}",
                        "givenName": given,
                        "familyName": family,
                        "roles": [
                            {
                                "roleType": "primary",
                                "role": "teacher",
                                "org": _ref("org", sid, "orgs"),
                            }
                        ],
                        "email": f"{given.lower()}.{family.lower()}{teacher_n}@rusd.invalid",
                        "identifier": f"T{teacher_n:05d}",
                    }
                )
                data.classes.append(
                    {
                        "sourcedId": cid,
                        "status": "active",
                        "dateLastModified": gen.stamp(),
                        "title": f"{subject} {grade} ({chr(65 + section)})",
                        "classCode": f"{subject[:4].upper()}-{grade}-{section + 1}",
                        "classType": "homeroom" if subject == "Homeroom" else "scheduled",
                        "location": f"Room {rng.randrange(100, 400)}",
                        "grades": [grade],
                        "subjects": [subject],
                        "course": _ref(
                            "course", f"crs-{sid[4:]}-{subject[:4].lower()}-{grade}", "courses"
                        ),
                        "school": _ref("org", sid, "orgs"),
                        "terms": [term],
                        "periods": [str(subjects.index(subject) + 1)],
                    }
                )
                data.enrollments.append(
                    {
                        "sourcedId": f"enr-{tid}-{cid}",
                        "status": "active",
                        "dateLastModified": gen.stamp(),
                        "user": _ref("user", tid, "users"),
                        "class": _ref("class", cid, "classes"),
                        "school": _ref("org", sid, "orgs"),
                        "role": "teacher",
                        "primary": True,
                        "beginDate": str(_SCHOOL_YEAR_START),
                        "endDate": str(_SCHOOL_YEAR_END),
                    }
                )
                for n in members[section::sections]:
                    class_of.setdefault(n, []).append(cid)

    for n, (sid, grade, level) in enumerate(placed):
        stu = f"stu-{n + 1:05d}"
        given, family = gen.person()
        middle = rng.choice((None, *_GIVEN[:10]))
        codes, weights, cities = zip(*_BIRTH, strict=True)
        country = rng.choices(codes, weights)[0]
        city = rng.choice(cities[codes.index(country)])
        number = 100000 + n + 1
        record: dict[str, Any] = {
            "sourcedId": stu,
            "status": "active",
            "dateLastModified": gen.stamp(),
            "metadata": _student_metadata(gen, family, country, _LEVELS[level][2]),
            "userMasterIdentifier": f"RUSD{number}",
            "username": f"{given.lower()}.{family.lower()}{number}",
            "userIds": [{"type": "studentNumber", "identifier": str(number)}],
            "enabledUser": True,
            "givenName": given,
            "familyName": family,
            "roles": [{"roleType": "primary", "role": "student", "org": _ref("org", sid, "orgs")}],
            "primaryOrg": _ref("org", sid, "orgs"),
            "identifier": str(number),
            "email": f"{given.lower()}.{family.lower()}{number}@students.rusd.invalid",
            "grades": [grade],
        }
        if middle:
            record["middleName"] = middle
        data.students.append(record)
        born_us = country == "US"
        data.demographics.append(
            {
                "sourcedId": stu,
                "status": "active",
                "dateLastModified": record["dateLastModified"],
                "birthDate": str(_birth_date(gen, grade)),
                "sex": rng.choice(("female", "male", "female", "male", "other")),
                "americanIndianOrAlaskaNative": rng.random() < 0.01,
                "asian": country in ("PH", "VN", "KR", "IN") or rng.random() < 0.08,
                "blackOrAfricanAmerican": rng.random() < 0.08,
                "nativeHawaiianOrOtherPacificIslander": rng.random() < 0.01,
                "white": rng.random() < 0.3,
                "demographicRaceTwoOrMoreRaces": rng.random() < 0.05,
                "hispanicOrLatinoEthnicity": country in ("MX", "GT", "SV", "HN")
                or rng.random() < 0.4,
                "countryOfBirthCode": country,
                "stateOfBirthAbbreviation": rng.choice(("CA", "CA", "CA", "AZ", "TX"))
                if born_us
                else "",
                "cityOfBirth": city,
                "publicSchoolResidenceStatus": rng.choice(("01652", "01652", "01653")),
            }
        )
        for cid in class_of.get(n, []):
            data.enrollments.append(
                {
                    "sourcedId": f"enr-{stu}-{cid}",
                    "status": "active",
                    "dateLastModified": gen.stamp(),
                    "user": _ref("user", stu, "users"),
                    "class": _ref("class", cid, "classes"),
                    "school": _ref("org", sid, "orgs"),
                    "role": "student",
                    "primary": False,
                    "beginDate": str(_SCHOOL_YEAR_START),
                    "endDate": str(_SCHOOL_YEAR_END),
                }
            )
    return data


# --------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    kind TEXT NOT NULL,          -- user, demographics, org, class, enrollment
    sourced_id TEXT NOT NULL,
    seq INTEGER NOT NULL,        -- the default order
    role TEXT,                   -- user: student/teacher; org: school/district; enrollment: role
    school_id TEXT,
    class_id TEXT,
    user_id TEXT,
    doc TEXT NOT NULL,           -- the record, JSON
    PRIMARY KEY (kind, sourced_id)
);
CREATE INDEX records_kind_role ON records (kind, role, seq);
CREATE INDEX records_school ON records (kind, school_id, seq);
CREATE INDEX records_class ON records (kind, class_id, role);
"""


def _rows(data: DemoDataset) -> Iterator[tuple[Any, ...]]:
    seq = 0

    def row(
        kind: str,
        rec: dict[str, Any],
        role: str | None,
        school: str | None,
        klass: str | None = None,
        user: str | None = None,
    ) -> tuple[Any, ...]:
        nonlocal seq
        seq += 1
        doc = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
        return (kind, rec["sourcedId"], seq, role, school, klass, user, doc)

    for org in data.orgs:
        yield row("org", org, org["type"], org["sourcedId"])
    for cls in data.classes:
        yield row("class", cls, None, cls["school"]["sourcedId"])
    for user in (*data.students, *data.teachers):
        role = user["roles"][0]
        yield row("user", user, role["role"], role["org"]["sourcedId"])
    for demo in data.demographics:
        yield row("demographics", demo, "student", None)
    for enr in data.enrollments:
        school, klass, user = (enr[k]["sourcedId"] for k in ("school", "class", "user"))
        yield row("enrollment", enr, enr["role"], school, klass, user)


def build_database(path: str | Path, data: DemoDataset, *, students: int) -> Path:
    """Write ``data`` into a new SQLite file at ``path`` (replacing any file there)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial)
    try:
        conn.executescript(_SCHEMA)
        conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _rows(data))
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("seed", str(data.seed)), ("students", str(students)), ("version", GENERATOR_VERSION)],
        )
        conn.commit()
    finally:
        conn.close()
    partial.replace(target)
    return target


def _matches(path: Path, students: int, seed: int) -> bool:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return meta == {"seed": str(seed), "students": str(students), "version": GENERATOR_VERSION}


def open_database(
    path: str | Path, *, students: int = DEFAULT_STUDENTS, seed: int = DEFAULT_SEED
) -> Path:
    """The demo database at ``path``: reused when it holds the same seed and size, else built."""
    target = Path(path)
    if target.exists() and _matches(target, students, seed):
        return target
    return build_database(target, generate(students=students, seed=seed), students=students)
