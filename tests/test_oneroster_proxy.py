"""The OneRoster proxy, for real: demo SIS and proxy on loopback (uvicorn), driven with httpx.

The proxy runs with examples/proxy.toml (pointed at this session's demo SIS),
so the example is tested too. Every test that expects a refusal also checks
that the SIS saw no request.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gatekeeper._serving import start_in_thread
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.show import iter_entries
from gatekeeper.engines import EmbeddedEngine, OpaServerEngine, PolicyEngine, load_pack
from gatekeeper.errors import GatekeeperError
from gatekeeper.guard import Gatekeeper
from gatekeeper.oneroster.config import ProxyConfig, load_proxy_config
from gatekeeper.oneroster.mapping import FieldMapping
from gatekeeper.oneroster.proxy import ProxyHandle, open_proxy, start_proxy
from gatekeeper.oneroster.query import QueryError, parse_filter
from gatekeeper.oneroster.stream import CollectionRedactor, StreamError
from gatekeeper.sis.demo import DemoSISHandle, start_demo_sis
from tests.oneroster_support import PREFIX, SIS_TOKEN, STUDENTS, TOKENS, demo_db, free_port

__all__ = ["demo_db"]  # the fixture, re-exported for pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "proxy.toml"

# What the teacher_of_record role may see of a user record (examples/proxy.toml's map).
TEACHER_KEYS = {"givenName", "familyName", "middleName", "grades", "sourcedId", "status",
                "dateLastModified", "enabledUser", "metadata"}  # fmt: skip
TEACHER_METADATA = {"marks", "attendance", "allergies", "medications", "emergencyContacts",
                    "iep", "photo"}  # fmt: skip


def example_document(upstream: str, **gatekeeper: Any) -> dict[str, Any]:
    document = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    document["proxy"]["upstream"] = upstream
    document["proxy"]["upstream_token"] = SIS_TOKEN
    if gatekeeper:
        document["gatekeeper"] = gatekeeper
    return document


@pytest.fixture(scope="module")
def sis(demo_db: Path) -> Iterator[DemoSISHandle]:
    with start_demo_sis(db=demo_db, students=STUDENTS, token=SIS_TOKEN) as handle:
        yield handle


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy-gk")


@pytest.fixture(scope="module")
def proxy(sis: DemoSISHandle, data_dir: Path) -> Iterator[ProxyHandle]:
    # The default audit timeout: the lock test holds SQLite's write lock for the
    # whole request (it waits this out, then 503); every other request must
    # not miss it on a loaded machine.
    config = ProxyConfig.from_dict(example_document(sis.url, audit_timeout=2.0))
    with start_proxy(config, data_dir=data_dir) as handle:
        yield handle


class Caller:
    """httpx against the proxy, remembering every decision id it was answered with."""

    def __init__(self, proxy: ProxyHandle) -> None:
        self.proxy = proxy
        self.http = httpx.Client(base_url=proxy.base_url, timeout=30)
        self.decisions: list[str] = []

    def get(self, who: str | None, path: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKENS.get(who, who)}"} if who else {}
        response = self.http.get(path, params=params or None, headers=headers)
        header = response.headers.get("X-Gatekeeper-Decision")
        if header:
            found = re.fullmatch(r"(permit|deny|escalate); id=([0-9a-f]{32})", header)
            assert found, header
            self.decisions.append(found[2])
        return response


@pytest.fixture(scope="module")
def caller(proxy: ProxyHandle) -> Iterator[Caller]:
    c = Caller(proxy)
    yield c
    c.http.close()


@pytest.fixture(scope="module")
def upstream(sis: DemoSISHandle) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sis.base_url, headers={"Authorization": f"Bearer {SIS_TOKEN}"}, timeout=30
    ) as c:
        yield c


def audit_entries(proxy: ProxyHandle) -> dict[str, dict[str, Any]]:
    audit = proxy.gatekeeper.audit
    assert audit is not None
    return {e["decision_id"]: e for _, e in iter_entries(audit.store) if "decision_id" in e}


def unchanged(sis: DemoSISHandle, before: int) -> None:
    assert sis.stats.count == before, "the SIS was called for a refused request"


# --------------------------------------------------------------------------- releases


def test_teacher_reads_one_student_redacted(
    caller: Caller, upstream: httpx.Client, proxy: ProxyHandle
) -> None:
    response = caller.get("teacher", "/students/stu-00001")
    assert response.status_code == 200, response.text
    assert response.headers["X-Gatekeeper-Decision"].startswith("permit; id=")
    assert response.headers["Cache-Control"] == "no-store, private"  # no cache keeps a record
    user = response.json()["user"]
    assert set(user) <= TEACHER_KEYS
    assert set(user["metadata"]) <= TEACHER_METADATA
    original = upstream.get("/students/stu-00001").json()["user"]
    for key in ("givenName", "familyName", "grades", "sourcedId"):
        assert user[key] == original[key]
    assert user["metadata"]["marks"] == original["metadata"]["marks"]
    text = response.text
    for secret in ("homeAddress", "homePhone", "homeLanguage", "lunchProgram", "discipline",
                   "guardians", original["email"], original["username"],
                   original["metadata"]["homeAddress"]["line1"]):  # fmt: skip
        assert secret not in text
    entry = audit_entries(proxy)[caller.decisions[-1]]
    assert entry["decision"] == "permit" and entry["rules"][0] == "FERPA-1"
    assert entry["requester"]["id"] == "E1001"
    assert "home_address" in entry["denied_fields"]


def test_vendor_roster_sync_matches_upstream_paging_filter_sort(
    caller: Caller, upstream: httpx.Client
) -> None:
    params = {"limit": 40, "offset": 120, "filter": "status='active' AND grades='09'",
              "sort": "familyName", "orderBy": "desc"}  # fmt: skip
    proxied = caller.get("busco", "/students", **params)
    direct = upstream.get("/students", params=params)
    assert proxied.status_code == 200, proxied.text
    assert proxied.headers["X-Gatekeeper-Decision"].startswith("permit")
    assert "content-length" not in proxied.headers
    assert proxied.headers["X-Total-Count"] == direct.headers["X-Total-Count"]
    mine, theirs = proxied.json()["users"], direct.json()["users"]
    assert [r["sourcedId"] for r in mine] == [r["sourcedId"] for r in theirs] and mine
    allowed = {"sourcedId", "status", "dateLastModified", "enabledUser", "givenName",
               "familyName", "middleName", "grades", "roles", "primaryOrg", "metadata"}  # fmt: skip
    for got, full in zip(mine, theirs, strict=True):
        assert set(got) <= allowed
        assert set(got["metadata"]) <= {"homeAddress", "busRoute", "busStop"}
        assert got["metadata"]["homeAddress"] == full["metadata"]["homeAddress"]
        assert got["familyName"] == full["familyName"]
        assert "email" not in got and "userIds" not in got
    links = dict((rel, url) for url, rel in re.findall(r'<([^>]*)>; rel="(\w+)"',
                                                        proxied.headers["Link"]))  # fmt: skip
    assert all(url.startswith(caller.proxy.base_url + "/students?") for url in links.values())
    assert "offset=160" in links["next"] and "offset=80" in links["prev"]
    following = caller.get("busco", links["next"].removeprefix(caller.proxy.base_url))
    direct_next = upstream.get("/students", params={**params, "offset": 160})
    assert [r["sourcedId"] for r in following.json()["users"]] == [
        r["sourcedId"] for r in direct_next.json()["users"]
    ]


def test_whole_district_streams_through(caller: Caller) -> None:
    with caller.http.stream(
        "GET", "/students", params={"limit": STUDENTS},
        headers={"Authorization": f"Bearer {TOKENS['busco']}"},
    ) as response:  # fmt: skip
        assert response.status_code == 200
        assert "content-length" not in response.headers
        assert response.headers.get("transfer-encoding") == "chunked"
        caller.decisions.append(response.headers["X-Gatekeeper-Decision"].split("id=")[1])
        body = response.read()
    records = json.loads(body)["users"]
    assert len(records) == STUDENTS
    assert not any("lunchProgram" in r.get("metadata", {}) for r in records)


def test_teacher_roster_scope(caller: Caller, sis: DemoSISHandle) -> None:
    own = caller.get("teacher", "/classes/cls-01-01-home-1/students")
    assert own.status_code == 200 and own.json()["users"]
    assert all(set(u) <= TEACHER_KEYS for u in own.json()["users"])
    before = sis.stats.count
    other = caller.get("teacher", "/classes/cls-01-01-home-2/students")
    assert other.status_code == 403
    assert other.json()["rules"] == ["FERPA-1N"]  # asked as the district scope
    unchanged(sis, before)


def test_classes_and_schools_need_no_decision(caller: Caller) -> None:
    response = caller.get("nurse", "/schools")
    assert response.status_code == 200
    assert "X-Gatekeeper-Decision" not in response.headers
    assert all(o["type"] == "school" for o in response.json()["orgs"])


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "path",
    ["/students/stu-00001", "/students", "/demographics/stu-00002",
     "/classes/cls-01-01-home-1/students", "/schools/sch-01/students", "/enrollments"],
)  # fmt: skip
def test_ice_is_refused_and_never_forwarded(
    caller: Caller, sis: DemoSISHandle, proxy: ProxyHandle, path: str
) -> None:
    before = sis.stats.count
    response = caller.get("ice", path)
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["decision"] == "deny"
    assert {"IMM-01", "IMM-02", "IMM-17"} & set(body["rules"])
    assert body["decision_id"] == caller.decisions[-1] and body["guidance"]
    unchanged(sis, before)
    entry = audit_entries(proxy)[body["decision_id"]]
    assert entry["decision"] == "deny" and entry["requester"]["agency"] == "ICE-ERO"


def test_flagged_and_enforcement_linked_vendors(caller: Caller, sis: DemoSISHandle) -> None:
    before = sis.stats.count
    flagged = caller.get("edinsight", "/students")
    assert flagged.status_code == 403
    assert flagged.json()["decision"] == "escalate" and flagged.json()["rules"][0] == "IMM-14R"
    linked = caller.get("tracklink", "/students")
    assert linked.status_code == 403
    assert linked.json()["decision"] == "deny" and "IMM-14" in linked.json()["rules"]
    linked_one = caller.get("tracklink", "/users/stu-00009")
    assert linked_one.status_code == 403
    unchanged(sis, before)


def test_country_of_birth_never_leaves(
    caller: Caller, sis: DemoSISHandle, upstream: httpx.Client
) -> None:
    before = sis.stats.count
    everything = caller.get("principal", "/demographics/stu-00001")
    assert everything.status_code == 403 and everything.json()["rules"] == ["IMM-02"]
    city = caller.get("principal", "/demographics/stu-00001", fields="birthDate,cityOfBirth")
    assert city.status_code == 403
    by_filter = caller.get("principal", "/demographics", filter="countryOfBirthCode='MX'")
    assert by_filter.status_code == 403 and by_filter.json()["rules"][0] in ("IMM-02", "IMM-17")
    by_sort = caller.get("principal", "/demographics", sort="countryOfBirthCode")
    assert by_sort.status_code == 403
    unchanged(sis, before)
    # An unknown name in `fields` makes a OneRoster SIS return the whole record:
    # the decision covers birthDate only, so that is all that leaves.
    released = caller.get("principal", "/demographics/stu-00001", fields="birthDate,nosuchfield")
    assert released.status_code == 200
    assert sis.stats.recent(1)[0].query.endswith("nosuchfield")  # forwarded as asked
    full = upstream.get("/demographics/stu-00001").json()["demographics"]
    assert released.json()["demographics"] == {
        key: full[key] for key in ("sourcedId", "status", "dateLastModified", "birthDate")
    }


def test_unknown_token_is_401_and_audited(
    caller: Caller, sis: DemoSISHandle, proxy: ProxyHandle
) -> None:
    before = sis.stats.count
    unknown = caller.get("not-a-token", "/students/stu-00001")
    assert unknown.status_code == 401
    assert unknown.headers["WWW-Authenticate"].startswith("Bearer")
    entry = audit_entries(proxy)[unknown.json()["decision_id"]]
    assert entry["decision"] == "deny"
    assert entry["requester"]["id"].startswith("unknown-token:")
    assert "not-a-token" not in json.dumps(entry)
    anonymous = caller.get(None, "/students/stu-00001")
    assert anonymous.status_code == 401 and "decision_id" not in anonymous.json()
    unchanged(sis, before)


def test_unknown_paths_methods_and_queries(caller: Caller, sis: DemoSISHandle) -> None:
    before = sis.stats.count
    assert caller.get("principal", "/teachers").status_code == 404
    assert caller.get("principal", "/academicSessions").status_code == 404
    assert caller.http.get("/../students", headers={}).status_code == 404
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        response = caller.http.request(
            method, "/students/stu-00001", headers={"Authorization": "Bearer demo-teacher-token"}
        )
        assert response.status_code == 405
    bad = caller.get("principal", "/students", filter="metadata.lunchProgram='free'")
    assert bad.status_code == 400  # a filter on a field nobody mapped: never forwarded
    assert caller.get("principal", "/students", filter="status").status_code == 400
    unchanged(sis, before)


def test_no_path_or_parameter_tricks(caller: Caller, sis: DemoSISHandle) -> None:
    before = sis.stats.count
    # "/classes/../students" would be decided as one class roster and then
    # normalize upstream into the whole district.
    for path in ("/classes/%2E%2E/students", "/classes/%2e/students", "/students/%2E%2E"):
        response = caller.get("principal", path)
        assert response.status_code == 404, path
    # Two filters: the proxy would read one, and the SIS might apply the other.
    twice = caller.http.get(
        "/demographics?filter=status%3D%27active%27&filter=countryOfBirthCode%3D%27MX%27",
        headers={"Authorization": f"Bearer {TOKENS['principal']}"},
    )
    assert twice.status_code == 400
    unchanged(sis, before)


def test_filter_and_sort_only_on_released_fields(caller: Caller, sis: DemoSISHandle) -> None:
    roster = "/classes/cls-01-01-home-1/students"
    assert caller.get("teacher", roster).status_code == 200
    before = sis.stats.count
    # The teacher may not see home language or e-mail: the records a filter on
    # them selects (and X-Total-Count) would tell those values all the same.
    for params in (
        {"filter": "metadata.homeLanguage='Spanish'"},
        {"filter": "email~'a'"},
        {"sort": "email"},
        {"filter": "givenName~'a' OR metadata.homeAddress~'1'"},
    ):
        response = caller.get("teacher", roster, **params)
        assert response.status_code == 403, (params, response.text)
        assert response.json()["decision"] == "permit" and response.json()["denied_read"]
    # A name above mapped paths reads the unmapped keys beside them (lunchProgram).
    assert caller.get("principal", "/students", filter="metadata~'free'").status_code == 400
    unchanged(sis, before)
    allowed = caller.get("teacher", roster, filter="givenName~'a'", sort="familyName")
    assert allowed.status_code == 200 and allowed.json()["users"]


def test_request_id_is_echoed(caller: Caller, proxy: ProxyHandle) -> None:
    response = caller.http.get(
        "/students/stu-00004",
        headers={"Authorization": f"Bearer {TOKENS['nurse']}", "X-Request-Id": "req-42"},
    )
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "req-42"
    caller.decisions.append(response.headers["X-Gatekeeper-Decision"].split("id=")[1])
    assert audit_entries(proxy)[caller.decisions[-1]]["request_id"] == "req-42"


# --------------------------------------------------------------------------- failures


def test_audit_store_failure_is_503_and_nothing_forwarded(
    caller: Caller, sis: DemoSISHandle, data_dir: Path
) -> None:
    before = sis.stats.count
    lock = sqlite3.connect(data_dir / "audit.sqlite", timeout=5)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        response = caller.get("teacher", "/students/stu-00005")
    finally:
        lock.rollback()
        lock.close()
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "unavailable" and body["reason"].startswith("audit")
    assert response.headers["Retry-After"]
    assert response.headers["Cache-Control"] == "no-store, private"  # refusals too
    assert "givenName" not in response.text
    unchanged(sis, before)
    caller.decisions.pop()  # never audited, by definition
    assert caller.get("teacher", "/students/stu-00005").status_code == 200


def test_upstream_down_is_502_with_nothing_leaked(data_dir: Path, tmp_path: Path) -> None:
    config = ProxyConfig.from_dict(example_document(f"http://127.0.0.1:{free_port()}"))
    with start_proxy(config, data_dir=tmp_path) as proxy, httpx.Client(timeout=30) as http:
        teacher = {"Authorization": f"Bearer {TOKENS['teacher']}"}
        vendor = {"Authorization": f"Bearer {TOKENS['busco']}"}
        one = http.get(proxy.base_url + "/students/stu-00001", headers=teacher)
        many = http.get(proxy.base_url + "/students", headers=vendor)
        for response in (one, many):
            assert response.status_code == 502
            assert set(response.json()) <= {
                "error", "imsx_codeMajor", "imsx_severity", "imsx_description"
            }  # fmt: skip
            assert response.headers["X-Gatekeeper-Decision"].startswith("permit")


def real_engine(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None
) -> EmbeddedEngine:
    """A real embedded engine over the shipped pack, or over a copy of it whose
    catalog ``edit`` changes (a district's pack that decides differently)."""
    if edit is None:
        return EmbeddedEngine(load_pack(REPO / "policies"))
    root = tmp_path / "policies"
    shutil.copytree(REPO / "policies", root)
    data = root / "catalog" / "data.json"
    catalog = json.loads(data.read_text(encoding="utf-8"))
    edit(catalog)
    data.write_text(json.dumps(catalog), encoding="utf-8")
    return EmbeddedEngine(load_pack(root))


def engine_down(tmp_path: Path) -> OpaServerEngine:
    """A real OPA engine client whose server is not running (connection refused,
    at once: the generous deadline only keeps a stall on a loaded machine from
    reading as ``engine_timeout``)."""
    pack = load_pack(REPO / "policies")
    return OpaServerEngine(pack, url=f"http://127.0.0.1:{free_port()}", timeout=5.0)


def ferpa1_obliges(code: str, *, blocking: bool | None = None) -> Callable[[dict[str, Any]], None]:
    """A catalog edit: FERPA-1 (the teacher's deciding rule) also obliges ``code``;
    ``blocking`` marks it blocking (True) or not (False) in the catalog."""

    def edit(catalog: dict[str, Any]) -> None:
        catalog["rules"]["FERPA-1"]["obligations"].append(code)
        if code not in catalog["obligation_order"]:  # final_obligations iterate this order
            catalog["obligation_order"].append(code)
            catalog["guidance"]["obligations"][code] = f"Meet {code} before release."
        listed = catalog["blocking_obligations"]
        if blocking and code not in listed:
            listed.append(code)
        elif blocking is False and code in listed:
            listed.remove(code)

    return edit


@pytest.mark.parametrize(
    ("scenario", "who", "path", "status", "error", "held_for"),
    [
        ("engine_down", "teacher", "/students/stu-00001", 503, "unavailable", None),
        # a pack whose teacher permit carries NOTIFY_PARENT_PRE (blocking)
        ("notify_parent_pre", "teacher", "/students/stu-00001", 403, "release_held",
         ["NOTIFY_PARENT_PRE"]),
        # busco's bulk permit (FERPA-1V) when FERPA-1V is not a bulk-release rule
        ("bulk_rule_not_released", "busco", "/students", 403, "release_held",
         ["REDACT_OUT_OF_SCOPE"]),
        # ... and when it is (examples/proxy.toml)
        ("bulk_rule_released", "busco", "/students", 200, None, None),
    ],
)  # fmt: skip
def test_engine_failure_and_held_releases(
    sis: DemoSISHandle,
    tmp_path: Path,
    scenario: str,
    who: str,
    path: str,
    status: int,
    error: str | None,
    held_for: list[str] | None,
) -> None:
    document = example_document(sis.url)
    engine: PolicyEngine
    if scenario == "engine_down":
        engine = engine_down(tmp_path)
    elif scenario == "notify_parent_pre":
        engine = real_engine(tmp_path, ferpa1_obliges("NOTIFY_PARENT_PRE"))
    else:
        engine = real_engine(tmp_path)
        if scenario == "bulk_rule_not_released":
            document["proxy"]["bulk_release_rules"] = ["FERPA-1"]
    config = ProxyConfig.from_dict(document)
    audit = AuditLog.open_sqlite(tmp_path)
    gatekeeper = Gatekeeper(engine=engine, audit=audit)
    before = sis.stats.count
    with start_proxy(config, gatekeeper=gatekeeper) as proxy:
        response = httpx.get(
            proxy.base_url + path, headers={"Authorization": f"Bearer {TOKENS[who]}"}, timeout=30
        )
    assert response.status_code == status, response.text
    if error is not None:
        assert response.json()["error"] == error
        unchanged(sis, before)
    if scenario == "engine_down":
        assert response.json()["reason"] == "engine_unreachable"
    if held_for is not None:
        assert response.json()["held_for"] == held_for
    decision_id = response.headers["X-Gatekeeper-Decision"].split("id=")[1]
    entries = {e["decision_id"]: e for _, e in iter_entries(audit.store) if "decision_id" in e}
    assert decision_id in entries
    if scenario.startswith("bulk"):  # the real pack's bulk permit, on FERPA-1V
        assert entries[decision_id]["rules"][0] == "FERPA-1V"
    gatekeeper.close()


@pytest.mark.parametrize(
    ("edit", "blocking", "status", "held_for"),
    [
        # the pack's catalog marks a district obligation blocking: it holds the release
        (ferpa1_obliges("NOTIFY_DISTRICT_HOLD", blocking=True),
         {"NOTIFY_PARENT_PRE", "REDACT_OUT_OF_SCOPE", "VERIFY_CONSENT", "VERIFY_IDENTITY",
          "NOTIFY_DISTRICT_HOLD"}, 403, ["NOTIFY_DISTRICT_HOLD"]),
        # ... and one the catalog does not mark blocking does not
        (ferpa1_obliges("NOTIFY_PARENT_PRE", blocking=False),
         {"REDACT_OUT_OF_SCOPE", "VERIFY_CONSENT", "VERIFY_IDENTITY"}, 200, None),
    ],
    ids=["district-code-blocking", "parent-pre-not-blocking"],
)  # fmt: skip
def test_release_is_held_by_the_gatekeepers_blocking_set(
    sis: DemoSISHandle,
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
    blocking: set[str],
    status: int,
    held_for: list[str] | None,
) -> None:
    config = ProxyConfig.from_dict(example_document(sis.url))
    audit = AuditLog.open_sqlite(tmp_path)
    # No blocking_obligations argument: the Gatekeeper reads the pack's catalog.
    gatekeeper = Gatekeeper(engine=real_engine(tmp_path, edit), audit=audit)
    assert gatekeeper.blocking_obligations == blocking
    before = sis.stats.count
    with start_proxy(config, gatekeeper=gatekeeper) as proxy:
        response = httpx.get(
            proxy.base_url + "/students/stu-00001",
            headers={"Authorization": f"Bearer {TOKENS['teacher']}"},
            timeout=30,
        )
    assert response.status_code == status, response.text
    if held_for is not None:
        assert response.json()["error"] == "release_held"
        assert response.json()["held_for"] == held_for
        unchanged(sis, before)
    decision_id = response.headers["X-Gatekeeper-Decision"].split("id=")[1]
    entries = {e["decision_id"]: e for _, e in iter_entries(audit.store) if "decision_id" in e}
    code = "NOTIFY_DISTRICT_HOLD" if held_for else "NOTIFY_PARENT_PRE"
    assert code in entries[decision_id]["obligations"]  # the real policy obliged it
    gatekeeper.close()


@contextmanager
def fixed_upstream(body: bytes, status: int = 200) -> Iterator[str]:
    """A real upstream on loopback answering ``body`` with ``status`` to any GET."""

    async def answer(request: Request) -> Response:
        return Response(body, status_code=status, media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", answer)])
    with start_in_thread(app, name="fixed-upstream") as server:
        yield server.url


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (b'{"user": "not an object"}', 200, 502),
        (b"<html>oops</html>", 200, 502),
        (b'{"imsx_codeMajor": "failure", "imsx_description": "Ana Lopez"}', 500, 502),
        (b'{"imsx_description": "no such user"}', 404, 404),
        (b'{"imsx_description": "bad token"}', 401, 502),
    ],
)
def test_upstream_errors_pass_no_body(
    tmp_path: Path, body: bytes, status: int, expected: int
) -> None:
    with fixed_upstream(body, status) as upstream:
        config = ProxyConfig.from_dict(example_document(upstream))
        proxy = open_proxy(config, data_dir=tmp_path)
        with start_in_thread(proxy.app, on_stop=proxy.close) as server:
            response = httpx.get(
                server.url + PREFIX + "/students/stu-00001",
                headers={"Authorization": f"Bearer {TOKENS['teacher']}"},
            )
    assert response.status_code == expected
    assert "Ana Lopez" not in response.text and "oops" not in response.text


