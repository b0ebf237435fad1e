"""The read-only web view (``gatekeeper ui``), for real: a log built by deciding the
public cases, the view served by uvicorn on a loopback ephemeral port and read
with httpx. Its numbers are checked against the log read here straight from
SQLite, its searches against the cases' expected decisions, its inclusion
proofs recomputed here with hashlib (not with gatekeeper's Merkle code); a
tampered copy of the log shows problems; a view configured as served beyond
loopback needs sign-in; no page carries a script or fetches from elsewhere;
hostile strings are escaped; and headless Chromium renders the overview and an
entry page (DOM and a screenshot)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import gatekeeper
from gatekeeper._serving import ServerHandle, start_in_thread
from gatekeeper.config import load_settings
from gatekeeper.ui import LogView, PasswordHash, UiConfig, UiError, create_app, load_password
from tests.chromium import browse, screenshot_is_a_page
from tests.conftest import REPO_ROOT

CASES = [
    json.loads(line)
    for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    if line.strip()
]
PASSWORD = "correct horse battery staple"
HOSTILE_AGENCY = '<script>alert("agency")</script><img src=x onerror=alert(1)>'
HOSTILE_REASON = '</pre></td></tr></table><h1 id="pwned">x</h1><script>alert(2)</script>'


def build_log(data_dir: Path, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decide each request through gatekeeper.open(data_dir=...).decide."""
    with gatekeeper.open(data_dir=data_dir) as gk:
        return [gk.decide(request).to_dict() for request in requests]


def serve(data_dir: Path, config: UiConfig | None = None) -> tuple[LogView, ServerHandle]:
    view = LogView.open(load_settings(data_dir=data_dir))
    return view, start_in_thread(create_app(view, config), on_stop=view.close)


