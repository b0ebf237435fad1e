"""Audit stores: where entries, tree hashes and checkpoints live durably.

The contract is one small protocol, :class:`AuditStore`. ``append_batch``
is one transaction: it takes the log head (a lock that serializes writers
across threads, processes and, for PostgreSQL, machines), stores each entry
with its signature and the RFC 6962 hashes it completes, computes the new
root, has it signed as a checkpoint, stores the checkpoint, moves the head
and commits. Nothing is acknowledged before the commit returns.

Implementations: :class:`SqliteStore` (here; WAL, ``synchronous=FULL``) and
``gatekeeper.audit.postgres.PostgresStore``. Both also keep the obligations
outbox (:class:`OutboxStore`, :mod:`gatekeeper.audit.outbox`): the rows of an
entry are written in the entry's transaction.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Protocol

from gatekeeper.audit import merkle
from gatekeeper.audit import outbox as _outbox
from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.outbox import ObligationRecord, OutboxOp

__all__ = [
    "AppendedEntry",
    "AuditStore",
    "LogReader",
    "OutboxStore",
    "SignCheckpoint",
    "SqliteStore",
    "StoredEntry",
]

#: Called inside the append transaction with (size, root); returns the signed note.
SignCheckpoint = Callable[[int, bytes], str]


@dataclass(frozen=True, slots=True)
class AppendedEntry:
    index: int
    leaf_hash: bytes


def stored_bytes(value: object) -> bytes:
    """A BLOB column's value as bytes. SQLite keeps whatever type was written:
    a row edited by hand as text (or a number) is read as its UTF-8 text, so
    that ``audit verify`` names the edited entry instead of failing on it."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if value is None:
        return b""
    return str(value).encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class StoredEntry:
    index: int
    data: bytes
    signature: bytes


class LogReader(Protocol):
    """The reading half of an audit store."""

    def size(self) -> int: ...

    def read_entries(self, start: int, end: int) -> list[StoredEntry]: ...

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]: ...

    def checkpoints(self) -> list[tuple[int, str]]: ...

    def latest_checkpoint(self) -> str | None: ...

    def close(self) -> None: ...


class AuditStore(LogReader, Protocol):
    """Durable storage of one log."""

    def append_batch(
        self, entries: Sequence[tuple[bytes, bytes]], sign_checkpoint: SignCheckpoint
    ) -> tuple[list[AppendedEntry], str]:
        """Append (entry, signature) pairs and a checkpoint in one transaction."""
        ...


class OutboxStore(AuditStore, Protocol):
    """An audit store that also keeps the obligations outbox (SQLite, PostgreSQL)."""

    supports_outbox: ClassVar[bool]

    def append_batch(
        self,
        entries: Sequence[tuple[bytes, bytes]],
        sign_checkpoint: SignCheckpoint,
        *,
        outbox: Sequence[OutboxOp] | None = None,
    ) -> tuple[list[AppendedEntry], str]:
        """Append entries, a checkpoint and the entries' outbox ops in one transaction."""
        ...

    def get_obligation(self, obligation_id: int) -> ObligationRecord | None: ...

    def list_obligations(
        self,
        *,
        decision_id: str | None = None,
        open_only: bool = False,
        limit: int | None = None,
    ) -> list[ObligationRecord]: ...

    def claim_obligations(
        self,
        codes: Sequence[str],
        *,
        now: datetime,
        lease_until: datetime,
        max_attempts: int,
        limit: int,
        token: str,
    ) -> list[ObligationRecord]:
        """Claim due pending rows of these codes (attempts + 1, leased to ``token``)."""
        ...

    def mark_delivered(self, obligation_id: int, token: str, *, at: datetime) -> bool:
        """The receiver accepted: ``delivered_at`` set, ``pending`` becomes ``delivered``
        (only while ``token`` still holds the claim; False otherwise)."""
        ...

    def mark_attempt_failed(
        self,
        obligation_id: int,
        token: str,
        *,
        error: str,
        retry_at: datetime | None,
    ) -> bool:
        """Back to ``pending`` until ``retry_at``, or ``failed`` when it is None."""
        ...


def _create_private(path: Path) -> None:
    """Create the database file owner-only (0600) if it does not exist yet.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode, so
    the whole store stays private; an existing file keeps its mode.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    data BLOB NOT NULL,
    signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS hashes (
    idx INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    size INTEGER NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL
);
INSERT OR IGNORE INTO head (id, size) VALUES (1, 0);
"""
_SCHEMA += _outbox.SQLITE_SCHEMA


