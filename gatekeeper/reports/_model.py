"""The values a report is made of: its period, its provenance, its tables."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gatekeeper.audit.entry import entry_moment
from gatekeeper.errors import GatekeeperError
from gatekeeper.request import DEFAULT_TIMEZONE

if TYPE_CHECKING:
    from gatekeeper.audit.note import Checkpoint
    from gatekeeper.audit.verify import VerifyReport

__all__ = ["Chart", "Period", "Provenance", "Report", "ReportError", "Table"]

#: A table cell: text, a count, or nothing.
Cell = str | int | None


class ReportError(GatekeeperError):
    """A report cannot be produced (no checkpoint, unreadable log, bad option)."""

    reason = "report_error"


@dataclass(frozen=True, slots=True)
class Period:
    """Calendar dates ``start``..``end`` (both inclusive, either open) in the district's
    time zone. An entry belongs to the period by the time the log recorded it
    (its ``timestamp``), not by the ``as_of`` the requester's side supplied."""

    start: date | None = None
    end: date | None = None
    timezone: str = DEFAULT_TIMEZONE

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ReportError(f"the period ends ({self.end}) before it starts ({self.start})")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ReportError(f"unknown time zone {self.timezone!r}") from exc

    @classmethod
    def parse(
        cls, start: str | None, end: str | None, *, timezone: str = DEFAULT_TIMEZONE
    ) -> Period:
        """From ``YYYY-MM-DD`` strings (None: open)."""

        def day(text: str | None, what: str) -> date | None:
            if text is None or text == "":
                return None
            try:
                return date.fromisoformat(text)
            except ValueError as exc:
                raise ReportError(f"{what} must be a date (YYYY-MM-DD), not {text!r}") from exc

        return cls(day(start, "--from"), day(end, "--to"), timezone)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def contains(self, day: date) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)

    def after(self, day: date) -> bool:
        """``day`` is past the end of the period."""
        return self.end is not None and day > self.end

    def label(self) -> str:
        if self.start is None and self.end is None:
            return "all entries"
        if self.start is None:
            return f"up to {self.end}"
        if self.end is None:
            return f"from {self.start}"
        return f"{self.start} to {self.end}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": None if self.start is None else self.start.isoformat(),
            "to": None if self.end is None else self.end.isoformat(),
            "timezone": self.timezone,
            "basis": "the time each entry was logged (its timestamp), in this time zone",
        }


def months_between(first: str, last: str) -> list[str]:
    """Every ``YYYY-MM`` from ``first`` to ``last`` inclusive."""
    year, month = int(first[:4]), int(first[5:7])
    end = (int(last[:4]), int(last[5:7]))
    out = []
    while (year, month) <= end:
        out.append(f"{year:04d}-{month:02d}")
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return out


def local_moment(stamp: object, zone: ZoneInfo) -> datetime | None:
    """An entry's UTC ``timestamp`` in the district's time zone (None if missing or bad)."""
    moment = entry_moment(stamp)
    return None if moment is None else moment.astimezone(zone)


