"""The writer process of ``tests/test_crash_scale.py``: threads appending to the
audit log until someone kills the process with SIGKILL.

Two ways to start one:

- ``python3 tests/crash_writer.py zygote``: a fork server. It imports gatekeeper
  and compiles the embedded engine once, then reads commands on stdin —
  ``fork <cycle> <mode> <threads> <seed> <data_dir> <store>`` forks a writer
  (a fresh process that has not opened the log yet), ``reap <pid>`` waits for
  a killed one — and answers on stdout: ``ready``, ``pid <cycle> <pid>``,
  ``reaped <cycle> <pid> <status>``. A writer costs a ``fork`` and the opening
  of the log instead of an interpreter start-up and its imports (~0.6 s).
- ``python3 tests/crash_writer.py cold <cycle> <mode> <threads> <seed> <data_dir> <store>``:
  one writer, interpreter start-up and imports included (to be killed during those too).

A writer opens the log as ``gatekeeper.open`` does (``<data_dir>/origin`` and
the signing key created on first use), starts ``threads`` threads and appends
from each of them through ``AuditLog.append`` (the group-commit path). In mode
``decide`` the main thread also decides the example requests through
``Gatekeeper.decide`` on the embedded engine (decision entries plus their
obligations outbox rows in the same transaction). Every line is one
``os.write`` (atomic on a pipe: under PIPE_BUF), written only after the
append returned:

    ack <cycle> <index> <leaf hash hex>                  an entry is durable
    dec <cycle> <index> <leaf hash hex> <decision_id>    a decision is durable
    err <cycle> <message>                                an append failed (not acknowledged)
    up <cycle>                                           the log is open
    fatal <cycle> <message>                              the writer cannot start

``store`` is ``sqlite`` (``<data_dir>/audit.sqlite``) or a PostgreSQL DSN.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import gatekeeper  # noqa: E402
from gatekeeper.audit.entry import canonical  # noqa: E402
from gatekeeper.audit.log import AuditLog, default_origin  # noqa: E402
from gatekeeper.config import default_policy_dir  # noqa: E402
from gatekeeper.engines import EmbeddedEngine, load_pack  # noqa: E402
from gatekeeper.obligations import blocking_codes  # noqa: E402

EXAMPLES = ("teacher-grades.json", "ice-admin-warrant.json", "hsi-judicial-warrant.json")


def _say(fd: int, line: str) -> None:
    try:
        os.write(fd, (line + "\n").encode())
    except BrokenPipeError:  # the test is gone: so is this writer
        os._exit(5)


class _Engine:
    """The embedded engine and the example requests, made once (in the zygote)."""

    def __init__(self) -> None:
        pack = load_pack(default_policy_dir())
        self.engine = EmbeddedEngine(pack)
        self.blocking = blocking_codes(pack.data)
        self.requests = [
            json.loads((REPO_ROOT / "examples" / name).read_text(encoding="utf-8"))
            for name in EXAMPLES
        ]


def _open_log(data_dir: str, store: str) -> AuditLog:
    if store == "sqlite":
        return AuditLog.open_sqlite(data_dir)
    from gatekeeper.audit.keys import KeyStore
    from gatekeeper.audit.postgres import PostgresStore

    base = Path(data_dir)
    keys = KeyStore(base, origin=default_origin(base))
    return AuditLog(PostgresStore(store), keys)


def _appender(fd: int, log: AuditLog, cycle: int, thread: int, seed: int) -> None:
    rng = random.Random(seed * 1000 + thread)  # test pacing
    n = 0
    while True:
        data = canonical(
            {
                "schema": "gatekeeper.audit/v1",
                "kind": "crash_test",
                "cycle": cycle,
                "thread": thread,
                "n": n,
                "pad": "x" * rng.randrange(0, 600),
            }
        )
        n += 1
        try:
            receipt = log.append(data)
        except Exception as exc:  # AuditError: not acknowledged; anything else: reported too
            _say(fd, f"err {cycle} {type(exc).__name__}: {str(exc)[:300]!r}")
            time.sleep(0.01)
            continue
        _say(fd, f"ack {cycle} {receipt.index} {receipt.leaf_hash.hex()}")
        # Paced a little, so batches vary in size (not always the saturated maximum).
        time.sleep(rng.random() * 0.01)


def _decider(fd: int, gk: Any, engine: _Engine, cycle: int) -> None:
    n = 0
    while True:
        decision = gk.decide(engine.requests[n % len(engine.requests)])
        n += 1
        receipt = decision.audit
        if receipt is None or decision.reason:
            _say(fd, f"err {cycle} decide: {decision.reason!r}")
            time.sleep(0.01)
            continue
        _say(fd, f"dec {cycle} {receipt['index']} {receipt['leaf_hash']} {decision.decision_id}")


def run_writer(
    fd: int,
    cycle: int,
    mode: str,
    threads: int,
    seed: int,
    data_dir: str,
    store: str,
    engine: _Engine | None,
) -> None:
    """Open the log, start the threads; never returns (runs until killed)."""
    try:
        log = _open_log(data_dir, store)
    except Exception as exc:  # reported, and the parent fails the test
        _say(fd, f"fatal {cycle} {type(exc).__name__}: {str(exc)[:300]!r}")
        os._exit(3)
    _say(fd, f"up {cycle}")
    appenders = threads - 1 if mode == "decide" else threads
    for t in range(appenders):
        threading.Thread(target=_appender, args=(fd, log, cycle, t, seed), daemon=True).start()
    if mode == "decide":
        engine = engine or _Engine()
        gk = gatekeeper.Gatekeeper(
            engine=engine.engine, audit=log, blocking_obligations=engine.blocking
        )
        _decider(fd, gk, engine, cycle)  # its first decision starts this child's worker
    while True:
        time.sleep(3600)


def zygote() -> None:
    engine = _Engine()
    _say(1, "ready")
    cycles: dict[int, int] = {}
    try:
        _serve(engine, cycles)
    finally:  # the test ended or died: no writer outlives it
        for pid in cycles:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _serve(engine: _Engine, cycles: dict[int, int]) -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "fork":
            cycle, mode, threads, seed = int(words[1]), words[2], int(words[3]), int(words[4])
            data_dir, store = words[5], words[6]
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(0)
                    run_writer(1, cycle, mode, threads, seed, data_dir, store, engine)
                finally:
                    os._exit(4)
            cycles[pid] = cycle
            _say(1, f"pid {cycle} {pid}")
        elif words[0] == "reap":
            pid = int(words[1])
            _, status = os.waitpid(pid, 0)
            _say(1, f"reaped {cycles.pop(pid, -1)} {pid} {status}")
        elif words[0] == "exit":
            return


def main(argv: list[str]) -> None:
    if argv[:1] == ["zygote"]:
        zygote()
        return
    if argv[:1] == ["cold"] and len(argv) == 7:
        cycle, mode, threads, seed = int(argv[1]), argv[2], int(argv[3]), int(argv[4])
        run_writer(1, cycle, mode, threads, seed, argv[5], argv[6], None)
    raise SystemExit("usage: crash_writer.py zygote | cold CYCLE MODE THREADS SEED DATA_DIR STORE")


if __name__ == "__main__":
    main(sys.argv[1:])