def test_truncated_collection_aborts_the_response(tmp_path: Path) -> None:
    body = b'{"users": [{"sourcedId": "a", "givenName": "Ana", "ssn": "123"}, {"sourcedId": "b"'
    received = b""
    with fixed_upstream(body) as upstream:
        config = ProxyConfig.from_dict(example_document(upstream))
        proxy = open_proxy(config, data_dir=tmp_path)
        with start_in_thread(proxy.app, on_stop=proxy.close) as server:
            with pytest.raises(httpx.RemoteProtocolError):
                with httpx.stream(
                    "GET", server.url + PREFIX + "/students",
                    headers={"Authorization": f"Bearer {TOKENS['busco']}"},
                ) as response:  # fmt: skip
                    assert response.status_code == 200
                    for chunk in response.iter_bytes():
                        received += chunk
    assert b"123" not in received and b"ssn" not in received


# --------------------------------------------------------------------------- the log


def test_every_decision_is_in_the_audit_log(
    caller: Caller, proxy: ProxyHandle, sis: DemoSISHandle
) -> None:
    caller.get("nurse", "/students/stu-00010")
    entries = audit_entries(proxy)
    assert caller.decisions, "no decisions were recorded"
    missing = [d for d in caller.decisions if d not in entries]
    assert not missing
    assert len(entries) == len(set(caller.decisions))  # and nothing else was decided
    audit = proxy.gatekeeper.audit
    assert audit is not None
    raw = b"".join(e.data for e in audit.store.read_entries(0, audit.size()))
    for token in (*TOKENS.values(), SIS_TOKEN):
        assert token.encode() not in raw
    # The SIS saw only the proxy's own credential, never a client's token.
    assert all(served.authorization for served in sis.stats.recent(10_000))


