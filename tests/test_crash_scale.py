"""Crash safety at scale: 200 ``kill -9`` cycles of a multi-threaded audit writer.

Each cycle starts a writer process (``tests/crash_writer.py``) with 8 threads
appending through ``AuditLog.append`` — the group-commit path that
``Gatekeeper.decide`` uses — and, every third cycle, real decisions through
``Gatekeeper.decide`` on the embedded engine (decision entries with their
obligations outbox rows in the same transaction). A thread acknowledges an
entry on stdout (one ``os.write`` per line) only after ``append`` returned. The
parent kills the writer with SIGKILL at a moment drawn from a seeded RNG:

- ``startup``: 0-40 ms after the fork, usually before the log is open (the
  origin file, the signing key, the schema, SQLite's WAL recovery);
- ``steady``: 30-300 ms in, amid concurrent appends and commits;
- ``after_ack``: right after the k-th acknowledgment (k in 1..150), i.e.
  right after a commit returned;
- ``cold`` (every 10th cycle): a fresh interpreter instead of a fork, killed
  0-1.2 s after exec: during imports, start-up or appends.

Process start-up with imports costs ~0.6 s, so writers are forked from a
zygote (``crash_writer.py zygote``) that imported gatekeeper and compiled the
embedded engine once and never opened the log: a fork plus opening the log
costs ~30 ms. The ``cold`` cycles keep the full start-up covered.

After every kill, with no writer running, an incremental check proves, in
O(entries and checkpoints added by the cycle):

- no rollback: the head did not shrink, the checkpoint trusted after the last
  cycle (kept here, outside the store) is still stored, and each new signed
  checkpoint (pinned verifier key; the keyring still has exactly that key) is
  consistent with the one before it (RFC 9162 proof from the stored hashes),
  the last one at exactly the head;
- no gap and nothing beyond the head: entries are exactly ``0..size-1``
  (``max(idx) = size - 1``), the stored hashes exactly those of ``size``
  leaves, no outbox row for an entry past the head;
- the new entries: canonical JSON, a valid signature, unique decision ids; the
  tree hashes they add, recomputed from the entries and the hashes verified in
  earlier cycles, equal the stored ones, and the root equals the checkpoint's;
- every decision entry has exactly its obligations' outbox rows, committed
  with it (no row without an entry, no entry without its rows);
- every entry acknowledged in the cycle is there with the acknowledged leaf
  hash (and decision id); a sample of earlier acknowledgments is re-proven by
  inclusion proofs against the new root.

``verify_log`` has no "start from a trusted checkpoint" mode, so the full
verification (every entry, signature, hash and checkpoint, ``trusted`` = the
checkpoint kept outside) runs in-process whenever the log has doubled since
the last full one, and at the end: O(final size) in total. The real CLI,
``gatekeeper audit verify --trusted FILE --vkey VKEY``, runs every
``max(50, cycles // 4)`` cycles (a 1% signature sample) and at the end (every
signature). At those points every acknowledged entry is re-checked.

The longer run (documented in docs/crash-safety.md)::

    GATEKEEPER_CRASH_CYCLES=2000 python3 -m pytest tests/test_crash_scale.py -s

``GATEKEEPER_CRASH_SEED`` picks another kill schedule; a failure names the
seed, the cycle and its plan. ``GATEKEEPER_CRASH_PG_CYCLES`` (default 20) sets
the PostgreSQL variant's cycles.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gatekeeper.audit import merkle
from gatekeeper.audit.entry import AuditError, canonical
from gatekeeper.audit.keys import KeyStore
from gatekeeper.audit.note import Verifier, open_checkpoint, parse_verifier_key
from gatekeeper.audit.readonly import ReadOnlySqliteStore
from gatekeeper.audit.store import LogReader, build_batch
from gatekeeper.audit.verify import verify_log
from tests.conftest import REPO_ROOT

CYCLES = int(os.environ.get("GATEKEEPER_CRASH_CYCLES", "200"))
PG_CYCLES = int(os.environ.get("GATEKEEPER_CRASH_PG_CYCLES", "20"))
SEED = int(os.environ.get("GATEKEEPER_CRASH_SEED", "20260402"))
FIRST_STARTS = 60
THREADS = 8
WRITER = REPO_ROOT / "tests" / "crash_writer.py"
ENV = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
#: No acknowledgment for this long while waiting for one: the writer is stuck.
STUCK = 20.0


# -- the writer processes ------------------------------------------------------------


class _Lines:
    """Lines of a pipe, read by a thread into a queue (None at EOF)."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: IO[bytes]) -> None:
        for raw in pipe:
            self.queue.put(raw.decode().rstrip("\n"))
        self.queue.put(None)

    def get(self, timeout: float) -> str | None:
        """The next line; raises queue.Empty after ``timeout``; None at EOF."""
        return self.queue.get(timeout=max(timeout, 0.0))


