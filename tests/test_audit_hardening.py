"""Regression tests for the audit-log hardening (review items 8-12 and the smaller ones)."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.keys import KeyStore
from gatekeeper.audit.log import AuditLog, default_origin
from gatekeeper.audit.note import Checkpoint, Signer, Verifier, sign_checkpoint
from gatekeeper.audit.store import AppendedEntry, SqliteStore, StoredEntry
from gatekeeper.audit.verify import verify_log

ORIGIN = "test.example/log"


def entry(i: int, **extra: Any) -> bytes:
    value = {"i": i, "kind": "test", **extra}
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def tamper(db: Path, sql: str, *params: Any) -> None:
    conn = sqlite3.connect(db)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def problems_of(log: AuditLog, **kwargs: Any) -> list[str]:
    return [str(p) for p in verify_log(log.store, log.keys, **kwargs).problems]


class WrappedStore:
    """Delegates to a real store; hooks let a test interleave with the writer."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lock_timeout = 0.1
        self.before_append: Callable[[], None] | None = None
        self.after_size: Callable[[], None] | None = None

    def append_batch(
        self, entries: Sequence[tuple[bytes, bytes]], sign_checkpoint: Callable[[int, bytes], str]
    ) -> tuple[list[AppendedEntry], str]:
        hook, self.before_append = self.before_append, None
        if hook is not None:
            hook()
        result: tuple[list[AppendedEntry], str] = self.inner.append_batch(entries, sign_checkpoint)
        return result

    def size(self) -> int:
        n: int = self.inner.size()
        hook, self.after_size = self.after_size, None
        if hook is not None:
            hook()
        return n

    def read_entries(self, start: int, end: int) -> list[StoredEntry]:
        result: list[StoredEntry] = self.inner.read_entries(start, end)
        return result

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        result: list[bytes] = self.inner.read_hashes(indexes)
        return result

    def checkpoints(self) -> list[tuple[int, str]]:
        result: list[tuple[int, str]] = self.inner.checkpoints()
        return result

    def latest_checkpoint(self) -> str | None:
        result: str | None = self.inner.latest_checkpoint()
        return result

    def close(self) -> None:
        self.inner.close()


# --- 8: the taken/abandoned race and the bounded wait --------------------------


def test_timed_out_appends_are_never_committed(tmp_path: Path) -> None:
    log = AuditLog.open_sqlite(tmp_path, origin=ORIGIN, timeout=0)
    timed_out: list[bytes] = []
    failures: list[BaseException] = []
    guard = threading.Lock()

    def worker(t: int) -> None:
        for i in range(60):
            data = entry(i, t=t)
            try:
                log.append(data)
            except AuditError as exc:
                if exc.reason != "audit_timeout" or "outcome unknown" in str(exc):
                    with guard:
                        failures.append(exc)
                    continue
                with guard:
                    timed_out.append(data)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(12)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: widen the race window
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(interval)
    log.close()
    assert not failures, failures
    assert timed_out  # with timeout=0 many callers give up
    check = SqliteStore(tmp_path / "audit.sqlite")
    stored = {e.data for e in check.read_entries(0, check.size())}
    check.close()
    committed = [d for d in timed_out if d in stored]
    assert committed == [], f"{len(committed)} timed-out appends were committed"


