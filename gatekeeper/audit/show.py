"""Reading entries back for people: filters and a readable table (``gatekeeper audit show``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gatekeeper.audit.entry import timestamp
from gatekeeper.audit.store import AuditStore
from gatekeeper.errors import GatekeeperError

__all__ = ["EntryFilter", "iter_entries", "render_table", "select_entries"]

#: A date, or a date and a time (seconds, fractions and a zone optional).
_BOUND = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?"
)


@dataclass(frozen=True, slots=True)
class EntryFilter:
    index: int | None = None
    since: str | None = None
    until: str | None = None
    student: str | None = None
    requester: str | None = None
    decision: str | None = None
    limit: int = 1000

    def __post_init__(self) -> None:
        # Entries compare by their timestamp text (UTC, fixed microseconds): a
        # bound is read as a date or a timestamp (no zone: UTC) and rewritten
        # in that form, or a typo would select nothing, or everything.
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                if not _BOUND.fullmatch(value):
                    raise ValueError(value)
                moment = datetime.fromisoformat(value)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                text = timestamp(moment)
            except (ValueError, OverflowError):
                raise GatekeeperError(
                    f"--{name} must be a UTC date or timestamp "
                    f"(2026-12-05 or 2026-12-05T17:00:00Z), not {value!r}"
                ) from None
            object.__setattr__(self, name, text)
        if self.limit < 1:
            raise GatekeeperError("--limit must be at least 1")

    def matches(self, entry: dict[str, Any]) -> bool:
        stamp = str(entry.get("timestamp", ""))
        if self.since and stamp < self.since:
            return False
        if self.until and stamp >= self.until:
            return False
        if self.student and (entry.get("student") or {}).get("id") != self.student:
            return False
        if self.requester and (entry.get("requester") or {}).get("id") != self.requester:
            return False
        return not (self.decision and entry.get("decision") != self.decision)


def iter_entries(
    store: AuditStore, start: int = 0, end: int | None = None, chunk: int = 4096
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, parsed entry) for every entry in [start, end)."""
    stop = store.size() if end is None else end
    for lo in range(start, stop, chunk):
        for stored in store.read_entries(lo, min(stop, lo + chunk)):
            yield stored.index, json.loads(stored.data)


def select_entries(store: AuditStore, query: EntryFilter) -> list[tuple[int, dict[str, Any]]]:
    if query.index is not None:
        return list(iter_entries(store, query.index, query.index + 1))
    out = []
    for index, entry in iter_entries(store):
        if query.matches(entry):
            out.append((index, entry))
            if len(out) >= query.limit:
                break
    return out


def render_table(rows: list[tuple[int, dict[str, Any]]]) -> str:
    header = ("#", "time (UTC)", "decision", "rule", "requester", "student", "fields")
    lines = [header]
    for index, entry in rows:
        follows = _follows(entry)
        if follows is not None:
            # An acknowledgment or a release: what it did, and to which decision.
            kind, detail = follows
            lines.append(
                (str(index), str(entry.get("timestamp", ""))[:19], kind, "", detail[:48], "", "")
            )
            continue
        requester = entry.get("requester") or {}
        who = f"{requester.get('kind', '')}:{requester.get('agency') or requester.get('id', '')}"
        student = (entry.get("student") or {}).get("id") or (
            f"bulk:{(entry.get('bulk') or {}).get('scope', '')}" if entry.get("bulk") else ""
        )
        rules = entry.get("rules") or []
        rule = rules[0] if rules else (entry.get("reason") or entry.get("kind", ""))
        lines.append(
            (
                str(index),
                str(entry.get("timestamp", ""))[:19],
                str(entry.get("decision", "")),
                str(rule),
                who[:28],
                str(student)[:14],
                ",".join(entry.get("fields") or [])[:40],
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in lines
    )


def _follows(entry: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, "<code> of entry N" / "entry N") for an entry that acts on an
    earlier decision (an acknowledgment, a release); None for any other."""
    kind = entry.get("kind")
    if kind == "obligation_ack":
        named = entry.get("obligation") or {}
        return "ack", f"{named.get('code', '')} of entry {named.get('decision_entry', '?')}"
    if kind == "release":
        named = entry.get("release") or {}
        return "release", f"entry {named.get('decision_entry', '?')}"
    return None
