"""The OPA engine: a real OPA server, through opa-python-client, every exchange deadline-bound.

The server must serve the same pack (``opa run --server --bundle policies/``).
Before deciding, the engine checks the server's pack revision: it reads the
modules and data the server has loaded (``GET /v1/policies``,
``GET /v1/data/<root>``), hashes them the way :func:`compute_revision` hashes
the files, and refuses to decide (EngineError ``policy_revision_mismatch``)
when they differ. The check is repeated when it is older than
``revision_ttl`` seconds, so a server swapped to another bundle is noticed,
and before the first decision after any failure to reach or understand the
server: an OPA restarted with another bundle is never trusted on the strength
of the check made before the outage.

Every failure is an :class:`~gatekeeper.errors.EngineError`: connection
refused or reset (``engine_unreachable``), an HTTP error status
(``engine_http_error``), an answer that is not HTTP or not JSON
(``engine_bad_response``), one larger than ``MAX_RESPONSE_BYTES``
(``engine_response_too_large``), an undefined decision or a malformed one.

``timeout`` (default 250 ms) bounds the whole of one ``evaluate``: the
revision check when one is due and the decision query, connecting, sending,
and reading the status line, the headers and the body. It is a deadline, not
a per-read timeout: a server that answers a byte at a time, each byte in
time, is cut off at the deadline too (``engine_timeout``). Each thread keeps
one keep-alive connection; a connection the server closed while idle is
noticed before it is reused, and any failure closes it.

HTTP is opa-python-client's (``requests``/``urllib3``); the engine mounts an
adapter on the client's session that puts the deadline under every socket
read and write and caps the body. It never goes through a proxy, and it
trusts the system's CA certificates (``SSL_CERT_FILE``, ``SSL_CERT_DIR``).

    >>> from gatekeeper.engines import OpaServerEngine, load_pack
    >>> engine = OpaServerEngine(load_pack("policies"), url="http://127.0.0.1:8181")
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import urllib3
from opa_client import OpaClient
from opa_client.errors import PolicyNotFoundError
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from gatekeeper.engines._pack import ENTRYPOINT, PolicyPack, compute_revision
from gatekeeper.engines.base import check_policy_output
from gatekeeper.errors import EngineError, EngineTimeout, RevisionMismatch

__all__ = ["MAX_RESPONSE_BYTES", "OpaServerEngine"]

DEFAULT_TIMEOUT = 0.25
DEFAULT_REVISION_TTL = 10.0
#: The largest answer read from the server: a decision is a few KiB, the
#: revision check reads every module of the pack.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class _Deadline(threading.local):
    """When this thread's current exchange must be over (time.monotonic), and
    whether it opened a new connection."""

    at = 0.0
    connected = False

    def remaining(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the exchange's deadline passed")
        return left


_DEADLINE = _Deadline()


class _DeadlineReader(io.RawIOBase):
    """Reads from a socket, each read waiting only until the deadline."""

    def __init__(self, owner: _DeadlineSocket) -> None:
        super().__init__()
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        sock = self._owner.sock
        sock.settimeout(_DEADLINE.remaining())
        return sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._owner.reader_closed()
        super().close()


class _DeadlineSocket:
    """A connection's socket as http.client sees it: reads and writes end at the
    exchange's deadline, however the server spreads its bytes out.

    Like ``socket.makefile``, an open reader keeps the socket open after
    ``close()`` (http.client closes the connection of a close-delimited answer
    before its body is read).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._readers = 0
        self._closed = False

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"unsupported socket file mode {mode!r}")
        self._readers += 1
        return io.BufferedReader(_DeadlineReader(self))

    def reader_closed(self) -> None:
        self._readers -= 1
        if self._closed and self._readers <= 0:
            self.sock.close()

    def sendall(self, data: Any) -> None:
        self.sock.settimeout(_DEADLINE.remaining())
        self.sock.sendall(data)

    def close(self) -> None:
        self._closed = True
        if self._readers <= 0:
            self.sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class _Connection(HTTPConnection):
    def connect(self) -> None:
        self.timeout = _DEADLINE.remaining()
        super().connect()  # HTTPSConnection's too, in _SecureConnection
        self.sock = _DeadlineSocket(self.sock)
        _DEADLINE.connected = True


