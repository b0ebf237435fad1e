"""The proxy's configuration: API clients, the upstream, the field map (TOML).

    >>> import hashlib
    >>> from gatekeeper.oneroster.config import ProxyConfig
    >>> digest = hashlib.sha256(b"teacher-token").hexdigest()
    >>> config = ProxyConfig.from_dict({
    ...     "proxy": {"upstream": "http://127.0.0.1:8600"},
    ...     "clients": {"teacher": {
    ...         "token_sha256": digest, "purpose": "educational",
    ...         "requester": {"id": "E1", "kind": "district_staff",
    ...                       "role": "teacher_of_record", "identity_verified": True}}}})
    >>> config.client_for("teacher-token").name, config.client_for("nope")
    ('teacher', None)

A client's bearer token is never stored: the file holds its SHA-256
(``token_sha256``) or names an environment variable that holds the token
(``token_env``), hashed when the file is read. The proxy's own credential
for the upstream SIS comes from ``upstream_token_env`` (or, for a demo,
``upstream_token``). See ``docs/oneroster-proxy.md`` for the whole format.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gatekeeper.errors import GatekeeperError, RequestError
from gatekeeper.oneroster.mapping import ONEROSTER_PREFIX, FieldMapping
from gatekeeper.request import parse_request

__all__ = ["ClientConfig", "ProxyConfig", "Secret", "hash_token", "load_proxy_config"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_REQUESTER_KEYS: Final = frozenset({"id", "name", "kind", "agency", "role", "identity_verified"})
_VENDOR_KEYS: Final = frozenset(
    {
        "id",
        "contract_ref",
        "contract_49073_1_compliant",
        "contracted_purposes",
        "contracted_fields",
        "board_review_flag",
        "enforcement_linked",
    }
)
_CLIENT_KEYS: Final = frozenset(
    {
        "token_sha256",
        "token_env",
        "requester",
        "purpose",
        "on_behalf_of",
        "task_force",
        "vendor",
        "request_fields",
        "classes",
        "schools",
    }
)
_PROXY_KEYS: Final = frozenset(
    {
        "upstream",
        "upstream_token_env",
        "upstream_token",
        "upstream_timeout",
        "bulk_release_rules",
        "decision_workers",
        "max_record_bytes",
        "unauthenticated_audit_per_second",
    }
)
_TOP_KEYS: Final = frozenset({"proxy", "gatekeeper", "clients", "fields", "structural"})


def _error(message: str) -> GatekeeperError:
    return GatekeeperError(message, reason="config")


def hash_token(token: str) -> str:
    """The hex SHA-256 of a bearer token, as ``token_sha256`` stores it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Secret:
    """A credential that never shows in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """One API client: who it is, why it asks, and (for a vendor) its contract."""

    name: str
    requester: Mapping[str, Any]
    purpose: str
    on_behalf_of: str | None = None
    task_force: tuple[str, ...] = ()
    vendor: Mapping[str, Any] | None = None
    #: Catalog fields asked for when a request selects none (None: all the endpoint has).
    request_fields: tuple[str, ...] | None = None
    #: Class and school sourcedIds the client is tied to (``*``: all).
    classes: frozenset[str] = frozenset()
    schools: frozenset[str] = frozenset()

    @property
    def default_fields(self) -> tuple[str, ...] | None:
        """``request_fields``, else a vendor's contracted fields, else None (everything)."""
        if self.request_fields is not None:
            return self.request_fields
        if self.vendor is not None and self.vendor.get("contracted_fields") is not None:
            return tuple(self.vendor["contracted_fields"])
        return None

    def request_base(self) -> dict[str, Any]:
        """The requester part of every AccessRequest this client makes."""
        base: dict[str, Any] = {
            "channel": "api",
            "requester": dict(self.requester),
            "purpose": self.purpose,
        }
        if self.on_behalf_of:
            base["on_behalf_of"] = self.on_behalf_of
        if self.task_force:
            base["task_force"] = list(self.task_force)
        if self.vendor is not None:
            base["vendor"] = dict(self.vendor)
        return base


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    """Everything the proxy needs besides the Gatekeeper itself."""

    upstream: str | None = None
    upstream_token: Secret | None = None
    upstream_timeout: float = 30.0
    clients: Mapping[str, ClientConfig] = field(default_factory=dict)  # by token SHA-256
    mapping: FieldMapping = field(default_factory=FieldMapping.default)
    #: Deciding rules whose bulk permit covers every student the endpoint returns.
    bulk_release_rules: frozenset[str] = frozenset({"FERPA-1", "FERPA-1V"})
    decision_workers: int = 4
    max_record_bytes: int = 4 * 1024 * 1024
    unauthenticated_audit_per_second: float = 5.0
    #: The ``[gatekeeper]`` section (Settings for gatekeeper.open), if the file has one.
    gatekeeper: Mapping[str, Any] | None = None
    source: Path | None = None

    def client_for(self, token: str) -> ClientConfig | None:
        return self.clients.get(hash_token(token))

    def upstream_base(self, override: str | None = None) -> str:
        """The upstream rostering service's base URL (``.../ims/oneroster/rostering/v1p2``).

        A URL with no path gets the standard OneRoster prefix.
        """
        url = override or self.upstream
        if not url:
            raise _error("no upstream: give --upstream or [proxy] upstream")
        if not re.match(r"https?://", url):
            raise _error(f"upstream must be an http(s) URL, not {url!r}")
        url = url.rstrip("/")
        _host, _, path = url.partition("://")[2].partition("/")
        if not path:
            url += ONEROSTER_PREFIX
        return url

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, source: Path | None = None) -> ProxyConfig:
        """Build and check a configuration from a parsed TOML document."""
        unknown = sorted(set(document) - _TOP_KEYS)
        if unknown:
            raise _error(f"unknown section(s) {unknown} (known: {sorted(_TOP_KEYS)})")
        proxy = _table(document, "proxy")
        bad = sorted(set(proxy) - _PROXY_KEYS)
        if bad:
            raise _error(f"[proxy]: unknown key(s) {bad}")
        token: Secret | None = None
        if "upstream_token_env" in proxy:
            name = _str(proxy["upstream_token_env"], "proxy.upstream_token_env")
            value = os.environ.get(name)
            if not value:
                raise _error(f"[proxy] upstream_token_env: ${name} is not set")
            token = Secret(value)
        elif "upstream_token" in proxy:
            token = Secret(_str(proxy["upstream_token"], "proxy.upstream_token"))
        clients: dict[str, ClientConfig] = {}
        for name, table in _table(document, "clients").items():
            digest, client = _client(name, table)
            if digest in clients:
                raise _error(f"clients.{name}: same token as clients.{clients[digest].name}")
            clients[digest] = client
        fields = _table(document, "fields")
        structural = _table(document, "structural")
        try:
            mapping = FieldMapping.default().extended(
                {kind: _flatten(table, f"fields.{kind}") for kind, table in fields.items()},
                {kind: _str_list(v, f"structural.{kind}") for kind, v in structural.items()},
            )
        except ValueError as exc:
            raise _error(str(exc)) from exc
        gatekeeper = document.get("gatekeeper")
        if gatekeeper is not None and not isinstance(gatekeeper, Mapping):
            raise _error("[gatekeeper] must be a table")
        try:
            config = cls(
                upstream=_opt_str(proxy.get("upstream"), "proxy.upstream"),
                upstream_token=token,
                upstream_timeout=float(proxy.get("upstream_timeout", 30.0)),
                clients=clients,
                mapping=mapping,
                bulk_release_rules=frozenset(
                    _str_list(
                        proxy.get("bulk_release_rules", ["FERPA-1", "FERPA-1V"]),
                        "proxy.bulk_release_rules",
                    )
                ),
                decision_workers=int(proxy.get("decision_workers", 4)),
                max_record_bytes=int(proxy.get("max_record_bytes", 4 * 1024 * 1024)),
                unauthenticated_audit_per_second=float(
                    proxy.get("unauthenticated_audit_per_second", 5.0)
                ),
                gatekeeper=gatekeeper,
                source=source,
            )
        except (TypeError, ValueError) as exc:
            raise _error(f"[proxy]: {exc}") from exc
        if not 0 < config.upstream_timeout <= 600:
            raise _error("[proxy] upstream_timeout must be between 0 and 600 seconds")
        if not 1 <= config.decision_workers <= 64:
            raise _error("[proxy] decision_workers must be between 1 and 64")
        return config


