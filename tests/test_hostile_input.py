"""Hostile input, end to end: sizes, nesting, odd Unicode, SQL metacharacters,
path traversal and header smuggling, through the CLI, the guard API and the
real OneRoster proxy (uvicorn on loopback, raw sockets where an HTTP client
would tidy the request up). Every input: no crash, a clear error naming the
problem, a deny in the audit log where one is reachable, no permit it should
not get.

Parsing details (each limit, each key path) are in test_request.py, agency
spellings on both engines in test_hostile_names.py; the fuzz targets are in
fuzz/ (test_fuzz.py).
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gatekeeper import Gatekeeper
from gatekeeper.audit.show import iter_entries
from gatekeeper.engines import EmbeddedEngine, load_pack
from gatekeeper.errors import RequestError
from gatekeeper.oneroster.config import ProxyConfig
from gatekeeper.oneroster.proxy import ProxyHandle, start_proxy
from gatekeeper.request import MAX_REQUEST_BYTES, code_key, parse_request
from gatekeeper.sis.demo import DemoSISHandle, start_demo_sis
from tests.conftest import POLICIES_DIR
from tests.oneroster_support import PREFIX, SIS_TOKEN, STUDENTS, TOKENS, demo_db

__all__ = ["demo_db"]

REPO = Path(__file__).resolve().parent.parent
CASES = {
    case["id"]: case["request"]
    for case in map(
        json.loads, (REPO / "tests" / "cases" / "public.jsonl").read_text().splitlines()
    )
}
A10 = CASES["A10"]  # a judicial warrant, approved: a permit for a non-immigration requester


@pytest.fixture(scope="module")
def gk() -> Gatekeeper:
    return Gatekeeper(engine=EmbeddedEngine(load_pack(POLICIES_DIR)), allow_unaudited=True)


# --------------------------------------------------------------------------- size and nesting


def test_a_huge_mapping_is_refused_without_serializing_it() -> None:
    hugs = ({**A10, "purpose_text": "x" * 50_000_000}, {**A10, "task_force": ["ICE"] * 5_000_000})
    started = time.perf_counter()  # built first: only the refusals are timed
    for huge in hugs:
        with pytest.raises(RequestError, match=str(MAX_REQUEST_BYTES)) as error:
            parse_request(huge)
        assert error.value.path == ""
    assert time.perf_counter() - started < 1.0  # bounded work, not a 50 MB json.dumps


def test_cyclic_and_deep_mappings_are_request_errors() -> None:
    cyclic: dict[str, Any] = copy.deepcopy(A10)
    cyclic["legal_basis"]["named_students"].append(cyclic)
    with pytest.raises(RequestError):
        parse_request(cyclic)
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RequestError) as error:
        parse_request({**A10, "fields": deep})
    assert error.value.path.startswith("fields")


def test_deep_json_text_is_a_clear_error() -> None:
    for text in ("[" * 60_000, '{"a":' * 12_000, "[" * 30_000 + "]" * 30_000):
        with pytest.raises(RequestError, match="nested deeper") as error:
            parse_request(text)
        assert error.value.path == ""
    with pytest.raises(RequestError, match=str(MAX_REQUEST_BYTES)):  # the size is checked first
        parse_request("[" * 100_000 + "]" * 100_000)


def test_every_parsed_request_round_trips_even_at_the_limit() -> None:
    """Found by the round-trip property: to_dict() writes defaults out and
    ``Z`` as ``+00:00``, which took a request just under the limit over it."""
    base: dict[str, Any] = {**copy.deepcopy(CASES["A01"]), "legal_basis": {}, "consent": {}}
    base["as_of"] = "2026-04-02T10:00:00Z"
    base["task_force"] = ["y" * 4000] * 16
    compact = json.dumps(base, separators=(",", ":"))
    base["task_force"].append("w" * (MAX_REQUEST_BYTES - len(compact) - 20))
    raw = json.dumps(base, separators=(",", ":"))
    assert len(raw) <= MAX_REQUEST_BYTES
    with pytest.raises(RequestError, match="once normalized"):
        parse_request(raw)
    base["task_force"][-1] = base["task_force"][-1][:-1000]
    parsed = parse_request(json.dumps(base))
    assert parse_request(parsed.to_dict()) == parsed


def run_cli(
    *args: str, stdin: bytes | None = None, data_dir: Path
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper", "--data-dir", str(data_dir), *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def audit_decisions(data_dir: Path) -> list[dict[str, Any]]:
    done = run_cli("audit", "show", "--json", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    return [json.loads(line)["entry"] for line in done.stdout.decode().splitlines()]


def test_cli_refuses_oversized_and_deep_requests_and_audits_a_deny(tmp_path: Path) -> None:
    data_dir = tmp_path / "gk"
    # /dev/zero never ends: the CLI reads at most the limit + 1 byte.
    cases = [
        (("decide", "/dev/zero"), None, str(MAX_REQUEST_BYTES)),
        (("decide", "-"), b" " * (10 * MAX_REQUEST_BYTES), str(MAX_REQUEST_BYTES)),
        (("decide", "-"), b"[" * 60_000, "nested deeper"),
        (("decide", "-"), json.dumps({**A10, "request_id": "a\x00b"}).encode(), "request_id"),
        (("decide", "-"), json.dumps({**A10, "purpose": "\ud800"}).encode(), "surrogate"),
    ]
    for args, stdin, named in cases:
        done = run_cli(*args, stdin=stdin, data_dir=data_dir)
        assert done.returncode == 2, done.stderr
        assert named in done.stderr.decode(), done.stderr
        assert json.loads(done.stdout)["decision"] == "deny"
    entries = audit_decisions(data_dir)
    assert len(entries) == len(cases)
    assert {e["decision"] for e in entries} == {"deny"}


def test_guard_api_refuses_a_huge_request_as_an_audited_deny(tmp_path: Path) -> None:
    import gatekeeper

    with gatekeeper.open(data_dir=tmp_path) as opened:
        decision = opened.decide({**A10, "purpose_text": "x" * 10_000_000})
        assert decision.decision == "deny" and decision.reason == "invalid_request"
        assert decision.audit is not None
        audit = opened.audit
        assert audit is not None
        (entry,) = [e for _, e in iter_entries(audit.store) if e.get("kind") == "invalid_request"]
        assert entry["decision"] == "deny" and str(MAX_REQUEST_BYTES) in entry["error"]["message"]


# --------------------------------------------------------------------------- odd Unicode

# Found here: each of these left the immigration context and got a FERPA-9 permit.
SPOOFED_AGENCIES = [
    "\u0406CE",  # Cyrillic capital I
    "\u0456ce",  # Cyrillic small i
    "\u0399CE",  # Greek capital iota
    "I\u200bCE",  # zero-width space inside
    "I\u200dCE",  # zero-width joiner
    "I\u202eCE",  # right-to-left override
    "I\u00adCE",  # soft hyphen
    "\u00cdCE",  # accented (NFC)
    "I\u0301CE",  # accented (NFD)
    "IC\u0415",  # Cyrillic capital E
    "\u0406mmigration and Customs Enforcement",
    "Homeland S\u0435curity Investigations",  # Cyrillic small e
    "\u1d07\u0280\u1d0f",  # Latin small capitals: ERO
]


@pytest.mark.parametrize("agency", SPOOFED_AGENCIES)
def test_spoofed_agency_names_keep_the_immigration_context(gk: Gatekeeper, agency: str) -> None:
    request = copy.deepcopy(A10)
    request["requester"].update({"kind": "law_enforcement", "agency": agency})
    request["legal_basis"]["directs_lea"] = False
    decision = gk.decide(request)
    assert decision.decision == "deny" and decision.rules[0] == "IMM-12", decision.rules
    relayed = copy.deepcopy(request)
    relayed["requester"]["agency"] = "LAPD"
    relayed["on_behalf_of"] = agency
    assert gk.decide(relayed).decision == "deny"


@pytest.mark.parametrize(
    "court", ["\u0406mmigration Court", "Imm\u0456gration Court", "EO\u200bIR"]
)
def test_spoofed_court_names_fail_proc_01(gk: Gatekeeper, court: str) -> None:
    request = copy.deepcopy(A10)
    request["legal_basis"].update(
        {"type": "court_order", "signed_by": "judge", "issuing_court": court}
    )
    decision = gk.decide(request)
    assert decision.decision == "deny" and "PROC-01" in decision.rules, decision.rules


def test_code_key_folds_spellings_but_keeps_other_codes() -> None:
    assert {code_key(a) for a in SPOOFED_AGENCIES[:10]} == {"ICE"}
    assert code_key("Caf\u00e9 Ops") == code_key("Cafe\u0301 Ops") == "CAFE-OPS"  # NFC = NFD
    assert code_key("DHS-SEVP") == "DHS-SEVP" and code_key("LAUSD") == "LAUSD"
    assert code_key("\u200b\u202e") == ""


def test_odd_unicode_in_ids_is_refused_by_key_path_or_matched_exactly(gk: Gatekeeper) -> None:
    for bad, named in (("S\x00", "control character"), ("S\ud800", "lone surrogate")):
        with pytest.raises(RequestError, match=named) as error:
            parse_request({**A10, "student": {**A10["student"], "id": bad}})
        assert error.value.path == "student.id"
    # An invisible character in an id is another id: it never matches the one named.
    request = copy.deepcopy(A10)
    request["student"]["id"] = request["student"]["id"] + "\u200b"
    request["legal_basis"]["named_students"] = [
        {"id": n["id"]} for n in A10["legal_basis"]["named_students"] if "id" in n
    ] or [{"id": A10["student"]["id"]}]
    assert gk.decide(request).decision != "permit"


# --------------------------------------------------------------------------- the proxy


def example_config(upstream: str) -> ProxyConfig:
    document = tomllib.loads((REPO / "examples" / "proxy.toml").read_text(encoding="utf-8"))
    document["proxy"]["upstream"] = upstream
    document["proxy"]["upstream_token"] = SIS_TOKEN
    return ProxyConfig.from_dict(document)


@pytest.fixture(scope="module")
def sis(demo_db: Path) -> Iterator[DemoSISHandle]:
    with start_demo_sis(db=demo_db, students=STUDENTS, token=SIS_TOKEN) as handle:
        yield handle


@pytest.fixture(scope="module")
def proxy(sis: DemoSISHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyHandle]:
    data_dir = tmp_path_factory.mktemp("hostile-proxy")
    with start_proxy(example_config(sis.url), data_dir=data_dir) as handle:
        yield handle


def raw_exchange(handle: ProxyHandle, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes to the proxy's uvicorn; the status, headers and body of the first answer.

    A server that refuses a request before reading all of it (an oversized
    head: 431) closes the connection with bytes still unread, and the kernel
    then resets it: the answer already received stands, the reset ends it
    (and may cut the sending short)."""
    with socket.create_connection((handle.server.host, handle.server.port), timeout=30) as sock:
        data = b""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            if b"\r\n\r\n" not in data:
                raise  # reset before a whole answer arrived: no status to check
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def get(path: str, *headers: str, extra: bytes = b"") -> bytes:
    lines = [f"GET {PREFIX}{path} HTTP/1.1", "Host: proxy", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + extra


def bearer(who: str) -> str:
    return f"Authorization: Bearer {TOKENS[who]}"


def decisions(handle: ProxyHandle) -> list[dict[str, Any]]:
    audit = handle.gatekeeper.audit
    assert audit is not None
    return [entry for _, entry in iter_entries(audit.store) if "decision_id" in entry]


SMUGGLED = {
    "two Authorization headers": get("/students/stu-00001", bearer("ice"), bearer("teacher")),
    "Transfer-Encoding and Content-Length": get(
        "/students/stu-00001",
        bearer("teacher"),
        "Content-Length: 4",
        "Transfer-Encoding: chunked",
        extra=b"0\r\n\r\n",
    ),
    "a body on a GET": get(
        "/students/stu-00001", bearer("teacher"), "Content-Length: 5", extra=b"x" * 5
    ),
    "chunked GET hiding a second request": get(
        "/students/stu-00001",
        bearer("teacher"),
        "Transfer-Encoding: chunked",
        extra=b"0\r\n\r\n"
        + get("/demographics/stu-00001?fields=countryOfBirthCode", bearer("ice")),
    ),
    "CR in a header value": get("/students/stu-00001", "X-Note: a\rAuthorization: Bearer x"),
    "LF folding": get("/students/stu-00001", "X-Note: a", " " + bearer("teacher")),
    "NUL in a header value": get("/students/stu-00001", bearer("teacher") + "\x00"),
    "an oversized header": get("/students/stu-00001", bearer("teacher"), "X-Pad: " + "a" * 70_000),
    "a space before the colon": get("/students/stu-00001", "Authorization : Bearer x"),
}


# uvicorn (h11) refuses malformed heads with 400 itself; an obs-folded line is
# read as part of the header before it (so no token at all: 401).
SMUGGLED_STATUS = {"LF folding": 401, "an oversized header": 431}


@pytest.mark.parametrize("name", sorted(SMUGGLED))
def test_smuggling_attempts_are_4xx_and_never_reach_the_sis(
    proxy: ProxyHandle, sis: DemoSISHandle, name: str
) -> None:
    before = sis.stats.count
    status, _, body = raw_exchange(proxy, SMUGGLED[name])
    assert status == SMUGGLED_STATUS.get(name, 400), (status, body)
    assert sis.stats.count == before
    with socket.create_connection((proxy.server.host, proxy.server.port), timeout=30):
        pass  # still serving


def test_identity_headers_the_proxy_did_not_set_never_reach_the_sis(
    proxy: ProxyHandle, sis: DemoSISHandle
) -> None:
    """Hop-by-hop tricks and forged identity headers: the decision and the
    forwarded request use only the token's client; the SIS sees the proxy's credential."""
    forged = [
        "Connection: close, Authorization, X-Gatekeeper-Decision",
        "X-Gatekeeper-Decision: permit; id=00000000000000000000000000000000",
        "X-Forwarded-User: principal",
        "X-Remote-User: E0001",
        "Forwarded: for=127.0.0.1;by=gatekeeper",
        "Cookie: session=principal",
    ]
    before = sis.stats.count
    status, headers, _ = raw_exchange(proxy, get("/students/stu-00001", bearer("ice"), *forged))
    assert status == 403 and headers["x-gatekeeper-decision"].startswith("deny; ")
    assert sis.stats.count == before
    status, headers, _ = raw_exchange(proxy, get("/students/stu-00001", bearer("teacher"), *forged))
    assert status == 200 and headers["x-gatekeeper-decision"].startswith("permit; ")
    (served,) = sis.stats.recent(1)
    assert served.authorization  # the proxy's own SIS credential, not the teacher's token
    entry = decisions(proxy)[-1]
    assert entry["policy_input"]["requester"]["id"] == "E1001"  # the teacher, whatever the headers


class Recorder(BaseHTTPRequestHandler):
    """An upstream that records the headers it is sent and answers one user."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        Recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"user": {"sourcedId": "stu-1", "givenName": "Ana"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_only_the_proxys_own_headers_are_forwarded(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        upstream = f"http://127.0.0.1:{server.server_address[1]}"
        with start_proxy(example_config(upstream), data_dir=tmp_path) as handle:
            Recorder.seen.clear()
            status, _, body = raw_exchange(
                handle,
                get(
                    "/students/stu-1",
                    bearer("teacher"),
                    "X-Forwarded-User: principal",
                    "X-Gatekeeper-Decision: permit",
                    "Cookie: a=b",
                    "X-Request-Id: req-42",
                    "Connection: close, X-Request-Id",
                ),
            )
            assert status == 200, body
    finally:
        server.shutdown()
        server.server_close()
    (seen,) = Recorder.seen
    assert seen["authorization"] == f"Bearer {SIS_TOKEN}"
    assert set(seen) <= {"host", "accept", "accept-encoding", "connection", "user-agent",
                         "x-request-id", "authorization", "x-gatekeeper-decision"}  # fmt: skip
    assert seen["x-request-id"] == "req-42"
    assert seen["x-gatekeeper-decision"] != "permit"  # the decision id the proxy made


@pytest.mark.parametrize(
    "path",
    [
        "/classes/..%2Fstudents",
        "/classes/%2e%2e/students/stu-00001",
        "/classes/cls-1%2F..%2F..%2Fstudents",
        "/schools/./students",
        "/students/%2e%2e",
        "/students/stu-00001/..",
        "/students/..%5Cdemographics",
        "//students",
        "/students/",
        "/Students/stu-00001",
    ],
)
def test_path_traversal_is_404_or_decided_never_forwarded_undecided(
    proxy: ProxyHandle, sis: DemoSISHandle, path: str
) -> None:
    before = sis.stats.count
    status, headers, _ = raw_exchange(proxy, get(path, bearer("ice")))
    if status == 404 and "x-gatekeeper-decision" not in headers:
        assert sis.stats.count == before
    else:  # a legal id that looks odd: decided (and, for ICE, refused)
        assert status in (400, 403), status
        assert headers["x-gatekeeper-decision"].startswith("deny; ")
        assert sis.stats.count == before


@pytest.mark.parametrize(
    "path",
    [
        "/students/stu-00001%27%20OR%20%271%27%3D%271",
        "/students/stu-00001%22%3B%20DROP%20TABLE%20records%3B--",
        "/users/%25",
        "/schools/sch-01%27--/students",
    ],
)
def test_sql_metacharacters_in_ids_are_exact_matches(
    proxy: ProxyHandle, sis: DemoSISHandle, path: str
) -> None:
    status, headers, _ = raw_exchange(proxy, get(path, bearer("principal")))
    assert status in (403, 404), status  # no such record (or not released); never a 500
    assert "x-gatekeeper-decision" in headers  # decided and audited first
    status, _, body = raw_exchange(proxy, get("/students/stu-00001", bearer("principal")))
    assert status == 200 and json.loads(body)["user"]["sourcedId"] == "stu-00001"


def test_sql_metacharacters_in_filters(proxy: ProxyHandle) -> None:
    value = "x%22)%3B DROP TABLE records%3B--"
    status, _, body = raw_exchange(
        proxy,
        get(
            f"/students?filter=familyName%3D%27{value}%27".replace(" ", "%20"), bearer("principal")
        ),
    )
    assert status in (200, 403), body
    if status == 200:
        assert json.loads(body) == {"users": []}
    status, _, body = raw_exchange(
        proxy, get("/students?filter=familyName%3D%27a%27%27%27", bearer("principal"))
    )
    assert status == 400 and b"filter" in body  # a quote inside a value does not parse


def test_control_characters_in_a_path_id_are_an_audited_400(proxy: ProxyHandle) -> None:
    before = len(decisions(proxy))
    status, headers, body = raw_exchange(proxy, get("/students/a%00b", bearer("teacher")))
    assert status == 400 and b"student.id" in body, body
    assert headers["x-gatekeeper-decision"].startswith("deny; ")
    assert len(decisions(proxy)) == before + 1


def test_sql_metacharacters_through_the_sqlalchemy_source(tmp_path: Path) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    import gatekeeper
    from gatekeeper.adapters.sqlalchemy import guarded_source

    db = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'sis.sqlite'}")
    students = sqlalchemy.Table(
        "students",
        sqlalchemy.MetaData(),
        sqlalchemy.Column("sid", sqlalchemy.String, primary_key=True),
        sqlalchemy.Column("math_grade", sqlalchemy.String),
    )
    students.metadata.create_all(db)
    with db.begin() as conn:
        conn.execute(students.insert().values(sid="S1", math_grade="A"))
    teacher = {
        "channel": "internal",
        "requester": {"id": "E1", "kind": "district_staff", "role": "teacher_of_record",
                      "identity_verified": True},
        "purpose": "educational",
        "fields": ["grades"],
    }  # fmt: skip
    with gatekeeper.open(data_dir=tmp_path / "gk") as opened:
        records = guarded_source(
            opened, db, students, id_column="sid", field_map={"math_grade": "grades"}
        )
        assert records.get({**teacher, "student": {"id": "S1"}}) == {"math_grade": "A"}
        for hostile in ("S1' OR '1'='1", "S1'; DROP TABLE students;--", "%", "S_", "S1\t"):
            found = records.get({**teacher, "student": {"id": hostile}})
            assert not found, (hostile, found)  # bound as a value: no record, never S1's
        assert records.get({**teacher, "student": {"id": "S1"}}) == {"math_grade": "A"}


# --------------------------------------------------------------------------- configured paths


def test_paths_are_the_operators_and_request_data_never_names_a_file(tmp_path: Path) -> None:
    """docs/hostile-input.md: paths from the command line and configuration
    are resolved by the OS as given (``..`` and symlinks followed, like any
    Unix tool); nothing from a request ever becomes part of a path."""
    data_dir = tmp_path / "a" / ".." / "gk"
    request = {**A10, "request_id": "../../../escape", "purpose_text": "/etc/passwd"}
    done = run_cli("decide", "-", stdin=json.dumps(request).encode(), data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "gk" / "audit.sqlite").exists()
    real = tmp_path / "tiles-real"
    real.mkdir()
    (tmp_path / "tiles-link").symlink_to(real)
    done = run_cli("audit", "export", str(tmp_path / "tiles-link" / "x" / ".."), data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    assert (real / "checkpoint").exists()
    names = {p.name for p in tmp_path.rglob("*")}
    assert "escape" not in names and not (tmp_path.parent / "escape").exists()