class _SecureConnection(_Connection, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _SecurePool(HTTPSConnectionPool):
    ConnectionCls = _SecureConnection


class _TooLarge(Exception):
    pass


class _Adapter(HTTPAdapter):
    """requests' adapter on deadline-bound connections, reading a capped body."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _SecurePool}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # verify=True: the system's trust store (SSL_CERT_FILE...), not certifi's bundle
        if verify is not True or cert is not None:
            super().cert_verify(conn, url, verify, cert)

    def send(self, request: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["stream"] = True
        _DEADLINE.connected = False
        try:
            response = super().send(request, *args, **kwargs)
        except requests.ConnectionError as exc:
            # A kept-alive connection the server closed just as it was reused
            # (restarted, or dropped it idle): once more, on a new connection.
            # The queries have no side effects.
            if _DEADLINE.connected or not _cut_off(exc):
                raise
            response = super().send(request, *args, **kwargs)
        try:
            response._content = _read_body(response.raw)
        except BaseException:
            response.close()
            raise
        response._content_consumed = True
        return response


def _read_body(raw: urllib3.BaseHTTPResponse) -> bytes:
    """The whole body, at most MAX_RESPONSE_BYTES; ProtocolError when cut short."""
    declared = raw.length_remaining  # None when chunked or delimited by close
    if declared is not None and declared > MAX_RESPONSE_BYTES:
        raise _TooLarge(f"announces {declared} bytes")
    chunks: list[bytes] = []
    total = 0
    for chunk in raw.stream(65536, decode_content=True):
        total += len(chunk)
        if total > MAX_RESPONSE_BYTES:
            raise _TooLarge(f"is larger than {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _raise_for_status(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    response.raise_for_status()


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (requests and urllib3 keep it in args or reason)."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        e = todo.pop()
        if isinstance(e, BaseException) and all(e is not f for f in found):
            found.append(e)
            todo += [*e.args, e.__cause__, getattr(e, "reason", None)]
    return found


def _cut_off(exc: BaseException) -> bool:
    return any(isinstance(c, ConnectionResetError | BrokenPipeError) for c in _causes(exc))


class OpaServerEngine:
    """Decides through a real OPA server; fails closed with EngineError."""

    name = "opa"

    def __init__(
        self,
        pack: PolicyPack,
        *,
        url: str = "http://127.0.0.1:8181",
        timeout: float = DEFAULT_TIMEOUT,
        revision_ttl: float = DEFAULT_REVISION_TTL,
        token: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(f"not an OPA server URL: {url!r}", reason="engine_config")
        self._pack = pack
        self._never_release = frozenset(
            pack.data.get("catalog", {}).get("fields", {}).get("status", ())
        )
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = parts.scheme == "https"
        self._token = token
        self.url = url
        self.timeout = timeout
        self.revision_ttl = revision_ttl
        self._local = threading.local()
        self._checked_at: float | None = None
        self._check_lock = threading.Lock()
        package, _, rule = ENTRYPOINT.rpartition("/")
        self._package = package.replace("/", ".")
        self._rule = rule

    @property
    def revision(self) -> str:
        return self._pack.revision

    # -- transport -------------------------------------------------------------

    def _client(self) -> OpaClient:
        """This thread's client (one keep-alive connection)."""
        client: OpaClient | None = getattr(self._local, "client", None)
        if client is None:
            # No retries: a retry would double the latency the timeout bounds.
            client = OpaClient(
                host=self._host,
                port=self._port,
                ssl=self._ssl,
                token=self._token,
                retries=0,
                timeout=self.timeout,
            )
            session = client._session
            session.trust_env = False  # no proxy (the deadline is on our connections)
            session.hooks["response"].append(_raise_for_status)  # get_data's too
            adapter = _Adapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.client = client
        return client

    def _ask(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            # Unreachable, slow, garbled: the next decision re-checks the revision
            # first (the server may come back with another bundle).
            self._checked_at = None
            raise self._translate(exc, what) from exc

    def _translate(self, exc: Exception, what: str) -> EngineError:
        causes = _causes(exc)

        def caused_by(*kinds: type[BaseException]) -> bool:
            return any(isinstance(c, kinds) for c in causes)

        if isinstance(exc, _TooLarge):
            return EngineError(
                f"OPA server's answer to {what} {exc}", reason="engine_response_too_large"
            )
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            return EngineError(
                f"OPA server error for {what}: HTTP {status}", reason="engine_http_error"
            )
        # (urllib3's NewConnectionError, a refusal, is one of its TimeoutErrors)
        if caused_by(TimeoutError) or time.monotonic() >= _DEADLINE.at:
            return EngineTimeout(f"OPA server did not answer {what} within {self.timeout}s")
        if caused_by(
            http.client.HTTPException,
            requests.JSONDecodeError,
            PolicyNotFoundError,  # get_data: a 200 without a result
            urllib3.exceptions.DecodeError,
        ):
            return EngineError(
                f"OPA server gave a malformed answer to {what}: {type(exc).__name__}: {exc}"[:500],
                reason="engine_bad_response",
            )
        if caused_by(OSError):  # requests' exceptions included
            return EngineError(
                f"OPA server unreachable at {self.url} ({what}): {exc}"[:500],
                reason="engine_unreachable",
            )
        return EngineError(f"OPA server failed {what}: {type(exc).__name__}: {exc}")

    # -- revision ----------------------------------------------------------------

    def _server_revision(self, deadline: float) -> str:
        _DEADLINE.at = deadline
        client = self._client()
        what = "the revision check"
        url = f"{client.root_url}/policies"
        policies = self._ask(what, client._session.get, url, timeout=self.timeout)
        try:
            modules = [p.get("raw", "") for p in policies.json().get("result", [])]
            data: dict[str, Any] = {}
            for root in self._pack.data:
                data[root] = self._ask(what, client.get_data, quote(root))["result"]
            return compute_revision(modules, data)
        except EngineError:
            raise
        except Exception as exc:  # not JSON, or a wrong shape: not what OPA answers
            self._checked_at = None
            raise EngineError(
                f"OPA server gave a malformed answer to {what}: {type(exc).__name__}: {exc}"[:500],
                reason="engine_bad_response",
            ) from exc

    def server_revision(self) -> str:
        """The revision of the pack the server has loaded, as compute_revision hashes it."""
        return self._server_revision(time.monotonic() + self.timeout)

    def check_revision(self, *, force: bool = False, deadline: float | None = None) -> None:
        """Raise RevisionMismatch unless the server runs this pack's revision.

        ``deadline`` (time.monotonic) bounds the check; by default ``timeout`` from now.
        """
        if not force and self._checked_recently():
            return
        with self._check_lock:
            if not force and self._checked_recently():
                return
            served = self._server_revision(deadline or time.monotonic() + self.timeout)
            if served != self._pack.revision:
                self._checked_at = None
                raise RevisionMismatch(
                    f"OPA server at {self.url} runs policy revision {served}, "
                    f"expected {self._pack.revision}"
                )
            self._checked_at = time.monotonic()

    def _checked_recently(self) -> bool:
        checked = self._checked_at
        return checked is not None and time.monotonic() - checked < self.revision_ttl

    # -- deciding ------------------------------------------------------------------

    def evaluate_raw(self, policy_input: Mapping[str, Any]) -> Any:
        """The entrypoint's value from the server, unchecked (None when undefined).

        The revision check (when due) and the query share one deadline: ``timeout``.
        """
        deadline = time.monotonic() + self.timeout
        self.check_revision(deadline=deadline)
        _DEADLINE.at = deadline
        client = self._client()
        body = self._ask(
            "the decision", client.query_rule, dict(policy_input), self._package, self._rule
        )
        if not isinstance(body, dict):
            raise EngineError(
                "OPA server returned a non-object body", reason="malformed_policy_output"
            )
        return body.get("result")

    def evaluate(self, policy_input: Mapping[str, Any]) -> dict[str, Any]:
        raw = self.evaluate_raw(policy_input)
        if raw is None:
            raise EngineError(
                "the policy decision is undefined on the OPA server", reason="undefined_decision"
            )
        return check_policy_output(raw, policy_input, self._never_release)

    def close(self) -> None:
        client: OpaClient | None = getattr(self._local, "client", None)
        if client is not None:
            client.close_connection()
        self._local = threading.local()
