"""OneRoster 1.2 query parameters: ``filter``, ``sort``/``orderBy``, ``fields``, paging.

    >>> from gatekeeper.oneroster.query import parse_filter
    >>> f = parse_filter("status='active' AND familyName~'gar' OR grades='09'")
    >>> [[(c.field, c.op, c.value) for c in clause] for clause in f.clauses]
    [[('status', '=', 'active'), ('familyName', '~', 'gar')], [('grades', '=', '09')]]
    >>> sorted(f.field_names())
    ['familyName', 'grades', 'status']

The grammar is the one of the OneRoster REST binding (section 3.4.2): a
predicate is ``field op 'value'`` with ``op`` one of ``= != > >= < <= ~``
(``~`` is "contains"); predicates are joined by ``AND`` and ``OR`` (``AND``
binds tighter). A value is quoted with single quotes and cannot contain one.
Anything else is a :class:`QueryError`: the proxy never forwards a filter it
cannot read, since a filter on a field the caller may not see tells the
caller that field's value as surely as the field itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from gatekeeper.errors import GatekeeperError

__all__ = [
    "FIELD_NAME",
    "OPERATORS",
    "Condition",
    "Filter",
    "QueryError",
    "parse_fields",
    "parse_filter",
    "parse_paging",
    "parse_sort",
]

OPERATORS: Final = ("!=", ">=", "<=", "=", ">", "<", "~")
#: A field name: a OneRoster property, or a dotted path into one (``metadata.homeAddress``).
FIELD_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_PREDICATE = re.compile(
    r"\s*(?P<field>" + FIELD_NAME.pattern + r")\s*(?P<op>!=|>=|<=|=|>|<|~)\s*'(?P<value>[^']*)'\s*"
)
_JOIN = re.compile(r"(AND|OR)(?=\s)", re.IGNORECASE)
MAX_FILTER_LENGTH: Final = 2048
MAX_PREDICATES: Final = 32
MAX_LIMIT: Final = 10_000


class QueryError(GatekeeperError):
    """A OneRoster query parameter that does not parse (answered with 400)."""

    reason = "invalid_query"


@dataclass(frozen=True, slots=True)
class Condition:
    """One predicate: ``field op 'value'``."""

    field: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class Filter:
    """A filter in disjunctive form: OR over clauses, AND within a clause."""

    clauses: tuple[tuple[Condition, ...], ...]

    def conditions(self) -> Iterator[Condition]:
        for clause in self.clauses:
            yield from clause

    def field_names(self) -> set[str]:
        """Every field the filter reads."""
        return {c.field for c in self.conditions()}


def parse_filter(text: str) -> Filter:
    """Parse a ``filter`` parameter; raise :class:`QueryError` when it does not fit the grammar."""
    if len(text) > MAX_FILTER_LENGTH:
        raise QueryError(f"filter longer than {MAX_FILTER_LENGTH} characters")
    clauses: list[tuple[Condition, ...]] = []
    current: list[Condition] = []
    pos = 0
    count = 0
    while True:
        match = _PREDICATE.match(text, pos)
        if match is None:
            raise QueryError(f"filter: expected field op 'value' at character {pos}")
        current.append(Condition(match["field"], match["op"], match["value"]))
        count += 1
        if count > MAX_PREDICATES:
            raise QueryError(f"filter: more than {MAX_PREDICATES} predicates")
        pos = match.end()
        if pos == len(text):
            break
        join = _JOIN.match(text, pos)
        if join is None:
            raise QueryError(f"filter: expected AND or OR at character {pos}")
        if join[1].upper() == "OR":
            clauses.append(tuple(current))
            current = []
        pos = join.end()
    clauses.append(tuple(current))
    return Filter(tuple(clauses))


def _names(text: str, what: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if not FIELD_NAME.fullmatch(name):
            raise QueryError(f"{what}: {name[:64]!r} is not a field name")
    if len(names) > 100:
        raise QueryError(f"{what}: more than 100 fields")
    return names


def parse_fields(text: str) -> tuple[str, ...]:
    """The ``fields`` parameter: a comma-separated list of field names."""
    return _names(text, "fields")


def parse_sort(sort: str, order_by: str | None = None) -> tuple[tuple[str, ...], bool]:
    """``sort`` (comma-separated fields) and ``orderBy`` (asc/desc): (fields, descending)."""
    fields = _names(sort, "sort")
    direction = (order_by or "asc").strip().lower()
    if direction not in ("asc", "desc"):
        raise QueryError("orderBy must be asc or desc")
    return fields, direction == "desc"


def parse_paging(
    limit: str | None, offset: str | None, *, default_limit: int = 100
) -> tuple[int, int]:
    """``limit`` (1..10000, default 100) and ``offset`` (0 or more)."""
    try:
        lim = default_limit if limit in (None, "") else int(limit)
        off = 0 if offset in (None, "") else int(offset)
    except ValueError as exc:
        raise QueryError("limit and offset must be integers") from exc
    if not 1 <= lim <= MAX_LIMIT:
        raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
    if off < 0:
        raise QueryError("offset must not be negative")
    return lim, off
