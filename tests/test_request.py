"""Tests for gatekeeper.request: strict parsing, round trips and the policy input."""

from __future__ import annotations

import copy
import dataclasses
import doctest
import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper import request as request_module
from gatekeeper.errors import RequestError
from gatekeeper.request import (
    MAX_REQUEST_BYTES,
    AccessRequest,
    LegalBasis,
    parse_request,
)

CASES_FILE = Path("/work/shared/cases/public.jsonl")
if not CASES_FILE.exists():  # the shared tree next to the checkout
    CASES_FILE = Path(__file__).resolve().parents[2] / "shared" / "cases" / "public.jsonl"
PUBLIC_CASES: list[dict[str, Any]] = [
    json.loads(line) for line in CASES_FILE.read_text(encoding="utf-8").splitlines() if line
]

LA_2026_04_01 = (date(2026, 4, 1) - date(1970, 1, 1)).days
LA_2026_04_02 = LA_2026_04_01 + 1

BASE: dict[str, Any] = {
    "request_id": "T1",
    "as_of": "2026-04-02T10:00:00-07:00",
    "channel": "internal",
    "requester": {"id": "E1", "kind": "district_staff", "role": "counselor"},
    "purpose": "educational",
    "student": {"id": "S1", "age": 12},
    "fields": ["grades", "attendance", "transcript", "iep"],
}

FULL: dict[str, Any] = {
    "request_id": "F1",
    "as_of": "2026-04-02T10:00:00-07:00",
    "channel": "in_person",
    "requester": {
        "id": "badge 1",
        "name": "Officer Name",
        "kind": "law_enforcement",
        "agency": "LAPD",
        "role": "detective",
        "identity_verified": True,
    },
    "on_behalf_of": "ICE-ERO",
    "task_force": ["HSI", "FBI"],
    "purpose": "criminal_investigation",
    "purpose_text": "SECRET-PURPOSE-TEXT",
    "student": {
        "id": "S9",
        "name": "SECRET-STUDENT-NAME",
        "dob": "2010-06-02",
        "grade": "10",
        "status": "former",
        "guardian_ids": ["P1", "P2"],
        "flags": ["dir_optout", "homeless"],
    },
    "fields": ["attendance", "home_address", "attendance"],
    "legal_basis": {
        "type": "judicial_subpoena",
        "jurisdiction": "CA",
        "issuing_court": "Superior Court",
        "signed_by": "clerk",
        "judge": "Hon. J. Doe",
        "seal": True,
        "case_no": "BA-1",
        "issued": "2026-03-30",
        "execute_by": "2026-04-09",
        "return_date": "2026-04-30",
        "named_students": [{"id": "S9"}, {"name": "SECRET-NAMED", "dob": "2010-06-02"}],
        "fields_in_scope": [],
        "nondisclosure_order": True,
        "directs_lea": True,
    },
    "legal_review": "pending",
    "consent": {
        "signed_by_role": "guardian",
        "signed": True,
        "dated": "2026-03-01",
        "records": ["all"],
        "purpose": "criminal_investigation",
        "recipient": "LAPD",
        "received_via": "presented_by_requester",
        "verified_with_rightholder": True,
        "revoked_on": "2026-03-20",
        "signer_in_custody": True,
    },
    "emergency": {
        "asserted_by": "teacher on site",
        "facts": "SECRET-FACTS",
        "district_determination": "articulable_significant_threat",
    },
    "vendor": {
        "id": "v1",
        "contract_ref": "C-1",
        "contract_49073_1_compliant": True,
        "contracted_purposes": ["route_planning"],
        "contracted_fields": ["bus_stop"],
        "board_review_flag": True,
        "enforcement_linked": True,
    },
}

# docs/policy-input.md, key by key
POLICY_KEYS = {
    "request_id", "as_of_ns", "as_of_day", "channel", "requester", "on_behalf_of",
    "task_force", "purpose", "is_bulk", "student", "bulk", "fields", "legal_basis",
    "legal_review", "consent", "emergency", "vendor",
}  # fmt: skip
REQUESTER_KEYS = {"id", "id_key", "kind", "agency", "role", "identity_verified"}
STUDENT_KEYS = {"id", "name_key", "dob_day", "age", "grade", "status", "guardian_ids", "flags"}
BULK_KEYS = {"scope", "grades"}
LEGAL_BASIS_KEYS = {
    "type", "jurisdiction", "issuing_court", "signed_by", "judge", "seal", "case_no",
    "issued_day", "execute_by_day", "return_day", "named_students", "fields_in_scope",
    "nondisclosure_order", "directs_lea",
}  # fmt: skip
NAMED_STUDENT_KEYS = {"id", "name_key", "dob_day"}
CONSENT_KEYS = {
    "signed_by_role", "signed", "dated_day", "records", "purpose", "recipient",
    "received_via", "verified_with_rightholder", "revoked_day", "signer_in_custody",
}  # fmt: skip
EMERGENCY_KEYS = {"asserted_by", "district_determination"}
VENDOR_KEYS = {
    "id", "contract_ref", "compliant", "contracted_purposes", "contracted_fields",
    "board_review_flag", "enforcement_linked",
}  # fmt: skip