class Zygote:
    """The fork server: a python that imported gatekeeper once."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), "zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=ENV,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.lines = _Lines(self.proc.stdout)
        line = self.lines.get(120)
        assert line == "ready", f"the zygote did not start: {line!r}"

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("exit")
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@dataclass
class Outcome:
    """What one writer acknowledged before it was killed."""

    acks: list[tuple[int, str]] = field(default_factory=list)
    decisions: list[tuple[int, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    up: bool = False
    acks_at_kill: int = 0
    up_at_kill: bool = False

    @property
    def count(self) -> int:
        return len(self.acks) + len(self.decisions)


class _Run:
    """One writer of one cycle: its lines, its pid, its kill."""

    def __init__(self, cycle: int, lines: _Lines, plan: str) -> None:
        self.cycle = cycle
        self.lines = lines
        self.plan = plan
        self.out = Outcome()
        self.pid: int | None = None
        self.status: int | None = None

    def _take(self, line: str) -> None:
        words = line.split(" ", 2)
        kind = words[0]
        if kind in {"ack", "dec", "err", "up", "fatal", "pid", "reaped"}:
            if int(words[1]) != self.cycle:
                raise AssertionError(f"{self.plan}: a line of another cycle: {line!r}")
        rest = words[2] if len(words) > 2 else ""
        if kind == "ack":
            index, leaf = rest.split()
            self.out.acks.append((int(index), leaf))
        elif kind == "dec":
            index, leaf, did = rest.split()
            self.out.decisions.append((int(index), leaf, did))
        elif kind == "err":
            self.out.errors.append(rest)
        elif kind == "up":
            self.out.up = True
        elif kind == "fatal":
            raise AssertionError(f"{self.plan}: the writer could not start: {rest}")
        elif kind == "pid":
            self.pid = int(rest)
        elif kind == "reaped":
            pid, status = rest.split()
            assert int(pid) == self.pid
            self.status = int(status)
        else:
            raise AssertionError(f"{self.plan}: unexpected line {line!r}")

    def pump(self, until: float, *, acks: int | None = None, pid: bool = False) -> None:
        """Take lines until ``until`` (monotonic), ``acks`` acknowledgments, or the pid."""
        while True:
            if pid and self.pid is not None:
                return
            if acks is not None and self.out.count >= acks:
                return
            try:
                line = self.lines.get(until - time.monotonic())
            except queue.Empty:
                return
            if line is None:
                raise AssertionError(f"{self.plan}: the writer's output ended before the kill")
            self._take(line)

    def kill(self) -> None:
        assert self.pid is not None
        self.out.acks_at_kill = self.out.count
        self.out.up_at_kill = self.out.up
        os.kill(self.pid, signal.SIGKILL)

    def drain(self, *, until_eof: bool) -> None:
        """Every line the killed writer wrote (they precede the reap notice / EOF)."""
        deadline = time.monotonic() + 60
        while until_eof or self.status is None:
            try:
                line = self.lines.get(deadline - time.monotonic())
            except queue.Empty:
                raise AssertionError(f"{self.plan}: the killed writer was not reaped") from None
            if line is None:
                if until_eof:
                    return
                raise AssertionError(f"{self.plan}: the zygote died")
            self._take(line)


@dataclass(frozen=True)
class Plan:
    """One cycle's writer and kill: ``at`` seconds after the start, or after ``acks``."""

    cycle: int
    timing: str
    mode: str
    seed: int
    at: float = 0.0
    acks: int = 0

    def describe(self) -> str:
        when = f"after {self.acks} acks" if self.acks else f"at {self.at * 1000:.0f} ms"
        return f"seed {SEED}, cycle {self.cycle}: {self.timing} kill {when} of a {self.mode} writer"