# --------------------------------------------------------------------------- units


def test_stream_emits_records_before_the_body_ends() -> None:
    stream = CollectionRedactor("users", lambda r: {"sourcedId": r["sourcedId"]})
    body = json.dumps({"users": [{"sourcedId": f"s{n}", "x": "y" * 50} for n in range(50)]})
    data = body.encode()
    half = len(data) // 2
    out = b"".join(stream.feed(data[i : min(i + 7, half)]) for i in range(0, half, 7))
    assert stream.count > 10  # half the body in: many records already out
    out += stream.feed(data[half:]) + stream.finish()
    assert json.loads(out) == {"users": [{"sourcedId": f"s{n}"} for n in range(50)]}
    with pytest.raises(StreamError):
        CollectionRedactor("users", dict).feed(b"[1, 2")
    with pytest.raises(StreamError):
        CollectionRedactor("users", dict).finish()
    with pytest.raises(StreamError):
        broken = CollectionRedactor("users", dict)
        broken.feed(b'{"users": [{"a": 1}')
        broken.finish()


def test_filter_grammar() -> None:
    assert parse_filter("a='1' OR b~'x' AND c>='2'").field_names() == {"a", "b", "c"}
    for bad in ("a", "a='1' AND", "a='1' b='2'", "a=1", "a='1'; drop", "a.='x'", "x='it''s'"):
        with pytest.raises(QueryError):
            parse_filter(bad)


