"""Witnessing a log: a party outside the district keeps its checkpoints honest.

    gatekeeper audit witness --state ~/witness --vkey "$(cat log.vkey)" https://district.example/audit
    gatekeeper audit witness --state ~/witness /srv/exports/gatekeeper        # an export directory
    gatekeeper audit witness --state ~/witness /var/lib/gatekeeper            # a data directory

From Python::

    >>> from gatekeeper.audit.witness import WitnessState, open_source, witness
    >>> state = WitnessState("state/")
    >>> report = witness(open_source("tiles/"), state, vkeys=[vkey])   # doctest: +SKIP
    >>> report.ok, report.summary()                                     # doctest: +SKIP
    (True, 'ok: example.org/log grew from 20 to 37 entries: consistent')

Each run fetches the latest checkpoint from the source (a C2SP tlog-tiles
URL, a directory written by ``gatekeeper audit export``, or a data
directory read read-only), opens it with the pinned verifier key, and
compares it with the last checkpoint this state directory accepted:

- larger: the RFC 9162 consistency proof from the old size to the new one
  is computed from the source's hash tiles (only the tiles the proof needs,
  C2SP ``tlog-tiles``, as Go ``tlog.TileHashReader`` does: every tile is
  authenticated against the signed new root first, so broken tiles are told
  apart from a fork) with :func:`gatekeeper.audit.merkle.prove_tree`, and
  checked against both roots with :func:`gatekeeper.audit.merkle.check_tree`;
- equal size: the roots must be equal;
- smaller: a **rollback**; same size with another root, or a larger tree
  that does not contain the old one: a **fork**.

A rollback, a fork, a bad signature or tiles that do not match the signed
root are not accepted: the report is not ``ok`` (exit 1 on the command
line) and what was seen is kept in ``<state>/evidence/``; two checkpoints
signed by the log's key for the same size with different roots prove the
log equivocated. An accepted checkpoint is written atomically to
``<state>/checkpoint`` and kept in ``<state>/history/``.

State directory::

    vkeys                      the pinned verifier key(s), one a line (first use: --vkey)
    checkpoint                 the latest accepted signed checkpoint
    history/<size>.checkpoint  every accepted checkpoint (size zero-padded to 20 digits)
    evidence/<time>-<kind>.txt the checkpoints of a rollback, a fork, a bad signature
    .lock                      one witness run at a time

Nothing about the log's entries is fetched: a witness learns sizes and
hashes only.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from gatekeeper._files import write_atomic
from gatekeeper._logging import get_logger
from gatekeeper.audit import merkle
from gatekeeper.audit.note import Checkpoint, NoteError, Verifier, open_checkpoint
from gatekeeper.audit.serve import TileReader, TileRef
from gatekeeper.errors import GatekeeperError

__all__ = [
    "BadTiles",
    "DirectorySource",
    "HttpSource",
    "StoreSource",
    "TileHashReader",
    "TileSource",
    "WitnessError",
    "WitnessReport",
    "WitnessState",
    "open_source",
    "witness",
]

_log = get_logger("gatekeeper.witness")

#: Largest checkpoint note accepted (a signed note is a few hundred bytes).
MAX_CHECKPOINT_BYTES = 1 << 16
#: A hash tile is at most 256 hashes.
MAX_TILE_BYTES = merkle.TILE_WIDTH * merkle.HASH_SIZE

OK_STATUSES = frozenset({"first_seen", "unchanged", "consistent"})


class WitnessError(GatekeeperError):
    """The source could not be read, or the state directory is unusable."""

    reason = "witness_error"


# -- sources ---------------------------------------------------------------------


class TileSource(Protocol):
    """Where a log's C2SP resources come from: ``fetch`` returns None for a 404."""

    #: Shown in messages: the URL or directory.
    name: str

    def fetch(self, path: str, limit: int) -> bytes | None:
        """The resource at ``path`` (``checkpoint``, ``tile/0/000.p/5``), or None."""
        ...


