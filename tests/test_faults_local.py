"""Fault injection with real processes and filesystems, no mocks.

Each fault is injected from outside the Gatekeeper: another process holds
SQLite's write lock, a real tmpfs fills up, the key file on disk is damaged,
a real libfaketime moves a gatekeeper process's wall clock. For each, every
affected decision is a ``deny`` with a reason code within the configured
timeout and discloses nothing, the log verifies afterwards, and the same
Gatekeeper instance recovers by itself once the fault ends.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

import gatekeeper
from gatekeeper import AccessDenied, Gatekeeper
from gatekeeper.audit import merkle
from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.keys import RETRY_INTERVAL
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.verify import verify_log
from gatekeeper.config import load_settings
from gatekeeper.decision import Decision, Effect
from gatekeeper.engines import EmbeddedEngine, load_pack
from tests.conftest import POLICIES_DIR, REPO_ROOT, skip_or_fail

CASES = {
    json.loads(line)["id"]: json.loads(line)["request"]
    for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    if line.strip()
}
PERMIT = CASES["A01"]  # a teacher of record: a permit on a healthy gatekeeper
ENV = dict(os.environ, PYTHONPATH=str(REPO_ROOT))


@pytest.fixture(scope="module")
def engine() -> Iterator[EmbeddedEngine]:
    """One real embedded engine for the in-process tests (the pack loads once)."""
    shared = EmbeddedEngine(load_pack(POLICIES_DIR))
    yield shared
    shared.close()


def open_gk(engine: EmbeddedEngine, data_dir: Path, **settings: Any) -> Gatekeeper:
    """A Gatekeeper wired as ``gatekeeper.open_with`` does, on a shared engine."""
    loaded = load_settings(None, data_dir=data_dir, **settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    return Gatekeeper(
        engine=engine,
        audit=gatekeeper.open_audit_log(loaded),
        clock_tolerance=loaded.clock_tolerance,
        clock_settle=loaded.clock_settle,
    )


def audit_of(gk: Gatekeeper) -> AuditLog:
    assert gk.audit is not None
    return gk.audit


def assert_denied(decision: Decision, reasons: set[str], *, audited: bool = False) -> None:
    """A deny naming one of ``reasons``, disclosing nothing."""
    assert decision.decision is Effect.DENY, decision.to_dict()
    assert decision.reason in reasons, decision.to_dict()
    assert decision.allowed_fields == ()
    assert set(PERMIT["fields"]) <= set(decision.denied_fields)
    assert "Release nothing" in decision.guidance
    assert (decision.audit is not None) is audited, decision.to_dict()


def assert_access_refused(gk: Gatekeeper) -> None:
    """``access`` raises before the lookup runs: nothing of the record leaves."""
    looked_up: list[bool] = []
    with pytest.raises(AccessDenied), gk.access(PERMIT) as grant:
        looked_up.append(True)
        grant.redact({"grades": "A", "attendance": 1})
    assert looked_up == []


def timed_decide(gk: Gatekeeper) -> tuple[Decision, float]:
    started = time.monotonic()
    decision = gk.decide(PERMIT)
    return decision, time.monotonic() - started


def until_permit(gk: Gatekeeper, *, within: float) -> tuple[Decision, float]:
    """Decide PERMIT until it is permitted (the fault ended); (decision, seconds)."""
    started = time.monotonic()
    while True:
        decision = gk.decide(PERMIT)
        if decision.permitted:
            return decision, time.monotonic() - started
        assert decision.allowed_fields == ()
        assert time.monotonic() - started < within, f"no recovery: {decision.to_dict()}"
        time.sleep(0.05)


def assert_log_holds(log: AuditLog, acknowledged: list[Decision]) -> None:
    """The log verifies, every checkpointed size covers every entry, and each
    acknowledged decision's entry is where its receipt says, unchanged."""
    report = verify_log(log.store, log.keys)
    assert report.ok, report.problems
    size = log.size()
    assert max(s for s, _ in log.store.checkpoints()) == size  # no entry without its checkpoint
    stored = {e.index: e.data for e in log.store.read_entries(0, size)}
    for decision in acknowledged:
        assert decision.audit is not None
        data = stored[int(decision.audit["index"])]
        assert merkle.leaf_hash(data).hex() == decision.audit["leaf_hash"]
        assert json.loads(data)["decision_id"] == decision.decision_id


