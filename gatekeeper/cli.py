"""The ``gatekeeper`` command.

    gatekeeper decide request.json            # print the Decision JSON
    gatekeeper decide - < request.json        # from standard input
    gatekeeper decide --engine opa --opa-url http://127.0.0.1:8181 request.json
    gatekeeper audit verify                   # every entry, signature, checkpoint
    gatekeeper audit checkpoint | vkey | export DIR | prove INDEX | show ...
    gatekeeper obligations list [--pending] | ack ID --by NAME | dispatch [--once]
    gatekeeper demo-sis [--port 8600] [--students 3000] [--db PATH]    # a OneRoster demo SIS
    gatekeeper proxy --upstream URL --config proxy.toml [--port 8700]  # the OneRoster proxy
    gatekeeper audit witness --state DIR [--vkey VKEY] SOURCE  # rollback / fork: exit 1
    gatekeeper audit serve [--host 127.0.0.1] [--port 8800]    # the log as C2SP tlog-tiles
    gatekeeper policy test | check | replay --candidate DIR    # for policy authors
    gatekeeper report enforcement|disclosures|activity [--from D --to D] [--format F --out P]
    gatekeeper ui [--host 127.0.0.1] [--port 8900]             # read-only web view of the log

Exit status of ``decide`` (CONTRACT.md): 0 when a decision was made, whatever
it is; 2 when the request does not parse or validate (one line on standard
error names the problem); 1 for any other failure (engine down, ...). In
every failure case the printed decision is a deny and nothing is disclosed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gatekeeper
from gatekeeper.config import load_settings
from gatekeeper.decision import Decision
from gatekeeper.errors import GatekeeperError, RequestError
from gatekeeper.request import MAX_REQUEST_BYTES

if TYPE_CHECKING:
    from gatekeeper.audit.log import AuditLog

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


@contextlib.contextmanager
def _native_output_to_stderr() -> Iterator[None]:
    """While the pack compiles: rego-cpp prints its errors on file descriptor 1,
    which is where ``decide`` prints the decision JSON; send them to stderr."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no standard output to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _cmd_decide(args: argparse.Namespace) -> int:
    raw = _read_request(args.request)
    try:
        with _native_output_to_stderr():
            gk = gatekeeper.open(
                data_dir=args.data_dir,
                engine=args.engine,
                opa_url=args.opa_url,
                timezone=args.timezone,
                policy_dir=args.policy_dir,
                config=args.config,
            )
    except GatekeeperError as failure:
        # Nothing can be decided or audited; an invalid request is still exit 2.
        try:
            request_id = gatekeeper.parse_request(raw).request_id
        except RequestError as exc:
            print(f"gatekeeper: invalid request: {exc}", file=sys.stderr)
            return 2
        # Fail closed in the output too: a deny with the reason (not audited:
        # the log could not be opened, or nothing could decide).
        denied = Decision.fail_closed(
            request_id=request_id,
            reason=failure.reason or "gatekeeper_unavailable",
            policy_revision="",
            engine=args.engine or "",
        )
        _print_json(denied.to_dict())
        raise
    with gk:
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


def _open_log(args: argparse.Namespace) -> AuditLog:
    """The configured log, which must exist: the audit commands read (or rotate)
    a log; opening a data directory without one would create a new, empty
    log and a new signing key, and report on that instead."""
    from gatekeeper import open_existing_audit_log

    return open_existing_audit_log(load_settings(args.config, data_dir=args.data_dir))


def _cmd_demo(args: argparse.Namespace) -> int:
    from gatekeeper.demo import run_demo

    settings = load_settings(args.config, data_dir=args.data_dir)
    return run_demo(settings.data_dir, students=args.students, settings=settings)


def _cmd_verify(args: argparse.Namespace) -> int:
    from gatekeeper.audit.verify import verify_log

    try:
        trusted = Path(args.trusted).read_text(encoding="utf-8") if args.trusted else None
    except OSError as exc:
        raise GatekeeperError(
            f"cannot read the trusted checkpoint {args.trusted}: {exc.strerror}"
        ) from exc
    if args.workers < 1:
        raise GatekeeperError("--workers must be at least 1")
    with _open_log(args) as log:
        report = verify_log(
            log.store,
            log.keys,
            signatures=args.signatures,
            workers=args.workers,
            trusted=trusted,
            vkeys=args.vkey or None,
        )
    for problem in report.problems:
        print(problem)
    print(
        f"{report.summary()}; {report.checkpoints} checkpoints; signatures: "
        f"{report.signature_mode} ({report.signatures_checked} checked)"
    )
    return 0 if report.ok else 1


def _cmd_checkpoint(args: argparse.Namespace) -> int:
    with _open_log(args) as log:
        note = log.latest_checkpoint()
    if note is None:
        print("gatekeeper: the audit log has no checkpoint yet", file=sys.stderr)
        return 1
    sys.stdout.write(note)
    return 0


