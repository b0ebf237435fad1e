"""AccessRequest and its parts; strict parsing of untrusted JSON.

    >>> from gatekeeper.request import parse_request
    >>> request = parse_request('''{
    ...   "request_id": "A03", "as_of": "2026-04-02T02:00:00Z", "channel": "portal",
    ...   "requester": {"id": "P003", "kind": "parent", "identity_verified": true},
    ...   "purpose": "parent_access",
    ...   "student": {"id": "S003", "dob": "2016-05-01", "guardian_ids": ["P003"]},
    ...   "fields": ["attendance", "grades", "attendance"]}''')
    >>> request.requester.kind
    'parent'
    >>> policy_input = request.to_policy_input()       # district time zone: America/Los_Angeles
    >>> policy_input["as_of_day"], policy_input["student"]["age"], policy_input["fields"]
    (20544, 9, ['attendance', 'grades'])
    >>> parse_request(request.to_dict()) == request
    True

The shape is the AccessRequest of ``shared/CONTRACT.md``; the policy input is
the one of ``docs/policy-input.md``. :func:`parse_request` is the one place
where untrusted input becomes typed values: it rejects anything the contract
does not allow with a :class:`~gatekeeper.errors.RequestError` whose ``path``
names the offending key (``legal_basis.nondisclosure_order``, ``fields[3]``,
``legal_basis.named_students[0].dob``; empty for whole-document problems such
as size, syntax, encoding or nesting depth). It never raises anything else for
bad input.

The dataclasses are plain values and do not validate themselves; to check an
object built by hand, parse it again: ``parse_request(obj.to_dict())``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
import unicodedata
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Final, Literal, TypeVar, cast, get_args
from zoneinfo import ZoneInfo

from gatekeeper.errors import RequestError

__all__ = [
    "BULK_SCOPES",
    "CHANNELS",
    "CONSENT_ROLES",
    "DEFAULT_TIMEZONE",
    "DISTRICT_DETERMINATIONS",
    "LEGAL_BASIS_TYPES",
    "LEGAL_REVIEWS",
    "MAX_DEPTH",
    "MAX_FIELDS",
    "MAX_FIELD_NAME_LENGTH",
    "MAX_LIST_LENGTH",
    "MAX_REQUEST_BYTES",
    "MAX_STRING_LENGTH",
    "RECEIVED_VIA",
    "REQUESTER_KINDS",
    "SIGNERS",
    "STUDENT_FLAGS",
    "STUDENT_STATUSES",
    "WELL_KNOWN_PURPOSES",
    "AccessRequest",
    "Bulk",
    "BulkScope",
    "Channel",
    "Consent",
    "ConsentRole",
    "DistrictDetermination",
    "Emergency",
    "LegalBasis",
    "LegalBasisType",
    "LegalReview",
    "NamedStudent",
    "ReceivedVia",
    "Requester",
    "RequesterKind",
    "SignedBy",
    "Student",
    "StudentFlag",
    "StudentStatus",
    "Vendor",
    "code_key",
    "parse_request",
    "was_parsed",
]

# --------------------------------------------------------------------------- limits

MAX_REQUEST_BYTES: Final = 64 * 1024
"""Largest accepted request, in bytes of UTF-8 JSON (compact JSON for a mapping)."""
MAX_STRING_LENGTH: Final = 4096
"""Longest accepted string, in characters after NFC normalization."""
MAX_LIST_LENGTH: Final = 200
"""Most entries in any list."""
MAX_FIELDS: Final = 200
"""Most entries in ``fields``."""
MAX_FIELD_NAME_LENGTH: Final = 64
"""Longest field name."""
MAX_DEPTH: Final = 4
"""Deepest nesting the contract has: request > legal_basis > named_students > entry."""

DEFAULT_TIMEZONE: Final = "America/Los_Angeles"
"""The district time zone used for calendar dates unless configured otherwise."""

_AGE_RANGE: Final = (0, 150)
_GRADE_RANGE: Final = (-1, 20)  # TK/PK are -1, K is 0
_AS_OF_YEARS: Final = (1970, 2200)  # keeps as_of_ns well inside a signed 64-bit integer

# --------------------------------------------------------------------------- enumerations

Channel = Literal["in_person", "email", "fax", "phone", "portal", "api", "internal"]
RequesterKind = Literal[
    "district_staff", "parent", "eligible_student", "other_school", "court",
    "law_enforcement", "school_police", "immigration_authority", "child_welfare",
    "vendor", "health_provider", "emergency_responder", "media", "employer", "college",
    "military_recruiter", "attorney", "social_services", "federal_compliance", "other",
]  # fmt: skip
LegalBasisType = Literal[
    "none", "judicial_search_warrant", "judicial_arrest_warrant", "court_order",
    "judicial_subpoena", "grand_jury_subpoena", "admin_warrant_I200", "admin_warrant_I205",
    "detainer_I247A", "admin_subpoena_I138", "eoir_order", "agency_letter",
]  # fmt: skip
SignedBy = Literal[
    "judge", "magistrate", "clerk", "attorney", "immigration_officer", "immigration_judge", "none"
]
LegalReview = Literal["none", "pending", "approved", "rejected"]
ConsentRole = Literal["parent", "guardian", "eligible_student", "sponsor_acting_as_parent"]
ReceivedVia = Literal["district_direct", "presented_by_requester", "verbal_claim"]
StudentFlag = Literal[
    "dir_optout", "homeless", "f1_visa", "records_restriction_order", "recruiter_optout"
]
StudentStatus = Literal["enrolled", "former"]
BulkScope = Literal["roster", "grade", "school", "district"]
DistrictDetermination = Literal["articulable_significant_threat", "none"]

CHANNELS: Final[frozenset[str]] = frozenset(get_args(Channel))
REQUESTER_KINDS: Final[frozenset[str]] = frozenset(get_args(RequesterKind))
LEGAL_BASIS_TYPES: Final[frozenset[str]] = frozenset(get_args(LegalBasisType))
SIGNERS: Final[frozenset[str]] = frozenset(get_args(SignedBy))
LEGAL_REVIEWS: Final[frozenset[str]] = frozenset(get_args(LegalReview))
CONSENT_ROLES: Final[frozenset[str]] = frozenset(get_args(ConsentRole))
RECEIVED_VIA: Final[frozenset[str]] = frozenset(get_args(ReceivedVia))
STUDENT_FLAGS: Final[frozenset[str]] = frozenset(get_args(StudentFlag))
STUDENT_STATUSES: Final[frozenset[str]] = frozenset(get_args(StudentStatus))
BULK_SCOPES: Final[frozenset[str]] = frozenset(get_args(BulkScope))
DISTRICT_DETERMINATIONS: Final[frozenset[str]] = frozenset(get_args(DistrictDetermination))
WELL_KNOWN_PURPOSES: Final[frozenset[str]] = frozenset({
    "educational", "parent_access", "enrollment_transfer", "court_proceeding",
    "criminal_investigation", "immigration_enforcement", "welfare_check", "emergency",
    "child_welfare_investigation", "news", "recruiting", "admission", "employment",
    "treatment", "post_release_services", "sevis_compliance", "legal_representation",
    "unspecified",
})  # fmt: skip
"""Purposes the policy knows by name; any other code is matched literally."""

# --------------------------------------------------------------------------- the values


@dataclass(frozen=True, slots=True, kw_only=True)
class Requester:
    """Who asks. ``agency`` is a code (``ICE-ERO``) or a name; ``role`` selects
    a staff member's legitimate educational interest."""

    id: str
    name: str | None = None
    kind: RequesterKind
    agency: str | None = None
    role: str | None = None
    identity_verified: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Student:
    """The one student a request is about (at least ``id`` or ``name``).

    ``grade`` is kept as given (an integer or a code such as ``"K"``)."""

    id: str | None = None
    name: str | None = None
    dob: date | None = None
    age: int | None = None
    grade: int | str | None = None
    status: StudentStatus = "enrolled"
    guardian_ids: tuple[str, ...] = ()
    flags: tuple[StudentFlag, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Bulk:
    """A roster-wide request, instead of one student; empty ``grades`` means
    none were given."""

    scope: BulkScope
    grades: tuple[int, ...] = ()
    description: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NamedStudent:
    """A student named in a legal document: by ``id``, or by ``name`` and ``dob``."""

    id: str | None = None
    name: str | None = None
    dob: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LegalBasis:
    """The document presented, as recorded by district staff.

    ``fields_in_scope`` is ``None`` when the document states no field scope."""

    type: LegalBasisType = "none"
    jurisdiction: str | None = None
    issuing_court: str | None = None
    signed_by: SignedBy = "none"
    judge: str | None = None
    seal: bool = False
    case_no: str | None = None
    issued: date | None = None
    execute_by: date | None = None
    return_date: date | None = None
    named_students: tuple[NamedStudent, ...] = ()
    fields_in_scope: tuple[str, ...] | None = None
    nondisclosure_order: bool = False
    directs_lea: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Consent:
    """The consent relied on; ``records`` may be ``("all",)``."""

    signed_by_role: ConsentRole | None = None
    signed: bool = False
    dated: date | None = None
    records: tuple[str, ...] = ()
    purpose: str | None = None
    recipient: str | None = None
    received_via: ReceivedVia | None = None
    verified_with_rightholder: bool = False
    revoked_on: date | None = None
    signer_in_custody: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Emergency:
    """An emergency claim and the district's own determination."""

    asserted_by: str | None = None
    facts: str | None = None
    district_determination: DistrictDetermination = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class Vendor:
    """The district's contract record for a vendor requester.

    ``contracted_fields`` is ``None`` when the contract lists no fields."""

    id: str | None = None
    contract_ref: str | None = None
    contract_49073_1_compliant: bool = False
    contracted_purposes: tuple[str, ...] = ()
    contracted_fields: tuple[str, ...] | None = None
    board_review_flag: bool = False
    enforcement_linked: bool = False


@dataclass(frozen=True, slots=True, kw_only=True, weakref_slot=True)
class AccessRequest:
    """One request for student records (``shared/CONTRACT.md``).

    Exactly one of ``student`` and ``bulk`` is set. ``as_of`` is an aware
    datetime (the request's, or the time of parsing when it gave none).
    """

    request_id: str | None = None
    as_of: datetime
    channel: Channel
    requester: Requester
    on_behalf_of: str | None = None
    task_force: tuple[str, ...] = ()
    purpose: str
    purpose_text: str | None = None
    student: Student | None = None
    bulk: Bulk | None = None
    fields: tuple[str, ...]
    legal_basis: LegalBasis | None = None
    legal_review: LegalReview = "none"
    consent: Consent | None = None
    emergency: Emergency | None = None
    vendor: Vendor | None = None

    def to_dict(self) -> dict[str, Any]:
        """The contract-shaped dict; ``parse_request`` turns it back into an equal object.

        Absent values are left out, and so are empty lists that mean the same
        as absent ones; ``fields_in_scope`` and ``contracted_fields`` keep
        an empty list, which means "none".
        """
        return cast(dict[str, Any], _to_json(self))

    def to_policy_input(self, tz: str | ZoneInfo = DEFAULT_TIMEZONE) -> dict[str, Any]:
        """The normalized input of the policy pack (``docs/policy-input.md``).

        Every documented key is present; dates are days since 1970-01-01 as
        calendar dates in the district time zone ``tz``; only JSON types, no
        floats. Free text reaches the policy only where the schema lists it.
        """
        zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        today = self.as_of.astimezone(zone).date()
        requester = self.requester
        return {
            "request_id": self.request_id,
            "as_of_ns": _epoch_ns(self.as_of),
            "as_of_day": _day(today),
            "channel": self.channel,
            "requester": {
                "id": requester.id,
                "kind": requester.kind,
                "agency": code_key(requester.agency),
                "id_key": code_key(requester.id),
                "role": requester.role or "",
                "identity_verified": requester.identity_verified,
            },
            "on_behalf_of": code_key(self.on_behalf_of),
            "task_force": [code_key(member) for member in self.task_force],
            "purpose": self.purpose,
            "is_bulk": self.bulk is not None,
            "student": _student_input(self.student or Student(), today),
            "bulk": None
            if self.bulk is None
            else {"scope": self.bulk.scope, "grades": list(self.bulk.grades)},
            "fields": list(dict.fromkeys(self.fields)),
            "legal_basis": _legal_basis_input(self.legal_basis or LegalBasis()),
            "legal_review": self.legal_review,
            "consent": None if self.consent is None else _consent_input(self.consent),
            "emergency": None
            if self.emergency is None
            else {
                "asserted_by": self.emergency.asserted_by or "",
                "district_determination": self.emergency.district_determination,
            },
            "vendor": None if self.vendor is None else _vendor_input(self.vendor),
        }


# --------------------------------------------------------------------------- parsing


def parse_request(
    data: bytes | str | Mapping[str, Any], *, now: datetime | None = None
) -> AccessRequest:
    """Parse and validate one AccessRequest from JSON (bytes or text) or a mapping.

    ``now`` (an aware datetime; default: the current time) stands in for an
    absent ``as_of``. Raises :class:`RequestError` naming the key path of the
    first problem found; never returns a partially checked request.
    """
    if now is not None and now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    value, size = _load(data)
    request = _access_request(value, now)
    if 3 * size + _NORMALIZED_GROWTH > MAX_REQUEST_BYTES:
        _check_normalized_size(request)
    _PARSED[id(request)] = request
    return request


#: The requests parse_request returned that are still alive, by id. They are
#: frozen all the way down (frozen slotted dataclasses, tuples, datetimes), so
#: one that parsed needs no second check; any other AccessRequest (built by
#: hand, or by dataclasses.replace) is not here and is checked again.
_PARSED: weakref.WeakValueDictionary[int, AccessRequest] = weakref.WeakValueDictionary()


def was_parsed(request: AccessRequest) -> bool:
    """Whether ``request`` is an object :func:`parse_request` returned (and so valid)."""
    return _PARSED.get(id(request)) is request


_T = TypeVar("_T")
_Parser = Callable[[object, str], _T]
_MISSING: Final = object()


class _DuplicateKeys(dict[str, Any]):
    """A JSON object in which ``key`` occurs more than once."""

    __slots__ = ("key",)

    def __init__(self, pairs: list[tuple[str, Any]], key: str) -> None:
        super().__init__(pairs)
        self.key = key


@dataclass(frozen=True, slots=True)
class _NonFinite:
    """``NaN``, ``Infinity`` or ``-Infinity`` in the JSON text (not JSON)."""

    text: str


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return _DuplicateKeys(pairs, key)
        seen.add(key)
    return dict(pairs)


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _load(data: object) -> tuple[object, int]:
    """Decode ``data`` into JSON values, enforcing the document-level limits;
    also return its size in bytes (of compact JSON for a mapping)."""
    if isinstance(data, Mapping):
        return data, _check_mapping_size(data)
    if isinstance(data, bytes | bytearray):
        raw = bytes(data)
        size = len(raw)
        _check_size(size)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError("", f"invalid UTF-8 at byte {exc.start}") from exc
    elif isinstance(data, str):
        _check_size(len(data))
        try:
            size = len(data.encode("utf-8"))
            _check_size(size)
        except UnicodeEncodeError as exc:
            raise RequestError("", f"lone surrogate at character {exc.start}") from exc
        text = data
    else:
        raise RequestError("", f"expected JSON text or an object, got {type(data).__name__}")
    depth = 0
    for bracket in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > MAX_DEPTH:
            raise RequestError("", f"nested deeper than the contract allows ({MAX_DEPTH} levels)")
    try:
        return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_NonFinite), size
    except json.JSONDecodeError as exc:
        raise RequestError(
            "", f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except (ValueError, RecursionError) as exc:  # e.g. an integer with too many digits
        raise RequestError("", f"not valid JSON: {exc}") from exc


def _check_size(size: int) -> None:
    if size > MAX_REQUEST_BYTES:
        raise RequestError("", f"request larger than {MAX_REQUEST_BYTES} bytes (64 KiB)")


#: How much longer than 3x its input (NFC lengthens a string at most threefold)
#: a request's ``to_dict()`` JSON can be: the defaults it writes out, ``+00:00``.
_NORMALIZED_GROWTH: Final = 4096


def _check_normalized_size(request: AccessRequest) -> None:
    """The limit holds for ``to_dict()`` too, so every parsed request parses again.

    Found by the round-trip property: defaults written out, ``Z`` as
    ``+00:00`` and NFC (which can lengthen a string) took a request just under
    the limit over it, and ``parse_request(request.to_dict())`` then failed.
    """
    text = json.dumps(request.to_dict(), ensure_ascii=False, separators=(",", ":"))
    size = len(text.encode("utf-8"))
    if size > MAX_REQUEST_BYTES:
        raise RequestError(
            "", f"request larger than {MAX_REQUEST_BYTES} bytes (64 KiB) once normalized ({size})"
        )


def _check_mapping_size(data: Mapping[Any, Any]) -> int:
    # First a bounded walk that adds up a lower bound of the compact JSON size
    # and stops as soon as that is over the limit: a mapping holding a 1 GB
    # string or a million-entry list is refused without serializing it (nor
    # walking it whole). Containers deeper than the contract allows are not
    # entered (the typed checks refuse them); that also ends any cycle.
    budget = MAX_REQUEST_BYTES
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            budget -= len(value) + 2  # every character is at least one byte
        elif isinstance(value, bool) or value is None:
            budget -= 4
        elif isinstance(value, int):
            budget -= max(1, value.bit_length() // 4)  # fewer than the decimal digits
        elif isinstance(value, Mapping | list | tuple) and depth <= MAX_DEPTH + 1:
            budget -= 1 + len(value)  # brackets, commas, colons
            if budget >= 0:
                if isinstance(value, Mapping):
                    for key, item in value.items():
                        stack.append((key, depth))
                        stack.append((item, depth + 1))
                else:
                    stack.extend((item, depth + 1) for item in value)
        else:
            budget -= 1
        if budget < 0:
            _check_size(MAX_REQUEST_BYTES + 1)
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        # Not JSON-shaped: the typed checks below name the exact problem.
        return MAX_REQUEST_BYTES - budget
    size = len(text.encode("utf-8", "surrogatepass"))
    _check_size(size)
    return size


class _Reader:
    """One JSON object at ``path``, checked for unknown and duplicate keys."""

    __slots__ = ("_data", "path")

    def __init__(self, value: object, path: str, known: tuple[str, ...]) -> None:
        if not isinstance(value, Mapping):
            raise RequestError(path, f"expected an object, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise RequestError(path, f"object keys must be strings, got {_kind(key)}")
            if key not in known:
                raise RequestError(_join(path, key), _unknown_key(key, known))
        if isinstance(value, _DuplicateKeys):
            raise RequestError(_join(path, value.key), "duplicate key")
        self._data: Mapping[str, object] = value
        self.path = path

    def has(self, key: str) -> bool:
        """Whether the key is given (``null`` counts as not given)."""
        return self._data.get(key) is not None

    def opt(self, key: str, parse: _Parser[_T]) -> _T | None:
        """The value of an optional key, or ``None`` when absent or ``null``.

        ``null`` means "not given": the conservative reading applies, exactly
        as for an absent key (CONTRACT.md).
        """
        value = self._data.get(key, _MISSING)
        if value is _MISSING or value is None:
            return None
        return parse(value, _join(self.path, key))

    def req(self, key: str, parse: _Parser[_T]) -> _T:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            raise RequestError(_join(self.path, key), "required key is missing")
        if value is None:
            raise RequestError(_join(self.path, key), "required key is null")
        return parse(value, _join(self.path, key))

    def flag(self, key: str) -> bool:
        return self.opt(key, _bool) is True


@functools.cache
def _keys(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _access_request(value: object, now: datetime | None) -> AccessRequest:
    r = _Reader(value, "", _keys(AccessRequest))
    request_id = r.opt("request_id", _ident)
    as_of = r.opt("as_of", _timestamp) or now or datetime.now(UTC)
    channel = cast(Channel, r.req("channel", _enum(CHANNELS)))
    requester = r.req("requester", _requester)
    on_behalf_of = r.opt("on_behalf_of", _ident)
    task_force = r.opt("task_force", _list_of(_ident)) or ()
    purpose = r.req("purpose", _ident)
    purpose_text = r.opt("purpose_text", _text)
    if r.has("student") and r.has("bulk"):
        raise RequestError("bulk", "give either 'student' or 'bulk', not both")
    if not r.has("student") and not r.has("bulk"):
        raise RequestError("student", "required key is missing (or give 'bulk')")
    student = r.opt("student", _student)
    bulk = r.opt("bulk", _bulk)
    fields = r.req("fields", _list_of(_field_name, MAX_FIELDS))
    if not fields:
        raise RequestError("fields", "must name at least one field")
    return AccessRequest(
        request_id=request_id,
        as_of=as_of,
        channel=channel,
        requester=requester,
        on_behalf_of=on_behalf_of,
        task_force=task_force,
        purpose=purpose,
        purpose_text=purpose_text,
        student=student,
        bulk=bulk,
        fields=fields,
        legal_basis=r.opt("legal_basis", _legal_basis),
        legal_review=cast(LegalReview, r.opt("legal_review", _enum(LEGAL_REVIEWS)) or "none"),
        consent=r.opt("consent", _consent),
        emergency=r.opt("emergency", _emergency),
        vendor=r.opt("vendor", _vendor),
    )


def _requester(value: object, path: str) -> Requester:
    r = _Reader(value, path, _keys(Requester))
    return Requester(
        id=r.req("id", _ident),
        name=r.opt("name", _text),
        kind=cast(RequesterKind, r.req("kind", _enum(REQUESTER_KINDS))),
        agency=r.opt("agency", _ident),
        role=r.opt("role", _ident),
        identity_verified=r.flag("identity_verified"),
    )


def _student(value: object, path: str) -> Student:
    r = _Reader(value, path, _keys(Student))
    student = Student(
        id=r.opt("id", _ident),
        name=r.opt("name", _text),
        dob=r.opt("dob", _date),
        age=r.opt("age", _int_in(*_AGE_RANGE)),
        grade=r.opt("grade", _grade),
        status=cast(StudentStatus, r.opt("status", _enum(STUDENT_STATUSES)) or "enrolled"),
        guardian_ids=r.opt("guardian_ids", _list_of(_ident)) or (),
        flags=cast(tuple[StudentFlag, ...], r.opt("flags", _list_of(_enum(STUDENT_FLAGS))) or ()),
    )
    if student.id is None and student.name is None:
        raise RequestError(_join(path, "id"), "required key is missing (or give 'name')")
    return student


def _bulk(value: object, path: str) -> Bulk:
    r = _Reader(value, path, _keys(Bulk))
    return Bulk(
        scope=cast(BulkScope, r.req("scope", _enum(BULK_SCOPES))),
        grades=r.opt("grades", _list_of(_int_in(*_GRADE_RANGE))) or (),
        description=r.opt("description", _text),
    )


def _named_student(value: object, path: str) -> NamedStudent:
    r = _Reader(value, path, _keys(NamedStudent))
    named = NamedStudent(id=r.opt("id", _ident), name=r.opt("name", _text), dob=r.opt("dob", _date))
    if named.id is None:
        for key in ("name", "dob"):
            if getattr(named, key) is None:
                raise RequestError(_join(path, key), "required when 'id' is absent")
    return named


def _legal_basis(value: object, path: str) -> LegalBasis:
    r = _Reader(value, path, _keys(LegalBasis))
    return LegalBasis(
        type=cast(LegalBasisType, r.opt("type", _enum(LEGAL_BASIS_TYPES)) or "none"),
        jurisdiction=r.opt("jurisdiction", _jurisdiction),
        issuing_court=r.opt("issuing_court", _text),
        signed_by=cast(SignedBy, r.opt("signed_by", _enum(SIGNERS)) or "none"),
        judge=r.opt("judge", _text),
        seal=r.flag("seal"),
        case_no=r.opt("case_no", _ident),
        issued=r.opt("issued", _date),
        execute_by=r.opt("execute_by", _date),
        return_date=r.opt("return_date", _date),
        named_students=r.opt("named_students", _list_of(_named_student)) or (),
        fields_in_scope=r.opt("fields_in_scope", _list_of(_field_name)),
        nondisclosure_order=r.flag("nondisclosure_order"),
        directs_lea=r.flag("directs_lea"),
    )


def _consent(value: object, path: str) -> Consent:
    r = _Reader(value, path, _keys(Consent))
    return Consent(
        signed_by_role=cast(ConsentRole | None, r.opt("signed_by_role", _enum(CONSENT_ROLES))),
        signed=r.flag("signed"),
        dated=r.opt("dated", _date),
        records=r.opt("records", _list_of(_field_name)) or (),
        purpose=r.opt("purpose", _ident),
        recipient=r.opt("recipient", _ident),
        received_via=cast(ReceivedVia | None, r.opt("received_via", _enum(RECEIVED_VIA))),
        verified_with_rightholder=r.flag("verified_with_rightholder"),
        revoked_on=r.opt("revoked_on", _date),
        signer_in_custody=r.flag("signer_in_custody"),
    )


def _emergency(value: object, path: str) -> Emergency:
    r = _Reader(value, path, _keys(Emergency))
    return Emergency(
        asserted_by=r.opt("asserted_by", _text),
        facts=r.opt("facts", _text),
        district_determination=cast(
            DistrictDetermination,
            r.opt("district_determination", _enum(DISTRICT_DETERMINATIONS)) or "none",
        ),
    )


def _vendor(value: object, path: str) -> Vendor:
    r = _Reader(value, path, _keys(Vendor))
    return Vendor(
        id=r.opt("id", _ident),
        contract_ref=r.opt("contract_ref", _ident),
        contract_49073_1_compliant=r.flag("contract_49073_1_compliant"),
        contracted_purposes=r.opt("contracted_purposes", _list_of(_ident)) or (),
        contracted_fields=r.opt("contracted_fields", _list_of(_field_name)),
        board_review_flag=r.flag("board_review_flag"),
        enforcement_linked=r.flag("enforcement_linked"),
    )


# --------------------------------------------------------------------------- leaf parsers

_FIELD_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_JURISDICTION = re.compile(r"federal|[A-Z]{2}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?"
)
_IDENT_CONTROLS_OK: Final = frozenset("\t\n")
_TEXT_CONTROLS_OK: Final = frozenset("\t\n\r")


def _kind(value: object) -> str:
    """How a value reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number with a fraction"
    if isinstance(value, str):
        return "string"
    if isinstance(value, _NonFinite):
        return f"{value.text} (not valid JSON)"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _show(value: str, limit: int = 64) -> str:
    """A quoted, shortened rendering of an untrusted string (escaped unless plain)."""
    head = value[:limit]
    plain = head.isprintable() and "'" not in head and "\\" not in head
    shown = f"'{head}'" if plain else json.dumps(head)
    return shown + "…" if len(value) > limit else shown


_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_]{1,64}")


def _join(path: str, key: str) -> str:
    """``path.key``, or ``path['odd key']`` for a key that is not plain."""
    if len(key) <= 64 and len(path) <= 256:  # the cache keeps short strings only
        return _join_cached(path, key)
    return _join_uncached(path, key)


def _join_uncached(path: str, key: str) -> str:
    if not _PLAIN_KEY.fullmatch(key):
        return f"{path}[{_show(key)}]"
    return f"{path}.{key}" if path else key


_join_cached: Final = functools.lru_cache(maxsize=4096)(_join_uncached)


def _unknown_key(key: str, known: tuple[str, ...]) -> str:
    message = f"unknown key {_show(key)}"
    if len(key) <= 2 * MAX_FIELD_NAME_LENGTH:
        close = difflib.get_close_matches(key, known, n=1)
        if close:
            message += f" (did you mean {_show(close[0])}?)"
    return message


def _string(value: object, path: str, controls_ok: frozenset[str]) -> str:
    if not isinstance(value, str):
        raise RequestError(path, f"expected a string, got {_kind(value)}")
    if not value.isascii():  # ASCII is valid UTF-8 and already NFC
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RequestError(path, f"lone surrogate at character {exc.start}") from exc
        value = unicodedata.normalize("NFC", value)
    if len(value) > MAX_STRING_LENGTH:
        raise RequestError(path, f"longer than {MAX_STRING_LENGTH} characters")
    # Category Cc is exactly U+0000-U+001F and U+007F-U+009F.
    found = _CONTROL.search(value)
    while found is not None:
        char = found.group()
        if char not in controls_ok:
            index = found.start()
            raise RequestError(path, f"control character U+{ord(char):04X} at {index}")
        found = _CONTROL.search(value, found.end())
    return value


_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")


def _text(value: object, path: str) -> str:
    """Free text: NFC, no control characters but tab, newline and carriage return."""
    return _string(value, path, _TEXT_CONTROLS_OK)


def _ident(value: object, path: str) -> str:
    """An identifier or code: non-empty, NFC, no control characters but tab and newline."""
    value = _string(value, path, _IDENT_CONTROLS_OK)
    if not value:
        raise RequestError(path, "must not be empty")
    return value


def _field_name(value: object, path: str) -> str:
    value = _ident(value, path)
    if len(value) > MAX_FIELD_NAME_LENGTH:
        raise RequestError(path, f"field name longer than {MAX_FIELD_NAME_LENGTH} characters")
    if not _FIELD_NAME.fullmatch(value):
        raise RequestError(path, f"field name {_show(value)} has characters outside [A-Za-z0-9_.-]")
    return value


def _jurisdiction(value: object, path: str) -> str:
    value = _ident(value, path)
    if not _JURISDICTION.fullmatch(value):
        raise RequestError(
            path, f"expected 'federal' or a state code such as 'CA', got {_show(value)}"
        )
    return value


def _enum(choices: frozenset[str]) -> _Parser[str]:
    def parse(value: object, path: str) -> str:
        if not isinstance(value, str):
            raise RequestError(path, f"expected a string, got {_kind(value)}")
        if value in choices:
            return value
        message = f"{_show(value)} is not one of {', '.join(sorted(choices))}"
        close = difflib.get_close_matches(value[:128], sorted(choices), n=1)
        if close:
            message += f" (did you mean {_show(close[0])}?)"
        raise RequestError(path, message)

    return parse


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise RequestError(path, f"expected a boolean, got {_kind(value)}")
    return value


def _int_in(low: int, high: int) -> _Parser[int]:
    def parse(value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RequestError(path, f"expected an integer, got {_kind(value)}")
        if not low <= value <= high:
            raise RequestError(path, f"must be between {low} and {high}")
        return value

    return parse


def _grade(value: object, path: str) -> int | str:
    if isinstance(value, str):
        return _ident(value, path)
    return _int_in(*_GRADE_RANGE)(value, path)


def _list_of(item: _Parser[_T], limit: int = MAX_LIST_LENGTH) -> _Parser[tuple[_T, ...]]:
    def parse(value: object, path: str) -> tuple[_T, ...]:
        if not isinstance(value, list | tuple):
            raise RequestError(path, f"expected an array, got {_kind(value)}")
        if len(value) > limit:
            raise RequestError(path, f"more than {limit} entries")
        return tuple(item(entry, f"{path}[{index}]") for index, entry in enumerate(value))

    return parse


def _date(value: object, path: str) -> date:
    if not isinstance(value, str):
        raise RequestError(path, f"expected a date (YYYY-MM-DD), got {_kind(value)}")
    if not _DATE.fullmatch(value):
        raise RequestError(path, f"expected a date (YYYY-MM-DD), got {_show(value)}")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise RequestError(path, f"not a calendar date: {_show(value)}") from exc


def _timestamp(value: object, path: str) -> datetime:
    """RFC 3339 date-time with an offset; fractions beyond microseconds are truncated."""
    if not isinstance(value, str):
        raise RequestError(path, f"expected an RFC 3339 date-time, got {_kind(value)}")
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise RequestError(path, f"expected an RFC 3339 date-time, got {_show(value)}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if zulu is None and sign is None:
        raise RequestError(path, "date-time needs a UTC offset ('Z' or '+hh:mm')")
    if not _AS_OF_YEARS[0] <= int(year) <= _AS_OF_YEARS[1]:
        raise RequestError(path, f"year outside {_AS_OF_YEARS[0]}..{_AS_OF_YEARS[1]}")
    tzinfo: timezone = UTC
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            raise RequestError(path, f"invalid UTC offset in {_show(value)}")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tzinfo = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            int((fraction or "").ljust(6, "0")[:6]), tzinfo=tzinfo,
        )  # fmt: skip
    except ValueError as exc:  # day 31 of April, hour 24, leap second 60, ...
        raise RequestError(path, f"not a valid date-time: {_show(value)}") from exc


# --------------------------------------------------------------------------- output helpers

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_GRADE_CODES: Final = {"K": 0, "TK": -1, "PK": -1}


def _to_json(value: object) -> Any:
    """Contract JSON for a value: dataclasses as objects, dates as ISO strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for spec in dataclasses.fields(value):
            item = getattr(value, spec.name)
            if item is None or (item == () and spec.default == ()):
                continue
            out[spec.name] = _to_json(item)
        return out
    if isinstance(value, tuple):
        return [_to_json(item) for item in value]
    if isinstance(value, date):  # datetime included
        return value.isoformat()
    return value


def _epoch_ns(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _day(day: date | None) -> int | None:
    return None if day is None else day.toordinal() - _EPOCH_ORDINAL


def code_key(value: str | None) -> str:
    """The canonical form of an agency code or name, a court name, a consent
    recipient: NFKC, upper case, every run of other characters than A-Z and
    0-9 turned into one ``-``. ``"ice ero"``, ``"ICE_ERO"`` and full-width ``"ICE-ERO"``
    are all ``"ICE-ERO"``; ``"DHS-SEVP"`` stays itself (codes are still
    compared exactly, after this normalization).

    Spoofing is no way out either: format characters (zero-width joiners,
    bidi overrides), combining marks and fillers are dropped, accents are
    stripped, and Cyrillic, Greek and other letters that look like Latin ones
    are folded to them: ``"I\u200bCE"``, ``"\u0406CE"`` (Cyrillic) and
    ``"\u00cdCE"`` are all ``"ICE"``."""
    if value is not None and len(value) <= 256:  # agency and court names repeat
        return _code_key_cached(value)
    return _code_key_uncached(value)


def _code_key_uncached(value: str | None) -> str:
    if not value:
        return ""
    # Found in review: "I\u200bCE", Cyrillic "\u0406CE", Greek "\u0399CE" and
    # accented "\u00cdCE" all became "CE" (or "I-CE") and left the immigration
    # context with a permit. So: compatibility-decompose, drop what cannot be
    # seen (format characters such as zero-width joiners and bidi overrides,
    # combining marks, fillers), fold letters that look like Latin ones to
    # them, then upper case.
    decomposed = unicodedata.normalize("NFKD", value).translate(_CONFUSABLES)
    visible = "".join(
        char
        for char in decomposed
        if unicodedata.category(char) not in _INVISIBLE_CATEGORIES and char not in _FILLERS
    )
    folded = unicodedata.normalize("NFKC", visible).upper().translate(_CONFUSABLES)
    return "-".join(_CODE_TOKEN.findall(folded))


_code_key_cached: Final = functools.lru_cache(maxsize=2048)(_code_key_uncached)


_CODE_TOKEN = re.compile(r"[A-Z0-9]+")
_INVISIBLE_CATEGORIES: Final = frozenset({"Cf", "Mn", "Mc", "Me", "Cs", "Co", "Cn"})
#: Default-ignorable letters (Hangul fillers) that render as nothing.
_FILLERS: Final = frozenset("\u115f\u1160\u3164\uffa0")
#: Letters of other scripts (and Latin small capitals) that look like A-Z,
#: after Unicode's confusables list (UTS #39), for the scripts a spoofer
#: reaches for: Cyrillic, Greek, Cherokee, Armenian, Latin extensions.
_CONFUSABLES: Final = str.maketrans(
    {
        **dict.fromkeys("\u0410\u0430\u0391\u03b1\u13aa\u1d00", "A"),
        **dict.fromkeys("\u0412\u0432\u0392\u03b2\u13f4\u0299\u0184", "B"),
        **dict.fromkeys("\u0421\u0441\u03f9\u03f2\u13df\u1d04\u216d\u217d", "C"),
        **dict.fromkeys("\u0500\u0501\u13a0\u1d05\u216e\u217e", "D"),
        **dict.fromkeys("\u0415\u0435\u0395\u03b5\u13ac\u1d07\u0404\u0454", "E"),
        **dict.fromkeys("\u03dc\ua730", "F"),
        **dict.fromkeys("\u050c\u050d\u13c0\u13f3\u0262", "G"),
        **dict.fromkeys("\u041d\u043d\u0397\u04ba\u04bb\u13bb\u029c", "H"),
        **dict.fromkeys(
            "\u0406\u0456\u04c0\u04cf\u0399\u03b9\u026a\u0131\u2160\u2170\u01c0\u05c0\u07ca", "I"
        ),
        **dict.fromkeys("\u0408\u0458\u037f\u03f3\u13ab\u1d0a", "J"),
        **dict.fromkeys("\u041a\u043a\u039a\u03ba\u13e6\u1d0b", "K"),
        **dict.fromkeys("\u13de\u029f\u216c\u217c", "L"),
        **dict.fromkeys("\u041c\u043c\u039c\u13b7\u1d0d\u216f\u217f", "M"),
        **dict.fromkeys("\u039d\u0274", "N"),
        **dict.fromkeys("\u041e\u043e\u039f\u03bf\u0555\u0585\u1d0f\u03c3", "O"),
        **dict.fromkeys("\u0420\u0440\u03a1\u03c1\u13e2\u1d18", "P"),
        **dict.fromkeys("\u051a\u051b", "Q"),
        **dict.fromkeys("\u13a1\u13d2\u0280", "R"),
        **dict.fromkeys("\u0405\u0455\u13da\u13d5\ua731", "S"),
        **dict.fromkeys("\u0422\u0442\u03a4\u03c4\u13a2\u1d1b", "T"),
        **dict.fromkeys("\u054d\u057d\u03c5\u1d1c", "U"),
        **dict.fromkeys("\u0474\u0475\u03bd\u13d9\u1d20\u2164\u2174", "V"),
        **dict.fromkeys("\u051c\u051d\u13b3\u13c7\u1d21", "W"),
        **dict.fromkeys("\u0425\u0445\u03a7\u03c7\u2169\u2179", "X"),
        **dict.fromkeys("\u0423\u0443\u04ae\u04af\u03a5\u03d2\u028f", "Y"),
        **dict.fromkeys("\u0396\u13c3\u1d22", "Z"),
    }
)


def _name_key(name: str | None) -> str:
    """NFKC, case-folded, inner whitespace collapsed, stripped."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name or "").casefold())
    return " ".join(folded.split())


def _age(dob: date, today: date) -> int | None:
    years = today.year - dob.year - ((today.month, today.day) < (dob.month, dob.day))
    return years if years >= 0 else None


def _grade_number(grade: int | str | None) -> int | None:
    if isinstance(grade, int):
        return grade
    if grade is None:
        return None
    code = grade.strip().upper()
    if code in _GRADE_CODES:
        return _GRADE_CODES[code]
    if re.fullmatch(r"[0-9]{1,3}", code) and int(code) <= _GRADE_RANGE[1]:
        return int(code)
    return None


def _student_input(student: Student, today: date) -> dict[str, Any]:
    age = student.age
    if age is None and student.dob is not None:
        age = _age(student.dob, today)
    return {
        "id": student.id or "",
        "name_key": _name_key(student.name),
        "dob_day": _day(student.dob),
        "age": age,
        "grade": _grade_number(student.grade),
        "status": student.status,
        "guardian_ids": list(student.guardian_ids),
        "flags": list(student.flags),
    }


def _legal_basis_input(basis: LegalBasis) -> dict[str, Any]:
    return {
        "type": basis.type,
        "jurisdiction": basis.jurisdiction or "",
        "issuing_court": code_key(basis.issuing_court),
        "signed_by": basis.signed_by,
        "judge": basis.judge or "",
        "seal": basis.seal,
        "case_no": basis.case_no or "",
        "issued_day": _day(basis.issued),
        "execute_by_day": _day(basis.execute_by),
        "return_day": _day(basis.return_date),
        "named_students": [
            {"id": named.id or "", "name_key": _name_key(named.name), "dob_day": _day(named.dob)}
            for named in basis.named_students
        ],
        "fields_in_scope": None if basis.fields_in_scope is None else list(basis.fields_in_scope),
        "nondisclosure_order": basis.nondisclosure_order,
        "directs_lea": basis.directs_lea,
    }


def _consent_input(consent: Consent) -> dict[str, Any]:
    return {
        "signed_by_role": consent.signed_by_role or "",
        "signed": consent.signed,
        "dated_day": _day(consent.dated),
        "records": list(consent.records),
        "purpose": consent.purpose or "",
        "recipient": code_key(consent.recipient),
        "received_via": consent.received_via or "",
        "verified_with_rightholder": consent.verified_with_rightholder,
        "revoked_day": _day(consent.revoked_on),
        "signer_in_custody": consent.signer_in_custody,
    }


def _vendor_input(vendor: Vendor) -> dict[str, Any]:
    return {
        "id": vendor.id or "",
        "contract_ref": vendor.contract_ref or "",
        "compliant": vendor.contract_49073_1_compliant,
        "contracted_purposes": list(vendor.contracted_purposes),
        "contracted_fields": None
        if vendor.contracted_fields is None
        else list(vendor.contracted_fields),
        "board_review_flag": vendor.board_review_flag,
        "enforcement_linked": vendor.enforcement_linked,
    }
