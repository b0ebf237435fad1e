"""Record sources: where the SIS keeps the records, and a guard in front of them.

A :class:`RecordSource` is the one small protocol an SIS implements so that
gatekeeper can fetch *after* deciding: one student's record by id, and many
students' records at once (a roster). :class:`GuardedSource` puts a
:class:`~gatekeeper.Gatekeeper` in front of any source: it decides each
request first, queries only on a permit, asks only for the allowed fields and
redacts what comes back (a field the policy never saw is dropped).

    >>> import gatekeeper
    >>> from gatekeeper.source import GuardedSource, InMemorySource
    >>> records = InMemorySource({"S1": {"grades": {"math": "A"}, "home_address": "1 Main St",
    ...                                  "citizenship_status": "never released"}})
    >>> guarded = GuardedSource(gatekeeper.open(data_dir="/tmp/gk-doctest"), records)
    >>> guarded.get({
    ...     "channel": "internal",
    ...     "requester": {"id": "E1", "kind": "district_staff",
    ...                   "role": "teacher_of_record", "identity_verified": True},
    ...     "purpose": "educational", "student": {"id": "S1"},
    ...     "fields": ["grades", "home_address"]})
    {'grades': {'math': 'A'}}

Errors: :class:`SourceError` (a :class:`~gatekeeper.GatekeeperError`, reason
``source_error``) wraps whatever the source's driver raises; a deny or an
escalate raises :class:`~gatekeeper.AccessDenied` and a permit whose blocking
obligations are pending raises :class:`~gatekeeper.ReleaseHeld`, both before
the source is queried.

Bulk requests (``bulk`` instead of ``student``) are held by the guard: field
redaction cannot tell which students a bulk basis covers (opt-outs, homeless
flags). A roster is therefore fetched with :meth:`GuardedSource.get_many`,
one decision (and one audit entry) per student, then one query for the
permitted ones.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from gatekeeper.decision import Decision
from gatekeeper.errors import GatekeeperError, RequestError
from gatekeeper.guard import AccessDenied, Gatekeeper, Grant, RequestInput
from gatekeeper.redact import Redactor
from gatekeeper.request import AccessRequest

__all__ = ["GuardedSource", "InMemorySource", "RecordSource", "Roster", "SourceError"]

_T = TypeVar("_T")


class SourceError(GatekeeperError):
    """The record source failed (database down, ambiguous id, ...); nothing is released."""

    reason = "source_error"


@runtime_checkable
class RecordSource(Protocol):
    """Where student records come from: the SIS side of a guarded lookup.

    Records are mappings keyed by the source's own names; ``field_map`` maps
    those names (or dotted paths into nested values) to field-catalog names,
    as :class:`~gatekeeper.Redactor` reads them. ``fields`` is a hint: the
    catalog fields the caller may release. A source may return more (the
    redactor drops it) but should not need to fetch it.
    """

    @property
    def field_map(self) -> Mapping[str, str]:
        """Record key (or dotted path) → field-catalog name, for keys not named by the catalog."""
        ...

    def get(
        self, student_id: str, *, fields: Collection[str] | None = None
    ) -> Mapping[str, Any] | None:
        """One student's record, or None when there is no such student."""
        ...

    def get_many(
        self, student_ids: Collection[str], *, fields: Collection[str] | None = None
    ) -> Iterable[tuple[str, Mapping[str, Any]]]:
        """``(student_id, record)`` for each of ``student_ids`` that exists, in any order."""
        ...


class InMemorySource:
    """A :class:`RecordSource` over a dict of records (tests, examples, small fixtures)."""

    def __init__(
        self,
        records: Mapping[str, Mapping[str, Any]],
        *,
        field_map: Mapping[str, str] | None = None,
    ) -> None:
        self._records = dict(records)
        self._field_map = dict(field_map or {})

    @property
    def field_map(self) -> Mapping[str, str]:
        return self._field_map

    def get(
        self, student_id: str, *, fields: Collection[str] | None = None
    ) -> Mapping[str, Any] | None:
        return self._records.get(student_id)

    def get_many(
        self, student_ids: Collection[str], *, fields: Collection[str] | None = None
    ) -> Iterator[tuple[str, Mapping[str, Any]]]:
        for student_id in student_ids:
            record = self._records.get(student_id)
            if record is not None:
                yield student_id, record