# --------------------------------------------------------------------- 1. locked store

LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
db.execute("BEGIN " + sys.argv[2])
db.execute("UPDATE head SET size = size WHERE id = 1")  # a real write, never committed
sys.stdout.write("locked\\n"); sys.stdout.flush()
sys.stdin.readline()
db.execute("ROLLBACK")
sys.stdout.write("released\\n"); sys.stdout.flush()
"""


@pytest.mark.parametrize("mode", ["EXCLUSIVE", "IMMEDIATE"])
def test_store_locked_by_another_process(engine: EmbeddedEngine, tmp_path: Path, mode: str) -> None:
    timeout = 0.5
    gk = open_gk(engine, tmp_path, audit_timeout=timeout)
    log = audit_of(gk)
    # The write lock's wait is bounded and configured by audit_timeout.
    assert getattr(log.store, "busy_timeout", None) == timeout and log.timeout == timeout
    acknowledged = [gk.decide(PERMIT)]
    assert acknowledged[0].permitted
    # Six deciding threads, each with its engine compiled (warm) beforehand.
    pool = ThreadPoolExecutor(max_workers=6)
    barrier = threading.Barrier(6)

    def warm(_: int) -> Decision:
        barrier.wait(30)
        return gk.decide(PERMIT)

    acknowledged += list(pool.map(warm, range(6)))
    assert all(d.permitted for d in acknowledged)
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(tmp_path / "audit.sqlite"), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdin is not None
        assert locker.stdout.readline().strip() == "locked"
        # Sequential callers and concurrent ones (queued behind a batch the
        # writer has taken): each deny comes within timeout + busy_timeout.
        bound = timeout + timeout + 0.5
        for _ in range(2):
            started = time.monotonic()
            assert_denied(gk.decide(PERMIT), {"audit_store_locked", "audit_timeout"})
            assert time.monotonic() - started < bound
        results = list(pool.map(lambda _: timed_decide(gk), range(6)))
        assert len(results) == 6
        for decision, elapsed in results:
            assert_denied(decision, {"audit_store_locked", "audit_timeout"})
            assert elapsed < bound, elapsed
        assert_access_refused(gk)
        size_during = log.size()
        locker.stdin.write("\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "released"
    finally:
        locker.kill()
        locker.wait()
        pool.shutdown()
    decision, recovery = until_permit(gk, within=2 * timeout + 1.0)
    assert recovery < 2 * timeout
    acknowledged.append(decision)
    assert size_during == 7  # nothing of the denied decisions was written
    assert_log_holds(log, acknowledged)
    assert log.size() == 8
    gk.close()


# ----------------------------------------------------------------------- 2. disk full


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MiB tmpfs, mounted for the test and unmounted after it."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem has no byte left; its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    written = 0
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 512, 1):
            block = b"\0" * chunk
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
                written += n
                if n < chunk:
                    break
    finally:
        os.close(fd)
    return written


def test_disk_full(engine: EmbeddedEngine, small_fs: Path) -> None:
    timeout = 1.0
    gk = open_gk(engine, small_fs / "data", audit_timeout=timeout)
    log = audit_of(gk)
    acknowledged = [gk.decide(PERMIT) for _ in range(3)]
    assert all(d.permitted for d in acknowledged)
    filler = small_fs / "filler"
    assert fill(filler) > 0
    # SQLite may still have room in its WAL: decide until an append fails.
    first_failure: Decision | None = None
    for _ in range(5000):
        started = time.monotonic()
        decision = gk.decide(PERMIT)
        elapsed = time.monotonic() - started
        if decision.permitted:
            acknowledged.append(decision)
            continue
        first_failure = decision
        break
    assert first_failure is not None, "the disk never filled up"
    assert_denied(first_failure, {"audit_disk_full"})
    assert elapsed < timeout
    for _ in range(3):
        started = time.monotonic()
        assert_denied(gk.decide(PERMIT), {"audit_disk_full"})
        assert time.monotonic() - started < timeout
    assert_access_refused(gk)
    assert_log_holds(log, acknowledged)  # nothing half-written, even while full
    size_full = log.size()
    filler.unlink()
    decision, recovery = until_permit(gk, within=2.0)
    acknowledged.append(decision)
    assert recovery < 1.0
    assert_log_holds(log, acknowledged)
    assert log.size() == size_full + 1 == len(acknowledged)
    gk.close()


# -------------------------------------------------------------------- 3. key file faults

PASSPHRASE = b"correct horse battery staple 7"


def _pem_bytes(key: Any, passphrase: bytes | None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )


def _key_dir_state(data_dir: Path) -> tuple[list[str], bytes]:
    keys = data_dir / "keys"
    return sorted(p.name for p in keys.glob("*.pem")), (keys / "keyring.json").read_bytes()


def _assert_no_secret(message: str, pem: bytes) -> None:
    body = b"".join(pem.splitlines()[1:-1]).decode()
    assert PASSPHRASE.decode() not in message and "wrong-passphrase" not in message
    for start in range(0, max(1, len(body) - 16), 8):
        assert body[start : start + 16] not in message


FAULTS = ["garbage", "directory", "encrypted_no_passphrase", "encrypted_wrong_passphrase"]


@pytest.mark.parametrize("configured", [False, True], ids=["generated", "key_path"])
@pytest.mark.parametrize("fault", FAULTS)
def test_unreadable_key_at_startup(
    engine: EmbeddedEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    configured: bool,
) -> None:
    """The key is damaged before the gatekeeper starts: every decision denies
    (``audit_key_unavailable``), no replacement key is generated, and the same
    instance signs again within ~RETRY_INTERVAL of the file being repaired."""
    data_dir = tmp_path / "data"
    encrypted = fault.startswith("encrypted")
    key_path = tmp_path / "conf" / "log-key.pem" if configured else None
    monkeypatch.delenv("GATEKEEPER_KEY_PASSPHRASE", raising=False)
    if encrypted:
        monkeypatch.setenv("GATEKEEPER_KEY_PASSPHRASE", PASSPHRASE.decode())
    settings: dict[str, Any] = {"audit_timeout": 1.0}
    if key_path is not None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key_path.parent.mkdir()
        key_path.write_bytes(
            _pem_bytes(Ed25519PrivateKey.generate(), PASSPHRASE if encrypted else None)
        )
        settings["key_path"] = key_path
    first = open_gk(engine, data_dir, **settings)
    acknowledged = [first.decide(PERMIT)]
    assert acknowledged[0].permitted
    first.close()
    pem_path = key_path or next((data_dir / "keys").glob("*.pem"))
    good = pem_path.read_bytes()
    key = serialization.load_pem_private_key(good, password=PASSPHRASE if encrypted else None)
    before = _key_dir_state(data_dir)

    if fault == "garbage":
        pem_path.write_bytes(os.urandom(64) + good[40:200] + os.urandom(64))
        repaired = good
    elif fault == "directory":
        pem_path.unlink()
        pem_path.mkdir()
        repaired = good
    elif fault == "encrypted_no_passphrase":
        monkeypatch.delenv("GATEKEEPER_KEY_PASSPHRASE")
        repaired = _pem_bytes(key, None)  # the operator stores it decrypted
    else:
        monkeypatch.setenv("GATEKEEPER_KEY_PASSPHRASE", "wrong-passphrase")
        repaired = _pem_bytes(key, b"wrong-passphrase")  # re-encrypted for this passphrase

    gk = open_gk(engine, data_dir, **settings)
    log = audit_of(gk)
    for _ in range(3):
        started = time.monotonic()
        assert_denied(gk.decide(PERMIT), {"audit_key_unavailable"})
        assert time.monotonic() - started < 1.0
    assert_access_refused(gk)
    with pytest.raises(AuditError) as info:
        log.append(b'{"probe":1}')
    assert info.value.reason == "audit_key_unavailable"
    _assert_no_secret(str(info.value), good)
    assert _key_dir_state(data_dir) == before  # no replacement key, keyring untouched
    assert log.size() == 1

    if pem_path.is_dir():
        pem_path.rmdir()
    tmp = pem_path.with_suffix(".tmp")
    tmp.write_bytes(repaired)
    tmp.chmod(0o600)
    tmp.replace(pem_path)
    decision, recovery = until_permit(gk, within=RETRY_INTERVAL + 4.0)
    assert recovery <= RETRY_INTERVAL + 1.5  # retried at most once a second
    acknowledged.append(decision)
    assert _key_dir_state(data_dir)[0] == before[0]
    assert len(log.keys.records()) == 1  # the same key, before and after
    assert_log_holds(log, acknowledged)
    gk.close()


def test_key_file_damaged_while_running(engine: EmbeddedEngine, tmp_path: Path) -> None:
    """The key is damaged on disk while the gatekeeper runs.

    The running log keeps signing with the key it loaded (acceptable: the
    key in memory is intact). A rotation re-reads the active key from disk
    and fails closed, leaving no new key behind; a restarted instance (a
    reload) denies; once the file is repaired, the rotation goes through.
    """
    gk = open_gk(engine, tmp_path, audit_timeout=1.0)
    log = audit_of(gk)
    acknowledged = [gk.decide(PERMIT)]
    pem_path = next((tmp_path / "keys").glob("*.pem"))
    good = pem_path.read_bytes()
    pem_path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n" + os.urandom(48).hex().encode() + b"\n")
    before = _key_dir_state(tmp_path)

    acknowledged.append(gk.decide(PERMIT))
    assert acknowledged[-1].permitted  # the key in memory
    with pytest.raises(AuditError) as info:
        log.rotate_key()
    assert info.value.reason == "audit_key_unavailable"
    _assert_no_secret(str(info.value), good)
    assert _key_dir_state(tmp_path) == before  # no half-made rotation

    restarted = open_gk(engine, tmp_path, audit_timeout=1.0)
    assert_denied(restarted.decide(PERMIT), {"audit_key_unavailable"})
    assert _key_dir_state(tmp_path) == before

    pem_path.write_bytes(good)
    log.rotate_key()
    acknowledged.append(gk.decide(PERMIT))
    assert acknowledged[-1].permitted
    decision, _ = until_permit(restarted, within=RETRY_INTERVAL + 4.0)  # picks up the rotation
    acknowledged.append(decision)
    assert len(log.keys.records()) == 2
    assert_log_holds(log, acknowledged)
    restarted.close()
    gk.close()


def test_rotated_key_unreadable_on_reload(engine: EmbeddedEngine, tmp_path: Path) -> None:
    """Another instance rotates the key, and the new key file is damaged: this
    instance's reload fails closed, and recovers once the file is repaired."""
    gk = open_gk(engine, tmp_path, audit_timeout=1.0)
    other = open_gk(engine, tmp_path, audit_timeout=1.0)
    acknowledged = [gk.decide(PERMIT), other.decide(PERMIT)]
    new_vkey = audit_of(other).rotate_key()
    new_id = audit_of(other).keys.records()[-1].key_id
    new_pem = tmp_path / "keys" / f"{new_id}.pem"
    good = new_pem.read_bytes()
    new_pem.write_bytes(os.urandom(len(good)))
    assert_denied(gk.decide(PERMIT), {"audit_key_unavailable"})
    assert_denied(gk.decide(PERMIT), {"audit_key_unavailable"})
    new_pem.write_bytes(good)
    decision, recovery = until_permit(gk, within=RETRY_INTERVAL + 4.0)
    assert recovery <= RETRY_INTERVAL + 1.5  # retried at most once a second
    acknowledged.append(decision)
    assert audit_of(gk).keys.vkey() == new_vkey
    assert_log_holds(audit_of(gk), acknowledged)
    other.close()
    gk.close()