def plan_cycle(rng: random.Random, cycle: int) -> Plan:
    mode = "decide" if cycle % 3 == 2 else "append"
    seed = rng.randrange(1 << 30)
    if cycle % 10 == 9:
        return Plan(cycle, "cold", mode, seed, at=rng.uniform(0.0, 1.2))
    timing = rng.choices(["startup", "steady", "after_ack"], [15, 55, 30])[0]
    if timing == "startup":
        return Plan(cycle, timing, mode, seed, at=rng.uniform(0.0, 0.04))
    if timing == "steady":
        return Plan(cycle, timing, mode, seed, at=rng.uniform(0.03, 0.3))
    return Plan(cycle, timing, mode, seed, acks=rng.randint(1, 150))


def run_writer(zygote: Zygote, plan: Plan, data_dir: Path, store: str) -> Outcome:
    """Start a writer, kill it -9 as planned; what it acknowledged."""
    args = f"{plan.cycle} {plan.mode} {THREADS} {plan.seed} {data_dir} {store}"
    what = plan.describe()
    start = time.monotonic()
    if plan.timing == "cold":
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), "cold", *args.split()], stdout=subprocess.PIPE, env=ENV
        )
        assert proc.stdout is not None
        run = _Run(plan.cycle, _Lines(proc.stdout), what)
        run.pid = proc.pid
        try:
            run.pump(start + plan.at)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        run.kill()
        proc.wait()
        run.drain(until_eof=True)
        assert proc.returncode == -signal.SIGKILL, f"{what}: the writer exited {proc.returncode}"
        return run.out
    run = _Run(plan.cycle, zygote.lines, what)
    zygote.send(f"fork {args}")
    run.pump(start + 10, pid=True)
    assert run.pid is not None, f"{what}: the zygote did not fork"
    try:
        if plan.acks:
            run.pump(start + STUCK, acks=plan.acks)
            assert run.out.count >= plan.acks, (
                f"{what}: {run.out.count} acknowledgments in {STUCK}s: "
                f"stuck? errors: {run.out.errors[:3]}"
            )
        else:
            run.pump(start + plan.at)
    except BaseException:
        os.kill(run.pid, signal.SIGKILL)  # no writer outlives a failed cycle
        zygote.send(f"reap {run.pid}")
        raise
    run.kill()
    zygote.send(f"reap {run.pid}")
    run.drain(until_eof=False)
    status = run.status
    assert status is not None and os.WIFSIGNALED(status), f"{what}: writer status {status}"
    assert os.WTERMSIG(status) == signal.SIGKILL, f"{what}: writer status {status}"
    return run.out


# -- the raw queries: nothing beyond the head, the tails of checkpoints and outbox ----


class Raw(Protocol):
    def max_index(self, table: str) -> int | None: ...

    def checkpoints_after(self, last_id: int) -> list[tuple[int, int, str]]: ...

    def checkpoint_note(self, checkpoint_id: int) -> str | None: ...

    def obligations_after(self, last_id: int) -> list[tuple[int, int, str, str]]: ...

    def close(self) -> None: ...


class SqliteRaw:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        #: Tables a writer killed amid creating the schema did not make yet.
        self.missing: list[str] = []

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, params).fetchall()

    def max_index(self, table: str) -> int | None:
        column = {"entries": "idx", "hashes": "idx", "obligations": "entry_index"}[table]
        try:
            (value,) = self._rows(f"SELECT max({column}) FROM {table}")[0]
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            self.missing.append(table)
            return None
        return None if value is None else int(value)

    def checkpoints_after(self, last_id: int) -> list[tuple[int, int, str]]:
        rows = self._rows(
            "SELECT id, size, note FROM checkpoints WHERE id > ? ORDER BY id", (last_id,)
        )
        return [(int(i), int(s), str(n)) for i, s, n in rows]

    def checkpoint_note(self, checkpoint_id: int) -> str | None:
        rows = self._rows("SELECT note FROM checkpoints WHERE id = ?", (checkpoint_id,))
        return str(rows[0][0]) if rows else None

    def obligations_after(self, last_id: int) -> list[tuple[int, int, str, str]]:
        rows = self._rows(
            "SELECT id, entry_index, decision_id, code FROM obligations WHERE id > ? ORDER BY id",
            (last_id,),
        )
        return [(int(i), int(e), str(d), str(c)) for i, e, d, c in rows]

    def close(self) -> None:
        self.db.close()


