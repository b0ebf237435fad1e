"""What one proxied HTTP request asks, before anything is decided: a pure function.

    >>> from gatekeeper.oneroster.config import ProxyConfig
    >>> from gatekeeper.oneroster.plan import Plan, plan_request
    >>> config = ProxyConfig.from_dict({"clients": {"t": {
    ...     "token_sha256": "a4f5c1c0e9e3c3d5b1b8f0e5b0d6a1a2c5e1f3d7b9a8c6e4d2f0a1b3c5d7e9f1",
    ...     "purpose": "educational",
    ...     "requester": {"id": "E1", "kind": "district_staff", "role": "teacher_of_record"}}}})
    >>> outcome = plan_request(config, "GET", "/ims/oneroster/rostering/v1p2/classes/c1",
    ...                        b"", [(b"authorization", b"Bearer nope")])
    >>> type(outcome).__name__, outcome.match.route.kind
    ('Unauthenticated', 'class')
    >>> plan_request(config, "POST", "/ims/oneroster/rostering/v1p2/students", b"", []).status
    405

:func:`plan_request` takes the request as the ASGI server hands it over
(method, decoded path, raw query string, raw header pairs) and returns one of

- :class:`Refusal`: a 4xx answered at once, never forwarded, never decided
  (unknown endpoint 404, other method 405, a request the proxy will not read
  unambiguously 400: two ``Authorization`` headers, a body on a GET, a
  query it cannot parse; headers over 16 KiB 431);
- :class:`Unauthenticated`: no bearer token or an unknown one (401, perhaps
  audited as an unidentified requester);
- :class:`Plan`: the AccessRequest to decide (``None`` only for the endpoints
  without student data) and exactly what is forwarded after a permit: the
  upstream path and the query parameters.

It touches no engine, network or clock (but ``uuid4`` for a missing
``X-Request-Id``), so it is what ``fuzz/fuzz_proxy.py`` drives. The proxy
decides on the identity the token authenticates and nothing else: no client
header but ``Authorization`` and ``X-Request-Id`` is read, none is forwarded.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, quote

from gatekeeper.oneroster.config import ClientConfig, ProxyConfig
from gatekeeper.oneroster.mapping import ONEROSTER_PREFIX, RouteMatch, match_route
from gatekeeper.oneroster.query import QueryError, parse_fields, parse_filter, parse_sort

__all__ = [
    "MAX_BEARER_LENGTH",
    "MAX_HEADER_BYTES",
    "PASSED_PARAMS",
    "Plan",
    "Refusal",
    "Unauthenticated",
    "plan_request",
    "shown_path",
]

#: Query parameters forwarded upstream; any other is dropped.
PASSED_PARAMS: Final = frozenset({"limit", "offset", "filter", "sort", "orderBy", "fields"})
#: Most bytes of request headers read (uvicorn itself bounds only incomplete ones).
MAX_HEADER_BYTES: Final = 16 * 1024
#: Longest bearer token read (a longer one is no token).
MAX_BEARER_LENGTH: Final = 4096
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A 4xx answer given before any decision; nothing is forwarded."""

    status: int
    error: str
    description: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unauthenticated:
    """No bearer token, or one no client has: 401 (``token`` is None when none was given)."""

    match: RouteMatch
    subpath: str
    token: str | None
    request_id: str


@dataclass(frozen=True, slots=True)
class Plan:
    """An authenticated request: what to decide and what to forward on a permit."""

    match: RouteMatch
    subpath: str
    client: ClientConfig
    #: The AccessRequest (a dict for Gatekeeper.decide); None: no student data, not decided.
    access: dict[str, Any] | None
    request_id: str
    #: The path below the upstream base, each segment percent-encoded.
    upstream_path: str
    #: The query parameters forwarded (only PASSED_PARAMS, each at most once).
    params: tuple[tuple[str, str], ...] = ()
    #: Catalog fields the filter and sort read: the SIS applies them, so they must be allowed.
    read_fields: tuple[str, ...] = ()


