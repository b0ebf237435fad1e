"""The shared audit store: PostgreSQL, for a log written by many processes on many machines.

    store = PostgresStore("postgresql://gatekeeper@db.internal/gatekeeper", lock_timeout=2.0)

Same tables and semantics as :class:`gatekeeper.audit.store.SqliteStore`::

    entries(idx bigint PRIMARY KEY, data bytea, signature bytea)
    hashes(idx bigint PRIMARY KEY, hash bytea)            -- RFC 6962 stored hashes
    checkpoints(id bigserial PRIMARY KEY, size bigint, note text)
    head(id int PRIMARY KEY CHECK (id = 1), size bigint)  -- the one row
    obligations(...)                                      -- the outbox (postgres_outbox.py)

The single sequencer is the head row's lock: ``append_batch`` runs one READ
COMMITTED transaction that starts with ``SELECT size FROM head WHERE id = 1
FOR UPDATE``, so every writer anywhere waits its turn and all of them grow
ONE tree. The wait is bounded by ``SET LOCAL lock_timeout`` (and every
statement of the append by ``statement_timeout``, twice that, at least one
second more): a stuck lock makes the append fail with :class:`AuditError`
(a deny) instead of hanging. Nothing is acknowledged before COMMIT returns.

Each store object owns one connection (autocommit; appends open an explicit
transaction), used under a ``threading.Lock``. When the connection turns out
to be lost (PostgreSQL restarted, network cut), the store reconnects once and
reruns the call, if that is safe: always for reads, and for an append as long
as its COMMIT was not sent yet (an append lost during COMMIT may or may not
have committed: it fails, and the next call reconnects). Every session and
append runs with ``synchronous_commit = on``, whatever the server's setting.

Every call is also bounded on the client side: server-side timeouts do not
help when the server (or the network to it) stops answering without closing
the connection (a frozen host, a disk stuck in fsync, packets dropped). When
a call has waited ``lock_timeout`` + ``statement_timeout`` + 1 s, a watchdog
shuts the connection's socket down: the call fails with :class:`AuditError`
(and is rerun once on a new connection when that is safe, as above), so the
writer is never stuck on a dead connection and recovers when the server is
back. The timeout is less than :attr:`AuditLog.outcome_wait`, so a caller
waiting on such an append learns it failed rather than that its outcome is
unknown. Connections also use TCP keepalives and ``tcp_user_timeout``.

psycopg 3 (``pip install 'gatekeeper[postgres]'``) is imported only when a
store is created. Every psycopg error becomes an :class:`AuditError` (``raise
... from exc``); messages name the server as ``postgresql://user@host:port/db``
and never carry the DSN's password. ``connect_timeout`` is libpq's, in whole
seconds, at least 2.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import quote, quote_plus, unquote

from gatekeeper.audit import postgres_outbox as _outbox
from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.outbox import ObligationRecord, OutboxOp
from gatekeeper.audit.store import AppendedEntry, SignCheckpoint, StoredEntry, build_batch

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

    Connection = psycopg.Connection[TupleRow]
    Cursor = psycopg.Cursor[TupleRow]

__all__ = ["PostgresStore"]

_T = TypeVar("_T")

_TABLES = ("entries", "hashes", "checkpoints", "head", "obligations")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS entries (
        idx bigint PRIMARY KEY,
        data bytea NOT NULL,
        signature bytea NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS hashes (
        idx bigint PRIMARY KEY,
        hash bytea NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        id bigserial PRIMARY KEY,
        size bigint NOT NULL,
        note text NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS head (
        id int PRIMARY KEY CHECK (id = 1),
        size bigint NOT NULL
    )""",
    "INSERT INTO head (id, size) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    # The obligations outbox; a log made before it existed gains it on open.
    *_outbox.SCHEMA,
)

#: pg_advisory_xact_lock key serializing schema creation ("gatekeep" as a bigint).
_SCHEMA_LOCK_KEY = int.from_bytes(b"gatekeep", "big")

_HEAD_FOR_UPDATE = "SELECT size FROM head WHERE id = 1 FOR UPDATE"

#: ``password=<secret>`` and ``scheme://user:<secret>@`` in a DSN, or in text quoting one.
_PASSWORD_PATTERNS = (
    re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE),
    re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(?=@)", re.IGNORECASE),
)


