"""Which obligation codes go where: the ``[gatekeeper.obligations]`` configuration.

    [gatekeeper.obligations]
    max_attempts = 8          # then the row is `failed`
    backoff_base = 30         # seconds before the 2nd attempt; doubles, with jitter
    backoff_max = 3600
    lease = 120               # seconds a dispatcher holds a claimed row
    poll_interval = 5
    release_max_age = 2592000 # a held decision can be released for 30 days (0: no limit)

    [[gatekeeper.obligations.webhook]]
    codes = ["NOTIFY_LEGAL", "NOTIFY_LEADERSHIP"]
    url = "https://legal.example-district.org/hooks/gatekeeper"
    secret_env = "GATEKEEPER_LEGAL_WEBHOOK_SECRET"   # or secret_file = "/etc/gatekeeper/legal.key"
    timeout = 10

    [[gatekeeper.obligations.email]]
    codes = ["NOTIFY_PARENT_PRE", "VERIFY_CONSENT"]
    host = "smtp.example-district.org"
    port = 587
    starttls = true
    from = "gatekeeper@example-district.org"
    to = ["records-office@example-district.org"]
    username = "gatekeeper"                          # optional
    password_env = "GATEKEEPER_SMTP_PASSWORD"

Each code has at most one route (a row has one delivery status). Secrets
come from the environment or a file, never from the configuration itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gatekeeper.errors import GatekeeperError

__all__ = ["EmailRoute", "ObligationSettings", "WebhookRoute", "parse_obligation_settings"]

_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
DEFAULT_RELEASE_MAX_AGE = 30 * 24 * 3600.0


def _config_error(message: str) -> GatekeeperError:
    return GatekeeperError(f"obligations: {message}", reason="config")


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookRoute:
    codes: tuple[str, ...]
    url: str
    secret_env: str | None = None
    secret_file: Path | None = None
    timeout: float = 10.0

    def secret(self) -> bytes:
        """The HMAC secret, read now from the environment or the file."""
        if self.secret_env is not None:
            value = os.environ.get(self.secret_env)
            if not value:
                raise _config_error(f"the webhook secret variable {self.secret_env} is not set")
            return value.encode("utf-8")
        assert self.secret_file is not None
        try:
            value = self.secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _config_error(
                f"cannot read the webhook secret file {self.secret_file}: {exc.strerror}"
            ) from exc
        if not value:
            raise _config_error(f"the webhook secret file {self.secret_file} is empty")
        return value.encode("utf-8")


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailRoute:
    codes: tuple[str, ...]
    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    cafile: Path | None = None
    timeout: float = 10.0

    def password(self) -> str | None:
        if self.password_env is None:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise _config_error(f"the SMTP password variable {self.password_env} is not set")
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ObligationSettings:
    webhooks: tuple[WebhookRoute, ...] = ()
    emails: tuple[EmailRoute, ...] = ()
    max_attempts: int = 8
    backoff_base: float = 30.0
    backoff_max: float = 3600.0
    lease: float = 120.0
    poll_interval: float = 5.0
    batch_size: int = 20
    #: A held permit may be released this long after it was decided (None: no limit).
    release_max_age: float | None = DEFAULT_RELEASE_MAX_AGE
    routes: Mapping[str, WebhookRoute | EmailRoute] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        routes: dict[str, WebhookRoute | EmailRoute] = {}
        every: tuple[WebhookRoute | EmailRoute, ...] = (*self.webhooks, *self.emails)
        for route in every:
            for code in route.codes:
                if code in routes:
                    raise _config_error(f"{code} has more than one route")
                routes[code] = route
        object.__setattr__(self, "routes", routes)
        if not 1 <= self.max_attempts <= 1000:
            raise _config_error("max_attempts must be between 1 and 1000")
        if not (0 < self.backoff_base <= self.backoff_max <= 7 * 24 * 3600):
            raise _config_error("need 0 < backoff_base <= backoff_max <= one week")
        if not 0 < self.poll_interval <= 3600:
            raise _config_error("poll_interval must be between 0 and 3600 seconds")
        if not 1 <= self.batch_size <= 1000:
            raise _config_error("batch_size must be between 1 and 1000")
        slowest = max((r.timeout for r in every), default=0.0)
        if not self.lease > slowest:
            raise _config_error(
                f"lease ({self.lease:g} s) must be longer than the slowest route's timeout "
                f"({slowest:g} s): a delivery still running must not be claimed again"
            )
        if self.release_max_age is not None and not self.release_max_age > 0:
            raise _config_error("release_max_age must be positive")


def _take(raw: Mapping[str, Any], where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise _config_error(f"{where} must be a table")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _config_error(f"{where}: unknown setting(s) {unknown}")
    return dict(raw)


def _codes(raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
    codes = raw.get("codes")
    if (
        not isinstance(codes, list)
        or not codes
        or not all(isinstance(c, str) and _CODE.match(c) for c in codes)
    ):
        raise _config_error(f"{where}: codes must be a non-empty list of obligation codes")
    return tuple(codes)


def _number(raw: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise _config_error(f"{where}: {key} must be a number of seconds (0, 3600]")
    return float(value)


def _webhook(raw: Any, where: str) -> WebhookRoute:
    values = _take(raw, where, {"codes", "url", "secret_env", "secret_file", "timeout"})
    url = values.get("url")
    if not isinstance(url, str):
        raise _config_error(f"{where}: url must be an http:// or https:// URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _config_error(f"{where}: url must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise _config_error(
            f"{where}: url must carry no credentials (user:password@); "
            "the webhook secret signs each body"
        )
    env, file = values.get("secret_env"), values.get("secret_file")
    if (env is None) == (file is None):
        raise _config_error(
            f"{where}: give exactly one of secret_env (a variable name) or secret_file; "
            "a secret is never written in the configuration"
        )
    if env is not None and not (isinstance(env, str) and env):
        raise _config_error(f"{where}: secret_env must name an environment variable")
    if file is not None and not (isinstance(file, str) and file):
        raise _config_error(f"{where}: secret_file must be a path")
    return WebhookRoute(
        codes=_codes(values, where),
        url=url,
        secret_env=env,
        secret_file=None if file is None else Path(file),
        timeout=_number(values, "timeout", where, 10.0),
    )


def _email(raw: Any, where: str) -> EmailRoute:
    values = _take(
        raw,
        where,
        {"codes", "host", "port", "starttls", "from", "to", "username", "password_env",
         "cafile", "timeout"},
    )  # fmt: skip
    host, sender, to = values.get("host"), values.get("from"), values.get("to")
    if not (isinstance(host, str) and host):
        raise _config_error(f"{where}: host is required")
    if not (isinstance(sender, str) and "@" in sender):
        raise _config_error(f"{where}: from must be an e-mail address")
    if isinstance(to, str):
        to = [to]
    if not (isinstance(to, list) and to and all(isinstance(a, str) and "@" in a for a in to)):
        raise _config_error(f"{where}: to must be an address or a list of addresses")
    port = values.get("port", 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise _config_error(f"{where}: port must be a TCP port")
    starttls = values.get("starttls", False)
    if not isinstance(starttls, bool):
        raise _config_error(f"{where}: starttls must be true or false")
    for key in ("username", "password_env", "cafile"):
        if key in values and not (isinstance(values[key], str) and values[key]):
            raise _config_error(f"{where}: {key} must be a string")
    if values.get("password_env") and not values.get("username"):
        raise _config_error(f"{where}: password_env needs a username")
    return EmailRoute(
        codes=_codes(values, where),
        host=host,
        port=port,
        sender=sender,
        to=tuple(to),
        starttls=starttls,
        username=values.get("username"),
        password_env=values.get("password_env"),
        cafile=Path(values["cafile"]) if values.get("cafile") else None,
        timeout=_number(values, "timeout", where, 10.0),
    )


def parse_obligation_settings(raw: Any) -> ObligationSettings:
    """The ``[gatekeeper.obligations]`` table (raises GatekeeperError, reason ``config``)."""
    if isinstance(raw, ObligationSettings):
        return raw
    values = _take(
        raw,
        "[obligations]",
        {"webhook", "email", "max_attempts", "backoff_base", "backoff_max", "lease",
         "poll_interval", "batch_size", "release_max_age"},
    )  # fmt: skip
    hooks = values.pop("webhook", [])
    mails = values.pop("email", [])
    if not isinstance(hooks, list) or not isinstance(mails, list):
        raise _config_error("webhook and email are arrays of tables ([[...webhook]])")
    numbers: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _config_error(f"{key} must be a number")
        if key in ("max_attempts", "batch_size") and not isinstance(value, int):
            raise _config_error(f"{key} must be an integer")
        numbers[key] = value if key in ("max_attempts", "batch_size") else float(value)
    if numbers.get("release_max_age") == 0:
        numbers["release_max_age"] = None  # 0: no limit
    return ObligationSettings(
        webhooks=tuple(_webhook(h, f"webhook[{i}]") for i, h in enumerate(hooks)),
        emails=tuple(_email(m, f"email[{i}]") for i, m in enumerate(mails)),
        **numbers,
    )
