"""Enforcement requests: de-identified counts of immigration-related requests.

Which entries count: decision entries whose policy output says the request
was in an immigration context (``immigration_context``, RULES.md), or that
carry ``REPORT_BOARD`` (the superintendent's report to the board, Ed. Code
234.7: that adds bulk national-origin lists and enforcement-linked vendors,
which are not an immigration context on their own). ``DHS-SEVP`` (IMM-18) and
a staff member's status query (IMM-02) are neither, so they are not counted.

What is kept: only codes from closed lists (agency codes of the policy
catalog, requester kinds, channels, legal-basis types, decisions, rule ids)
and months. No student id, name, requester id, free-text agency name, case
number or stated reason enters this report. An agency that is not a catalog
code is counted as "(unlisted immigration agency)" or, when no immigration
agency is named, "(no immigration agency named)".

Two kinds of figure:

- *requests* (the headline: received, refused, escalated, complied): entries
  with the same ``request_id`` about the same subject (student or bulk scope)
  are one request; it is received on its first entry's date, and its outcome
  is its latest decision up to the end of the period. An entry without a
  ``request_id`` is a request of its own. So an escalation later decided is
  counted once, by its final outcome.
- *decisions* (the tables and the chart): every decision entry in the period.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gatekeeper.reports._fields import (
    DECISIONS,
    deciding_rule,
    obligations,
    rules,
    sub,
    subject_key,
    text,
)
from gatekeeper.reports._model import (
    Chart,
    Period,
    Provenance,
    Report,
    ReportError,
    Table,
    months_between,
)
from gatekeeper.request import CHANNELS, LEGAL_BASIS_TYPES, REQUESTER_KINDS

__all__ = ["AgencyCatalog", "EnforcementAggregator", "is_enforcement_related"]

UNLISTED = "(unlisted immigration agency)"
NO_AGENCY = "(no immigration agency named)"
_RULE_ID = re.compile(r"^[A-Z]{2,6}-[0-9]{1,3}[A-Z]{0,3}$")


@dataclass(frozen=True, slots=True)
class AgencyCatalog:
    """The agency codes a report may name (the policy pack's ``agencies`` data)."""

    immigration: frozenset[str]
    sevp: str | None = None
    pattern: re.Pattern[str] | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> AgencyCatalog:
        """From the pack's data (``{"catalog": {"agencies": ...}}``) or the catalog itself."""
        catalog = data.get("catalog")
        if isinstance(catalog, Mapping):
            data = catalog
        agencies = data.get("agencies")
        if not isinstance(agencies, Mapping):
            raise ReportError("the policy data has no agency catalog ('agencies')")
        codes = agencies.get("immigration")
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            raise ReportError("the policy data's agencies.immigration is not a list of codes")
        sevp = agencies.get("sevp")
        raw = agencies.get("immigration_pattern")
        try:
            pattern = re.compile(raw) if isinstance(raw, str) else None
        except re.error as exc:
            raise ReportError(f"agencies.immigration_pattern does not compile: {exc}") from exc
        return cls(frozenset(codes), sevp if isinstance(sevp, str) else None, pattern)

    @classmethod
    def load(cls, policy_dir: str | Path | None = None) -> AgencyCatalog:
        """From the policy pack in ``policy_dir`` (default: the configured one)."""
        from gatekeeper.config import default_policy_dir
        from gatekeeper.engines import load_pack

        return cls.from_data(load_pack(policy_dir or default_policy_dir()).data)

    def _known(self, code: str) -> bool:
        return code in self.immigration or (self.sevp is not None and code == self.sevp)

    def describe(self, entry: Mapping[str, Any]) -> str:
        """The immigration agency behind a request, in words made only of codes."""
        requester = sub(entry, "requester")
        agency = text(requester.get("agency"))
        kind = requester_kind(entry)
        if self._known(agency):
            return agency
        relay = text(entry.get("on_behalf_of"))
        if self._known(relay):
            return f"{relay} (relayed by {kind})"
        task_force = entry.get("task_force")
        if isinstance(task_force, list):
            for member in task_force:
                if isinstance(member, str) and self._known(member):
                    return f"{member} (task force; {kind})"
        if kind == "immigration_authority" or (
            agency and self.pattern is not None and self.pattern.search(agency)
        ):
            return UNLISTED
        return NO_AGENCY


def requester_kind(entry: Mapping[str, Any]) -> str:
    kind = text(sub(entry, "requester").get("kind"))
    return kind if kind in REQUESTER_KINDS else "other"


def is_enforcement_related(entry: Mapping[str, Any]) -> bool:
    """An immigration-related decision entry (see the module docstring)."""
    if entry.get("kind") != "decision":
        return False
    return entry.get("immigration_context") is True or "REPORT_BOARD" in obligations(entry)


def _decision(entry: Mapping[str, Any]) -> str:
    value = text(entry.get("decision"))
    return value if value in DECISIONS else "deny"


def _coded(value: str, allowed: frozenset[str], other: str = "(other)") -> str:
    return value if value in allowed else other


DIMENSIONS: tuple[tuple[str, str, str], ...] = (
    ("by_agency", "By agency", "agency"),
    ("by_document", "By document presented (legal basis)", "document type"),
    ("by_channel", "By channel", "channel"),
    ("by_requester_kind", "By kind of requester", "requester kind"),
    ("by_decision", "By decision", "decision"),
    ("by_rule", "By deciding rule", "rule"),
    ("by_rule_cited", "By rule cited (any position)", "rule"),
)

LABELLED = frozenset(
    {"by_document", "by_channel", "by_requester_kind", "by_decision", "by_rule", "by_rule_cited"}
)


class EnforcementAggregator:
    """One pass over the log; :meth:`report` builds the :class:`Report`."""

    def __init__(self, period: Period, catalog: AgencyCatalog) -> None:
        self.period = period
        self.catalog = catalog
        self.counts: dict[str, Counter[tuple[str, str]]] = {d[0]: Counter() for d in DIMENSIONS}
        self.by_month: Counter[tuple[str, str]] = Counter()
        #: (request_id, subject) or entry index -> [first day, latest decision,
        #: its decision_id, whether its release was held]
        self.requests: dict[tuple[str, str] | int, list[Any]] = {}
        #: decision ids with a release entry up to the end of the period
        self.released: set[str] = set()
        self.decisions = 0
        self.undated = 0

    def add(self, index: int, entry: Mapping[str, Any], moment: datetime | None) -> None:
        if entry.get("kind") == "release":
            if moment is not None and not self.period.after(moment.date()):
                self.released.add(text(sub(entry, "release").get("decision_id")))
            return
        if not is_enforcement_related(entry):
            return
        if moment is None:
            self.undated += 1
            return
        day = moment.date()
        decision = _decision(entry)
        if not self.period.after(day):
            request_id = text(entry.get("request_id"))
            key: tuple[str, str] | int = (request_id, subject_key(entry)) if request_id else index
            held = decision == "permit" and bool(entry.get("held_for"))
            latest = [decision, text(entry.get("decision_id")), held]
            seen = self.requests.get(key)
            if seen is None:
                self.requests[key] = [day, *latest]
            else:
                seen[1:] = latest
        if not self.period.contains(day):
            return
        self.decisions += 1
        basis = sub(entry, "legal_basis")
        values = {
            "by_agency": self.catalog.describe(entry),
            "by_document": _coded(text(basis.get("type")) or "none", LEGAL_BASIS_TYPES),
            "by_channel": _coded(text(entry.get("channel")), CHANNELS),
            "by_requester_kind": requester_kind(entry),
            "by_decision": decision,
            "by_rule": _rule(deciding_rule(entry)),
        }
        for name, value in values.items():
            self.counts[name][(value, decision)] += 1
        for rule in dict.fromkeys(rules(entry)):
            self.counts["by_rule_cited"][(_rule(rule), decision)] += 1
        self.by_month[(moment.strftime("%Y-%m"), decision)] += 1

    # -- results -------------------------------------------------------------

    def headline(self) -> dict[str, int]:
        outcomes: Counter[str] = Counter()
        for first_day, decision, decision_id, held in self.requests.values():
            if self.period.contains(first_day):
                if held and decision_id not in self.released:
                    decision = "held"  # permitted, nothing released yet
                outcomes[decision] += 1
        return {
            "received": sum(outcomes.values()),
            "refused": outcomes["deny"],
            "escalated": outcomes["escalate"],
            "complied": outcomes["permit"],
            "held": outcomes["held"],
            "decisions": self.decisions,
        }

    def months(self) -> list[str]:
        seen = sorted({month for month, _ in self.by_month})
        first = self.period.start.strftime("%Y-%m") if self.period.start else None
        last = self.period.end.strftime("%Y-%m") if self.period.end else None
        first = first or (seen[0] if seen else None)
        last = last or (seen[-1] if seen else None)
        if first is None or last is None:
            return []
        return months_between(first, last)

    def report(self, provenance: Provenance, *, generated_at: datetime | None = None) -> Report:
        figures = self.headline()
        period = self.period.label()
        sentence = (
            f"Immigration-related requests for student information, {period}: "
            f"received {figures['received']:,}, refused {figures['refused']:,}, "
            f"escalated {figures['escalated']:,}, complied {figures['complied']:,}"
            + (f", permitted but not yet released {figures['held']:,}." if figures["held"] else ".")
        )
        first = provenance.first_day
        if self.period.start is not None and (first is None or self.period.start < first):
            # The headline is what gets published: it must not pass for a
            # measured zero over days the log does not cover.
            sentence += (
                f" The audit log begins on {first}: nothing before that day is counted."
                if first is not None
                else " The audit log holds no entry yet: nothing could be counted."
            )
        tables = [
            outcome_table(name, title, header, self.counts[name], label_keys=name in LABELLED)
            for name, title, header in DIMENSIONS
        ]
        months = self.months()
        tables.append(
            outcome_table("by_month", "By month", "month", self.by_month, order=months, sort=False)
        )
        chart = Chart(
            name="decisions_by_month",
            title="Immigration-related decisions per month",
            months=tuple(months),
            series=tuple(
                (word, tuple(self.by_month[(m, decision)] for m in months))
                for decision, word in (
                    ("deny", "refused"),
                    ("escalate", "escalated"),
                    ("permit", "permitted"),
                )
            ),
        )
        notes = [
            "Counted: decisions in an immigration context (RULES.md) or carrying the "
            "REPORT_BOARD obligation (Ed. Code 234.7). Student-visa (SEVP) compliance "
            "requests and staff status queries are not immigration enforcement and are "
            "not counted.",
            "Requests (the headline): entries with the same request id about the same "
            "student are one request, received on its first date, with the outcome of its "
            "latest decision up to the end of the period. A permit whose release waits for "
            "a required step (the parent's notice) counts as complied once released, until "
            "then as permitted but not yet released. The tables and the chart count every "
            "decision.",
            "De-identified: no student, requester or case identifiers, names or stated "
            "reasons; agencies only by their catalog code. Small counts can still point "
            "to a family in a small school: publish totals, keep the tables for the board.",
            "Dates: when the gatekeeper logged the decision, in the "
            f"{self.period.timezone} time zone.",
        ]
        if self.undated:
            notes.append(f"{self.undated} related entries carry no timestamp and are not counted.")
        return Report(
            kind="enforcement",
            title="Immigration-related requests for student records",
            provenance=provenance,
            period=self.period,
            summary={**figures, "statement": sentence},
            tables=tables,
            charts=[chart],
            notes=[*provenance.coverage_notes(self.period), *notes],
            generated_at=generated_at or datetime.now(UTC),
        )


def _rule(rule: str) -> str:
    return rule if _RULE_ID.match(rule) or rule == "(none)" else "(other)"


def outcome_table(
    name: str,
    title: str,
    header: str,
    counts: Counter[tuple[str, str]],
    *,
    order: Sequence[str] | None = None,
    sort: bool = True,
    html_limit: int | None = None,
    label_keys: bool = False,
    words: tuple[str, str, str] = ("refused", "escalated", "permitted"),
) -> Table:
    """Rows ``value, decisions, refused, escalated, complied`` from (value, decision) counts
    (``words``: the names of the deny, escalate and permit columns)."""
    keys = list(order) if order is not None else list(dict.fromkeys(k for k, _ in counts))
    rows: list[tuple[str, int, int, int, int]] = []
    for key in keys:
        deny, escalate, permit = (counts[(key, d)] for d in ("deny", "escalate", "permit"))
        rows.append((key, deny + escalate + permit, deny, escalate, permit))
    if sort:
        rows.sort(key=lambda r: (-r[1], r[0]))
    return Table(
        name=name,
        title=title,
        columns=("key", "decisions", *words),
        headers=(header, "decisions", *words),
        rows=tuple(rows),
        numeric=frozenset({"decisions", *words}),
        html_limit=html_limit,
        label_keys=label_keys,
    )
