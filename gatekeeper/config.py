"""Settings for :func:`gatekeeper.open`, from keywords, a TOML file and the environment.

Precedence: explicit keyword > configuration file > environment > default.

    [gatekeeper]
    engine = "opa"                       # or "embedded" (default), or "wasm"
    opa_url = "http://127.0.0.1:8181"
    opa_timeout = 0.25                   # seconds
    # embedded_timeout = 1.0             # seconds a decision may take on the embedded engine
    # embedded_workers = 2               # decisions evaluated at once (default: the cores, >= 2)
    timezone = "America/Los_Angeles"
    policy_dir = "/etc/gatekeeper/policies"
    shadow_policy_dir = "/etc/gatekeeper/policies-next"   # shadow mode: a candidate pack
    audit_url = "postgresql://gatekeeper@db.internal/gatekeeper"   # default: SQLite
    origin = "audit.example-district.org/gatekeeper"
    key_path = "/etc/gatekeeper/log-key.pem"
    # or, instead of key_path, a signing process that holds the key (this process never does):
    # signer_command = ["python3", "-m", "gatekeeper.audit.signer_process",
    #                   "--key", "/etc/gk-signer/log-key.pem"]
    # signer_timeout = 1.0               # seconds one signature may take
    audit_timeout = 2.0                  # seconds an append (and SQLite's write lock) may take
    clock_tolerance = 60.0               # seconds the wall clock may jump / lag the log
    clock_settle = 600.0                 # seconds a new clock offset must hold to be accepted
    max_as_of_skew = 300.0               # as_of further from now: decided as of now (false: off)
    audit_policy_input = true            # keep each decision's policy input (policy replay)

    [gatekeeper.obligations]             # routes for the obligation dispatchers
    [[gatekeeper.obligations.webhook]]   # (see gatekeeper/obligations/_routing.py
    codes = ["NOTIFY_LEGAL"]             #  and docs/obligations.md)
    url = "https://legal.example.org/hooks/gatekeeper"
    secret_env = "GATEKEEPER_LEGAL_WEBHOOK_SECRET"

The signing key's passphrase, when the key is encrypted, comes only from the
environment (``GATEKEEPER_KEY_PASSPHRASE``), never from a file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekeeper.errors import GatekeeperError
from gatekeeper.request import DEFAULT_TIMEZONE

if TYPE_CHECKING:
    from gatekeeper.obligations import ObligationSettings

__all__ = ["Settings", "default_policy_dir", "load_settings"]

ENGINES = ("embedded", "opa", "wasm")


def default_policy_dir() -> Path:
    """``$GATEKEEPER_POLICY_DIR``, else the ``policies/`` beside the package."""
    env = os.environ.get("GATEKEEPER_POLICY_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "policies"


#: Seconds a request's ``as_of`` may be from the current time, by default.
MAX_AS_OF_SKEW = 300.0


def as_of_skew(value: object, name: str = "max_as_of_skew", *, text: bool = True) -> float | None:
    """A ``max_as_of_skew`` value checked: None or False (or, when ``text``,
    "off" and "false") for no check, else seconds above 0 and at most a year.
    ``name`` is what the error calls it (the setting, or the variable)."""
    if value is None or value is False:
        return None
    if isinstance(value, str) and text:
        if value.strip().lower() in {"off", "false"}:
            return None
        try:
            value = float(value)
        except ValueError:
            raise GatekeeperError(
                f"{name} must be a number of seconds, or off", reason="config"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GatekeeperError(
            f"{name} must be a number of seconds, or None/False for no check, not {value!r}",
            reason="config",
        )
    if not 0 < value <= 31_622_400:
        raise GatekeeperError(
            f"{name} must be between 0 and 31622400 seconds (a year), or false", reason="config"
        )
    return float(value)


def default_max_as_of_skew() -> float | None:
    """``$GATEKEEPER_MAX_AS_OF_SKEW`` ("off" or "false": no check; seconds), else
    :data:`MAX_AS_OF_SKEW`: the default of :class:`Settings` and of
    :class:`~gatekeeper.Gatekeeper` alike."""
    value = os.environ.get("GATEKEEPER_MAX_AS_OF_SKEW", "").strip()
    if not value:
        return MAX_AS_OF_SKEW
    return as_of_skew(value, "GATEKEEPER_MAX_AS_OF_SKEW")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    data_dir: Path = Path(".gatekeeper")
    engine: str = "embedded"
    opa_url: str = "http://127.0.0.1:8181"
    opa_timeout: float = 0.25
    #: The wasm engine interrupts a decision that runs longer (seconds).
    wasm_timeout: float = 0.25
    #: The embedded engine denies a decision that runs longer (seconds).
    embedded_timeout: float = 1.0
    #: Decisions the embedded engine evaluates at once (None: the cores, at
    #: least 2); more wait for a free worker within their deadline.
    embedded_workers: int | None = None
    timezone: str = DEFAULT_TIMEZONE
    policy_dir: Path | None = None
    #: None: SQLite in the data directory; or a postgresql:// URL.
    audit_url: str | None = None
    audit_timeout: float = 2.0
    #: A request whose as_of is further than this from now (seconds) is decided
    #: as of now (its as_of kept in the entry as as_of_claimed): a caller may not
    #: decide "as of" another day, which would revive an expired warrant or
    #: subpoena. ``false`` (None) turns the check off, for replaying past
    #: scenarios (the public cases, the examples) only.
    #: Default: :func:`default_max_as_of_skew`.
    max_as_of_skew: float | None = field(default_factory=lambda: default_max_as_of_skew())
    #: The log's origin (C2SP); default: generated once per data directory.
    origin: str | None = None
    #: A configured signing key (PEM); default: generated in <data_dir>/keys.
    key_path: Path | None = None
    #: An external signer instead of key_path: a command started as a long-lived
    #: child speaking the line protocol of gatekeeper/audit/command_signer.py.
    signer_command: tuple[str, ...] | None = None
    #: Seconds one signature by the external signer may take (then: a deny).
    signer_timeout: float = 1.0
    #: Obligation routes and retry settings (``[gatekeeper.obligations]``); None: none.
    obligations: ObligationSettings | None = None
    #: Shadow mode: a candidate pack evaluated beside the live one on every
    #: request, differences on the operational log, never deciding (None: off).
    shadow_policy_dir: Path | None = None
    #: Clock sanity: decisions deny (``clock_jump``) while the wall clock is more
    #: than this many seconds from its monotonic anchor, and (``clock_behind_log``)
    #: while it is that far behind the audit log's latest entry.
    clock_tolerance: float = 60.0
    #: A new wall-clock offset that held this long (seconds) is accepted as a
    #: correction (``clock_reanchored`` warning); clock_behind_log still applies.
    clock_settle: float = 600.0
    #: Keep each decision's policy input in its audit entry, so that ``policy
    #: replay`` can re-decide it; false keeps the least data (no student facts
    #: in the append-only log) and those decisions cannot be replayed.
    audit_policy_input: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.audit_policy_input, bool):
            raise GatekeeperError("audit_policy_input must be true or false", reason="config")
        if self.engine not in ENGINES:
            raise GatekeeperError(
                f"engine must be one of {ENGINES}, not {self.engine!r}", reason="config"
            )
        if not (0 < self.opa_timeout <= 60):
            raise GatekeeperError("opa_timeout must be between 0 and 60 seconds", reason="config")
        if not (0 < self.wasm_timeout <= 60):
            raise GatekeeperError("wasm_timeout must be between 0 and 60 seconds", reason="config")
        if not (0 < self.embedded_timeout <= 60):
            raise GatekeeperError(
                "embedded_timeout must be between 0 and 60 seconds", reason="config"
            )
        if self.embedded_workers is not None and (
            isinstance(self.embedded_workers, bool)
            or not isinstance(self.embedded_workers, int)
            or not 1 <= self.embedded_workers <= 256
        ):
            raise GatekeeperError(
                "embedded_workers must be a whole number from 1 to 256", reason="config"
            )
        as_of_skew(self.max_as_of_skew, text=False)
        if not (0 < self.audit_timeout <= 600):
            raise GatekeeperError(
                "audit_timeout must be between 0 and 600 seconds", reason="config"
            )
        if not (0 < self.signer_timeout <= 60):
            raise GatekeeperError(
                "signer_timeout must be between 0 and 60 seconds", reason="config"
            )
        if self.signer_command is not None:
            if not self.signer_command or not all(
                isinstance(part, str) and part for part in self.signer_command
            ):
                raise GatekeeperError(
                    "signer_command must be a non-empty list of strings", reason="config"
                )
            if self.key_path is not None:
                raise GatekeeperError(
                    "key_path and signer_command exclude each other", reason="config"
                )
        if not (0 < self.clock_tolerance <= 86400):
            raise GatekeeperError(
                "clock_tolerance must be between 0 and 86400 seconds", reason="config"
            )
        if not (0 <= self.clock_settle <= 7 * 86400):
            raise GatekeeperError(
                "clock_settle must be between 0 and 604800 seconds", reason="config"
            )


def _from_file(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise GatekeeperError(f"cannot read configuration {path}: {exc}", reason="config") from exc
    section = document.get("gatekeeper", document)
    known = {f.name for f in fields(Settings)} - {"data_dir"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise GatekeeperError(f"{path}: unknown setting(s) {unknown}", reason="config")
    return dict(section)


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Merge defaults, environment, ``config`` (TOML) and keyword overrides."""
    values: dict[str, Any] = {}
    env = {
        "engine": os.environ.get("GATEKEEPER_ENGINE"),
        "opa_url": os.environ.get("GATEKEEPER_OPA_URL"),
        "timezone": os.environ.get("GATEKEEPER_TIMEZONE"),
        "data_dir": os.environ.get("GATEKEEPER_DATA_DIR"),
        "audit_url": os.environ.get("GATEKEEPER_AUDIT_URL"),
    }
    # GATEKEEPER_MAX_AS_OF_SKEW is read by the Settings default itself
    # (default_max_as_of_skew), as Gatekeeper(...) reads it.
    values.update({k: v for k, v in env.items() if v})
    if config is not None:
        values.update(_from_file(Path(config)))
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("data_dir", "policy_dir", "key_path", "shadow_policy_dir"):
        if key in values:
            values[key] = Path(values[key])
    if "max_as_of_skew" in values:  # false or "off": replaying past scenarios, no check
        values["max_as_of_skew"] = as_of_skew(values["max_as_of_skew"])
    seconds = (
        "opa_timeout",
        "wasm_timeout",
        "embedded_timeout",
        "audit_timeout",
        "clock_tolerance",
        "clock_settle",
        "signer_timeout",
    )
    for key in seconds:
        if key in values and values[key] is not None:
            try:
                if isinstance(values[key], bool):
                    raise TypeError(key)
                values[key] = float(values[key])
            except (TypeError, ValueError) as exc:
                raise GatekeeperError(
                    f"{key} must be a number of seconds", reason="config"
                ) from exc
    command = values.get("signer_command")
    if command is not None:
        if isinstance(command, str) or not isinstance(command, list | tuple):
            raise GatekeeperError(
                'signer_command must be a list of strings, e.g. ["/path/to/signer", "arg"]',
                reason="config",
            )
        values["signer_command"] = tuple(command)
    if values.get("obligations") is not None:
        from gatekeeper.obligations import parse_obligation_settings

        values["obligations"] = parse_obligation_settings(values["obligations"])
    try:
        return replace(Settings(), **values)
    except TypeError as exc:
        raise GatekeeperError(f"bad settings: {exc}", reason="config") from exc