@dataclass(frozen=True, slots=True)
class Roster:
    """What :meth:`GuardedSource.get_many` released, and why the rest was not.

    ``records`` holds the redacted record of every permitted student that
    exists, in request order; ``decisions`` every student's decision (also
    the refused and held ones: ``decisions[id].decision_id`` is what a
    caller shows or logs); ``refused`` the ids of students denied,
    escalated or held; ``missing`` the permitted ids the source does not have.
    """

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)
    refused: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


class GuardedSource:
    """A :class:`RecordSource` behind a :class:`~gatekeeper.Gatekeeper`: decide, fetch, redact.

    The redactor defaults to one built from the source's ``field_map``.
    """

    def __init__(
        self,
        gatekeeper: Gatekeeper,
        source: RecordSource,
        *,
        redactor: Redactor | None = None,
    ) -> None:
        self.gatekeeper = gatekeeper
        self.source = source
        self.redactor = redactor or Redactor(source.field_map)

    def _student_request(self, request: RequestInput) -> tuple[AccessRequest, str]:
        """The parsed request and its student id; an invalid request is an audited deny."""
        try:
            parsed = self.gatekeeper.parse(request)
        except RequestError as error:
            raise self.gatekeeper.invalid_request(request, error) from None
        if parsed.student is None or not parsed.student.id:
            raise RequestError("student.id", "a record lookup needs one student with an id")
        return parsed, parsed.student.id

    def _grant(self, parsed: AccessRequest) -> Grant:
        with self.gatekeeper.access(parsed, redactor=self.redactor) as grant:
            return grant

    def get(self, request: RequestInput) -> dict[str, Any] | None:
        """The requested student's record, redacted; None when the permitted student is not found.

        Raises AccessDenied or ReleaseHeld before the source is queried,
        RequestError for a request that names no student, SourceError when
        the source fails.
        """
        parsed, student_id = self._student_request(request)
        grant = self._grant(parsed)
        record = self._call(
            lambda: self.source.get(student_id, fields=grant.decision.allowed_fields)
        )
        if record is None:
            return None
        return self.redactor.redact(record, grant.decision.allowed_fields)

    def get_many(self, requests: Iterable[RequestInput]) -> Roster:
        """Decide each single-student request, then fetch the permitted students in one call.

        Refusals do not raise: they are in ``Roster.refused`` with their
        decisions. Two requests for the same student are an error
        (RequestError) raised before anything is decided.
        """
        parsed: dict[str, AccessRequest] = {}
        for request in requests:
            one, student_id = self._student_request(request)
            if student_id in parsed:
                raise RequestError("student.id", f"student {student_id!r} is requested twice")
            parsed[student_id] = one
        grants: dict[str, Grant] = {}
        decisions: dict[str, Decision] = {}
        refused: list[str] = []
        for student_id, one in parsed.items():
            try:
                grants[student_id] = self._grant(one)
                decisions[student_id] = grants[student_id].decision
            except AccessDenied as exc:  # also ReleaseHeld
                decisions[student_id] = exc.decision
                refused.append(student_id)
        if not grants:
            return Roster(decisions=decisions, refused=tuple(refused))
        wanted = sorted({f for g in grants.values() for f in g.decision.allowed_fields})
        found: dict[str, Mapping[str, Any]] = {}
        for student_id, record in self._call(
            lambda: list(self.source.get_many(list(grants), fields=wanted))
        ):
            if student_id in grants:  # a source returning extra rows releases nothing extra
                found[student_id] = record
        records = {
            sid: self.redactor.redact(found[sid], grants[sid].decision.allowed_fields)
            for sid in grants
            if sid in found
        }
        missing = tuple(sid for sid in grants if sid not in found)
        return Roster(records=records, decisions=decisions, refused=tuple(refused), missing=missing)

    @staticmethod
    def _call(fetch: Callable[[], _T]) -> _T:
        try:
            return fetch()
        except GatekeeperError:
            raise
        except Exception as exc:  # a foreign driver error, translated at the boundary
            raise SourceError(f"record source failed: {type(exc).__name__}: {exc}") from exc