class PostgresRaw:
    def __init__(self, dsn: str) -> None:
        import psycopg

        self.db = psycopg.connect(dsn, autocommit=True)

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def max_index(self, table: str) -> int | None:
        column = {"entries": "idx", "hashes": "idx", "obligations": "entry_index"}[table]
        (value,) = self._rows(f"SELECT max({column}) FROM {table}")[0]
        return None if value is None else int(value)

    def checkpoints_after(self, last_id: int) -> list[tuple[int, int, str]]:
        rows = self._rows(
            "SELECT id, size, note FROM checkpoints WHERE id > %s ORDER BY id", (last_id,)
        )
        return [(int(i), int(s), str(n)) for i, s, n in rows]

    def checkpoint_note(self, checkpoint_id: int) -> str | None:
        rows = self._rows("SELECT note FROM checkpoints WHERE id = %s", (checkpoint_id,))
        return str(rows[0][0]) if rows else None

    def obligations_after(self, last_id: int) -> list[tuple[int, int, str, str]]:
        rows = self._rows(
            "SELECT id, entry_index, decision_id, code FROM obligations WHERE id > %s ORDER BY id",
            (last_id,),
        )
        return [(int(i), int(e), str(d), str(c)) for i, e, d, c in rows]

    def close(self) -> None:
        self.db.close()


# -- the checks ----------------------------------------------------------------------


@dataclass
class Stats:
    cycles: int = 0
    acknowledged: int = 0
    decisions: int = 0
    errors: int = 0
    kills: dict[str, int] = field(default_factory=dict)
    before_first_ack: int = 0
    before_open: int = 0
    full_verifies: int = 0
    cli_verifies: int = 0
    writer_seconds: float = 0.0
    check_seconds: float = 0.0
    full_seconds: float = 0.0
    cli_seconds: float = 0.0


