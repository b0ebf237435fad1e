"""A real, throw-away PostgreSQL server on loopback, for the PostgresStore tests.

    with PostgresServer() as server:
        dsn = server.create_database("t1")   # postgresql://gatekeeper:<pw>@127.0.0.1:<port>/t1
        ...
        server.restart()                      # fault tests: same port, same data
        server.stop_server(); server.start_server()   # an outage of any length

``initdb`` creates a cluster in a fresh temp dir whose superuser is
``gatekeeper`` with a random password: TCP connections (the only ones the
tests make) authenticate with SCRAM-SHA-256, so DSNs carry a real password;
the Unix socket, in the temp dir, trusts local users (pg_ctl and pg_isready
use it). The server listens on 127.0.0.1 only, on a free port, ``fsync=on``.

PostgreSQL refuses to run as root: when we are root, every PostgreSQL binary
runs through ``runuser -u <user> --`` as ``$GATEKEEPER_PG_USER`` (default
``postgres``, created by Debian's package), and the temp dir is owned by
that user. Otherwise the binaries run as the current user.

The binaries come from ``$GATEKEEPER_PG_BIN`` or the newest
``/usr/lib/postgresql/<version>/bin`` (see ``scripts/ensure-postgres``).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.opa_server import LOOPBACK, free_port

__all__ = ["PostgresServer", "PostgresServerError", "find_pg_bin"]

SUPERUSER = "gatekeeper"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresServerError(RuntimeError):
    """The PostgreSQL server could not be set up, started or stopped."""


def find_pg_bin() -> Path | None:
    """The PostgreSQL bin dir: ``$GATEKEEPER_PG_BIN``, else the newest
    ``/usr/lib/postgresql/*/bin`` holding ``initdb``; None when there is none."""
    configured = os.environ.get("GATEKEEPER_PG_BIN")
    if configured:
        candidates = [Path(configured)]
    else:
        found = glob.glob("/usr/lib/postgresql/*/bin")

        def version(path: str) -> tuple[int, ...]:
            name = Path(path).parent.name
            return tuple(int(p) for p in name.split(".") if p.isdigit())

        candidates = [Path(p) for p in sorted(found, key=version, reverse=True)]
    for bin_dir in candidates:
        if all(os.access(bin_dir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bin_dir
    return None


class PostgresServer:
    """A PostgreSQL cluster in a temp dir, served on 127.0.0.1:<free port>."""

    def __init__(
        self,
        *,
        pg_bin: Path | None = None,
        run_as: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        found = pg_bin if pg_bin is not None else find_pg_bin()
        if found is None:
            raise PostgresServerError(
                "no PostgreSQL binaries: run scripts/ensure-postgres, or set "
                "GATEKEEPER_PG_BIN to a dir holding initdb, pg_ctl and postgres"
            )
        self.pg_bin = Path(found)
        self.startup_timeout = startup_timeout
        self.run_as: str | None = None
        if os.geteuid() == 0:
            self.run_as = run_as or os.environ.get("GATEKEEPER_PG_USER") or "postgres"
            try:
                pwd.getpwnam(self.run_as)
            except KeyError:
                raise PostgresServerError(
                    f"PostgreSQL cannot run as root and there is no user {self.run_as!r} to "
                    "run it as: install Debian's postgresql package (it creates `postgres`) "
                    "or set GATEKEEPER_PG_USER to an unprivileged user"
                ) from None
            if shutil.which("runuser") is None:
                raise PostgresServerError("running PostgreSQL as root needs `runuser`")
        self.password = secrets.token_urlsafe(18)
        self.port: int | None = None
        self._tmp: Path | None = None

    # -- paths and commands ---------------------------------------------------

    @property
    def tmp(self) -> Path:
        if self._tmp is None:
            raise PostgresServerError("PostgresServer is not started")
        return self._tmp

    @property
    def data_dir(self) -> Path:
        return self.tmp / "data"

    @property
    def socket_dir(self) -> Path:
        return self.tmp / "sock"

    @property
    def log_path(self) -> Path:
        return self.tmp / "server.log"

    @property
    def running(self) -> bool:
        return self._tmp is not None and (self.data_dir / "postmaster.pid").exists()

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.pg_bin / tool), *args]
        if self.run_as is not None:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return cmd

    def _run(
        self, tool: str, *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        # Output goes to a file, not a pipe: pg_ctl leaves the postmaster running.
        with tempfile.TemporaryFile(mode="w+") as out:
            proc = subprocess.run(
                self._cmd(tool, *args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                cwd=self.tmp,
                env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
                check=False,
            )
            out.seek(0)
            proc.stdout = out.read()
        return proc

    def _server_log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace").strip()[-4000:]
        except OSError:
            return "(no server log)"

    # -- lifecycle --------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """The DSN of the ``postgres`` database, as the superuser."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str, *, password: str | None = None) -> str:
        if self.port is None:
            raise PostgresServerError("PostgresServer is not started")
        pw = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{pw}@{LOOPBACK}:{self.port}/{database}"

    def start(self) -> None:
        if self._tmp is not None:
            return
        self._tmp = Path(tempfile.mkdtemp(prefix="gatekeeper-pg-"))
        atexit.register(self.stop)
        try:
            self._init_cluster()
            # The port can be taken between free_port() and the bind: retry then.
            for _ in range(3):
                self.port = free_port()
                try:
                    self._start_server()
                    return
                except PostgresServerError as exc:
                    if "already in use" not in str(exc):
                        raise
            raise PostgresServerError("PostgreSQL could not bind a free port after 3 attempts")
        except BaseException:
            self.stop()
            raise

    def _init_cluster(self) -> None:
        self.socket_dir.mkdir()
        pwfile = self.tmp / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.run_as is not None:
            user = pwd.getpwnam(self.run_as)
            for path in (self.tmp, self.socket_dir, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(self.tmp, 0o700)
        proc = self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E", "UTF8",
            "--no-locale",
            "--no-sync",  # the cluster is thrown away; the server itself runs fsync=on
        )  # fmt: skip
        pwfile.unlink()
        if proc.returncode != 0:
            raise PostgresServerError(
                f"initdb failed (status {proc.returncode}) in {self.data_dir}:\n{proc.stdout}"
            )

    def _start_server(self) -> None:
        assert self.port is not None
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()
        options = (
            f"-c listen_addresses={LOOPBACK} -p {self.port} -k {self.socket_dir} "
            "-c fsync=on -c max_connections=100"
        )
        proc = self._run(
            "pg_ctl", "start",
            "-D", str(self.data_dir),
            "-l", str(self.log_path),
            "-o", options,
            "-w", "-t", str(int(self.startup_timeout)),
            timeout=self.startup_timeout + 10,
        )  # fmt: skip
        if proc.returncode != 0:
            log = self._server_log()
            self._stop_server()
            raise PostgresServerError(
                f"pg_ctl start failed (status {proc.returncode}):\n{proc.stdout}\n"
                f"server log ({self.log_path}):\n{log}"
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        while time.monotonic() < deadline:
            proc = self._run(
                "pg_isready", "-h", LOOPBACK, "-p", str(self.port), "-d", "postgres",
                "-U", SUPERUSER, "-t", "2",
                timeout=10,
            )  # fmt: skip
            if proc.returncode == 0:
                return
            last = proc.stdout
            time.sleep(0.1)
        log = self._server_log()
        self._stop_server()
        raise PostgresServerError(
            f"PostgreSQL did not accept connections on {LOOPBACK}:{self.port} within "
            f"{self.startup_timeout:.0f} s: {last}\nserver log:\n{log}"
        )

    def _stop_server(self) -> None:
        if not self.running:
            return
        proc = self._run(
            "pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", timeout=40
        )
        if proc.returncode != 0 and self.running:
            self._run(
                "pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", timeout=40
            )

    def restart(self) -> None:
        """Stop (``-m fast``: sessions are cut) and start again, on the same port and data."""
        if self._tmp is None or self.port is None:
            raise PostgresServerError("PostgresServer is not started")
        self._stop_server()
        self._start_server()

    def stop_server(self) -> None:
        """Stop the server (``-m fast``) but keep its data and port: ``start_server()`` again."""
        if self._tmp is None or self.port is None:
            raise PostgresServerError("PostgresServer is not started")
        self._stop_server()

    def start_server(self) -> None:
        """Start a server stopped by ``stop_server()``, on the same port and data."""
        if self._tmp is None or self.port is None:
            raise PostgresServerError("PostgresServer is not started")
        if not self.running:
            self._start_server()

    def stop(self) -> None:
        """Stop the server and delete its temp dir (idempotent)."""
        if self._tmp is None:
            return
        try:
            self._stop_server()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self.port = None
            atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers ----------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database ``name`` (lowercase identifier); its DSN."""
        if not _NAME.match(name):
            raise ValueError(f"not a plain lowercase database name: {name!r}")
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name checked above
        return self.dsn_for(name)
