"""The obligations outbox: rows committed in the same transaction as their audit entry.

A decision's obligations are written to the ``obligations`` table inside the
transaction that appends the decision's entry (:meth:`AuditLog.append` with
``obligations=``): either both are durable or neither is. An acknowledgment
is an ``obligation_ack`` entry whose transaction also marks the row
acknowledged. Dispatchers claim due rows, deliver them, and settle them.

    obligations(
        id              integer, assigned by the store
        entry_index     the decision's audit entry
        decision_id, request_id, code
        blocking        ⛔ in RULES.md: the release waits for an acknowledgment
        status          pending | delivered | acknowledged | failed
        attempts, next_attempt_at, last_error
        created_at, delivered_at, acked_at, acked_by, ack_entry_index
        lease_until, claim_token   a dispatcher's claim (at-least-once)
        payload         JSON: what a recipient needs, never record values
    )

This module holds the types and the SQLite statements; the PostgreSQL ones
are in :mod:`gatekeeper.audit.postgres_outbox`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gatekeeper.audit.entry import AuditError, timestamp

if TYPE_CHECKING:
    from gatekeeper.audit.store import AppendedEntry

__all__ = [
    "ACKNOWLEDGED",
    "COLUMNS",
    "DELIVERED",
    "FAILED",
    "PENDING",
    "STATUSES",
    "NewObligation",
    "ObligationAck",
    "ObligationRecord",
    "OutboxOp",
    "record_from_row",
]

PENDING, DELIVERED, ACKNOWLEDGED, FAILED = "pending", "delivered", "acknowledged", "failed"
STATUSES = (PENDING, DELIVERED, ACKNOWLEDGED, FAILED)

#: The columns every read selects, in this order (see :func:`record_from_row`).
COLUMNS = (
    "id, entry_index, decision_id, request_id, code, blocking, status, attempts, "
    "next_attempt_at, last_error, created_at, delivered_at, acked_at, acked_by, "
    "ack_entry_index, payload, claim_token, lease_until"
)


@dataclass(frozen=True, slots=True)
class NewObligation:
    """One row to insert with a decision's entry (its index is filled in by the store)."""

    decision_id: str
    request_id: str | None
    code: str
    blocking: bool
    payload: Mapping[str, Any]
    created_at: datetime
    #: Set when the obligation is met at once (recorded ``acknowledged`` by this actor).
    met_by: str | None = None


@dataclass(frozen=True, slots=True)
class ObligationAck:
    """Mark one row acknowledged, in the transaction of its ``obligation_ack`` entry.

    The store checks, under its lock, that the row still names this decision
    and code and is not acknowledged yet; otherwise the append fails.
    """

    obligation_id: int
    decision_id: str
    code: str
    acked_by: str
    acked_at: datetime


#: What an entry carries into the outbox: rows to insert, or one acknowledgment.
OutboxOp = Sequence[NewObligation] | ObligationAck | None