class Checker:
    """The state kept outside the store across crashes, and the per-cycle check."""

    def __init__(self, data_dir: Path, store: str, outside: Path) -> None:
        self.data_dir = data_dir
        self.store = store
        self.outside = outside  # the trusted checkpoint and the pinned key live here
        self.size = 0
        self.root = merkle.EMPTY_ROOT
        self.note: str | None = None
        self.checkpoint_id = 0
        self.obligation_id = 0
        self.origin: str | None = None
        self.vkey: str | None = None
        self.public: Ed25519PublicKey | None = None
        self.acks: dict[int, str] = {}
        self.decision_ids: dict[str, int] = {}
        self.rng = random.Random(SEED + 1)
        self.full_at = 0
        #: How often a read-only open met a hot journal left by a killed first start.
        self.needs_recovery = 0

    # -- opening -------------------------------------------------------------------

    def _open(self) -> tuple[LogReader, Raw] | None:
        if self.store == "sqlite":
            path = self.data_dir / "audit.sqlite"
            if not path.exists():
                return None
            try:
                reader: LogReader = ReadOnlySqliteStore(path)
            except AuditError as exc:
                if "no such table" in str(exc):  # killed before the schema was made
                    return None
                if exc.reason == "audit_store_needs_recovery":
                    # Killed while creating the file: a hot journal that only a
                    # read-write open (the next writer) rolls back.
                    self.needs_recovery += 1
                    return None
                raise
            return reader, SqliteRaw(path)
        from gatekeeper.audit.postgres import PostgresStore

        return PostgresStore(self.store), PostgresRaw(self.store)

    def _verifiers(self) -> list[Verifier]:
        assert self.vkey is not None
        return [Verifier(self.vkey)]

    def _pin_key(self, plan: str) -> None:
        """The log's origin and key, pinned at the first checkpoint; never replaced."""
        if self.origin is None:
            self.origin = (self.data_dir / "origin").read_text(encoding="utf-8").strip()
        records = KeyStore(self.data_dir, origin=self.origin).records()
        if self.vkey is None:
            assert len(records) == 1, f"{plan}: keyring {records}"
            self.vkey = records[0].vkey
            self.public = Ed25519PublicKey.from_public_bytes(parse_verifier_key(self.vkey)[2])
            (self.outside / "vkey").write_text(self.vkey + "\n", encoding="utf-8")
        vkeys = [r.vkey for r in records]
        assert vkeys == [self.vkey], f"{plan}: the signing key changed after a crash: {vkeys}"

    # -- the per-cycle check -------------------------------------------------------------

    def check(self, out: Outcome, plan: str) -> None:
        opened = self._open()
        if opened is None:
            assert self.size == 0 and out.count == 0, f"{plan}: acknowledged, but no log"
            return
        reader, raw = opened
        try:
            self._check(reader, raw, out, plan)
        finally:
            reader.close()
            raw.close()

    def _check(self, reader: LogReader, raw: Raw, out: Outcome, plan: str) -> None:
        m, n = self.size, reader.size()
        assert n >= m, f"{plan}: the log shrank from {m} to {n} entries (rollback)"
        # Exactly n entries and the hashes of n leaves: no gap, nothing past the head.
        assert raw.max_index("entries") == (n - 1 if n else None), f"{plan}: entries vs head {n}"
        hashes = merkle.stored_hash_count(n)
        assert raw.max_index("hashes") == (hashes - 1 if n else None), f"{plan}: hashes vs head"
        beyond = raw.max_index("obligations")
        assert beyond is None or beyond < n, f"{plan}: an outbox row for entry {beyond} >= {n}"
        missing = getattr(raw, "missing", [])
        assert not missing or n == 0, f"{plan}: a log of {n} entries without tables {missing}"
        if missing:
            assert out.count == 0, f"{plan}: acknowledged, but the schema is incomplete"
            return
        if self.note is not None:
            assert raw.checkpoint_note(self.checkpoint_id) == self.note, (
                f"{plan}: the checkpoint trusted after the last cycle is gone or changed"
            )
        new_checkpoints = raw.checkpoints_after(self.checkpoint_id)
        if n == m:
            assert not new_checkpoints, f"{plan}: new checkpoints without new entries"
            assert out.count == 0, f"{plan}: acknowledged, but the log did not grow"
            return
        assert new_checkpoints, f"{plan}: the log grew to {n} without a checkpoint"
        self._pin_key(plan)
        entries = reader.read_entries(m, n)
        assert [e.index for e in entries] == list(range(m, n)), f"{plan}: entries {m}..{n}"
        # The new entries: canonical, signed by the pinned key, unique decision ids.
        assert self.public is not None
        expected_rows: dict[int, tuple[str, set[str]]] = {}
        for e in entries:
            value = json.loads(e.data)
            assert canonical(value) == e.data, f"{plan}: entry {e.index} is not canonical"
            try:
                self.public.verify(e.signature, e.data)
            except InvalidSignature:
                raise AssertionError(f"{plan}: entry {e.index}: bad signature") from None
            did = value.get("decision_id")
            if isinstance(did, str):
                assert did not in self.decision_ids, f"{plan}: decision {did} twice"
                self.decision_ids[did] = e.index
            if value.get("kind") == "decision":
                expected_rows[e.index] = (str(did), set(value.get("obligations") or []))
        # The tree: hashes recomputed from the entries (over the hashes verified before)
        # equal the stored ones, and the root at n is the latest checkpoint's.
        appended, new_hashes, root = build_batch(
            m, [(e.data, e.signature) for e in entries], reader.read_hashes
        )
        wanted = sorted(new_hashes)
        assert reader.read_hashes(wanted) == [new_hashes[i] for i in wanted], (
            f"{plan}: stored tree hashes of entries {m}..{n} differ from the entries"
        )
        leaves = {a.index: a.leaf_hash.hex() for a in appended}
        # The checkpoints: signed, in order, each consistent with the one before.
        prev_size, prev_root = m, self.root
        for checkpoint_id, stored_size, note in new_checkpoints:
            cp = open_checkpoint(note, self._verifiers())
            assert cp.origin == self.origin and cp.size == stored_size, f"{plan}: {note!r}"
            assert prev_size <= cp.size <= n, f"{plan}: checkpoint sizes {prev_size} -> {cp.size}"
            if prev_size and cp.size > prev_size:
                proof = merkle.prove_tree(cp.size, prev_size, reader.read_hashes)
                merkle.check_tree(proof, cp.size, cp.root, prev_size, prev_root)
            elif prev_size:
                assert cp.root == prev_root, f"{plan}: two roots at size {cp.size}"
            prev_size, prev_root = cp.size, cp.root
            self.checkpoint_id = checkpoint_id
        assert prev_size == n and prev_root == root, (
            f"{plan}: the latest checkpoint (size {prev_size}) is not the head {n} / its root"
        )
        # The outbox rows committed since: exactly those of the new decision entries.
        got_rows: dict[int, tuple[str, set[str]]] = {}
        for row_id, index, did, code in raw.obligations_after(self.obligation_id):
            got_rows.setdefault(index, (did, set()))[1].add(code)
            assert got_rows[index][0] == did, f"{plan}: outbox rows of entry {index}"
            self.obligation_id = row_id
        assert got_rows == {i: r for i, r in expected_rows.items() if r[1]}, (
            f"{plan}: the outbox rows do not match the decision entries {m}..{n}"
        )
        # Every acknowledgment of the cycle: there, with its leaf hash (and decision id).
        for index, leaf in out.acks:
            assert leaves.get(index) == leaf, f"{plan}: acknowledged entry {index} lost/changed"
        for index, leaf, did in out.decisions:
            assert leaves.get(index) == leaf, f"{plan}: acknowledged decision {did} lost/changed"
            assert self.decision_ids.get(did) == index, f"{plan}: decision {did} not at {index}"
        older = list(self.acks.items())
        for index, leaf in self.rng.sample(older, min(16, len(older))):
            proof = merkle.prove_record(n, index, reader.read_hashes)
            merkle.check_record(proof, n, root, index, bytes.fromhex(leaf))
        self.acks.update((index, leaf) for index, leaf in out.acks)
        self.acks.update((index, leaf) for index, leaf, _ in out.decisions)
        self.size, self.root, self.note = n, root, new_checkpoints[-1][2]
        (self.outside / "checkpoint").write_text(self.note, encoding="utf-8")

    # -- full verifications ----------------------------------------------------------------

    def all_acks_present(self) -> None:
        """Every entry acknowledged in any cycle: stored, with its leaf hash, in the
        tree of the trusted checkpoint (whose root the per-cycle checks recomputed)."""
        opened = self._open()
        assert opened is not None or not self.acks
        if opened is None:
            return
        reader, raw = opened
        try:
            assert reader.size() == self.size
            indexes = sorted(self.acks)
            for lo in range(0, len(indexes), 2000):
                chunk = indexes[lo : lo + 2000]
                stored = reader.read_hashes([merkle.stored_hash_index(0, i) for i in chunk])
                entries = {e.index: e for e in reader.read_entries(chunk[0], chunk[-1] + 1)}
                for i, leaf in zip(chunk, stored, strict=True):
                    assert leaf.hex() == self.acks[i], f"acknowledged entry {i} lost or changed"
                    assert merkle.leaf_hash(entries[i].data).hex() == self.acks[i], i
            assert merkle.tree_hash(self.size, reader.read_hashes) == self.root
        finally:
            reader.close()
            raw.close()

    def full_verify(self, trusted: str | None, plan: str) -> None:
        """verify_log over the whole log, the checkpoint of before the cycle trusted.

        Signatures: a 1% sample (each entry's signature was checked in its cycle);
        every entry, hash and checkpoint otherwise."""
        opened = self._open()
        assert opened is not None
        reader, raw = opened
        try:
            assert self.origin is not None and self.vkey is not None
            report = verify_log(
                reader,  # type: ignore[arg-type]
                KeyStore(self.data_dir, origin=self.origin),
                vkeys=[self.vkey],
                trusted=trusted,
                signatures="sample",
            )
            assert report.ok, f"{plan}: verify_log: {[str(p) for p in report.problems[:5]]}"
            assert report.size == self.size and report.root == self.root, plan
        finally:
            reader.close()
            raw.close()
        self.full_at = self.size

    def cli_verify(self, signatures: str, plan: str) -> None:
        """The real ``gatekeeper audit verify`` with the checkpoint and key kept outside."""
        args = [sys.executable, "-m", "gatekeeper", "--data-dir", str(self.data_dir)]
        if self.store != "sqlite":  # a shared PostgreSQL log: configured origin and key
            assert self.vkey is not None and self.origin is not None
            key = self.data_dir / "keys" / f"{Verifier(self.vkey).key_id.hex()}.pem"
            config = self.outside / "gatekeeper.toml"
            config.write_text(
                f"audit_url = {json.dumps(self.store)}\norigin = {json.dumps(self.origin)}\n"
                f"key_path = {json.dumps(str(key))}\n",
                encoding="utf-8",
            )
            args += ["--config", str(config)]
        args += ["audit", "verify", "--signatures", signatures, "--workers", "2"]
        args += ["--trusted", str(self.outside / "checkpoint"), "--vkey", str(self.vkey)]
        result = subprocess.run(
            args, capture_output=True, text=True, env=ENV, timeout=600, check=False
        )
        assert result.returncode == 0, f"{plan}: audit verify: {result.stdout}{result.stderr}"
        assert f"{self.size}/{self.size} entries valid" in result.stdout, (plan, result.stdout)


