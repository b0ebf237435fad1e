"""SQLAlchemy 2.x Core as a :class:`~gatekeeper.RecordSource`: decide, then query.

    >>> import gatekeeper
    >>> from sqlalchemy import Column, MetaData, String, Table, create_engine
    >>> from gatekeeper.adapters.sqlalchemy import guarded_source
    >>> db = create_engine("sqlite://")
    >>> students = Table("students", MetaData(), Column("sid", String, primary_key=True),
    ...                  Column("math_grade", String), Column("street", String),
    ...                  Column("birth_country", String))
    >>> students.metadata.create_all(db)
    >>> with db.begin() as conn:
    ...     _ = conn.execute(students.insert().values(sid="S1", math_grade="A",
    ...                                               street="1 Main St", birth_country="MX"))
    >>> records = guarded_source(gatekeeper.open(data_dir="/tmp/gk-doctest"), db, students,
    ...                          id_column="sid",
    ...                          field_map={"math_grade": "grades", "street": "home_address"})
    >>> records.get({
    ...     "channel": "internal",
    ...     "requester": {"id": "E1", "kind": "district_staff",
    ...                   "role": "teacher_of_record", "identity_verified": True},
    ...     "purpose": "educational", "student": {"id": "S1"},
    ...     "fields": ["grades", "home_address"]})
    {'math_grade': 'A'}

The query is a :class:`~sqlalchemy.Table` or a :func:`~sqlalchemy.select`
(joins and filters are kept). Only the columns whose catalog field is
allowed are selected (plus the id column, which is dropped again unless it is
allowed itself), so a disallowed column is never read from the database; the
redactor then removes anything else. A column is named by its key in the
select (its label); ``field_map`` maps keys (or dotted paths into JSON
columns, such as ``profile.phone``) to catalog fields, and an unmapped key
counts as the field of the same name. Driver errors become
:class:`~gatekeeper.SourceError`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from gatekeeper.guard import Gatekeeper
from gatekeeper.redact import Redactor
from gatekeeper.source import GuardedSource, SourceError

__all__ = ["SqlAlchemySource", "guarded_source"]


class SqlAlchemySource:
    """Student records from a table or a select, looked up by an id column.

    ``bind`` is an Engine (a connection is taken per lookup) or a Connection
    (used as is: its transaction is the caller's). ``id_type`` converts the
    request's string id for the comparison; by default an integer id column
    gets ``int`` and every other column the string itself.
    """

    def __init__(
        self,
        bind: Engine | Connection,
        query: Table | Select[Any],
        *,
        id_column: str,
        field_map: Mapping[str, str] | None = None,
        id_type: Callable[[str], Any] | None = None,
        chunk_size: int = 500,
    ) -> None:
        self.bind = bind
        self.query: Select[Any] = select(query) if isinstance(query, Table) else query
        columns = {c.key: c for c in self.query.selected_columns if c.key is not None}
        if id_column not in columns:
            raise SourceError(
                f"id column {id_column!r} is not selected (columns: {sorted(columns)})",
                reason="config",
            )
        self._columns: dict[str, ColumnElement[Any]] = columns
        self.id_column = id_column
        self._field_map = dict(field_map or {})
        self.id_type = id_type or _default_id_type(columns[id_column])
        if chunk_size < 1:
            raise SourceError("chunk_size must be at least 1", reason="config")
        self.chunk_size = chunk_size

    @property
    def field_map(self) -> Mapping[str, str]:
        return self._field_map

    def _wanted(self, fields: Collection[str] | None) -> list[ColumnElement[Any]]:
        """The id column and the columns that may hold an allowed field."""
        if fields is None:
            return list(self._columns.values())
        allowed = frozenset(fields)
        keep: list[ColumnElement[Any]] = [self._columns[self.id_column]]
        for key, column in self._columns.items():
            if key == self.id_column:
                continue
            if self._field_map.get(key, key) in allowed or any(
                path.startswith(f"{key}.") and name in allowed
                for path, name in self._field_map.items()
            ):
                keep.append(column)
        return keep

    def _statement(self, fields: Collection[str] | None) -> Select[Any]:
        return self.query.with_only_columns(*self._wanted(fields), maintain_column_froms=True)

    def _ids(self, student_ids: Collection[str]) -> dict[Any, str]:
        """Database id → request id, leaving out ids the column's type cannot hold.

        Only an id in its own canonical spelling counts: int("0100"),
        int(" 1_00") and int("\\uff11\\uff10\\uff10") are all 100, but the
        decision was about the id as asked, not about student 100.
        """
        out: dict[Any, str] = {}
        for sid in student_ids:
            try:
                value = self.id_type(sid)
            except (TypeError, ValueError):
                continue
            if str(value) == sid:
                out[value] = sid
        return out

    def _rows(self, statement: Select[Any]) -> list[dict[str, Any]]:
        try:
            if isinstance(self.bind, Connection):
                return [dict(row._mapping) for row in self.bind.execute(statement)]
            with self.bind.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(statement)]
        except SQLAlchemyError as exc:
            raise SourceError(f"record query failed: {type(exc).__name__}") from exc

    def get(
        self, student_id: str, *, fields: Collection[str] | None = None
    ) -> Mapping[str, Any] | None:
        ids = self._ids([student_id])
        if not ids:
            return None
        statement = self._statement(fields).where(self._columns[self.id_column] == next(iter(ids)))
        rows = self._rows(statement.limit(2))
        if len(rows) > 1:
            raise SourceError(
                f"more than one row for student {student_id!r}: the id column must be unique"
            )
        return rows[0] if rows else None

    def get_many(
        self, student_ids: Collection[str], *, fields: Collection[str] | None = None
    ) -> Iterator[tuple[str, Mapping[str, Any]]]:
        ids = self._ids(student_ids)
        keys = list(ids)
        id_column = self._columns[self.id_column]
        seen: set[str] = set()
        for start in range(0, len(keys), self.chunk_size):
            chunk = keys[start : start + self.chunk_size]
            for row in self._rows(self._statement(fields).where(id_column.in_(chunk))):
                sid = ids.get(row[self.id_column])
                if sid is None:
                    continue
                if sid in seen:
                    raise SourceError(
                        f"more than one row for student {sid!r}: the id column must be unique"
                    )
                seen.add(sid)
                yield sid, row


def _default_id_type(column: ColumnElement[Any]) -> Callable[[str], Any]:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return str
    return int if python_type is int else str


def guarded_source(
    gatekeeper: Gatekeeper,
    bind: Engine | Connection,
    query: Table | Select[Any],
    *,
    id_column: str,
    field_map: Mapping[str, str] | None = None,
    id_type: Callable[[str], Any] | None = None,
    redactor: Redactor | None = None,
) -> GuardedSource:
    """A :class:`~gatekeeper.GuardedSource` over a table or select: the usual entry point.

    ``.get(request)`` decides before the query runs, runs it only on a
    permit, and returns only the allowed fields; ``.get_many(requests)``
    does the same for a roster, one decision per student.
    """
    source = SqlAlchemySource(
        bind, query, id_column=id_column, field_map=field_map, id_type=id_type
    )
    return GuardedSource(gatekeeper, source, redactor=redactor)
