"""Coverage-guided fuzzing of the OneRoster proxy's request handling before the decision.

    python3 fuzz/fuzz_proxy.py -dict=fuzz/proxy.dict -runs=100000 fuzz/corpus/proxy

Input: an HTTP request head as text, the way the ASGI server hands it to the
app (``METHOD TARGET`` on the first line, ``Name: value`` lines after it);
the target is split at ``?`` and its path percent-decoded as uvicorn does.
It drives :func:`gatekeeper.oneroster.plan.plan_request` with the proxy
configuration of ``examples/proxy.toml``: no engine, no network.

Invariants (a violation raises, libFuzzer saves the input):

- the outcome is a 4xx :class:`Refusal` with an error code and a message,
  an :class:`Unauthenticated` (never a client), or a :class:`Plan`; nothing
  else is raised;
- a plan's client is the one the single ``Authorization`` bearer token names
  (the identity decided on is the authenticated one);
- a plan whose endpoint can return student data carries an AccessRequest
  (no student data passes undecided) that parses, or fails only on the id
  taken from the path (a 400 after an audited deny); its requester, purpose
  and vendor are the client's; it names at least one field, and every field
  the forwarded ``filter``/``sort`` reads;
- what is forwarded names the same resource: the upstream path routes to
  the same endpoint and id, without dot segments; only the known query
  parameters pass, each at most once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import atheris

atheris.enabled_hooks.add("str")
with atheris.instrument_imports(include=["gatekeeper.oneroster"]):
    from gatekeeper.errors import RequestError
    from gatekeeper.oneroster.config import ProxyConfig, load_proxy_config
    from gatekeeper.oneroster.mapping import match_route
    from gatekeeper.oneroster.plan import (
        MAX_BEARER_LENGTH,
        PASSED_PARAMS,
        Plan,
        Refusal,
        Unauthenticated,
        plan_request,
    )
    from gatekeeper.oneroster.query import parse_filter, parse_sort
    from gatekeeper.request import parse_request

CONFIG: ProxyConfig = load_proxy_config(
    Path(__file__).resolve().parent.parent / "examples" / "proxy.toml"
)


def split_request(data: bytes) -> tuple[str, str, bytes, list[tuple[bytes, bytes]]]:
    """``METHOD TARGET\\nName: value\\n...`` as (method, path, query_string, headers)."""
    head, _, rest = data.partition(b"\n")
    method_bytes, _, target = head.rstrip(b"\r").partition(b" ")
    raw_path, _, query = target.partition(b"?")
    # uvicorn: path = unquote(raw_path.decode("ascii")); h11 only passes ASCII
    path = unquote(raw_path.decode("latin-1"))
    headers = []
    for line in rest.split(b"\n"):
        name, colon, value = line.rstrip(b"\r").partition(b":")
        if colon:
            headers.append((name.strip().lower(), value.strip()))
    return method_bytes.decode("latin-1"), path, query, headers


def bearer_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    values = [v for n, v in headers if n == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, credential = values[0].decode("latin-1").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > MAX_BEARER_LENGTH:
        return None
    return credential


def check_plan(plan: Plan, headers: list[tuple[bytes, bytes]]) -> None:
    token = bearer_of(headers)
    if token is None or CONFIG.client_for(token) is not plan.client:
        raise AssertionError("planned for a client the token does not name")
    route = plan.match.route
    # What is forwarded names the decided resource, nothing else.
    segments = plan.upstream_path.split("/")
    if any(s in (".", "..") for s in segments) or "?" in plan.upstream_path:
        raise AssertionError(f"upstream path {plan.upstream_path!r} could normalize elsewhere")
    again = match_route(unquote(plan.upstream_path))
    if again is None or again.route is not route or again.sourced_id != plan.match.sourced_id:
        raise AssertionError(f"upstream path {plan.upstream_path!r} routes elsewhere")
    names = [name for name, _ in plan.params]
    if len(set(names)) != len(names) or not set(names) <= PASSED_PARAMS:
        raise AssertionError(f"forwarded parameters {names}")
    params = dict(plan.params)
    read: set[str] = set()
    if params.get("filter"):
        read |= parse_filter(params["filter"]).field_names()
    if params.get("sort"):
        read |= set(parse_sort(params["sort"], params.get("orderBy"))[0])
    if CONFIG.mapping.unknown(route.kind, read):
        raise AssertionError(f"forwarded a filter/sort on unmapped fields {read}")
    if not route.student_data:
        if plan.access is not None:
            raise AssertionError("an access request for an endpoint without student data")
        return
    access = plan.access
    if access is None:
        raise AssertionError(f"student data forwarded without a decision: {route.pattern.pattern}")
    check_access(plan, access, read)


def check_access(plan: Plan, access: dict[str, Any], read: set[str]) -> None:
    client = plan.client
    if access["requester"] != dict(client.requester) or access["purpose"] != client.purpose:
        raise AssertionError("the access request is not the client's")
    if access.get("vendor") != (None if client.vendor is None else dict(client.vendor)):
        raise AssertionError("the access request carries another vendor record")
    fields = access["fields"]
    if not fields:
        raise AssertionError("an access request for no field")
    read_catalog = set(CONFIG.mapping.select(plan.match.route.kind, read))
    if not read_catalog <= set(fields) or set(plan.read_fields) != read_catalog:
        raise AssertionError(f"filter/sort reads {read_catalog}, the request asks {fields}")
    if plan.match.route.single:
        if access.get("student") != {"id": plan.match.sourced_id} or "bulk" in access:
            raise AssertionError("a single-record request not about the path's student")
    elif access.get("bulk", {}).get("scope") not in ("roster", "school", "district"):
        raise AssertionError(f"bulk scope {access.get('bulk')}")
    try:
        parse_request(access)
    except RequestError as exc:
        # Only the id from the path is the client's: Gatekeeper.decide audits
        # the invalid request as a deny and the proxy answers 400.
        if not exc.path.startswith("student.id"):
            raise AssertionError(f"the proxy built an invalid request: {exc}") from exc


def TestOneInput(data: bytes) -> None:
    method, path, query, headers = split_request(data)
    outcome = plan_request(CONFIG, method, path, query, headers)
    if isinstance(outcome, Refusal):
        if not (400 <= outcome.status < 500 and outcome.error and outcome.description):
            raise AssertionError(f"refusal {outcome}")
    elif isinstance(outcome, Unauthenticated):
        if outcome.token is not None and CONFIG.client_for(outcome.token) is not None:
            raise AssertionError("a known token treated as unauthenticated")
    elif isinstance(outcome, Plan):
        check_plan(outcome, headers)
    else:
        raise AssertionError(f"plan_request returned {type(outcome).__name__}")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
