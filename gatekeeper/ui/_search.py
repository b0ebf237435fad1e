"""Searching the entries: the criteria (:class:`Search`), a table row, a page of them.

Time, student, requester and decision filter as ``gatekeeper audit show`` does
(:class:`gatekeeper.audit.show.EntryFilter`); index range, requester agency
(any case), rule and entry kind are added here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from gatekeeper.audit.show import EntryFilter
from gatekeeper.ui._auth import UiError

__all__ = [
    "DECISIONS",
    "PAGE_SIZES",
    "EntryRow",
    "Search",
    "SearchPage",
    "as_mapping",
    "as_strings",
    "as_text",
]

DECISIONS = ("permit", "deny", "escalate")
PAGE_SIZES = (25, 50, 100, 200)
_TEXT_LIMIT = 200


def as_text(value: object) -> str:
    return value if isinstance(value, str) else ""


def as_mapping(entry: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = entry.get(key)
    return value if isinstance(value, Mapping) else {}


def as_strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _moment(text: str, what: str, *, end: bool) -> str:
    """A UTC date or date-time as a prefix comparable with entry timestamps.
    A bare date as an end is inclusive: the next day's start."""
    value = text.strip().removesuffix("Z").replace(" ", "T")
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return (day + timedelta(days=1) if end else day).isoformat()
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError) as exc:
        raise UiError(f"{what}: not a UTC date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM)") from exc
    return moment.isoformat(timespec="seconds")  # the year zero-padded, as entries have it


@dataclass(frozen=True, slots=True)
class Search:
    """Which entries to list: each criterion given narrows the list."""

    first: int | None = None
    last: int | None = None
    since: str | None = None
    until: str | None = None
    student: str | None = None
    requester: str | None = None
    agency: str | None = None
    decision: str | None = None
    rule: str | None = None
    kind: str | None = None
    page: int = 1
    per_page: int = 50

    #: The query parameters, in the form's order.
    FIELDS = (
        "first", "last", "since", "until", "student", "requester", "agency", "decision",
        "rule", "kind",
    )  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("first", "last"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UiError(f"{name}: an entry index is 0 or more")
        if self.first is not None and self.last is not None and self.last < self.first:
            raise UiError("the index range ends before it starts")
        if self.decision is not None and self.decision not in DECISIONS:
            raise UiError(f"decision: one of {', '.join(DECISIONS)}")
        if self.page < 1:
            raise UiError("page: 1 or more")
        if self.per_page not in PAGE_SIZES:
            raise UiError(f"per page: one of {', '.join(map(str, PAGE_SIZES))}")
        for name in ("since", "until", "student", "requester", "agency", "rule", "kind"):
            value = getattr(self, name)
            if value is not None and len(value) > _TEXT_LIMIT:
                raise UiError(f"{name}: at most {_TEXT_LIMIT} characters")
        if self.since is not None:
            _moment(self.since, "from", end=False)
        if self.until is not None:
            _moment(self.until, "to", end=True)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Search:
        """From query parameters (empty ones are not criteria); :class:`UiError` if bad."""

        def given(name: str) -> str | None:
            value = params.get(name, "").strip()
            return value or None

        def number(name: str, default: int | None = None) -> int | None:
            value = given(name)
            if value is None:
                return default
            if not value.isdigit() or len(value) > 18:
                raise UiError(f"{name}: a whole number")
            return int(value)

        return cls(
            first=number("first"),
            last=number("last"),
            since=given("since"),
            until=given("until"),
            student=given("student"),
            requester=given("requester"),
            agency=given("agency"),
            decision=given("decision"),
            rule=given("rule"),
            kind=given("kind"),
            page=number("page", 1) or 1,
            per_page=number("per_page", 50) or 50,
        )

    def criteria(self) -> dict[str, str]:
        """The criteria given, as query parameters."""
        out = {}
        for name in self.FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        return out

    def query(self, **changes: int) -> str:
        """The query string of this search, with ``page``/``per_page`` changed."""
        params = self.criteria()
        params["per_page"] = str(changes.get("per_page", self.per_page))
        params["page"] = str(changes.get("page", self.page))
        return urlencode(params)

    def entry_filter(self) -> EntryFilter:
        """The criteria ``gatekeeper audit show`` knows."""
        return EntryFilter(
            since=None if self.since is None else _moment(self.since, "from", end=False),
            until=None if self.until is None else _moment(self.until, "to", end=True),
            student=self.student,
            requester=self.requester,
            decision=self.decision,
        )

    def matcher(self) -> _Matcher:
        return _Matcher(self, self.entry_filter())


@dataclass(frozen=True, slots=True)
class _Matcher:
    search: Search
    base: EntryFilter

    def __call__(self, entry: Mapping[str, Any]) -> bool:
        if not self.base.matches(dict(entry)):
            return False
        s = self.search
        if s.agency is not None:
            agency = as_text(as_mapping(entry, "requester").get("agency"))
            if agency.casefold() != s.agency.casefold():
                return False
        if s.rule is not None and s.rule not in as_strings(entry.get("rules")):
            return False
        return s.kind is None or as_text(entry.get("kind")) == s.kind


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One line of the search table: what a person scans for."""

    index: int
    timestamp: str
    kind: str
    decision: str
    rules: tuple[str, ...]
    requester_kind: str
    agency: str
    requester: str
    student: str
    purpose: str
    fields: tuple[str, ...]

    @classmethod
    def of(cls, index: int, entry: Mapping[str, Any]) -> EntryRow:
        requester = as_mapping(entry, "requester")
        student = as_text(as_mapping(entry, "student").get("id"))
        bulk = as_mapping(entry, "bulk")
        if not student and bulk:
            student = "bulk: " + as_text(bulk.get("scope"))
        fields = entry.get("fields")
        return cls(
            index=index,
            timestamp=as_text(entry.get("timestamp"))[:19].replace("T", " "),
            kind=as_text(entry.get("kind")),
            decision=as_text(entry.get("decision")),
            rules=tuple(as_strings(entry.get("rules"))),
            requester_kind=as_text(requester.get("kind")),
            agency=as_text(requester.get("agency")),
            requester=as_text(requester.get("id")),
            student=student,
            purpose=as_text(entry.get("purpose")),
            fields=tuple(as_strings(fields)),
        )


@dataclass(frozen=True, slots=True)
class SearchPage:
    search: Search
    rows: tuple[EntryRow, ...]
    #: Entries matching, in the searched range.
    total: int
    #: The latest checkpoint's size: entries beyond it are not searched.
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.search.per_page))