def plan_request(
    config: ProxyConfig,
    method: str,
    path: str,
    query_string: bytes,
    headers: Iterable[tuple[bytes, bytes]],
) -> Plan | Refusal | Unauthenticated:
    """Route, read the headers, authenticate and read the query of one request.

    ``path`` is the ASGI ``scope["path"]`` (percent-decoded), ``query_string``
    and ``headers`` the raw ASGI values. Never raises for any input.
    """
    if not path.startswith(ONEROSTER_PREFIX + "/"):
        return Refusal(404, "not_found", "not a OneRoster rostering path")
    subpath = path[len(ONEROSTER_PREFIX) :]
    match = match_route(subpath)
    if match is None:
        return Refusal(404, "not_found", "this endpoint is not served through the gatekeeper")
    if method != "GET":
        return Refusal(405, "method_not_allowed", "read-only: GET", {"Allow": "GET"})
    by_name: dict[bytes, list[bytes]] = {}
    size = 0
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)
        size += len(name) + len(value) + 4
    if size > MAX_HEADER_BYTES:
        return Refusal(431, "headers_too_large", f"request headers over {MAX_HEADER_BYTES} bytes")
    authorization = by_name.get(b"authorization", [])
    if len(authorization) > 1:
        # Which one would we authenticate, and which one did a front proxy check?
        return Refusal(400, "invalid_request", "Authorization given more than once")
    if b"transfer-encoding" in by_name or any(
        v.strip() not in (b"", b"0") for v in by_name.get(b"content-length", [])
    ):
        # A GET has no body; one that claims a body may be framed differently by
        # whatever stands in front of the proxy (request smuggling).
        return Refusal(400, "invalid_request", "a GET request carries no body")
    ids = by_name.get(b"x-request-id", [])
    given_id = ids[0].decode("latin-1") if len(ids) == 1 else ""
    request_id = given_id if _REQUEST_ID.fullmatch(given_id) else uuid.uuid4().hex
    token = _bearer(authorization[0].decode("latin-1")) if authorization else None
    client = config.client_for(token) if token else None
    if client is None:
        return Unauthenticated(match, subpath, token, request_id)
    try:
        return _plan(config, client, match, subpath, query_string, request_id)
    except QueryError as exc:
        return Refusal(400, "invalid_query", str(exc))


def _plan(
    config: ProxyConfig,
    client: ClientConfig,
    match: RouteMatch,
    subpath: str,
    query_string: bytes,
    request_id: str,
) -> Plan:
    route = match.route
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    params: dict[str, str] = {}
    forwarded: list[tuple[str, str]] = []
    for name, value in pairs:
        if name not in PASSED_PARAMS:
            continue
        if name in params:
            # We would read one and forward both: the SIS might apply the other.
            raise QueryError(f"{name} given more than once")
        params[name] = value
        forwarded.append((name, value))
    mapping = config.mapping
    read: set[str] = set()
    if params.get("filter"):
        read |= parse_filter(params["filter"]).field_names()
    if params.get("sort"):
        read |= set(parse_sort(params["sort"], params.get("orderBy"))[0])
    unknown = mapping.unknown(route.kind, sorted(read))
    if unknown:
        raise QueryError(f"filter or sort on a field the gatekeeper does not map: {unknown[0]}")
    selected = parse_fields(params["fields"]) if "fields" in params else None
    upstream_path = "/" + "/".join(quote(s, safe="") for s in subpath.strip("/").split("/"))
    if not route.student_data:
        return Plan(match, subpath, client, None, request_id, upstream_path, tuple(forwarded))
    if selected is not None:
        fields = list(mapping.select(route.kind, selected))
    else:
        default = client.default_fields
        fields = [f for f in mapping.catalog_fields(route.kind) if default is None or f in default]
    read_fields = mapping.select(route.kind, sorted(read))
    fields += [f for f in read_fields if f not in fields]
    if not fields:
        fields = ["enrollment_status"]  # a record's mere presence says this much
    access = client.request_base()
    access["request_id"] = request_id
    shown = shown_path(subpath)
    access["purpose_text"] = f"OneRoster GET {shown}"[:256]
    if route.single:
        access["student"] = {"id": match.sourced_id}
    else:
        access["bulk"] = {
            "scope": match.bulk_scope(client.classes, client.schools),
            "description": f"OneRoster GET {shown}"[:256],
        }
    access["fields"] = fields
    return Plan(
        match, subpath, client, access, request_id, upstream_path, tuple(forwarded), read_fields
    )


def shown_path(subpath: str) -> str:
    """The path as text for people (``purpose_text``), control characters escaped:
    a bad id (``/students/a%00b``) is then refused as ``student.id``, the key it is in."""
    return "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c for c in subpath)


def _bearer(value: str) -> str | None:
    scheme, _, credential = value.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > MAX_BEARER_LENGTH:
        return None
    return credential
