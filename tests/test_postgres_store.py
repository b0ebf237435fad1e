"""PostgresStore against a real PostgreSQL server on loopback (tests/pg_server.py).

- the same batches give the same entries, stored hashes and checkpoints as SqliteStore;
- many PROCESSES appending to one database keep ONE tree: no gaps, no duplicates,
  stored hashes that recompute from the entries, checkpoint sizes strictly increasing
  (and the same test against SqliteStore);
- a held head row lock makes an append fail with AuditError after ~lock_timeout;
- the same store object works again after the server restarts (reconnect);
- errors never carry the DSN's password.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.audit import merkle
from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.postgres import PostgresStore
from gatekeeper.audit.store import AuditStore, SqliteStore
from tests.opa_server import free_port
from tests.pg_server import PostgresServer

REPO_ROOT = Path(__file__).resolve().parent.parent


def sign(size: int, root: bytes) -> str:
    """A stand-in for note.sign_checkpoint: the checkpoint in clear."""
    return f"{size} {root.hex()}\n"


def entry(tag: str, i: int) -> tuple[bytes, bytes]:
    return (f'{{"i":{i},"tag":"{tag}"}}'.encode(), f"sig:{tag}:{i}".encode())


def open_store(kind: str, where: str, timeout: float) -> AuditStore:
    if kind == "postgres":
        return PostgresStore(where, lock_timeout=timeout)
    return SqliteStore(where, busy_timeout=timeout)


def recompute(datas: Sequence[bytes]) -> dict[int, bytes]:
    """The stored hashes of a tree over ``datas``, with merkle.stored_hashes."""
    hashes: dict[int, bytes] = {}

    def read(indexes: Sequence[int]) -> list[bytes]:
        return [hashes[i] for i in indexes]

    for n, data in enumerate(datas):
        base = merkle.stored_hash_index(0, n)
        for offset, digest in enumerate(merkle.stored_hashes(n, data, read)):
            hashes[base + offset] = digest
    return hashes


def check_one_tree(store: AuditStore, expected: set[bytes]) -> list[bytes]:
    """The store holds exactly ``expected``, as one consistent tree; its entries in order."""
    total = len(expected)
    assert store.size() == total
    stored = store.read_entries(0, total + 10)
    assert [e.index for e in stored] == list(range(total)), "gaps or duplicate indexes"
    datas = [e.data for e in stored]
    assert len(set(datas)) == total and set(datas) == expected, "lost or duplicated entries"

    hashes = recompute(datas)
    assert len(hashes) == merkle.stored_hash_count(total)
    indexes = list(range(len(hashes)))
    assert store.read_hashes(indexes) == [hashes[i] for i in indexes]

    def read(ix: Sequence[int]) -> list[bytes]:
        return [hashes[i] for i in ix]

    checkpoints = store.checkpoints()
    sizes = [size for size, _ in checkpoints]
    assert all(a < b for a, b in itertools.pairwise(sizes)), "sizes not increasing"
    assert sizes[-1] == total
    for size, note in checkpoints:
        assert note == sign(size, merkle.tree_hash(size, read))
    assert store.latest_checkpoint() == checkpoints[-1][1]
    return datas


# -- basic behaviour, and the same tree as SQLite ------------------------------------------


BATCHES = [1, 3, 7, 1, 20, 32]


def fill(store: AuditStore) -> list[tuple[list[int], str]]:
    out = []
    n = 0
    for b, count in enumerate(BATCHES):
        batch = [entry(f"b{b}", i) for i in range(count)]
        appended, note = store.append_batch(batch, sign)
        assert [a.index for a in appended] == list(range(n, n + count))
        assert [a.leaf_hash for a in appended] == [merkle.leaf_hash(d) for d, _ in batch]
        n += count
        out.append(([a.index for a in appended], note))
    return out


def test_append_read_back_and_same_tree_as_sqlite(pg_dsn: str, tmp_path: Path) -> None:
    pg = PostgresStore(pg_dsn)
    try:
        assert pg.size() == 0
        assert pg.checkpoints() == [] and pg.latest_checkpoint() is None
        assert pg.read_entries(0, 10) == [] and pg.read_hashes([]) == []
        pg_result = fill(pg)

        everything = [entry(f"b{b}", i) for b, count in enumerate(BATCHES) for i in range(count)]
        total = len(everything)
        stored = pg.read_entries(0, total)
        assert [(e.data, e.signature) for e in stored] == everything
        assert [e.index for e in pg.read_entries(5, 9)] == [5, 6, 7, 8]
        datas = check_one_tree(pg, {d for d, _ in everything})
        memory = merkle.MemoryHashStore(datas)
        assert pg.latest_checkpoint() == sign(total, memory.root())
        with pytest.raises(AuditError) as info:
            pg.read_hashes([merkle.stored_hash_count(total)])  # not stored yet
        assert info.value.reason == "audit_store_corrupt"

        lite = SqliteStore(tmp_path / "audit.sqlite")
        try:
            assert fill(lite) == pg_result
            assert lite.checkpoints() == pg.checkpoints()
            count = merkle.stored_hash_count(total)
            assert lite.read_hashes(range(count)) == pg.read_hashes(range(count))
            assert lite.read_entries(0, total) == pg.read_entries(0, total)
        finally:
            lite.close()
    finally:
        pg.close()

    # A second store on the same database (schema already there) sees the same log.
    again = PostgresStore(pg_dsn)
    try:
        assert again.size() == total
        assert again.latest_checkpoint() == sign(total, memory.root())
    finally:
        again.close()
    with pytest.raises(AuditError, match="closed"):
        again.size()


def test_threads_sharing_one_store(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, lock_timeout=20)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                store.append_batch([entry(f"t{t}", i)], sign)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    try:
        assert not errors
        check_one_tree(store, {entry(f"t{t}", i)[0] for t in range(4) for i in range(25)})
    finally:
        store.close()


# -- many processes, one tree -----------------------------------------------------------


def _writer(
    kind: str,
    where: str,
    proc: int,
    batches: int,
    barrier: Any,
    results: Any,
) -> None:
    """One writer process: open the store when all are ready, append single-entry batches."""
    try:
        barrier.wait(timeout=60)
        store = open_store(kind, where, timeout=30.0)  # several create the schema at once
        try:
            got = []
            for i in range(batches):
                appended, note = store.append_batch([entry(f"p{proc}", i)], sign)
                assert note.startswith(f"{appended[0].index + 1} ")
                got.append(appended[0].index)
        finally:
            store.close()
        results.put((proc, got, None))
    except BaseException as exc:
        results.put((proc, None, f"{type(exc).__name__}: {exc}"))
        raise


def run_writers(kind: str, where: str, procs: int, batches: int) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_writer, args=(kind, where, p, batches, barrier, results))
        for p in range(procs)
    ]
    started = time.monotonic()
    for w in workers:
        w.start()
    acked: dict[int, list[int]] = {}
    failures = []
    try:
        for _ in range(procs):
            proc, got, error = results.get(timeout=120)
            if error is not None:
                failures.append(f"writer {proc}: {error}")
            else:
                acked[proc] = got
    except queue.Empty:
        failures.append("a writer neither finished nor failed within 120 s")
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
                w.join()
    elapsed = time.monotonic() - started
    assert not failures, failures
    assert all(w.exitcode == 0 for w in workers)
    print(f"{kind}: {procs} processes x {batches} batches in {elapsed:.1f} s")

    store = open_store(kind, where, timeout=5.0)
    try:
        expected = {entry(f"p{p}", i)[0] for p in range(procs) for i in range(batches)}
        datas = check_one_tree(store, expected)
        assert len(store.checkpoints()) == procs * batches  # one per single-entry batch
        # Every acknowledged index holds the entry it was acknowledged for.
        for p, indexes in acked.items():
            assert indexes == sorted(indexes)
            for i, index in enumerate(indexes):
                assert datas[index] == entry(f"p{p}", i)[0]
    finally:
        store.close()


def test_processes_keep_one_tree_postgres(pg_dsn: str) -> None:
    run_writers("postgres", pg_dsn, procs=8, batches=200)


def test_processes_keep_one_tree_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    # Created first: SqliteStore's `PRAGMA journal_mode=WAL` on a brand-new file
    # fails at once ("database is locked", no busy wait) when several processes
    # open it together. The PostgreSQL writers do create their schema at once.
    SqliteStore(path).close()
    run_writers("sqlite", str(path), procs=4, batches=200)


# -- faults ----------------------------------------------------------------------------


def test_held_head_lock_fails_within_lock_timeout(pg_dsn: str) -> None:
    import psycopg

    store = PostgresStore(pg_dsn, lock_timeout=0.5)
    try:
        store.append_batch([entry("a", 0)], sign)
        with psycopg.connect(pg_dsn) as blocker:  # a transaction: holds the lock until rollback
            blocker.execute("SELECT size FROM head WHERE id = 1 FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(AuditError) as info:
                store.append_batch([entry("a", 1)], sign)
            waited = time.monotonic() - started
            assert 0.4 <= waited < 3.0, waited
            assert "lock_timeout" in str(info.value)
            assert isinstance(info.value.__cause__, psycopg.errors.LockNotAvailable)
            assert info.value.reason == "audit_unavailable"
            # Readers are not blocked by the writers' lock.
            assert store.size() == 1
            assert len(store.read_entries(0, 5)) == 1
            blocker.rollback()
        # Nothing of the failed append was kept; the next one takes index 1.
        appended, _ = store.append_batch([entry("a", 2)], sign)
        assert appended[0].index == 1
        check_one_tree(store, {entry("a", 0)[0], entry("a", 2)[0]})
    finally:
        store.close()


def test_same_store_works_after_server_restart(pg_server: PostgresServer, pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    try:
        store.append_batch([entry("r", 0)], sign)
        pg_server.restart()  # cuts the store's session
        store.append_batch([entry("r", 1)], sign)  # reconnects
        pg_server.restart()
        assert store.size() == 2  # a read reconnects too
        store.append_batch([entry("r", 2)], sign)
        check_one_tree(store, {entry("r", i)[0] for i in range(3)})
    finally:
        store.close()


def test_sign_checkpoint_error_rolls_back(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)

    def broken(size: int, root: bytes) -> str:
        raise RuntimeError("no key")

    try:
        store.append_batch([entry("s", 0)], sign)
        with pytest.raises(RuntimeError, match="no key"):
            store.append_batch([entry("s", 1)], broken)
        assert store.size() == 1
        store.append_batch([entry("s", 2)], sign)
        check_one_tree(store, {entry("s", 0)[0], entry("s", 2)[0]})
    finally:
        store.close()


SECRET = "s3cr3t-Pa55word"


def _assert_no_secret(exc: BaseException, *secrets: str) -> None:
    text = str(exc)
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize(
    "make_dsn",
    [
        lambda port: f"postgresql://gatekeeper:{SECRET}@127.0.0.1:{port}/audit",
        lambda port: f"host=127.0.0.1 port={port} user=gatekeeper password={SECRET} dbname=a",
        lambda port: f"host=127.0.0.1 port={port} password={SECRET} oops",  # does not parse
        lambda port: f"postgresql://gatekeeper:{SECRET}@127.0.0.1:{port}/a?bogus=1",
        lambda port: f"host=127.0.0.1 port={port} {SECRET}",  # "password=" forgotten
    ],
    ids=["url", "keywords", "unparsable", "bad-param", "bare-secret"],
)
def test_unreachable_server_fails_fast_without_leaking_password(
    make_dsn: Callable[[int], str],
) -> None:
    started = time.monotonic()
    with pytest.raises(AuditError) as info:
        PostgresStore(make_dsn(free_port()), connect_timeout=2)
    assert time.monotonic() - started < 5
    _assert_no_secret(info.value, SECRET)
    cause = info.value.__cause__
    if cause is not None:
        _assert_no_secret(cause, SECRET)


def test_wrong_password_is_not_echoed(pg_server: PostgresServer, pg_dsn: str) -> None:
    dbname = pg_dsn.rsplit("/", 1)[1]
    with pytest.raises(AuditError) as info:
        PostgresStore(pg_server.dsn_for(dbname, password=SECRET))
    assert "password authentication failed" in str(info.value)
    assert "127.0.0.1" in str(info.value)
    _assert_no_secret(info.value, SECRET, pg_server.password)


def test_importing_gatekeeper_does_not_import_psycopg() -> None:
    code = (
        "import sys, gatekeeper, gatekeeper.audit.store, gatekeeper.audit.postgres\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)


def test_gatekeeper_on_a_shared_postgres_log(pg_dsn: str, tmp_path: Path) -> None:
    """Two 'SIS nodes' (two data dirs) share one PostgreSQL log, origin and key."""
    import json as _json

    import gatekeeper
    from gatekeeper.audit.verify import verify_log
    from gatekeeper.cli import main as cli_main

    key = tmp_path / "log-key.pem"
    assert cli_main(["audit", "keygen", "--out", str(key)]) == 0
    config = tmp_path / "gatekeeper.toml"
    config.write_text(
        f'audit_url = "{pg_dsn}"\norigin = "audit.test-district.org/gatekeeper"\n'
        f'key_path = "{key}"\n'
    )
    cases = [
        _json.loads(line)
        for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    ]
    nodes = [gatekeeper.open(data_dir=tmp_path / f"node{i}", config=config) for i in range(2)]
    indexes = []
    for i, case in enumerate(cases):
        decision = nodes[i % 2].decide(case["request"])
        assert decision.audit is not None and decision.reason is None
        indexes.append(decision.audit["index"])
    assert sorted(indexes) == list(range(len(cases)))
    log = nodes[0].audit
    assert log is not None
    report = verify_log(log.store, log.keys)
    assert report.ok, report.problems
    for node in nodes:
        node.close()
    with pytest.raises(gatekeeper.GatekeeperError, match="origin and key_path"):
        gatekeeper.open(data_dir=tmp_path / "x", audit_url=pg_dsn)
