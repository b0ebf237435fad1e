"""Obligations still owed, for the activity report: read-only, from the outbox.

The rows are listed through the obligations API,
:meth:`gatekeeper.obligations.Obligations.list` with ``pending=True`` (a
blocking obligation until acknowledged, any other until delivered), oldest
first, at most :data:`DETAIL_ROWS` of them.

The API lists rows but does not count them, and listing every open row of a
100,000-entry log (about 280,000 rows there) took 20 s and 1.9 GB. So on the
SQLite store the counts come from one aggregate query on the ``obligations``
table over a separate read-only connection (``mode=ro``), with the API's own
definition of "open"; on any other store (PostgreSQL) they come from the full
API listing, whose memory grows with the number of open rows. Only rows of
decisions up to the checkpoint are counted. The outbox changes as obligations
are delivered and acknowledged: it is state beside the signed log, not part
of it, and the report says so.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gatekeeper.errors import GatekeeperError
from gatekeeper.reports._model import Table, age_days

if TYPE_CHECKING:
    from gatekeeper.audit.log import AuditLog
    from gatekeeper.audit.outbox import ObligationRecord

__all__ = ["DETAIL_ROWS", "ObligationCount", "Outstanding", "outstanding_obligations"]

#: Outstanding obligations listed one by one (the oldest); all of them are counted.
DETAIL_ROWS = 500
#: "Open" as :attr:`ObligationRecord.open` and the API's ``pending=True`` define it.
_OPEN = "(status IN ('pending', 'failed') OR (blocking = 1 AND status <> 'acknowledged'))"


@dataclass(frozen=True, slots=True)
class ObligationCount:
    code: str
    status: str
    blocking: bool
    count: int
    oldest: datetime


@dataclass(slots=True)
class _CodeTally:
    oldest: datetime
    blocking: bool = False
    pending: int = 0
    failed: int = 0
    delivered: int = 0


@dataclass(frozen=True, slots=True)
class Outstanding:
    """Open outbox rows for the decisions up to the checkpoint (None: not read)."""

    counts: tuple[ObligationCount, ...] | None
    oldest: tuple[ObligationRecord, ...] = ()
    source: str = ""

    @property
    def total(self) -> int | None:
        return None if self.counts is None else sum(c.count for c in self.counts)

    @property
    def blocking(self) -> int | None:
        return None if self.counts is None else sum(c.count for c in self.counts if c.blocking)


def _tally(rows: Iterable[ObligationRecord]) -> tuple[ObligationCount, ...]:
    counts: Counter[tuple[str, str, bool]] = Counter()
    oldest: dict[tuple[str, str, bool], datetime] = {}
    for r in rows:
        key = (r.code, r.status, r.blocking)
        counts[key] += 1
        oldest[key] = min(oldest.get(key, r.created_at), r.created_at)
    return tuple(
        ObligationCount(
            code,
            status,
            blocking,
            counts[(code, status, blocking)],
            oldest[(code, status, blocking)],
        )
        for code, status, blocking in sorted(counts)
    )


def _sqlite_counts(log: AuditLog, size: int) -> tuple[ObligationCount, ...] | None:
    from gatekeeper.audit.store import SqliteStore

    store = log.store
    if not isinstance(store, SqliteStore):
        return None
    uri = store.path.resolve().as_uri() + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=store.busy_timeout)
        try:
            rows = db.execute(
                "SELECT code, status, blocking, COUNT(*), MIN(created_at) FROM obligations "  # noqa: S608 - constant
                f"WHERE entry_index < ? AND {_OPEN} GROUP BY code, status, blocking "
                "ORDER BY code, status, blocking",
                (size,),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return None  # fall back to the API
    return tuple(
        ObligationCount(
            str(code),
            str(status),
            bool(blocking),
            int(count),
            datetime.strptime(str(oldest), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
        )
        for code, status, blocking, count, oldest in rows
    )


def outstanding_obligations(log: AuditLog | None, size: int) -> Outstanding:
    """The open obligations of entries ``< size``: counts and the oldest rows."""
    if log is None:
        return Outstanding(None, source="no audit log given: obligations not read")
    from gatekeeper.obligations import Obligations

    api = Obligations(log)
    try:
        counts = _sqlite_counts(log, size)
        if counts is None:
            every = [r for r in api.list(pending=True) if r.entry_index < size]
            return Outstanding(
                _tally(every),
                tuple(every[:DETAIL_ROWS]),
                "listed through the obligations API (gatekeeper.obligations)",
            )
        oldest = [r for r in api.list(pending=True, limit=DETAIL_ROWS) if r.entry_index < size]
    except GatekeeperError as exc:
        return Outstanding(None, source=f"obligations not read: {exc}")
    return Outstanding(
        counts,
        tuple(oldest),
        "counted with one read-only query on the SQLite outbox table, the oldest listed "
        "through the obligations API (gatekeeper.obligations)",
    )


def obligation_tables(outstanding: Outstanding, now: datetime) -> list[Table]:
    counts = outstanding.counts
    if counts is None:
        return []
    by_code: dict[str, _CodeTally] = {}
    for c in counts:
        slot = by_code.setdefault(c.code, _CodeTally(oldest=c.oldest))
        slot.blocking = slot.blocking or c.blocking
        if c.status == "failed":
            slot.failed += c.count
        elif c.status == "delivered":
            slot.delivered += c.count
        else:
            slot.pending += c.count
        slot.oldest = min(slot.oldest, c.oldest)
    summary_rows = sorted(
        (
            (
                code,
                "yes" if t.blocking else "no",
                t.pending + t.failed + t.delivered,
                t.pending,
                t.failed,
                t.delivered,
                age_days(t.oldest, now),
            )
            for code, t in by_code.items()
        ),
        key=lambda row: (-row[2], row[0]),
    )
    summary = Table(
        name="obligations_by_code",
        title="Obligations outstanding, by code",
        columns=(
            "key",
            "blocking",
            "outstanding",
            "pending",
            "failed",
            "delivered_awaiting_ack",
            "oldest_days",
        ),
        headers=(
            "obligation",
            "blocking",
            "outstanding",
            "not yet delivered",
            "failed",
            "delivered, not acknowledged",
            "oldest (days)",
        ),
        rows=tuple(summary_rows),
        numeric=frozenset(
            {"outstanding", "pending", "failed", "delivered_awaiting_ack", "oldest_days"}
        ),
    )
    total = outstanding.total or 0
    detail = Table(
        name="obligations_outstanding",
        title="Obligations outstanding longest",
        columns=(
            "id",
            "code",
            "status",
            "blocking",
            "entry",
            "request_id",
            "created",
            "attempts",
            "last_error",
        ),
        headers=(
            "id",
            "obligation",
            "status",
            "blocking",
            "log entry",
            "request id",
            "created (UTC)",
            "attempts",
            "last error",
        ),
        rows=tuple(
            (
                r.id,
                r.code,
                r.status,
                "yes" if r.blocking else "no",
                r.entry_index,
                r.request_id or "",
                r.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
                r.attempts,
                (r.last_error or "")[:160],
            )
            for r in outstanding.oldest
        ),
        numeric=frozenset({"id", "entry", "attempts"}),
        note=f"The {len(outstanding.oldest):,} oldest of {total:,} outstanding; "
        "`gatekeeper obligations list --pending` lists every one.",
    )
    return [summary, detail]