def test_taken_append_waits_a_bounded_time(tmp_path: Path) -> None:
    """Behind a commit that hangs in the store: a caller whose entry the stuck
    leader took waits ``timeout`` + ``outcome_wait``, then "outcome unknown"; a
    caller whose entry is still queued gives up after ``timeout`` and its entry
    is never written. (The leader itself waits on the store, whose own calls
    are bounded: SQLite's busy timeout, PostgreSQL's call timeout.)"""
    store = WrappedStore(SqliteStore(tmp_path / "audit.sqlite"))
    release = threading.Event()
    entered = threading.Event()

    def stuck() -> None:
        entered.set()
        release.wait(60)

    store.before_append = stuck
    log = AuditLog(store, KeyStore(tmp_path, origin=ORIGIN), timeout=0.5)  # type: ignore[arg-type]
    outcome: dict[int, BaseException | object] = {}
    finished: dict[int, float] = {}

    def call(i: int) -> None:
        try:
            outcome[i] = log.append(entry(i))
        except BaseException as exc:
            outcome[i] = exc
        finished[i] = time.monotonic()

    callers = [threading.Thread(target=call, args=(i,), daemon=True) for i in (0, 1)]
    with log._turn:  # both entries queue before anyone leads
        log._owner = log
    started = time.monotonic()
    for caller in callers:
        caller.start()
    while len(log._queue) < 2:
        time.sleep(0.001)
    with log._turn:  # hand the lead to the first caller: it takes both entries
        log._owner = log._queue[0]
        log._queue[0].wake.set()
    try:
        assert entered.wait(5), "no caller led the commit"
        late = threading.Thread(target=call, args=(2,), daemon=True)  # queued behind it
        late.start()
        late.join(5)
        assert not late.is_alive()
        assert isinstance(outcome[2], AuditError) and outcome[2].reason == "audit_timeout"
        assert "not durable within 0.5s" in str(outcome[2])
        # The follower whose entry the leader took: bounded, "outcome unknown".
        deadline = started + 0.5 + 3 * 0.1 + 5 + 2
        while len(outcome) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        (follower,) = [i for i in (0, 1) if i in outcome]
        assert isinstance(outcome[follower], AuditError), outcome
        assert outcome[follower].reason == "audit_timeout"  # type: ignore[union-attr]
        assert "outcome unknown" in str(outcome[follower])
        assert finished[follower] - started < 0.5 + 3 * 0.1 + 5 + 1
    finally:
        release.set()
    for caller in callers:
        caller.join(5)
    (leader,) = [i for i in (0, 1) if i != follower]
    assert not isinstance(outcome[leader], BaseException), outcome[leader]
    # Both taken entries are in the log (the follower's outcome was unknown to
    # it, not lost: over-reporting, the safe direction); the abandoned one is not.
    after = log.append(entry(3))
    assert after.index == 2
    stored = [json.loads(e.data)["i"] for e in store.inner.read_entries(0, 3)]
    assert sorted(stored[:2]) == [0, 1] and stored[2] == 3
    log.close()


# --- 9: key rotation ------------------------------------------------------------


def _signature_count(note: str) -> int:
    return note.count("\u2014 ")


def test_rotation_checkpoint_is_cosigned_despite_a_concurrent_batch(tmp_path: Path) -> None:
    store = WrappedStore(SqliteStore(tmp_path / "audit.sqlite"))
    release = threading.Event()
    store.before_append = lambda: release.wait(10) and None
    log = AuditLog(store, KeyStore(tmp_path, origin=ORIGIN))  # type: ignore[arg-type]
    try:
        first = threading.Thread(target=log.append, args=(entry(0),))
        first.start()
        time.sleep(0.2)  # the writer now holds entry 0 in append_batch
        rotated: list[str] = []
        rotator = threading.Thread(target=lambda: rotated.append(log.rotate_key()))
        rotator.start()
        time.sleep(0.3)  # the rotation entry is queued behind entry 0's batch
        release.set()
        first.join(10)
        rotator.join(10)
        assert rotated
        entries = store.read_entries(0, store.size())
        rotation_index = next(
            e.index for e in entries if json.loads(e.data).get("kind") == "key_rotation"
        )
        covering = next(n for s, n in store.checkpoints() if s > rotation_index)
        assert _signature_count(covering) == 2, covering
        report = verify_log(store, log.keys)  # type: ignore[arg-type]
        assert report.ok, report.problems
    finally:
        release.set()
        log.close()


