"""gatekeeper: a records-access gatekeeper for student-information systems.

Every lookup of a student's record is decided by a Rego policy pack; an
immigration-related disclosure without verified legal compulsion is refused;
every failure denies.

    >>> import gatekeeper
    >>> gk = gatekeeper.open(data_dir="/tmp/gk-doctest")        # embedded engine (regopy)
    >>> decision = gk.decide({
    ...     "channel": "internal",
    ...     "requester": {"id": "E1", "kind": "district_staff",
    ...                   "role": "teacher_of_record", "identity_verified": True},
    ...     "purpose": "educational", "student": {"id": "S1", "age": 9},
    ...     "fields": ["grades", "attendance"]})
    >>> decision.to_dict()["decision"], decision.allowed_fields
    ('permit', ('grades', 'attendance'))
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from gatekeeper.audit.log import AuditLog
from gatekeeper.config import Settings, default_policy_dir, load_settings
from gatekeeper.decision import Decision, Effect
from gatekeeper.engines import EmbeddedEngine, OpaServerEngine, PolicyEngine, load_pack
from gatekeeper.errors import (
    EngineError,
    EngineTimeout,
    GatekeeperError,
    PolicyError,
    RequestError,
    RevisionMismatch,
)
from gatekeeper.guard import AccessDenied, Gatekeeper, Grant, ReleaseHeld
from gatekeeper.redact import Redactor
from gatekeeper.request import AccessRequest, parse_request
from gatekeeper.source import GuardedSource, InMemorySource, RecordSource, Roster, SourceError

__all__ = [
    "AccessDenied",
    "AccessRequest",
    "Decision",
    "Effect",
    "EngineError",
    "EngineTimeout",
    "Gatekeeper",
    "GatekeeperError",
    "Grant",
    "GuardedSource",
    "InMemorySource",
    "PolicyError",
    "RecordSource",
    "Redactor",
    "ReleaseHeld",
    "RequestError",
    "RevisionMismatch",
    "Roster",
    "Settings",
    "SourceError",
    "open",
    "parse_request",
]


def open(
    data_dir: str | Path | None = None,
    *,
    engine: str | None = None,
    opa_url: str | None = None,
    opa_timeout: float | None = None,
    timezone: str | None = None,
    policy_dir: str | Path | None = None,
    audit_url: str | None = None,
    config: str | Path | None = None,
) -> Gatekeeper:
    """Open a Gatekeeper with the embedded defaults, or as configured.

    ``engine="wasm"`` decides in-process with the pack compiled to WebAssembly
    by OPA (needs the ``opa`` binary when opening, and the ``wasm`` extra).
    ``engine="opa"`` decides through the OPA server at ``opa_url``, which must
    serve the same policy pack (checked by revision). Every decision is
    written to the signed audit log before it is returned: SQLite in
    ``data_dir`` by default, or PostgreSQL at ``audit_url``. Settings not given here
    come from ``config`` (TOML), then ``GATEKEEPER_*`` environment variables.
    """
    settings = load_settings(
        config,
        data_dir=data_dir,
        engine=engine,
        opa_url=opa_url,
        opa_timeout=opa_timeout,
        timezone=timezone,
        policy_dir=policy_dir,
        audit_url=audit_url,
    )
    return open_with(settings)


def open_with(settings: Settings) -> Gatekeeper:
    """Open a Gatekeeper from a :class:`Settings` object."""
    pack = load_pack(settings.policy_dir or default_policy_dir())
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise GatekeeperError(
            f"cannot create data directory {settings.data_dir}: {exc}", reason="config"
        ) from exc
    chosen: PolicyEngine
    if settings.engine == "opa":
        chosen = OpaServerEngine(pack, url=settings.opa_url, timeout=settings.opa_timeout)
    elif settings.engine == "wasm":
        from gatekeeper.engines.wasm import WasmEngine

        chosen = WasmEngine(pack, timeout=settings.wasm_timeout)
    else:
        chosen = EmbeddedEngine(
            pack, timeout=settings.embedded_timeout, max_workers=settings.embedded_workers
        )
    if settings.shadow_policy_dir is not None:
        from gatekeeper.engines.shadow import ShadowEngine

        # The candidate is bounded by the shadow's own timeout, not the live deadline.
        candidate = EmbeddedEngine(load_pack(settings.shadow_policy_dir), timeout=60.0)
        chosen = ShadowEngine(chosen, candidate)
    from gatekeeper.obligations import ObligationSettings, blocking_codes

    obligations = settings.obligations or ObligationSettings()
    return Gatekeeper(
        engine=chosen,
        audit=open_audit_log(settings),
        timezone=settings.timezone,
        max_as_of_skew=settings.max_as_of_skew,
        blocking_obligations=blocking_codes(pack.data),
        release_max_age=obligations.release_max_age,
        clock_tolerance=settings.clock_tolerance,
        clock_settle=settings.clock_settle,
        keep_policy_input=settings.audit_policy_input,
    )


def open_existing_audit_log(settings: Settings) -> AuditLog:
    """:func:`open_audit_log`, for tools that read (or rotate) a log: it must
    exist. Opening a data directory without one would create a new, empty log
    and a new signing key, and a report on it would say that all is well."""
    if settings.audit_url is None and not (settings.data_dir / "audit.sqlite").is_file():
        raise GatekeeperError(
            f"no audit log in {settings.data_dir} (no audit.sqlite there): "
            "give the data directory that holds it (--data-dir or --config)",
            reason="audit_store_missing",
        )
    return open_audit_log(settings)


def open_audit_log(settings: Settings) -> AuditLog:
    """The audit log the settings name (SQLite in the data directory by default)."""
    passphrase = os.environ.get("GATEKEEPER_KEY_PASSPHRASE")
    secret = passphrase.encode("utf-8") if passphrase else None
    origin = settings.origin
    if settings.audit_url:
        # Many nodes share one log: they must share its origin and signing key.
        if not origin or (settings.key_path is None and settings.signer_command is None):
            raise GatekeeperError(
                "a PostgreSQL audit log shared by several nodes needs a configured "
                "origin and key_path (create one with `gatekeeper audit keygen`), "
                "or an origin and signer_command",
                reason="config",
            )
    elif settings.signer_command is not None and not origin:
        from gatekeeper.audit.log import default_origin

        origin = default_origin(settings.data_dir)
    signer = None
    if settings.signer_command is not None:
        from gatekeeper.audit.command_signer import CommandSigner

        assert origin is not None
        signer = CommandSigner(
            settings.signer_command, name=origin, timeout=settings.signer_timeout
        )
        # Started now when it can be (a first decision need not wait for it);
        # one that cannot start denies decisions, not the open.
        with contextlib.suppress(GatekeeperError):
            signer.start()
    try:
        if settings.audit_url:
            from gatekeeper.audit.keys import KeyStore
            from gatekeeper.audit.postgres import PostgresStore

            assert origin is not None
            store = PostgresStore(settings.audit_url, lock_timeout=settings.audit_timeout)
            keys = KeyStore(
                settings.data_dir,
                origin=origin,
                passphrase=secret,
                key_path=settings.key_path,
                signer=signer,
            )
            return AuditLog(store, keys, timeout=settings.audit_timeout)
        return AuditLog.open_sqlite(
            settings.data_dir,
            origin=origin,
            passphrase=secret,
            key_path=settings.key_path,
            signer=signer,
            timeout=settings.audit_timeout,
        )
    except BaseException:
        if signer is not None:
            signer.close()
        raise