def test_field_mapping_selects_through_prefixes() -> None:
    mapping = FieldMapping.default().extended({"user": {"metadata.homeAddress": "home_address"}})
    assert mapping.select("user", ["metadata"]) == ("home_address",)
    assert mapping.select("user", ["metadata.homeAddress.city"]) == ("home_address",)
    assert mapping.unknown("user", ["status", "givenName", "metadata.other"]) == ["metadata.other"]
    redactor = mapping.redactor("user")
    record = {"sourcedId": "s", "grades": ["09"], "metadata": {"homeAddress": "x", "y": 1}}
    assert redactor.redact_record(record, ["grade_level"]) == {"sourcedId": "s", "grades": ["09"]}


def test_config_validation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def client(**extra: Any) -> dict[str, Any]:
        return {"clients": {"c": {"purpose": "educational", "requester": {
            "id": "x", "kind": "district_staff", "role": "nurse", "identity_verified": True},
            **extra}}}  # fmt: skip

    digest = hashlib.sha256(b"t").hexdigest()
    same = client(token_sha256=digest)["clients"]["c"]
    monkeypatch.setenv("GK_TEST_TOKEN", "t")
    by_env = ProxyConfig.from_dict(client(token_env="GK_TEST_TOKEN"))
    assert by_env.client_for("t") is not None and by_env.client_for("u") is None
    for document in (
        client(),  # no token
        client(token_sha256="abc"),
        client(token_env="GK_TEST_UNSET_VARIABLE"),
        client(token_sha256=digest, colour="blue"),
        {"clients": {"c": {"token_sha256": digest, "purpose": "educational",
                           "requester": {"id": "x", "kind": "wizard"}}}},
        {"proxy": {"upstream": "http://x", "bogus": 1}},
        {"surprise": {}},
        {"fields": {"user": {"givenName": 3}}},
        {"fields": {"teachers": {"givenName": "name"}}},
        {"clients": {"c": same, "d": same}},  # two clients, one token
    ):  # fmt: skip
        with pytest.raises(GatekeeperError):
            ProxyConfig.from_dict(document)
    config = ProxyConfig.from_dict({"proxy": {"upstream": "http://sis:8600/"}})
    assert config.upstream_base() == "http://sis:8600" + PREFIX
    assert config.upstream_base("https://sis/api/v1p2") == "https://sis/api/v1p2"
    assert "demo-sis-token" not in repr(load_proxy_config(EXAMPLE))
    (tmp_path / "broken.toml").write_text("[proxy\n")
    with pytest.raises(GatekeeperError):
        load_proxy_config(tmp_path / "broken.toml")


