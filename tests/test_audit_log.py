"""The signed audit log, for real: SQLite files, Ed25519 keys, tamper detection, kill -9."""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import gatekeeper
from gatekeeper.audit import merkle
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.note import Checkpoint, Signer, open_checkpoint, sign_checkpoint
from gatekeeper.audit.verify import verify_log
from gatekeeper.decision import Effect
from tests.conftest import REPO_ROOT

CASES = [
    json.loads(line)
    for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    if line.strip()
]


def entry(i: int) -> bytes:
    return json.dumps({"i": i, "kind": "test"}, separators=(",", ":"), sort_keys=True).encode()


@pytest.fixture(params=["sqlite", "postgres"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The same log tests on both stores (PostgreSQL: a real server, fresh database)."""
    if request.param == "sqlite":
        with AuditLog.open_sqlite(tmp_path, origin="test.example/log") as opened:
            yield opened
        return
    from gatekeeper.audit.keys import KeyStore
    from gatekeeper.audit.postgres import PostgresStore

    dsn = request.getfixturevalue("pg_dsn")
    keys = KeyStore(tmp_path, origin="test.example/log")
    with AuditLog(PostgresStore(dsn), keys) as opened:
        yield opened


def problems_of(log: AuditLog, **kwargs: Any) -> list[str]:
    return [str(p) for p in verify_log(log.store, log.keys, **kwargs).problems]


def test_append_verify_and_checkpoint(log: AuditLog) -> None:
    receipts = [log.append(entry(i)) for i in range(37)]
    assert [r.index for r in receipts] == list(range(37))
    assert log.size() == 37
    report = verify_log(log.store, log.keys)
    assert report.ok, report.problems
    assert report.summary() == "37/37 entries valid"
    cp = open_checkpoint(log.latest_checkpoint() or "", log.keys.verifiers())
    assert (cp.origin, cp.size) == ("test.example/log", 37)
    memory = merkle.MemoryHashStore()
    for i in range(37):
        memory.append_record(entry(i))
    assert cp.root == memory.root() == log.root()
    assert receipts[5].leaf_hash == merkle.leaf_hash(entry(5))


def test_every_checkpoint_is_kept_and_consistent(log: AuditLog) -> None:
    for i in range(10):
        log.append(entry(i))
    sizes = [size for size, _ in log.store.checkpoints()]
    assert sizes == sorted(sizes) and sizes[-1] == 10 and len(sizes) >= 1
    proof = log.prove_consistency(3, 10)
    merkle.check_tree(proof, 10, log.root(10), 3, log.root(3))


def test_group_commit_from_threads(log: AuditLog) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:
        receipts = list(pool.map(lambda i: log.append(entry(i)), range(400)))
    assert sorted(r.index for r in receipts) == list(range(400))
    assert len(log.store.checkpoints()) < 400  # batched: fewer checkpoints than entries
    assert verify_log(log.store, log.keys).ok


def test_decisions_are_audited_before_they_return(tmp_path: Path) -> None:
    gk = gatekeeper.open(data_dir=tmp_path)
    decisions = [gk.decide(c["request"]) for c in CASES]
    assert all(d.audit is not None for d in decisions)
    assert [d.audit["index"] for d in decisions if d.audit] == list(range(len(CASES)))
    assert gk.audit is not None
    stored = gk.audit.store.read_entries(0, len(CASES))
    for d, s in zip(decisions, stored, strict=True):
        value = json.loads(s.data)
        assert value["decision_id"] == d.decision_id
        assert value["decision"] == d.decision
        assert value["rules"] == list(d.rules)
        assert value["policy_revision"] == d.policy_revision
        assert d.audit and d.audit["leaf_hash"] == merkle.leaf_hash(s.data).hex()
    assert verify_log(gk.audit.store, gk.audit.keys).ok
    gk.close()


def test_invalid_request_leaves_a_deny_entry(tmp_path: Path) -> None:
    gk = gatekeeper.open(data_dir=tmp_path)
    decision = gk.decide(b'{"channel": "internal", "secret": "do-not-log-me"}')
    assert decision.decision is Effect.DENY and decision.reason == "invalid_request"
    assert gk.audit is not None
    (stored,) = gk.audit.store.read_entries(0, 1)
    assert b"do-not-log-me" not in stored.data
    value = json.loads(stored.data)
    assert value["kind"] == "invalid_request" and value["decision"] == "deny"
    assert value["error"]["path"]
    gk.close()


def test_entries_are_jcs_without_floats(log: AuditLog) -> None:
    with pytest.raises(gatekeeper.GatekeeperError):
        log.append_value({"x": 1.5})
    assert log.size() == 0


# --- tamper detection ---------------------------------------------------------


def tamper(path: Path, sql: str, *params: Any) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, params)
    db.commit()
    db.close()


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, AuditLog]:
    log = AuditLog.open_sqlite(tmp_path, origin="test.example/log")
    for i in range(20):
        log.append(entry(i))
    return tmp_path / "audit.sqlite", log


def test_edited_entry_is_named(filled: tuple[Path, AuditLog]) -> None:
    db, log = filled
    tamper(db, "UPDATE entries SET data = ? WHERE idx = 7", entry(700))
    found = problems_of(log)
    assert any(p.startswith("entry 7:") and "signature" in p for p in found), found
    assert any(p.startswith("entry 7:") and "tree" in p for p in found), found


@pytest.mark.parametrize("index", [0, 9, 15])
def test_an_edited_entry_is_the_only_one_named(filled: tuple[Path, AuditLog], index: int) -> None:
    """The stored nodes above an edited leaf differ from the recomputed ones
    too; they agree with their own stored children, so the entries that
    completed them (1, 3, 7 and 15 above entry 0) are intact and not named."""
    db, log = filled
    tamper(db, f"UPDATE entries SET data = ? WHERE idx = {index}", entry(900 + index))
    report = verify_log(log.store, log.keys, signatures="all")
    named = {p.index for p in report.problems if p.index is not None}
    assert named == {index}, report.problems
    assert report.summary() == "19/20 entries valid"  # before: 16/20 for entry 0


def test_an_altered_stored_node_is_named_at_the_entry_that_completed_it(
    filled: tuple[Path, AuditLog],
) -> None:
    db, log = filled
    # The node over entries 0-3 (level 2, index 0) is stored with entry 3.
    node = merkle.stored_hash_index(2, 0)
    tamper(db, "UPDATE hashes SET hash = ? WHERE idx = ?", b"\x00" * 32, node)
    report = verify_log(log.store, log.keys, signatures="all")
    assert [(p.index, p.message) for p in report.problems if p.index is not None] == [
        (
            3,
            "the stored tree hash over entries 0-3 does not match them: it was altered, "
            "or one of those entries was rewritten with its leaf hash",
        )
    ], report.problems


def test_an_entry_rewritten_with_its_leaf_hash_is_named_by_its_signature(
    filled: tuple[Path, AuditLog],
) -> None:
    """The data and the stored leaf hash of entry 4 rewritten together: the
    tree cannot tell that from an altered node over entries 4-5 (both are
    named), the entry's signature and the checkpoint roots can."""
    db, log = filled
    forged = entry(400)
    tamper(db, "UPDATE entries SET data = ? WHERE idx = 4", forged)
    leaf = merkle.stored_hash_index(0, 4)
    tamper(db, "UPDATE hashes SET hash = ? WHERE idx = ?", merkle.leaf_hash(forged), leaf)
    report = verify_log(log.store, log.keys, signatures="all")
    named = {(p.index, p.message) for p in report.problems if p.index is not None}
    assert (4, "signature does not verify") in named, report.problems
    assert any(i == 5 and "entries 4-5" in m for i, m in named), report.problems
    assert any(p.index is None and "root does not match" in p.message for p in report.problems)


@pytest.mark.parametrize("value", ["{}", 42, 1.5], ids=["text", "integer", "real"])
def test_an_entry_edited_into_another_sqlite_type_is_named(
    filled: tuple[Path, AuditLog], value: object
) -> None:
    """`UPDATE entries SET data = '{}'` stores text, not a blob: verify (and the
    readers behind show, export, reports) failed with a TypeError; now the
    entry is named like any other edit."""
    db, log = filled
    tamper(db, "UPDATE entries SET data = ? WHERE idx = 5", value)
    report = verify_log(log.store, log.keys, signatures="all")
    assert 5 in {p.index for p in report.problems}, report.problems
    assert report.summary() == "19/20 entries valid"


def test_deleted_entry_is_named(filled: tuple[Path, AuditLog]) -> None:
    db, log = filled
    tamper(db, "DELETE FROM entries WHERE idx = 4")
    found = problems_of(log)
    assert any(p.startswith("entry 4:") and "missing" in p for p in found), found
    assert not any(p.startswith("entry 5:") for p in found), found


def test_reordered_pair_is_named(filled: tuple[Path, AuditLog]) -> None:
    db, log = filled
    rows = (
        sqlite3.connect(db)
        .execute("SELECT idx, data, signature FROM entries WHERE idx IN (10, 11) ORDER BY idx")
        .fetchall()
    )
    tamper(db, "UPDATE entries SET data = ?, signature = ? WHERE idx = 10", rows[1][1], rows[1][2])
    tamper(db, "UPDATE entries SET data = ?, signature = ? WHERE idx = 11", rows[0][1], rows[0][2])
    found = problems_of(log)
    assert any(p.startswith("entry 10:") for p in found), found
    assert any(p.startswith("entry 11:") for p in found), found


def test_truncated_tail_is_caught_against_an_outside_checkpoint(
    filled: tuple[Path, AuditLog],
) -> None:
    db, log = filled
    kept_outside = log.latest_checkpoint() or ""
    for sql in (
        "DELETE FROM entries WHERE idx >= 15",
        "DELETE FROM checkpoints WHERE size > 15",
        "UPDATE head SET size = 15",
    ):
        tamper(db, sql)
    assert problems_of(log) == []  # consistent by itself: only an outside view can tell
    found = problems_of(log, trusted=kept_outside)
    assert any("truncated" in p for p in found), found


def test_checkpoint_signed_by_another_key(filled: tuple[Path, AuditLog]) -> None:
    db, log = filled
    intruder = Signer("test.example/log", Ed25519PrivateKey.generate())
    forged = sign_checkpoint(Checkpoint("test.example/log", 20, log.root()), [intruder])
    tamper(
        db, "UPDATE checkpoints SET note = ? WHERE id = (SELECT MAX(id) FROM checkpoints)", forged
    )
    found = problems_of(log)
    assert any("checkpoint" in p and "signature" in p for p in found), found


def test_forged_entry_signature(filled: tuple[Path, AuditLog]) -> None:
    db, log = filled
    (sig,) = sqlite3.connect(db).execute("SELECT signature FROM entries WHERE idx = 3").fetchone()
    forged = bytes([sig[0] ^ 1]) + sig[1:]
    tamper(db, "UPDATE entries SET signature = ? WHERE idx = 3", forged)
    found = problems_of(log)
    assert found == ["entry 3: signature does not verify"], found


def test_sampled_and_parallel_signature_checks(filled: tuple[Path, AuditLog]) -> None:
    _, log = filled
    assert verify_log(log.store, log.keys, workers=2).ok
    report = verify_log(log.store, log.keys, signatures="sample", sample_rate=0.0)
    assert report.ok and report.signatures_checked == 1  # the last entry, always
    assert verify_log(log.store, log.keys, signatures="none").signatures_checked == 0


# --- keys -------------------------------------------------------------------


def test_key_file_is_private_and_never_logged(tmp_path: Path) -> None:
    log = AuditLog.open_sqlite(tmp_path, origin="test.example/log")
    log.append(entry(0))
    pems = list((tmp_path / "keys").glob("*.pem"))
    assert len(pems) == 1 and (pems[0].stat().st_mode & 0o777) == 0o600
    assert log.keys.vkey().startswith("test.example/log+")
    log.close()


def test_passphrase_protected_key(tmp_path: Path) -> None:
    with AuditLog.open_sqlite(tmp_path, origin="o.example/x", passphrase=b"s3cret") as log:
        log.append(entry(0))
    pem = next((tmp_path / "keys").glob("*.pem")).read_bytes()
    assert b"ENCRYPTED" in pem
    with AuditLog.open_sqlite(tmp_path, origin="o.example/x", passphrase=b"s3cret") as log:
        log.append(entry(1))
    with AuditLog.open_sqlite(tmp_path, origin="o.example/x", passphrase=b"Xq9-not-it") as log:
        with pytest.raises(gatekeeper.GatekeeperError) as info:
            log.append(entry(2))
        assert info.value.reason == "audit_key_unavailable"
        assert "s3cret" not in str(info.value) and "Xq9-not-it" not in str(info.value)


def _corrupt_key(data_dir: Path) -> None:
    pem = next((data_dir / "keys").glob("*.pem"))
    pem.write_bytes(pem.read_bytes()[:40] + b"garbage" + pem.read_bytes()[60:])


@pytest.mark.parametrize("fault", ["corrupt", "missing"])
def test_unusable_key_denies_and_discloses_nothing(tmp_path: Path, fault: str) -> None:
    permit_case = next(c["request"] for c in CASES if c["id"] == "A01")
    gatekeeper.open(data_dir=tmp_path).decide(permit_case)  # creates the key
    if fault == "corrupt":
        _corrupt_key(tmp_path)
    else:
        next((tmp_path / "keys").glob("*.pem")).unlink()
    gk = gatekeeper.open(data_dir=tmp_path)
    decision = gk.decide(permit_case)
    assert decision.decision is Effect.DENY
    assert decision.reason == "audit_key_unavailable"
    assert decision.allowed_fields == () and decision.audit is None


def test_locked_store_denies_within_the_timeout(tmp_path: Path) -> None:
    permit_case = next(c["request"] for c in CASES if c["id"] == "A01")
    gk = gatekeeper.open(data_dir=tmp_path)
    assert gk.decide(permit_case).permitted
    blocker = sqlite3.connect(tmp_path / "audit.sqlite", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.monotonic()
        decision = gk.decide(permit_case)
        elapsed = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert decision.decision is Effect.DENY and decision.allowed_fields == ()
    assert decision.reason in {"audit_store_locked", "audit_timeout"}
    assert elapsed < 5.0
    assert gk.decide(permit_case).permitted  # recovers when the lock is gone
    assert gk.audit is not None and verify_log(gk.audit.store, gk.audit.keys).ok


def test_key_rotation_cosigns_and_old_checkpoints_still_verify(log: AuditLog) -> None:
    for i in range(5):
        log.append(entry(i))
    old_vkey = log.keys.vkey()
    new_vkey = log.rotate_key()
    assert new_vkey != old_vkey
    log.append(entry(99))
    notes = [note for _, note in log.store.checkpoints()]
    cosigned = [n for n in notes if n.count("\u2014 ") == 2]
    assert len(cosigned) == 1  # the first checkpoint after the rotation
    assert verify_log(log.store, log.keys).ok
    records = log.keys.records()
    assert records[0].last_size == 5 and records[1].first_size == 5


# --- durability: kill -9 ------------------------------------------------------

WRITER = """
import sys
from gatekeeper.audit.log import AuditLog
log = AuditLog.open_sqlite(sys.argv[1], origin="test.example/log")
i = int(sys.argv[2])
while True:
    r = log.append(b'{"n":%d}' % i)
    sys.stdout.write(f"{r.index} {r.leaf_hash.hex()}\\n")
    sys.stdout.flush()
    i += 1
"""


def test_kill_9_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    acknowledged: dict[int, str] = {}
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    for round_ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(round_ * 100000)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        # Killed while appending: after its first acknowledgment (an interpreter
        # start takes up to a second on a loaded machine), a little later each round.
        assert proc.stdout is not None
        first = proc.stdout.readline()
        time.sleep(0.1 + 0.15 * round_)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        assert first, f"round {round_}: the writer acknowledged nothing"
        for line in [first, *out.splitlines()]:
            if line.count(" ") == 1:
                index, leaf = line.split()
                acknowledged[int(index)] = leaf
    assert len(acknowledged) > 20
    with AuditLog.open_sqlite(tmp_path, origin="test.example/log") as log:
        report = verify_log(log.store, log.keys)
        assert report.ok, report.problems
        stored = {
            e.index: merkle.leaf_hash(e.data).hex() for e in log.store.read_entries(0, log.size())
        }
    for index, leaf in acknowledged.items():
        assert stored.get(index) == leaf, f"acknowledged entry {index} lost or changed"


# --- command line -----------------------------------------------------------


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_audit_commands(tmp_path: Path) -> None:
    for name in ("teacher-grades.json", "ice-admin-warrant.json", "hsi-judicial-warrant.json"):
        result = run_cli(tmp_path, "decide", str(REPO_ROOT / "examples" / name))
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["audit"]["index"] >= 0
    verify = run_cli(tmp_path, "audit", "verify")
    assert verify.returncode == 0 and "3/3 entries valid" in verify.stdout, verify
    vkey = run_cli(tmp_path, "audit", "vkey").stdout.strip()
    pinned = run_cli(tmp_path, "audit", "verify", "--vkey", vkey)
    assert pinned.returncode == 0 and "3/3 entries valid" in pinned.stdout, pinned
    teacher = str(REPO_ROOT / "examples" / "teacher-grades.json")
    assert run_cli(tmp_path / "other", "decide", teacher).returncode == 0  # another log
    other = run_cli(tmp_path / "other", "audit", "vkey").stdout.strip()
    foreign = run_cli(tmp_path, "audit", "verify", "--vkey", other)
    assert foreign.returncode == 1 and "0/3 entries valid" in foreign.stdout, foreign
    # The first line says what the many after it have in common.
    assert foreign.stdout.splitlines()[0].startswith(
        "log: none of the 3 checkpoints is signed by the given verifier key(s)"
    ), foreign.stdout
    note = run_cli(tmp_path, "audit", "checkpoint").stdout
    from gatekeeper.audit.note import Verifier

    assert open_checkpoint(note, [Verifier(vkey)]).size == 3
    proof = json.loads(run_cli(tmp_path, "audit", "prove", "1").stdout)
    merkle.check_record(
        [base64.b64decode(h) for h in proof["proof"]],
        3,
        base64.b64decode(proof["root"]),
        1,
        base64.b64decode(proof["leaf_hash"]),
    )
    export = run_cli(tmp_path, "audit", "export", str(tmp_path / "tiles"))
    assert export.returncode == 0
    assert (tmp_path / "tiles" / "checkpoint").read_text() == note
    assert (tmp_path / "tiles" / "tile" / "entries" / "000.p" / "3").exists()
    shown = run_cli(tmp_path, "audit", "show", "--decision", "deny")
    assert "IMM-03" in shown.stdout and "FERPA-1" not in shown.stdout
    lines = run_cli(tmp_path, "audit", "show", "--json", "--student", "S010").stdout.splitlines()
    assert [json.loads(x)["entry"]["rules"][0] for x in lines] == ["IMM-10"]
    sqlite3.connect(tmp_path / "audit.sqlite").execute(
        "UPDATE entries SET data = ? WHERE idx = 2", (b'{"x":1}',)
    ).connection.commit()
    bad = run_cli(tmp_path, "audit", "verify")
    assert bad.returncode == 1, bad.stdout
    assert "entry 2: signature does not verify" in bad.stdout.splitlines()
    assert "2/3 entries valid" in bad.stdout


def test_audit_commands_on_a_directory_without_a_log_create_nothing(tmp_path: Path) -> None:
    """A compliance officer who gives the wrong --data-dir: every audit command
    says there is no log there, exits 1 and leaves the directory as it was.
    Before, each opened (so created) a new log: verify said 0/0 entries valid
    (exit 0) and vkey printed the key of a freshly generated signing key."""
    wrong = tmp_path / "not-the-log"
    for command in (
        ["audit", "verify"],
        ["audit", "vkey"],
        ["audit", "checkpoint"],
        ["audit", "show"],
        ["audit", "prove", "0"],
        ["audit", "export", str(tmp_path / "tiles")],
        ["audit", "rotate-key"],
        ["obligations", "list"],
        ["obligations", "ack", "1", "--by", "records office"],
    ):
        result = run_cli(wrong, *command)
        assert result.returncode == 1, (command, result.stdout)
        assert f"no audit log in {wrong}" in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert not (wrong / "audit.sqlite").exists() and not (wrong / "keys").exists(), command
    assert not (tmp_path / "tiles").exists()


def test_audit_command_arguments_out_of_range_are_clear_errors(tmp_path: Path) -> None:
    teacher = str(REPO_ROOT / "examples" / "teacher-grades.json")
    for _ in range(3):
        assert run_cli(tmp_path, "decide", teacher).returncode == 0
    a_file = tmp_path / "vkey.txt"
    a_file.write_text("not a directory\n")
    cases = [
        (["audit", "prove", "1", "--size", "100"], "--size 100 is not a size of this log (1 to 3)"),
        (["audit", "prove", "1", "--size", "0"], "--size 0 is not a size of this log"),
        (["audit", "export", str(a_file)], f"{a_file} is not a directory"),
        (["audit", "verify", "--workers", "0"], "--workers must be at least 1"),
        (["audit", "show", "--since", "zzz"], "--since must be a UTC date or timestamp"),
        (["audit", "show", "--until", "yesterday"], "--until must be a UTC date or timestamp"),
        (["audit", "show", "--limit", "0"], "--limit must be at least 1"),
    ]
    for command, message in cases:
        result = run_cli(tmp_path, *command)
        assert result.returncode == 1, (command, result.stdout)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert a_file.read_text() == "not a directory\n"


def test_largest_valid_request_still_leaves_an_entry(tmp_path: Path) -> None:
    """Found in review: a valid request near 64 KiB made an entry over 64 KiB,
    so an ICE request could leave no entry (and no board-report count)."""
    request = json.loads(json.dumps(next(c["request"] for c in CASES if c["id"] == "A04")))
    request["task_force"] = [f"AGENCY-{i:03d}-" + "X" * 180 for i in range(200)]
    request["fields"] = [f"field_{i:03d}_" + "y" * 54 for i in range(190)] + ["home_address"]
    raw = json.dumps(request).encode()
    assert 50_000 < len(raw) <= 65536
    gk = gatekeeper.open(data_dir=tmp_path)
    decision = gk.decide(raw)
    assert decision.reason is None and decision.decision is Effect.DENY
    assert decision.rules[0] == "IMM-01" and decision.audit is not None
    assert gk.audit is not None
    (stored,) = gk.audit.store.read_entries(0, 1)
    assert len(stored.data) <= 65535
    assert "REPORT_BOARD" in json.loads(stored.data)["obligations"]
    gk.close()


def test_keygen_writes_a_private_key_file_and_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "log-key.pem"
    made = run_cli(tmp_path, "audit", "keygen", "--out", str(out))
    assert made.returncode == 0, made.stderr
    assert (out.stat().st_mode & 0o777) == 0o600
    assert (out.parent.stat().st_mode & 0o777) == 0o700
    assert out.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    before = out.read_bytes()
    again = run_cli(tmp_path, "audit", "keygen", "--out", str(out))
    assert again.returncode == 1 and out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["log-key.pem"]  # no temp file left


def test_show_names_what_an_acknowledgment_or_a_release_acted_on() -> None:
    from gatekeeper.audit.show import render_table

    table = render_table(
        [
            (14, {"kind": "obligation_ack", "timestamp": "2026-12-06T03:58:07.000000Z",
                  "obligation": {"code": "NOTIFY_PARENT_PRE", "decision_entry": 13}}),
            (15, {"kind": "release", "timestamp": "2026-12-06T03:58:08.000000Z",
                  "release": {"decision_entry": 13, "decision_id": "d"}}),
        ]
    )  # fmt: skip
    ack, release = table.splitlines()[1:]
    assert ack.split()[2:] == ["ack", "NOTIFY_PARENT_PRE", "of", "entry", "13"]
    assert release.split()[2:] == ["release", "entry", "13"]
    assert ":" not in ack.split("ack", 1)[1]  # no empty "kind:agency" requester


def test_show_bounds_are_read_as_utc_and_compared_in_the_log_s_own_form() -> None:
    from gatekeeper.audit.show import EntryFilter

    assert EntryFilter(since="2026-12-05").since == "2026-12-05T00:00:00.000000Z"
    assert EntryFilter(since="2026-12-05 17:00").since == "2026-12-05T17:00:00.000000Z"
    assert EntryFilter(until="2026-12-05T17:00+02:00").until == "2026-12-05T15:00:00.000000Z"
    at_nine = {"timestamp": "2026-12-05T09:00:00.000000Z"}
    assert not EntryFilter(since="2026-12-05 17:00").matches(at_nine)  # was a match
    for bad in ("20261205", "2026-W49-1", "9999-12-31T23:59:59-01:00"):
        with pytest.raises(gatekeeper.GatekeeperError, match="UTC date or timestamp"):
            EntryFilter(since=bad)


def test_a_release_naming_no_earlier_decision_is_named(log: AuditLog) -> None:
    log.append(entry(0))
    log.append_value(
        {"kind": "release", "release": {"decision_id": "never-decided", "decision_entry": 0}}
    )
    report = verify_log(log.store, log.keys)
    assert [(p.index, p.message) for p in report.problems] == [
        (1, "release names no earlier decision")
    ]


def test_cli_output_cut_short_by_its_reader_ends_without_a_traceback(tmp_path: Path) -> None:
    """`gatekeeper audit show | head -1`: the reader goes away; before, a
    BrokenPipeError traceback."""
    teacher = str(REPO_ROOT / "examples" / "teacher-grades.json")
    for _ in range(3):
        assert run_cli(tmp_path, "decide", teacher).returncode == 0
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatekeeper", "--data-dir", str(tmp_path), "audit", "show"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command writes anything
    stderr = proc.stderr.read().decode()
    assert proc.wait(60) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
