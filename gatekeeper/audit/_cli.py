"""``gatekeeper audit witness`` and ``gatekeeper audit serve``.

gatekeeper audit witness --state DIR [--vkey VKEY] SOURCE   # exit 1 on rollback, fork, bad sig
gatekeeper audit serve [--host 127.0.0.1] [--port 8800] [--entries|--no-entries]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gatekeeper.config import load_settings
from gatekeeper.errors import GatekeeperError

__all__ = ["add_commands"]


def _cmd_witness(args: argparse.Namespace) -> int:
    from gatekeeper.audit.witness import StoreSource, WitnessState, open_source, witness

    vkeys = list(args.vkey)
    if args.vkey_file:
        try:
            text = Path(args.vkey_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise GatekeeperError(f"cannot read {args.vkey_file}: {exc.strerror}") from exc
        vkeys.extend(line.strip() for line in text.splitlines() if line.strip())
    source = open_source(args.source)
    try:
        report = witness(source, WitnessState(args.state), vkeys=vkeys)
    finally:
        if isinstance(source, StoreSource):
            source.close()
    if report.ok:
        print(report.summary())
        return 0
    print(f"gatekeeper: WITNESS ALERT: {report.summary()}", file=sys.stderr)
    return 1


def _cmd_serve(args: argparse.Namespace) -> int:
    from gatekeeper.audit.readonly import open_readonly
    from gatekeeper.audit.serve import TileReader, is_loopback, run_server

    settings = load_settings(args.config, data_dir=args.data_dir)
    entries = args.entries if args.entries is not None else is_loopback(args.host)
    if entries and not is_loopback(args.host):
        print(
            "gatekeeper: warning: serving the entries (student and requester ids, policy "
            f"inputs) on {args.host}, beyond loopback",
            file=sys.stderr,
        )
    store = open_readonly(settings.data_dir, settings.audit_url)
    reader = TileReader(store, entries=entries)

    def ready(url: str) -> None:
        print(
            f"serving the audit log as C2SP tlog-tiles at {url}/ "
            f"(checkpoint size {reader.size()}; entries {'on' if entries else 'off'})",
            flush=True,
        )

    try:
        run_server(reader, host=args.host, port=args.port, ready=ready)
    except ImportError as exc:
        raise GatekeeperError(
            f"audit serve needs Starlette and uvicorn (pip install 'gatekeeper[proxy]'): {exc}"
        ) from exc
    finally:
        store.close()
    return 0


def add_commands(
    audit: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    """Register ``witness`` and ``serve`` on the ``gatekeeper audit`` subparsers."""
    witness = audit.add_parser(
        "witness",
        parents=[common],
        help="check a log's latest checkpoint against the last one seen (rollback, fork)",
    )
    witness.add_argument(
        "source", help="an HTTP(S) URL of a tlog-tiles log, an export directory or a data directory"
    )
    witness.add_argument(
        "--state", required=True, help="the witness's state directory (pinned key, checkpoints)"
    )
    witness.add_argument(
        "--vkey",
        action="append",
        default=[],
        help="the log's verifier key (required on first use; then pinned in the state directory)",
    )
    witness.add_argument("--vkey-file", default=None, help="a file holding the verifier key(s)")
    witness.set_defaults(func=_cmd_witness)

    serve = audit.add_parser(
        "serve", parents=[common], help="serve the log read-only as C2SP tlog-tiles over HTTP"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8800, help="0: an ephemeral port")
    serve.add_argument(
        "--entries",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the entry bundles too (default: only when bound to loopback)",
    )
    serve.set_defaults(func=_cmd_serve)
