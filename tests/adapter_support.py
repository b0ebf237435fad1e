"""Shared pieces of the framework-adapter tests: users, their requests, the SIS records.

A test "user" (sent in the ``X-User`` header) stands for who is logged in;
``access_request(user, student_id)`` is what an application's request builder
would produce for them, taken from the realistic cases in cases/public.jsonl.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

CASES = {
    json.loads(line)["id"]: json.loads(line)["request"]
    for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    if line.strip()
}


def _teacher() -> dict[str, Any]:
    request = copy.deepcopy(CASES["A01"])
    request["fields"] = ["grades", "home_address"]  # home_address is outside her interest
    return request


#: user -> (the request their lookup makes, the student it is about)
USERS: dict[str, dict[str, Any]] = {
    "teacher": _teacher(),  # permit: grades only (FERPA-1), home_address denied
    "ice": CASES["A05"],  # I-200 administrative warrant: deny (IMM-..)
    "hsi_unreviewed": CASES["A11"],  # judicial warrant, legal office has not reviewed: escalate
    "family_court": CASES["A13"],  # court order: permit held until the parent is notified
}

#: user -> the student id in their request
STUDENT_OF = {user: request["student"]["id"] for user, request in USERS.items()}


def access_request(user: str | None, student_id: str) -> dict[str, Any] | None:
    """The AccessRequest an application builds for ``user`` reading ``student_id``."""
    if user is None:
        return None
    if user == "broken":
        raise LookupError("the user directory is down")
    if user == "invalid":
        return {"requester": {"id": "x", "kind": "district_staff"}, "purpose": "educational"}
    request = copy.deepcopy(USERS[user])
    request["student"]["id"] = student_id
    return request


def record(student_id: str) -> dict[str, Any]:
    """The SIS's full record: far more than any one requester may see."""
    return {
        "id": student_id,
        "name": "Ana Ruiz",
        "grades": {"math": "A", "history": "B+"},
        "attendance": [{"date": "2026-04-01", "present": True}],
        "home_address": "1 Main St",
        "citizenship_status": "never released",
        "guardian": {"name": "R. Ruiz", "phone": "555-0100"},
        "vendorExtension": {"anything": "unknown keys never pass"},
    }


#: What the teacher may see of ``record(...)``.
TEACHER_VIEW = {"grades": {"math": "A", "history": "B+"}}

#: Strings that must never appear in a refusal or a redacted answer to the teacher.
SECRETS = ("1 Main St", "never released", "555-0100", "unknown keys never pass", "Ana Ruiz")


def assert_no_record_data(body: bytes | str) -> None:
    text = body if isinstance(body, str) else body.decode("utf-8", "replace")
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked: {text[:300]}"
