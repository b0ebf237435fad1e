"""Running an ASGI app with uvicorn on loopback: in a thread (tests, demos) or in the foreground.

    handle = start_in_thread(app, port=0)      # an ephemeral port
    handle.url                                 # 'http://127.0.0.1:54321'
    handle.stop()

uvicorn is imported here, lazily: the core ``import gatekeeper`` never needs it.
The socket is bound before the server starts, so the port is known (and
connections queue in the backlog) before the app has finished starting.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from gatekeeper.errors import GatekeeperError

__all__ = ["ServerHandle", "bind", "serve_forever", "start_in_thread"]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: an ephemeral one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
    # when the listening socket says TCP; without it, uvicorn's separate header
    # and body writes meet Nagle + delayed ACK (~40 ms a response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise GatekeeperError(
            f"cannot listen on {host}:{port}: {exc.strerror}", reason="config"
        ) from exc
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _server(app: Any, **options: Any) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level=options.pop("log_level", "warning"),
        access_log=False,  # request lines may carry ids and filters: not logged
        server_header=False,
        lifespan="on",
        **options,
    )
    return uvicorn.Server(config)


class ServerHandle:
    """A uvicorn server running in a background thread."""

    def __init__(
        self,
        server: Any,
        thread: threading.Thread,
        sock: socket.socket,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        self._on_stop = on_stop
        self.url = _url(sock)
        self.host, self.port = sock.getsockname()[:2]

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (open connections get ``timeout`` seconds) and release resources."""
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
        self._sock.close()
        if self._on_stop is not None:
            callback, self._on_stop = self._on_stop, None
            callback()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    name: str = "gatekeeper-server",
    on_stop: Callable[[], None] | None = None,
    startup_timeout: float = 30.0,
) -> ServerHandle:
    """Serve ``app`` from a daemon thread; return once it accepts connections."""
    sock = bind(host, port)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise GatekeeperError(f"{name} did not start", reason="server_start")
        time.sleep(0.01)
    return ServerHandle(server, thread, sock, on_stop)


def serve_forever(
    app: Any,
    host: str,
    port: int,
    *,
    ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Serve ``app`` in the foreground until SIGINT/SIGTERM; ``ready(url)`` once it accepts."""
    sock = bind(host, port)
    server = _server(app, log_level=log_level)
    if ready is not None:
        url = _url(sock)

        def announce() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started:
                ready(url)

        threading.Thread(target=announce, name="gatekeeper-ready", daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
