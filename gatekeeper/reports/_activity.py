"""Activity: every decision by type, requester kind and rule over time; open
escalations; obligations still owed.

Open escalations. An ``escalate`` decision logged in the period is open
until a later decision entry (up to the checkpoint) with the same
``request_id`` about the same subject (the same student id, or the same bulk
scope) is a ``permit`` or a ``deny``: that is the request decided again after
the legal office's review or the verification it waited for. A later
``escalate`` of the same request keeps it open (the latest one is shown).
An escalation without a ``request_id`` can never be matched, so it stays
open: better a reminder too many than a forgotten warrant.

Obligations outstanding: see :mod:`gatekeeper.reports._outstanding`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gatekeeper.reports._enforcement import outcome_table, requester_kind
from gatekeeper.reports._fields import DECISIONS, deciding_rule, subject_key, text
from gatekeeper.reports._model import (
    Cell,
    Chart,
    Period,
    Provenance,
    Report,
    Table,
    age_days,
    months_between,
)
from gatekeeper.reports._outstanding import Outstanding, obligation_tables

__all__ = ["ActivityAggregator"]

INVALID = "(invalid request)"
WORDS = ("denied", "escalated", "permitted")
#: Rows of a long list shown in the HTML (CSV and JSON hold them all).
HTML_ROWS = 200
#: Requester kinds drawn separately in the chart; the rest are "other kinds".
CHART_KINDS = 6


@dataclass(slots=True)
class _Escalation:
    first_index: int
    first_moment: datetime
    last_index: int
    request_id: str
    rule: str
    kind: str
    subject: str


class ActivityAggregator:
    """One pass over the log; :meth:`report` builds the :class:`Report`."""

    def __init__(self, period: Period) -> None:
        self.period = period
        self.entry_kinds: Counter[str] = Counter()
        self.by_decision: Counter[tuple[str, str]] = Counter()
        self.by_kind: Counter[tuple[str, str]] = Counter()
        self.by_rule: Counter[tuple[str, str]] = Counter()
        self.by_month: Counter[tuple[str, str]] = Counter()
        self.by_month_kind: Counter[tuple[str, str]] = Counter()
        self.by_month_rule: Counter[tuple[str, str]] = Counter()
        self.open: dict[tuple[str, str], _Escalation] = {}
        self.unmatched: list[_Escalation] = []
        self.resolved = 0

    def add(self, index: int, entry: Mapping[str, Any], moment: datetime | None) -> None:
        kind = text(entry.get("kind")) or "(unknown)"
        in_period = moment is not None and self.period.contains(moment.date())
        if in_period:
            self.entry_kinds[kind] += 1
        if kind not in ("decision", "invalid_request"):
            return
        decision = text(entry.get("decision"))
        decision = decision if decision in DECISIONS else "deny"
        if kind == "decision":
            self._track_escalation(index, entry, moment, decision, in_period)
        if not in_period or moment is None:
            return
        who = requester_kind(entry) if kind == "decision" else INVALID
        rule = deciding_rule(entry) if kind == "decision" else INVALID
        month = moment.strftime("%Y-%m")
        self.by_decision[(decision, decision)] += 1
        self.by_kind[(who, decision)] += 1
        self.by_rule[(rule, decision)] += 1
        self.by_month[(month, decision)] += 1
        self.by_month_kind[(month, who)] += 1
        self.by_month_rule[(month, rule)] += 1

    def _track_escalation(
        self,
        index: int,
        entry: Mapping[str, Any],
        moment: datetime | None,
        decision: str,
        in_period: bool,
    ) -> None:
        request_id = text(entry.get("request_id"))
        subject = subject_key(entry)
        key = (request_id, subject)
        if decision != "escalate":
            if request_id and self.open.pop(key, None) is not None:
                self.resolved += 1
            return
        found = self.open.get(key) if request_id else None
        if found is not None:
            found.last_index = index
            found.rule = deciding_rule(entry)
            return
        if not in_period or moment is None:
            return
        escalation = _Escalation(
            index,
            moment,
            index,
            request_id,
            deciding_rule(entry),
            requester_kind(entry),
            subject.split(":", 1)[0] or "(none)",
        )
        if request_id:
            self.open[key] = escalation
        else:
            self.unmatched.append(escalation)

    # -- results -------------------------------------------------------------

    def months(self) -> list[str]:
        seen = sorted({month for month, _ in self.by_month})
        first = self.period.start.strftime("%Y-%m") if self.period.start else None
        last = self.period.end.strftime("%Y-%m") if self.period.end else None
        first = first or (seen[0] if seen else None)
        last = last or (seen[-1] if seen else None)
        return [] if first is None or last is None else months_between(first, last)

    def report(
        self,
        provenance: Provenance,
        outstanding: Outstanding,
        *,
        generated_at: datetime | None = None,
    ) -> Report:
        now = generated_at or datetime.now(UTC)
        months = self.months()
        decisions = sum(self.by_decision.values())
        entry_kinds = sorted(self.entry_kinds.items(), key=lambda kv: (-kv[1], kv[0]))
        open_rows = sorted([*self.open.values(), *self.unmatched], key=lambda e: e.first_index)
        tables = [
            outcome_table(
                "by_decision",
                "By decision",
                "decision",
                self.by_decision,
                order=DECISIONS,
                sort=False,
                words=WORDS,
            ),
            outcome_table(
                "by_requester_kind",
                "By kind of requester",
                "requester kind",
                self.by_kind,
                words=WORDS,
                label_keys=True,
            ),
            outcome_table(
                "by_rule", "By deciding rule", "rule", self.by_rule, words=WORDS, label_keys=True
            ),
            outcome_table(
                "by_month",
                "By month",
                "month",
                self.by_month,
                order=months,
                sort=False,
                words=WORDS,
            ),
            _wide(
                "by_month_requester_kind",
                "Decisions per month by kind of requester",
                months,
                self.by_month_kind,
            ),
            _wide(
                "by_month_rule", "Decisions per month by deciding rule", months, self.by_month_rule
            ),
            Table(
                name="entry_kinds",
                title="Log entries by kind",
                columns=("key", "entries"),
                headers=("entry kind", "entries"),
                rows=tuple(entry_kinds),
                numeric=frozenset({"entries"}),
            ),
            Table(
                name="open_escalations",
                title="Escalations still open",
                columns=(
                    "entry",
                    "escalated_on",
                    "latest_entry",
                    "request_id",
                    "rule",
                    "requester_kind",
                    "subject",
                    "age_days",
                ),
                headers=(
                    "log entry",
                    "escalated on",
                    "latest entry",
                    "request id",
                    "rule",
                    "requester kind",
                    "about",
                    "days open",
                ),
                rows=tuple(
                    (
                        e.first_index,
                        e.first_moment.strftime("%Y-%m-%d"),
                        e.last_index,
                        e.request_id or "(none: cannot be matched)",
                        e.rule,
                        e.kind,
                        e.subject,
                        age_days(e.first_moment, now),
                    )
                    for e in open_rows
                ),
                numeric=frozenset({"entry", "latest_entry", "age_days"}),
                html_limit=HTML_ROWS,
            ),
        ]
        tables.extend(obligation_tables(outstanding, now))
        summary: dict[str, Cell] = {
            "decisions": decisions,
            "permit": self.by_decision[("permit", "permit")],
            "deny": self.by_decision[("deny", "deny")],
            "escalate": self.by_decision[("escalate", "escalate")],
            "open_escalations": len(open_rows),
            "resolved_escalations": self.resolved,
            "obligations_outstanding": outstanding.total,
            "blocking_obligations_outstanding": outstanding.blocking,
        }
        kinds_total: Counter[str] = Counter()
        for (_, who), n in self.by_month_kind.items():
            kinds_total[who] += n
        top = [k for k, _ in kinds_total.most_common(CHART_KINDS)]
        rest = [k for k in kinds_total if k not in top]
        kind_series = [(k, tuple(self.by_month_kind[(m, k)] for m in months)) for k in top]
        if rest:
            kind_series.append(
                (
                    "other kinds",
                    tuple(sum(self.by_month_kind[(m, k)] for k in rest) for m in months),
                )
            )
        charts = [
            Chart(
                name="decisions_by_month",
                title="Decisions per month",
                months=tuple(months),
                series=tuple(
                    (word, tuple(self.by_month[(m, decision)] for m in months))
                    for decision, word in (
                        ("deny", "denied"),
                        ("escalate", "escalated"),
                        ("permit", "permitted"),
                    )
                ),
            ),
            Chart(
                name="requester_kinds_by_month",
                title="Decisions per month by kind of requester",
                months=tuple(months),
                series=tuple(kind_series),
            ),
        ]
        notes = [
            "An escalation is open until a later decision with the same request id about "
            "the same student (or bulk scope) permits or denies it; one without a request "
            "id cannot be matched and stays open.",
            "Obligations outstanding: "
            + (
                outstanding.source
                if outstanding.counts is None
                else "the obligations outbox as it stood when this report was made (it "
                "changes as obligations are delivered and acknowledged; it is beside the "
                f"signed log, not part of it), for decisions up to the checkpoint; "
                f"{outstanding.source}."
            ),
            "Dates: when the gatekeeper logged the decision, in the "
            f"{self.period.timezone} time zone. Invalid requests count as denials.",
        ]
        return Report(
            kind="activity",
            title="Gatekeeper activity",
            provenance=provenance,
            period=self.period,
            summary=summary,
            tables=tables,
            charts=charts,
            notes=[*provenance.coverage_notes(self.period), *notes],
            generated_at=now,
        )


def _wide(name: str, title: str, months: Sequence[str], counts: Counter[tuple[str, str]]) -> Table:
    totals: Counter[str] = Counter()
    for (_, key), n in counts.items():
        totals[key] += n
    keys = sorted(totals, key=lambda k: (-totals[k], k))
    return Table(
        name=name,
        title=title,
        columns=("key", *keys),
        headers=("month", *keys),
        rows=tuple((m, *(counts[(m, k)] for k in keys)) for m in months),
        numeric=frozenset(keys),
        html=False,
    )
