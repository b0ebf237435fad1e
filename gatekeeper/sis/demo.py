"""A demo SIS: a OneRoster 1.2 rostering API over synthetic students (Starlette + SQLite).

    >>> from gatekeeper.sis.demo import start_demo_sis
    >>> sis = start_demo_sis(students=200, token="sis-secret")     # doctest: +SKIP
    >>> sis.base_url                                               # doctest: +SKIP
    'http://127.0.0.1:41234/ims/oneroster/rostering/v1p2'
    >>> sis.stats.count                                            # doctest: +SKIP
    0
    >>> sis.stop()                                                 # doctest: +SKIP

Endpoints (GET, under ``/ims/oneroster/rostering/v1p2``): ``students``,
``students/{id}``, ``users``, ``users/{id}``, ``demographics``,
``demographics/{id}``, ``enrollments``, ``classes``, ``classes/{id}``,
``classes/{id}/students``, ``schools``, ``schools/{id}``,
``schools/{id}/students``. Collections take ``limit`` (default 100) and
``offset`` and answer with ``X-Total-Count`` and ``Link`` (first, prev, next,
last); ``filter`` (``field op 'value'`` joined by AND/OR, on any dotted path,
arrays matched by element), ``sort`` + ``orderBy`` and ``fields`` as in the
OneRoster REST binding. Collections stream from SQLite.

It counts every request it serves (``stats``, also at ``/_demo/stats``), so a
test can prove that a request the gatekeeper refused never reached it. With
a ``token``, every request needs ``Authorization: Bearer <token>``.

Only for demos and tests: synthetic data, loopback by default.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gatekeeper._serving import ServerHandle, serve_forever, start_in_thread
from gatekeeper.oneroster.query import (
    Condition,
    QueryError,
    parse_fields,
    parse_filter,
    parse_paging,
    parse_sort,
)
from gatekeeper.sis.data import DEFAULT_SEED, DEFAULT_STUDENTS, open_database

__all__ = ["DemoSIS", "DemoSISHandle", "DemoStats", "run_demo_sis", "start_demo_sis"]

PREFIX: Final = "/ims/oneroster/rostering/v1p2"


def _status_info(status: int, description: str, minor: str) -> JSONResponse:
    """A OneRoster statusInfoSet error body."""
    return JSONResponse(
        {
            "imsx_codeMajor": "failure",
            "imsx_severity": "error",
            "imsx_description": description,
            "imsx_CodeMinor": {
                "imsx_codeMinorField": [
                    {
                        "imsx_codeMinorFieldName": "TargetEndSystem",
                        "imsx_codeMinorFieldValue": minor,
                    }
                ]
            },
        },
        status_code=status,
    )


@dataclass(frozen=True, slots=True)
class Served:
    """One request the demo SIS received (for tests: what reached the upstream)."""

    method: str
    path: str
    query: str
    authorization: bool  # whether it carried the right credential


class DemoStats:
    """Thread-safe request counter and a bounded access log."""

    def __init__(self, keep: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._log: deque[Served] = deque(maxlen=keep)

    def record(self, served: Served) -> None:
        with self._lock:
            self._count += 1
            self._log.append(served)

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def recent(self, n: int = 50) -> list[Served]:
        with self._lock:
            return list(self._log)[-n:]

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.count,
            "recent": [
                {
                    "method": s.method,
                    "path": s.path,
                    "query": s.query,
                    "authorized": s.authorization,
                }
                for s in self.recent()
            ],
        }


# --------------------------------------------------------------------------- SQL


@dataclass(frozen=True, slots=True)
class _Collection:
    """One collection endpoint: which rows, under which key."""

    kind: str
    key: str
    role: str | None = None
    by: str | None = None  # "school" or "class": the path id narrows the rows


def _path(field: str) -> str:
    return "$." + field


def _condition_sql(c: Condition) -> tuple[str, list[Any]]:
    if c.op in ("=", "!="):
        values: list[Any] = [c.value]
        if c.value in ("true", "false"):
            values.append(1 if c.value == "true" else 0)
        marks = ", ".join("?" for _ in values)
        sql = f"EXISTS (SELECT 1 FROM json_each(records.doc, ?) WHERE json_each.value IN ({marks}))"  # noqa: S608
        return (sql if c.op == "=" else f"NOT {sql}"), [_path(c.field), *values]
    if c.op == "~":
        return (
            "instr(lower(CAST(json_extract(doc, ?) AS TEXT)), lower(?)) > 0",
            [_path(c.field), c.value],
        )
    return f"json_extract(doc, ?) {c.op} ?", [_path(c.field), c.value]


def _project(doc: str, fields: tuple[str, ...]) -> str:
    """OneRoster field selection; an unknown field name selects the whole record (spec 3.5)."""
    if not fields:
        return doc
    record = json.loads(doc)
    if any(f not in record for f in fields):
        return doc
    return json.dumps({f: record[f] for f in fields}, ensure_ascii=False, separators=(",", ":"))


class DemoSIS:
    """The demo SIS application over a demo database (see :mod:`gatekeeper.sis.data`)."""

    def __init__(self, db_path: str | Path, *, token: str | None = None) -> None:
        self.db_path = Path(db_path)
        self.stats = DemoStats()
        self._token = token.encode("utf-8") if token else None
        self._local = threading.local()
        self._routes = self._build_routes()
        self.app: ASGIApp = self._count(Starlette(routes=self._routes))

    # -- plumbing -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, check_same_thread=False)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _authorized(self, headers: Any) -> bool:
        if self._token is None:
            return True
        value = headers.get("authorization", "")
        scheme, _, credential = value.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credential.strip().encode("utf-8"), self._token
        )

    def _count(self, app: ASGIApp) -> ASGIApp:
        stats = self.stats

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and not scope["path"].startswith("/_demo/"):
                stats.record(
                    Served(
                        scope["method"],
                        scope["path"],
                        scope.get("query_string", b"").decode("latin-1"),
                        self._authorized(Headers(scope=scope)),
                    )
                )
            await app(scope, receive, send)

        return counted

    def _guard(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def guarded(request: Request) -> Response:
            if not self._authorized(request.headers):
                response = _status_info(401, "missing or wrong bearer token", "unauthorisedrequest")
                response.headers["WWW-Authenticate"] = 'Bearer realm="demo-sis"'
                return response
            try:
                return handler(request)
            except QueryError as exc:
                return _status_info(400, str(exc), "invalid_filter_field")

        return guarded

    # -- handlers ---------------------------------------------------------------

    def _one(self, kind: str, key: str, role: str | None = None) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            sql = "SELECT doc FROM records WHERE kind = ? AND sourced_id = ?"
            args: list[Any] = [kind, request.path_params["id"]]
            if role is not None:
                sql += " AND role = ?"
                args.append(role)
            row = self._conn().execute(sql, args).fetchone()
            if row is None:
                return _status_info(404, f"no {key} {request.path_params['id']!r}", "unknownobject")
            fields = parse_fields(request.query_params.get("fields", ""))
            body = '{"' + key + '":' + _project(row[0], fields) + "}"
            return Response(body, media_type="application/json")

        return handler

    def _many(self, spec: _Collection) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            params = request.query_params
            limit, offset = parse_paging(params.get("limit"), params.get("offset"))
            fields = parse_fields(params.get("fields", ""))
            where = ["kind = ?"]
            args: list[Any] = [spec.kind]
            if spec.role is not None:
                where.append("role = ?")
                args.append(spec.role)
            conn = self._conn()
            if spec.by is not None:
                parent = request.path_params["id"]
                parent_kind = "org" if spec.by == "school" else "class"
                found = conn.execute(
                    "SELECT 1 FROM records WHERE kind = ? AND sourced_id = ?", (parent_kind, parent)
                ).fetchone()
                if found is None:
                    return _status_info(404, f"no {spec.by} {parent!r}", "unknownobject")
                if spec.by == "school":
                    where.append("school_id = ?")
                    args.append(parent)
                else:
                    where.append(
                        "sourced_id IN (SELECT user_id FROM records "
                        "WHERE kind = 'enrollment' AND class_id = ? AND role = 'student')"
                    )
                    args.append(parent)
            if params.get("filter"):
                ors = []
                for clause in parse_filter(params["filter"]).clauses:
                    ands = []
                    for predicate in clause:
                        sql, values = _condition_sql(predicate)
                        ands.append(sql)
                        args.extend(values)
                    ors.append("(" + " AND ".join(ands) + ")")
                where.append("(" + " OR ".join(ors) + ")")
            order = "seq"
            order_args: list[Any] = []
            if params.get("sort"):
                names, descending = parse_sort(params["sort"], params.get("orderBy"))
                direction = "DESC" if descending else "ASC"
                order = ", ".join(f"json_extract(doc, ?) {direction}" for _ in names) + ", seq"
                order_args = [_path(n) for n in names]
            # Only fixed SQL text and placeholders are joined here; values are bound.
            condition = " AND ".join(where)
            counting = f"SELECT COUNT(*) FROM records WHERE {condition}"  # noqa: S608
            total = conn.execute(counting, args).fetchone()[0]
            query = f"SELECT doc FROM records WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?"  # noqa: S608
            query_args = [*args, *order_args, limit, offset]
            headers = {"X-Total-Count": str(total)}
            links = _links(request, total, limit, offset)
            if links:
                headers["Link"] = links
            return StreamingResponse(
                self._stream(spec.key, query, query_args, fields),
                media_type="application/json",
                headers=headers,
            )

        return handler

    def _stream(
        self, key: str, query: str, args: list[Any], fields: tuple[str, ...]
    ) -> Iterator[bytes]:
        conn = self._connect()  # its own connection: the iteration hops threads
        try:
            cursor = conn.execute(query, args)
            yield ('{"' + key + '":[').encode()
            first = True
            while True:
                rows = cursor.fetchmany(200)
                if not rows:
                    break
                docs = [_project(row[0], fields) for row in rows]
                chunk = ",".join(docs)
                yield (chunk if first else "," + chunk).encode("utf-8")
                first = False
            yield b"]}"
        finally:
            conn.close()

    def _stats(self, request: Request) -> Response:
        if not self._authorized(request.headers):
            return _status_info(401, "missing or wrong bearer token", "unauthorisedrequest")
        return JSONResponse(self.stats.to_dict())

    def _build_routes(self) -> list[Route]:
        one, many, guard = self._one, self._many, self._guard
        student = "student"
        table: list[tuple[str, Callable[[Request], Response]]] = [
            ("/students", many(_Collection("user", "users", student))),
            ("/students/{id}", one("user", "user", student)),
            ("/users", many(_Collection("user", "users"))),
            ("/users/{id}", one("user", "user")),
            ("/demographics", many(_Collection("demographics", "demographics"))),
            ("/demographics/{id}", one("demographics", "demographics")),
            ("/enrollments", many(_Collection("enrollment", "enrollments"))),
            ("/classes", many(_Collection("class", "classes"))),
            ("/classes/{id}", one("class", "class")),
            ("/classes/{id}/students", many(_Collection("user", "users", student, by="class"))),
            ("/schools", many(_Collection("org", "orgs", "school"))),
            ("/schools/{id}", one("org", "org", "school")),
            ("/schools/{id}/students", many(_Collection("user", "users", student, by="school"))),
        ]
        routes = [Route(PREFIX + path, guard(handler), methods=["GET"]) for path, handler in table]
        routes.append(Route("/_demo/stats", self._stats, methods=["GET"]))
        routes.append(
            Route("/_demo/health", lambda request: JSONResponse({"ok": True}), methods=["GET"])
        )
        return routes


def _links(request: Request, total: int, limit: int, offset: int) -> str:
    def at(where: int) -> str:
        return f"<{request.url.include_query_params(limit=limit, offset=where)}>"

    links = [f'{at(0)}; rel="first"']
    if offset > 0:
        links.append(f'{at(max(0, offset - limit))}; rel="prev"')
    if offset + limit < total:
        links.append(f'{at(offset + limit)}; rel="next"')
    last = max(0, (total - 1) // limit * limit) if total else 0
    links.append(f'{at(last)}; rel="last"')
    return ", ".join(links)


# --------------------------------------------------------------------------- running


class DemoSISHandle:
    """A demo SIS serving in a background thread: ``url``, ``base_url``, ``stats``, ``stop()``."""

    def __init__(self, server: ServerHandle, sis: DemoSIS) -> None:
        self.server = server
        self.sis = sis
        self.url = server.url
        self.base_url = server.url + PREFIX
        self.stats = sis.stats

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> DemoSISHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _database(
    db: str | Path | None, students: int, seed: int
) -> tuple[Path, Callable[[], None] | None]:
    if db is not None:
        return open_database(db, students=students, seed=seed), None
    tmp = tempfile.TemporaryDirectory(prefix="gatekeeper-demo-sis-")
    path = open_database(Path(tmp.name) / "demo-sis.sqlite", students=students, seed=seed)
    return path, tmp.cleanup


def start_demo_sis(
    *,
    db: str | Path | None = None,
    students: int = DEFAULT_STUDENTS,
    seed: int = DEFAULT_SEED,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
) -> DemoSISHandle:
    """Build (or reuse) the database and serve the demo SIS from a thread.

    ``db`` None: a temporary database, removed on ``stop()``. ``port`` 0: an
    ephemeral port (read ``handle.url``).
    """
    path, cleanup = _database(db, students, seed)
    sis = DemoSIS(path, token=token)
    try:
        server = start_in_thread(sis.app, host, port, name="gatekeeper-demo-sis", on_stop=cleanup)
    except Exception:
        if cleanup is not None:
            cleanup()
        raise
    return DemoSISHandle(server, sis)


def run_demo_sis(
    *,
    db: str | Path | None = None,
    students: int = DEFAULT_STUDENTS,
    seed: int = DEFAULT_SEED,
    host: str = "127.0.0.1",
    port: int = 8600,
    token: str | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the demo SIS in the foreground (``gatekeeper demo-sis``) until interrupted."""
    path, cleanup = _database(db, students, seed)
    try:
        serve_forever(DemoSIS(path, token=token).app, host, port, ready=ready)
    finally:
        if cleanup is not None:
            cleanup()
