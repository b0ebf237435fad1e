"""``gatekeeper obligations list | ack | dispatch``.

gatekeeper obligations list --pending            # what is still owed
gatekeeper obligations list --decision ID --json
gatekeeper obligations ack 17 --by "J. Doe, records office" --note "parent reached by phone"
gatekeeper obligations dispatch --once           # deliver what is due, then exit
gatekeeper obligations dispatch                  # keep delivering (SIGTERM stops it)
"""

from __future__ import annotations

import argparse
import getpass
import json
import signal
import sys
import threading
from typing import Any

from gatekeeper.audit.outbox import ObligationRecord
from gatekeeper.config import load_settings
from gatekeeper.errors import GatekeeperError

__all__ = ["add_commands"]


def _settings(args: argparse.Namespace) -> Any:
    return load_settings(args.config, data_dir=args.data_dir)


def _render(rows: list[ObligationRecord]) -> str:
    header = ("id", "status", "code", "decision", "entry", "tries", "detail")
    lines = [header]
    for r in rows:
        if r.status == "acknowledged":
            detail = f"by {r.acked_by}" + (
                f" (entry {r.ack_entry_index})" if r.ack_entry_index is not None else ""
            )
        elif r.status == "pending" and r.attempts:
            detail = f"next {r.next_attempt_at:%Y-%m-%dT%H:%M:%SZ}: {r.last_error or ''}"
        elif r.status == "failed":
            detail = r.last_error or ""
        else:
            detail = ""
        lines.append(
            (
                str(r.id),
                r.status,
                ("⛔ " if r.blocking else "") + r.code,
                r.decision_id[:12],
                str(r.entry_index),
                str(r.attempts),
                detail[:60],
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in lines
    )


def _cmd_list(args: argparse.Namespace) -> int:
    from gatekeeper import open_existing_audit_log
    from gatekeeper.obligations import Obligations

    with open_existing_audit_log(_settings(args)) as log:
        rows = Obligations(log).list(
            pending=args.pending, decision_id=args.decision, limit=args.limit
        )
    if args.json:
        for row in rows:
            sys.stdout.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(_render(rows))
    return 0


def _cmd_ack(args: argparse.Namespace) -> int:
    from gatekeeper import open_existing_audit_log
    from gatekeeper.obligations import Obligations

    by = args.by
    if by is None:
        try:
            by = getpass.getuser()
        except Exception as exc:  # no login name (a container): ask for one
            raise GatekeeperError(
                "say who acknowledges with --by NAME", reason="obligation_ack_invalid"
            ) from exc
    with open_existing_audit_log(_settings(args)) as log:
        row = Obligations(log).ack(args.id, by=by, note=args.note)
    print(
        f"acknowledged obligation {row.id} ({row.code}) of decision {row.decision_id} "
        f"by {row.acked_by}: audit entry {row.ack_entry_index}"
    )
    return 0


def _cmd_dispatch(args: argparse.Namespace) -> int:
    from gatekeeper import open_existing_audit_log
    from gatekeeper.obligations import (
        DispatchRunner,
        ObligationSettings,
        RetryPolicy,
        dispatchers_for,
    )

    settings = _settings(args)
    config = settings.obligations or ObligationSettings()
    if not config.routes:
        raise GatekeeperError(
            "no obligation routes are configured ([[gatekeeper.obligations.webhook]] or "
            "[[gatekeeper.obligations.email]] in the --config file)",
            reason="config",
        )
    routes = dispatchers_for(config)
    with open_existing_audit_log(settings) as log:
        runner = DispatchRunner(
            log.outbox,
            routes,
            origin=log.origin,
            policy=RetryPolicy(config.max_attempts, config.backoff_base, config.backoff_max),
            lease=config.lease,
            batch_size=config.batch_size,
        )
        if args.once:
            print(runner.run_once().summary())
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(
            f"dispatching {', '.join(sorted(routes))} every {config.poll_interval:g} s",
            file=sys.stderr,
        )
        runner.run(stop, poll_interval=config.poll_interval)
    return 0


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``obligations list|ack|dispatch`` to the ``gatekeeper`` parser."""
    group = sub.add_parser(
        "obligations", parents=[common], help="the obligations outbox: list, ack, dispatch"
    ).add_subparsers(dest="obligations_command", required=True)

    listing = group.add_parser("list", parents=[common], help="outbox rows, oldest first")
    listing.add_argument(
        "--pending",
        action="store_true",
        help="only those still owed (blocking: until acknowledged; others: until delivered)",
    )
    listing.add_argument("--decision", default=None, help="only this decision's obligations")
    listing.add_argument("--limit", type=int, default=None)
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    listing.set_defaults(func=_cmd_list)

    ack = group.add_parser(
        "ack", parents=[common], help="acknowledge an obligation (a signed audit entry)"
    )
    ack.add_argument("id", type=int, help="the obligation id (see `obligations list`)")
    ack.add_argument("--by", default=None, help="who acknowledges (default: the login name)")
    ack.add_argument("--note", default=None, help="kept in the audit log: no record values")
    ack.set_defaults(func=_cmd_ack)

    dispatch = group.add_parser(
        "dispatch", parents=[common], help="deliver pending obligations (webhook, e-mail)"
    )
    dispatch.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
    dispatch.set_defaults(func=_cmd_dispatch)
