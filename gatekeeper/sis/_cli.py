"""``gatekeeper demo-sis``: serve the demo SIS (OneRoster 1.2, synthetic students).

gatekeeper demo-sis                              # 3000 students on 127.0.0.1:8600
gatekeeper demo-sis --port 0 --students 500      # an ephemeral port (printed)
DEMO_SIS_TOKEN=secret gatekeeper demo-sis        # require that bearer token
"""

from __future__ import annotations

import argparse
import os

from gatekeeper.errors import GatekeeperError

__all__ = ["add_commands"]


def _cmd_demo_sis(args: argparse.Namespace) -> int:
    try:
        from gatekeeper.sis.demo import PREFIX, run_demo_sis
    except ImportError as exc:
        raise GatekeeperError(
            f"the demo SIS needs the proxy extra (pip install 'gatekeeper[proxy]'): {exc}"
        ) from exc
    token = (os.environ.get(args.token_env) or None) if args.token_env else None

    def ready(url: str) -> None:
        guarded = f"bearer token from ${args.token_env}" if token else "no authentication"
        print(
            f"demo-sis: {args.students} synthetic students at {url}{PREFIX} ({guarded})",
            flush=True,
        )

    run_demo_sis(
        db=args.db,
        students=args.students,
        seed=args.seed,
        host=args.host,
        port=args.port,
        token=token,
        ready=ready,
    )
    return 0


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    """Register ``demo-sis`` on the ``gatekeeper`` command's subparsers."""
    from gatekeeper.sis.data import DEFAULT_SEED, DEFAULT_STUDENTS

    demo = sub.add_parser(
        "demo-sis",
        parents=[common],
        help="serve a demo SIS: a OneRoster 1.2 API over synthetic students",
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8600, help="0: an ephemeral port")
    demo.add_argument(
        "--db", default=None, help="SQLite file (reused when it matches; default: temporary)"
    )
    demo.add_argument("--students", type=int, default=DEFAULT_STUDENTS)
    demo.add_argument("--seed", type=int, default=DEFAULT_SEED)
    demo.add_argument(
        "--token-env",
        default="DEMO_SIS_TOKEN",
        help="environment variable holding the bearer token to require (unset: none)",
    )
    demo.set_defaults(func=_cmd_demo_sis)