class _PendingHashes:
    """Stored hashes read from the store, overlaid with those of the open batch."""

    def __init__(self, read: Callable[[Sequence[int]], list[bytes]]) -> None:
        self._read = read
        self.new: dict[int, bytes] = {}

    def __call__(self, indexes: Sequence[int]) -> list[bytes]:
        missing = [i for i in indexes if i not in self.new]
        found = dict(zip(missing, self._read(missing), strict=True)) if missing else {}
        return [self.new[i] if i in self.new else found[i] for i in indexes]


def build_batch(
    size: int,
    entries: Sequence[tuple[bytes, bytes]],
    read_hashes: Callable[[Sequence[int]], list[bytes]],
) -> tuple[list[AppendedEntry], dict[int, bytes], bytes]:
    """The hashes a batch adds to a tree of ``size``: (appended, new hashes, new root)."""
    pending = _PendingHashes(read_hashes)
    appended: list[AppendedEntry] = []
    n = size
    for data, _signature in entries:
        new = merkle.stored_hashes(n, data, pending)
        base = merkle.stored_hash_index(0, n)
        for offset, digest in enumerate(new):
            pending.new[base + offset] = digest
        appended.append(AppendedEntry(n, new[0]))
        n += 1
    root = merkle.tree_hash(n, pending)
    return appended, pending.new, root