# -- the runs ----------------------------------------------------------------------------


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    try:
        yield z
    finally:
        z.close()


def crash_cycles(
    zygote: Zygote, data_dir: Path, store: str, outside: Path, cycles: int
) -> tuple[Stats, Checker]:
    rng = random.Random(SEED)
    checker = Checker(data_dir, store, outside)
    stats = Stats()
    cli_every = max(50, cycles // 4)
    for cycle in range(cycles):
        t0 = time.monotonic()
        planned = plan_cycle(rng, cycle)
        timing = planned.timing
        out = run_writer(zygote, planned, data_dir, store)
        t1 = time.monotonic()
        plan = f"{planned.describe()} ({out.count} acknowledged)"
        trusted = checker.note
        checker.check(out, plan)
        t2 = time.monotonic()
        stats.cycles += 1
        stats.acknowledged += out.count
        stats.decisions += len(out.decisions)
        stats.errors += len(out.errors)
        stats.kills[timing] = stats.kills.get(timing, 0) + 1
        stats.before_first_ack += out.acks_at_kill == 0
        stats.before_open += not out.up_at_kill
        stats.writer_seconds += t1 - t0
        stats.check_seconds += t2 - t1
        last = cycle == cycles - 1
        if checker.size >= 2 * max(checker.full_at, 1) and not last:
            checker.full_verify(trusted, plan)
            stats.full_verifies += 1
            stats.full_seconds += time.monotonic() - t2
        if checker.size and ((cycle + 1) % cli_every == 0 or last):
            t3 = time.monotonic()
            checker.cli_verify("all" if last else "sample", plan)
            stats.cli_verifies += 1
            stats.cli_seconds += time.monotonic() - t3
    checker.all_acks_present()
    return stats, checker


def report(name: str, stats: Stats, checker: Checker, elapsed: float) -> str:
    text = (
        f"{name}: {stats.cycles} kill -9 cycles in {elapsed:.1f}s (seed {SEED}); "
        f"log {checker.size} entries, {stats.acknowledged} acknowledged "
        f"({stats.decisions} decisions), {stats.errors} append errors; kills {stats.kills}, "
        f"{stats.before_first_ack} before the first acknowledgment "
        f"({stats.before_open} before the log was open); "
        f"writers {stats.writer_seconds:.1f}s, per-cycle checks {stats.check_seconds:.1f}s, "
        f"{stats.full_verifies} full verify_log {stats.full_seconds:.1f}s, "
        f"{stats.cli_verifies} CLI audit verify {stats.cli_seconds:.1f}s"
    )
    print(text)
    return text


def test_kill_9_cycles_lose_no_acknowledged_entry(zygote: Zygote, tmp_path: Path) -> None:
    data_dir, outside = tmp_path / "data", tmp_path / "outside"
    outside.mkdir()
    start = time.monotonic()
    stats, checker = crash_cycles(zygote, data_dir, "sqlite", outside, CYCLES)
    report("sqlite", stats, checker, time.monotonic() - start)
    assert stats.cycles == CYCLES
    assert stats.acknowledged > CYCLES, "the writers acknowledged almost nothing"
    assert stats.decisions > 0 and stats.before_first_ack > 0
    assert len(checker.acks) == stats.acknowledged


def test_kill_9_cycles_postgres(zygote: Zygote, tmp_path: Path, pg_dsn: str) -> None:
    """Fewer cycles on PostgreSQL: a killed writer's transaction is rolled back by the server."""
    data_dir, outside = tmp_path / "data", tmp_path / "outside"
    outside.mkdir()
    start = time.monotonic()
    stats, checker = crash_cycles(zygote, data_dir, pg_dsn, outside, PG_CYCLES)
    report("postgres", stats, checker, time.monotonic() - start)
    assert stats.cycles == PG_CYCLES and stats.acknowledged > PG_CYCLES
    assert len(checker.acks) == stats.acknowledged


def test_kill_9_during_first_start(zygote: Zygote, tmp_path: Path) -> None:
    """A brand-new log killed while it is being created — the origin file, the
    first signing key and keyring, the SQLite file, WAL and schema — 60 times:
    each time the next writer starts and appends, and the checks pass."""
    rng = random.Random(SEED + 2)
    start = time.monotonic()
    run_writer(zygote, Plan(0, "after_ack", "append", 1, acks=1), tmp_path / "probe", "sqlite")
    first_ack = time.monotonic() - start  # the kill moments spread over this
    before_ack = recoveries = 0
    for k in range(FIRST_STARTS):
        data_dir, outside = tmp_path / f"log{k}", tmp_path / f"outside{k}"
        outside.mkdir()
        checker = Checker(data_dir, "sqlite", outside)
        plan = Plan(
            0, "startup", "append", rng.randrange(1 << 30), at=rng.uniform(0, 1.5 * first_ack)
        )
        out = run_writer(zygote, plan, data_dir, "sqlite")
        before_ack += out.count == 0
        checker.check(out, f"first start {k}: {plan.describe()}")
        recoveries += checker.needs_recovery
        again = Plan(1, "after_ack", "append", rng.randrange(1 << 30), acks=3)
        out = run_writer(zygote, again, data_dir, "sqlite")
        checker.check(out, f"first start {k}, restarted: {again.describe()}")
        assert checker.size >= 3
    print(
        f"first start: {FIRST_STARTS} new logs killed within {first_ack * 1000:.0f} ms "
        f"({before_ack} before the first acknowledgment, {recoveries} left a hot journal), "
        "each restarted"
    )
    assert before_ack > 0


def test_key_file_without_keyring_of_an_empty_log_is_adopted(tmp_path: Path) -> None:
    """The state a first start killed between writing its key file and its keyring
    leaves (found by the test above): the next start adopts that key — it signed
    nothing — instead of refusing forever or generating another one."""
    from gatekeeper.audit.log import AuditLog

    with AuditLog.open_sqlite(tmp_path, origin="crash.example/log") as log:
        vkey = log.keys.vkey()  # the key file and the keyring, no entry yet
    (tmp_path / "keys" / "keyring.json").unlink()
    with AuditLog.open_sqlite(tmp_path, origin="crash.example/log") as log:
        receipt = log.append(canonical({"kind": "crash_test", "n": 0}))
        assert log.keys.vkey() == vkey and receipt.index == 0
        assert [r.vkey for r in log.keys.records()] == [vkey]
        assert verify_log(log.store, log.keys, vkeys=[vkey]).ok
    # Another origin's key file is not adopted.
    other = tmp_path / "other"
    (other / "keys").mkdir(parents=True)
    pem = next((tmp_path / "keys").glob("*.pem"))
    (other / "keys" / pem.name).write_bytes(pem.read_bytes())
    with AuditLog.open_sqlite(other, origin="elsewhere.example/log") as log:
        with pytest.raises(AuditError, match="not this log's key"):
            log.append(canonical({"kind": "crash_test", "n": 0}))
