"""Fault injection with real processes: OPA killed (and restarted with another bundle),
slow, answering garbage; PostgreSQL restarted, stopped, frozen, and cut off right after
COMMIT. No mocks: a real ``opa`` server, a real PostgreSQL, real sockets
(tests/fault_proxy.py) between them and gatekeeper.

For every fault the tests check, decision by decision, through ``gk.access`` (the
lookup runs only on a permit and only the allowed fields come out):

- a decision made while the fault lasts is a ``deny`` with a reason code, returned
  within the configured timeout (plus a small margin), and nothing is disclosed;
- the same Gatekeeper recovers by itself once the fault ends (no reopen, no restart);
- afterwards ``verify_log`` passes and the log holds the decisions: one entry per
  decision when the log itself was never faulty (the OPA faults), and for the
  PostgreSQL faults every acknowledged decision (returned with an ``audit``
  receipt) at its index with the same leaf hash.

The PostgreSQL log and the ambiguous commit
-------------------------------------------
An entry is acknowledged only after COMMIT returned (``synchronous_commit = on``),
so a decision returned with an audit receipt is in the log: under-reporting is
impossible. A connection lost after COMMIT was sent leaves the outcome unknown:
the caller gets a deny (``audit_unavailable``), and the entry may or may not be in
the log. When it is, the log holds a decision the caller saw denied; that
over-reporting is the safe direction (the log claims more than was released, never
less). ``test_connection_lost_after_commit_over_reports_never_under`` makes it
happen deterministically (a proxy forwards COMMIT and then cuts the connection)
and shows the entry present, the caller denied, the log valid, and the next
decision made on a new connection at the next index: the writer keeps no tree
state of its own, every append reads the head under ``SELECT ... FOR UPDATE``.

With ``CI=true`` a missing OPA or PostgreSQL fails these tests instead of skipping.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import gatekeeper
from gatekeeper import AccessDenied, Gatekeeper
from gatekeeper.audit import merkle
from gatekeeper.audit.keys import KeyStore
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.verify import verify_log
from gatekeeper.decision import Decision, Effect
from gatekeeper.engines import EmbeddedEngine, load_pack
from tests.conftest import POLICIES_DIR, copy_pack
from tests.fault_proxy import CutProxy, FaultyHttpFront
from tests.opa_server import OpaServer
from tests.pg_server import PostgresServer

CASES = {
    json.loads(line)["id"]: json.loads(line)["request"]
    for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    if line.strip()
}

#: The engine's timeout in these tests (it bounds the revision check and the query
#: together; the check alone takes 0.1-0.2 s on a loaded 2-core machine), and what
#: a deny may take on top of it (the SQLite audit write, the guard).
OPA_TIMEOUT = 0.5
MARGIN = 0.3

#: The PostgreSQL store's timeouts here, and the log's.
PG_LOCK_TIMEOUT = 0.5
PG_CONNECT_TIMEOUT = 1.0
AUDIT_TIMEOUT = 1.0

ENGINE_DOWN = {"engine_unreachable", "engine_timeout"}
AUDIT_DOWN = {"audit_unavailable", "audit_timeout"}

#: What the SIS lookup returns: the guard must release only the allowed fields.
RECORD = {
    "grades": "A",
    "attendance": "98%",
    "home_address": "1 Main St",
    "citizenship_status": "withheld",
}
TEACHER_SEES = {"grades": "A", "attendance": "98%"}


def teacher(n: int) -> dict[str, Any]:
    """A01 (a teacher of record: a permit on a healthy engine), as of now."""
    request = json.loads(json.dumps(CASES["A01"]))
    request["request_id"] = f"fault-{n}"
    now = datetime.now(ZoneInfo("America/Los_Angeles"))
    request["as_of"] = now.isoformat(timespec="seconds")
    return request


@dataclass
class Outcome:
    decision: Decision
    seconds: float
    released: Any  # what came out of the guarded lookup; None when it never ran
    started: float


class Run:
    """Decisions through ``gk.access``, each timed and kept."""

    def __init__(self, gk: Gatekeeper) -> None:
        self.gk = gk
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()

    def attempt(self) -> Outcome:
        with self._lock:
            n = len(self.outcomes)
        started = time.monotonic()
        released = None
        try:
            with self.gk.access(teacher(n)) as grant:
                released = grant.redact(RECORD)
                decision = grant.decision
        except AccessDenied as exc:
            decision = exc.decision
        outcome = Outcome(decision, time.monotonic() - started, released, started)
        with self._lock:
            self.outcomes.append(outcome)
        return outcome

    def warm_up(self) -> Outcome:
        """The first permit (the first revision check may overrun on a loaded machine)."""
        return self.until_permit(within=10.0)[0]

    def permit(self) -> Outcome:
        o = self.attempt()
        assert_permit(o)
        return o

    def denied(self, reasons: set[str], bound: float, *, tries: int = 3) -> Outcome:
        """The next decision is a deny for one of ``reasons`` within ``bound``.

        A fault resets the engine's revision check, so the decision after it
        checks the revision again and asks the faulty server, under one
        deadline: a loaded machine can push that past it. Such a deny (the
        safe way: ``engine_timeout`` at the deadline, nothing disclosed) is
        not the one under test, and the decision is made again, a few times at
        most; every attempt is in the log (``check_log`` counts them)."""
        for _ in range(tries - 1):
            o = self.attempt()
            overran = (
                o.decision.reason == "engine_timeout"
                and "engine_timeout" not in reasons
                and o.seconds >= 0.9 * OPA_TIMEOUT
            )
            if not overran:
                break
            assert_denied(o, {"engine_timeout"}, bound)
        else:
            o = self.attempt()
        assert_denied(o, reasons, bound)
        return o

    def until_permit(self, within: float) -> tuple[Outcome, float]:
        """Decide until a permit comes back; that permit and how long it took."""
        started = time.monotonic()
        while True:
            o = self.attempt()
            if o.decision.decision is Effect.PERMIT:
                assert_permit(o)
                return o, time.monotonic() - started
            assert o.released is None and o.decision.allowed_fields == ()
            assert time.monotonic() - started < within, f"no recovery within {within}s: {o}"
            time.sleep(0.02)


def assert_permit(o: Outcome) -> None:
    d = o.decision
    assert d.decision is Effect.PERMIT, d.to_dict()
    assert d.reason is None and d.audit is not None
    assert o.released == TEACHER_SEES


def assert_denied(o: Outcome, reasons: set[str], bound: float) -> None:
    d = o.decision
    assert d.decision is Effect.DENY, d.to_dict()
    assert d.reason in reasons, d.to_dict()
    assert d.allowed_fields == () and o.released is None  # nothing disclosed
    assert "Release nothing" in d.guidance
    assert o.seconds <= bound, f"{d.reason} deny took {o.seconds:.3f}s (bound {bound}s)"


def check_log(log: AuditLog, outcomes: list[Outcome], *, exact: bool) -> dict[str, int]:
    """verify_log passes; every acknowledged decision is at its index with its leaf hash;
    with ``exact``, the log holds one entry per decision and nothing else."""
    report = verify_log(log.store, log.keys)
    assert report.ok, report.problems
    size = log.size()
    entries = log.store.read_entries(0, size)
    assert [e.index for e in entries] == list(range(size))
    ids = [json.loads(e.data)["decision_id"] for e in entries]
    assert len(set(ids)) == len(ids), "a decision logged twice"
    made = {o.decision.decision_id for o in outcomes}
    assert set(ids) <= made, "an entry for a decision nobody made"
    acked = [o for o in outcomes if o.decision.audit is not None]
    for o in acked:
        audit = o.decision.audit
        assert audit is not None
        entry = entries[audit["index"]]
        assert merkle.leaf_hash(entry.data).hex() == audit["leaf_hash"]
        logged = json.loads(entry.data)
        assert logged["decision_id"] == o.decision.decision_id
        assert logged["decision"] == str(o.decision.decision)
    if exact:
        assert size == len(outcomes) == len(acked)
    return {"size": size, "acknowledged": len(acked), "decisions": len(outcomes)}


def mutated_pack(tmp_path: Path) -> Path:
    """policies/ with one data value changed: another revision."""
    target = copy_pack(tmp_path, "other-policies")
    path = target / "catalog" / "data.json"
    text = path.read_text()
    old = '"subpoena_min_notice_days": 10'
    assert old in text
    path.write_text(text.replace(old, '"subpoena_min_notice_days": 3', 1))
    return target


def open_opa_gatekeeper(data_dir: Path, url: str) -> Gatekeeper:
    return gatekeeper.open(data_dir=data_dir, engine="opa", opa_url=url, opa_timeout=OPA_TIMEOUT)


def report(name: str, **facts: object) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in facts.items()))


def max_seconds(outcomes: list[Outcome]) -> str:
    return f"{max(o.seconds for o in outcomes):.3f}s" if outcomes else "-"


# ------------------------------------------------------------------------------- OPA


@pytest.mark.opa
def test_opa_killed_mid_run_then_restarted(tmp_path: Path, opa_bin: Path) -> None:
    opa = OpaServer(POLICIES_DIR, opa_bin=opa_bin)
    opa.start()
    port = opa.port
    assert port is not None
    servers = [opa]
    gk = open_opa_gatekeeper(tmp_path / "gk", opa.url)
    run = Run(gk)
    try:
        run.warm_up()
        for _ in range(2):
            run.permit()

        opa.kill()  # kill -9, mid-run
        outage = [run.denied(ENGINE_DOWN, OPA_TIMEOUT + MARGIN) for _ in range(4)]

        # Restarted on the same port, but with another bundle: never trusted.
        imposter = OpaServer(mutated_pack(tmp_path), opa_bin=opa_bin, port=port)
        servers.append(imposter)
        imposter.start()
        mismatch = [run.denied({"policy_revision_mismatch"}, OPA_TIMEOUT + MARGIN)]
        imposter.kill()
        outage.append(run.denied(ENGINE_DOWN, OPA_TIMEOUT + MARGIN))

        # The right bundle again, on the same port: the same Gatekeeper recovers.
        back = OpaServer(POLICIES_DIR, opa_bin=opa_bin, port=port)
        servers.append(back)
        back.start()
        restarted = time.monotonic()
        first, _ = run.until_permit(within=5.0)
        recovery = first.started + first.seconds - restarted
        for _ in range(2):
            run.permit()
        assert gk.audit is not None
        facts = check_log(gk.audit, run.outcomes, exact=True)
        report(
            "opa-kill",
            outage_denies=len(outage),
            max_outage_deny=max_seconds(outage),
            mismatch_deny=max_seconds(mismatch),
            timeout=OPA_TIMEOUT,
            recovery_after_restart=f"{recovery:.3f}s",
            **facts,
        )
    finally:
        gk.close()
        for server in servers:
            server.stop()


@pytest.mark.opa
def test_opa_slow_then_fast_again(tmp_path: Path, opa_server: OpaServer) -> None:
    assert opa_server.port is not None
    with FaultyHttpFront(opa_server.port) as front:
        gk = open_opa_gatekeeper(tmp_path / "gk", front.url)
        run = Run(gk)
        try:
            run.warm_up()
            run.permit()
            front.delay = 2.0
            front.mode = "delay"  # every answer, decision or revision check, 2 s late
            slow = [run.denied({"engine_timeout"}, OPA_TIMEOUT + MARGIN) for _ in range(3)]
            for o in slow:
                assert o.seconds >= OPA_TIMEOUT * 0.9, "denied before the timeout: not slow?"
            front.mode = "pass"  # the delay switched off at runtime
            fast_again = time.monotonic()
            first, _ = run.until_permit(within=3.0)
            recovery = first.started + first.seconds - fast_again
            run.permit()
            assert gk.audit is not None
            facts = check_log(gk.audit, run.outcomes, exact=True)
            report(
                "opa-slow",
                slow_denies=len(slow),
                max_slow_deny=max_seconds(slow),
                timeout=OPA_TIMEOUT,
                recovery=f"{recovery:.3f}s",
                **facts,
            )
        finally:
            gk.close()


#: Each fault and the reason of its deny: when it answers the decision query, and
#: when it answers every request (after a fault, the revision check meets it first).
GARBAGE: dict[str, tuple[set[str], set[str]]] = {
    "garbage": ({"engine_bad_response"}, {"engine_bad_response"}),
    "http_500": ({"engine_http_error"}, {"engine_http_error"}),
    "truncated_json": ({"engine_bad_response"}, {"engine_bad_response"}),
    "wrong_shape": (
        {"malformed_policy_output"},
        {"malformed_policy_output", "engine_bad_response"},
    ),
    "not_object": ({"malformed_policy_output"}, {"malformed_policy_output", "engine_bad_response"}),
    "short_body": ({"engine_bad_response"}, {"engine_bad_response"}),
    "reset": ({"engine_unreachable"}, {"engine_unreachable"}),
    "huge": ({"engine_response_too_large"}, {"engine_response_too_large"}),
    "huge_declared": ({"engine_response_too_large"}, {"engine_response_too_large"}),
    "drip_body": ({"engine_timeout"}, {"engine_timeout"}),
    "drip_headers": ({"engine_timeout"}, {"engine_timeout"}),
    "hang": ({"engine_timeout"}, {"engine_timeout"}),
}


@pytest.mark.opa
def test_opa_answering_garbage_mid_run_then_good_again(
    tmp_path: Path, opa_server: OpaServer
) -> None:
    assert opa_server.port is not None
    with FaultyHttpFront(opa_server.port) as front:
        gk = open_opa_gatekeeper(tmp_path / "gk", front.url)
        run = Run(gk)
        seen: dict[str, str] = {}
        slowest: dict[str, float] = {}
        try:
            run.warm_up()
            # The decision query answered with garbage (the revision checks are fine),
            # then every request, revision checks included.
            for decisions_only in (True, False):
                front.decisions_only = decisions_only
                for mode, (on_decision, on_all) in GARBAGE.items():
                    front.mode = mode
                    for _ in range(2):
                        reasons = on_decision if decisions_only else on_all
                        o = run.denied(reasons, OPA_TIMEOUT + MARGIN)
                        seen[mode] = str(o.decision.reason)
                        slowest[mode] = max(slowest.get(mode, 0.0), o.seconds)
                    front.mode = "pass"
                    run.until_permit(within=2.0)
            assert gk.audit is not None
            facts = check_log(gk.audit, run.outcomes, exact=True)
            report(
                "opa-garbage",
                timeout=OPA_TIMEOUT,
                **{m: f"{seen[m]}/{slowest[m]:.3f}s" for m in GARBAGE},
                **facts,
            )
        finally:
            gk.close()


# ------------------------------------------------------------------------ PostgreSQL


def open_pg_gatekeeper(dsn: str, data_dir: Path) -> Gatekeeper:
    from gatekeeper.audit.postgres import PostgresStore

    store = PostgresStore(dsn, lock_timeout=PG_LOCK_TIMEOUT, connect_timeout=PG_CONNECT_TIMEOUT)
    keys = KeyStore(data_dir, origin="faults.test/gatekeeper")
    log = AuditLog(store, keys, timeout=AUDIT_TIMEOUT)
    return Gatekeeper(engine=EmbeddedEngine(load_pack(POLICIES_DIR)), audit=log)


def pg_deny_bound(log: AuditLog) -> float:
    """How long a decision may take while the server refuses or drops connections:
    the log's timeout (the writer fails at once, or within connect_timeout)."""
    return log.timeout + MARGIN


