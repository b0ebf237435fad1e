"""The guard API: decide before the lookup, redact what it returns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import gatekeeper
from gatekeeper import AccessDenied
from gatekeeper.guard import ReleaseHeld
from gatekeeper.redact import Redactor

CASES = {
    json.loads(line)["id"]: json.loads(line)["request"]
    for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    if line.strip()
}

RECORD = {
    "id": "S001",
    "grades": {"math": "A"},
    "attendance": [{"date": "2026-04-01", "present": True}],
    "home_address": "1 Main St",
    "citizenship_status": "do not leak",
    "guardian": {"name": "R. Ruiz", "phone": "555-0100"},
    "vendorExtension": {"anything": "unknown keys never pass"},
}


@pytest.fixture
def gk(tmp_path: Path) -> Any:
    opened = gatekeeper.open(data_dir=tmp_path)
    yield opened
    opened.close()


def test_guard_calls_the_lookup_only_on_permit_and_redacts(gk: Any) -> None:
    calls: list[str] = []

    @gk.guard(lambda case_id: CASES[case_id])
    def lookup(case_id: str) -> dict[str, Any]:
        calls.append(case_id)
        return RECORD

    assert lookup("A01") == {
        "grades": {"math": "A"},
        "attendance": [{"date": "2026-04-01", "present": True}],
    }
    with pytest.raises(AccessDenied) as info:
        lookup("A04")  # ICE at the front desk
    assert info.value.decision.rules[0] == "IMM-01"
    assert calls == ["A01"]  # the denied lookup never ran


def test_guard_holds_a_release_until_blocking_obligations_are_met(gk: Any) -> None:
    ran: list[bool] = []

    @gk.guard(lambda: CASES["A13"])  # court order: NOTIFY_PARENT_PRE blocks the release
    def lookup() -> dict[str, Any]:
        ran.append(True)
        return RECORD

    with pytest.raises(ReleaseHeld) as info:
        lookup()
    assert "NOTIFY_PARENT_PRE" in info.value.decision.blocking_obligations
    assert ran == []


def test_bulk_results_are_redacted_per_record_but_held_by_the_guard(gk: Any) -> None:
    vendor = CASES["A23"]  # bus vendor: name, bus_stop, enrollment_status
    rows = [
        {"givenName": "Ana", "stop": "Elm & 3rd", "status": "active", "dob": "2011-06-02"},
        {"givenName": "Luis", "stop": "Oak & 9th", "status": "active", "birthCountry": "MX"},
    ]
    redactor = Redactor({"givenName": "name", "stop": "bus_stop", "status": "enrollment_status"})
    # Field redaction cannot know which students a bulk basis covers (opt-outs):
    with pytest.raises(ReleaseHeld) as info, gk.access(vendor, redactor=redactor):
        pass
    assert info.value.decision.decision == "permit"
    grant_rows = gatekeeper.Grant(info.value.decision, redactor).redact(rows)
    assert grant_rows == [
        {"givenName": "Ana", "stop": "Elm & 3rd", "status": "active"},
        {"givenName": "Luis", "stop": "Oak & 9th", "status": "active"},
    ]


def test_an_invalid_request_through_the_guard_is_an_audited_deny(gk: Any) -> None:
    ran: list[bool] = []
    bad = {**CASES["A04"], "nondisclosure_ordr": True}  # a typo: unknown key

    @gk.guard(lambda: bad)
    def lookup() -> dict[str, Any]:
        ran.append(True)
        return RECORD

    size = gk.audit.size()
    with pytest.raises(AccessDenied) as info:
        lookup()
    assert ran == []
    assert info.value.decision.decision == "deny"
    assert gk.audit.size() == size + 1  # the refusal is in the signed log
    (stored,) = gk.audit.store.read_entries(size, size + 1)
    assert json.loads(stored.data)["kind"] == "invalid_request"


def test_nested_paths_and_unknown_keys() -> None:
    redactor = Redactor({"guardian.phone": "guardian_contacts"})
    out = redactor.redact(RECORD, ["guardian_contacts"])
    assert out == {"guardian": {"phone": "555-0100"}}
    assert redactor.redact(RECORD, []) == {}
    assert "vendorExtension" not in redactor.redact(RECORD, ["grades", "attendance"])
    # nested keys never stand for a field by their bare name
    nested = {"guardian": {"name": "Maria"}, "metadata": {"name": "x"}, "name": "Ana"}
    assert Redactor().redact(nested, ["name"]) == {"name": "Ana"}