def test_other_instances_pick_up_a_rotated_key(tmp_path: Path) -> None:
    a = AuditLog.open_sqlite(tmp_path, origin=ORIGIN)
    b = AuditLog.open_sqlite(tmp_path, origin=ORIGIN)
    try:
        a.append(entry(0))
        b.append(entry(1))
        stop = threading.Event()

        def keep_appending(t: int) -> None:
            i = 0
            while not stop.is_set():
                b.append(entry(i, t=t))
                i += 1

        threads = [threading.Thread(target=keep_appending, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        time.sleep(0.1)
        a.rotate_key()
        time.sleep(0.1)
        new_vkey = a.rotate_key()
        time.sleep(0.1)
        stop.set()
        for th in threads:
            th.join()
        receipt = b.append(entry(10_000))
        (stored,) = b.store.read_entries(receipt.index, receipt.index + 1)
        assert Verifier(new_vkey).verify(stored.data, stored.signature)
        assert b.keys.vkey() == new_vkey
        report = verify_log(a.store, a.keys)
        assert report.ok, report.problems[:5]
    finally:
        a.close()
        b.close()


@pytest.fixture
def rotated(tmp_path: Path) -> tuple[Path, AuditLog, Signer]:
    log = AuditLog.open_sqlite(tmp_path, origin=ORIGIN)
    for i in range(5):
        log.append(entry(i))
    old_id = log.keys.records()[0].key_id
    log.rotate_key()
    for i in range(5, 10):
        log.append(entry(i))
    old = Signer(ORIGIN, log.keys._load_private(tmp_path / "keys" / f"{old_id}.pem"))
    assert problems_of(log) == []
    return tmp_path / "audit.sqlite", log, old


def test_entry_signed_by_a_retired_key_is_flagged(rotated: tuple[Path, AuditLog, Signer]) -> None:
    db, log, old = rotated
    (data,) = sqlite3.connect(db).execute("SELECT data FROM entries WHERE idx = 8").fetchone()
    tamper(db, "UPDATE entries SET signature = ? WHERE idx = 8", old.sign(bytes(data)))
    found = problems_of(log)
    assert any(p.startswith("entry 8:") and "not active" in p for p in found), found
    log.close()


def test_checkpoint_signed_only_by_a_retired_key_is_flagged(
    rotated: tuple[Path, AuditLog, Signer],
) -> None:
    db, log, old = rotated
    size = log.size()
    forged = sign_checkpoint(Checkpoint(ORIGIN, size, log.root()), [old])
    tamper(
        db, "UPDATE checkpoints SET note = ? WHERE id = (SELECT MAX(id) FROM checkpoints)", forged
    )
    found = problems_of(log)
    assert any("checkpoint" in p and "not active" in p for p in found), found
    log.close()


# --- 10: what verify missed ------------------------------------------------------


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, AuditLog]:
    log = AuditLog.open_sqlite(tmp_path, origin=ORIGIN)
    for i in range(20):
        log.append(entry(i))
    return tmp_path / "audit.sqlite", log


def test_entries_past_the_latest_checkpoint_are_flagged(filled: tuple[Path, AuditLog]) -> None:
    db, log = filled
    tamper(db, "DELETE FROM checkpoints WHERE id = (SELECT MAX(id) FROM checkpoints)")
    found = problems_of(log)
    assert any("1 entries after the latest checkpoint" in p for p in found), found
    log.close()


def test_duplicate_decision_ids_are_flagged(tmp_path: Path) -> None:
    with AuditLog.open_sqlite(tmp_path, origin=ORIGIN) as log:
        log.append_value({"kind": "decision", "decision_id": "d-1"})
        log.append_value({"kind": "decision", "decision_id": "d-2"})
        log.append_value({"kind": "decision", "decision_id": "d-1"})
        found = problems_of(log)
    assert any(p.startswith("entry 2:") and "decision_id" in p for p in found), found


def test_pinned_verifier_keys_ignore_the_keyring(filled: tuple[Path, AuditLog]) -> None:
    db, log = filled
    real = log.keys.vkey()
    intruder = Signer(ORIGIN, Ed25519PrivateKey.generate())
    (data,) = sqlite3.connect(db).execute("SELECT data FROM entries WHERE idx = 3").fetchone()
    tamper(db, "UPDATE entries SET signature = ? WHERE idx = 3", intruder.sign(bytes(data)))
    ring = log.keys.dir / "keyring.json"
    raw = json.loads(ring.read_text())
    raw["keys"].append(
        {
            "key_id": intruder.key_id.hex(),
            "vkey": intruder.vkey,
            "created": "2024-01-01T00:00:00Z",
            "first_size": 0,
            "last_size": None,
        }
    )
    ring.write_text(json.dumps(raw))
    assert problems_of(log) == []  # the keyring next to the data vouches for the intruder
    found = problems_of(log, vkeys=[real])
    assert any(p.startswith("entry 3:") and "signature" in p for p in found), found
    assert problems_of(log, vkeys=[intruder.vkey])  # nothing else is signed by it
    log.close()


# --- 11: verifying a live log -------------------------------------------------------


def test_verify_a_log_that_grows_meanwhile(tmp_path: Path) -> None:
    with AuditLog.open_sqlite(tmp_path, origin=ORIGIN) as log:
        for i in range(5):
            log.append(entry(i))
        other = AuditLog.open_sqlite(tmp_path, origin=ORIGIN)
        try:
            view = WrappedStore(log.store)
            view.after_size = lambda: other.append(entry(100)) and None
            report = verify_log(view, log.keys)  # type: ignore[arg-type]
            assert report.ok, report.problems
            # and the other way round: a commit right before the size is read
            report = verify_log(log.store, log.keys)
            assert report.ok, report.problems
        finally:
            other.close()


def test_verify_while_writers_append(tmp_path: Path) -> None:
    with AuditLog.open_sqlite(tmp_path, origin=ORIGIN) as log:
        stop = threading.Event()

        def writer(t: int) -> None:
            # Bounded: each verify reads the whole log, so an unbounded writer
            # makes the test quadratic in the machine's append rate.
            for i in range(400):
                if stop.is_set():
                    return
                log.append(entry(i, t=t))
                time.sleep(0.001)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        try:
            time.sleep(0.05)
            for _ in range(15):
                report = verify_log(log.store, log.keys)
                assert report.ok, report.problems[:5]
            for th in threads:
                th.join()
            final = verify_log(log.store, log.keys)
            assert final.ok and final.size == 1600, final.problems[:5]
        finally:
            stop.set()
            for th in threads:
                th.join()


# --- 12: the origin file --------------------------------------------------------------


def test_default_origin_is_created_once_under_a_race(tmp_path: Path) -> None:
    for round_ in range(20):
        base = tmp_path / f"d{round_}"
        barrier = threading.Barrier(8)
        got: list[str] = []

        def one(base: Path = base, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            got.append(default_origin(base))

        threads = [threading.Thread(target=one) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(got) == 8 and all(got), got
        assert len(set(got)) == 1, got
        assert (base / "origin").read_text().strip() == got[0]


def test_default_origin_across_processes(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import REPO_ROOT

    code = (
        "import sys, time; from pathlib import Path\n"
        "from gatekeeper.audit.log import default_origin\n"
        "t = float(sys.argv[2])\n"
        "while time.time() < t: pass\n"
        "print(default_origin(Path(sys.argv[1])))\n"
    )
    for round_ in range(3):
        base = tmp_path / f"p{round_}"
        start = time.time() + 1.5
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(base), str(start)],
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO_ROOT,
            )
            for _ in range(8)
        ]
        outs = [p.communicate(timeout=30)[0].strip() for p in procs]
        assert all(outs) and len(set(outs)) == 1, outs


# --- smaller ones -------------------------------------------------------------------------


def test_sqlite_checkpoint_reads_raise_audit_errors(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "audit.sqlite")
    tamper(tmp_path / "audit.sqlite", "DROP TABLE checkpoints")
    with pytest.raises(AuditError):
        store.checkpoints()
    with pytest.raises(AuditError):
        store.latest_checkpoint()
    store.close()


def test_postgres_store_forces_synchronous_commit(pg_dsn: str) -> None:
    import psycopg

    from gatekeeper.audit.postgres import PostgresStore

    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        (name,) = admin.execute("SELECT current_database()").fetchone() or ("",)
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    store = PostgresStore(pg_dsn)
    try:
        store.size()
        with store._lock:
            assert store._conn is not None
            row = store._conn.execute("SHOW synchronous_commit").fetchone()
        assert row is not None and row[0] == "on"
    finally:
        store.close()


def test_a_new_sqlite_store_is_owner_only(tmp_path: Path) -> None:
    """The database, its WAL and shared-memory files, and the key directory: 0600 / 0700."""
    data = tmp_path / "fresh"
    with AuditLog.open_sqlite(data, origin="test.example/log") as log:
        log.append(b'{"n":1}')
        modes = {p.name: p.stat().st_mode & 0o777 for p in data.iterdir()}
    assert modes["audit.sqlite"] == 0o600
    assert modes["audit.sqlite-wal"] == 0o600 and modes["audit.sqlite-shm"] == 0o600
    assert modes["keys"] == 0o700
    assert data.stat().st_mode & 0o777 == 0o700


_HOG = """
import sys, threading
from gatekeeper.audit.log import AuditLog
log = AuditLog.open_sqlite(sys.argv[1], origin=sys.argv[2])
def run(t):
    i = 0
    while True:
        log.append(b'{"i":%d,"kind":"hog","t":%d}' % (i, t))
        i += 1
for t in range(4):
    threading.Thread(target=run, args=(t,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_process_is_not_starved_by_another_writing_back_to_back(tmp_path: Path) -> None:
    """Another process whose writer commits back to back (four threads
    appending without pause) used to keep SQLite's write lock nearly always:
    this process's appends waited out busy_timeout and were denied although
    the log was healthy. With writer turns each append gets in promptly."""
    import subprocess

    log = AuditLog.open_sqlite(tmp_path, origin=ORIGIN)
    hog = subprocess.Popen(
        [sys.executable, "-c", _HOG, str(tmp_path), ORIGIN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hog.stdout is not None and hog.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        size_before = log.store.size()
        waits = []
        for i in range(40):
            t0 = time.monotonic()
            log.append(entry(i))  # raises audit_store_locked after busy_timeout (2 s)
            waits.append(time.monotonic() - t0)
        hogged = log.store.size() - size_before - 40
        assert hogged > 40, "the other process was not writing"
        waits.sort()
        median, longest = waits[len(waits) // 2], waits[-1]
        assert longest < 1.0 and median < 0.1, f"median {median:.4f} s, max {longest:.4f} s"
    finally:
        hog.kill()
        hog.wait()
        log.close()
    reopened = AuditLog.open_sqlite(tmp_path, origin=ORIGIN)
    try:
        assert verify_log(reopened.store, reopened.keys).ok
    finally:
        reopened.close()


def test_group_commit_under_timeouts_loses_no_lead_and_writes_no_abandoned_entry(
    tmp_path: Path,
) -> None:
    """Sixteen threads, a store that is slow now and then, a timeout shorter
    than a slow commit: callers give up (abandoned entries), leads are handed
    to callers that are about to give up. Afterwards: every receipt is in the
    log at its index with its leaf hash, no entry its caller gave up on was
    written, and the log still takes appends (the lead was never lost)."""
    import random

    store = WrappedStore(SqliteStore(tmp_path / "audit.sqlite"))
    inner_append = store.append_batch
    rng = random.Random(7)

    def sometimes_slow(entries: Any, sign: Any) -> Any:
        if rng.random() < 0.2:
            time.sleep(0.03)
        return inner_append(entries, sign)

    store.append_batch = sometimes_slow  # type: ignore[method-assign]
    log = AuditLog(store, KeyStore(tmp_path, origin=ORIGIN), timeout=0.02)  # type: ignore[arg-type]
    receipts: dict[bytes, int] = {}
    abandoned: set[bytes] = set()
    unknown: set[bytes] = set()
    lock = threading.Lock()
    stop = time.monotonic() + 3.0

    def run(t: int) -> None:
        i = 0
        while time.monotonic() < stop:
            data = entry(i, t=t)
            i += 1
            try:
                receipt = log.append(data)
            except AuditError as exc:
                with lock:
                    (unknown if "outcome unknown" in str(exc) else abandoned).add(data)
                    assert "not durable" in str(exc) or "outcome unknown" in str(exc), exc
                continue
            with lock:
                receipts[data] = receipt.index

    threads = [threading.Thread(target=run, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not any(th.is_alive() for th in threads), "a caller hung: the lead was lost"
    assert receipts and abandoned, (len(receipts), len(abandoned))
    last = log.append(entry(-1))  # the lead is free
    stored = {e.data: e.index for e in store.inner.read_entries(0, last.index)}
    for data, index in receipts.items():
        assert stored.get(data) == index
    assert not abandoned & stored.keys(), "an entry whose caller gave up was written"
    assert set(stored) <= set(receipts) | unknown
    assert verify_log(store.inner, log.keys).ok
    log.close()


def test_a_caller_interrupted_after_being_handed_the_lead_passes_it_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower handed the lead that is interrupted (KeyboardInterrupt, or
    SystemExit from a signal handler) before it leads passes the lead on; its
    entry is not written, and the log keeps taking appends (found in review:
    the lead was lost for good and every later append timed out)."""
    import gatekeeper.audit.log as log_module

    class Interrupting(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            super().wait(timeout)
            raise KeyboardInterrupt

    class Pending(log_module._Pending):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.data == entry(1):
                self.wake = Interrupting()

    monkeypatch.setattr(log_module, "_Pending", Pending)
    log = AuditLog.open_sqlite(tmp_path, origin=ORIGIN, timeout=2.0)
    log.append(entry(0))
    outcome: list[BaseException] = []

    def follower() -> None:
        try:
            log.append(entry(1))
        except BaseException as exc:
            outcome.append(exc)

    with log._turn:
        log._owner = log  # hold the lead: the follower queues
    thread = threading.Thread(target=follower)
    thread.start()
    while not log._queue:
        time.sleep(0.001)
    with log._turn:
        log._pass_lead_locked()  # hand it the lead; its wait raises at once
    thread.join(5)
    assert outcome and isinstance(outcome[0], KeyboardInterrupt)
    assert log._owner is None
    started = time.monotonic()
    receipt = log.append(entry(2))
    assert time.monotonic() - started < 1.0
    assert receipt.index == 1  # entry 1 was never written
    log.close()


def test_the_hash_cache_survives_being_cleared_mid_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores on one file take turns, so most commits read hashes the other
    wrote; with a tiny cache it is cleared in the middle of a read (found in
    review: a KeyError failed the append)."""
    import gatekeeper.audit.store as store_module

    monkeypatch.setattr(store_module, "_HASH_CACHE", 40)
    a = AuditLog.open_sqlite(tmp_path, origin=ORIGIN)
    b = AuditLog.open_sqlite(tmp_path, origin=ORIGIN)
    try:
        for i in range(300):
            (a if i % 2 else b).append(entry(i))
        assert a.size() == 300
        assert verify_log(a.store, a.keys).ok
    finally:
        a.close()
        b.close()


def test_without_ofd_locks_writers_go_without_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where fcntl has no open-file-description locks (not Linux), the writer
    turns are off and appends work as before (found in review: every append
    failed with AttributeError)."""
    import fcntl

    for name in ("F_OFD_GETLK", "F_OFD_SETLK"):
        monkeypatch.delattr(fcntl, name, raising=False)
    log = AuditLog.open_sqlite(tmp_path, origin=ORIGIN)
    try:
        assert [log.append(entry(i)).index for i in range(3)] == [0, 1, 2]
        assert not (tmp_path / "audit.sqlite-writers").exists()
    finally:
        log.close()


def test_an_interrupt_inside_a_commit_is_raised_not_swallowed(tmp_path: Path) -> None:
    """KeyboardInterrupt (or SystemExit) inside the store reaches the caller as
    itself, not as an AuditError, after the batch's waiters are settled; the
    log takes appends afterwards."""
    store = WrappedStore(SqliteStore(tmp_path / "audit.sqlite"))

    def interrupt() -> None:
        raise KeyboardInterrupt

    store.before_append = interrupt
    log = AuditLog(store, KeyStore(tmp_path, origin=ORIGIN), timeout=2.0)  # type: ignore[arg-type]
    try:
        with pytest.raises(KeyboardInterrupt):
            log.append(entry(0))
        assert log._owner is None and not log._queue
        assert log.append(entry(1)).index == 0
    finally:
        log.close()
