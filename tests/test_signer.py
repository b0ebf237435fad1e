"""Key handling: the external signer (a real signing process), rotation with a
configured key_path or signer, and ``audit keygen`` with a passphrase."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import gatekeeper
from gatekeeper import Gatekeeper
from gatekeeper.audit.command_signer import RESTART_INTERVAL, CommandSigner
from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.keys import load_key_file
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.note import (
    Checkpoint,
    EntrySigner,
    Signer,
    Verifier,
    open_checkpoint,
    sign_checkpoint,
)
from gatekeeper.audit.verify import verify_log
from gatekeeper.config import load_settings
from gatekeeper.decision import Decision, Effect
from gatekeeper.engines import EmbeddedEngine, load_pack
from gatekeeper.errors import GatekeeperError
from tests.conftest import POLICIES_DIR, REPO_ROOT
from tests.test_faults_local import PERMIT, until_permit

ORIGIN = "signer.test/gatekeeper"
ENV = {k: v for k, v in os.environ.items() if k != "GATEKEEPER_KEY_PASSPHRASE"}
ENV["PYTHONPATH"] = str(REPO_ROOT)
REASON = "audit_signer_unavailable"


@pytest.fixture(autouse=True)
def _no_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEKEEPER_KEY_PASSPHRASE", raising=False)


@pytest.fixture(scope="module")
def engine() -> Iterator[EmbeddedEngine]:
    shared = EmbeddedEngine(load_pack(POLICIES_DIR))
    yield shared
    shared.close()


def write_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    path.chmod(0o600)
    return key


def signer_command(key: Path) -> list[str]:
    return [sys.executable, "-m", "gatekeeper.audit.signer_process", "--key", str(key)]


def open_gk(engine: EmbeddedEngine, data_dir: Path, **settings: Any) -> Gatekeeper:
    """A Gatekeeper wired as ``gatekeeper.open_with`` does, on a shared engine."""
    loaded = load_settings(None, data_dir=data_dir, origin=ORIGIN, **settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    return Gatekeeper(
        engine=engine,
        audit=gatekeeper.open_audit_log(loaded),
        clock_tolerance=loaded.clock_tolerance,
    )


def audit_of(gk: Gatekeeper) -> AuditLog:
    assert gk.audit is not None
    return gk.audit


def external(gk: Gatekeeper) -> CommandSigner:
    signer = audit_of(gk).keys.active_signer()
    assert isinstance(signer, CommandSigner)
    return signer


def assert_denied(decision: Decision, reason: str) -> None:
    assert decision.decision is Effect.DENY, decision.to_dict()
    assert decision.reason == reason, decision.to_dict()
    assert decision.allowed_fields == () and decision.audit is None


def assert_verifies(log: AuditLog) -> None:
    report = verify_log(log.store, log.keys)
    assert report.ok, report.problems
    assert report.valid_entries == log.size()


def run_cli(
    data_dir: Path, *args: str, config: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    head = ["--config", str(config)] if config is not None else []
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper", "--data-dir", str(data_dir), *head, *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        timeout=120,
        check=False,
    )


def write_config(path: Path, **values: Any) -> Path:
    lines = ["[gatekeeper]", f"origin = {json.dumps(ORIGIN)}"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------ the signing process


def test_the_signer_protocol_and_byte_identical_output(tmp_path: Path) -> None:
    """The reference signer signs exactly as the in-memory key does (Ed25519 is
    deterministic): entries and checkpoints are byte-identical either way."""
    key = write_key(tmp_path / "k.pem")
    local = Signer(ORIGIN, key)
    remote = CommandSigner(signer_command(tmp_path / "k.pem"), name=ORIGIN)
    try:
        assert isinstance(remote, EntrySigner) and isinstance(local, EntrySigner)
        assert remote.public_key == local.public_key
        assert (remote.key_id, remote.vkey) == (local.key_id, local.vkey)
        for message in (b"", b'{"a":1}', os.urandom(65536)):
            assert remote.sign(message) == local.sign(message)
        checkpoint = Checkpoint(ORIGIN, 7, bytes(range(32)))
        note = sign_checkpoint(checkpoint, [remote])
        assert note == sign_checkpoint(checkpoint, [local])
        assert open_checkpoint(note, [Verifier(local.vkey)]) == checkpoint
        assert remote.starts == 1
        pid = remote.pid
        assert pid is not None
    finally:
        remote.close()
    with pytest.raises(ProcessLookupError):  # stopped with the signer (stdin closed)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def test_decisions_with_an_external_signer_verify(engine: EmbeddedEngine, tmp_path: Path) -> None:
    """Decisions signed by the signing process verify; the vkey is the PEM key's;
    gatekeeper writes no private key anywhere (only the keyring's public key)."""
    key_file = tmp_path / "signer" / "log-key.pem"
    key = write_key(key_file)
    expected = Signer(ORIGIN, key).vkey
    data_dir = tmp_path / "data"
    gk = open_gk(engine, data_dir, signer_command=signer_command(key_file))
    decisions = [gk.decide(PERMIT) for _ in range(5)]
    assert all(d.permitted and d.audit is not None for d in decisions)
    log = audit_of(gk)
    assert log.keys.vkey() == expected
    assert [r.vkey for r in log.keys.records()] == [expected]
    assert_verifies(log)
    assert open_checkpoint(log.latest_checkpoint() or "", [Verifier(expected)]).size == 5
    assert list((data_dir / "keys").glob("*.pem")) == []
    signer = external(gk)
    gk.close()
    assert signer.pid is None

    config = write_config(tmp_path / "gk.toml", signer_command=signer_command(key_file))
    vkey = run_cli(data_dir, "audit", "vkey", config=config)
    assert vkey.returncode == 0, vkey.stderr
    assert vkey.stdout.strip() == expected
    verify = run_cli(data_dir, "audit", "verify", "--vkey", expected, config=config)
    assert verify.returncode == 0 and "5/5 entries valid" in verify.stdout, verify


def test_signer_killed_denies_then_restarts(engine: EmbeddedEngine, tmp_path: Path) -> None:
    """kill -9 of the signing process: the next decision restarts it, at most once
    every RESTART_INTERVAL; in between decisions deny (audit_signer_unavailable)
    and nothing is written. While it cannot start (its key unreadable), restarts
    are attempted at most once a second, and each decision still denies."""
    key_file = tmp_path / "log-key.pem"
    write_key(key_file)
    # A restart starts an interpreter (0.3-1 s on a loaded 2-core machine) inside
    # the append: the append may take longer than the default 2 s here.
    gk = open_gk(
        engine, tmp_path / "data", signer_command=signer_command(key_file), audit_timeout=10.0
    )
    log = audit_of(gk)
    acknowledged = [gk.decide(PERMIT)]
    assert acknowledged[0].permitted
    signer = external(gk)
    first_pid = signer.pid
    assert first_pid is not None
    time.sleep(1.1)  # the last start is older than RESTART_INTERVAL
    os.kill(first_pid, signal.SIGKILL)
    time.sleep(0.2)
    restart_began = time.monotonic()
    acknowledged.append(gk.decide(PERMIT))  # restarted on this append
    restart = time.monotonic() - restart_began  # what one start costs here, now
    assert acknowledged[-1].permitted
    second_pid = signer.pid
    assert signer.starts == 2 and second_pid not in (None, first_pid)

    os.kill(second_pid or 0, signal.SIGKILL)  # again, within a second of that restart
    time.sleep(0.2)
    started = time.monotonic()
    assert_denied(gk.decide(PERMIT), REASON)
    assert_denied(gk.decide(PERMIT), REASON)  # within the interval: no restart, fast
    assert time.monotonic() - started < 0.5
    assert log.size() == 2 and signer.starts == 2
    decision, recovery = until_permit(gk, within=5.0 + 2 * restart)
    # The rest of the interval, and one start (as long as the last one, give or take)
    assert recovery <= RESTART_INTERVAL + 2 * restart + 0.5, (recovery, restart)
    acknowledged.append(decision)
    assert signer.starts == 3 and signer.pid not in (None, second_pid)

    # Killed again, and its key cannot be read: every restart fails.
    hidden = key_file.with_name("elsewhere.pem")
    key_file.rename(hidden)
    os.kill(signer.pid or 0, signal.SIGKILL)
    time.sleep(0.2)
    starts_before, started = signer.starts, time.monotonic()
    without_a_start = 0  # decisions denied at once, no restart tried (rate limited)
    while time.monotonic() - started < 2.5:
        starts = signer.starts
        decision = gk.decide(PERMIT)
        assert_denied(decision, REASON)
        without_a_start += signer.starts == starts
        time.sleep(0.02)
    # Each failed start (an interpreter that finds no key) takes up to a
    # second here; in between, at least a second of decisions try none.
    assert without_a_start >= 5
    assert 1 <= signer.starts - starts_before <= 3  # rate limited: ~once a second
    assert log.size() == 3
    hidden.rename(key_file)
    decision, _ = until_permit(gk, within=5.0)
    acknowledged.append(decision)
    assert_verifies(log)
    gk.close()


def test_a_hung_signer_denies_within_its_timeout(engine: EmbeddedEngine, tmp_path: Path) -> None:
    """A signing process that stops answering (SIGSTOP): the decision denies once
    signer_timeout passes; the process is killed and a fresh one takes over."""
    key_file = tmp_path / "log-key.pem"
    write_key(key_file)
    gk = open_gk(
        engine, tmp_path / "data", signer_command=signer_command(key_file), signer_timeout=0.5
    )
    assert gk.decide(PERMIT).permitted
    signer = external(gk)
    pid = signer.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert_denied(gk.decide(PERMIT), REASON)
        assert 0.4 <= time.monotonic() - started < 2.0
        assert signer.pid is None  # killed, not left hanging
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    until_permit(gk, within=5.0)
    assert_verifies(audit_of(gk))
    gk.close()


FAKE_SIGNER = r"""
import base64, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

mode, path = sys.argv[1], sys.argv[2]
key = serialization.load_pem_private_key(open(path, "rb").read(), password=None)
other = Ed25519PrivateKey.generate()
raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
for line in sys.stdin.buffer:
    verb, _, payload = line.strip().partition(b" ")
    if verb == b"pubkey":
        answer = b"pubkey " + (b"%%%" if mode == "bad_pubkey" else base64.b64encode(raw))
    elif mode == "other_key":
        answer = b"sig " + base64.b64encode(other.sign(base64.b64decode(payload)))
    elif mode == "flipped":
        sig = bytearray(key.sign(base64.b64decode(payload)))
        sig[10] ^= 1
        answer = b"sig " + base64.b64encode(bytes(sig))
    elif mode == "garbage":
        answer = b"sig not-base64!"
    elif mode == "refuses":
        answer = b"error the HSM is locked"
    else:  # exits
        sys.exit(3)
    sys.stdout.buffer.write(answer + b"\n")
    sys.stdout.buffer.flush()
"""


@pytest.mark.parametrize("mode", ["other_key", "flipped", "garbage", "refuses", "exits"])
def test_a_broken_signer_denies_and_writes_nothing(
    engine: EmbeddedEngine, tmp_path: Path, mode: str
) -> None:
    """Every signature is verified before use: a signer answering garbage, a
    signature by another key or a damaged one, a refusal, or dying, is a deny."""
    key_file = tmp_path / "log-key.pem"
    write_key(key_file)
    script = tmp_path / "fake_signer.py"
    script.write_text(FAKE_SIGNER, encoding="utf-8")
    gk = open_gk(
        engine, tmp_path / "data", signer_command=[sys.executable, str(script), mode, str(key_file)]
    )
    for _ in range(3):
        assert_denied(gk.decide(PERMIT), REASON)
    log = audit_of(gk)
    assert log.size() == 0 and log.latest_checkpoint() is None
    with pytest.raises(AuditError) as info:
        log.append(b'{"probe":1}')
    assert info.value.reason == REASON
    gk.close()


def test_a_signer_with_a_malformed_or_changed_key_is_refused(
    engine: EmbeddedEngine, tmp_path: Path
) -> None:
    """A malformed public key, and a restarted signer that comes back with
    another key than the one in use (and in the keyring), both deny."""
    key_file = tmp_path / "log-key.pem"
    write_key(key_file)
    script = tmp_path / "fake_signer.py"
    script.write_text(FAKE_SIGNER, encoding="utf-8")
    bad = open_gk(
        engine,
        tmp_path / "bad",
        signer_command=[sys.executable, str(script), "bad_pubkey", str(key_file)],
    )
    assert_denied(bad.decide(PERMIT), REASON)
    assert audit_of(bad).keys.records() == []
    bad.close()

    gk = open_gk(engine, tmp_path / "data", signer_command=signer_command(key_file))
    assert gk.decide(PERMIT).permitted
    signer = external(gk)
    write_key(key_file)  # another key behind the same command
    os.kill(signer.pid or 0, signal.SIGKILL)
    time.sleep(1.2)
    decision = gk.decide(PERMIT)
    assert_denied(decision, REASON)
    assert audit_of(gk).size() == 1
    gk.close()
    # A fresh process with that other key: not the keyring's active key.
    again = open_gk(engine, tmp_path / "data", signer_command=signer_command(key_file))
    assert_denied(again.decide(PERMIT), "audit_key_unavailable")
    again.close()


# ------------------------------------------------------------------- rotation


def test_rotation_between_external_signers(engine: EmbeddedEngine, tmp_path: Path) -> None:
    """A rotation to a new signer records its public key and range, writes no
    private key, and the retired signer is refused at the next open."""
    old_file, new_file = tmp_path / "old.pem", tmp_path / "new.pem"
    write_key(old_file)
    write_key(new_file)
    data_dir = tmp_path / "data"
    gk = open_gk(engine, data_dir, signer_command=signer_command(old_file))
    log = audit_of(gk)
    for _ in range(3):
        assert gk.decide(PERMIT).permitted
    with pytest.raises(GatekeeperError, match="--new-signer-command") as refused:
        log.rotate_key()
    assert refused.value.reason == "config"
    new = CommandSigner(signer_command(new_file), name=ORIGIN)
    assert log.rotate_key(new) == new.vkey
    assert gk.decide(PERMIT).permitted
    records = log.keys.records()
    assert [(r.first_size, r.last_size) for r in records] == [(0, 3), (3, None)]
    assert records[1].vkey == new.vkey
    assert list((data_dir / "keys").glob("*.pem")) == []
    assert_verifies(log)
    assert log.store.read_entries(4, 5)[0].signature == new.sign(
        log.store.read_entries(4, 5)[0].data
    )
    gk.close()
    assert new.pid is None  # closed with the log

    stale = open_gk(engine, data_dir, signer_command=signer_command(old_file))
    decision = stale.decide(PERMIT)
    assert_denied(decision, "audit_key_unavailable")
    with pytest.raises(AuditError, match="retired at entry 3"):
        audit_of(stale).append(b'{"probe":1}')
    stale.close()
    fresh = open_gk(engine, data_dir, signer_command=signer_command(new_file))
    assert fresh.decide(PERMIT).permitted
    assert_verifies(audit_of(fresh))
    fresh.close()


def test_rotation_with_a_configured_key_path(engine: EmbeddedEngine, tmp_path: Path) -> None:
    """The review's finding, fixed: with key_path, ``rotate-key`` alone is refused
    (it would write a key the restarted process never loads); ``--new-key-path``
    rotates to the given key; a process restarted on the retired key_path fails
    closed instead of signing with it, and ``audit verify`` passes throughout."""
    data_dir = tmp_path / "data"
    old_key, new_key = tmp_path / "conf" / "log-key.pem", tmp_path / "conf" / "log-key-2.pem"
    config = write_config(tmp_path / "gk.toml", key_path=str(old_key))
    made = run_cli(data_dir, "audit", "keygen", "--out", str(old_key))
    assert made.returncode == 0, made.stderr
    for _ in range(2):
        decided = run_cli(
            data_dir, "decide", str(REPO_ROOT / "examples" / "teacher-grades.json"), config=config
        )
        assert decided.returncode == 0, decided.stderr
    ring = (data_dir / "keys" / "keyring.json").read_bytes()

    refused = run_cli(data_dir, "audit", "rotate-key", config=config)
    assert refused.returncode != 0
    assert "--new-key-path" in refused.stderr and "key_path" in refused.stderr, refused.stderr
    assert (data_dir / "keys" / "keyring.json").read_bytes() == ring
    assert list((data_dir / "keys").glob("*.pem")) == []

    assert run_cli(data_dir, "audit", "keygen", "--out", str(new_key)).returncode == 0
    rotated = run_cli(
        data_dir, "audit", "rotate-key", "--new-key-path", str(new_key), config=config
    )
    assert rotated.returncode == 0, rotated.stderr
    new_vkey = rotated.stdout.strip()
    assert new_vkey == load_key_file(new_key, origin=ORIGIN).vkey
    assert "key_path" in rotated.stderr
    assert list((data_dir / "keys").glob("*.pem")) == []  # no private key written

    # Restarted with the retired key_path: fails closed, signs nothing.
    stale = open_gk(engine, data_dir, key_path=old_key)
    assert_denied(stale.decide(PERMIT), "audit_key_unavailable")
    with pytest.raises(AuditError, match="retired at entry 2") as info:
        audit_of(stale).append(b'{"probe":1}')
    assert info.value.reason == "audit_key_unavailable"
    assert audit_of(stale).size() == 3
    stale.close()
    # An unknown key at key_path: fails closed too (not silently added).
    write_key(tmp_path / "conf" / "stranger.pem")
    stranger = open_gk(engine, data_dir, key_path=tmp_path / "conf" / "stranger.pem")
    with pytest.raises(AuditError, match="not the keyring's active key"):
        audit_of(stranger).append(b'{"probe":1}')
    stranger.close()

    write_config(config, key_path=str(new_key))
    decided = run_cli(
        data_dir, "decide", str(REPO_ROOT / "examples" / "teacher-grades.json"), config=config
    )
    assert decided.returncode == 0, decided.stderr
    assert run_cli(data_dir, "audit", "vkey", config=config).stdout.strip() == new_vkey
    verify = run_cli(data_dir, "audit", "verify", config=config)
    assert verify.returncode == 0 and "4/4 entries valid" in verify.stdout, verify


def test_a_running_process_on_a_rotated_key_path_stops_signing(tmp_path: Path) -> None:
    """Another process rotates away from this one's configured key: at its next
    append it fails closed (not signing with the retired key), and verify passes."""
    old_key, new_key = tmp_path / "a.pem", tmp_path / "b.pem"
    write_key(old_key)
    write_key(new_key)
    running = AuditLog.open_sqlite(tmp_path / "data", origin=ORIGIN, key_path=old_key)
    rotator = AuditLog.open_sqlite(tmp_path / "data", origin=ORIGIN, key_path=old_key)
    running.append(b'{"i":0}')
    rotator.rotate_key(load_key_file(new_key, origin=ORIGIN))
    rotator.append(b'{"i":2}')  # the rotating process signs with the new key from now on
    with pytest.raises(AuditError, match="retired at entry 1") as info:
        running.append(b'{"i":3}')
    assert info.value.reason == "audit_key_unavailable"
    assert running.size() == 3
    assert_verifies(running)
    running.close()
    rotator.close()


# --------------------------------------------------------------------- keygen


def test_keygen_encrypts_with_the_passphrase(
    engine: EmbeddedEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "conf" / "log-key.pem"
    made = run_cli(
        tmp_path,
        "audit",
        "keygen",
        "--out",
        str(out),
        env=dict(ENV, GATEKEEPER_KEY_PASSPHRASE="pw 7"),
    )
    assert made.returncode == 0, made.stderr
    assert "encrypted with the passphrase in GATEKEEPER_KEY_PASSPHRASE" in made.stdout
    assert "pw 7" not in made.stdout + made.stderr
    pem = out.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (out.stat().st_mode & 0o777) == 0o600
    with pytest.raises(TypeError):  # a password is required
        serialization.load_pem_private_key(pem, password=None)
    serialization.load_pem_private_key(pem, password=b"pw 7")

    plain = run_cli(tmp_path, "audit", "keygen", "--out", str(tmp_path / "plain.pem"))
    assert plain.returncode == 0 and "NOT encrypted" in plain.stdout
    assert (tmp_path / "plain.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")

    # The encrypted key works as key_path, and as the signing process's key.
    monkeypatch.setenv("GATEKEEPER_KEY_PASSPHRASE", "pw 7")
    gk = open_gk(engine, tmp_path / "data", signer_command=signer_command(out))
    assert gk.decide(PERMIT).permitted
    gk.close()
    gk = open_gk(engine, tmp_path / "data2", key_path=out)
    assert gk.decide(PERMIT).permitted
    gk.close()


# ------------------------------------------------------------------- settings


def test_signer_settings(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gk.toml", signer_command=["/opt/signer", "--key", "k"])
    settings = load_settings(config)
    assert settings.signer_command == ("/opt/signer", "--key", "k")
    assert settings.signer_timeout == 1.0
    with pytest.raises(GatekeeperError, match="exclude each other"):
        load_settings(config, key_path="/etc/k.pem")
    with pytest.raises(GatekeeperError, match="list of strings"):
        load_settings(write_config(tmp_path / "bad.toml", signer_command="/opt/signer --key k"))
    with pytest.raises(GatekeeperError, match="signer_timeout"):
        load_settings(config, signer_timeout=0)