def _secrets_of(dsn: str, password: str | None) -> list[str]:
    """Every form the DSN's password may take in a message, longest first."""
    found = {m.group(2) for pattern in _PASSWORD_PATTERNS for m in pattern.finditer(dsn)}
    if password:
        found.add(password)
    forms: set[str] = set()
    for secret in found:
        # As written (quoted, %-encoded) and as libpq may echo it back.
        bare = secret.strip("'")
        forms.update((secret, bare, unquote(bare), quote(bare, safe=""), quote_plus(bare)))
    return sorted((f for f in forms if f), key=len, reverse=True)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    for pattern in _PASSWORD_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def _describe(params: Mapping[str, Any]) -> str:
    """``postgresql://user@host:port/dbname`` of a parsed DSN, without its password."""
    user = params.get("user")
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port")
    dbname = params.get("dbname") or ""
    return f"postgresql://{f'{user}@' if user else ''}{host}{f':{port}' if port else ''}/{dbname}"


class PostgresStore:
    """An :class:`~gatekeeper.audit.store.OutboxStore` in a PostgreSQL database."""

    supports_outbox: ClassVar[bool] = True

    def __init__(
        self, dsn: str, *, lock_timeout: float = 2.0, connect_timeout: float = 2.0
    ) -> None:
        if not lock_timeout > 0:
            raise ValueError(f"lock_timeout must be positive, not {lock_timeout!r}")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be positive, not {connect_timeout!r}")
        self.lock_timeout = lock_timeout
        self.connect_timeout = connect_timeout
        self._lock_ms = max(1, round(lock_timeout * 1000))
        self._statement_ms = max(1, round(max(2 * lock_timeout, lock_timeout + 1.0) * 1000))
        #: The client-side bound of one call (the watchdog cuts the connection then).
        self.call_timeout = self._statement_ms / 1000 + lock_timeout + 1.0
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._closed = False
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
        except ImportError as exc:
            raise AuditError(
                "the PostgreSQL audit store needs psycopg 3: pip install 'gatekeeper[postgres]'"
            ) from exc
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            # libpq quotes the part of the DSN it cannot parse, which may be the
            # password: the message is scrubbed, and the raw error not chained.
            detail = _scrub(" ".join(str(exc).split()), _secrets_of(dsn, None))
            # A malformed DSN may hold its password anywhere: of the fragments
            # libpq quotes, keep only option names ("port") and punctuation ("=").
            keep = {o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults()}
            detail = re.sub(
                r'"([^"]*)"',
                lambda m: (
                    m.group(0)
                    if m.group(1) in keep or not re.search(r"\w", m.group(1))
                    else '"***"'
                ),
                detail,
            )
            raise AuditError(f"the PostgreSQL audit store's DSN does not parse: {detail}") from None
        self._dsn = dsn
        password = params.get("password")
        self._secrets = _secrets_of(dsn, str(password) if password else None)
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, math.ceil(connect_timeout)),
        }
        if "application_name" not in params:
            self._connect_kwargs["application_name"] = "gatekeeper-audit"
        # A dead peer is noticed by TCP too (unless the DSN says otherwise).
        for key, value in (
            ("keepalives", 1),
            ("keepalives_idle", 5),
            ("keepalives_interval", 2),
            ("keepalives_count", 3),
            ("tcp_user_timeout", math.ceil(self.call_timeout * 1000)),
        ):
            if key not in params:
                self._connect_kwargs[key] = value
        #: Where the store is, for messages: ``postgresql://user@host:port/db``.
        self.target = _describe(params)
        with self._lock:
            self._call("cannot open the audit store", self._ensure_schema, retry=lambda: True)

    # -- connection and errors --------------------------------------------------

    def _scrub(self, text: str) -> str:
        return _scrub(text, self._secrets)

    def _error(self, what: str, exc: BaseException) -> AuditError:
        import psycopg.errors

        detail = " ".join(" ".join([str(exc), *getattr(exc, "__notes__", ())]).split())
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            detail = (
                f"the log head stayed locked by another writer for lock_timeout="
                f"{self.lock_timeout:g} s ({detail})"
            )
        elif isinstance(exc, psycopg.errors.QueryCanceled):
            detail = f"a statement ran past statement_timeout ({detail})"
        return AuditError(self._scrub(f"{what} ({self.target}): {detail}"))

    def _connection(self, what: str) -> Connection:
        if self._closed:
            raise AuditError(f"{what}: the audit store {self.target} is closed")
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        self._conn = None
        import psycopg

        try:
            conn = psycopg.connect(self._dsn, **self._connect_kwargs)
        except psycopg.Error as exc:
            raise self._error(f"{what}: cannot connect", exc) from exc
        try:
            with self._watchdog(conn):
                conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
                # Reads wait for locks (a DDL holding a table) no longer than appends do.
                conn.execute(
                    "SELECT set_config('lock_timeout', %s, false)", (f"{self._lock_ms}ms",)
                )
                # Durable at COMMIT whatever the server, database or role configure.
                conn.execute("SELECT set_config('synchronous_commit', 'on', false)")
        except psycopg.Error as exc:
            conn.close()
            raise self._error(f"{what}: cannot set up the connection", exc) from exc
        self._conn = conn
        return conn

    @contextlib.contextmanager
    def _watchdog(self, conn: Connection) -> Iterator[None]:
        """Shut the connection's socket down if the block runs past call_timeout:
        libpq then sees the connection closed, and the call fails instead of
        waiting forever on a server that does not answer."""
        try:
            fd = os.dup(conn.pgconn.socket)
        except Exception:  # no socket: nothing can hang on it
            yield
            return
        sock = socket.socket(fileno=fd)

        fired = threading.Event()

        def cut() -> None:
            fired.set()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(self.call_timeout, cut)
        timer.daemon = True
        timer.start()
        try:
            yield
        except Exception as exc:
            if fired.is_set():
                exc.add_note(f"no answer within the client-side timeout of {self.call_timeout:g} s")
            raise
        finally:
            timer.cancel()
            timer.join()
            sock.close()  # the duplicate only

    def _call(
        self, what: str, body: Callable[[Connection], _T], *, retry: Callable[[], bool]
    ) -> _T:
        """Run ``body`` on the connection (``self._lock`` held), translating errors.

        When the connection turns out to be lost and ``retry()`` says a rerun
        is safe, reconnect and run ``body`` once more.
        """
        import psycopg

        for attempt in (1, 2):
            conn = self._connection(what)
            try:
                with self._watchdog(conn):
                    return body(conn)
            except psycopg.Error as exc:
                lost = conn.closed
                if lost:
                    self._conn = None  # the next attempt, or the next call, reconnects
                if lost and attempt == 1 and retry():
                    continue
                raise self._error(what, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- schema -------------------------------------------------------------------

    def _ensure_schema(self, conn: Connection) -> None:
        # Already there (the usual case): create nothing, so that a role without
        # CREATE on the schema can use tables an administrator made.
        row = conn.execute(
            "SELECT " + " AND ".join("to_regclass(%s) IS NOT NULL" for _ in _TABLES),
            _TABLES,
        ).fetchone()
        if row is not None and row[0]:
            head = conn.execute("SELECT 1 FROM head WHERE id = 1").fetchone()
            if head is not None:
                return
        # Several processes may start at once: CREATE TABLE IF NOT EXISTS is not
        # safe against itself, so they take turns on an advisory lock.
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            for statement in _SCHEMA:
                conn.execute(statement)

    # -- AuditStore -----------------------------------------------------------------

    def _read_hashes_on(self, cur: Connection | Cursor, indexes: Sequence[int]) -> list[bytes]:
        if not indexes:
            return []
        wanted = sorted(set(indexes))
        found: dict[int, bytes] = {
            int(idx): bytes(digest)
            for idx, digest in cur.execute(
                "SELECT idx, hash FROM hashes WHERE idx = ANY(%s::bigint[])", (wanted,)
            ).fetchall()
        }
        missing = [i for i in wanted if i not in found]
        if missing:
            raise AuditError(
                f"audit store {self.target} is missing tree hashes {missing[:5]}",
                reason="audit_store_corrupt",
            )
        return [found[i] for i in indexes]

    def append_batch(
        self,
        entries: Sequence[tuple[bytes, bytes]],
        sign_checkpoint: SignCheckpoint,
        *,
        outbox: Sequence[OutboxOp] | None = None,
    ) -> tuple[list[AppendedEntry], str]:
        committing = False

        def body(conn: Connection) -> tuple[list[AppendedEntry], str]:
            nonlocal committing
            committing = False
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "SELECT set_config('lock_timeout', %s, true), "
                    "set_config('statement_timeout', %s, true), "
                    "set_config('synchronous_commit', 'on', true)",
                    (f"{self._lock_ms}ms", f"{self._statement_ms}ms"),
                )
                # The sequencer: every writer, on every machine, queues here.
                row = cur.execute(_HEAD_FOR_UPDATE).fetchone()
                if row is None:
                    raise AuditError(
                        f"audit store {self.target} has no head row", reason="audit_store_corrupt"
                    )
                size = int(row[0])
                appended, new_hashes, root = build_batch(
                    size, entries, lambda indexes: self._read_hashes_on(cur, indexes)
                )
                cur.executemany(
                    "INSERT INTO entries (idx, data, signature) VALUES (%s, %s, %s)",
                    [(a.index, e[0], e[1]) for a, e in zip(appended, entries, strict=True)],
                )
                cur.executemany(
                    "INSERT INTO hashes (idx, hash) VALUES (%s, %s)", sorted(new_hashes.items())
                )
                if outbox is not None:
                    _outbox.apply(cur, appended, outbox)
                new_size = size + len(entries)
                note = sign_checkpoint(new_size, root)
                cur.execute(
                    "INSERT INTO checkpoints (size, note) VALUES (%s, %s)", (new_size, note)
                )
                cur.execute("UPDATE head SET size = %s WHERE id = 1", (new_size,))
                committing = True  # leaving the block sends COMMIT
            return appended, note

        with self._lock:
            return self._call("audit append failed", body, retry=lambda: not committing)

    def size(self) -> int:
        def body(conn: Connection) -> int:
            row = conn.execute("SELECT size FROM head WHERE id = 1").fetchone()
            if row is None:
                raise AuditError(
                    f"audit store {self.target} has no head row", reason="audit_store_corrupt"
                )
            return int(row[0])

        with self._lock:
            return self._call("audit store unreadable", body, retry=lambda: True)

    def read_entries(self, start: int, end: int) -> list[StoredEntry]:
        def body(conn: Connection) -> list[StoredEntry]:
            rows = conn.execute(
                "SELECT idx, data, signature FROM entries WHERE idx >= %s AND idx < %s "
                "ORDER BY idx",
                (start, end),
            ).fetchall()
            return [StoredEntry(int(i), bytes(d), bytes(s)) for i, d, s in rows]

        with self._lock:
            return self._call("audit store unreadable", body, retry=lambda: True)

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        with self._lock:
            return self._call(
                "audit store unreadable",
                lambda conn: self._read_hashes_on(conn, indexes),
                retry=lambda: True,
            )

    def checkpoints(self) -> list[tuple[int, str]]:
        def body(conn: Connection) -> list[tuple[int, str]]:
            rows = conn.execute("SELECT size, note FROM checkpoints ORDER BY id").fetchall()
            return [(int(s), str(n)) for s, n in rows]

        with self._lock:
            return self._call("audit store unreadable", body, retry=lambda: True)

    def latest_checkpoint(self) -> str | None:
        def body(conn: Connection) -> str | None:
            row = conn.execute("SELECT note FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
            return None if row is None else str(row[0])

        with self._lock:
            return self._call("audit store unreadable", body, retry=lambda: True)

    # -- the obligations outbox ------------------------------------------------------

    def get_obligation(self, obligation_id: int) -> ObligationRecord | None:
        with self._lock:
            return self._call(
                "obligations outbox unreadable",
                lambda conn: _outbox.get(conn, obligation_id),
                retry=lambda: True,
            )

    def list_obligations(
        self,
        *,
        decision_id: str | None = None,
        open_only: bool = False,
        limit: int | None = None,
    ) -> list[ObligationRecord]:
        with self._lock:
            return self._call(
                "obligations outbox unreadable",
                lambda conn: _outbox.list_rows(
                    conn, decision_id=decision_id, open_only=open_only, limit=limit
                ),
                retry=lambda: True,
            )

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
        if not codes:
            return []
        committing = False

        def body(conn: Connection) -> list[ObligationRecord]:
            nonlocal committing
            committing = False
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "SELECT set_config('lock_timeout', %s, true), "
                    "set_config('statement_timeout', %s, true)",
                    (f"{self._lock_ms}ms", f"{self._statement_ms}ms"),
                )
                claimed = _outbox.claim(
                    cur,
                    codes,
                    now=now,
                    lease_until=lease_until,
                    max_attempts=max_attempts,
                    limit=limit,
                    token=token,
                )
                committing = True
            return claimed

        with self._lock:
            # A claim lost during COMMIT is not rerun: its rows wait out the lease.
            return self._call("cannot claim obligations", body, retry=lambda: not committing)

    def mark_delivered(self, obligation_id: int, token: str, *, at: datetime) -> bool:
        with self._lock:
            return self._call(
                f"cannot settle obligation {obligation_id}",
                lambda conn: _outbox.mark_delivered(conn, obligation_id, token, at=at),
                retry=lambda: True,  # idempotent: keyed by the claim token
            )

    def mark_attempt_failed(
        self, obligation_id: int, token: str, *, error: str, retry_at: datetime | None
    ) -> bool:
        with self._lock:
            return self._call(
                f"cannot settle obligation {obligation_id}",
                lambda conn: _outbox.mark_failed(
                    conn, obligation_id, token, error=error, retry_at=retry_at
                ),
                retry=lambda: True,
            )

    def close(self) -> None:
        import psycopg

        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.close()
                except psycopg.Error:
                    pass
