"""An external signer: a long-lived child process that holds the log's key.

    signer_command = ["python3", "-m", "gatekeeper.audit.signer_process", "--key", "/etc/k.pem"]

The gatekeeper process never holds the private key: it sends each message to
sign to the signer process and gets the signature back. The line protocol
(ASCII, one request and one answer per line, over the child's stdin/stdout)::

    pubkey\\n                     ->  pubkey <base64 32-byte Ed25519 public key>\\n
    sign <base64 message>\\n      ->  sig <base64 64-byte Ed25519 signature>\\n
    (any request)                ->  error <text>\\n        (refused)

``pubkey`` is asked once per start of the process; the first answer is pinned
for the signer's lifetime (a restarted signer with another key is refused).
Every signature is verified against that key before it is used: a signer that
answers garbage, or signs with another key, cannot put a bad signature in the
log. Any failure (the process cannot start, exits, hangs past ``timeout``,
answers anything but a verifying signature) kills the process and raises
:class:`AuditError` with reason ``audit_signer_unavailable``: the decision is
a deny, never signed by a fallback key. The process is restarted on the next
signature, at most once every ``restart_interval`` seconds (in between,
signatures fail at once).

Any program speaking the protocol works (a PKCS#11 or KMS bridge with pure
Ed25519, ``ssh signer-host ...``, ``sudo -n -u gk-signer ...`` so the key file
is readable by another user only); the reference is
:mod:`gatekeeper.audit.signer_process`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import select
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.note import is_valid_name, key_id, verifier_key

__all__ = ["REASON", "RESTART_INTERVAL", "CommandSigner"]

#: The reason of every failure of an external signer.
REASON = "audit_signer_unavailable"
#: A failed signer process is restarted at most this often (seconds).
RESTART_INTERVAL = 1.0
#: The longest answer line read from a signer (a signature line is ~93 bytes).
_MAX_LINE = 4096


def _b64decode(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


class CommandSigner:
    """Signs with a key held by a child process (``command``), over the line protocol.

    Thread-safe: signatures are requested one at a time. ``timeout`` bounds
    each request; ``start_timeout`` a start (an interpreter may take a while to
    start) and its ``pubkey`` exchange.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        timeout: float = 1.0,
        start_timeout: float = 5.0,
        restart_interval: float = RESTART_INTERVAL,
    ) -> None:
        if not command or not all(isinstance(part, str) and part for part in command):
            raise AuditError("signer_command must be a non-empty list of strings", reason="config")
        if not is_valid_name(name):
            raise AuditError(f"invalid key name {name!r}", reason="config")
        self.command = tuple(command)
        self._name = name
        self.timeout = timeout
        self.start_timeout = max(start_timeout, timeout)
        self.restart_interval = restart_interval
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        #: The public key of the first successful start: pinned.
        self._public: bytes | None = None
        self._verifier: Ed25519PublicKey | None = None
        #: No (re)start before this (monotonic).
        self._next_start = 0.0
        self._last_error = "the signer process has not started"
        self._closed = False
        #: How many times the process was started (for operators and tests).
        self.starts = 0

    # -- the EntrySigner protocol ---------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        """The signer's Ed25519 public key (starts the process on first use)."""
        if self._public is None:
            self.start()
        assert self._public is not None
        return self._public

    @property
    def key_id(self) -> bytes:
        return key_id(self._name, self.public_key)

    @property
    def vkey(self) -> str:
        return verifier_key(self._name, self.public_key)

    @property
    def pid(self) -> int | None:
        """The running signer process's id (None: not running)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Start the process (if it is not running) and learn its public key."""
        with self._locked():
            self._ensure()

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of ``message``, verified against the pinned key."""
        with self._locked():
            self._ensure()
            deadline = time.monotonic() + self.timeout
            request = b"sign " + base64.b64encode(message) + b"\n"
            signature = self._ask(request, b"sig", 64, "a malformed signature", deadline)
            assert self._verifier is not None
            try:
                self._verifier.verify(signature, message)
            except InvalidSignature:
                self._fail("the signer process returned a signature that does not verify")
            return signature

    def close(self) -> None:
        """Stop the process (its stdin is closed; killed if it does not exit)."""
        with self._lock:
            self._closed = True
            proc, self._proc = self._proc, None
            if proc is None:
                return
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def __repr__(self) -> str:
        return f"CommandSigner({self.command[0]!r}, name={self._name!r})"

    # -- the process -------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self._lock.acquire(timeout=self.timeout):
            raise AuditError(
                f"the signer process is busy for more than {self.timeout:g} s", reason=REASON
            )
        try:
            if self._closed:
                raise AuditError("the signer is closed", reason=REASON)
            yield
        finally:
            self._lock.release()

    def _unavailable(self, message: str) -> AuditError:
        self._last_error = message
        return AuditError(message, reason=REASON)

    def _fail(self, message: str) -> NoReturn:
        """Kill the process (its stream may be out of step) and raise."""
        self._kill()
        raise self._unavailable(message)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        self._buf = b""
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()

    def _ensure(self) -> None:
        proc = self._proc
        if proc is not None:
            code = proc.poll()
            if code is None:
                return
            self._kill()
            self._last_error = f"the signer process exited (status {code})"
        now = time.monotonic()
        if now < self._next_start:
            raise AuditError(
                f"{self._last_error} (restarted at most every {self.restart_interval:g} s)",
                reason=REASON,
            )
        self._next_start = now + self.restart_interval
        try:
            self._start()
        finally:  # the interval runs from the end of a (slow) start
            self._next_start = time.monotonic() + self.restart_interval

    def _start(self) -> None:
        try:
            proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
            )
        except OSError as exc:
            raise self._unavailable(
                f"cannot start the signer process {self.command[0]!r} ({exc.strerror})"
            ) from exc
        self.starts += 1
        assert proc.stdin is not None and proc.stdout is not None
        os.set_blocking(proc.stdin.fileno(), False)
        os.set_blocking(proc.stdout.fileno(), False)
        self._proc, self._buf = proc, b""
        deadline = time.monotonic() + self.start_timeout
        public = self._ask(b"pubkey\n", b"pubkey", 32, "a malformed public key", deadline)
        if self._public is not None and public != self._public:
            self._fail("the restarted signer process has another public key than the one in use")
        if self._public is None:
            try:
                self._verifier = Ed25519PublicKey.from_public_bytes(public)
            except ValueError:
                self._fail("the signer process answered an invalid public key")
            self._public = public

    @staticmethod
    def _refusal(request: str, line: bytes) -> str:
        tag, _, text = line.partition(b" ")
        if tag == b"error":
            shown = text[:200].decode("ascii", "replace")
            return f"the signer process refused {request!r}: {shown}"
        return f"the signer process answered {request!r} with something else"

    def _wait(self, fd: int, event: int, deadline: float, doing: str) -> None:
        poller = select.poll()
        poller.register(fd, event)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"the signer process did not {doing} in time (a hang)")
            if poller.poll(remaining * 1000):
                return

    def _ask(self, request: bytes, tag: bytes, size: int, malformed: str, deadline: float) -> bytes:
        """Send one request line; the base64 payload of the ``tag`` answer, of
        ``size`` bytes (fails closed on a refusal or anything else)."""
        self._send(request, deadline)
        line = self._receive(deadline)
        answer, _, payload = line.partition(b" ")
        if answer != tag:
            self._fail(self._refusal(request.split(b" ", 1)[0].strip().decode(), line))
        value = _b64decode(payload)
        if value is None or len(value) != size:
            self._fail(f"the signer process answered {malformed}")
        return value

    def _send(self, data: bytes, deadline: float) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        fd = proc.stdin.fileno()
        view = memoryview(data)
        while view:
            self._wait(fd, select.POLLOUT, deadline, "read its request")
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                continue
            except OSError:
                self._fail(f"the signer process exited (status {proc.poll()})")
            view = view[written:]

    def _receive(self, deadline: float) -> bytes:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._buf:
            if len(self._buf) > _MAX_LINE:
                self._fail("the signer process answered an overlong line")
            self._wait(fd, select.POLLIN, deadline, "answer")
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.5)
                self._fail(f"the signer process exited (status {proc.poll()})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.rstrip(b"\r")
