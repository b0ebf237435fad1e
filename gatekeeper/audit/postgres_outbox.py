"""The obligations outbox in PostgreSQL: the statements :class:`PostgresStore` runs.

Same table as SQLite (:mod:`gatekeeper.audit.outbox`), with native types
(``boolean``, ``timestamptz``, ``jsonb``). Rows are inserted and acknowledged
inside the append transaction, after the head row's lock; dispatchers claim
due rows with ``SELECT … FOR UPDATE SKIP LOCKED``, so any number of
dispatcher processes, on any number of machines, never claim one row twice
while its lease runs, and never wait for each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.outbox import (
    ACKNOWLEDGED,
    COLUMNS,
    PENDING,
    NewObligation,
    ObligationAck,
    ObligationRecord,
    OutboxOp,
    payload_json,
    record_from_row,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

    from gatekeeper.audit.store import AppendedEntry

    Connection = psycopg.Connection[TupleRow]
    Cursor = psycopg.Cursor[TupleRow]

__all__ = ["SCHEMA", "apply", "claim", "get", "list_rows", "mark_delivered", "mark_failed"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS obligations (
        id bigserial PRIMARY KEY,
        entry_index bigint NOT NULL,
        decision_id text NOT NULL,
        request_id text,
        code text NOT NULL,
        blocking boolean NOT NULL,
        status text NOT NULL
            CHECK (status IN ('pending', 'delivered', 'acknowledged', 'failed')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL,
        last_error text,
        created_at timestamptz NOT NULL,
        delivered_at timestamptz,
        acked_at timestamptz,
        acked_by text,
        ack_entry_index bigint,
        lease_until timestamptz,
        claim_token text,
        payload jsonb NOT NULL,
        UNIQUE (decision_id, code)
    )""",
    "CREATE INDEX IF NOT EXISTS obligations_due ON obligations (status, next_attempt_at)",
)


def _time(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise AuditError(f"obligations outbox: not a timestamp: {value!r}")
    return value.astimezone(UTC)


def _record(row: Sequence[Any]) -> ObligationRecord:
    return record_from_row(row, _time)


def apply(cur: Cursor, appended: Sequence[AppendedEntry], outbox: Sequence[OutboxOp]) -> None:
    """Inside the append transaction: the outbox ops of the appended entries."""
    if len(outbox) != len(appended):
        raise AuditError("audit append failed: outbox ops do not match the entries")
    rows: list[tuple[Any, ...]] = []
    for entry, op in zip(appended, outbox, strict=True):
        if isinstance(op, ObligationAck):
            cur.execute(
                "UPDATE obligations SET status = 'acknowledged', acked_at = %s, acked_by = %s, "
                "ack_entry_index = %s, lease_until = NULL, claim_token = NULL "
                "WHERE id = %s AND decision_id = %s AND code = %s AND status <> 'acknowledged'",
                (op.acked_at, op.acked_by, entry.index, op.obligation_id, op.decision_id, op.code),
            )
            if cur.rowcount != 1:
                raise AuditError(
                    f"obligation {op.obligation_id} is unknown or already acknowledged",
                    reason="obligation_conflict",
                )
        elif op:
            rows.extend(_insert_row(entry.index, o) for o in op)
    if rows:
        cur.executemany(
            "INSERT INTO obligations (entry_index, decision_id, request_id, code, blocking, "
            "status, next_attempt_at, created_at, acked_at, acked_by, payload) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
            rows,
        )


def _insert_row(index: int, o: NewObligation) -> tuple[Any, ...]:
    met = o.met_by is not None
    return (
        index, o.decision_id, o.request_id, o.code, o.blocking,
        ACKNOWLEDGED if met else PENDING, o.created_at, o.created_at,
        o.created_at if met else None, o.met_by, payload_json(o.payload),
    )  # fmt: skip


def get(conn: Connection, obligation_id: int) -> ObligationRecord | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM obligations WHERE id = %s",  # noqa: S608 - constant columns
        (obligation_id,),
    ).fetchone()
    return None if row is None else _record(row)


def list_rows(
    conn: Connection, *, decision_id: str | None, open_only: bool, limit: int | None
) -> list[ObligationRecord]:
    where: list[str] = []
    params: list[Any] = []
    if decision_id is not None:
        where.append("decision_id = %s")
        params.append(decision_id)
    if open_only:
        where.append("(status IN ('pending', 'failed') OR (blocking AND status <> 'acknowledged'))")
    sql = f"SELECT {COLUMNS} FROM obligations"  # noqa: S608 - constant columns
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT %s"
        params.append(int(limit))
    return [_record(r) for r in conn.execute(sql, params).fetchall()]


def claim(
    cur: Cursor,
    codes: Sequence[str],
    *,
    now: datetime,
    lease_until: datetime,
    max_attempts: int,
    limit: int,
    token: str,
) -> list[ObligationRecord]:
    """Inside a transaction: fail the rows out of attempts, then lease the due ones."""
    cur.execute(
        "UPDATE obligations SET status = 'failed', lease_until = NULL, claim_token = NULL, "
        "last_error = 'no outcome: the dispatcher stopped mid-delivery' WHERE id IN ("
        "SELECT id FROM obligations WHERE status = 'pending' AND code = ANY(%s) "
        "AND attempts >= %s AND lease_until IS NOT NULL AND lease_until <= %s "
        "FOR UPDATE SKIP LOCKED)",
        (list(codes), max_attempts, now),
    )
    columns = ", ".join(f"o.{c.strip()}" for c in COLUMNS.split(","))
    rows = cur.execute(
        "WITH due AS (SELECT id FROM obligations WHERE status = 'pending' "  # noqa: S608
        "AND code = ANY(%s) AND next_attempt_at <= %s "
        "AND (lease_until IS NULL OR lease_until <= %s) AND attempts < %s "
        "ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
        "UPDATE obligations o SET attempts = o.attempts + 1, lease_until = %s, "
        f"claim_token = %s FROM due WHERE o.id = due.id RETURNING {columns}",
        (list(codes), now, now, max_attempts, limit, lease_until, token),
    ).fetchall()
    return sorted((_record(r) for r in rows), key=lambda r: (r.next_attempt_at, r.id))


def mark_delivered(conn: Connection, obligation_id: int, token: str, *, at: datetime) -> bool:
    cur = conn.execute(
        "UPDATE obligations SET delivered_at = COALESCE(delivered_at, %s), "
        "status = CASE WHEN status = 'pending' THEN 'delivered' ELSE status END, "
        "last_error = NULL, lease_until = NULL, claim_token = NULL "
        "WHERE id = %s AND claim_token = %s",
        (at, obligation_id, token),
    )
    return cur.rowcount == 1


def mark_failed(
    conn: Connection, obligation_id: int, token: str, *, error: str, retry_at: datetime | None
) -> bool:
    if retry_at is None:
        cur = conn.execute(
            "UPDATE obligations SET status = 'failed', last_error = %s, lease_until = NULL, "
            "claim_token = NULL WHERE id = %s AND claim_token = %s AND status = 'pending'",
            (error[:1000], obligation_id, token),
        )
    else:
        cur = conn.execute(
            "UPDATE obligations SET next_attempt_at = %s, last_error = %s, lease_until = NULL, "
            "claim_token = NULL WHERE id = %s AND claim_token = %s AND status = 'pending'",
            (retry_at, error[:1000], obligation_id, token),
        )
    return cur.rowcount == 1