def request_with(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes; a value of ``...`` deletes the key."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = data
        for key in parents:
            target = target.setdefault(key, {})
        if value is ...:
            target.pop(last, None)
        else:
            target[last] = value
    return data


def assert_json_types(value: Any, path: str = "") -> None:
    """Only JSON types (no floats, no tuples, string keys) anywhere in ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), path
            assert_json_types(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_json_types(item, f"{path}[{index}]")
    else:
        assert value is None or type(value) in (str, int, bool), (path, value)


def assert_policy_shape(policy: dict[str, Any]) -> None:
    assert_json_types(policy)
    assert set(policy) == POLICY_KEYS
    assert set(policy["requester"]) == REQUESTER_KEYS
    assert set(policy["student"]) == STUDENT_KEYS
    assert set(policy["legal_basis"]) == LEGAL_BASIS_KEYS
    for named in policy["legal_basis"]["named_students"]:
        assert set(named) == NAMED_STUDENT_KEYS
    for key, keys in (
        ("bulk", BULK_KEYS),
        ("consent", CONSENT_KEYS),
        ("emergency", EMERGENCY_KEYS),
        ("vendor", VENDOR_KEYS),
    ):
        assert policy[key] is None or set(policy[key]) == keys
    assert policy["is_bulk"] is (policy["bulk"] is not None)
    assert len(policy["fields"]) == len(set(policy["fields"]))
    assert type(policy["as_of_ns"]) is int and type(policy["as_of_day"]) is int


def test_null_means_absent() -> None:
    # null is "not given": the conservative default applies, as for an absent key.
    with_null = parse_request(request_with(legal_basis={"type": "court_order", "seal": None}))
    without = parse_request(request_with(legal_basis={"type": "court_order"}))
    assert with_null == without
    assert with_null.to_policy_input()["legal_basis"]["seal"] is False


def reject(data: Any, **kwargs: Any) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_request(data, **kwargs)
    return info.value


# --------------------------------------------------------------------------- public cases


@pytest.mark.parametrize("case", PUBLIC_CASES, ids=[case["id"] for case in PUBLIC_CASES])
def test_public_case_parses_and_round_trips(case: dict[str, Any]) -> None:
    raw = json.dumps(case["request"])
    parsed = parse_request(raw)
    assert parse_request(raw.encode("utf-8")) == parsed
    assert parse_request(case["request"]) == parsed
    assert parse_request(parsed.to_dict()) == parsed
    assert parse_request(json.dumps(parsed.to_dict())) == parsed
    assert parsed.request_id == case["request"].get("request_id")
    policy = parsed.to_policy_input()
    assert_policy_shape(policy)
    assert policy["fields"] == list(dict.fromkeys(case["request"]["fields"]))


def test_public_cases_present() -> None:
    assert len(PUBLIC_CASES) >= 30


def test_module_docstring_example_runs() -> None:
    result = doctest.testmod(request_module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


def test_all_is_sorted_and_complete() -> None:
    names = request_module.__all__

    def isort_key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert names == sorted(names, key=isort_key)
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(request_module, name)
    defined = {
        name
        for name, value in vars(request_module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == request_module.__name__
    }
    assert defined <= set(names)


# --------------------------------------------------------------------------- full request


def test_full_request_round_trips_and_maps_every_key() -> None:
    parsed = parse_request(FULL)
    assert parse_request(parsed.to_dict()) == parsed
    assert parsed.to_dict() == FULL  # already normalized, so the dict comes back unchanged
    policy = parsed.to_policy_input()
    assert_policy_shape(policy)
    assert policy["requester"] == {
        "id": "badge 1",
        "id_key": "BADGE-1",
        "kind": "law_enforcement",
        "agency": "LAPD",
        "role": "detective",
        "identity_verified": True,
    }
    assert policy["on_behalf_of"] == "ICE-ERO"
    assert policy["task_force"] == ["HSI", "FBI"]
    assert policy["fields"] == ["attendance", "home_address"]
    assert policy["student"] == {
        "id": "S9",
        "name_key": "secret-student-name",
        "dob_day": (date(2010, 6, 2) - date(1970, 1, 1)).days,
        "age": 15,
        "grade": 10,
        "status": "former",
        "guardian_ids": ["P1", "P2"],
        "flags": ["dir_optout", "homeless"],
    }
    basis = policy["legal_basis"]
    assert basis["fields_in_scope"] == []  # an empty scope is kept, not turned into null
    assert basis["issued_day"] == LA_2026_04_01 - 2
    assert basis["execute_by_day"] == LA_2026_04_01 + 8
    assert basis["return_day"] == LA_2026_04_01 + 29
    assert basis["named_students"][1] == {
        "id": "",
        "name_key": "secret-named",
        "dob_day": (date(2010, 6, 2) - date(1970, 1, 1)).days,
    }
    assert basis["judge"] == "Hon. J. Doe" and basis["seal"] is True
    assert policy["consent"]["records"] == ["all"]
    assert policy["consent"]["revoked_day"] == LA_2026_04_01 - 12
    assert policy["emergency"] == {
        "asserted_by": "teacher on site",
        "district_determination": "articulable_significant_threat",
    }
    assert policy["vendor"]["compliant"] is True
    assert policy["vendor"]["contracted_fields"] == ["bus_stop"]
    assert policy["legal_review"] == "pending"


def test_free_text_does_not_reach_the_policy() -> None:
    text = json.dumps(parse_request(FULL).to_policy_input())
    for secret in ("SECRET-PURPOSE-TEXT", "SECRET-FACTS", "Officer Name"):
        assert secret not in text
    bulk = request_with(student=..., bulk={"scope": "school", "description": "SECRET-DESC"})
    assert "SECRET-DESC" not in json.dumps(parse_request(bulk).to_policy_input())


def test_defaults_of_a_minimal_request() -> None:
    policy = parse_request(BASE).to_policy_input()
    assert policy["request_id"] == "T1"
    assert policy["requester"]["agency"] == "" and policy["requester"]["role"] == "counselor"
    assert policy["requester"]["identity_verified"] is False
    assert policy["on_behalf_of"] == "" and policy["task_force"] == []
    assert policy["is_bulk"] is False and policy["bulk"] is None
    assert policy["student"]["status"] == "enrolled"
    assert policy["student"]["name_key"] == "" and policy["student"]["dob_day"] is None
    assert policy["legal_basis"] == {
        "type": "none",
        "jurisdiction": "",
        "issuing_court": "",
        "signed_by": "none",
        "judge": "",
        "seal": False,
        "case_no": "",
        "issued_day": None,
        "execute_by_day": None,
        "return_day": None,
        "named_students": [],
        "fields_in_scope": None,
        "nondisclosure_order": False,
        "directs_lea": False,
    }
    assert policy["legal_review"] == "none"
    assert policy["consent"] is None and policy["emergency"] is None and policy["vendor"] is None


def test_empty_sub_objects_get_documented_defaults() -> None:
    data = request_with(legal_basis={}, consent={}, emergency={}, vendor={})
    parsed = parse_request(data)
    assert parsed.legal_basis == LegalBasis()
    policy = parsed.to_policy_input()
    assert policy["consent"] == {
        "signed_by_role": "",
        "signed": False,
        "dated_day": None,
        "records": [],
        "purpose": "",
        "recipient": "",
        "received_via": "",
        "verified_with_rightholder": False,
        "revoked_day": None,
        "signer_in_custody": False,
    }
    assert policy["emergency"] == {"asserted_by": "", "district_determination": "none"}
    assert policy["vendor"] == {
        "id": "",
        "contract_ref": "",
        "compliant": False,
        "contracted_purposes": [],
        "contracted_fields": None,
        "board_review_flag": False,
        "enforcement_linked": False,
    }
    assert parse_request(parsed.to_dict()) == parsed


def test_bulk_request_uses_student_defaults() -> None:
    data = request_with(student=..., bulk={"scope": "grade", "grades": [9, 10]})
    policy = parse_request(data).to_policy_input()
    assert policy["is_bulk"] is True
    assert policy["bulk"] == {"scope": "grade", "grades": [9, 10]}
    assert policy["student"] == {
        "id": "",
        "name_key": "",
        "dob_day": None,
        "age": None,
        "grade": None,
        "status": "enrolled",
        "guardian_ids": [],
        "flags": [],
    }


def test_typed_objects_are_frozen_and_hashable() -> None:
    parsed = parse_request(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.purpose = "x"  # type: ignore[misc]
    assert hash(parsed) == hash(parse_request(parsed.to_dict()))
    assert not hasattr(parsed, "__dict__")  # slots


# --------------------------------------------------------------------------- dates and time


def test_as_of_day_is_the_district_calendar_date() -> None:
    parsed = parse_request(request_with(as_of="2026-04-02T02:00:00Z"))
    assert parsed.to_policy_input()["as_of_day"] == LA_2026_04_01
    assert parsed.to_policy_input("UTC")["as_of_day"] == LA_2026_04_02


def test_as_of_day_follows_the_configured_time_zone() -> None:
    parsed = parse_request(request_with(as_of="2026-04-02T05:30:00Z"))
    assert parsed.to_policy_input()["as_of_day"] == LA_2026_04_01
    assert parsed.to_policy_input("America/New_York")["as_of_day"] == LA_2026_04_02
    assert parsed.to_policy_input(ZoneInfo("America/New_York"))["as_of_day"] == LA_2026_04_02


def test_age_from_dob_uses_the_district_date() -> None:
    data = request_with(as_of="2026-04-02T05:00:00Z", student={"id": "S1", "dob": "2008-04-02"})
    parsed = parse_request(data)
    assert parsed.to_policy_input()["student"]["age"] == 17  # still April 1 in Los Angeles
    assert parsed.to_policy_input("America/New_York")["student"]["age"] == 18


def test_given_age_wins_and_future_dob_is_unknown() -> None:
    given_age = request_with(student={"id": "S1", "age": 7, "dob": "2008-04-02"})
    assert parse_request(given_age).to_policy_input()["student"]["age"] == 7
    future = request_with(student={"id": "S1", "dob": "2030-01-01"})
    assert parse_request(future).to_policy_input()["student"]["age"] is None
    leap = request_with(as_of="2027-02-28T12:00:00-08:00", student={"id": "S", "dob": "2016-02-29"})
    assert parse_request(leap).to_policy_input()["student"]["age"] == 10


def test_as_of_ns_is_exact() -> None:
    policy = parse_request(request_with(as_of="2026-04-02T10:00:00-07:00")).to_policy_input()
    assert policy["as_of_ns"] == 1_775_149_200 * 10**9
    fine = parse_request(request_with(as_of="2026-04-02T17:00:00.123456789Z")).to_policy_input()
    assert fine["as_of_ns"] == 1_775_149_200 * 10**9 + 123_456_000


@pytest.mark.parametrize(
    "text",
    [
        "2026-04-02T17:00:00Z",
        "2026-04-02T17:00:00z",
        "2026-04-02t17:00:00+00:00",
        "2026-04-02T17:00:00-00:00",
        "2026-04-02T22:30:00+05:30",
        "2026-04-02T10:00:00.5-07:00",
    ],
)
def test_as_of_offsets(text: str) -> None:
    parsed = parse_request(request_with(as_of=text))
    assert parsed.as_of.utcoffset() is not None
    assert abs(parsed.as_of - datetime(2026, 4, 2, 17, tzinfo=UTC)) <= timedelta(seconds=1)
    assert parse_request(parsed.to_dict()) == parsed


def test_missing_as_of_uses_now() -> None:
    now = datetime(2026, 4, 2, 6, 0, tzinfo=timezone(timedelta(hours=-7)))
    parsed = parse_request(request_with(as_of=...), now=now)
    assert parsed.as_of == now
    assert parsed.to_policy_input()["as_of_day"] == LA_2026_04_02
    assert parse_request(parsed.to_dict()) == parsed
    before = datetime.now(UTC)
    assert before - timedelta(seconds=1) <= parse_request(request_with(as_of=...)).as_of
    with pytest.raises(ValueError):
        parse_request(BASE, now=datetime(2026, 4, 2))  # naive now is a caller bug


# --------------------------------------------------------------------------- normalization


def test_grade_normalization() -> None:
    expected = {9: 9, "9": 9, "09": 9, "K": 0, "k": 0, "TK": -1, "PK": -1, "Ungraded": None,
                "99": None, "9th": None, -1: -1}  # fmt: skip
    for grade, number in expected.items():
        data = request_with(student={"id": "S", "grade": grade})
        parsed = parse_request(data)
        assert parsed.student is not None and parsed.student.grade == grade
        assert parsed.to_policy_input()["student"]["grade"] == number, grade


def test_name_key_normalization() -> None:
    data = request_with(
        student={"id": "S", "name": "  \uff21\uff2e\uff21\u00a0\t  Ruíz   "},
        legal_basis={"named_students": [{"name": "STRAßE  x", "dob": "2011-06-02"}]},
    )
    policy = parse_request(data).to_policy_input()
    assert policy["student"]["name_key"] == "ana ruíz"
    assert policy["legal_basis"]["named_students"][0]["name_key"] == "strasse x"


def test_strings_are_nfc() -> None:
    data = request_with(requester={"id": "Jose\u0301", "kind": "parent"})
    parsed = parse_request(data)
    assert parsed.requester.id == "Jos\u00e9"


def test_tabs_and_newlines_are_allowed_in_identifiers() -> None:
    parsed = parse_request(request_with(requester__id="E\t1\n"))
    assert parsed.requester.id == "E\t1\n"


def test_unknown_field_names_are_allowed() -> None:
    parsed = parse_request(request_with(fields=["x-custom.field_1", "grades", "x-custom.field_1"]))
    assert parsed.fields == ("x-custom.field_1", "grades", "x-custom.field_1")
    assert parsed.to_policy_input()["fields"] == ["x-custom.field_1", "grades"]


# --------------------------------------------------------------------------- rejections

REJECTIONS: list[tuple[str, dict[str, Any], str, str]] = [
    # unknown keys, with a suggestion
    ("unknown-top", request_with(purpse="x"), "purpse", "did you mean 'purpose'?"),
    (
        "unknown-nested",
        request_with(legal_basis={"type": "court_order", "nondisclosure_ordr": True}),
        "legal_basis.nondisclosure_ordr",
        "unknown key 'nondisclosure_ordr' (did you mean 'nondisclosure_order'?)",
    ),
    ("unknown-no-hint", request_with(requester__zzzzzz=1), "requester.zzzzzz", "unknown key"),
    ("unknown-odd-key", request_with(**{"a b": 1}), "['a b']", "unknown key"),
    # required keys
    ("missing-requester", request_with(requester=...), "requester", "missing"),
    ("missing-kind", request_with(requester={"id": "x"}), "requester.kind", "missing"),
    ("missing-requester-id", request_with(requester={"kind": "parent"}), "requester.id", "missing"),
    ("missing-purpose", request_with(purpose=...), "purpose", "missing"),
    ("missing-channel", request_with(channel=...), "channel", "missing"),
    ("missing-fields", request_with(fields=...), "fields", "missing"),
    ("empty-fields", request_with(fields=[]), "fields", "at least one"),
    ("neither", request_with(student=...), "student", "missing"),
    ("both", request_with(bulk={"scope": "school"}), "bulk", "not both"),
    ("anonymous-student", request_with(student={"age": 9}), "student.id", "missing"),
    ("missing-scope", request_with(student=..., bulk={}), "bulk.scope", "missing"),
    (
        "named-without-dob",
        request_with(legal_basis={"named_students": [{"id": "S"}, {"name": "Ana"}]}),
        "legal_basis.named_students[1].dob",
        "required when 'id' is absent",
    ),
    # wrong types
    ("bool-for-int", request_with(student={"id": "S", "age": True}), "student.age", "boolean"),
    ("float-for-int", request_with(student={"id": "S", "age": 9.0}), "student.age", "fraction"),
    ("string-for-int", request_with(student={"id": "S", "age": "9"}), "student.age", "string"),
    (
        "int-for-bool",
        request_with(requester__identity_verified=1),
        "requester.identity_verified",
        "integer",
    ),
    ("object-for-string", request_with(student={"id": {"a": 1}}), "student.id", "object"),
    ("string-for-list", request_with(fields="grades"), "fields", "array"),
    ("list-for-object", request_with(requester=[]), "requester", "object"),
    ("int-in-fields", request_with(fields=["grades", 5]), "fields[1]", "integer"),
    ("grade-float", request_with(student={"id": "S", "grade": 9.5}), "student.grade", "fraction"),
    (
        "bulk-grade",
        request_with(student=..., bulk={"scope": "grade", "grades": [9, "10"]}),
        "bulk.grades[1]",
        "string",
    ),
    ("age-range", request_with(student={"id": "S", "age": 151}), "student.age", "between"),
    ("grade-range", request_with(student={"id": "S", "grade": 40}), "student.grade", "between"),
    # enumerations
    ("channel", request_with(channel="in-person"), "channel", "did you mean 'in_person'?"),
    ("kind", request_with(requester__kind="police"), "requester.kind", "not one of"),
    ("basis-type", request_with(legal_basis={"type": "warrant"}), "legal_basis.type", "not one of"),
    (
        "signed-by",
        request_with(legal_basis={"signed_by": "Judge"}),
        "legal_basis.signed_by",
        "did you mean 'judge'?",
    ),
    ("review", request_with(legal_review="yes"), "legal_review", "not one of"),
    (
        "role",
        request_with(consent={"signed_by_role": "aunt"}),
        "consent.signed_by_role",
        "not one of",
    ),
    ("via", request_with(consent={"received_via": "fax"}), "consent.received_via", "not one of"),
    (
        "flag",
        request_with(student={"id": "S", "flags": ["homeless", "vip"]}),
        "student.flags[1]",
        "not one of",
    ),
    (
        "status",
        request_with(student={"id": "S", "status": "graduated"}),
        "student.status",
        "not one of",
    ),
    ("scope", request_with(student=..., bulk={"scope": "state"}), "bulk.scope", "not one of"),
    (
        "determination",
        request_with(emergency={"district_determination": "yes"}),
        "emergency.district_determination",
        "not one of",
    ),
    (
        "jurisdiction",
        request_with(legal_basis={"jurisdiction": "california"}),
        "legal_basis.jurisdiction",
        "state code",
    ),
    # dates
    (
        "date-feb-30",
        request_with(legal_basis={"issued": "2026-02-30"}),
        "legal_basis.issued",
        "not a calendar date",
    ),
    ("date-slashes", request_with(consent={"dated": "2026/03/01"}), "consent.dated", "YYYY-MM-DD"),
    (
        "date-compact",
        request_with(consent={"revoked_on": "20260301"}),
        "consent.revoked_on",
        "YYYY-MM-DD",
    ),
    (
        "date-week",
        request_with(student={"id": "S", "dob": "2026-W14-4"}),
        "student.dob",
        "YYYY-MM-DD",
    ),
    (
        "date-time",
        request_with(legal_basis={"return_date": "2026-04-10T00:00:00Z"}),
        "legal_basis.return_date",
        "YYYY-MM-DD",
    ),
    (
        "date-digits",
        request_with(legal_basis={"execute_by": "\uff12\uff10\uff12\uff16-04-10"}),
        "legal_basis.execute_by",
        "YYYY-MM-DD",
    ),
    (
        "named-dob",
        request_with(legal_basis={"named_students": [{"name": "A", "dob": "2011-13-01"}]}),
        "legal_basis.named_students[0].dob",
        "not a calendar date",
    ),
    ("date-int", request_with(consent={"dated": 20260301}), "consent.dated", "integer"),
    # as_of
    ("as-of-naive", request_with(as_of="2026-04-02T10:00:00"), "as_of", "offset"),
    ("as-of-date", request_with(as_of="2026-04-02"), "as_of", "RFC 3339"),
    ("as-of-space", request_with(as_of="2026-04-02 10:00:00Z"), "as_of", "RFC 3339"),
    ("as-of-offset", request_with(as_of="2026-04-02T10:00:00+25:00"), "as_of", "offset"),
    ("as-of-short-offset", request_with(as_of="2026-04-02T10:00:00+0700"), "as_of", "RFC 3339"),
    ("as-of-leap", request_with(as_of="2026-04-02T10:00:60Z"), "as_of", "not a valid"),
    ("as-of-day", request_with(as_of="2026-04-31T10:00:00Z"), "as_of", "not a valid"),
    ("as-of-year", request_with(as_of="0001-01-01T00:00:00Z"), "as_of", "year"),
    ("as-of-number", request_with(as_of=1775149200), "as_of", "integer"),
    # identifiers, strings and lists
    (
        "field-space",
        request_with(fields=["grades", "a", "b", "home address"]),
        "fields[3]",
        "[A-Za-z0-9_.-]",
    ),
    ("field-long", request_with(fields=["x" * 65]), "fields[0]", "64"),
    ("field-empty", request_with(fields=[""]), "fields[0]", "empty"),
    ("field-unicode", request_with(fields=["gradés"]), "fields[0]", "[A-Za-z0-9_.-]"),
    (
        "scope-field",
        request_with(legal_basis={"fields_in_scope": ["a/b"]}),
        "legal_basis.fields_in_scope[0]",
        "[A-Za-z0-9_.-]",
    ),
    (
        "records-field",
        request_with(consent={"records": ["ok", "no way"]}),
        "consent.records[1]",
        "[A-Za-z0-9_.-]",
    ),
    ("too-many-fields", request_with(fields=[f"f{i}" for i in range(201)]), "fields", "200"),
    (
        "long-list",
        request_with(student={"id": "S", "guardian_ids": ["p"] * 201}),
        "student.guardian_ids",
        "200",
    ),
    ("long-string", request_with(purpose_text="x" * 4097), "purpose_text", "4096"),
    ("long-id", request_with(request_id="x" * 4097), "request_id", "4096"),
    ("nul-in-id", request_with(requester__id="E1\x00"), "requester.id", "U+0000"),
    ("cr-in-id", request_with(student={"id": "S1\r"}), "student.id", "U+000D"),
    ("c1-in-code", request_with(purpose="educational\x85"), "purpose", "U+0085"),
    ("bell-in-text", request_with(purpose_text="hi\x07"), "purpose_text", "U+0007"),
    ("empty-id", request_with(requester__id=""), "requester.id", "empty"),
    ("empty-purpose", request_with(purpose=""), "purpose", "empty"),
    ("surrogate", request_with(purpose_text="a\ud800b"), "purpose_text", "surrogate"),
    ("task-force-item", request_with(task_force=["HSI", 3]), "task_force[1]", "integer"),
]


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_rejected_with_exact_path(data: dict[str, Any], path: str, fragment: str) -> None:
    error = reject(data)
    assert error.path == path, str(error)
    assert fragment in str(error)
    assert str(error).startswith(f"{path}: ") if path else True
    assert error.reason == "invalid_request"
    assert reject(json.dumps(data)).path == path  # the same document as JSON text


def test_rejected_as_json_text_too() -> None:
    assert reject(json.dumps(request_with(purpose_text="a\ud800b"))).path == "purpose_text"


def raw_with(old: str, new: str) -> str:
    text = json.dumps(BASE)
    assert old in text
    return text.replace(old, new, 1)


def test_duplicate_keys() -> None:
    error = reject(raw_with('"purpose": "educational"', '"purpose": "a", "purpose": "educational"'))
    assert error.path == "purpose" and "duplicate" in str(error)
    nested = raw_with('"role": "counselor"', '"role": "counselor", "role": "principal"')
    assert reject(nested).path == "requester.role"
    basis = raw_with('"fields"', '"legal_basis": {"seal": true, "seal": false}, "fields"')
    assert reject(basis).path == "legal_basis.seal"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers(constant: str) -> None:
    error = reject(raw_with('"age": 12', f'"age": {constant}'))
    assert error.path == "student.age" and constant in str(error)


def test_huge_integer_literal() -> None:
    assert reject(raw_with('"age": 12', '"age": ' + "9" * 5000)).path == ""
    assert reject(raw_with('"age": 12', '"age": ' + "9" * 400)).path == "student.age"


def test_float_exponent_is_not_an_integer() -> None:
    assert reject(raw_with('"age": 12', '"age": 1.2e1')).path == "student.age"
    assert reject(raw_with('"age": 12', '"age": 12.0')).path == "student.age"


def test_invalid_utf8() -> None:
    raw = json.dumps(BASE).encode("utf-8").replace(b"educational", b"educ\xffational")
    error = reject(raw)
    assert error.path == "" and "UTF-8" in str(error)
    assert reject(b'{"purpose": "\xed\xa0\x80"}').path == ""  # an encoded surrogate is not UTF-8


def test_lone_surrogates() -> None:
    assert reject(raw_with('"educational"', '"edu\\ud800"')).path == "purpose"
    assert reject(raw_with('"educational"', '"edu\\udfff"')).path == "purpose"
    raw_text = json.dumps(BASE, ensure_ascii=False).replace("educational", "edu\udc00")
    assert reject(raw_text).path == ""
    paired = parse_request(raw_with('"S1"', '"S\\ud83d\\ude00"'))  # a valid pair is fine
    assert paired.student is not None and paired.student.id == "S\U0001f600"


def test_oversized_request() -> None:
    padding = "x" * 4000
    data = request_with(purpose_text=padding)
    data["task_force"] = [padding] * 17  # each string within limits, the whole too large
    error = reject(json.dumps(data))
    assert error.path == "" and str(MAX_REQUEST_BYTES) in str(error)
    assert reject(json.dumps(data).encode()).path == ""
    assert reject(data).path == ""
    assert reject(b" " * (MAX_REQUEST_BYTES + 1)).path == ""
    assert reject("é" * (MAX_REQUEST_BYTES // 2 + 1)).path == ""  # counted in UTF-8 bytes


def test_nesting_depth() -> None:
    deep = request_with(legal_basis={"named_students": [{"id": {"nested": "x"}}]})
    error = reject(json.dumps(deep))
    assert error.path == "" and "deeper" in str(error)
    assert reject(deep).path == "legal_basis.named_students[0].id"  # a mapping: typed check
    assert reject("[" * 100_000 + "]" * 100_000).path == ""
    assert reject('{"a": ' * 10_000 + "1" + "}" * 10_000).path == ""
    brackets_in_strings = request_with(purpose_text='[[[[[[{{{{{{ \\" [[[[')
    assert parse_request(json.dumps(brackets_in_strings)).purpose_text is not None


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "[]", "null", "1", '"text"', "{", '{"purpose": }', "{'a': 1}", "\ufeff{}"],
)
def test_not_an_object_or_not_json(raw: str) -> None:
    assert reject(raw).path == ""


def test_unsupported_input_types() -> None:
    for value in (None, 42, [BASE], (1, 2), object()):
        assert reject(value).path == ""
    as_bytearray = bytearray(json.dumps(BASE).encode())
    assert parse_request(as_bytearray) == parse_request(BASE)  # type: ignore[arg-type]


def test_non_string_keys_in_a_mapping() -> None:
    data = request_with()
    data["requester"] = {"id": "E1", "kind": "parent", 3: "x"}
    assert reject(data).path == "requester"
    assert reject({1: "x"}).path == ""


def test_tuples_are_accepted_from_python() -> None:
    data = request_with(fields=("grades", "attendance"))
    assert parse_request(data).fields == ("grades", "attendance")


# --------------------------------------------------------------------------- properties

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["2026-04-02", "2026-04-02T10:00:00Z", "K", "grades", "court_order", "judge", "all"]
    ),
)
known_keys = sorted(
    {f.name for cls in (AccessRequest, LegalBasis) for f in dataclasses.fields(cls)}
    | {"id", "kind", "name", "dob", "age", "grade", "scope", "grades", "signed", "records"}
)
json_keys = st.one_of(st.sampled_from(known_keys), st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(json_keys, children, max_size=6)
    ),
    max_leaves=30,
)


def check_parse_or_request_error(data: Any) -> None:
    try:
        parsed = parse_request(data)
    except RequestError:
        return
    assert parse_request(parsed.to_dict()) == parsed
    assert_policy_shape(parsed.to_policy_input())


@given(st.dictionaries(json_keys, json_values, max_size=12))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_junk_mappings_parse_or_raise_request_error(data: dict[str, Any]) -> None:
    check_parse_or_request_error(data)
    try:
        raw = json.dumps(data)
    except ValueError:
        return
    check_parse_or_request_error(raw)
    check_parse_or_request_error(raw.encode("utf-8", "surrogatepass"))


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), json_values))
def test_junk_inputs_parse_or_raise_request_error(data: Any) -> None:
    check_parse_or_request_error(data)


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_of(item, (*prefix, index))
    return found


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A public case (or FULL) with one value replaced, removed, or a key added."""
    base = draw(st.sampled_from([FULL, BASE] + [case["request"] for case in PUBLIC_CASES]))
    data: dict[str, Any] = copy.deepcopy(base)
    path = draw(st.sampled_from(paths_of(data)))
    *parents, last = path
    target: Any = data
    for step in parents:
        target = target[step]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        target[last] = draw(json_values)
    elif action == "delete":
        del target[last]
    elif isinstance(target, dict):
        target[draw(json_keys)] = draw(json_values)
    else:
        target.append(draw(json_values))
    return data


@given(mutated_requests())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_public_requests_parse_or_raise_request_error(data: dict[str, Any]) -> None:
    check_parse_or_request_error(data)
    try:
        raw = json.dumps(data)
    except ValueError:
        return
    check_parse_or_request_error(raw)


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2199, 12, 30),
        timezones=st.sampled_from([UTC, ZoneInfo("America/Los_Angeles"), ZoneInfo("Asia/Tokyo")]),
    )
)
def test_as_of_round_trip_and_ns(moment: datetime) -> None:
    parsed = parse_request(request_with(as_of=moment.isoformat()))
    assert parsed.as_of.isoformat() == moment.isoformat()
    policy = parsed.to_policy_input()
    expected_ns = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    assert policy["as_of_ns"] == expected_ns
    local = moment.astimezone(ZoneInfo("America/Los_Angeles")).date()
    assert policy["as_of_day"] == (local - date(1970, 1, 1)).days
    assert parse_request(parsed.to_dict()) == parsed


def test_the_control_character_pattern_is_exactly_category_cc() -> None:
    """_string finds control characters with one regex; it must match exactly
    the characters unicodedata calls Cc, over every code point."""
    import sys
    import unicodedata

    import gatekeeper.request as request_module

    pattern = request_module._CONTROL
    for point in range(sys.maxunicode + 1):
        char = chr(point)
        assert (unicodedata.category(char) == "Cc") == bool(pattern.fullmatch(char)), hex(point)


def test_long_keys_and_names_are_not_cached() -> None:
    """The key-path and code_key caches keep short strings only: requests full
    of long, distinct keys or agency names cannot pin memory in them."""
    import gatekeeper.request as request_module

    joins = request_module._join_cached.cache_info().currsize
    codes = request_module._code_key_cached.cache_info().currsize
    for i in range(50):
        long = f"{i:04d}" + "x" * 5000
        with pytest.raises(RequestError):
            parse_request({**copy.deepcopy(BASE), long: 1})
        request_module.code_key(long)
    assert request_module._join_cached.cache_info().currsize == joins
    assert request_module._code_key_cached.cache_info().currsize == codes
