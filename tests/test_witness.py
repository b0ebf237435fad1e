"""Witnessing (`gatekeeper audit witness`) and serving (`gatekeeper audit serve`), for real.

Logs are real SQLite logs with real keys; the sources are a data directory, a
directory written by `gatekeeper audit export`, and the log served over HTTP
by the real Starlette app under uvicorn on loopback (and once by the real
`gatekeeper audit serve` process). A fork is two copies of one data
directory (same key, same origin) that grow apart.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatekeeper.audit import merkle
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.note import Checkpoint, Signer, Verifier, open_checkpoint
from gatekeeper.audit.readonly import ReadOnlySqliteStore
from gatekeeper.audit.serve import TileReader, parse_tile_path, tiles_app
from gatekeeper.audit.witness import (
    DirectorySource,
    HttpSource,
    TileHashReader,
    WitnessState,
    open_source,
    witness,
)
from gatekeeper.cli import main
from tests.conftest import REPO_ROOT
from tests.test_go_crosscheck import crosscheck  # noqa: F401 - the Go build fixture

ORIGIN = "witness.test/district-log"


def grow(data_dir: Path, count: int, tag: str) -> str:
    """Append ``count`` entries (group-committed from 8 threads); return the vkey."""
    with AuditLog.open_sqlite(data_dir, origin=ORIGIN) as log:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(
                pool.map(
                    lambda i: log.append(
                        json.dumps({"kind": "test", "tag": tag, "i": i}, sort_keys=True).encode()
                    ),
                    range(count),
                )
            )
        return log.keys.vkey()


def size_of(data_dir: Path) -> int:
    with ReadOnlySqliteStore(data_dir / "audit.sqlite") as store:
        return store.size()


def run_witness(
    capsys: pytest.CaptureFixture[str], state: Path, source: str | Path, *vkeys: str
) -> tuple[int, str, str]:
    args = ["audit", "witness", "--state", str(state)]
    for vkey in vkeys:
        args += ["--vkey", vkey]
    status = main([*args, str(source)])
    out, err = capsys.readouterr()
    return status, out, err


def export(data_dir: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(data_dir), "audit", "export", str(out)]) == 0
    capsys.readouterr()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


# -- the tile arithmetic ---------------------------------------------------------------------


class MemorySource:
    """The tiles of an in-memory tree, generated as the server does (and counted)."""

    def __init__(self, records: list[bytes]) -> None:
        self.store = merkle.MemoryHashStore(records)
        self.name = "memory"
        self.fetches: list[str] = []

    def fetch(self, path: str, limit: int) -> bytes | None:
        self.fetches.append(path)
        ref = parse_tile_path(path)
        assert ref is not None and ref.level is not None, path
        available = self.store.size >> (8 * ref.level)
        if ref.index * 256 + ref.width > available:
            return None
        return merkle.hash_tile(ref.level, ref.index, ref.width, self.store.read_hashes)


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 700, 65536, 65793, 70000])
def test_hashes_from_tiles_equal_the_stored_hashes(size: int) -> None:
    source = MemorySource([b"%d" % i for i in range(size)])
    reader = TileHashReader(source, size, source.store.root())
    assert merkle.tree_hash(size, reader) == source.store.root()
    for old in sorted(
        {1, size // 3 or 1, size - 1 or 1, 256, 257, 65536} & set(range(1, size + 1))
    ):
        proof = merkle.prove_tree(size, old, reader)
        assert proof == merkle.prove_tree(size, old, source.store.read_hashes)
        merkle.check_tree(proof, size, source.store.root(), old, source.store.root(old))
    # Only a handful of tiles, each fetched once.
    assert len(source.fetches) == len(set(source.fetches)) <= 3 * 8


def test_a_missing_partial_tile_falls_back_to_the_full_tile() -> None:
    records = [b"%d" % i for i in range(600)]
    full = MemorySource(records)

    class PrunedPartials(MemorySource):
        """Deletes partial tiles once the full tile exists (as C2SP allows)."""

        def fetch(self, path: str, limit: int) -> bytes | None:
            self.fetches.append(path)
            if ".p/" in path and full.fetch(path.split(".p/")[0], limit) is not None:
                return None
            return full.fetch(path, limit)

    # A checkpoint of size 300 on a log that has grown to 600: tile 0/001.p/44 was pruned.
    pruned = PrunedPartials(records)
    reader = TileHashReader(pruned, 300, full.store.root(300))
    assert merkle.tree_hash(300, reader) == full.store.root(300)
    assert "tile/0/001.p/44" in pruned.fetches and "tile/0/001" in pruned.fetches


# -- data directory ------------------------------------------------------------------------


def test_witness_a_data_dir_that_grows(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vkey = grow(data_dir, 5, "a")
    state = tmp_path / "state"
    status, out, err = run_witness(capsys, state, data_dir, vkey)
    assert status == 0, err
    assert out.startswith(f"ok: {ORIGIN} at 5 entries, first checkpoint seen")

    grow(data_dir, 300, "b")  # crosses a full level-0 tile
    status, out, err = run_witness(capsys, state, data_dir)  # the key is pinned now
    assert status == 0, err
    assert "grew from 5 to 305 entries: consistent" in out

    status, out, _ = run_witness(capsys, state, data_dir)
    assert status == 0 and "unchanged at 305 entries" in out
    assert [p.name for p in WitnessState(state).history()] == [
        f"{5:020d}.checkpoint",
        f"{305:020d}.checkpoint",
    ]
    assert (state / "vkeys").read_text().strip() == vkey
    # The witness never wrote to the log it watched.
    assert size_of(data_dir) == 305


def test_the_state_keeps_the_latest_checkpoint_atomically(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vkey = grow(data_dir, 3, "a")
    state = tmp_path / "state"
    assert run_witness(capsys, state, data_dir, vkey)[0] == 0
    note = (state / "checkpoint").read_text()
    assert open_checkpoint(note, [Verifier(vkey)]).size == 3
    assert not [p for p in state.iterdir() if p.name.startswith(".checkpoint-")]


def test_rollback_of_a_data_dir_is_detected(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vkey = grow(data_dir, 20, "a")
    old_copy = tmp_path / "backup"
    shutil.copytree(data_dir, old_copy)
    grow(data_dir, 10, "b")
    state = tmp_path / "state"
    assert run_witness(capsys, state, data_dir, vkey)[0] == 0

    status, out, err = run_witness(capsys, state, old_copy)  # an old copy is restored
    assert status == 1 and out == ""
    assert "WITNESS ALERT: ROLLBACK" in err
    assert "shows 20 entries, but this witness saw 30" in err
    # The rollback was not accepted, and what was seen is kept.
    assert open_checkpoint((state / "checkpoint").read_text(), [Verifier(vkey)]).size == 30
    (evidence,) = (state / "evidence").iterdir()
    assert "rollback" in evidence.name and "\n20\n" in evidence.read_text()


def test_fork_of_the_same_size_is_detected(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vkey = grow(data_dir, 40, "common")
    twin = tmp_path / "twin"
    shutil.copytree(data_dir, twin)  # same key, same origin
    grow(data_dir, 7, "honest")
    grow(twin, 7, "rewritten")
    state = tmp_path / "state"
    assert run_witness(capsys, state, data_dir, vkey)[0] == 0
    status, _, err = run_witness(capsys, state, twin)
    assert status == 1
    assert "WITNESS ALERT: FORK" in err and "two signed checkpoints of size 47" in err
    evidence = next((state / "evidence").iterdir()).read_text()
    # Two notes, both validly signed by the log's key, for one size: proof of equivocation.
    held, served = evidence.split("--- checkpoint served by the source ---\n")
    held = held.split("--- checkpoint held by this witness ---\n")[1]
    verifier = Verifier(vkey)
    a, b = open_checkpoint(held.strip() + "\n", [verifier]), open_checkpoint(served, [verifier])
    assert a.size == b.size == 47 and a.root != b.root


def test_fork_that_grew_further_is_detected(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vkey = grow(data_dir, 260, "common")
    twin = tmp_path / "twin"
    shutil.copytree(data_dir, twin)
    grow(data_dir, 3, "honest")
    grow(twin, 300, "rewritten")
    state = tmp_path / "state"
    assert run_witness(capsys, state, data_dir, vkey)[0] == 0
    status, _, err = run_witness(capsys, state, twin)
    assert status == 1
    assert "WITNESS ALERT: FORK" in err
    assert "the tree of size 560 does not extend the tree of size 263" in err


# -- export directory ----------------------------------------------------------------------


def test_witness_an_export_dir_grow_then_rollback(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vkey = grow(data_dir, 100, "a")
    tiles = tmp_path / "tiles"
    export(data_dir, tiles, capsys)
    old_export = tmp_path / "tiles-old"
    shutil.copytree(tiles, old_export)
    state = tmp_path / "state"
    assert isinstance(open_source(tiles), DirectorySource)
    status, out, _ = run_witness(capsys, state, tiles, vkey)
    assert status == 0 and "at 100 entries" in out

    grow(data_dir, 500, "b")
    export(data_dir, tiles, capsys)
    status, out, err = run_witness(capsys, state, tiles)
    assert status == 0, err
    assert "grew from 100 to 600 entries: consistent" in out

    shutil.rmtree(tiles)
    shutil.copytree(old_export, tiles)  # the old export is put back
    status, _, err = run_witness(capsys, state, tiles)
    assert status == 1 and "ROLLBACK" in err


def test_a_tampered_checkpoint_signature_is_refused(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vkey = grow(data_dir, 10, "a")
    tiles = tmp_path / "tiles"
    export(data_dir, tiles, capsys)
    state = tmp_path / "state"
    assert run_witness(capsys, state, tiles, vkey)[0] == 0
    grow(data_dir, 5, "b")
    export(data_dir, tiles, capsys)

    note = (tiles / "checkpoint").read_text()
    body, sig_line = note.rsplit("— ", 1)
    name, b64 = sig_line.split(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[10] ^= 0x01  # one bit of the Ed25519 signature
    (tiles / "checkpoint").write_text(f"{body}— {name} {base64.b64encode(raw).decode()}\n")
    status, _, err = run_witness(capsys, state, tiles)
    assert status == 1 and "BAD SIGNATURE" in err and "invalid signature" in err

    # A size changed under a valid signature line: the same.
    (tiles / "checkpoint").write_text(note.replace("\n15\n", "\n16\n"))
    status, _, err = run_witness(capsys, state, tiles)
    assert status == 1 and "BAD SIGNATURE" in err
    # Nothing was accepted: the state still holds size 10.
    assert open_checkpoint((state / "checkpoint").read_text(), [Verifier(vkey)]).size == 10


def test_a_checkpoint_signed_by_another_key_is_refused(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vkey = grow(data_dir, 3, "a")
    impostor = tmp_path / "impostor"
    grow(impostor, 3, "a")  # same origin, its own new key
    state = tmp_path / "state"
    assert run_witness(capsys, state, data_dir, vkey)[0] == 0
    status, _, err = run_witness(capsys, state, impostor)
    assert status == 1 and "BAD SIGNATURE" in err and "no verifiable signatures" in err


@pytest.mark.parametrize(
    ("tile", "message"),
    [
        (merkle.tile_path(0, 1, 44), "the hash tiles give root"),  # a tile of the root
        (merkle.tile_path(0, 0, 256), "does not hash to its entry in tile/1/000.p/1"),
    ],
)
def test_tiles_that_do_not_match_the_signed_root_are_refused(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tile: str, message: str
) -> None:
    vkey = grow(data_dir, 10, "a")
    tiles = tmp_path / "tiles"
    export(data_dir, tiles, capsys)
    state = tmp_path / "state"
    assert run_witness(capsys, state, tiles, vkey)[0] == 0
    grow(data_dir, 290, "b")
    export(data_dir, tiles, capsys)
    data = bytearray((tiles / tile).read_bytes())
    data[5] ^= 0xFF
    (tiles / tile).write_bytes(bytes(data))
    status, _, err = run_witness(capsys, state, tiles)
    # Broken tiles are told apart from a fork: the signed root is not in question.
    assert status == 1 and "BAD TILES" in err and message in err and "FORK" not in err


def test_tiles_are_checked_on_first_use_too(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vkey = grow(data_dir, 10, "a")
    tiles = tmp_path / "tiles"
    export(data_dir, tiles, capsys)
    tile = tiles / merkle.tile_path(0, 0, 10)
    tile.write_bytes(bytes(len(tile.read_bytes())))
    status, _, err = run_witness(capsys, tmp_path / "state", tiles, vkey)
    assert status == 1 and "BAD TILES" in err
    assert not (tmp_path / "state" / "checkpoint").exists()


def test_the_pinned_key_cannot_be_swapped_silently(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vkey = grow(data_dir, 3, "a")
    state = tmp_path / "state"
    status, _, err = run_witness(capsys, state, data_dir)
    assert status == 1 and "pins no verifier key yet" in err
    assert run_witness(capsys, state, data_dir, vkey)[0] == 0
    other = Signer(ORIGIN, Ed25519PrivateKey.generate()).vkey
    status, _, err = run_witness(capsys, state, data_dir, other)
    assert status == 1 and "pins other verifier keys" in err


# -- HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def served(data_dir: Path) -> Iterator[tuple[str, str]]:
    """(URL, vkey) of the data directory's log served by the real app under uvicorn."""
    from gatekeeper._serving import start_in_thread

    vkey = grow(data_dir, 30, "a")
    store = ReadOnlySqliteStore(data_dir / "audit.sqlite")
    handle = start_in_thread(tiles_app(TileReader(store)))
    try:
        yield handle.url, vkey
    finally:
        handle.stop()
        store.close()


