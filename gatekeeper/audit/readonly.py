"""Reading a log without the power to change it: for serving, witnessing and replay.

    >>> from gatekeeper.audit.readonly import open_readonly
    >>> store = open_readonly(".gatekeeper")        # doctest: +SKIP
    >>> store.size(), store.latest_checkpoint()     # doctest: +SKIP
    (32, 'gatekeeper.local/host/1a2b3c4d\\n32\\n...')

:class:`ReadOnlySqliteStore` opens ``<data_dir>/audit.sqlite`` with SQLite's
``mode=ro``: it never creates tables, never takes the write lock and never
holds a signing key, so ``gatekeeper audit serve`` or a witness pointed at a
data directory cannot alter the log it exposes, even by accident. It reads
the schema of :mod:`gatekeeper.audit.store` (tables ``entries``, ``hashes``,
``checkpoints``, ``head``) and implements the reading half of
:class:`~gatekeeper.audit.store.AuditStore`.

A PostgreSQL log (``audit_url``) is read through
:class:`~gatekeeper.audit.postgres.PostgresStore`; give the serving role
``SELECT`` privileges only.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.store import LogReader, StoredEntry, stored_bytes

__all__ = ["LogReader", "ReadOnlySqliteStore", "open_readonly"]


class ReadOnlySqliteStore:
    """An SQLite audit store opened read-only (``mode=ro``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise AuditError(f"no audit log at {self.path}", reason="audit_store_missing")
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=5.0)
            self._db.execute("SELECT size FROM head WHERE id = 1").fetchone()
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_READONLY_ROLLBACK":
                # A writer was killed while creating the file (switching it to WAL):
                # only a read-write open can roll its journal back.
                raise AuditError(
                    f"the audit store {self.path} was left mid-transaction by a writer "
                    "that stopped while creating it; open it read-write once (start "
                    "gatekeeper, or run `gatekeeper audit verify`) to roll that back",
                    reason="audit_store_needs_recovery",
                ) from exc
            raise AuditError(f"cannot read the audit store {self.path}: {exc}") from exc

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise AuditError(f"audit store unreadable: {exc}") from exc

    def size(self) -> int:
        rows = self._query("SELECT size FROM head WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    def read_entries(self, start: int, end: int) -> list[StoredEntry]:
        rows = self._query(
            "SELECT idx, data, signature FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        )
        return [StoredEntry(int(i), stored_bytes(d), stored_bytes(s)) for i, d, s in rows]

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        if not indexes:
            return []
        wanted = sorted(set(indexes))
        found: dict[int, bytes] = {}
        if wanted[-1] - wanted[0] + 1 == len(wanted):
            rows = self._query(
                "SELECT idx, hash FROM hashes WHERE idx BETWEEN ? AND ?", (wanted[0], wanted[-1])
            )
            found.update((int(i), stored_bytes(h)) for i, h in rows)
        else:
            for lo in range(0, len(wanted), 500):
                chunk = wanted[lo : lo + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT idx, hash FROM hashes WHERE idx IN ({marks})"  # noqa: S608
                rows = self._query(query, chunk)
                found.update((int(i), stored_bytes(h)) for i, h in rows)
        missing = [i for i in wanted if i not in found]
        if missing:
            raise AuditError(
                f"audit store is missing tree hashes {missing[:5]}", reason="audit_store_corrupt"
            )
        return [found[i] for i in indexes]

    def checkpoints(self) -> list[tuple[int, str]]:
        rows = self._query("SELECT size, note FROM checkpoints ORDER BY id")
        return [(int(s), str(n)) for s, n in rows]

    def latest_checkpoint(self) -> str | None:
        rows = self._query("SELECT note FROM checkpoints ORDER BY id DESC LIMIT 1")
        return None if not rows else str(rows[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ReadOnlySqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_readonly(data_dir: str | Path, audit_url: str | None = None) -> LogReader:
    """The log of a data directory (SQLite, read-only) or at a PostgreSQL URL."""
    if audit_url:
        from gatekeeper.audit.postgres import PostgresStore

        return PostgresStore(audit_url)
    return ReadOnlySqliteStore(Path(data_dir) / "audit.sqlite")