def _cmd_vkey(args: argparse.Namespace) -> int:
    with _open_log(args) as log:
        print(log.keys.vkey())
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from gatekeeper.audit.note import open_checkpoint
    from gatekeeper.audit.tiles import export_tiles

    target = Path(args.dir)
    if target.exists() and not target.is_dir():
        raise GatekeeperError(f"{target} is not a directory: give a directory for the tiles")
    with _open_log(args) as log:
        note = log.latest_checkpoint()
        if note is None:
            print("gatekeeper: the audit log has no checkpoint yet", file=sys.stderr)
            return 1
        checkpoint = open_checkpoint(note, log.keys.verifiers())
        try:
            count = export_tiles(log.store, note, checkpoint, target)
        except OSError as exc:
            where = exc.filename or target
            raise GatekeeperError(f"cannot write the tiles to {where}: {exc.strerror}") from exc
    print(f"wrote {count} files for {checkpoint.size} entries to {args.dir}")
    return 0


def _cmd_prove(args: argparse.Namespace) -> int:
    import base64

    from gatekeeper.audit import merkle

    with _open_log(args) as log:
        logged = log.size()
        size = args.size if args.size is not None else logged
        if not 0 < size <= logged:
            print(
                f"gatekeeper: --size {size} is not a size of this log (1 to {logged})",
                file=sys.stderr,
            )
            return 1
        if not 0 <= args.index < size:
            print(f"gatekeeper: no entry {args.index} in a log of {size}", file=sys.stderr)
            return 1
        proof = log.prove_inclusion(args.index, size)
        (data,) = log.store.read_entries(args.index, args.index + 1)
        root = log.root(size)
    _print_json(
        {
            "origin": log.origin,
            "index": args.index,
            "tree_size": size,
            "root": base64.b64encode(root).decode(),
            "leaf_hash": base64.b64encode(merkle.leaf_hash(data.data)).decode(),
            "proof": [base64.b64encode(h).decode() for h in proof],
        }
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from gatekeeper.audit.show import EntryFilter, render_table, select_entries

    query = EntryFilter(
        index=args.index,
        since=args.since,
        until=args.until,
        student=args.student,
        requester=args.requester,
        decision=args.decision,
        limit=args.limit,
    )
    with _open_log(args) as log:
        rows = select_entries(log.store, query)
    if args.json:
        for index, entry in rows:
            sys.stdout.write(
                json.dumps({"index": index, "entry": entry}, ensure_ascii=False) + "\n"
            )
    else:
        sys.stdout.write(render_table(rows))
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    import os
    import shlex

    from gatekeeper.audit.note import EntrySigner

    if args.new_key_path and args.new_signer_command:
        print("gatekeeper: give --new-key-path or --new-signer-command, not both", file=sys.stderr)
        return 2
    with _open_log(args) as log:
        new: EntrySigner | None = None
        if args.new_key_path:
            from gatekeeper.audit.keys import load_key_file

            passphrase = os.environ.get("GATEKEEPER_KEY_PASSPHRASE")
            new = load_key_file(
                args.new_key_path,
                origin=log.origin,
                passphrase=passphrase.encode("utf-8") if passphrase else None,
            )
        elif args.new_signer_command:
            from gatekeeper.audit.command_signer import CommandSigner

            settings = load_settings(args.config, data_dir=args.data_dir)
            new = CommandSigner(
                shlex.split(args.new_signer_command),
                name=log.origin,
                timeout=settings.signer_timeout,
            )
        try:
            vkey = log.rotate_key(new)
        finally:
            close = getattr(new, "close", None)
            if callable(close):
                close()
    print(vkey)
    if args.new_key_path:
        print(
            f"rotated: now set key_path = {str(args.new_key_path)!r} in the configuration of "
            "every process using this log, and restart them (until then they deny, "
            "audit_key_unavailable)",
            file=sys.stderr,
        )
    elif args.new_signer_command:
        print(
            "rotated: now set signer_command to the new signer in the configuration of every "
            "process using this log, and restart them (until then they deny, "
            "audit_key_unavailable)",
            file=sys.stderr,
        )
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gatekeeper._files import write_atomic

    out = Path(args.out)
    if out.exists():
        print(f"gatekeeper: {out} exists; not overwriting a key", file=sys.stderr)
        return 1
    passphrase = os.environ.get("GATEKEEPER_KEY_PASSPHRASE")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
        if passphrase
        else serialization.NoEncryption()
    )
    key = Ed25519PrivateKey.generate()
    write_atomic(
        out,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        ),
        mode=0o600,
        dir_mode=0o700,
    )
    how = (
        "encrypted with the passphrase in GATEKEEPER_KEY_PASSPHRASE"
        if passphrase
        else "NOT encrypted: set GATEKEEPER_KEY_PASSPHRASE to encrypt it"
    )
    print(f"wrote a new Ed25519 signing key to {out} (mode 0600, {how})")
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
    # The common options are accepted after the subcommand too
    # (`gatekeeper audit verify --data-dir X`), without overriding them.
    common = argparse.ArgumentParser(add_help=False)
    for flag in ("--data-dir", "--config", "--policy-dir", "--timezone"):
        common.add_argument(flag, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    decide = sub.add_parser(
        "decide", parents=[common], help="decide one AccessRequest and print the Decision"
    )
    decide.add_argument("request", nargs="?", default="-", help="request JSON file, or - for stdin")
    decide.add_argument("--engine", choices=("embedded", "opa", "wasm"), default=None)
    decide.add_argument("--opa-url", default=None)
    decide.set_defaults(func=_cmd_decide)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="the main job: demo SIS + OneRoster proxy on loopback, realistic requests, "
        "audited, verified, reported",
    )
    demo.add_argument(
        "--students", type=int, default=3000, help="synthetic students in the demo SIS"
    )
    demo.set_defaults(func=_cmd_demo)

    audit = sub.add_parser("audit", parents=[common], help="the signed audit log").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser(
        "verify", parents=[common], help="verify every entry, signature and checkpoint"
    )
    verify.add_argument(
        "--signatures",
        choices=("all", "sample", "none"),
        default="all",
        help="check every entry signature (default), a 1%% sample, or none",
    )
    verify.add_argument(
        "--workers", type=int, default=1, help="processes checking entry signatures in parallel"
    )
    verify.add_argument(
        "--trusted",
        default=None,
        help="a checkpoint kept outside the store: detects a truncated tail",
    )
    verify.add_argument(
        "--vkey",
        action="append",
        default=[],
        help="a verifier key kept outside the data directory, trusted instead of its "
        "keyring (repeat for rotated keys)",
    )
    verify.set_defaults(func=_cmd_verify)
    audit.add_parser(
        "checkpoint", parents=[common], help="print the latest signed checkpoint"
    ).set_defaults(func=_cmd_checkpoint)
    audit.add_parser("vkey", parents=[common], help="print the log's verifier key").set_defaults(
        func=_cmd_vkey
    )
    export = audit.add_parser("export", parents=[common], help="write a C2SP tlog-tiles directory")
    export.add_argument("dir")
    export.set_defaults(func=_cmd_export)
    prove = audit.add_parser(
        "prove", parents=[common], help="print an inclusion proof for one entry"
    )
    prove.add_argument("index", type=int)
    prove.add_argument("--size", type=int, default=None)
    prove.set_defaults(func=_cmd_prove)
    show = audit.add_parser(
        "show", parents=[common], help="entries by index, time, student, requester, decision"
    )
    show.add_argument("--index", type=int, default=None)
    show.add_argument("--since", default=None, help="UTC timestamp or date, inclusive")
    show.add_argument("--until", default=None, help="UTC timestamp or date, exclusive")
    show.add_argument("--student", default=None)
    show.add_argument("--requester", default=None)
    show.add_argument("--decision", choices=("permit", "deny", "escalate"), default=None)
    show.add_argument("--limit", type=int, default=1000)
    show.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    show.set_defaults(func=_cmd_show)
    rotate = audit.add_parser(
        "rotate-key", parents=[common], help="rotate the signing key (co-signed checkpoint)"
    )
    rotate.add_argument(
        "--new-key-path",
        default=None,
        help="the new key (PEM, e.g. from `audit keygen`); required when key_path is "
        "configured: then set key_path to it",
    )
    rotate.add_argument(
        "--new-signer-command",
        default=None,
        help="the new external signer's command line (shell-quoted); required when "
        "signer_command is configured: then set signer_command to it",
    )
    rotate.set_defaults(func=_cmd_rotate)
    keygen = audit.add_parser(
        "keygen", parents=[common], help="write a new signing key file (for shared logs)"
    )
    keygen.add_argument("--out", required=True)
    keygen.set_defaults(func=_cmd_keygen)

    from gatekeeper.audit._cli import add_commands as add_witness_commands

    add_witness_commands(audit, common)

    from gatekeeper.obligations._cli import add_commands as add_obligation_commands

    add_obligation_commands(sub, common)

    from gatekeeper.oneroster._cli import add_commands as add_proxy_commands
    from gatekeeper.sis._cli import add_commands as add_demo_sis_commands

    add_demo_sis_commands(sub, common)
    add_proxy_commands(sub, common)

    from gatekeeper.policy._cli import add_commands as add_policy_commands

    add_policy_commands(sub, common)

    from gatekeeper.reports._cli import add_commands as add_report_commands

    add_report_commands(sub, common)

    from gatekeeper.ui._cli import add_commands as add_ui_commands

    add_ui_commands(sub, common)
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
    except BrokenPipeError:
        # The reader went away (`... | head`): no traceback, and none at exit
        # when Python flushes standard output.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return status


if __name__ == "__main__":
    sys.exit(main())
