"""Which OneRoster fields are which catalog fields, and which endpoints return what.

    >>> from gatekeeper.oneroster.mapping import FieldMapping
    >>> m = FieldMapping.default().extended({"user": {"metadata.homeAddress": "home_address"}})
    >>> sorted(m.select("user", ["givenName", "metadata"]))
    ['home_address', 'name']
    >>> r = m.redactor("user")
    >>> r.redact_record({"sourcedId": "s1", "givenName": "Ana", "lunchProgram": "free",
    ...                  "metadata": {"homeAddress": "1 Elm St", "other": 1}}, ["name"])
    {'sourcedId': 's1', 'givenName': 'Ana'}

A record key leaves the proxy only when it is a *structural* field of its
resource (``sourcedId``, ``status``, ``dateLastModified``, the shape of a class
or a school: no student data) or when its dotted path is mapped to a catalog
field the decision allows. Everything else is dropped, in particular every
``metadata`` key nobody mapped: ``metadata`` is where vendors carry addresses,
phones and anything else OneRoster has no field for.

Birth fields are mapped conservatively: ``countryOfBirthCode`` and
``cityOfBirth`` (a city names its country) are ``birth_country``, a status field
that is never released (IMM-02); ``stateOfBirthAbbreviation`` is
``birthplace``, a national-origin proxy (IMM-17 in bulk).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from gatekeeper.redact import Redactor
from gatekeeper.request import BulkScope

__all__ = [
    "DEFAULT_FIELD_MAP",
    "ONEROSTER_PREFIX",
    "RESOURCE_KINDS",
    "ROUTES",
    "STRUCTURAL_FIELDS",
    "STUDENT_DATA_KINDS",
    "FieldMapping",
    "RecordRedactor",
    "ResourceKind",
    "Route",
    "RouteMatch",
    "match_route",
]

ONEROSTER_PREFIX: Final = "/ims/oneroster/rostering/v1p2"

ResourceKind = Literal["user", "demographics", "enrollment", "class", "org"]
RESOURCE_KINDS: Final[tuple[ResourceKind, ...]] = (
    "user",
    "demographics",
    "enrollment",
    "class",
    "org",
)
#: Resources whose records are about students (decided); classes and schools are not.
STUDENT_DATA_KINDS: Final[frozenset[str]] = frozenset({"user", "demographics", "enrollment"})

_RACE = (
    "americanIndianOrAlaskaNative",
    "asian",
    "blackOrAfricanAmerican",
    "nativeHawaiianOrOtherPacificIslander",
    "white",
    "demographicRaceTwoOrMoreRaces",
    "hispanicOrLatinoEthnicity",
)

#: The standard OneRoster 1.2 properties, per resource, and their catalog names.
#: Names outside RULES.md's catalog (``sex``, ``student_number``...) are treated
#: by the policy as non-directory personally identifiable information.
DEFAULT_FIELD_MAP: Final[Mapping[ResourceKind, Mapping[str, str]]] = {
    "user": {
        "givenName": "name",
        "familyName": "name",
        "middleName": "name",
        "preferredFirstName": "name",
        "preferredMiddleName": "name",
        "preferredLastName": "name",
        "pronouns": "pronouns",
        "username": "username",
        "userIds": "student_number",
        "identifier": "student_number",
        "userMasterIdentifier": "student_number",
        "email": "email",
        "sms": "phone",
        "phone": "phone",
        "grades": "grade_level",
        "roles": "enrollment_status",
        "primaryOrg": "enrollment_status",
        "agents": "guardian_contacts",
        "userProfiles": "credentials",
        "password": "credentials",
    },
    "demographics": {
        "birthDate": "dob",
        "sex": "sex",
        **{race: "ethnicity" for race in _RACE},
        "countryOfBirthCode": "birth_country",
        "cityOfBirth": "birth_country",
        "stateOfBirthAbbreviation": "birthplace",
        "publicSchoolResidenceStatus": "residence_status",
    },
    "enrollment": {
        key: "class_schedule"
        for key in ("user", "class", "school", "role", "primary", "beginDate", "endDate")
    },
    "class": {},
    "org": {},
}

_BASE = ("sourcedId", "status", "dateLastModified")
#: Fields that carry no student data and always pass (when anything passes).
STRUCTURAL_FIELDS: Final[Mapping[ResourceKind, frozenset[str]]] = {
    "user": frozenset((*_BASE, "enabledUser")),
    "demographics": frozenset(_BASE),
    "enrollment": frozenset(_BASE),
    "class": frozenset(
        (
            *_BASE,
            "title",
            "classCode",
            "classType",
            "location",
            "grades",
            "subjects",
            "subjectCodes",
            "course",
            "school",
            "terms",
            "periods",
            "resources",
        )
    ),
    "org": frozenset((*_BASE, "name", "type", "identifier", "parent", "children")),
}

_STRUCTURAL: Final = "\x00structural"


class RecordRedactor(Redactor):
    """A :class:`~gatekeeper.redact.Redactor` for one OneRoster resource.

    Unlike the base class, a top-level key never names its own catalog field:
    only mapped paths and structural fields exist.
    """

    def __init__(self, field_map: Mapping[str, str], structural: Iterable[str]) -> None:
        super().__init__(field_map)
        self.structural = frozenset(structural)

    def catalog_name(self, path: str, key: str) -> str | None:
        if path in self.structural:
            return _STRUCTURAL
        return self.field_map.get(path)

    def bind(self, allowed: Iterable[str]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        """A function redacting one record to its structural and ``allowed`` fields."""
        releasable = frozenset(allowed) | {_STRUCTURAL}

        def redact_one(record: Mapping[str, Any]) -> dict[str, Any]:
            return self.redact(record, releasable)

        return redact_one

    def redact_record(self, record: Mapping[str, Any], allowed: Iterable[str]) -> dict[str, Any]:
        """One record, reduced to its structural and allowed fields."""
        return self.bind(allowed)(record)


def _related(path: str, name: str) -> bool:
    """Whether selecting ``name`` selects (part of) ``path`` or the reverse."""
    return path == name or path.startswith(name + ".") or name.startswith(path + ".")


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """Per resource kind: dotted OneRoster path -> catalog field, and the structural fields."""

    fields: Mapping[ResourceKind, Mapping[str, str]]
    structural: Mapping[ResourceKind, frozenset[str]]

    @classmethod
    def default(cls) -> FieldMapping:
        return cls(
            {k: dict(v) for k, v in DEFAULT_FIELD_MAP.items()},
            dict(STRUCTURAL_FIELDS),
        )

    def extended(
        self,
        fields: Mapping[str, Mapping[str, str]] | None = None,
        structural: Mapping[str, Iterable[str]] | None = None,
    ) -> FieldMapping:
        """A copy with more (or overriding) mapped paths and structural fields."""
        merged = {k: dict(v) for k, v in self.fields.items()}
        for kind, table in (fields or {}).items():
            merged[_kind(kind)].update(table)
        shapes = dict(self.structural)
        for kind, names in (structural or {}).items():
            shapes[_kind(kind)] = shapes[_kind(kind)] | frozenset(names)
        return FieldMapping(merged, shapes)

    def catalog_fields(self, kind: ResourceKind) -> tuple[str, ...]:
        """Every catalog field a record of this kind can carry, in map order."""
        return tuple(dict.fromkeys(self.fields[kind].values()))

    def select(self, kind: ResourceKind, names: Iterable[str]) -> tuple[str, ...]:
        """The catalog fields that the OneRoster ``names`` (fields, filter, sort) touch."""
        wanted = list(names)
        out: dict[str, None] = {}
        for path, field in self.fields[kind].items():
            if any(_related(path, name) for name in wanted):
                out[field] = None
        return tuple(out)

    def unknown(self, kind: ResourceKind, names: Iterable[str]) -> list[str]:
        """The names that are neither structural nor a mapped path (or inside one).

        A name *above* mapped paths (``metadata``) is unknown too: a filter on
        it reads the unmapped keys beside them.
        """
        paths = self.fields[kind]
        shape = self.structural[kind]
        return [
            name
            for name in names
            if name.split(".", 1)[0] not in shape
            and not any(name == p or name.startswith(p + ".") for p in paths)
        ]

    def redactor(self, kind: ResourceKind) -> RecordRedactor:
        return RecordRedactor(self.fields[kind], self.structural[kind])


def _kind(name: str) -> ResourceKind:
    for kind in RESOURCE_KINDS:
        if kind == name:
            return kind
    raise ValueError(f"unknown OneRoster resource kind {name!r} (one of {RESOURCE_KINDS})")


# --------------------------------------------------------------------------- routes

ScopeRule = Literal["district", "class", "school"]


@dataclass(frozen=True, slots=True)
class Route:
    """One OneRoster GET endpoint the proxy knows (anything else is 404, never forwarded)."""

    pattern: re.Pattern[str]
    kind: ResourceKind
    key: str  # the response's top-level key
    single: bool  # one record ({"user": {...}}) or a collection ({"users": [...]})
    scope: ScopeRule = "district"

    @property
    def student_data(self) -> bool:
        return self.kind in STUDENT_DATA_KINDS


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Route
    sourced_id: str | None

    def bulk_scope(self, classes: frozenset[str], schools: frozenset[str]) -> BulkScope:
        """The bulk scope: a class roster or a school only when the client is tied to it.

        A teacher's ``roster`` covers the classes listed for the client; any
        other class (or school) is asked as the wider ``district`` scope, so a
        role that covers only rosters is refused.
        """
        rule = self.route.scope
        if rule == "class" and ("*" in classes or self.sourced_id in classes):
            return "roster"
        if rule == "school" and ("*" in schools or self.sourced_id in schools):
            return "school"
        return "district"


# A path segment, never "." or "..": the upstream URL must name exactly the
# resource that was decided (/classes/../students is not a class roster).
_ID = r"(?P<id>(?!\.\.?(?:/|$))[^/]{1,256})"
ROUTES: Final[tuple[Route, ...]] = (
    Route(re.compile(r"/students"), "user", "users", single=False),
    Route(re.compile(rf"/students/{_ID}"), "user", "user", single=True),
    Route(re.compile(r"/users"), "user", "users", single=False),
    Route(re.compile(rf"/users/{_ID}"), "user", "user", single=True),
    Route(re.compile(r"/demographics"), "demographics", "demographics", single=False),
    Route(re.compile(rf"/demographics/{_ID}"), "demographics", "demographics", single=True),
    Route(re.compile(r"/enrollments"), "enrollment", "enrollments", single=False),
    Route(re.compile(r"/classes"), "class", "classes", single=False),
    Route(re.compile(rf"/classes/{_ID}"), "class", "class", single=True),
    Route(re.compile(rf"/classes/{_ID}/students"), "user", "users", single=False, scope="class"),
    Route(re.compile(r"/schools"), "org", "orgs", single=False),
    Route(re.compile(rf"/schools/{_ID}"), "org", "org", single=True),
    Route(re.compile(rf"/schools/{_ID}/students"), "user", "users", single=False, scope="school"),
)


def match_route(subpath: str) -> RouteMatch | None:
    """The route for a path below the OneRoster prefix (``/students/s1``), or None."""
    for route in ROUTES:
        found = route.pattern.fullmatch(subpath)
        if found is not None:
            return RouteMatch(route, found.groupdict().get("id"))
    return None