class Loop:
    """Decisions in a background thread, every ``pause`` seconds, until stopped."""

    def __init__(self, run: Run, pause: float = 0.05) -> None:
        self.run = run
        self.pause = pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.error: BaseException | None = None

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.run.attempt()
                self._stop.wait(self.pause)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def wait_for(
        self, what: Callable[[Outcome], bool], count: int, after: float, within: float
    ) -> list[Outcome]:
        """``count`` outcomes started after ``after`` for which ``what`` holds."""
        deadline = time.monotonic() + within
        while True:
            found = [o for o in list(self.run.outcomes) if o.started >= after and what(o)]
            if len(found) >= count:
                return found
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"only {len(found)} of {count} within {within}s"
            time.sleep(0.02)

    def __enter__(self) -> Loop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()


def permitted(o: Outcome) -> bool:
    return o.decision.decision is Effect.PERMIT


def denied(o: Outcome) -> bool:
    return o.decision.decision is Effect.DENY


def test_postgres_restarted_and_stopped_mid_run(
    pg_server: PostgresServer, pg_dsn: str, tmp_path: Path
) -> None:
    gk = open_pg_gatekeeper(pg_dsn, tmp_path)
    log = gk.audit
    assert log is not None
    run = Run(gk)
    recoveries: list[float] = []
    try:
        with Loop(run) as loop:
            loop.wait_for(permitted, 3, after=0, within=10)

            # A restart (pg_ctl restart -m fast): sessions cut, the server back at once.
            cut = time.monotonic()
            pg_server.restart()
            back = time.monotonic()
            restart_seconds = back - cut
            first = loop.wait_for(permitted, 3, after=back, within=10)[0]
            recoveries.append(first.started + first.seconds - back)

            # An outage of a few seconds: stopped, then started again.
            stopped = time.monotonic()
            pg_server.stop_server()
            loop.wait_for(denied, 3, after=time.monotonic(), within=10)
            time.sleep(max(0.0, 2.0 - (time.monotonic() - stopped)))
            pg_server.start_server()
            back = time.monotonic()
            first = loop.wait_for(permitted, 3, after=back, within=10)[0]
            recoveries.append(first.started + first.seconds - back)
        assert loop.error is None, loop.error

        bound = pg_deny_bound(log)
        denies = [o for o in run.outcomes if o.decision.decision is not Effect.PERMIT]
        for o in run.outcomes:
            if o.decision.decision is Effect.PERMIT:
                assert_permit(o)
            else:
                assert_denied(o, AUDIT_DOWN, bound)
        assert denies, "the outage was never seen"
        facts = check_log(log, run.outcomes, exact=False)
        # Every denied decision is in the log at most once (checked), usually not at all;
        # one there is a commit whose acknowledgment was lost: over-reported, never under.
        report(
            "pg-restart-stop",
            restart_took=f"{restart_seconds:.2f}s",
            outage_denies=len(denies),
            max_deny=max_seconds(denies),
            deny_bound=f"{bound:.1f}s",
            max_permit=max_seconds([o for o in run.outcomes if permitted(o)]),
            recoveries=[f"{r:.3f}s" for r in recoveries],
            over_reported=facts["size"] - facts["acknowledged"],
            **facts,
        )
    finally:
        gk.close()


