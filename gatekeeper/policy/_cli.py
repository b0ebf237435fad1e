"""``gatekeeper policy test | check | replay``: the policy author's commands.

    gatekeeper policy test [--cases FILE]... [--engine embedded|opa|both]
    gatekeeper policy check
    gatekeeper policy replay --candidate DIR [--since DATE] [--json] [--fail-on-change]

The pack is ``--policy-dir`` (global or after the subcommand), else the
configured one, else ``policies/``. Exit status: 0 when everything passed
(test, check) or the replay ran; 1 on a failure, with the report on
standard output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gatekeeper.config import default_policy_dir, load_settings

__all__ = ["add_commands"]


def _policy_dir(args: argparse.Namespace) -> Path:
    if args.policy_dir:
        return Path(args.policy_dir)
    settings = load_settings(args.config, data_dir=args.data_dir)
    return settings.policy_dir or default_policy_dir()


def _cmd_test(args: argparse.Namespace) -> int:
    from gatekeeper.policy.testing import default_case_files, run_policy_tests

    directory = _policy_dir(args)
    files = [] if args.no_default_cases else default_case_files(directory)
    files.extend(Path(f) for f in args.cases)
    if not files:
        print("gatekeeper: no decision-table cases found; give --cases FILE", file=sys.stderr)
        return 1
    engines = {
        "both": ("embedded", "opa"),
        "all": ("embedded", "opa", "wasm"),
    }.get(args.engine, (args.engine,))
    report = run_policy_tests(directory, files, opa_bin=args.opa, engines=engines)
    print(report.render())
    return 0 if report.ok else 1


def _cmd_check(args: argparse.Namespace) -> int:
    from gatekeeper.policy.check import check_policies

    report = check_policies(_policy_dir(args), opa_bin=args.opa)
    print(report.render())
    return 0 if report.ok else 1


def _cmd_replay(args: argparse.Namespace) -> int:
    from gatekeeper.audit.readonly import open_readonly
    from gatekeeper.engines import EmbeddedEngine, load_pack
    from gatekeeper.policy.replay import replay

    settings = load_settings(args.config, data_dir=args.data_dir)
    engine = EmbeddedEngine(load_pack(args.candidate))
    store = open_readonly(settings.data_dir, settings.audit_url)
    try:
        report = replay(store, engine, since=args.since)
    finally:
        store.close()
        engine.close()
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        print(report.render())
    return 1 if args.fail_on_change and report.changes else 0


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    """Register ``policy test``, ``policy check`` and ``policy replay``."""
    policy = sub.add_parser(
        "policy", parents=[common], help="test, check and replay policy packs"
    ).add_subparsers(dest="policy_command", required=True)

    test = policy.add_parser(
        "test",
        parents=[common],
        help="opa test, and the decision-table cases on both engines (diff on failure)",
    )
    test.add_argument(
        "--cases",
        action="append",
        default=[],
        help="another JSON-lines cases file (repeatable), besides tests/cases/*.jsonl",
    )
    test.add_argument(
        "--no-default-cases",
        action="store_true",
        help="run only the --cases files, not the project's tests/cases/*.jsonl",
    )
    test.add_argument(
        "--engine",
        choices=("embedded", "opa", "wasm", "both", "all"),
        default="both",
        help="both: embedded and opa (default); all: also the wasm engine",
    )
    test.add_argument("--opa", default=None, help="the opa binary (default: $GATEKEEPER_OPA, …)")
    test.set_defaults(func=_cmd_test)

    check = policy.add_parser(
        "check",
        parents=[common],
        help="opa fmt, opa check --strict, and only built-ins both engines agree on",
    )
    check.add_argument("--opa", default=None, help="the opa binary (default: $GATEKEEPER_OPA, …)")
    check.set_defaults(func=_cmd_check)

    rep = policy.add_parser(
        "replay",
        parents=[common],
        help="re-decide the audit log's recorded requests with a candidate pack",
    )
    rep.add_argument("--candidate", required=True, help="the candidate policy directory")
    rep.add_argument("--since", default=None, help="only decisions logged since (date, UTC)")
    rep.add_argument("--json", action="store_true", help="the report as JSON")
    rep.add_argument(
        "--fail-on-change", action="store_true", help="exit 1 when any decision would change"
    )
    rep.set_defaults(func=_cmd_replay)