@dataclass(frozen=True, slots=True)
class Provenance:
    """What a report was produced from, and whether that verified.

    ``size`` and ``root`` are those of a signed checkpoint; the report counts
    entries ``0..size-1`` only, and those entries were re-hashed while the
    report read them (``entries_match``: they produce exactly ``root``).
    ``log_verified`` is the verdict of :func:`gatekeeper.audit.verify.verify_log`
    run with the checkpoint as the trusted one.
    """

    origin: str
    size: int
    root: bytes
    checkpoint: str
    log_verified: bool
    verification: str
    signatures: str
    signatures_checked: int
    problems: tuple[str, ...] = ()
    entries_match: bool = True
    verified_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: The days (district zone) of the first and the last entry up to the
    #: checkpoint, as the report's scan read them (None: no dated entry).
    first_day: date | None = None
    last_day: date | None = None

    def coverage_notes(self, period: Period) -> list[str]:
        """What the log can say about ``period``: a zero counted outside the
        days the log covers is not a measured zero."""
        if self.first_day is None or self.last_day is None:
            return ["The log holds no dated entry up to this checkpoint: nothing could be counted."]
        notes = []
        if period.start is None or period.start < self.first_day:
            notes.append(
                f"The log's first entry is of {self.first_day}: nothing before that day is "
                "in it, so nothing before it is counted here."
            )
        if period.end is None or period.end > self.last_day:
            notes.append(
                f"The checkpoint's last entry is of {self.last_day}: what was logged after "
                "it is not counted here (a later checkpoint would include it)."
            )
        return notes

    @classmethod
    def of(cls, checkpoint: Checkpoint, note: str, report: VerifyReport) -> Provenance:
        """The provenance of ``checkpoint`` (its signed ``note``) as ``report`` verified it."""
        return cls(
            origin=checkpoint.origin,
            size=checkpoint.size,
            root=checkpoint.root,
            checkpoint=note,
            log_verified=report.ok,
            verification=(
                f"{report.summary()}; {report.checkpoints} checkpoints; signatures: "
                f"{report.signature_mode} ({report.signatures_checked} checked)"
            ),
            signatures=report.signature_mode,
            signatures_checked=report.signatures_checked,
            problems=tuple(str(p) for p in report.problems[:20]),
        )

    @property
    def root_base64(self) -> str:
        return base64.b64encode(self.root).decode("ascii")

    @property
    def verified(self) -> bool:
        """The log verified and the counted entries hash to the checkpoint's root."""
        return self.log_verified and self.entries_match

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root_base64,
            "checkpoint": self.checkpoint,
            "verified": self.verified,
            "log_verified": self.log_verified,
            "entries_match_checkpoint": self.entries_match,
            "verification": self.verification,
            "signatures": self.signatures,
            "signatures_checked": self.signatures_checked,
            "problems": list(self.problems),
            "verified_at": _stamp(self.verified_at),
        }


@dataclass(frozen=True, slots=True)
class Table:
    """One table of a report: ``columns`` are machine names (JSON keys, CSV
    measures), ``headers`` the words people read. The first column is the row key.
    ``html_limit``: at most that many rows in the HTML (all of them in CSV and JSON)."""

    name: str
    title: str
    columns: tuple[str, ...]
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""
    html: bool = True
    html_limit: int | None = None
    #: Columns holding counts (right-aligned).
    numeric: frozenset[str] = frozenset()
    #: The HTML shows the key column's codes in words (channels, kinds, documents).
    label_keys: bool = False

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.headers):
            raise ValueError(
                f"table {self.name}: {len(self.columns)} columns, {len(self.headers)} headers"
            )

    def records(self) -> list[dict[str, Cell]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def shown_rows(self) -> tuple[tuple[Cell, ...], ...]:
        return self.rows if self.html_limit is None else self.rows[: self.html_limit]


@dataclass(frozen=True, slots=True)
class Chart:
    """A stacked bar chart over months: one series per label, one value per month."""

    name: str
    title: str
    months: tuple[str, ...]
    series: tuple[tuple[str, tuple[int, ...]], ...]
    ylabel: str = "decisions"

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "months": list(self.months),
            "series": {label: list(values) for label, values in self.series},
        }


@dataclass(frozen=True, slots=True)
class Report:
    """A finished report, ready for :func:`gatekeeper.reports.render`."""

    kind: str
    title: str
    provenance: Provenance
    period: Period
    summary: Mapping[str, Cell]
    tables: Sequence[Table]
    charts: Sequence[Chart] = ()
    notes: Sequence[str] = ()
    subject: str | None = None
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: Notes for district staff only (hidden when the HTML is printed).
    staff_notes: Sequence[str] = ()

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "gatekeeper.report/v1",
            "report": self.kind,
            "title": self.title,
            "subject": self.subject,
            "generated_at": _stamp(self.generated_at),
            "period": self.period.to_dict(),
            "checkpoint": self.provenance.to_dict(),
            "summary": dict(self.summary),
            "tables": {t.name: t.records() for t in self.tables},
            "charts": {c.name: c.to_dict() for c in self.charts},
            "notes": list(self.notes),
            "staff_notes": list(self.staff_notes),
        }


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def age_days(moment: datetime | None, now: datetime) -> int | None:
    if moment is None:
        return None
    return max(0, (now - moment) // timedelta(days=1))