@pytest.mark.parametrize("when", ["startup", "running"])
def test_keyring_lost_never_swaps_the_key(
    engine: EmbeddedEngine, tmp_path: Path, when: str
) -> None:
    """keyring.json disappears while the key file and the entries remain: no new
    key is generated (a silent key swap); restoring the keyring recovers."""
    gk = open_gk(engine, tmp_path, audit_timeout=1.0)
    acknowledged = [gk.decide(PERMIT)]
    ring = tmp_path / "keys" / "keyring.json"
    saved = ring.read_bytes()
    pems = sorted((tmp_path / "keys").glob("*.pem"))
    if when == "startup":
        gk.close()
    ring.unlink()
    if when == "startup":
        gk = open_gk(engine, tmp_path, audit_timeout=1.0)
    assert_denied(gk.decide(PERMIT), {"audit_key_unavailable"})
    assert sorted((tmp_path / "keys").glob("*.pem")) == pems and not ring.exists()
    ring.write_bytes(saved)
    decision, _ = until_permit(gk, within=RETRY_INTERVAL + 4.0)
    acknowledged.append(decision)
    assert_log_holds(audit_of(gk), acknowledged)
    gk.close()


# ---------------------------------------------------------------------- 4. clock jumps

DRIVER = """
import json, logging, sys, time
import gatekeeper
from gatekeeper.config import load_settings

logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
settings = load_settings(
    None, data_dir=sys.argv[1], clock_tolerance=float(sys.argv[2]),
    clock_settle=float(sys.argv[3]), max_as_of_skew=600.0, audit_timeout=2.0,
)
gk = gatekeeper.open_with(settings)
sys.stdout.write(json.dumps({"ready": True}) + "\\n"); sys.stdout.flush()
for line in sys.stdin:
    started = time.monotonic()
    d = gk.decide(json.loads(line))
    out = {"decision": str(d.decision), "reason": d.reason, "allowed": list(d.allowed_fields),
           "audit": d.audit, "seconds": time.monotonic() - started, "wall": time.time()}
    sys.stdout.write(json.dumps(out) + "\\n"); sys.stdout.flush()
gk.close()
"""

