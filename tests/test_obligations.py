"""Obligations for real: the outbox in the entry's transaction (SQLite and a real
PostgreSQL), webhook retries against a real HTTP server, e-mail through a real
SMTP server (aiosmtpd, with and without STARTTLS), at-least-once delivery across
a dispatcher killed with SIGKILL, acknowledgments as signed audit entries, the
release of a held permit, and the CLI."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import http.server
import json
import os
import random
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import gatekeeper
from gatekeeper import AccessDenied, Gatekeeper, ReleaseHeld
from gatekeeper.audit.keys import KeyStore
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.verify import verify_log
from gatekeeper.decision import BLOCKING_OBLIGATIONS, Effect
from gatekeeper.engines import EmbeddedEngine, load_pack
from gatekeeper.errors import GatekeeperError
from gatekeeper.obligations import (
    DispatchRunner,
    EmailDispatcher,
    ObligationError,
    RetryPolicy,
    WebhookDispatcher,
    parse_obligation_settings,
    verify_signature,
)
from gatekeeper.redact import Redactor
from tests.conftest import POLICIES_DIR, REPO_ROOT
from tests.opa_server import LOOPBACK, free_port

CASES = {
    json.loads(line)["id"]: json.loads(line)["request"]
    for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    if line.strip()
}
COURT_ORDER = "A13"  # FERPA-9 permit: REDACT_OUT_OF_SCOPE, NOTIFY_PARENT_PRE⛔, LOG_9932, …
UNVERIFIED = "A32"  # GEN-02 escalate: VERIFY_IDENTITY⛔, NOTIFY_LEGAL
ICE_AT_DESK = "A04"  # IMM-01 deny
BULK_VENDOR = "A23"  # FERPA-1V bulk permit: REDACT_OUT_OF_SCOPE⛔ (the SIS scopes the rows)
ORIGIN = "test.example/obligations"
SECRET = b"webhook-test-secret"


@pytest.fixture(scope="module")
def engine() -> EmbeddedEngine:
    return EmbeddedEngine(load_pack(POLICIES_DIR))


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def log(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditLog]:
    if store_kind == "sqlite":
        with AuditLog.open_sqlite(tmp_path, origin=ORIGIN, timeout=1.0) as opened:
            yield opened
        return
    from gatekeeper.audit.postgres import PostgresStore

    dsn = request.getfixturevalue("pg_dsn")
    store = PostgresStore(dsn, lock_timeout=0.5)
    with AuditLog(store, KeyStore(tmp_path, origin=ORIGIN), timeout=1.0) as opened:
        opened.dsn = dsn  # type: ignore[attr-defined]
        yield opened


@pytest.fixture
def gk(engine: EmbeddedEngine, log: AuditLog) -> Gatekeeper:
    return Gatekeeper(engine=engine, audit=log)


@pytest.fixture
def sqlite_log(tmp_path: Path) -> Iterator[AuditLog]:
    with AuditLog.open_sqlite(tmp_path, origin=ORIGIN, timeout=1.0) as opened:
        yield opened


@pytest.fixture
def sqlite_gk(engine: EmbeddedEngine, sqlite_log: AuditLog) -> Gatekeeper:
    return Gatekeeper(engine=engine, audit=sqlite_log)


def rows_of(gk: Gatekeeper, decision_id: str) -> dict[str, Any]:
    return {r.code: r for r in gk.obligations.list(decision_id=decision_id)}


def entry_at(log: AuditLog, index: int) -> dict[str, Any]:
    (stored,) = log.store.read_entries(index, index + 1)
    value: dict[str, Any] = json.loads(stored.data)
    return value


def test_the_pack_lists_the_blocking_obligations_of_rules_md() -> None:
    data = json.loads((POLICIES_DIR / "catalog" / "data.json").read_text())
    assert set(data["blocking_obligations"]) == BLOCKING_OBLIGATIONS
    assert set(data["blocking_obligations"]) <= set(data["obligation_order"])


# --- the outbox, written with the entry -------------------------------------------------


def test_outbox_rows_are_written_with_the_decision_entry(gk: Gatekeeper, log: AuditLog) -> None:
    request = CASES[COURT_ORDER]
    decision = gk.decide(request)
    assert decision.permitted and decision.audit is not None
    rows = rows_of(gk, decision.decision_id)
    assert list(rows) == list(decision.obligations)
    for code, row in rows.items():
        assert row.entry_index == decision.audit["index"]
        assert row.decision_id == decision.decision_id
        assert row.request_id == decision.request_id == request["request_id"]
        assert row.blocking == (code in BLOCKING_OBLIGATIONS)
        assert row.payload["obligation"] == code
        assert row.payload["decision"] == "permit" and row.payload["rules"] == list(decision.rules)
        assert row.payload["guidance"] == decision.guidance
        assert row.payload["student"] == {"id": request["student"]["id"]}
        assert row.payload["requester"]["id"] == request["requester"]["id"]
        assert row.payload["allowed_fields"] == list(decision.allowed_fields)
    # met by the guard's own redaction at release (one named student):
    redact = rows["REDACT_OUT_OF_SCOPE"]
    assert (redact.status, redact.acked_by) == ("acknowledged", "gatekeeper:redaction")
    assert redact.ack_entry_index is None
    notify = rows["NOTIFY_PARENT_PRE"]
    assert (notify.status, notify.attempts, notify.acked_at) == ("pending", 0, None)
    # names, never values: nothing of the student's record beyond the id
    text = json.dumps([dict(r.payload) for r in rows.values()])
    for key in ("dob", "name"):
        value = request["student"].get(key)
        if value:
            assert str(value) not in text
    # a deny has obligations too (LOG_9932, NOTIFY_LEGAL, ...), none blocking
    deny = gk.decide(CASES[ICE_AT_DESK])
    assert deny.decision is Effect.DENY
    deny_rows = rows_of(gk, deny.decision_id)
    assert list(deny_rows) == list(deny.obligations)
    assert not any(r.blocking for r in deny_rows.values())
    assert verify_log(log.store, log.keys).ok


def test_group_commit_keeps_every_entry_with_its_rows(gk: Gatekeeper, log: AuditLog) -> None:
    ids = [COURT_ORDER, ICE_AT_DESK, UNVERIFIED, BULK_VENDOR, "A01", "A10"] * 8
    with ThreadPoolExecutor(max_workers=12) as pool:
        decisions = list(pool.map(lambda case: gk.decide(CASES[case]), ids))
    assert all(d.audit is not None for d in decisions)
    assert len(log.store.checkpoints()) < len(decisions)  # batched
    everything = gk.obligations.list()
    assert len(everything) == sum(len(d.obligations) for d in decisions)
    by_decision = {d.decision_id: d for d in decisions}
    for row in everything:
        decision = by_decision[row.decision_id]
        assert decision.audit is not None and row.entry_index == decision.audit["index"]
        assert entry_at(log, row.entry_index)["decision_id"] == row.decision_id


def _size_and_rows(gk: Gatekeeper, log: AuditLog) -> tuple[int, int]:
    return log.size(), len(gk.obligations.list())


def test_no_rows_and_no_entry_when_the_store_is_locked(
    store_kind: str, gk: Gatekeeper, log: AuditLog, tmp_path: Path
) -> None:
    assert gk.decide(CASES[COURT_ORDER]).permitted
    before = _size_and_rows(gk, log)
    if store_kind == "sqlite":
        blocker: Any = sqlite3.connect(tmp_path / "audit.sqlite", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    else:
        import psycopg

        blocker = psycopg.connect(log.dsn)  # type: ignore[attr-defined]
        blocker.execute("SELECT size FROM head WHERE id = 1 FOR UPDATE")  # holds the sequencer
    try:
        decision = gk.decide(CASES[COURT_ORDER])
    finally:
        if store_kind == "postgres":
            blocker.rollback()
        else:
            blocker.execute("ROLLBACK")
        blocker.close()
    assert decision.decision is Effect.DENY and decision.allowed_fields == ()
    assert decision.reason in {"audit_unavailable", "audit_timeout", "audit_store_locked"}
    assert _size_and_rows(gk, log) == before
    assert gk.obligations.list(decision_id=decision.decision_id) == []
    assert gk.decide(CASES[COURT_ORDER]).permitted  # recovers


def test_an_outbox_write_failure_fails_the_whole_append(
    store_kind: str, gk: Gatekeeper, log: AuditLog, tmp_path: Path
) -> None:
    """Fail closed: no entry without its rows (the table is made to refuse the insert)."""
    assert gk.decide(CASES["A01"]).permitted
    size = log.size()
    trap = (
        "CREATE TRIGGER refuse BEFORE INSERT ON obligations "
        "BEGIN SELECT RAISE(ABORT, 'outbox refuses'); END"
    )
    if store_kind == "sqlite":
        db = sqlite3.connect(tmp_path / "audit.sqlite")
        db.execute(trap)
        db.commit()
        db.close()
    else:
        import psycopg

        with psycopg.connect(log.dsn, autocommit=True) as admin:  # type: ignore[attr-defined]
            admin.execute(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'outbox refuses'; END $$"
            )
            admin.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON obligations "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
    decision = gk.decide(CASES[COURT_ORDER])
    assert decision.decision is Effect.DENY and decision.reason == "audit_unavailable"
    assert decision.allowed_fields == () and decision.audit is None
    assert log.size() == size  # the entry was rolled back with its rows
    # an entry without obligations (an invalid request) is still written
    assert gk.decide(b'{"channel": "internal"}').audit is not None
    assert log.size() == size + 1
    assert verify_log(log.store, log.keys).ok


def test_opening_an_older_sqlite_store_adds_the_outbox(tmp_path: Path) -> None:
    from gatekeeper.audit.store import SqliteStore

    path = tmp_path / "old.sqlite"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE obligations")  # as written before the outbox existed
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert store.list_obligations() == []
    store.close()


def test_opening_an_older_postgres_store_adds_the_outbox(pg_dsn: str) -> None:
    import psycopg

    from gatekeeper.audit.postgres import PostgresStore

    PostgresStore(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("DROP TABLE obligations")
    store = PostgresStore(pg_dsn)
    try:
        assert store.list_obligations() == []
    finally:
        store.close()


# --- a real HTTP receiver ----------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook receiver on loopback: fails the first ``fail_first`` requests."""

    fail_first: int = 0
    fail_status: int = 503
    hang_first: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{LOOPBACK}:{self.server.server_address[1]}/hooks/gatekeeper?token=x"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    n = len(receiver.requests)
                receiver.arrived.set()
                if receiver.hang_first and n == 1:
                    receiver.release.wait(30)  # the dispatcher is killed meanwhile
                    return
                status = receiver.fail_status if n <= receiver.fail_first else 200
                reason = b"OK" if status == 200 else b"Unavailable"
                payload = b"ok"
                # one write: headers and body together
                self.wfile.write(
                    b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (status, reason, len(payload), payload)
                )
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def ids(self) -> list[int]:
        return [int(h["Gatekeeper-Obligation-Id"]) for h, _ in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def runner_for(
    log: AuditLog, routes: dict[str, Any], *, clock: Clock | None = None, **kwargs: Any
) -> DispatchRunner:
    return DispatchRunner(
        log.outbox,
        routes,
        origin=log.origin,
        clock=clock or Clock(),
        rng=random.Random(7),
        **kwargs,
    )


def test_webhook_retries_with_backoff_until_it_is_accepted(
    gk: Gatekeeper, log: AuditLog, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    decision = gk.decide(CASES[COURT_ORDER])
    hook = WebhookDispatcher(url=receiver.url, secret=SECRET, timeout=5)
    clock = Clock()
    policy = RetryPolicy(max_attempts=5, base=10.0, max_delay=600.0)
    runner = runner_for(log, {"NOTIFY_PARENT_PRE": hook}, clock=clock, policy=policy)

    started = clock.now
    report = runner.run_once()
    assert (report.delivered, report.retrying, report.failed) == (0, 1, 0)
    row = rows_of(gk, decision.decision_id)["NOTIFY_PARENT_PRE"]
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None and "HTTP 503" in row.last_error
    assert "token=x" not in row.last_error  # no query strings (tokens) in messages
    first_wait = (row.next_attempt_at - started).total_seconds()
    assert 5.0 <= first_wait <= 10.0  # half to all of the base, jittered

    assert runner.run_once().delivered == 0 and len(receiver.requests) == 1  # not due yet
    clock.advance(first_wait)
    assert runner.run_once().retrying == 1
    row = rows_of(gk, decision.decision_id)["NOTIFY_PARENT_PRE"]
    second_wait = (row.next_attempt_at - clock.now).total_seconds()
    assert row.attempts == 2 and 10.0 <= second_wait <= 20.0  # doubled
    clock.advance(second_wait)
    assert runner.run_once().delivered == 1

    row = rows_of(gk, decision.decision_id)["NOTIFY_PARENT_PRE"]
    assert (row.status, row.attempts, row.last_error) == ("delivered", 3, None)
    assert row.delivered_at == clock.now
    assert receiver.ids() == [row.id] * 3
    for attempt, (headers, body) in enumerate(receiver.requests, start=1):
        assert headers["Content-Type"] == "application/json"
        assert headers["Gatekeeper-Delivery-Attempt"] == str(attempt)
        assert verify_signature(
            SECRET,
            body=body,
            timestamp=headers["Gatekeeper-Timestamp"],
            signature=headers["Gatekeeper-Signature"],
        )
        assert not verify_signature(
            b"another-secret",
            body=body,
            timestamp=headers["Gatekeeper-Timestamp"],
            signature=headers["Gatekeeper-Signature"],
        )
    message = json.loads(receiver.requests[-1][1])
    assert message["schema"] == "gatekeeper.obligation/v1"
    assert message["obligation_id"] == row.id and message["obligation"] == "NOTIFY_PARENT_PRE"
    assert message["decision_id"] == decision.decision_id and message["blocking"] is True
    assert message["audit"] == {"origin": ORIGIN, "index": row.entry_index}
    assert message["student"] == {"id": CASES[COURT_ORDER]["student"]["id"]}
    # delivered is not acknowledged: the release is still held
    with pytest.raises(ReleaseHeld):
        gk.release(decision.decision_id)


def test_webhook_gives_up_after_max_attempts(
    sqlite_gk: Gatekeeper, sqlite_log: AuditLog, receiver: Receiver
) -> None:
    receiver.fail_first = 1000
    receiver.fail_status = 500
    decision = sqlite_gk.decide(CASES[COURT_ORDER])
    clock = Clock()
    hook = WebhookDispatcher(url=receiver.url, secret=SECRET, timeout=5)
    runner = runner_for(
        sqlite_log,
        {"NOTIFY_LEGAL": hook},
        clock=clock,
        policy=RetryPolicy(max_attempts=3, base=1.0, max_delay=2.0),
    )
    outcomes = []
    for _ in range(5):
        report = runner.run_once()
        outcomes.append((report.retrying, report.failed))
        clock.advance(5)
    assert outcomes == [(1, 0), (1, 0), (0, 1), (0, 0), (0, 0)]
    row = rows_of(sqlite_gk, decision.decision_id)["NOTIFY_LEGAL"]
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error is not None and "HTTP 500" in row.last_error
    assert len(receiver.requests) == 3
    assert row in sqlite_gk.obligations.list(pending=True)  # a failed row is still owed
    # someone met it another way: it can still be acknowledged
    acked = sqlite_gk.obligations.ack(row.id, by="legal office", note="sent by hand")
    assert acked.status == "acknowledged"


def test_webhook_refuses_redirects_and_unreachable_hosts(
    sqlite_gk: Gatekeeper, sqlite_log: AuditLog
) -> None:
    sqlite_gk.decide(CASES[COURT_ORDER])
    dead = WebhookDispatcher(url=f"http://{LOOPBACK}:{free_port()}/x", secret=SECRET, timeout=2)
    report = runner_for(sqlite_log, {"NOTIFY_LEGAL": dead}).run_once()
    assert report.retrying == 1
    (row,) = [r for r in sqlite_gk.obligations.list() if r.code == "NOTIFY_LEGAL"]
    assert row.last_error is not None and "unreachable" in row.last_error


# --- a real SMTP server -----------------------------------------------------------------


@dataclass
class Mailbox:
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "smtp-cert.pem", tmp_path / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("starttls", [False, True])
def test_email_is_delivered_to_a_real_smtp_server(
    sqlite_gk: Gatekeeper, sqlite_log: AuditLog, tmp_path: Path, starttls: bool
) -> None:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    kwargs: dict[str, Any] = {}
    cafile = None
    if starttls:
        cafile, keyfile = _self_signed(tmp_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cafile, keyfile)
        kwargs = {"tls_context": context, "require_starttls": True}
    port = free_port()
    controller = Controller(mailbox, hostname=LOOPBACK, port=port, **kwargs)
    controller.start()
    try:
        request = CASES[COURT_ORDER]
        decision = sqlite_gk.decide(request)
        mail = EmailDispatcher(
            host=LOOPBACK,
            port=port,
            sender="gatekeeper@district.example",
            to=["records@district.example", "legal@district.example"],
            starttls=starttls,
            cafile=cafile,
            timeout=5,
        )
        report = runner_for(sqlite_log, {"NOTIFY_PARENT_PRE": mail}).run_once()
        assert report.delivered == 1, sqlite_gk.obligations.list()
    finally:
        controller.stop()
    row = rows_of(sqlite_gk, decision.decision_id)["NOTIFY_PARENT_PRE"]
    assert row.status == "delivered" and row.attempts == 1
    ((sender, recipients, raw),) = mailbox.messages
    assert sender == "gatekeeper@district.example"
    assert recipients == ["records@district.example", "legal@district.example"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert "NOTIFY_PARENT_PRE" in message["Subject"] and "[blocking]" in message["Subject"]
    assert message["Gatekeeper-Obligation-Id"] == str(row.id)
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    body = text.get_content()
    assert decision.decision_id in body
    assert f"Student: {request['student']['id']}" in body
    assert "BLOCKING" in body and f"gatekeeper obligations ack {row.id}" in body
    assert decision.guidance.split()[0] in body
    (attachment,) = list(message.iter_attachments())
    content = json.loads(attachment.get_content())
    assert content["obligation_id"] == row.id and content["decision_id"] == decision.decision_id
    for key in ("dob", "name"):
        value = request["student"].get(key)
        if value:
            assert str(value) not in raw.decode("utf-8", "replace")


def test_email_to_a_server_without_starttls_fails_rather_than_sending_in_clear(
    sqlite_gk: Gatekeeper, sqlite_log: AuditLog
) -> None:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname=LOOPBACK, port=port)
    controller.start()
    try:
        sqlite_gk.decide(CASES[COURT_ORDER])
        mail = EmailDispatcher(
            host=LOOPBACK, port=port, sender="g@d.example", to=["r@d.example"], starttls=True
        )
        assert runner_for(sqlite_log, {"NOTIFY_PARENT_PRE": mail}).run_once().retrying == 1
    finally:
        controller.stop()
    assert mailbox.messages == []


# --- several dispatchers, and one killed mid-delivery --------------------------------------


def test_concurrent_dispatchers_claim_each_row_once(
    store_kind: str, gk: Gatekeeper, log: AuditLog, receiver: Receiver, tmp_path: Path
) -> None:
    for case in [COURT_ORDER, ICE_AT_DESK, UNVERIFIED, "A10"] * 4:
        gk.decide(CASES[case])
    codes = {r.code for r in gk.obligations.list() if r.status == "pending"}
    expected = {r.id for r in gk.obligations.list() if r.status == "pending"}
    hook = WebhookDispatcher(url=receiver.url, secret=SECRET, timeout=5)

    def one_runner(_: int) -> int:
        # each runner has its own store connection, as separate processes would
        if store_kind == "sqlite":
            from gatekeeper.audit.store import SqliteStore

            store: Any = SqliteStore(tmp_path / "audit.sqlite")
        else:
            from gatekeeper.audit.postgres import PostgresStore

            store = PostgresStore(log.dsn)  # type: ignore[attr-defined]
        try:
            runner = DispatchRunner(store, dict.fromkeys(codes, hook), origin=ORIGIN, batch_size=3)
            return runner.run_once().delivered
        finally:
            store.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        delivered = sum(pool.map(one_runner, range(4)))
    assert delivered == len(expected)
    assert sorted(receiver.ids()) == sorted(expected)  # each exactly once
    assert all(r.status == "delivered" for r in gk.obligations.list() if r.id in expected)


def _write_config(
    path: Path, url: str, *, lease: float, timeout: float = 2.0, head: str = ""
) -> None:
    path.write_text(
        head + "[gatekeeper.obligations]\n"
        f"lease = {lease}\n"
        "backoff_base = 1\n"
        "[[gatekeeper.obligations.webhook]]\n"
        'codes = ["NOTIFY_PARENT_PRE"]\n'
        f'url = "{url}"\n'
        'secret_env = "TEST_WEBHOOK_SECRET"\n'
        f"timeout = {timeout}\n"
    )


def run_cli(data_dir: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TEST_WEBHOOK_SECRET=SECRET.decode())
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        **kwargs,
    )


def test_a_dispatcher_killed_mid_delivery_leaves_the_row_pending_and_it_is_redelivered(
    store_kind: str, tmp_path: Path, receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    receiver.hang_first = True
    config = tmp_path / "gatekeeper.toml"
    head = ""
    if store_kind == "postgres":  # a shared log: the claim is FOR UPDATE SKIP LOCKED
        key = tmp_path / "log-key.pem"
        assert run_cli(tmp_path, "audit", "keygen", "--out", str(key)).returncode == 0
        dsn = request.getfixturevalue("pg_dsn")
        head = f'[gatekeeper]\naudit_url = "{dsn}"\norigin = "{ORIGIN}"\nkey_path = "{key}"\n'
    _write_config(config, receiver.url, lease=3.0, head=head)
    with gatekeeper.open(data_dir=tmp_path, config=config) as gk:
        decision = gk.decide(CASES[COURT_ORDER])
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TEST_WEBHOOK_SECRET=SECRET.decode())
    command = [sys.executable, "-m", "gatekeeper", "--data-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [*command, "--config", str(config), "obligations", "dispatch"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "dispatch.err").open("wb"),
    )
    try:
        deadline = time.monotonic() + 60
        while not receiver.arrived.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = (tmp_path / "dispatch.err").read_text(errors="replace")
                pytest.fail(f"the dispatcher never called the receiver (exit {proc.poll()}): {err}")
        proc.send_signal(signal.SIGKILL)  # mid-delivery: the receiver has not answered
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with gatekeeper.open(data_dir=tmp_path, config=config) as gk:
        row = rows_of(gk, decision.decision_id)["NOTIFY_PARENT_PRE"]
        assert (row.status, row.attempts, row.delivered_at) == ("pending", 1, None)
        assert row.lease_until is not None
        # while the lease runs, nobody else takes it (a second before it ends:
        # what the clock says by now depends on how loaded the machine is)
        assert gk.audit is not None
        now = row.lease_until - dt.timedelta(seconds=1)
        early = gk.audit.outbox.claim_obligations(
            ["NOTIFY_PARENT_PRE"], now=now, lease_until=now, max_attempts=8, limit=5, token="t"
        )
        assert early == []
        time.sleep(max(0.0, (row.lease_until - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
        again = run_cli(tmp_path, "--config", str(config), "obligations", "dispatch", "--once")
        assert again.returncode == 0 and "delivered 1" in again.stdout, again
        row = rows_of(gk, decision.decision_id)["NOTIFY_PARENT_PRE"]
        assert (row.status, row.attempts) == ("delivered", 2)
    assert receiver.ids() == [row.id, row.id]  # at least once: the receiver saw it twice


# --- acknowledgments and the release of a held permit ------------------------------------


def test_ack_is_an_audit_entry_and_makes_the_held_permit_releasable(
    gk: Gatekeeper, log: AuditLog
) -> None:
    with pytest.raises(ReleaseHeld) as held, gk.access(CASES[COURT_ORDER]):
        pytest.fail("a held permit must not enter the block")
    decision = held.value.decision
    assert held.value.pending == ("NOTIFY_PARENT_PRE",)
    with pytest.raises(ReleaseHeld) as still:
        gk.release(decision.decision_id)
    assert still.value.pending == ("NOTIFY_PARENT_PRE",)

    notify = rows_of(gk, decision.decision_id)["NOTIFY_PARENT_PRE"]
    size = log.size()
    acked = gk.obligations.ack(notify.id, by="R. Ortiz, records office", note="parent called")
    assert acked.status == "acknowledged" and acked.ack_entry_index == size
    assert acked.acked_by == "R. Ortiz, records office" and acked.acked_at is not None
    entry = entry_at(log, size)
    assert entry["schema"] == "gatekeeper.audit/v1"
    assert (entry["kind"], entry["version"]) == ("obligation_ack", 1)
    assert entry["obligation"] == {
        "id": notify.id,
        "code": "NOTIFY_PARENT_PRE",
        "blocking": True,
        "decision_id": decision.decision_id,
        "request_id": decision.request_id,
        "decision_entry": notify.entry_index,
    }
    assert entry["acknowledged_by"] == "R. Ortiz, records office"
    assert entry["note"] == "parent called" and entry["timestamp"].endswith("Z")
    assert "decision_id" not in entry  # never counted as a decision
    report = verify_log(log.store, log.keys)
    assert report.ok, report.problems

    grant = gk.release(decision.decision_id)
    assert grant.decision.decision_id == decision.decision_id
    assert grant.decision.allowed_fields == decision.allowed_fields
    assert grant.decision.audit == decision.audit  # read back from the signed entry
    record = {"attendance": [1], "home_address": "1 Main St", "citizenship_status": "x"}
    assert grant.redact(record) == {k: v for k, v in record.items() if k in decision.allowed_fields}
    released = entry_at(log, size + 1)  # the release left an entry before the Grant
    assert (released["kind"], released["version"]) == ("release", 1)
    assert released["release"] == {
        "decision_id": decision.decision_id,
        "request_id": decision.request_id,
        "decision_entry": notify.entry_index,
        "allowed_fields": list(decision.allowed_fields),
    }
    assert "decision_id" not in released  # never counted as a decision
    with pytest.raises(ObligationError) as again:
        gk.obligations.ack(notify.id, by="someone else")
    assert again.value.reason == "obligation_already_acknowledged"
    assert log.size() == size + 2  # the refused ack wrote nothing
    assert verify_log(log.store, log.keys).ok


def test_escalate_and_deny_are_never_released(sqlite_gk: Gatekeeper) -> None:
    escalated = sqlite_gk.decide(CASES[UNVERIFIED])
    assert escalated.decision is Effect.ESCALATE
    rows = rows_of(sqlite_gk, escalated.decision_id)
    assert rows["VERIFY_IDENTITY"].blocking and rows["VERIFY_IDENTITY"].status == "pending"
    for row in rows.values():
        sqlite_gk.obligations.ack(row.id, by="legal office")
    with pytest.raises(AccessDenied) as info:
        sqlite_gk.release(escalated.decision_id)
    assert not isinstance(info.value, ReleaseHeld)
    assert info.value.decision.decision is Effect.ESCALATE
    denied = sqlite_gk.decide(CASES[ICE_AT_DESK])
    for row in rows_of(sqlite_gk, denied.decision_id).values():
        sqlite_gk.obligations.ack(row.id, by="legal office")
    with pytest.raises(AccessDenied):
        sqlite_gk.release(denied.decision_id)
    with pytest.raises(ObligationError) as unknown:
        sqlite_gk.release("0" * 32)
    assert unknown.value.reason == "release_unknown_decision"


def test_a_bulk_permit_waits_for_its_scoping_to_be_acknowledged(sqlite_gk: Gatekeeper) -> None:
    decision = sqlite_gk.decide(CASES[BULK_VENDOR])
    assert decision.permitted
    redact = rows_of(sqlite_gk, decision.decision_id)["REDACT_OUT_OF_SCOPE"]
    assert redact.status == "pending"  # field redaction cannot scope the students
    with pytest.raises(ReleaseHeld) as held:
        sqlite_gk.release(decision.decision_id)
    assert held.value.pending == ("REDACT_OUT_OF_SCOPE",)
    sqlite_gk.obligations.ack(redact.id, by="SIS admin", note="export scoped to route 12")
    grant = sqlite_gk.release(decision.decision_id, redactor=Redactor({"givenName": "name"}))
    assert grant.redact([{"givenName": "Ana", "dob": "2011-01-01"}]) == [{"givenName": "Ana"}]


def test_a_bulk_permit_stays_held_when_the_pack_does_not_list_redaction_as_blocking(
    engine: EmbeddedEngine, tmp_path: Path
) -> None:
    # access() holds every bulk permit with REDACT_OUT_OF_SCOPE (the SIS must scope
    # the students); release() must not let it go without a signed acknowledgment.
    with AuditLog.open_sqlite(tmp_path, origin=ORIGIN) as log:
        gk = Gatekeeper(
            engine=engine,
            audit=log,
            blocking_obligations=BLOCKING_OBLIGATIONS - {"REDACT_OUT_OF_SCOPE"},
        )
        with pytest.raises(ReleaseHeld) as held, gk.access(CASES[BULK_VENDOR]):
            pytest.fail("a bulk permit must not enter the block")
        decision_id = held.value.decision.decision_id
        with pytest.raises(ReleaseHeld) as still:
            gk.release(decision_id)
        assert still.value.pending == ("REDACT_OUT_OF_SCOPE",)
        redact = rows_of(gk, decision_id)["REDACT_OUT_OF_SCOPE"]
        gk.obligations.ack(redact.id, by="SIS admin", note="export scoped")
        assert gk.release(decision_id).decision.permitted


def test_release_trusts_only_signed_acknowledgments(sqlite_gk: Gatekeeper, tmp_path: Path) -> None:
    gk = sqlite_gk
    first = gk.decide(CASES[COURT_ORDER])
    second = gk.decide(CASES[COURT_ORDER])
    forged = rows_of(gk, first.decision_id)["NOTIFY_PARENT_PRE"]
    db = sqlite3.connect(tmp_path / "audit.sqlite")
    db.execute(
        "UPDATE obligations SET status = 'acknowledged', acked_by = 'mallory' WHERE id = ?",
        (forged.id,),
    )
    db.commit()
    with pytest.raises(ReleaseHeld):
        gk.release(first.decision_id)  # flipped in the table, no ack entry
    other = rows_of(gk, second.decision_id)["NOTIFY_PARENT_PRE"]
    real = gk.obligations.ack(other.id, by="records office")
    db.execute(
        "UPDATE obligations SET ack_entry_index = ? WHERE id = ?",
        (real.ack_entry_index, forged.id),
    )
    db.commit()
    db.close()
    with pytest.raises(ReleaseHeld):
        gk.release(first.decision_id)  # an ack entry, but for another obligation
    assert gk.release(second.decision_id).decision.permitted


def test_a_held_permit_expires(engine: EmbeddedEngine, tmp_path: Path) -> None:
    with AuditLog.open_sqlite(tmp_path, origin=ORIGIN) as log:
        gk = Gatekeeper(engine=engine, audit=log, release_max_age=0.05)
        decision = gk.decide(CASES[COURT_ORDER])
        row = rows_of(gk, decision.decision_id)["NOTIFY_PARENT_PRE"]
        gk.obligations.ack(row.id, by="records office")
        time.sleep(0.1)
        with pytest.raises(AccessDenied) as info:
            gk.release(decision.decision_id)
        assert info.value.reason == "release_expired"


def test_verify_flags_an_ack_for_no_decision(tmp_path: Path) -> None:
    with AuditLog.open_sqlite(tmp_path, origin=ORIGIN) as log:
        log.append_value({"kind": "decision", "decision_id": "d-1"})
        log.append_value({"kind": "obligation_ack", "obligation": {"decision_id": "d-1"}})
        log.append_value({"kind": "obligation_ack", "obligation": {"decision_id": "d-9"}})
        problems = [str(p) for p in verify_log(log.store, log.keys).problems]
    assert problems == ["entry 2: obligation_ack names no earlier decision"], problems


def test_a_store_without_an_outbox_fails_closed(engine: EmbeddedEngine, tmp_path: Path) -> None:
    from gatekeeper.audit.store import SqliteStore
    from tests.test_audit_hardening import WrappedStore

    store = WrappedStore(SqliteStore(tmp_path / "audit.sqlite"))
    with AuditLog(store, KeyStore(tmp_path, origin=ORIGIN)) as log:  # type: ignore[arg-type]
        gk = Gatekeeper(engine=engine, audit=log)
        decision = gk.decide(CASES[COURT_ORDER])
        assert decision.decision is Effect.DENY
        assert decision.reason == "obligation_outbox_unavailable"
        assert log.size() == 0


# --- configuration -----------------------------------------------------------------------


def test_routing_configuration(tmp_path: Path) -> None:
    settings = parse_obligation_settings(
        {
            "max_attempts": 4,
            "webhook": [
                {"codes": ["NOTIFY_LEGAL"], "url": "https://l.example/h", "secret_env": "X"}
            ],
            "email": [
                {
                    "codes": ["NOTIFY_PARENT_PRE", "VERIFY_CONSENT"],
                    "host": "smtp.example",
                    "port": 587,
                    "starttls": True,
                    "from": "g@d.example",
                    "to": "r@d.example",
                }
            ],
        }
    )
    assert sorted(settings.routes) == ["NOTIFY_LEGAL", "NOTIFY_PARENT_PRE", "VERIFY_CONSENT"]
    assert settings.max_attempts == 4 and settings.emails[0].to == ("r@d.example",)
    bad = [
        {"webhook": [{"codes": ["A"], "url": "https://x.example", "secret": "inline"}]},
        {"webhook": [{"codes": ["A"], "url": "ftp://x.example", "secret_env": "X"}]},
        {
            "webhook": [{"codes": ["A"], "url": "https://x.example", "secret_env": "X"}],
            "email": [{"codes": ["A"], "host": "h", "from": "a@b", "to": ["c@d"]}],
        },
        {"lease": 5, "webhook": [{"codes": ["A"], "url": "https://x", "secret_env": "X",
                                  "timeout": 10}]},
        {"retries": 3},
        {"email": [{"codes": ["lower"], "host": "h", "from": "a@b", "to": ["c@d"]}]},
    ]  # fmt: skip
    for raw in bad:
        with pytest.raises(GatekeeperError) as info:
            parse_obligation_settings(raw)
        assert info.value.reason == "config"
    config = tmp_path / "g.toml"
    _write_config(config, "https://hooks.example/x", lease=30)
    loaded = gatekeeper.config.load_settings(config)
    assert loaded.obligations is not None
    assert loaded.obligations.webhooks[0].secret_env == "TEST_WEBHOOK_SECRET"


def test_webhook_urls_with_credentials_are_refused() -> None:
    # urllib does not send URL credentials; they would only end up, in clear, in
    # the row's last_error and the dispatcher's log ("nonnumeric port: 's3cret@…'").
    url = "https://hook-user:s3cret@hooks.example/x"
    with pytest.raises(ValueError) as direct:
        WebhookDispatcher(url=url, secret=SECRET)
    assert "s3cret" not in str(direct.value)
    with pytest.raises(GatekeeperError) as info:
        parse_obligation_settings(
            {"webhook": [{"codes": ["NOTIFY_LEGAL"], "url": url, "secret_env": "X"}]}
        )
    assert info.value.reason == "config" and "s3cret" not in str(info.value)


# --- the command line --------------------------------------------------------------------


def test_cli_list_and_ack(tmp_path: Path) -> None:
    decided = run_cli(tmp_path, "decide", str(REPO_ROOT / "examples" / "hsi-judicial-warrant.json"))
    assert decided.returncode == 0, decided.stderr
    decision = json.loads(decided.stdout)
    assert "NOTIFY_PARENT_PRE" in decision["obligations"]

    listed = run_cli(tmp_path, "obligations", "list", "--pending", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {r["decision_id"] for r in rows} == {decision["decision_id"]}
    assert "REDACT_OUT_OF_SCOPE" not in {r["code"] for r in rows}  # met at once
    (notify,) = [r for r in rows if r["code"] == "NOTIFY_PARENT_PRE"]
    assert notify["blocking"] is True and notify["status"] == "pending"

    table = run_cli(tmp_path, "obligations", "list", "--decision", decision["decision_id"])
    assert "⛔ NOTIFY_PARENT_PRE" in table.stdout and "by gatekeeper:redaction" in table.stdout

    acked = run_cli(
        tmp_path, "obligations", "ack", str(notify["id"]), "--by", "J. Doe", "--note", "called"
    )
    assert acked.returncode == 0, acked.stderr
    assert f"acknowledged obligation {notify['id']} (NOTIFY_PARENT_PRE)" in acked.stdout
    after = [
        json.loads(line)
        for line in run_cli(tmp_path, "obligations", "list", "--json").stdout.splitlines()
    ]
    (done,) = [r for r in after if r["id"] == notify["id"]]
    assert done["status"] == "acknowledged" and done["acked_by"] == "J. Doe"
    assert done["ack_entry_index"] == 1
    pending = run_cli(tmp_path, "obligations", "list", "--pending", "--json").stdout
    assert str(notify["id"]) not in [str(json.loads(x)["id"]) for x in pending.splitlines()]

    twice = run_cli(tmp_path, "obligations", "ack", str(notify["id"]), "--by", "J. Doe")
    assert twice.returncode == 1 and "already acknowledged at entry 1" in twice.stderr
    missing = run_cli(tmp_path, "obligations", "ack", "9999", "--by", "J. Doe")
    assert missing.returncode == 1 and "no obligation 9999" in missing.stderr
    verify = run_cli(tmp_path, "audit", "verify")
    assert verify.returncode == 0 and "2/2 entries valid" in verify.stdout, verify
    shown = run_cli(tmp_path, "audit", "show", "--index", "1", "--json")
    assert json.loads(shown.stdout)["entry"]["kind"] == "obligation_ack"
    nothing = run_cli(tmp_path, "obligations", "dispatch", "--once")
    assert nothing.returncode == 1 and "no obligation routes" in nothing.stderr


def test_two_people_acknowledging_at_once_leave_one_entry(gk: Gatekeeper, log: AuditLog) -> None:
    decision = gk.decide(CASES[COURT_ORDER])
    notify = rows_of(gk, decision.decision_id)["NOTIFY_PARENT_PRE"]
    size = log.size()
    barrier = threading.Barrier(4)

    def ack(who: int) -> str:
        barrier.wait()
        try:
            gk.obligations.ack(notify.id, by=f"clerk {who}")
        except ObligationError as exc:
            return exc.reason
        return "ok"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = sorted(pool.map(ack, range(4)))
    assert outcomes == ["obligation_already_acknowledged"] * 3 + ["ok"]
    assert log.size() == size + 1
    assert verify_log(log.store, log.keys).ok