def _via(dsn: str, port: int, proxy_port: int) -> str:
    moved = dsn.replace(f":{port}/", f":{proxy_port}/")
    assert moved != dsn
    return moved


def test_connection_lost_after_commit_over_reports_never_under(
    pg_server: PostgresServer, pg_dsn: str, tmp_path: Path
) -> None:
    from gatekeeper.audit.postgres import PostgresStore

    assert pg_server.port is not None
    with CutProxy(pg_server.port) as proxy:
        assert proxy.port is not None
        gk = open_pg_gatekeeper(_via(pg_dsn, pg_server.port, proxy.port), tmp_path)
        direct = PostgresStore(pg_dsn)
        log = gk.audit
        assert log is not None
        run = Run(gk)
        try:
            run.permit()
            run.permit()
            proxy.cut_after(b"COMMIT\x00")  # forwarded, then the connection is cut
            lost = run.denied({"audit_unavailable"}, pg_deny_bound(log))
            assert proxy.cuts == 1
            # The server got COMMIT before the cut: the entry is there, the caller was denied.
            deadline = time.monotonic() + 5
            while direct.size() < 3:
                assert time.monotonic() < deadline, "the cut commit never showed up"
                time.sleep(0.02)
            logged = json.loads(direct.read_entries(2, 3)[0].data)
            assert logged["decision_id"] == lost.decision.decision_id
            assert logged["decision"] == "permit"  # what the policy said; never released
            # The same Gatekeeper goes on, on a new connection, at the next index.
            after = run.permit()
            assert after.decision.audit is not None and after.decision.audit["index"] == 3
            facts = check_log(log, run.outcomes, exact=False)
            assert facts["size"] == facts["acknowledged"] + 1
            report(
                "pg-ambiguous-commit",
                lost_deny=f"{lost.seconds:.3f}s",
                over_reported=1,
                **facts,
            )
        finally:
            gk.close()
            direct.close()