@dataclass(frozen=True, slots=True)
class ObligationRecord:
    """One outbox row as read back."""

    id: int
    entry_index: int
    decision_id: str
    request_id: str | None
    code: str
    blocking: bool
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None
    ack_entry_index: int | None
    payload: Mapping[str, Any] = field(repr=False)
    claim_token: str | None = field(default=None, repr=False)
    lease_until: datetime | None = None

    @property
    def open(self) -> bool:
        """Still owed: a blocking row until acknowledged, any other until delivered."""
        if self.status == ACKNOWLEDGED:
            return False
        return self.blocking or self.status in (PENDING, FAILED)

    def to_dict(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return None if value is None else timestamp(value)

        return {
            "id": self.id,
            "entry_index": self.entry_index,
            "decision_id": self.decision_id,
            "request_id": self.request_id,
            "code": self.code,
            "blocking": self.blocking,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": when(self.next_attempt_at),
            "last_error": self.last_error,
            "created_at": when(self.created_at),
            "delivered_at": when(self.delivered_at),
            "acked_at": when(self.acked_at),
            "acked_by": self.acked_by,
            "ack_entry_index": self.ack_entry_index,
            "payload": dict(self.payload),
        }


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("outbox times must be timezone-aware")
    return value.astimezone(UTC)


def record_from_row(row: Sequence[Any], parse_time: Callable[[Any], datetime]) -> ObligationRecord:
    """An :class:`ObligationRecord` from a row selected as :data:`COLUMNS`."""

    def opt(value: Any) -> datetime | None:
        return None if value is None else parse_time(value)

    payload = row[15]
    if isinstance(payload, str | bytes):
        payload = json.loads(payload)
    return ObligationRecord(
        id=int(row[0]),
        entry_index=int(row[1]),
        decision_id=str(row[2]),
        request_id=None if row[3] is None else str(row[3]),
        code=str(row[4]),
        blocking=bool(row[5]),
        status=str(row[6]),
        attempts=int(row[7]),
        next_attempt_at=parse_time(row[8]),
        last_error=row[9],
        created_at=parse_time(row[10]),
        delivered_at=opt(row[11]),
        acked_at=opt(row[12]),
        acked_by=row[13],
        ack_entry_index=None if row[14] is None else int(row[14]),
        payload=payload if isinstance(payload, Mapping) else {},
        claim_token=row[16],
        lease_until=opt(row[17]),
    )


def payload_json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# -- SQLite ------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS obligations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_index INTEGER NOT NULL,
    decision_id TEXT NOT NULL,
    request_id TEXT,
    code TEXT NOT NULL,
    blocking INTEGER NOT NULL CHECK (blocking IN (0, 1)),
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'delivered', 'acknowledged', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT,
    acked_at TEXT,
    acked_by TEXT,
    ack_entry_index INTEGER,
    lease_until TEXT,
    claim_token TEXT,
    payload TEXT NOT NULL,
    UNIQUE (decision_id, code)
);
CREATE INDEX IF NOT EXISTS obligations_due ON obligations (status, next_attempt_at);
"""


def _ts(value: datetime) -> str:
    """Fixed-width UTC text: compares as it sorts."""
    return timestamp(_utc(value))


def _parse_ts(value: Any) -> datetime:
    return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def sqlite_apply(
    db: sqlite3.Connection, appended: Sequence[AppendedEntry], outbox: Sequence[OutboxOp]
) -> None:
    """Inside the append transaction: the outbox ops of the appended entries."""
    if len(outbox) != len(appended):
        raise AuditError("audit append failed: outbox ops do not match the entries")
    rows = []
    for entry, op in zip(appended, outbox, strict=True):
        if isinstance(op, ObligationAck):
            cur = db.execute(
                "UPDATE obligations SET status = 'acknowledged', acked_at = ?, acked_by = ?, "
                "ack_entry_index = ?, lease_until = NULL, claim_token = NULL "
                "WHERE id = ? AND decision_id = ? AND code = ? AND status <> 'acknowledged'",
                (
                    _ts(op.acked_at),
                    op.acked_by,
                    entry.index,
                    op.obligation_id,
                    op.decision_id,
                    op.code,
                ),
            )
            if cur.rowcount != 1:
                raise AuditError(
                    f"obligation {op.obligation_id} is unknown or already acknowledged",
                    reason="obligation_conflict",
                )
        elif op:
            for o in op:
                created = _ts(o.created_at)
                met = o.met_by is not None
                rows.append((
                    entry.index, o.decision_id, o.request_id, o.code, int(o.blocking),
                    ACKNOWLEDGED if met else PENDING, created, created,
                    created if met else None, o.met_by, payload_json(o.payload),
                ))  # fmt: skip
    if rows:
        db.executemany(
            "INSERT INTO obligations (entry_index, decision_id, request_id, code, blocking, "
            "status, next_attempt_at, created_at, acked_at, acked_by, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def sqlite_get(db: sqlite3.Connection, obligation_id: int) -> ObligationRecord | None:
    row = db.execute(
        f"SELECT {COLUMNS} FROM obligations WHERE id = ?",  # noqa: S608 - constant columns
        (obligation_id,),
    ).fetchone()
    return None if row is None else record_from_row(row, _parse_ts)


def sqlite_list(
    db: sqlite3.Connection, *, decision_id: str | None, open_only: bool, limit: int | None
) -> list[ObligationRecord]:
    where: list[str] = []
    params: list[Any] = []
    if decision_id is not None:
        where.append("decision_id = ?")
        params.append(decision_id)
    if open_only:
        where.append(
            "(status IN ('pending', 'failed') OR (blocking = 1 AND status <> 'acknowledged'))"
        )
    sql = f"SELECT {COLUMNS} FROM obligations"  # noqa: S608 - constant columns
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [record_from_row(r, _parse_ts) for r in db.execute(sql, params).fetchall()]


def sqlite_claim(
    db: sqlite3.Connection,
    codes: Sequence[str],
    *,
    now: datetime,
    lease_until: datetime,
    max_attempts: int,
    limit: int,
    token: str,
) -> list[ObligationRecord]:
    """``BEGIN IMMEDIATE``: one writer at a time, so two dispatchers never claim one row."""
    if not codes:
        return []
    marks = ",".join("?" * len(codes))
    at = _ts(now)
    db.execute("BEGIN IMMEDIATE")
    try:
        # Rows whose dispatchers died mid-delivery until no attempt was left.
        db.execute(
            "UPDATE obligations SET status = 'failed', lease_until = NULL, claim_token = NULL, "  # noqa: S608
            "last_error = 'no outcome: the dispatcher stopped mid-delivery' "
            f"WHERE status = 'pending' AND code IN ({marks}) AND attempts >= ? "
            "AND lease_until IS NOT NULL AND lease_until <= ?",
            (*codes, max_attempts, at),
        )
        ids = [
            int(r[0])
            for r in db.execute(
                f"SELECT id FROM obligations WHERE status = 'pending' AND code IN ({marks}) "  # noqa: S608
                "AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
                "AND attempts < ? ORDER BY next_attempt_at, id LIMIT ?",
                (*codes, at, at, max_attempts, limit),
            ).fetchall()
        ]
        claimed: list[ObligationRecord] = []
        if ids:
            id_marks = ",".join("?" * len(ids))
            db.execute(
                "UPDATE obligations SET attempts = attempts + 1, lease_until = ?, "  # noqa: S608
                f"claim_token = ? WHERE id IN ({id_marks})",
                (_ts(lease_until), token, *ids),
            )
            claimed = [
                record_from_row(r, _parse_ts)
                for r in db.execute(
                    f"SELECT {COLUMNS} FROM obligations WHERE id IN ({id_marks}) "  # noqa: S608
                    "ORDER BY next_attempt_at, id",
                    ids,
                ).fetchall()
            ]
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return claimed


def sqlite_mark_delivered(
    db: sqlite3.Connection, obligation_id: int, token: str, *, at: datetime
) -> bool:
    cur = db.execute(
        "UPDATE obligations SET delivered_at = COALESCE(delivered_at, ?), "
        "status = CASE WHEN status = 'pending' THEN 'delivered' ELSE status END, "
        "last_error = NULL, lease_until = NULL, claim_token = NULL "
        "WHERE id = ? AND claim_token = ?",
        (_ts(at), obligation_id, token),
    )
    return cur.rowcount == 1


def sqlite_mark_failed(
    db: sqlite3.Connection,
    obligation_id: int,
    token: str,
    *,
    error: str,
    retry_at: datetime | None,
) -> bool:
    if retry_at is None:
        cur = db.execute(
            "UPDATE obligations SET status = 'failed', last_error = ?, lease_until = NULL, "
            "claim_token = NULL WHERE id = ? AND claim_token = ? AND status = 'pending'",
            (error[:1000], obligation_id, token),
        )
    else:
        cur = db.execute(
            "UPDATE obligations SET next_attempt_at = ?, last_error = ?, lease_until = NULL, "
            "claim_token = NULL WHERE id = ? AND claim_token = ? AND status = 'pending'",
            (_ts(retry_at), error[:1000], obligation_id, token),
        )
    return cur.rowcount == 1