def test_cli_proxy_in_front_of_cli_sis(tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_SIS_TOKEN": "demo-sis-token"}
    processes = []
    try:
        sis = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper", "demo-sis", "--port", "0", "--students", "60",
             "--db", str(tmp_path / "sis.sqlite")],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        processes.append(sis)
        assert sis.stdout is not None
        sis_url = re.search(r"(http://\S+v1p2)", sis.stdout.readline())
        assert sis_url
        proxy = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper", "--data-dir", str(tmp_path / "gk"), "proxy",
             "--config", str(EXAMPLE), "--upstream", sis_url[1], "--port", "0"],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        processes.append(proxy)
        assert proxy.stdout is not None
        proxy_url = re.search(r"(http://\S+v1p2)", proxy.stdout.readline())
        assert proxy_url
        response = httpx.get(
            proxy_url[1] + "/students/stu-00003",
            headers={"Authorization": "Bearer demo-nurse-token"},
            timeout=30,
        )
        assert response.status_code == 200 and "givenName" in response.json()["user"]
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
    verify = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "--data-dir", str(tmp_path / "gk"), "audit", "verify"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0 and "1/1 entries valid" in verify.stdout


def test_core_imports_none_of_the_proxy_dependencies() -> None:
    code = (
        "import sys, gatekeeper, gatekeeper.cli, gatekeeper.oneroster, gatekeeper.sis\n"
        "gatekeeper.cli._parser()\n"
        "gatekeeper.oneroster.load_proxy_config\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'starlette', 'httpx', 'uvicorn', 'ijson'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "module",
    ["gatekeeper.oneroster", "gatekeeper.oneroster.config", "gatekeeper.oneroster.mapping",
     "gatekeeper.oneroster.query", "gatekeeper.oneroster.stream", "gatekeeper.oneroster.proxy",
     "gatekeeper.sis", "gatekeeper.sis.data", "gatekeeper.sis.demo"],
)  # fmt: skip
def test_all_is_sorted_complete_and_examples_run(module: str) -> None:
    import doctest
    import importlib

    mod = importlib.import_module(module)

    def key(name: str) -> tuple[int, str]:  # ruff's RUF022 order, as in test_api.py
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(mod.__all__) == sorted(mod.__all__, key=key)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{module}.{name}"
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