def test_postgres_frozen_mid_run_then_thawed(
    pg_server: PostgresServer, pg_dsn: str, tmp_path: Path
) -> None:
    """The server stops answering without closing anything (a frozen host, a disk
    stuck in fsync, a proxy that relays nothing): server-side timeouts cannot help.
    The store's client-side watchdog fails the append within call_timeout, so the
    caller hears a definite failure, not "outcome unknown", and the writer is free."""
    from gatekeeper.audit.postgres import PostgresStore

    assert pg_server.port is not None
    with CutProxy(pg_server.port) as proxy:
        assert proxy.port is not None
        gk = open_pg_gatekeeper(_via(pg_dsn, pg_server.port, proxy.port), tmp_path)
        log = gk.audit
        assert log is not None
        store = log.store
        assert isinstance(store, PostgresStore)
        # The store gives up (and retries once, on a connection that cannot be made)
        # before the caller stops waiting for the outcome.
        connect = max(2.0, math.ceil(store.connect_timeout))  # libpq's: whole seconds, >= 2
        writer_bound = store.call_timeout + connect + MARGIN
        assert log.timeout + writer_bound < log.timeout + log.outcome_wait
        run = Run(gk)
        try:
            run.permit()
            proxy.stalled = True
            frozen = run.denied({"audit_unavailable"}, log.timeout + writer_bound)
            assert frozen.seconds >= store.call_timeout * 0.9
            # Still frozen: the writer is free, so the next decision fails just as fast.
            again = run.denied(AUDIT_DOWN, log.timeout + writer_bound)
            proxy.stalled = False
            thawed = time.monotonic()
            first, _ = run.until_permit(within=10.0)
            recovery = first.started + first.seconds - thawed
            run.permit()
            facts = check_log(log, run.outcomes, exact=False)
            report(
                "pg-frozen",
                call_timeout=f"{store.call_timeout:g}s",
                frozen_deny=f"{frozen.seconds:.3f}s",
                second_deny=f"{again.seconds:.3f}s/{again.decision.reason}",
                outcome_wait=f"{log.outcome_wait:g}s",
                recovery=f"{recovery:.3f}s",
                **facts,
            )
        finally:
            proxy.stalled = False
            gk.close()