def sqlite_head(data_dir: Path) -> tuple[int, str, int, bytes]:
    """(head size, origin, checkpoint size, checkpoint root) read straight from SQLite."""
    db = sqlite3.connect(f"file:{data_dir / 'audit.sqlite'}?mode=ro", uri=True)
    try:
        (size,) = db.execute("SELECT size FROM head WHERE id = 1").fetchone()
        (note,) = db.execute("SELECT note FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        db.close()
    origin, cp_size, root = note.split("\n")[:3]
    return size, origin, int(cp_size), base64.b64decode(root)


def sqlite_entry(data_dir: Path, index: int) -> bytes:
    db = sqlite3.connect(f"file:{data_dir / 'audit.sqlite'}?mode=ro", uri=True)
    try:
        (data,) = db.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
    finally:
        db.close()
    return bytes(data)


def by_id(page: str, element_id: str) -> str:
    found = re.search(rf'id="{re.escape(element_id)}"[^>]*>(.*?)</', page, re.S)
    assert found, f"no element #{element_id}"
    return html.unescape(found.group(1)).strip()


def listed(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="row-(\d+)"', page)]


def files_of(data_dir: Path) -> dict[str, str]:
    """Each file's digest. SQLite's WAL index (``-shm``) is left out: a reader of a WAL
    database maps it, read-only or not; an empty ``-wal`` is no write either."""
    return {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file()
        and not p.name.endswith("-shm")
        and not (p.name.endswith("-wal") and p.stat().st_size == 0)
    }


@dataclass
class Served:
    data_dir: Path
    url: str
    view: LogView


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data_dir = tmp_path_factory.mktemp("ui-log")
    decisions = build_log(data_dir, [c["request"] for c in CASES])
    for index, (case, decision) in enumerate(zip(CASES, decisions, strict=True)):
        assert decision["decision"] == case["expect"]["decision"], case["id"]
        assert decision["rules"] == case["expect"]["rules"], case["id"]
        assert decision["audit"]["index"] == index
    yield data_dir


@pytest.fixture(scope="module")
def ui(built: Path) -> Iterator[Served]:
    before = files_of(built)
    view, handle = serve(built)
    with handle:
        yield Served(built, handle.url, view)
    # Strictly read-only: every page was served and the data directory is as it was.
    assert files_of(built) == before


# -- the overview ----------------------------------------------------------------------


def test_overview_states_the_log_checkpoint_and_counts(ui: Served) -> None:
    size, origin, cp_size, root = sqlite_head(ui.data_dir)
    assert size == cp_size == len(CASES)
    response = httpx.get(ui.url + "/")
    assert response.status_code == 200
    page = response.text
    assert by_id(page, "checkpoint-origin") == origin
    assert by_id(page, "checkpoint-size") == str(size)
    assert by_id(page, "checkpoint-root") == base64.b64encode(root).decode()
    assert by_id(page, "checkpoint-root-hex") == root.hex()
    assert by_id(page, "verify-status") == "✔ The audit log verified"
    assert by_id(page, "verify-valid") == f"{size}/{size}"
    assert 'id="problems"' not in page
    assert by_id(page, "count-entries") == str(size)
    for decision in ("permit", "deny", "escalate"):
        expected = sum(c["expect"]["decision"] == decision for c in CASES)
        assert by_id(page, f"count-{decision}") == str(expected), decision
    students = {(c["request"].get("student") or {}).get("id") for c in CASES} - {None}
    assert by_id(page, "count-students") == str(len(students))
    # On demand: /verify runs the verifier again, then shows the overview.
    again = httpx.get(ui.url + "/verify", follow_redirects=True)
    assert again.status_code == 200 and "(just now)" in again.text
    assert by_id(again.text, "verify-valid") == f"{size}/{size}"


# -- search ------------------------------------------------------------------------------


def search(ui: Served, **params: str) -> str:
    response = httpx.get(ui.url + "/entries", params=params)
    assert response.status_code == 200, response.text[:500]
    return response.text


def expected(predicate: Any) -> list[int]:
    return [i for i, case in enumerate(CASES) if predicate(case)]


@pytest.mark.parametrize("decision", ["permit", "deny", "escalate"])
def test_search_by_decision(ui: Served, decision: str) -> None:
    page = search(ui, decision=decision, per_page="200")
    want = expected(lambda c: c["expect"]["decision"] == decision)
    assert listed(page) == want
    assert by_id(page, "result-total") == str(len(want))


def test_search_by_rule_student_requester_agency_and_range(ui: Served) -> None:
    assert listed(search(ui, rule="IMM-01")) == expected(lambda c: "IMM-01" in c["expect"]["rules"])
    assert listed(search(ui, rule="CONS-01")) == expected(
        lambda c: "CONS-01" in c["expect"]["rules"]
    )
    assert listed(search(ui, student="S010")) == expected(
        lambda c: (c["request"].get("student") or {}).get("id") == "S010"
    )
    requester = CASES[3]["request"]["requester"]["id"]
    assert listed(search(ui, requester=requester)) == expected(
        lambda c: c["request"]["requester"]["id"] == requester
    )
    both = listed(search(ui, agency="ice-hsi", decision="deny"))
    assert both == expected(
        lambda c: (
            c["request"]["requester"].get("agency") == "ICE-HSI"
            and c["expect"]["decision"] == "deny"
        )
    )
    assert both
    assert listed(search(ui, first="5", last="9")) == [5, 6, 7, 8, 9]
    assert listed(search(ui, since="2000-01-01", until="2999-12-31")) == list(range(len(CASES)))
    assert listed(search(ui, until="2000-01-01")) == []
    # Paginated: 25 a page, in log order, no entry twice.
    first, second = search(ui, per_page="25"), search(ui, per_page="25", page="2")
    assert listed(first) + listed(second) == list(range(len(CASES)))
    assert "page 2 of 2" in second
    bad = httpx.get(ui.url + "/entries", params={"first": "x"})
    assert bad.status_code == 400 and "a whole number" in bad.text


# -- one entry and its proof -------------------------------------------------------------


def rfc9162_root(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    """RFC 9162 2.1.3.2, written here again: the root an inclusion proof implies."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        assert sn != 0, "proof too long"
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0, "proof too short"
    return r


@pytest.mark.parametrize("index", [0, 5, 17, 31])
def test_entry_page_inclusion_proof_verifies_independently(ui: Served, index: int) -> None:
    _size, _origin, cp_size, root = sqlite_head(ui.data_dir)
    response = httpx.get(f"{ui.url}/entries/{index}")
    assert response.status_code == 200
    page = response.text
    assert by_id(page, "proof-status") == "✔ proof verified"
    data = sqlite_entry(ui.data_dir, index)
    leaf = hashlib.sha256(b"\x00" + data).digest()
    assert by_id(page, "leaf-hash") == leaf.hex()
    assert by_id(page, "proof-size") == str(cp_size)
    assert by_id(page, "proof-root") == root.hex()
    proof = [bytes.fromhex(h) for h in re.findall(r'id="proof-\d+">([0-9a-f]{64})<', page)]
    assert len(proof) == (cp_size - 1).bit_length()  # 32 leaves: 5 levels
    assert rfc9162_root(index, cp_size, leaf, proof) == root
    # The JSON shown is the entry, every value as logged.
    assert json.loads(by_id(page, "entry-json")) == json.loads(data)
    assert by_id(page, "entry-bytes") == data.decode()
    assert by_id(page, "signature-status") == "valid"
    assert httpx.get(f"{ui.url}/entries/{cp_size}").status_code == 404


# -- the reports -------------------------------------------------------------------------


def test_reports_are_rendered_from_the_verified_checkpoint(ui: Served) -> None:
    _size, _origin, cp_size, root = sqlite_head(ui.data_dir)
    index = httpx.get(ui.url + "/reports").text
    for link in ('href="/reports/activity"', 'href="/reports/enforcement"',
                 'action="/reports/disclosures"'):  # fmt: skip
        assert link in index
    for path in ("/reports/activity", "/reports/enforcement",
                 "/reports/disclosures?student=S010"):  # fmt: skip
        response = httpx.get(ui.url + path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        assert f'id="checkpoint-root">{base64.b64encode(root).decode()}<' in page, path
        assert f'id="checkpoint-size">{cp_size}<' in page, path
        assert "The audit log verified" in page, path
    record = httpx.get(ui.url + "/reports/disclosures", params={"student": "S010"}).text
    assert "S010" in record
    data = httpx.get(ui.url + "/reports/activity", params={"format": "json"}).json()
    assert data["checkpoint"]["size"] == cp_size and data["summary"]["decisions"] == cp_size
    assert httpx.get(ui.url + "/reports/disclosures").status_code == 400
    assert httpx.get(ui.url + "/reports/nothing").status_code == 404


# -- strictly read-only, no script, nothing from elsewhere ----------------------------------

PAGES = ["/", "/entries", "/entries?decision=deny", "/entries/3", "/reports",
         "/reports/activity", "/reports/enforcement", "/reports/disclosures?student=S010",
         "/no-such-page"]  # fmt: skip


def test_pages_have_no_script_no_external_asset_and_no_cache(ui: Served) -> None:
    for path in PAGES:
        response = httpx.get(ui.url + path)
        assert response.status_code in (200, 404), path
        body = response.text
        assert "<script" not in body.lower(), path
        assert not re.search(r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//""", body), path
        assert "@import" not in body and not re.search(r"url\(\s*['\"]?(?!#)", body), path
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path
    # Only GET reads; nothing else is routed (the sign-in form is not served on loopback).
    assert httpx.post(ui.url + "/").status_code == 405
    assert httpx.delete(ui.url + "/entries/3").status_code == 405
    assert httpx.post(ui.url + "/verify").status_code == 405
    # A page of another site reaching loopback by DNS rebinding is refused.
    assert httpx.get(ui.url + "/", headers={"Host": "evil.example"}).status_code == 421
    # The store cannot be written through the view, even from Python.
    with pytest.raises(gatekeeper.GatekeeperError, match="read-only"):
        ui.view.store.append_batch([(b"{}", b"")], lambda size, root: "")


def test_a_tampered_store_shows_its_problems(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(built, copy)
    entry = json.loads(sqlite_entry(copy, 7))
    entry["decision"] = "permit"  # history rewritten: a refusal made a disclosure
    forged = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    db = sqlite3.connect(copy / "audit.sqlite")
    with db:
        db.execute("UPDATE entries SET data = ? WHERE idx = 7", (forged,))
        db.execute("UPDATE entries SET data = ? WHERE idx = 9", (b"<not json>",))
    db.close()
    _view, handle = serve(copy)
    with handle:
        page = httpx.get(handle.url + "/").text
        assert by_id(page, "verify-status") == "✘ The audit log did NOT verify"
        assert 'id="problems"' in page
        problems = re.search(r'id="problems">(.*?)</section>', page, re.S)
        assert problems and "entry 7:" in problems.group(1)
        assert "entry 9: not JSON" in problems.group(1)
        valid, total = map(int, by_id(page, "verify-valid").split("/"))
        assert total == len(CASES) and valid < total
        proof = httpx.get(handle.url + "/entries/7").text
        assert by_id(proof, "proof-status") == "✘ proof not verified"
        assert "inclusion proof fails" in by_id(proof, "proof-error")
        # The damaged entries can still be found and read.
        damaged = httpx.get(handle.url + "/entries", params={"first": "7", "last": "9"}).text
        assert listed(damaged) == [7, 8, 9] and "(not a JSON object)" in damaged
        denials = httpx.get(handle.url + "/entries", params={"decision": "deny"})
        assert denials.status_code == 200 and 9 not in listed(denials.text)
        assert "&lt;not json&gt;" in httpx.get(handle.url + "/entries/9").text
        reported = httpx.get(handle.url + "/reports/activity").text
        assert "The audit log did NOT verify" in reported


# -- sign-in off loopback ------------------------------------------------------------------


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


def test_beyond_loopback_sign_in_is_required(built: Path) -> None:
    with pytest.raises(UiError, match="no password is configured"):
        UiConfig.for_host("0.0.0.0")
    assert UiConfig.for_host("0.0.0.0", PasswordHash.create(PASSWORD)).sign_in
    assert not UiConfig.for_host("127.0.0.1").sign_in and not UiConfig.for_host("::1").sign_in
    config = UiConfig(sign_in=True, password=PasswordHash.create(PASSWORD))
    _view, handle = serve(built, config)
    with handle, httpx.Client(base_url=handle.url) as client:
        # Without a session: redirected to sign in (GET), 401 otherwise.
        for path in ("/", "/entries?student=S010", "/entries/3", "/reports/activity"):
            response = client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/signin?next=")
            assert "S010" not in response.text and "checkpoint" not in response.text
        assert client.post("/signout").status_code == 401
        form = client.get("/signin", headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in form.headers["set-cookie"]  # over https: a Secure cookie
        client.cookies.clear()
        form = client.get("/signin", params={"next": "/entries/3"})
        cookie = form.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        assert "Secure" not in cookie  # plain http on loopback, as in this test
        assert "<script" not in form.text.lower()
        token = csrf_of(form.text)
        origin = {"Origin": handle.url}
        # A wrong password fails, and no session cookie is set.
        wrong = client.post(
            "/signin", data={"password": "not it", "csrf": token, "next": "/"}, headers=origin
        )
        assert wrong.status_code == 401 and "gk_ui_session" not in wrong.headers.get(
            "set-cookie", ""
        )
        assert client.get("/").status_code == 303
        # Without the form's token, or from another site: refused, even with the password.
        assert client.post("/signin", data={"password": PASSWORD}).status_code == 403
        assert (
            client.post(
                "/signin",
                data={"password": PASSWORD, "csrf": token},
                headers={"Origin": "http://evil.example"},
            ).status_code
            == 403
        )
        # The right password: a session, back where the reader was going.
        right = client.post(
            "/signin",
            data={"password": PASSWORD, "csrf": token, "next": "/entries/3"},
            headers=origin,
        )
        assert right.status_code == 303 and right.headers["location"] == "/entries/3"
        session = right.headers["set-cookie"]
        assert session.startswith("gk_ui_session=")
        assert "HttpOnly" in session and "samesite=strict" in session.lower()
        page = client.get("/entries/3")
        assert page.status_code == 200 and "proof verified" in page.text
        assert client.get("/").status_code == 200
        # An open redirect is not possible through `next`.
        client.cookies.clear()
        form = client.get("/signin")
        away = client.post(
            "/signin",
            data={"password": PASSWORD, "csrf": csrf_of(form.text), "next": "//evil.example/"},
            headers=origin,
        )
        assert away.headers["location"] == "/"
        # Signing out ends the session for good (the old cookie no longer works).
        old = client.cookies.get("gk_ui_session")
        signed_in = client.get("/").text
        out = client.post("/signout", data={"csrf": csrf_of(signed_in)}, headers=origin)
        assert out.status_code == 303
        client.cookies.set("gk_ui_session", old or "")
        assert client.get("/").status_code == 303


def test_passwords_are_kept_only_as_hashes(tmp_path: Path) -> None:
    stored = PasswordHash.create(PASSWORD)
    line = str(stored)
    assert PASSWORD not in line and line.startswith("scrypt$16384$8$1$")
    assert PasswordHash.parse(line).verify(PASSWORD) and not stored.verify(PASSWORD + " ")
    salt = os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, 600_000)
    encoded = [base64.b64encode(v).decode() for v in (salt, key)]
    pbkdf2 = "$".join(["pbkdf2-sha256", "600000", *encoded])
    assert PasswordHash.parse(pbkdf2).verify(PASSWORD)
    file = tmp_path / "ui-password"
    file.write_text(PASSWORD + "\n")  # clear text on disk: refused
    with pytest.raises(UiError, match="not a password hash"):
        load_password(file, environ={})
    with pytest.raises(UiError, match="too weak"):
        PasswordHash.parse("scrypt$1024$8$1$" + line.split("$", 4)[4])
    env = {"GATEKEEPER_UI_PASSWORD": PASSWORD}
    from_env = load_password(None, environ=env)
    assert from_env is not None and from_env.verify(PASSWORD) and PASSWORD not in repr(from_env)
    assert load_password(None, environ={}) is None
    # The command prints a hash for --password-file, and refuses to serve off loopback
    # without a password, before opening anything.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_UI_")}
    environ["PYTHONPATH"] = str(REPO_ROOT)
    made = subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", "ui", "--hash-password"],
        input=PASSWORD + "\n", capture_output=True, text=True, env=environ, timeout=60,
        check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    file.write_text(made.stdout)
    hashed = load_password(file, environ={})
    assert hashed is not None and hashed.verify(PASSWORD)
    refused = subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", "ui", "--host", "0.0.0.0", "--port", "0",
         "--data-dir", str(tmp_path / "nowhere")],
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "no password is configured" in refused.stderr
    assert not (tmp_path / "nowhere").exists()


# -- hostile strings -----------------------------------------------------------------------


def test_hostile_strings_are_shown_as_text(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("ui-hostile")
    request = {
        "request_id": "H1", "as_of": "2026-04-02T10:00:00-07:00", "channel": "phone",
        "requester": {"id": "H-officer", "kind": "law_enforcement", "agency": HOSTILE_AGENCY,
                      "identity_verified": True},
        "purpose": "criminal_investigation", "purpose_text": HOSTILE_REASON,
        "student": {"id": "S-H", "age": 12}, "fields": ["home_address"],
    }  # fmt: skip
    assert [d["decision"] for d in build_log(data_dir, [request])] == ["deny"]
    _view, handle = serve(data_dir)
    with handle:
        for path in ("/entries?student=S-H", "/entries/0", "/reports/disclosures?student=S-H",
                     f"/entries?agency={HOSTILE_AGENCY}"):  # fmt: skip
            response = httpx.get(handle.url + path)
            assert response.status_code == 200, path
            page = response.text
            assert "<script" not in page and "<img" not in page and 'id="pwned"' not in page
            assert "&lt;script&gt;alert(" in page, path
        entry = httpx.get(handle.url + "/entries/0").text
        assert json.loads(by_id(entry, "entry-json"))["purpose_text"] == HOSTILE_REASON


# -- headless Chromium -----------------------------------------------------------------------


@pytest.mark.parametrize("page", ["overview", "entry"])
def test_pages_in_headless_chromium(ui: Served, tmp_path: Path, page: str) -> None:
    _size, _origin, _cp_size, root = sqlite_head(ui.data_dir)
    url = ui.url + ("/" if page == "overview" else "/entries/5")
    dom = browse(url, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout.decode()
    if page == "overview":
        assert f'id="checkpoint-root">{base64.b64encode(root).decode()}<' in text
        assert "The audit log verified" in text
    else:
        assert f'id="proof-root">{root.hex()}<' in text
        assert "proof verified" in text
    assert "<script" not in text
    shot = tmp_path / f"{page}.png"
    taken = browse(url, tmp_path, f"--screenshot={shot}", "--window-size=1280,900")
    assert taken.returncode == 0, taken.stderr[-2000:]
    screenshot_is_a_page(shot, (1280, 900), flat_below=0.9)
    if page == "overview":
        # The verdict banner is green: a verified log, seen at the pixel level.
        from PIL import Image

        with Image.open(shot) as image:
            r, g, b = image.convert("RGB").getpixel((70, 130))[:3]
        assert g > r and g > b, (r, g, b)


# -- the public surface ------------------------------------------------------------------------


def test_all_is_sorted_and_complete_and_the_example_runs() -> None:
    import doctest

    import gatekeeper.ui as mod

    def key(name: str) -> tuple[int, str]:  # ruff's RUF022 order
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(mod.__all__) == sorted(mod.__all__, key=key)
    for name in mod.__all__:
        assert hasattr(mod, name), name
    assert doctest.testmod(mod).failed == 0


def test_the_command_line_imports_no_web_framework() -> None:
    code = (
        "import sys, gatekeeper.cli; gatekeeper.cli._parser(); "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'jinja2') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env=env, timeout=60, check=True
    )
    assert done.stdout.decode().strip() == "[]"