TOLERANCE, SETTLE = 5.0, 1.0


@pytest.fixture(scope="module")
def faketime_lib() -> Path:
    found = os.environ.get("GATEKEEPER_FAKETIME")
    candidates = [Path(found)] if found else []
    candidates += sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    for lib in candidates:
        if lib.is_file():
            return lib
    skip_or_fail("no libfaketime: run scripts/ensure-faketime or set GATEKEEPER_FAKETIME")


class FakedGatekeeper:
    """A real gatekeeper process under libfaketime whose wall clock the test moves
    (``shift``); its monotonic clock stays real."""

    def __init__(self, lib: Path, data_dir: Path, clock_file: Path, offset: int = 0) -> None:
        self.clock_file = clock_file
        self.shift(offset)
        env = dict(
            ENV,
            LD_PRELOAD=str(lib),
            FAKETIME_TIMESTAMP_FILE=str(clock_file),
            FAKETIME_NO_CACHE="1",
            FAKETIME_DONT_FAKE_MONOTONIC="1",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(data_dir), str(TOLERANCE), str(SETTLE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self._read() == {"ready": True}

    def shift(self, seconds: int) -> None:
        """Move the wall clock to real time + ``seconds`` (read at every call)."""
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"{seconds:+d}\n")
        tmp.replace(self.clock_file)
        self.offset = seconds

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"driver died: {self.close()}"
        return json.loads(line)

    def decide(self, request: dict[str, Any] | None = None) -> dict[str, Any]:
        """Decide a permit request whose as_of is the process's (faked) now."""
        if request is None:
            moment = datetime.fromtimestamp(time.time() + self.offset, UTC)
            request = dict(PERMIT, as_of=moment.isoformat())
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = self._read()
        if answer["decision"] != "permit":
            assert answer["decision"] == "deny" and answer["allowed"] == [], answer
        return answer

    def until(self, predicate: Callable[[dict[str, Any]], bool], within: float) -> list[Any]:
        """Decide until ``predicate`` holds; every answer, in order."""
        started = time.monotonic()
        seen = []
        while True:
            seen.append(self.decide())
            if predicate(seen[-1]):
                return seen
            assert time.monotonic() - started < within, seen[-3:]
            time.sleep(0.1)

    def close(self) -> str:
        """End the process (EOF on its stdin); its stderr."""
        if self.proc.returncode is not None:
            return ""
        try:
            _out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        return err


def _permit(answer: dict[str, Any]) -> bool:
    return answer["decision"] == "permit"


def _clock_entries(data_dir: Path) -> list[dict[str, Any]]:
    with AuditLog.open_sqlite(data_dir) as log:
        report = verify_log(log.store, log.keys)
        assert report.ok, report.problems
        return [json.loads(e.data) for e in log.store.read_entries(0, log.size())]


def test_clock_jumps(faketime_lib: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    gk = FakedGatekeeper(faketime_lib, data_dir, tmp_path / "clock")
    try:
        assert _permit(gk.decide())
        # Forward jump: every decision denies clock_jump at once (its as_of,
        # "now" on the jumped clock, is not what decides: the clock is).
        gk.shift(+3600)
        for answer in [gk.decide() for _ in range(3)]:
            assert answer["reason"] == "clock_jump" and answer["audit"] is not None
            assert answer["seconds"] < 0.5
        # Back within tolerance: decisions resume by themselves.
        gk.shift(0)
        assert _permit(gk.decide())
        # Backward jump: clock_jump; once the new offset held for SETTLE it is
        # accepted (clock_reanchored), but the wall clock is still an hour
        # behind the log's latest entry: clock_behind_log.
        gk.shift(-3600)
        seen = gk.until(lambda a: a["reason"] == "clock_behind_log", within=SETTLE + 3)
        assert seen[0]["reason"] == "clock_jump"
        assert {a["reason"] for a in seen} == {"clock_jump", "clock_behind_log"}
        # The clock comes back: a new offset again, accepted after SETTLE.
        gk.shift(0)
        seen = gk.until(_permit, within=SETTLE + 3)
        assert seen[0]["reason"] == "clock_jump" and len(seen) >= 2
        # A forward correction that holds is accepted too.
        gk.shift(+7200)
        seen = gk.until(_permit, within=SETTLE + 3)
        assert seen[0]["reason"] == "clock_jump"
    finally:
        stderr = gk.close()
    assert stderr.count('"clock_reanchored"') == 3, stderr
    # After a restart on the real clock, the log's entries (written at +2 h,
    # accepted) are ahead: clock_behind_log, from the first decision on.
    gk = FakedGatekeeper(faketime_lib, data_dir, tmp_path / "clock")
    try:
        answer = gk.decide()
        assert answer["reason"] == "clock_behind_log" and answer["audit"] is not None
    finally:
        gk.close()
    entries = _clock_entries(data_dir)
    jumped = [e for e in entries if e.get("reason") == "clock_jump"]
    assert len(jumped) >= 5
    # Entries written during a jump carry the wrong wall time, and say so.
    stamps = [datetime.fromisoformat(e["timestamp"]).timestamp() for e in jumped[:3]]
    assert all(abs(s - time.time() - 3600) < 120 for s in stamps)
    assert all(e["decision"] == "deny" and e["allowed_fields"] == [] for e in jumped)


def test_clock_behind_another_process(faketime_lib: Path, tmp_path: Path) -> None:
    """Two processes share a log; one's clock is two hours ahead (steady, so no
    jump). The other learns of the later entries at its next append and denies
    clock_behind_log from then on; so does a process started afterwards."""
    data_dir = tmp_path / "data"
    behind = FakedGatekeeper(faketime_lib, data_dir, tmp_path / "clock-a")
    ahead = FakedGatekeeper(faketime_lib, data_dir, tmp_path / "clock-b", offset=+7200)
    try:
        assert _permit(behind.decide())
        assert _permit(ahead.decide())
        seen = [behind.decide(), behind.decide()]
        assert seen[-1]["reason"] == "clock_behind_log"
        assert all(_permit(a) or a["reason"] == "clock_behind_log" for a in seen)
        assert _permit(ahead.decide())
    finally:
        behind.close()
        ahead.close()
    late = FakedGatekeeper(faketime_lib, data_dir, tmp_path / "clock-c")
    try:
        assert late.decide()["reason"] == "clock_behind_log"
    finally:
        late.close()
    assert len(_clock_entries(data_dir)) == 6