class DirectorySource:
    """A directory of static tlog-tiles files (``gatekeeper audit export``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.name = str(self.root)

    def fetch(self, path: str, limit: int) -> bytes | None:
        target = self.root.joinpath(*path.split("/"))
        try:
            with target.open("rb") as handle:
                data = handle.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise WitnessError(f"cannot read {target}: {exc.strerror}") from exc
        if len(data) > limit:
            raise WitnessError(f"{target} is larger than {limit} bytes")
        return data


class StoreSource:
    """A gatekeeper data directory, read read-only; tiles generated as ``audit serve`` does."""

    def __init__(self, data_dir: str | Path) -> None:
        from gatekeeper.audit.readonly import open_readonly

        self.name = str(data_dir)
        self._reader = TileReader(open_readonly(data_dir), entries=False)

    def fetch(self, path: str, limit: int) -> bytes | None:
        data = self._reader.get(path)
        if data is not None and len(data) > limit:
            raise WitnessError(f"{path} in {self.name} is larger than {limit} bytes")
        return data

    def close(self) -> None:
        self._reader.store.close()


class HttpSource:
    """A log served over HTTP(S) as C2SP tlog-tiles (``<prefix>/checkpoint``, ``/tile/…``)."""

    def __init__(self, prefix: str, *, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(prefix)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise WitnessError(f"not an HTTP(S) URL: {prefix!r}")
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.name = prefix
        self.timeout = timeout

    def fetch(self, path: str, limit: int) -> bytes | None:
        url = urllib.parse.urljoin(self.prefix, path)
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            url, headers={"Accept-Encoding": "gzip, identity", "User-Agent": "gatekeeper-witness"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                data: bytes = response.read(limit + 1)
                encoding = response.headers.get("Content-Encoding", "identity")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise WitnessError(f"GET {url}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WitnessError(f"GET {url}: {reason}") from exc
        if encoding == "gzip":
            try:
                data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, limit + 1)
            except zlib.error as exc:
                raise WitnessError(f"GET {url}: bad gzip body") from exc
        elif encoding not in ("identity", ""):
            raise WitnessError(f"GET {url}: unexpected Content-Encoding {encoding!r}")
        if len(data) > limit:
            raise WitnessError(f"GET {url}: larger than {limit} bytes")
        return data


def open_source(spec: str | Path) -> TileSource:
    """The source ``spec`` names: an HTTP(S) URL, a data directory or an export directory."""
    text = str(spec)
    if text.startswith(("http://", "https://")):
        return HttpSource(text)
    path = Path(text)
    if (path / "audit.sqlite").is_file():
        return StoreSource(path)
    if (path / "checkpoint").is_file():
        return DirectorySource(path)
    raise WitnessError(
        f"{text}: not an HTTP(S) URL, a data directory (audit.sqlite) "
        "or an export directory (checkpoint)"
    )


# -- hashes from tiles -----------------------------------------------------------


def _tile_hash(data: bytes) -> bytes:
    """The hash of the complete subtree whose 2**k leaves (at one level) are ``data``."""
    if len(data) == merkle.HASH_SIZE:
        return data
    half = len(data) // 2
    return merkle.node_hash(_tile_hash(data[:half]), _tile_hash(data[half:]))


class BadTiles(WitnessError):
    """The source's hash tiles do not hash to the signed root (or to their parent tiles)."""

    reason = "witness_bad_tiles"


