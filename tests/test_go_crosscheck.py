"""Go's own ``sumdb/note`` and ``sumdb/tlog`` verify what merkle.py and note.py produce.

The Go program ``tests/go/crosscheck`` (golang.org/x/mod at the version
pinned in its go.mod, fetched through the Go module proxy) is built with the
machine's ``go`` and run on checkpoints, C2SP tiles and proofs made here with
merkle.py and note.py alone (plus the tiny tile writer below; the real
``audit export`` is not used). Without ``go`` these tests skip, unless
``CI=true`` / ``GATEKEEPER_REQUIRE_ALL=1``, where they fail.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatekeeper.audit import merkle
from gatekeeper.audit.merkle import MemoryHashStore, prove_record, prove_tree
from gatekeeper.audit.note import Checkpoint, Signer, sign_checkpoint
from tests import test_merkle_vectors as vectors
from tests.conftest import REPO_ROOT, skip_or_fail

CROSSCHECK_SRC = REPO_ROOT / "tests" / "go" / "crosscheck"
ORIGIN = "gatekeeper.example/audit"
_OFFLINE_HINTS = (
    "dial tcp",
    "no such host",
    "i/o timeout",
    "connection refused",
    "network is unreachable",
    "TLS handshake timeout",
)


@pytest.fixture(scope="session")
def crosscheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The crosscheck binary, built once per session into a temporary directory."""
    go = shutil.which("go")
    if go is None:
        skip_or_fail("no `go` on PATH: the Go cross-check needs Go (https://go.dev/dl/)")
    build = tmp_path_factory.mktemp("crosscheck")
    src = build / "src"
    shutil.copytree(CROSSCHECK_SRC, src)  # go.sum may be updated: never in the repo
    binary = build / "crosscheck"
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    try:
        result = subprocess.run(
            [go, "build", "-o", str(binary), "."],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        skip_or_fail("`go build` of tests/go/crosscheck timed out (module download?)")
    if result.returncode != 0:
        if any(hint in result.stderr for hint in _OFFLINE_HINTS):
            skip_or_fail(f"cannot download golang.org/x/mod (offline?):\n{result.stderr}")
        pytest.fail(f"`go build` of tests/go/crosscheck failed:\n{result.stderr}")
    return binary


def _go(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=300, check=False
    )


def _accepts(binary: Path, *args: str) -> str:
    result = _go(binary, *args)
    assert result.returncode == 0, f"Go rejected {args[0]}: {result.stderr}"
    return result.stdout


def _rejects(binary: Path, *args: str) -> str:
    result = _go(binary, *args)
    assert result.returncode == 1, f"Go accepted {args[0]}: {result.stdout}{result.stderr}"
    return result.stderr


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _proof_arg(proof: Sequence[bytes]) -> str:
    return ",".join(_b64(h) for h in proof) or "-"


def _records(n: int) -> list[bytes]:
    """Entries of varied sizes: JCS objects, an empty one, and one of the maximal 65535 bytes."""
    records = [rfc8785.dumps({"i": i, "pad": "x" * (i % 97)}) for i in range(n)]
    if n > 3:
        records[1] = b""
        records[3] = b"\xff" * 65535
    return records


def _signer() -> Signer:
    return Signer(ORIGIN, Ed25519PrivateKey.generate())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_tiles(directory: Path, records: Sequence[bytes], checkpoint_note: str) -> None:
    """A minimal C2SP tlog-tiles export: checkpoint, hash tiles, entry bundles."""
    store = MemoryHashStore(records)
    _write(directory / "checkpoint", checkpoint_note.encode("utf-8"))
    for level, index, width in merkle.new_tiles(0, len(records)):
        tile = merkle.hash_tile(level, index, width, store.read_hashes)
        _write(directory / merkle.tile_path(level, index, width), tile)
        if level == 0:
            start = index * merkle.TILE_WIDTH
            bundle = b"".join(
                struct.pack(">H", len(entry)) + entry for entry in records[start : start + width]
            )
            _write(directory / merkle.entries_tile_path(index, width), bundle)


# -- the embedded vectors are Go's ------------------------------------------------------------


def test_go_prints_the_embedded_vectors(crosscheck: Path) -> None:
    out: dict[str, Any] = json.loads(_accepts(crosscheck, "vectors"))
    assert tuple(out["leaf_hashes"]) == vectors.GO_LEAF_HASHES
    assert tuple(out["roots"]) == vectors.RFC6962_ROOTS
    assert {(v["size"], v["index"]): tuple(v["proof"]) for v in out["inclusion"]} == (
        vectors.GO_INCLUSION
    )
    assert {(v["size"], v["old_size"]): tuple(v["proof"]) for v in out["consistency"]} == (
        vectors.GO_CONSISTENCY
    )
    assert tuple(tuple(x) for x in out["stored_hash_index"]) == vectors.GO_STORED_HASH_INDEX
    assert tuple(out["stored_hash_count"]) == vectors.GO_STORED_HASH_COUNT
    embedded = {(old, new): list(tiles) for old, new, tiles in vectors.GO_NEW_TILES}
    for old, new, tiles in out["new_tiles"]:
        go_tiles = [tuple(t) for t in tiles or []]
        assert merkle.new_tiles(old, new) == go_tiles
        assert embedded.get((old, new), go_tiles) == go_tiles
    notes = out["notes"]
    assert notes["peter"] == vectors.PETER_NOTE
    assert notes["peter_enoch"] == vectors.PETER_ENOCH_NOTE
    assert (notes["enoch_skey"], notes["enoch_vkey"]) == (vectors.ENOCH_SKEY, vectors.ENOCH_VKEY)
    assert notes["log_skey1"] == vectors.CHECKPOINT_SKEY1
    assert notes["log_vkey1"] == vectors.CHECKPOINT_VKEY1
    assert notes["log_skey2"] == vectors.CHECKPOINT_SKEY2
    assert notes["log_vkey2"] == vectors.CHECKPOINT_VKEY2
    assert notes["checkpoint"] == vectors.CHECKPOINT_NOTE
    assert notes["checkpoint_cosigned"] == vectors.CHECKPOINT_COSIGNED
    assert notes["checkpoint_extension"] == vectors.CHECKPOINT_EXTENSION


# -- checkpoints -------------------------------------------------------------------------------


def _checkpoint_file(tmp_path: Path, note: str) -> str:
    path = tmp_path / "checkpoint"
    path.write_bytes(note.encode("utf-8"))
    return str(path)


def test_our_checkpoint_opens_in_go(crosscheck: Path, tmp_path: Path) -> None:
    store = MemoryHashStore(_records(700))
    signer = _signer()
    note = sign_checkpoint(Checkpoint(ORIGIN, store.size, store.root()), [signer])
    out = _accepts(crosscheck, "checkpoint", _checkpoint_file(tmp_path, note), signer.vkey)
    assert out == f"700 {_b64(store.root())}\n"


def test_our_cosigned_checkpoint_opens_in_go(crosscheck: Path, tmp_path: Path) -> None:
    old, new = _signer(), _signer()
    cp = Checkpoint(ORIGIN, 3, MemoryHashStore(_records(3)).root(), ("rotated",))
    path = _checkpoint_file(tmp_path, sign_checkpoint(cp, [new, old]))
    assert _accepts(crosscheck, "checkpoint", path, new.vkey, old.vkey) == f"3 {_b64(cp.root)}\n"
    assert _accepts(crosscheck, "checkpoint", path, old.vkey) == f"3 {_b64(cp.root)}\n"


def test_go_rejects_a_tampered_checkpoint(crosscheck: Path, tmp_path: Path) -> None:
    store = MemoryHashStore(_records(10))
    signer = _signer()
    note = sign_checkpoint(Checkpoint(ORIGIN, 10, store.root()), [signer])
    for tampered in (
        note.replace("\n10\n", "\n11\n"),
        note.replace(_b64(store.root()), _b64(store.root(9))),
        note.replace(ORIGIN, ORIGIN + "x", 1),
    ):
        assert tampered != note
        err = _rejects(crosscheck, "checkpoint", _checkpoint_file(tmp_path, tampered), signer.vkey)
        assert "invalid signature" in err


def test_go_rejects_a_checkpoint_signed_by_another_key(crosscheck: Path, tmp_path: Path) -> None:
    store = MemoryHashStore(_records(10))
    ours, theirs = _signer(), _signer()
    note = sign_checkpoint(Checkpoint(ORIGIN, 10, store.root()), [theirs])
    err = _rejects(crosscheck, "checkpoint", _checkpoint_file(tmp_path, note), ours.vkey)
    assert "no verifiable signatures" in err


# -- tiles -------------------------------------------------------------------------------------


def _export(directory: Path, records: Sequence[bytes], signer: Signer) -> MemoryHashStore:
    store = MemoryHashStore(records)
    note = sign_checkpoint(Checkpoint(ORIGIN, store.size, store.root()), [signer])
    write_tiles(directory, records, note)
    return store


@pytest.mark.parametrize("size", [0, 1, 256, 700, 65793])
def test_tiles_recompute_to_the_checkpoint_root_in_go(
    crosscheck: Path, tmp_path: Path, size: int
) -> None:
    records = _records(700) if size == 700 else [b"%d" % i for i in range(size)]
    signer = _signer()
    store = _export(tmp_path, records, signer)
    out = _accepts(crosscheck, "tiles", str(tmp_path), signer.vkey)
    tiles = len(merkle.new_tiles(0, size))
    assert out == f"ok {size} entries, {tiles} tiles, root {_b64(store.root())}\n"


def test_go_rejects_a_tampered_entry(crosscheck: Path, tmp_path: Path) -> None:
    records = _records(700)
    signer = _signer()
    _export(tmp_path, records, signer)
    bundle = tmp_path / merkle.entries_tile_path(1, 256)
    data = bytearray(bundle.read_bytes())
    data[-3] ^= 0x01  # inside record 511
    bundle.write_bytes(bytes(data))
    assert "entries hash to root" in _rejects(crosscheck, "tiles", str(tmp_path), signer.vkey)


def test_go_rejects_a_tampered_hash_tile(crosscheck: Path, tmp_path: Path) -> None:
    signer = _signer()
    _export(tmp_path, _records(700), signer)
    tile = tmp_path / merkle.tile_path(0, 2, 188)
    data = bytearray(tile.read_bytes())
    data[100] ^= 0x80
    tile.write_bytes(bytes(data))
    assert "tile data differs" in _rejects(crosscheck, "tiles", str(tmp_path), signer.vkey)


def test_go_rejects_tiles_under_a_checkpoint_of_another_tree(
    crosscheck: Path, tmp_path: Path
) -> None:
    records = _records(700)
    signer = _signer()
    _export(tmp_path, records, signer)
    # A correctly signed checkpoint of size 700, but of a tree whose last entry differs.
    other = MemoryHashStore([*records[:-1], b"another last entry"])
    note = sign_checkpoint(Checkpoint(ORIGIN, 700, other.root()), [signer])
    (tmp_path / "checkpoint").write_bytes(note.encode("utf-8"))
    assert "entries hash to root" in _rejects(crosscheck, "tiles", str(tmp_path), signer.vkey)


def test_go_rejects_tiles_signed_by_another_key(crosscheck: Path, tmp_path: Path) -> None:
    _export(tmp_path, _records(700), _signer())
    err = _rejects(crosscheck, "tiles", str(tmp_path), _signer().vkey)
    assert "no verifiable signatures" in err


# -- proofs ------------------------------------------------------------------------------------

_INCLUSION_CASES = [
    (1, 0),
    (2, 1),
    (7, 3),
    (256, 0),
    (256, 255),
    (257, 256),
    (700, 0),
    (700, 1),
    (700, 255),
    (700, 256),
    (700, 511),
    (700, 699),
    (513, 300),
]
_CONSISTENCY_CASES = [
    (1, 1),
    (2, 1),
    (7, 3),
    (256, 255),
    (257, 256),
    (700, 1),
    (700, 256),
    (700, 257),
    (700, 512),
    (700, 699),
    (700, 700),
    (513, 300),
]


@pytest.fixture(scope="module")
def log_700() -> tuple[list[bytes], MemoryHashStore]:
    records = _records(700)
    return records, MemoryHashStore(records)


def _flip_first(proof: list[bytes]) -> list[bytes]:
    return [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]


def test_our_inclusion_proofs_check_in_go(
    crosscheck: Path, log_700: tuple[list[bytes], MemoryHashStore]
) -> None:
    records, store = log_700
    for size, index in _INCLUSION_CASES:
        proof = prove_record(size, index, store.read_hashes)
        root = store.root(size)
        args = [str(size), str(index), _b64(root), _b64(records[index]), _proof_arg(proof)]
        _accepts(crosscheck, "inclusion", *args)
        # The wrong record, a changed proof, another root: all rejected.
        _rejects(crosscheck, "inclusion", *args[:3], _b64(records[index] + b" "), args[4])
        if proof:
            _rejects(crosscheck, "inclusion", *args[:4], _proof_arg(_flip_first(proof)))
            _rejects(crosscheck, "inclusion", *args[:4], _proof_arg(proof[:-1]))
        if size > 1:
            other_root = _b64(store.root(size - 1))
            _rejects(crosscheck, "inclusion", *args[:2], other_root, *args[3:])


def test_our_consistency_proofs_check_in_go(
    crosscheck: Path, log_700: tuple[list[bytes], MemoryHashStore]
) -> None:
    records, store = log_700
    for size, old in _CONSISTENCY_CASES:
        proof = prove_tree(size, old, store.read_hashes)
        args = [str(size), str(old), _b64(store.root(size)), _b64(store.root(old))]
        _accepts(crosscheck, "consistency", *args, _proof_arg(proof))
        if proof:
            _rejects(crosscheck, "consistency", *args, _proof_arg(_flip_first(proof)))
        # A fork: the old root of another log.
        forked = MemoryHashStore([b"fork", *records[1:old]]).root()
        _rejects(crosscheck, "consistency", *args[:3], _b64(forked), _proof_arg(proof))


def test_gatekeeper_audit_export_verifies_in_go(crosscheck: Path, tmp_path: Path) -> None:
    """The real log and the real `audit export`: 600 decisions across 3 tiles."""
    import json as _json

    from gatekeeper.audit.log import AuditLog
    from gatekeeper.audit.note import open_checkpoint
    from gatekeeper.audit.tiles import export_tiles

    data_dir = tmp_path / "data"
    with AuditLog.open_sqlite(data_dir, origin="gatekeeper.test/export") as log:
        for i in range(600):
            log.append(_json.dumps({"n": i, "kind": "test"}, separators=(",", ":")).encode())
        note = log.latest_checkpoint() or ""
        checkpoint = open_checkpoint(note, log.keys.verifiers())
        export_tiles(log.store, note, checkpoint, tmp_path / "tiles")
        vkey = log.keys.vkey()
    _accepts(crosscheck, "tiles", str(tmp_path / "tiles"), vkey)
    entries = tmp_path / "tiles" / "tile" / "entries" / "001"
    data = bytearray(entries.read_bytes())
    data[10] ^= 1
    entries.write_bytes(bytes(data))
    _rejects(crosscheck, "tiles", str(tmp_path / "tiles"), vkey)
