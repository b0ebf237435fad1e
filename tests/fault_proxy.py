"""Real fault injectors on loopback, switchable while they run (tests/test_faults_remote.py).

- ``FaultyHttpFront``: an HTTP/1.1 server in front of a real OPA server. In mode
  ``"pass"`` it forwards every request to OPA and relays the answer; in mode
  ``"delay"`` it does the same ``delay`` seconds late; in the other modes it
  answers the decision queries (POST; or every request with
  ``decisions_only=False``) with a fault: garbage bytes, truncated JSON, a
  wrong-shape decision, a body cut short or reset mid-way, a huge body, a body
  or headers dripped a byte at a time. ``mode`` and ``delay`` may be changed at
  any time; a delayed request whose delay is switched off is answered at once.

- ``CutProxy``: a TCP proxy (bytes, any protocol: PostgreSQL here). ``cut_after(marker)``
  arms a one-shot cut: the client-to-server chunk holding ``marker`` is forwarded,
  then both sides of that connection are closed before any reply comes back (a
  connection lost after COMMIT was sent). ``stalled = True`` stops relaying in
  both directions without closing anything (a frozen peer that still ACKs);
  ``cut_all()`` resets every open connection.

    with OpaServer(POLICIES_DIR) as opa, FaultyHttpFront(opa.port) as front:
        front.mode = "garbage"          # the next decision query gets garbage
        front.mode = "pass"             # and the one after a real answer

Both bind 127.0.0.1 on a free port and forward to loopback only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
import time

from tests.opa_server import _Listener

__all__ = ["MODES", "CutProxy", "FaultyHttpFront"]

LOOPBACK = "127.0.0.1"

#: A permit that names a status field and lacks most keys: the wrong shape.
_FORGED = json.dumps(
    {"result": {"decision": "permit", "allowed_fields": ["grades", "citizenship_status"]}}
).encode()

#: The modes of FaultyHttpFront.
MODES = (
    "pass",
    "delay",
    "garbage",  # not HTTP at all, then close
    "http_500",  # an HTML error page
    "truncated_json",  # a complete HTTP response whose JSON stops mid-way
    "wrong_shape",  # valid JSON, a forged permit of the wrong shape
    "not_object",  # valid JSON, a list
    "short_body",  # Content-Length promises more than is sent, then FIN
    "reset",  # half a body, then RST
    "huge",  # a 256 MiB body without Content-Length, as fast as the client reads
    "huge_declared",  # Content-Length: 10**12
    "drip_body",  # a byte of body every 50 ms (each read well inside the timeout)
    "drip_headers",  # a byte of the status line and headers every 50 ms
    "hang",  # read the request, never answer
)

_DRIP_EVERY = 0.05
_HUGE = 256 * 1024 * 1024


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultyHttpFront(_Listener):
    """An HTTP front for a real server on ``127.0.0.1:upstream_port`` that
    answers decision queries with the fault ``mode`` names (see MODES)."""

    def __init__(
        self,
        upstream_port: int,
        *,
        mode: str = "pass",
        delay: float = 0.0,
        decisions_only: bool = True,
    ) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.mode = mode
        self.delay = delay
        self.decisions_only = decisions_only
        #: (mode, method, path) of every request served, in order.
        self.served: list[tuple[str, str, str]] = []

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("FaultyHttpFront is not started")
        return f"http://{LOOPBACK}:{self.port}"

    # -- one client connection: requests in a loop (keep-alive) ---------------------

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        reader = client.makefile("rb")
        try:
            while not self._stopping.is_set():
                request = self._read_request(reader)
                if request is None:
                    return
                method, path, headers, body = request
                mode = self.mode
                faulty = method == "POST" or not self.decisions_only
                if not faulty and mode != "delay":
                    mode = "pass"
                with self._lock:
                    self.served.append((mode, method, path))
                if mode not in MODES:
                    raise ValueError(f"unknown mode {mode!r}")
                if not getattr(self, f"_{mode}")(client, method, path, headers, body):
                    return  # the fault ended the connection
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                reader.close()
            self._forget(client)

    @staticmethod
    def _read_request(
        reader: socket.SocketIO | object,
    ) -> tuple[str, str, dict[str, str], bytes] | None:
        read_line = reader.readline  # type: ignore[attr-defined]
        line = read_line(65537)
        if not line:
            return None
        method, path, _version = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            h = read_line(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        body = reader.read(length) if length else b""  # type: ignore[attr-defined]
        return method, path, headers, body

    @staticmethod
    def _head(status: int, length: int, content_type: str = "application/json") -> bytes:
        reason = http.client.responses.get(status, "")
        return (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode("latin-1")

    def _reply(self, client: socket.socket, status: int, body: bytes, ctype: str) -> bool:
        client.sendall(self._head(status, len(body), ctype) + body)
        return True

    # -- the modes: each returns True to keep the connection for the next request ---

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple:
        upstream = http.client.HTTPConnection(LOOPBACK, self.upstream_port, timeout=10)
        try:
            keep = {k: v for k, v in headers.items() if k in ("content-type", "authorization")}
            upstream.request(method, path, body=body or None, headers=keep)
            resp = upstream.getresponse()
            return resp.status, resp.read(), resp.getheader("Content-Type") or "application/json"
        finally:
            upstream.close()

    def _pass(
        self, client: socket.socket, method: str, path: str, headers: dict, body: bytes
    ) -> bool:
        try:
            status, answer, ctype = self._forward(method, path, headers, body)
        except OSError:
            _reset(client)  # upstream down: the client sees a reset connection
            return False
        return self._reply(client, status, answer, ctype)

    def _delay(
        self, client: socket.socket, method: str, path: str, headers: dict, body: bytes
    ) -> bool:
        status, answer, ctype = self._forward(method, path, headers, body)
        started = time.monotonic()
        # Late by `delay`, re-read while waiting: switching the delay off answers at once.
        while self.mode == "delay" and time.monotonic() - started < self.delay:
            if self._stopping.wait(0.01):
                return False
        return self._reply(client, status, answer, ctype)

    def _garbage(self, client: socket.socket, *_: object) -> bool:
        client.sendall(b"\x00\xff\xfe\x16\x03 this is not HTTP \xc3\x28\r\n\r\n{}")
        return False

    def _http_500(self, client: socket.socket, *_: object) -> bool:
        return self._reply(
            client, 500, b"<html><body>Internal Server Error</body></html>", "text/html"
        )

    def _truncated_json(self, client: socket.socket, *_: object) -> bool:
        return self._reply(
            client, 200, b'{"result": {"decision": "permit", "allowed_fi', "application/json"
        )

    def _wrong_shape(self, client: socket.socket, *_: object) -> bool:
        return self._reply(client, 200, _FORGED, "application/json")

    def _not_object(self, client: socket.socket, *_: object) -> bool:
        return self._reply(client, 200, b'["permit", "grades"]', "application/json")

    def _short_body(self, client: socket.socket, *_: object) -> bool:
        client.sendall(self._head(200, 500) + b'{"result": {"decision": "permit"')
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)
        return False

    def _reset(self, client: socket.socket, *_: object) -> bool:
        client.sendall(self._head(200, 500) + b'{"result": {"decision": "permit"')
        time.sleep(0.01)  # let the head arrive before the RST
        _reset(client)
        return False

    def _huge(self, client: socket.socket, *_: object) -> bool:
        # No Content-Length: the body ends when the connection does.
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        client.sendall(head + b'{"result": {"guidance": "')
        block = b"A" * 65536
        sent = 0
        while sent < _HUGE - 64 and not self._stopping.is_set():
            client.sendall(block)  # OSError once the client gave up: the thread ends
            sent += len(block)
        return False

    def _huge_declared(self, client: socket.socket, *_: object) -> bool:
        client.sendall(self._head(200, 10**12) + b'{"result": {"guidance": "')
        self._stopping.wait(2.0)
        return False

    def _drip(self, client: socket.socket, data: bytes) -> bool:
        for i in range(len(data)):
            if self._stopping.wait(_DRIP_EVERY):
                return False
            client.sendall(data[i : i + 1])  # OSError once the client gave up
        return False

    def _drip_body(self, client: socket.socket, *_: object) -> bool:
        body = b'{"result": {"guidance": "' + b"A" * 10_000 + b'"}}'
        client.sendall(self._head(200, len(body)))
        return self._drip(client, body)

    def _drip_headers(self, client: socket.socket, *_: object) -> bool:
        head = self._head(200, 2) + b"".join(
            f"X-Drip-{i}: {'a' * 40}\r\n".encode() for i in range(100)
        )
        return self._drip(client, head)

    def _hang(self, client: socket.socket, *_: object) -> bool:
        self._stopping.wait(5.0)
        return False


class CutProxy(_Listener):
    """A TCP proxy to ``127.0.0.1:upstream_port`` that can cut or stall connections."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        #: While set, nothing is relayed (connections stay open).
        self.stalled = False
        self._marker: bytes | None = None
        #: How many connections were cut after their marker.
        self.cuts = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []

    @property
    def address(self) -> tuple[str, int]:
        if self.port is None:
            raise RuntimeError("CutProxy is not started")
        return LOOPBACK, self.port

    def cut_after(self, marker: bytes) -> None:
        """Arm a one-shot cut after the next client chunk holding ``marker``."""
        self._marker = marker

    def cut_all(self) -> None:
        """Reset every connection open now (new ones are relayed as usual)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            _reset(a)
            _reset(b)

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((LOOPBACK, self.upstream_port), timeout=5)
        except OSError:
            self._forget(client)
            return
        self._track(upstream)
        with self._lock:
            self._pairs.append((client, upstream))
        client.settimeout(0.05)
        upstream.settimeout(0.05)
        back = threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True)
        back.start()
        self._pump(client, upstream, True)
        back.join(timeout=5)
        self._forget(client, upstream)

    def _pump(self, src: socket.socket, dst: socket.socket, to_server: bool) -> None:
        while not self._stopping.is_set():
            if self.stalled:
                time.sleep(0.01)
                continue
            try:
                chunk = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            marker = self._marker
            try:
                dst.sendall(chunk)
            except OSError:
                break
            if to_server and marker is not None and marker in chunk:
                self._marker = None
                self.cuts += 1
                # The server has the chunk; the client never hears back.
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                _reset(src)
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