class TileHashReader:
    """A :data:`~gatekeeper.audit.merkle.ReadHashes` over a source's hash tiles for the
    tree (``size``, ``root``) of a verified checkpoint, every tile authenticated.

    As Go ``tlog.TileHashReader``: a stored hash at level ``l`` lives in the
    tile at level ``l // 8`` (levels between tile levels are recomputed from
    the tile's hashes). Before the first hash is returned, the tiles that make
    up the root (the rightmost tile of each level, and what the root needs)
    are fetched and must hash to ``root``; any other tile is a full tile and
    must hash to its entry in its (authenticated) parent tile. A tile that
    does not is :class:`BadTiles`. Each tile is fetched once; a missing
    partial tile falls back to the full tile (C2SP lets a log delete partial
    tiles once the full one exists).
    """

    def __init__(self, source: TileSource, size: int, root: bytes) -> None:
        self.source = source
        self.size = size
        self.root = root
        self._tiles: dict[TileRef, bytes] = {}
        self._trusted: set[TileRef] = set()
        self._bootstrapped = False
        #: Paths fetched, in order (for tests and diagnostics).
        self.fetched: list[str] = []

    def _fetch(self, ref: TileRef) -> bytes:
        cached = self._tiles.get(ref)
        if cached is not None:
            return cached
        want = ref.width * merkle.HASH_SIZE
        self.fetched.append(ref.path)
        data = self.source.fetch(ref.path, MAX_TILE_BYTES)
        if data is None and not ref.full:
            full = TileRef(ref.level, ref.index, merkle.TILE_WIDTH)
            self.fetched.append(full.path)
            data = self.source.fetch(full.path, MAX_TILE_BYTES)
            if data is not None and len(data) == MAX_TILE_BYTES:
                data = data[:want]
        if data is None:
            raise WitnessError(f"{self.source.name}: tile {ref.path} not found")
        if len(data) != want:
            raise BadTiles(f"{self.source.name}: tile {ref.path} has {len(data)} bytes, not {want}")
        self._tiles[ref] = data
        return data

    def _locate(self, index: int) -> tuple[TileRef, int, int]:
        """The tile holding stored hash ``index`` in this tree, and the hash range
        (in tile hashes) whose subtree hash it is."""
        height = merkle.TILE_HEIGHT
        level, n = merkle.split_stored_hash_index(index)
        tile_level = level // height
        sub = level - tile_level * height  # the level inside the tile
        tile_index = (n << sub) >> height
        n_in_tile = n - ((tile_index << height) >> sub)
        start, end = n_in_tile << sub, (n_in_tile + 1) << sub
        available = self.size >> (height * tile_level)
        width = min(merkle.TILE_WIDTH, available - tile_index * merkle.TILE_WIDTH)
        if width < end:
            raise merkle.ProofError(
                f"stored hash {index} is not in a tree of size {self.size}",
                reason="audit_hash_store_invalid",
            )
        return TileRef(tile_level, tile_index, width), start, end

    def _hash(self, index: int, tile: bytes, start: int, end: int) -> bytes:
        return _tile_hash(tile[start * merkle.HASH_SIZE : end * merkle.HASH_SIZE])

    def verify_root(self) -> None:
        """Fetch the tiles the root is made of; BadTiles unless they hash to the signed root."""
        if self._bootstrapped:
            return
        used: list[TileRef] = []

        def read(indexes: Sequence[int]) -> list[bytes]:
            out = []
            for index in indexes:
                ref, start, end = self._locate(index)
                used.append(ref)
                out.append(self._hash(index, self._fetch(ref), start, end))
            return out

        root = merkle.tree_hash(self.size, read)
        if root != self.root:
            raise BadTiles(
                f"{self.source.name}: the hash tiles give root {_b64(root)}, but the signed "
                f"checkpoint of size {self.size} says {_b64(self.root)}"
            )
        self._trusted.update(used)
        self._bootstrapped = True

    def _authenticated(self, ref: TileRef) -> bytes:
        data = self._fetch(ref)
        if ref in self._trusted:
            return data
        if not ref.full or ref.level is None:
            raise BadTiles(f"{self.source.name}: partial tile {ref.path} is not part of the root")
        parent_level = ref.level + 1
        parent_index = ref.index >> merkle.TILE_HEIGHT
        available = self.size >> (merkle.TILE_HEIGHT * parent_level)
        width = min(merkle.TILE_WIDTH, available - parent_index * merkle.TILE_WIDTH)
        position = ref.index & (merkle.TILE_WIDTH - 1)
        if width <= position:
            raise BadTiles(f"{self.source.name}: tile {ref.path} has no parent in the tree")
        parent = TileRef(parent_level, parent_index, width)
        expected = self._authenticated(parent)[
            position * merkle.HASH_SIZE : (position + 1) * merkle.HASH_SIZE
        ]
        if _tile_hash(data) != expected:
            raise BadTiles(
                f"{self.source.name}: tile {ref.path} does not hash to its entry in {parent.path}"
            )
        self._trusted.add(ref)
        return data

    def __call__(self, indexes: Sequence[int]) -> list[bytes]:
        self.verify_root()
        out: list[bytes] = []
        for index in indexes:
            ref, start, end = self._locate(index)
            out.append(self._hash(index, self._authenticated(ref), start, end))
        return out


