"""``gatekeeper ui``: the read-only web view of the audit log.

gatekeeper ui                                   # http://127.0.0.1:8900/ (loopback, no sign-in)
gatekeeper ui --port 0                          # an ephemeral port
GATEKEEPER_UI_PASSWORD=... gatekeeper ui --host 0.0.0.0 --secure-cookie
gatekeeper ui --hash-password > ui-password     # then: gatekeeper ui --password-file ui-password
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from gatekeeper.config import load_settings

__all__ = ["add_commands"]


def _hash_password() -> int:
    from gatekeeper.ui._auth import PasswordHash, UiError

    if sys.stdin.isatty():
        password = getpass.getpass("new password for the web view: ")
        if getpass.getpass("again: ") != password:
            raise UiError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        raise UiError("a password for the web view must be at least 12 characters long")
    print(PasswordHash.create(password))
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from gatekeeper.ui import LogView, UiConfig, UiError, load_password, serve_ui

    if args.hash_password:
        return _hash_password()
    # Checked before anything is opened: off loopback, no password, no start.
    config = UiConfig.for_host(
        args.host, load_password(args.password_file), secure_cookie=args.secure_cookie
    )
    settings = load_settings(
        args.config, data_dir=args.data_dir, timezone=args.timezone, policy_dir=args.policy_dir
    )
    if settings.audit_url is None and not (settings.data_dir / "audit.sqlite").exists():
        # Opening would create a new log: the view only reads.
        raise UiError(f"no audit log in {settings.data_dir}")
    if config.sign_in:
        print(
            f"gatekeeper: the web view binds to {args.host}, beyond loopback: sign-in "
            "required. Serve it behind https (the session cookie is Secure on https "
            "requests, or always with --secure-cookie).",
            file=sys.stderr,
        )
    view = LogView.open(settings, vkeys=args.vkey or None, signatures=args.signatures)
    try:
        status = view.verify()
        verdict = "verified" if status.ok else "DID NOT VERIFY"
        print(
            f"gatekeeper: audit log {verdict}: {status.summary}; {status.checkpoints} "
            f"checkpoints; signatures: {status.signature_mode} "
            f"({status.signatures_checked} checked)",
            file=sys.stderr,
        )
        for problem in status.problems[:10]:
            print(f"gatekeeper: {problem}", file=sys.stderr)

        def ready(url: str) -> None:
            where = "sign-in required" if config.sign_in else "loopback only, no sign-in"
            print(f"serving the read-only audit log view at {url}/ ({where})", flush=True)

        try:
            serve_ui(view, config, host=args.host, port=args.port, ready=ready)
        except ImportError as exc:
            raise UiError(
                f"gatekeeper ui needs Starlette, uvicorn, jinja2 and matplotlib "
                f"(pip install 'gatekeeper[ui]'): {exc}"
            ) from exc
    finally:
        view.close()
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``ui`` to the ``gatekeeper`` parser."""
    ui = sub.add_parser(
        "ui",
        parents=[common],
        help="a read-only web view of the audit log for compliance officers",
    )
    ui.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback)")
    ui.add_argument("--port", type=int, default=8900, help="default 8900; 0: an ephemeral port")
    ui.add_argument(
        "--password-file",
        default=None,
        help="a file holding the sign-in password's hash (from --hash-password); "
        "or set $GATEKEEPER_UI_PASSWORD_FILE, or $GATEKEEPER_UI_PASSWORD",
    )
    ui.add_argument(
        "--secure-cookie",
        action="store_true",
        help="mark the session cookie Secure even on http requests (TLS ends elsewhere)",
    )
    ui.add_argument(
        "--signatures",
        choices=("sample", "all"),
        default="sample",
        help="entry signatures the verifier checks: a 1%% sample (default) or all",
    )
    ui.add_argument(
        "--vkey",
        action="append",
        default=[],
        help="a verifier key kept outside the data directory, trusted instead of its "
        "keyring (repeat for rotated keys)",
    )
    ui.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password (standard input, or prompted) and print its scrypt hash "
        "for --password-file; then exit",
    )
    ui.set_defaults(func=_cmd_ui)