def _sqlite_reason(exc: sqlite3.Error) -> str:
    """The deny reason for an SQLite failure: ``audit_disk_full`` (SQLITE_FULL,
    ENOSPC), ``audit_store_locked`` (another connection holds the write lock past
    ``busy_timeout``), else ``audit_unavailable``."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == sqlite3.SQLITE_FULL:
        return "audit_disk_full"
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return "audit_store_locked"
    return "audit_unavailable"


# struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (+ padding).
_FLOCK = "hhqqi4x"
#: Committed tree hashes kept in memory for the next commits (see _read_hashes_cached).
_HASH_CACHE = 8192
# A writer that finds others waiting lets them in first, for at most this long.
_MAX_YIELD = 0.05


class _WriterTurns:
    """Turns at SQLite's write lock for writers in other processes.

    SQLite's busy handler polls with sleeps that grow to 100 ms, so a process
    whose writer thread commits back to back keeps winning the lock and another
    process can wait out its whole ``busy_timeout`` (a deny) while the log is
    healthy. A writer kept waiting says so with a shared open-file-description
    lock on byte 0 of ``<store>-writers``; a writer about to begin checks for
    such locks (``F_OFD_GETLK``) and, if another connection is waiting, steps
    aside until that one has committed (``PRAGMA data_version`` moves), stops
    waiting, or ``_MAX_YIELD`` passes. OFD locks belong to an open file, not a
    process, so two stores open in one process see each other too. Where the
    file cannot be opened (a read-only directory) writers go without turns.
    """

    def __init__(self, path: Path) -> None:
        self._fd: int | None = None
        if not hasattr(fcntl, "F_OFD_GETLK"):  # open-file-description locks: Linux
            return
        try:
            self._fd = os.open(f"{path}-writers", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return

    def _lock(self, command: int, kind: int) -> bytes:
        assert self._fd is not None
        return fcntl.fcntl(self._fd, command, struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 1, 0))

    def others_waiting(self) -> bool:
        if self._fd is None:
            return False
        try:
            answer = self._lock(fcntl.F_OFD_GETLK, fcntl.F_WRLCK)
        except OSError:
            return False
        kind: int = struct.unpack(_FLOCK, answer)[0]
        return kind != fcntl.F_UNLCK

    def announce(self) -> None:
        """Mark this writer as waiting (a shared lock on byte 0)."""
        self._mark(fcntl.F_RDLCK)

    def withdraw(self) -> None:
        self._mark(fcntl.F_UNLCK)

    def _mark(self, kind: int) -> None:
        if self._fd is not None:
            try:
                self._lock(fcntl.F_OFD_SETLK, kind)
            except OSError:
                pass  # turns are a courtesy: a writer without them still works

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


class SqliteStore:
    """The embedded store: one SQLite file in WAL mode, ``synchronous=FULL``.

    Writers in several processes serialize on SQLite's write lock
    (``BEGIN IMMEDIATE``); ``busy_timeout`` bounds the wait, after which the
    append fails (and the decision is a deny). Opening a store made before
    the outbox existed adds the ``obligations`` table.
    """

    supports_outbox: ClassVar[bool] = True

    def __init__(self, path: str | Path, *, busy_timeout: float = 2.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _create_private(self.path)
            self._db = self._connect()
            with self._lock:
                self._db.executescript(_SCHEMA)
            self._turns: _WriterTurns | None = None  # opened by the first append
            self._hash_cache: dict[int, bytes] = {}
        except sqlite3.Error as exc:
            raise AuditError(f"cannot open the audit store {self.path}: {exc}") from exc
        except OSError as exc:
            raise AuditError(
                f"cannot create the audit store {self.path}: {exc.strerror}",
                reason="audit_store_unwritable",
            ) from exc

    @property
    def lock_timeout(self) -> float:
        """How long an append may wait for the write lock (``busy_timeout``)."""
        return self.busy_timeout

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        # Several processes opening a new file at once: switching it to WAL
        # fails at once with "database is locked" whatever busy_timeout says.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        return db

    def _read_hashes_locked(self, indexes: Sequence[int]) -> list[bytes]:
        if not indexes:
            return []
        wanted = sorted(set(indexes))
        found: dict[int, bytes] = {}
        if wanted[-1] - wanted[0] + 1 == len(wanted):  # a contiguous range (verify, export)
            rows = self._db.execute(
                "SELECT idx, hash FROM hashes WHERE idx BETWEEN ? AND ?", (wanted[0], wanted[-1])
            )
            found.update((idx, stored_bytes(digest)) for idx, digest in rows)
            wanted_chunks: list[list[int]] = []
        else:
            wanted_chunks = [wanted[i : i + 500] for i in range(0, len(wanted), 500)]
        for chunk in wanted_chunks:
            marks = ",".join("?" * len(chunk))
            query = f"SELECT idx, hash FROM hashes WHERE idx IN ({marks})"  # noqa: S608
            for idx, digest in self._db.execute(query, chunk):
                found[idx] = stored_bytes(digest)
        missing = [i for i in wanted if i not in found]
        if missing:
            raise AuditError(
                f"audit store is missing tree hashes {missing[:5]}", reason="audit_store_corrupt"
            )
        return [found[i] for i in indexes]

    def append_batch(
        self,
        entries: Sequence[tuple[bytes, bytes]],
        sign_checkpoint: SignCheckpoint,
        *,
        outbox: Sequence[OutboxOp] | None = None,
    ) -> tuple[list[AppendedEntry], str]:
        with self._lock:
            db = self._db
            try:
                self._begin_write(db)
                try:
                    (size,) = db.execute("SELECT size FROM head WHERE id = 1").fetchone()
                    appended, new_hashes, root = build_batch(
                        size, entries, self._read_hashes_cached
                    )
                    db.executemany(
                        "INSERT INTO entries (idx, data, signature) VALUES (?, ?, ?)",
                        [(a.index, e[0], e[1]) for a, e in zip(appended, entries, strict=True)],
                    )
                    db.executemany(
                        "INSERT INTO hashes (idx, hash) VALUES (?, ?)", sorted(new_hashes.items())
                    )
                    if outbox is not None:
                        _outbox.sqlite_apply(db, appended, outbox)
                    new_size = size + len(entries)
                    note = sign_checkpoint(new_size, root)
                    db.execute(
                        "INSERT INTO checkpoints (size, note) VALUES (?, ?)", (new_size, note)
                    )
                    db.execute("UPDATE head SET size = ? WHERE id = 1", (new_size,))
                    db.execute("COMMIT")
                    self._remember(new_hashes)
                except BaseException:
                    # SQLite may already have rolled back (SQLITE_FULL, IOERR, BUSY
                    # on COMMIT): a second ROLLBACK would raise and hide the cause.
                    if db.in_transaction:
                        try:
                            db.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass  # the original error says what happened
                    raise
            except sqlite3.Error as exc:
                raise AuditError(f"audit append failed: {exc}", reason=_sqlite_reason(exc)) from exc
            return appended, note

    def _read_hashes_cached(self, indexes: Sequence[int]) -> list[bytes]:
        """Tree hashes for a commit, from the cache of committed ones where
        possible. A stored hash never changes once committed (the tree only
        grows), so the cache is valid across processes; only hashes read from
        the store or committed by this one enter it. ``read_hashes`` (proofs,
        verify) always reads the store."""
        cache = self._hash_cache
        found = {i: cache[i] for i in indexes if i in cache}
        missing = [i for i in indexes if i not in found]
        if missing:
            read = dict(zip(missing, self._read_hashes_locked(missing), strict=True))
            found.update(read)
            self._remember(read)  # may clear the cache: answer from ``found``
        return [found[i] for i in indexes]

    def _remember(self, hashes: dict[int, bytes]) -> None:
        if len(self._hash_cache) + len(hashes) > _HASH_CACHE:
            self._hash_cache.clear()  # the next commit reads its O(log n) hashes again
        self._hash_cache.update(hashes)

    def _begin_write(self, db: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE`` within ``busy_timeout``, taking turns with writers
        in other processes (:class:`_WriterTurns`) instead of SQLite's busy
        handler, whose sleeps grow to 100 ms."""
        turns = self._turns
        if turns is None:
            turns = self._turns = _WriterTurns(self.path)
        start = time.monotonic()
        if turns.others_waiting():
            (version,) = db.execute("PRAGMA data_version").fetchone()
            until = start + min(_MAX_YIELD, self.busy_timeout / 4)
            while time.monotonic() < until and turns.others_waiting():
                time.sleep(0.0005)
                if db.execute("PRAGMA data_version").fetchone()[0] != version:
                    break
        deadline = start + self.busy_timeout
        db.execute("PRAGMA busy_timeout=0")
        waiting = False
        try:
            pause = 0.0002
            while True:
                try:
                    db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    left = deadline - time.monotonic()
                    if not _busy(exc) or left <= 0:
                        raise
                if not waiting:
                    turns.announce()
                    waiting = True
                time.sleep(min(pause, left))
                pause = min(pause * 2, 0.002)
        finally:
            if waiting:
                turns.withdraw()
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")

    def size(self) -> int:
        with self._lock:
            try:
                (size,) = self._db.execute("SELECT size FROM head WHERE id = 1").fetchone()
            except sqlite3.Error as exc:
                raise AuditError(f"audit store unreadable: {exc}") from exc
            return int(size)

    def read_entries(self, start: int, end: int) -> list[StoredEntry]:
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT idx, data, signature FROM entries WHERE idx >= ? AND idx < ? "
                    "ORDER BY idx",
                    (start, end),
                ).fetchall()
            except sqlite3.Error as exc:
                raise AuditError(f"audit store unreadable: {exc}") from exc
        return [StoredEntry(int(i), stored_bytes(d), stored_bytes(s)) for i, d, s in rows]

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        with self._lock:
            try:
                return self._read_hashes_locked(indexes)
            except sqlite3.Error as exc:
                raise AuditError(f"audit store unreadable: {exc}") from exc

    def checkpoints(self) -> list[tuple[int, str]]:
        with self._lock:
            try:
                rows = self._db.execute("SELECT size, note FROM checkpoints ORDER BY id").fetchall()
            except sqlite3.Error as exc:
                raise AuditError(f"audit store unreadable: {exc}") from exc
        return [(int(s), str(n)) for s, n in rows]

    def latest_checkpoint(self) -> str | None:
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT note FROM checkpoints ORDER BY id DESC LIMIT 1"
                ).fetchone()
            except sqlite3.Error as exc:
                raise AuditError(f"audit store unreadable: {exc}") from exc
        return None if row is None else str(row[0])

    # -- the obligations outbox ------------------------------------------------------

    def get_obligation(self, obligation_id: int) -> ObligationRecord | None:
        with self._lock:
            try:
                return _outbox.sqlite_get(self._db, obligation_id)
            except sqlite3.Error as exc:
                raise AuditError(f"obligations outbox unreadable: {exc}") from exc

    def list_obligations(
        self,
        *,
        decision_id: str | None = None,
        open_only: bool = False,
        limit: int | None = None,
    ) -> list[ObligationRecord]:
        with self._lock:
            try:
                return _outbox.sqlite_list(
                    self._db, decision_id=decision_id, open_only=open_only, limit=limit
                )
            except sqlite3.Error as exc:
                raise AuditError(f"obligations outbox unreadable: {exc}") from exc

    def claim_obligations(
        self,
        codes: Sequence[str],
        *,
        now: datetime,
        lease_until: datetime,
        max_attempts: int,
        limit: int,
        token: str,
    ) -> list[ObligationRecord]:
        with self._lock:
            try:
                return _outbox.sqlite_claim(
                    self._db,
                    codes,
                    now=now,
                    lease_until=lease_until,
                    max_attempts=max_attempts,
                    limit=limit,
                    token=token,
                )
            except sqlite3.Error as exc:
                raise AuditError(f"cannot claim obligations: {exc}") from exc

    def mark_delivered(self, obligation_id: int, token: str, *, at: datetime) -> bool:
        with self._lock:
            try:
                return _outbox.sqlite_mark_delivered(self._db, obligation_id, token, at=at)
            except sqlite3.Error as exc:
                raise AuditError(f"cannot settle obligation {obligation_id}: {exc}") from exc

    def mark_attempt_failed(
        self, obligation_id: int, token: str, *, error: str, retry_at: datetime | None
    ) -> bool:
        with self._lock:
            try:
                return _outbox.sqlite_mark_failed(
                    self._db, obligation_id, token, error=error, retry_at=retry_at
                )
            except sqlite3.Error as exc:
                raise AuditError(f"cannot settle obligation {obligation_id}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._turns is not None:
                self._turns.close()