# -- state -----------------------------------------------------------------------


class WitnessState:
    """A witness's memory of one log: pinned keys, the latest checkpoint, the history."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state directory's lock (one witness run at a time)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle = (self.dir / ".lock").open("a")
        except OSError as exc:
            raise WitnessError(f"cannot use the state directory {self.dir}: {exc}") from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def vkeys(self) -> list[str]:
        """The pinned verifier keys ([] before the first run)."""
        path = self.dir / "vkeys"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise WitnessError(f"cannot read {path}: {exc.strerror}") from exc
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    def pin(self, vkeys: Sequence[str]) -> None:
        write_atomic(
            self.dir / "vkeys", "".join(f"{v}\n" for v in vkeys).encode("utf-8"), sync_dir=True
        )

    def latest(self) -> str | None:
        """The latest accepted checkpoint note, or None."""
        path = self.dir / "checkpoint"
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise WitnessError(f"cannot read {path}: {exc}") from exc

    def accept(self, note: str, checkpoint: Checkpoint) -> None:
        """Keep ``note`` in the history, then make it the latest (both atomic)."""
        data = note.encode("utf-8")
        write_atomic(
            self.dir / "history" / f"{checkpoint.size:020d}.checkpoint", data, sync_dir=True
        )
        write_atomic(self.dir / "checkpoint", data, sync_dir=True)

    def history(self) -> list[Path]:
        return sorted((self.dir / "history").glob("*.checkpoint"))

    def keep_evidence(self, kind: str, text: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.dir / "evidence" / f"{stamp}-{kind}.txt"
        write_atomic(path, text.encode("utf-8"), sync_dir=True)
        return path


# -- witnessing ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WitnessReport:
    """What one witness run found. ``status``: ``first_seen``, ``unchanged``,
    ``consistent`` (accepted), or ``rollback``, ``fork``, ``bad_signature``,
    ``bad_tiles`` (not accepted)."""

    status: str
    source: str
    origin: str | None = None
    old_size: int | None = None
    new_size: int | None = None
    new_root: bytes | None = None
    detail: str = ""
    evidence: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def summary(self) -> str:
        """One line for people."""
        root = "" if self.new_root is None else base64.b64encode(self.new_root).decode()
        if self.status == "first_seen":
            return (
                f"ok: {self.origin} at {self.new_size} entries, first checkpoint seen; root {root}"
            )
        if self.status == "unchanged":
            return f"ok: {self.origin} unchanged at {self.new_size} entries; root {root}"
        if self.status == "consistent":
            return (
                f"ok: {self.origin} grew from {self.old_size} to {self.new_size} entries: "
                f"consistent; root {root}"
            )
        where = f" (evidence: {self.evidence})" if self.evidence else ""
        return f"{self.status.upper().replace('_', ' ')}: {self.detail}{where}"

    def raise_for_status(self) -> None:
        """The raising twin: WitnessError unless the checkpoint was accepted."""
        if not self.ok:
            raise WitnessError(self.summary(), reason=f"witness_{self.status}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _evidence_text(kind: str, source: str, old_note: str | None, new_note: str, detail: str) -> str:
    held = old_note if old_note is not None else "(none)\n"
    return (
        f"kind: {kind}\nsource: {source}\nseen: {datetime.now(UTC).isoformat()}\n"
        f"detail: {detail}\n\n--- checkpoint held by this witness ---\n{held}"
        f"\n--- checkpoint served by the source ---\n{new_note}"
    )


def _resolve_vkeys(state: WitnessState, vkeys: Sequence[str]) -> tuple[list[str], bool]:
    pinned = state.vkeys()
    given = list(dict.fromkeys(v.strip() for v in vkeys if v.strip()))
    if pinned:
        if given and set(given) != set(pinned):
            raise WitnessError(
                f"the state directory {state.dir} pins other verifier keys ({', '.join(pinned)}); "
                "use a new state directory, or edit its vkeys file on purpose (key rotation)"
            )
        return pinned, False
    if not given:
        raise WitnessError(
            f"the state directory {state.dir} pins no verifier key yet: give the log's --vkey "
            "(gatekeeper audit vkey), obtained from the district out of band"
        )
    return given, True


def witness(source: TileSource, state: WitnessState, *, vkeys: Sequence[str] = ()) -> WitnessReport:
    """Fetch, verify and record the source's latest checkpoint; never raises for what it finds.

    Raises :class:`WitnessError` only when the source cannot be read or the
    state directory is unusable; a rollback, a fork, a bad signature or bad
    tiles are reported (``report.ok`` is False) and not accepted.
    """
    with state.locked():
        keys, first_use = _resolve_vkeys(state, vkeys)
        try:
            verifiers = [Verifier(v) for v in keys]
        except NoteError as exc:
            raise WitnessError(f"bad verifier key: {exc}") from exc
        raw = source.fetch("checkpoint", MAX_CHECKPOINT_BYTES)
        if raw is None:
            raise WitnessError(f"{source.name}: no checkpoint")
        try:
            new_note = raw.decode("utf-8")
        except UnicodeDecodeError:
            new_note = raw.decode("utf-8", "replace")
        old_note = state.latest()

        def refuse(
            kind: str, detail: str, new: Checkpoint | None = None, old_size: int | None = None
        ) -> WitnessReport:
            evidence = state.keep_evidence(
                kind, _evidence_text(kind, source.name, old_note, new_note, detail)
            )
            _log.error("witness_alert", kind=kind, source=source.name, detail=detail)
            return WitnessReport(
                kind,
                source.name,
                origin=None if new is None else new.origin,
                old_size=old_size,
                new_size=None if new is None else new.size,
                new_root=None if new is None else new.root,
                detail=detail,
                evidence=evidence,
            )

        try:
            new = open_checkpoint(new_note, verifiers)
        except NoteError as exc:
            return refuse(
                "bad_signature", f"the checkpoint from {source.name} does not verify: {exc}"
            )
        if first_use:
            state.pin(keys)
        if old_note is None:
            try:
                TileHashReader(source, new.size, new.root).verify_root()
            except BadTiles as exc:
                return refuse("bad_tiles", str(exc), new)
            state.accept(new_note, new)
            return WitnessReport("first_seen", source.name, new.origin, None, new.size, new.root)
        try:
            old = open_checkpoint(old_note, verifiers)
        except NoteError as exc:
            raise WitnessError(
                f"the checkpoint kept in {state.dir / 'checkpoint'} no longer verifies: {exc}"
            ) from exc
        if new.origin != old.origin:
            detail = f"origin {new.origin!r} is not the origin {old.origin!r} seen before"
            return refuse("fork", detail, new, old.size)
        if new.size < old.size:
            return refuse(
                "rollback",
                f"{new.origin}: the log now shows {new.size} entries, but this witness saw "
                f"{old.size} (root {_b64(old.root)}): entries were removed or an old copy "
                "was restored",
                new,
                old.size,
            )
        if new.size == old.size:
            if new.root != old.root:
                return refuse(
                    "fork",
                    f"{new.origin}: two signed checkpoints of size {new.size} with different "
                    f"roots ({_b64(old.root)} seen before, {_b64(new.root)} now): the log's "
                    "history was rewritten",
                    new,
                    old.size,
                )
            return WitnessReport("unchanged", source.name, new.origin, old.size, new.size, new.root)
        reader = TileHashReader(source, new.size, new.root)
        try:
            reader.verify_root()
            proof = merkle.prove_tree(new.size, old.size, reader) if old.size > 0 else []
        except BadTiles as exc:
            return refuse("bad_tiles", str(exc), new, old.size)
        if old.size > 0:
            try:
                merkle.check_tree(proof, new.size, new.root, old.size, old.root)
            except merkle.ProofError as exc:
                return refuse(
                    "fork",
                    f"{new.origin}: the tree of size {new.size} does not extend the tree of "
                    f"size {old.size} seen before (root {_b64(old.root)}): {exc}",
                    new,
                    old.size,
                )
        state.accept(new_note, new)
        _log.info("witness_consistent", origin=new.origin, old_size=old.size, new_size=new.size)
        return WitnessReport("consistent", source.name, new.origin, old.size, new.size, new.root)
