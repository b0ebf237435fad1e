"""Real and fake OPA endpoints on loopback, for integration and fail-closed tests.

- ``OpaServer``: a real ``opa run --server`` process serving a bundle directory.
- ``SlowProxy``: a TCP proxy that delays every chunk coming back from upstream,
  to drive engine timeouts against a real OPA.
- ``CannedOpa``: an HTTP server that answers every ``/v1/data/...`` query with a
  fixed status and body (``{}`` for an undefined decision, garbage bytes, a 500).

    with OpaServer(Path("policies")) as opa, SlowProxy("127.0.0.1", opa.port, delay=2) as slow:
        engine = OpaServerEngine(url=slow.url, timeout=0.5)   # must deny, not hang

    with CannedOpa(status=200, body=b"{}") as canned:
        ...  # an undefined result: the engine must deny

Everything binds 127.0.0.1 on a free port and is stopped by ``stop()`` or by
leaving the ``with`` block.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

from gatekeeper.policy.opa_process import LOOPBACK, OpaProcess, OpaProcessError, free_port
from gatekeeper.policy.opa_process import find_opa as _find_opa

__all__ = ["CannedOpa", "OpaServer", "OpaServerError", "SlowProxy", "find_opa", "free_port"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OPA = REPO_ROOT / ".tools" / "bin" / "opa"


OpaServerError = OpaProcessError


def find_opa() -> Path | None:
    """The OPA binary to test with: ``$GATEKEEPER_OPA``, else ``<repo>/.tools/bin/opa``.

    Returns None when that file is missing or not executable (run scripts/build-opa).
    (The package's finder, without the PATH fallback: tests use the pinned build.)
    """
    return _find_opa(search_path=False)


class _Service:
    """start()/stop() as a context manager."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

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


class _Listener(_Service):
    """Accept loop on 127.0.0.1:<free port>, one thread per connection."""

    #: The accept queue and how often the accept loop looks at ``stop()``.
    backlog = 32
    poll = 0.05

    def __init__(self) -> None:
        self.port: int | None = None
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._sock is not None:
            return
        self._stopping.clear()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, 0))
        sock.listen(self.backlog)
        sock.settimeout(self.poll)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._spawn(self._accept_loop)

    def stop(self) -> None:
        if self._sock is None:
            return
        self._stopping.set()
        with self._lock:
            sockets, threads = list(self._open), list(self._threads)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(timeout=5)
        self._sock.close()
        self._sock = None

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads = [old for old in self._threads if old.is_alive()]
            self._threads.append(t)
        t.start()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._open.add(s)

    def _forget(self, *sockets: socket.socket) -> None:
        for s in sockets:
            with self._lock:
                self._open.discard(s)
            with contextlib.suppress(OSError):
                s.close()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._admit(client):
                continue
            self._track(client)
            self._spawn(self._serve, client)

    def _admit(self, client: socket.socket) -> bool:
        """Whether to serve this connection (a refusing subclass closes it)."""
        return True

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- OPA


class OpaServer(OpaProcess):
    """A real OPA server process serving ``bundle_dir`` on 127.0.0.1:<free port>
    (:class:`gatekeeper.policy.opa_process.OpaProcess`, with the tests' binary)."""

    def __init__(
        self,
        bundle_dir: Path,
        *,
        opa_bin: Path | None = None,
        startup_timeout: float = 15.0,
        port: int | None = None,
    ) -> None:
        found = opa_bin if opa_bin is not None else find_opa()
        if found is None:
            raise OpaServerError(
                "no OPA binary: set GATEKEEPER_OPA or run scripts/build-opa "
                f"(expects {DEFAULT_OPA})"
            )
        super().__init__(bundle_dir, opa_bin=found, startup_timeout=startup_timeout, port=port)

    def kill(self) -> None:
        """``kill -9`` the server (no graceful shutdown); ``port`` keeps its number."""
        proc = self._proc
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)
        self.stop()


# --------------------------------------------------------------------- SlowProxy


def _require_loopback(host: str) -> None:
    try:
        addr = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot resolve proxy target {host!r}") from exc
    if not addr.is_loopback:
        raise ValueError(f"SlowProxy forwards to loopback only, not {host!r}")


class SlowProxy(_Listener):
    """A TCP proxy on 127.0.0.1 that sleeps ``delay`` seconds before relaying each
    chunk received from the upstream ``target_host:target_port``.

    Requests go upstream at once; responses come back late. ``delay`` may be
    changed while running. At most ``max_connections`` are served at a time; more
    are closed on accept.
    """

    backlog = 16
    poll = 0.1

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        delay: float = 1.0,
        max_connections: int = 16,
    ) -> None:
        _require_loopback(target_host)
        super().__init__()
        self.target = (target_host, target_port)
        self.delay = delay
        self._slots = threading.BoundedSemaphore(max_connections)

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("SlowProxy is not started")
        return f"http://{LOOPBACK}:{self.port}"

    def _admit(self, client: socket.socket) -> bool:
        if not self._slots.acquire(blocking=False):
            client.close()
            return False
        return True

    def _serve(self, client: socket.socket) -> None:
        try:
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._forget(client)
                return
            upstream.settimeout(None)
            client.settimeout(None)
            self._track(upstream)
            back = threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True)
            back.start()
            self._pump(client, upstream, False)
            back.join(timeout=self.delay + 5)
            self._forget(client, upstream)
        finally:
            self._slots.release()

    def _pump(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        try:
            while not self._stopping.is_set():
                chunk = src.recv(65536)
                if not chunk:
                    break
                if slow and self._stopping.wait(self.delay):
                    break
                dst.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


# --------------------------------------------------------------------- CannedOpa


class _CannedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _CannedHttpServer
    timeout = 5  # idle keep-alive connections end on their own

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/health":
            self._reply(200, b"{}")
        else:
            self._canned()

    def do_POST(self) -> None:
        self._canned()

    def _canned(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner = self.server.owner
        with owner._lock:
            owner.requests.append((self.command, self.path, body))
        if not self.path.startswith("/v1/data"):
            self._reply(404, b'{"code": "not_found"}')
            return
        if owner.delay:
            time.sleep(owner.delay)
        self._reply(owner.status, owner.body, owner.content_type)

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        # One write for the whole response: separate header and body writes
        # make clients wait on delayed ACKs (DESIGN.md, "Test doubles").
        reason = self.responses.get(status, ("",))[0]
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
        ).encode("latin-1")
        self.wfile.write(head + body)
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _CannedHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: CannedOpa


class CannedOpa(_Service):
    """An HTTP server on 127.0.0.1 that answers every ``/v1/data/...`` request
    (POST or GET) with ``status`` and ``body``, and ``GET /health`` with 200.

    ``status``, ``body`` and ``delay`` may be changed while running; ``requests``
    records ``(method, path, body)`` of each data request.
    """

    def __init__(
        self,
        status: int = 200,
        body: bytes | str = b"{}",
        *,
        content_type: str = "application/json",
        delay: float = 0.0,
    ) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.delay = delay
        self.requests: list[tuple[str, str, bytes]] = []
        self._lock = threading.Lock()
        self._server: _CannedHttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("CannedOpa is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            return
        server = _CannedHttpServer((LOOPBACK, 0), _CannedHandler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
