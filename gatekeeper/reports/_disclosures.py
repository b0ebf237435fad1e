"""The record of requests and disclosures for one student (34 CFR 99.32, Ed. Code 49064).

A view of the signed log (RULES.md, "Two logs"): the decision entries about
this student that carry ``LOG_9932`` or ``LOG_9932_EMERG``, refused requests
included (99.32(a)(1) records requests, not only disclosures). An entry that
carries ``SEALED_LOG`` never appears, whatever else it carries, and nothing
in the record counts or hints at such entries (99.32(d)(5); a court's
non-disclosure order).

Bulk (roster-wide) entries are not attributed to the student: the log keeps
a bulk request's scope and grades, not the list of students it covered, so
whether this student was among them cannot be read from the log. Their number
is given to staff in a note that is not printed; the records office attributes
them from the SIS roster of the day if the law requires it.

Each line names the party (agency and kind, and whom it relayed for), the
interest or basis (purpose, the requester's stated reason, the document
presented, the deciding rule), the date logged, the outcome, and the fields
requested and released (names only; never values).

A permit is a disclosure when its data may leave: at once, or, when a
blocking obligation (a parent's notice before release, a verification) held
it, on the day of its ``release`` entry, which the guard appends before it
hands out a held permit's data. A held permit with no release entry
disclosed nothing: its line says what holds it and lists no records.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from gatekeeper.obligations._payload import MET_BY_REDACTION
from gatekeeper.reports._fields import (
    DECISIONS,
    deciding_rule,
    field_names,
    label,
    obligations,
    sub,
    text,
)
from gatekeeper.reports._model import Cell, Period, Provenance, Report, Table

__all__ = ["RECORD_CODES", "DisclosureAggregator"]

RECORD_CODES = frozenset({"LOG_9932", "LOG_9932_EMERG"})
SEALED = "SEALED_LOG"

COLUMNS = (
    ("entry", "log entry"),
    ("date", "date"),
    ("time", "time"),
    ("party", "party"),
    ("party_kind", "kind of party"),
    ("on_behalf_of", "on behalf of"),
    ("purpose", "purpose"),
    ("stated_reason", "reason stated by the party"),
    ("legal_basis", "document presented"),
    ("rule", "rule"),
    ("basis", "legal basis or reason refused"),
    ("outcome", "outcome"),
    ("fields_requested", "records requested"),
    ("fields_disclosed", "records disclosed"),
    ("released", "released"),
    ("emergency", "emergency"),
    ("record_code", "record"),
)


_COLUMN = {name: position for position, (name, _) in enumerate(COLUMNS)}


def _names(entry: Mapping[str, Any], key: str) -> str:
    names, count = field_names(entry, key)
    if count is not None:
        return f"{count} fields (names not kept in the log)"
    return ", ".join(names)


class DisclosureAggregator:
    """One pass over the log for one student; :meth:`report` builds the record.

    ``blocking``: the obligation codes that hold a permit's release until
    acknowledged (the pack's ``catalog.blocking_obligations``)."""

    def __init__(self, student_id: str, period: Period, blocking: frozenset[str]) -> None:
        if not student_id:
            raise ValueError("a student id is required")
        self.student_id = student_id
        self.period = period
        self.blocking = blocking - MET_BY_REDACTION
        self.rows: list[list[Cell]] = []
        #: entry index -> (decision_id, the codes that held its release)
        self.held: dict[int, tuple[str, list[str]]] = {}
        #: Held permits decided outside the period, by decision_id: a line of
        #: the record if they were released within it.
        self.later: dict[str, list[Cell]] = {}
        #: decision_id -> the day of its first release entry
        self.released: dict[str, str] = {}
        self.bulk_unattributed = 0
        self.emergencies = 0
        #: Whether any entry of the log names this student (record or not).
        self.named = False

    def _held_for(self, entry: Mapping[str, Any]) -> list[str]:
        """The codes that held a permit's release: as the entry recorded them at
        decision time, else by the pack's blocking list of today."""
        recorded = entry.get("held_for")
        if isinstance(recorded, list) and all(isinstance(c, str) for c in recorded):
            return list(recorded)
        return [c for c in obligations(entry) if c in self.blocking]

    def add(self, index: int, entry: Mapping[str, Any], moment: datetime | None) -> None:
        if entry.get("kind") == "release" and moment is not None:
            named = text(sub(entry, "release").get("decision_id"))
            if named:
                self.released.setdefault(named, moment.strftime("%Y-%m-%d"))
            return
        if entry.get("kind") != "decision" or moment is None:
            return
        student = sub(entry, "student")
        if student and text(student.get("id")) == self.student_id:
            self.named = True
        codes = set(obligations(entry))
        if SEALED in codes or not (codes & RECORD_CODES):
            return
        in_period = self.period.contains(moment.date())
        if not student:
            if sub(entry, "bulk") and in_period:
                self.bulk_unattributed += 1
            return
        if text(student.get("id")) != self.student_id:
            return
        decision = text(entry.get("decision"))
        decision = decision if decision in DECISIONS else "deny"
        held_for = self._held_for(entry) if decision == "permit" else []
        if not in_period:
            if held_for:  # its disclosure may fall in the period: kept until the end
                self.held[index] = (text(entry.get("decision_id")), held_for)
                self.later[text(entry.get("decision_id"))] = self._row(
                    index, entry, moment, codes, decision
                )
            return
        if held_for:
            self.held[index] = (text(entry.get("decision_id")), held_for)
        self.rows.append(self._row(index, entry, moment, codes, decision))

    def _row(
        self,
        index: int,
        entry: Mapping[str, Any],
        moment: datetime,
        codes: set[str],
        decision: str,
    ) -> list[Cell]:
        requester = sub(entry, "requester")
        kind = text(requester.get("kind"))
        agency = text(requester.get("agency"))
        rule = deciding_rule(entry)
        emergency = ""
        if "LOG_9932_EMERG" in codes:
            determined = text(sub(entry, "emergency").get("district_determination"))
            emergency = (
                "The district determined an articulable and significant threat to health "
                "or safety (34 CFR 99.36); the records went to the party named here."
                if determined == "articulable_significant_threat"
                else "Emergency claimed."
            )
        day = moment.strftime("%Y-%m-%d")
        return [
            index,
            day,
            moment.strftime("%H:%M"),
            agency or label(kind),
            kind,
            text(entry.get("on_behalf_of")),
            text(entry.get("purpose")),
            text(entry.get("purpose_text")),
            text(sub(entry, "legal_basis").get("type")),
            rule,
            label(rule),
            decision,
            _names(entry, "fields"),
            _names(entry, "allowed_fields") if decision == "permit" else "",
            day if decision == "permit" else "",
            emergency,
            "LOG_9932_EMERG" if "LOG_9932_EMERG" in codes else "LOG_9932",
        ]

    def _settle_held(self) -> int:
        """Held permits: released on the day of their release entry, or not
        released (no records listed); one decided before the period and
        released within it is a line of this record too. Returns how many
        were not released."""
        for decision_id, row in self.later.items():
            day = self.released.get(decision_id)
            if day is not None and self.period.contains(date.fromisoformat(day)):
                self.rows.append(row)
        self.rows.sort(key=lambda row: int(row[_COLUMN["entry"]] or 0))
        disclosed = _COLUMN["fields_disclosed"]
        released = _COLUMN["released"]
        not_released = 0
        for row in self.rows:
            held = self.held.get(int(row[_COLUMN["entry"]] or 0))
            if held is None:
                continue
            decision_id, held_for = held
            day = self.released.get(decision_id)
            if day is not None and not self.period.after(date.fromisoformat(day)):
                row[released] = day
                continue
            # Not released, or only after this period: a disclosure of the
            # later period's record, not of this one (counted once).
            not_released += 1
            row[disclosed] = ""
            why = "not released: held for " + ", ".join(held_for)
            row[released] = why if day is None else f"{why} (released later, on {day})"
        self.emergencies = sum(1 for row in self.rows if row[_COLUMN["emergency"]])
        return not_released

    def report(self, provenance: Provenance, *, generated_at: datetime | None = None) -> Report:
        held = self._settle_held()
        outcomes = [row[_COLUMN["outcome"]] for row in self.rows]
        table = Table(
            name="record",
            title="Requests and disclosures",
            columns=tuple(c for c, _ in COLUMNS),
            headers=tuple(h for _, h in COLUMNS),
            rows=tuple(tuple(row) for row in self.rows),
            numeric=frozenset({"entry"}),
        )
        notes = [
            "This record lists each request for, and each disclosure of, personally "
            "identifiable information from this student's education records that federal "
            "and state law require the district to record (34 CFR 99.32; California "
            "Education Code 49064), with the party, its interest or the legal basis, and "
            "the date. Refused requests are listed too.",
            "By law the record does not list access by the parent or eligible student, by "
            "school officials with a legitimate educational interest, by parties with the "
            "written consent of the parent or eligible student, or requests for directory "
            "information only (34 CFR 99.32(d)).",
            "Only the names of records are shown, never their contents. Each line cites the "
            "entry of the district's signed audit log it comes from.",
            "A permitted request whose release waited for a notice to the parent or another "
            "required step is a disclosure from the day it was released; until then no "
            "records left, and its line lists none.",
        ]
        staff = []
        if not self.named:
            staff.append(
                f"No decision in the log names the student id {self.student_id!r} (ids are "
                "matched exactly, letter case included): check the id against the SIS before "
                "handing over an empty record."
            )
        if self.bulk_unattributed:
            staff.append(
                f"{self.bulk_unattributed} roster-wide (bulk) requests in this period carry a "
                "record-of-disclosures obligation. The log keeps their scope, not their list "
                "of students, so none is attributed to this student here; check the roster of "
                "the day before adding any to this record."
            )
        if self.emergencies:
            staff.append(
                "Emergency disclosures: 34 CFR 99.32(a)(5) asks for the threat itself. The "
                "audit log keeps only the district's determination, not its facts: attach "
                "the determination on file before handing this record over."
            )
        return Report(
            kind="disclosures",
            title="Record of requests and disclosures",
            provenance=provenance,
            period=self.period,
            summary={
                "student": self.student_id,
                "entries": len(self.rows),
                "disclosed": outcomes.count("permit") - held,
                "held": held,
                "refused": outcomes.count("deny"),
                "pending": outcomes.count("escalate"),
                "bulk_unattributed": self.bulk_unattributed,
            },
            tables=[table],
            notes=[*provenance.coverage_notes(self.period), *notes],
            staff_notes=staff,
            subject=self.student_id,
            generated_at=generated_at or datetime.now(UTC),
        )
