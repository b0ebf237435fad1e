"""The ``gatekeeper`` command.

    gatekeeper decide request.json            # print the Decision JSON
    gatekeeper decide - < request.json        # from standard input
    gatekeeper decide --engine opa --opa-url http://127.0.0.1:8181 request.json

Exit status of ``decide`` (CONTRACT.md): 0 when a decision was made, whatever
it is; 2 when the request does not parse or validate (one line on standard
error names the problem); 1 for any other failure (engine down, ...). In
every failure case the printed decision is a deny and nothing is disclosed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gatekeeper
from gatekeeper.errors import GatekeeperError, RequestError
from gatekeeper.request import MAX_REQUEST_BYTES

__all__ = ["main"]


def _read_request(source: str) -> bytes:
    if source == "-":
        data = sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1)
    else:
        path = Path(source)
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_REQUEST_BYTES + 1)
        except OSError as exc:
            raise GatekeeperError(f"cannot read {source}: {exc.strerror}", reason="io") from exc
    return data


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def _cmd_decide(args: argparse.Namespace) -> int:
    gk = gatekeeper.open(
        data_dir=args.data_dir,
        engine=args.engine,
        opa_url=args.opa_url,
        timezone=args.timezone,
        policy_dir=args.policy_dir,
        config=args.config,
    )
    with gk:
        raw = _read_request(args.request)
        try:
            request = gk.parse(raw)
        except RequestError as exc:
            print(f"gatekeeper: invalid request: {exc}", file=sys.stderr)
            _print_json(gk.decide(raw).to_dict())
            return 2
        decision = gk.decide(request)
        _print_json(decision.to_dict())
        if decision.reason is not None:
            print(f"gatekeeper: no policy decision ({decision.reason}); denied", file=sys.stderr)
            return 1
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekeeper",
        description="Records-access gatekeeper for student-information systems.",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="data directory (default ./.gatekeeper or $GATEKEEPER_DATA_DIR)",
    )
    parser.add_argument("--config", default=None, help="configuration file (TOML)")
    parser.add_argument("--policy-dir", default=None, help="policy pack directory")
    parser.add_argument("--timezone", default=None, help="district time zone")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="operational log lines (JSON) on standard error; -vv for debug",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    decide = sub.add_parser("decide", help="decide one AccessRequest and print the Decision")
    decide.add_argument("request", nargs="?", default="-", help="request JSON file, or - for stdin")
    decide.add_argument("--engine", choices=("embedded", "opa"), default=None)
    decide.add_argument("--opa-url", default=None)
    decide.set_defaults(func=_cmd_decide)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    levels = {0: logging.CRITICAL, 1: logging.INFO}
    logging.basicConfig(stream=sys.stderr, format="%(message)s")
    logging.getLogger("gatekeeper").setLevel(levels.get(args.verbose, logging.DEBUG))
    try:
        status: int = args.func(args)
    except GatekeeperError as exc:
        print(f"gatekeeper: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