def get(url: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_witness_a_served_log_that_grows(
    served: tuple[str, str], data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, vkey = served
    assert isinstance(open_source(url), HttpSource)
    state = tmp_path / "state"
    status, out, err = run_witness(capsys, state, url, vkey)
    assert status == 0, err
    assert "at 30 entries" in out
    grow(data_dir, 700, "b")  # the server reads the growing store
    status, out, err = run_witness(capsys, state, url + "/")
    assert status == 0, err
    assert "grew from 30 to 730 entries: consistent" in out


def test_served_resources_follow_c2sp(served: tuple[str, str], data_dir: Path) -> None:
    url, vkey = served
    status, headers, body = get(f"{url}/checkpoint")
    assert status == 200 and headers["content-type"] == "text/plain; charset=utf-8"
    assert "max-age=2" in headers["cache-control"]
    checkpoint = open_checkpoint(body, [Verifier(vkey)])
    assert checkpoint.size == 30

    status, headers, tile = get(f"{url}/tile/0/000.p/30")
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    assert headers["cache-control"] == "public, max-age=60"
    assert len(tile) == 30 * 32
    store = ReadOnlySqliteStore(data_dir / "audit.sqlite")
    assert tile == merkle.hash_tile(0, 0, 30, store.read_hashes)

    status, headers, bundle = get(f"{url}/tile/entries/000.p/30", **{"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("content-encoding") == "gzip"
    raw = gzip.decompress(bundle)
    first_len = int.from_bytes(raw[:2], "big")
    assert raw[2 : 2 + first_len] == store.read_entries(0, 1)[0].data
    store.close()

    # Beyond the checkpoint, not canonical, or not GET/HEAD: refused.
    assert get(f"{url}/tile/0/000.p/31")[0] == 404
    assert get(f"{url}/tile/0/000")[0] == 404  # not full yet
    assert get(f"{url}/tile/0/x000/000.p/30")[0] == 404
    assert get(f"{url}/tile/0/000.p/030")[0] == 404
    assert get(f"{url}/checkpoint", method="POST")[0] == 405
    assert get(f"{url}/tile/0/000.p/30", method="HEAD")[0] == 200

    grow(data_dir, 256, "b")  # 286: tile 0/000 is full now, and immutable
    status, headers, full = get(f"{url}/tile/0/000")
    assert status == 200 and len(full) == 8192
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert full[: 30 * 32] == tile  # the partial tile was a prefix, as promised


def test_entries_can_be_left_out(data_dir: Path) -> None:
    grow(data_dir, 3, "a")
    reader = TileReader(ReadOnlySqliteStore(data_dir / "audit.sqlite"), entries=False)
    assert reader.get("tile/entries/000.p/3") is None
    assert reader.get("tile/0/000.p/3") is not None
    reader.store.close()


def test_gatekeeper_audit_serve_process(data_dir: Path, tmp_path: Path) -> None:
    """The real command: `gatekeeper audit serve --port 0`, witnessed, then stopped."""
    vkey = grow(data_dir, 12, "a")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatekeeper", "--data-dir", str(data_dir), "audit", "serve",
         "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving the audit log as C2SP tlog-tiles at http://127.0.0.1:" in line, line
        assert "checkpoint size 12; entries on" in line
        url = line.split(" at ", 1)[1].split("/ ", 1)[0]
        report = witness(open_source(url), WitnessState(tmp_path / "state"), vkeys=[vkey])
        assert report.ok and report.new_size == 12
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# -- Go's tlog checks the served tiles ---------------------------------------------------------


def test_go_verifies_the_served_tiles(
    served: tuple[str, str],
    data_dir: Path,
    tmp_path: Path,
    crosscheck: Path,  # noqa: F811 - the fixture imported above
) -> None:
    """Download every resource the server offers for its checkpoint; Go's tlog checks them."""
    url, vkey = served
    grow(data_dir, 600, "b")  # 630 entries: full and partial tiles on two levels
    _, _, note = get(f"{url}/checkpoint")
    size = Checkpoint.parse(note.decode().split("\n\n")[0] + "\n").size
    out = tmp_path / "mirror"
    (out / "checkpoint").parent.mkdir(parents=True)
    (out / "checkpoint").write_bytes(note)
    for level, index, width in merkle.new_tiles(0, size):
        for path in [merkle.tile_path(level, index, width)] + (
            [merkle.entries_tile_path(index, width)] if level == 0 else []
        ):
            status, _, body = get(f"{url}/{path}")
            assert status == 200, path
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            (out / path).write_bytes(body)
    result = subprocess.run(
        [str(crosscheck), "tiles", str(out), vkey], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok {size} entries")