def load_proxy_config(path: str | Path) -> ProxyConfig:
    """Read and check a proxy configuration file (TOML)."""
    location = Path(path)
    try:
        document = tomllib.loads(location.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _error(f"cannot read proxy configuration {location}: {exc}") from exc
    try:
        return ProxyConfig.from_dict(document, source=location)
    except GatekeeperError as exc:
        raise _error(f"{location}: {exc}") from exc


# --------------------------------------------------------------------------- parts


def _table(document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, Mapping):
        raise _error(f"[{key}] must be a table")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _error(f"{where} must be a non-empty string")
    return value


def _opt_str(value: object, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _str_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _error(f"{where} must be a list of strings")
    return list(value)


def _flatten(table: object, where: str, prefix: str = "") -> dict[str, str]:
    """``[fields.user]`` with dotted keys, quoted or as sub-tables, as path -> catalog field."""
    if not isinstance(table, Mapping):
        raise _error(f"{where} must be a table")
    out: dict[str, str] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, where, path + "."))
        elif isinstance(value, str) and value:
            out[path] = value
        else:
            raise _error(f"{where}.{path} must name a catalog field")
    return out


def _client(name: str, table: object) -> tuple[str, ClientConfig]:
    where = f"clients.{name}"
    if not isinstance(table, Mapping):
        raise _error(f"[{where}] must be a table")
    bad = sorted(set(table) - _CLIENT_KEYS)
    if bad:
        raise _error(f"[{where}]: unknown key(s) {bad}")
    if "token_sha256" in table and "token_env" in table:
        raise _error(f"[{where}]: give token_sha256 or token_env, not both")
    if "token_sha256" in table:
        digest = _str(table["token_sha256"], f"{where}.token_sha256").lower()
        if not _HEX64.fullmatch(digest):
            raise _error(f"{where}.token_sha256 must be 64 hex digits (a SHA-256)")
    elif "token_env" in table:
        env = _str(table["token_env"], f"{where}.token_env")
        token = os.environ.get(env)
        if not token:
            raise _error(f"{where}.token_env: ${env} is not set")
        digest = hash_token(token)
    else:
        raise _error(f"[{where}]: needs token_sha256 or token_env")
    requester = table.get("requester")
    if not isinstance(requester, Mapping):
        raise _error(f"[{where}.requester] is required")
    bad = sorted(set(requester) - _REQUESTER_KEYS)
    if bad:
        raise _error(f"{where}.requester: unknown key(s) {bad}")
    vendor = table.get("vendor")
    if vendor is not None:
        if not isinstance(vendor, Mapping):
            raise _error(f"[{where}.vendor] must be a table")
        bad = sorted(set(vendor) - _VENDOR_KEYS)
        if bad:
            raise _error(f"{where}.vendor: unknown key(s) {bad}")
    request_fields = table.get("request_fields")
    client = ClientConfig(
        name=name,
        requester=dict(requester),
        purpose=_str(table.get("purpose"), f"{where}.purpose"),
        on_behalf_of=_opt_str(table.get("on_behalf_of"), f"{where}.on_behalf_of"),
        task_force=tuple(_str_list(table.get("task_force", []), f"{where}.task_force")),
        vendor=None if vendor is None else dict(vendor),
        request_fields=None
        if request_fields is None
        else tuple(_str_list(request_fields, f"{where}.request_fields")),
        classes=frozenset(_str_list(table.get("classes", []), f"{where}.classes")),
        schools=frozenset(_str_list(table.get("schools", []), f"{where}.schools")),
    )
    # The same strict parser as every request: a typo here fails at start-up.
    try:
        parse_request({**client.request_base(), "student": {"id": "x"}, "fields": ["name"]})
    except RequestError as exc:
        raise _error(f"[{where}]: {exc}") from exc
    return digest, client
