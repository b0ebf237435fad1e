"""Sign-in for the web view: a password kept only as a hash, sessions, CSRF tokens.

    >>> from gatekeeper.ui._auth import PasswordHash, Sessions
    >>> stored = PasswordHash.create("correct horse battery staple")
    >>> str(stored).startswith("scrypt$"), stored.verify("wrong"), stored.verify(
    ...     "correct horse battery staple")
    (True, False, True)
    >>> sessions = Sessions()
    >>> token = sessions.issue()
    >>> sessions.valid(token), sessions.valid(token + "x")
    (True, False)

A password reaches the view in one of two ways, and is never kept in clear:

- ``GATEKEEPER_UI_PASSWORD`` (the environment): hashed with scrypt (random
  salt) when the view starts; only the hash is kept in memory;
- a password file (``--password-file`` or ``GATEKEEPER_UI_PASSWORD_FILE``)
  holding one hash line, made with ``gatekeeper ui --hash-password``:
  ``scrypt$<N>$<r>$<p>$<salt>$<key>`` or ``pbkdf2-sha256$<iterations>$<salt>$<key>``
  (base64). A file holding anything else is refused: a clear-text password
  on disk is not accepted.

Candidates are compared with :func:`hmac.compare_digest`. A session is a
random nonce, an expiry and an HMAC-SHA256 over both, keyed with a secret
drawn at start-up (restarting the view signs everyone out); the server also
keeps the nonces it issued, so signing out ends a session for good. CSRF
tokens are HMACs of a value bound to the browser (the pre-sign-in cookie, or
the session's nonce) under the same secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gatekeeper.errors import GatekeeperError

__all__ = [
    "PASSWORD_ENV",
    "PASSWORD_FILE_ENV",
    "FailureThrottle",
    "PasswordHash",
    "Sessions",
    "UiError",
    "load_password",
]

PASSWORD_ENV = "GATEKEEPER_UI_PASSWORD"  # noqa: S105 - a variable name
PASSWORD_FILE_ENV = "GATEKEEPER_UI_PASSWORD_FILE"  # noqa: S105 - a variable name

#: scrypt cost: N=2**14, r=8, p=1 (16 MiB, about 50 ms): OWASP's floor for scrypt.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
_SCRYPT_MAXMEM = 256 * 1024 * 1024
#: The fewest PBKDF2-HMAC-SHA256 iterations a password file may ask for (OWASP, 2023).
PBKDF2_MIN_ITERATIONS = 600_000
_MAX_PASSWORD_BYTES = 1024


class UiError(GatekeeperError):
    """The web view cannot start or serve as configured."""

    reason = "ui_error"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise UiError("the password hash is not well-formed base64") from exc


@dataclass(frozen=True, slots=True, repr=False)
class PasswordHash:
    """A password as a salted scrypt or PBKDF2-HMAC-SHA256 hash."""

    scheme: str  # "scrypt" | "pbkdf2-sha256"
    params: tuple[int, ...]  # (N, r, p) | (iterations,)
    salt: bytes
    key: bytes

    def __repr__(self) -> str:
        return f"PasswordHash({self.scheme}, {self.params})"

    def __str__(self) -> str:
        fields = [self.scheme, *(str(v) for v in self.params), _b64(self.salt), _b64(self.key)]
        return "$".join(fields)

    @classmethod
    def create(cls, password: str) -> PasswordHash:
        """Hash ``password`` with scrypt and a random 16-byte salt."""
        salt = secrets.token_bytes(16)
        params = (SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return cls("scrypt", params, salt, _derive("scrypt", params, salt, _encode(password)))

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """A hash line as :meth:`__str__` writes it; :class:`UiError` for anything else."""
        parts = text.strip().split("$")
        try:
            if parts[0] == "scrypt" and len(parts) == 6:
                n, r, p = (int(v) for v in parts[1:4])
                if n < SCRYPT_N or n & (n - 1) or not (1 <= r <= 32) or not (1 <= p <= 16):
                    raise UiError("scrypt parameters too weak or out of range (N >= 2**14)")
                if n * r * 128 * 2 > _SCRYPT_MAXMEM:
                    raise UiError("scrypt parameters need too much memory")
                params: tuple[int, ...] = (n, r, p)
            elif parts[0] == "pbkdf2-sha256" and len(parts) == 4:
                iterations = int(parts[1])
                if not PBKDF2_MIN_ITERATIONS <= iterations <= 10_000_000:
                    raise UiError(
                        f"PBKDF2 iterations must be {PBKDF2_MIN_ITERATIONS:,} to 10,000,000"
                    )
                params = (iterations,)
            else:
                raise UiError(
                    "not a password hash (expected scrypt$N$r$p$salt$key or "
                    "pbkdf2-sha256$iterations$salt$key; make one with "
                    "`gatekeeper ui --hash-password`)"
                )
        except ValueError as exc:
            raise UiError("the password hash has a parameter that is not a number") from exc
        salt, key = _unb64(parts[-2]), _unb64(parts[-1])
        if len(salt) < 16 or len(key) < 32:
            raise UiError("the password hash needs a salt of 16+ bytes and a key of 32+ bytes")
        return cls(parts[0], params, salt, key)

    def verify(self, candidate: str) -> bool:
        """Whether ``candidate`` is the password (constant-time comparison)."""
        data = _encode(candidate)
        if len(data) > _MAX_PASSWORD_BYTES:
            return False
        derived = _derive(self.scheme, self.params, self.salt, data, len(self.key))
        return hmac.compare_digest(derived, self.key)


def _encode(password: str) -> bytes:
    return password.encode("utf-8", "surrogatepass")


def _derive(
    scheme: str, params: tuple[int, ...], salt: bytes, password: bytes, length: int = 32
) -> bytes:
    if scheme == "scrypt":
        n, r, p = params
        return hashlib.scrypt(
            password, salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=length
        )
    return hashlib.pbkdf2_hmac("sha256", password, salt, params[0], dklen=length)


def load_password(
    password_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> PasswordHash | None:
    """The configured password: a hash file (``password_file``, else
    ``$GATEKEEPER_UI_PASSWORD_FILE``), else ``$GATEKEEPER_UI_PASSWORD`` hashed
    now; None when neither is set."""
    env = os.environ if environ is None else environ
    path = password_file or env.get(PASSWORD_FILE_ENV) or None
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UiError(f"cannot read the password file {path}: {exc}") from exc
        found = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        if len(found) != 1:
            raise UiError(f"the password file {path} must hold exactly one hash line")
        try:
            return PasswordHash.parse(found[0])
        except UiError as exc:
            raise UiError(f"the password file {path}: {exc}") from exc
    plain = env.get(PASSWORD_ENV)
    if plain:
        if len(plain) < 12:
            raise UiError(f"${PASSWORD_ENV} must be at least 12 characters long")
        return PasswordHash.create(plain)
    return None


def _mac(secret: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(secret, f"{purpose}|{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class Sessions:
    """Signed session tokens (``nonce.expiry.mac``) issued by this process."""

    def __init__(self, *, lifetime: float = 8 * 3600, secret: bytes | None = None) -> None:
        self.lifetime = lifetime
        self._secret = secret or secrets.token_bytes(32)
        self._active: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        nonce = secrets.token_urlsafe(18)
        expires = int(time.time() + self.lifetime)
        payload = f"{nonce}.{expires}"
        with self._lock:
            now = time.time()
            for old in [n for n, t in self._active.items() if t <= now]:
                del self._active[old]
            self._active[nonce] = expires
        return f"{payload}.{_mac(self._secret, 'session', payload)}"

    def _nonce(self, token: str | None) -> str | None:
        """The nonce of a valid, unexpired, unrevoked token; else None."""
        if not token or len(token) > 200:
            return None
        parts = token.split(".")
        if len(parts) != 3:
            return None
        nonce, expires, mac = parts
        expected = _mac(self._secret, "session", f"{nonce}.{expires}")
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        if not expires.isdigit() or int(expires) <= time.time():
            return None
        with self._lock:
            return nonce if nonce in self._active else None

    def valid(self, token: str | None) -> bool:
        return self._nonce(token) is not None

    def revoke(self, token: str | None) -> None:
        nonce = self._nonce(token)
        if nonce is not None:
            with self._lock:
                self._active.pop(nonce, None)

    def csrf_token(self, binding: str) -> str:
        """A form token bound to ``binding`` (a cookie value the browser holds)."""
        return _mac(self._secret, "csrf", binding)

    def csrf_valid(self, binding: str | None, token: str | None) -> bool:
        if not binding or not token:
            return False
        return hmac.compare_digest(token.encode(), self.csrf_token(binding).encode())

    def session_binding(self, token: str | None) -> str | None:
        """What a signed-in page's forms bind their CSRF token to (the nonce)."""
        return self._nonce(token)


class FailureThrottle:
    """At most ``limit`` failed sign-ins per client in ``window`` seconds."""

    def __init__(self, *, limit: int = 10, window: float = 900.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        seen = self._failures.setdefault(client, deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        return seen

    def blocked(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            seen = self._recent(client, now)
            if len(seen) < self.limit:
                return 0.0
            return max(1.0, seen[0] + self.window - now)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(client, now).append(now)
            if len(self._failures) > 10_000:  # bounded memory
                self._failures = {k: v for k, v in self._failures.items() if v}
