"""Serving the log read-only as C2SP tlog-tiles over HTTP (``gatekeeper audit serve``).

    gatekeeper --data-dir /var/lib/gatekeeper audit serve --port 8800
    curl http://127.0.0.1:8800/checkpoint
    curl http://127.0.0.1:8800/tile/0/000.p/37 | xxd | head      # level-0 hashes
    curl http://127.0.0.1:8800/tile/entries/000.p/37              # the entries (loopback)

From Python (tests, or an application mounting the tiles beside its own routes)::

    >>> from gatekeeper.audit.readonly import open_readonly
    >>> from gatekeeper.audit.serve import TileReader, tiles_app
    >>> app = tiles_app(TileReader(open_readonly(".gatekeeper")))    # doctest: +SKIP

Every resource is generated on demand from the store (opened read-only,
:mod:`gatekeeper.audit.readonly`), and only up to the size of the latest
signed checkpoint, so what is served is always consistent with the served
``checkpoint``:

=====================================  ==========================  =========================
path                                   body                        ``Cache-Control``
=====================================  ==========================  =========================
``/checkpoint``                        the latest signed note      ``max-age=2`` (mutable)
``/tile/<L>/<N>``                      256 hashes of level 8·L     a year, ``immutable``
``/tile/<L>/<N>.p/<W>``                the first W of them         ``max-age=60``
``/tile/entries/<N>[.p/<W>]``          length-prefixed entries     as the hash tiles
=====================================  ==========================  =========================

A resource the tree does not have (yet) is a 404; a path not in the C2SP
form is a 404 too; a store error is a 503. Entry bundles are gzipped when
the client accepts it (the spec asks for compression).

Entries name students, requesters and the policy input of each decision:
they are served on loopback only, unless explicitly enabled
(``--entries``). A witness needs only the checkpoint and the hash tiles.

Built on Starlette and uvicorn, imported lazily (the ``proxy`` extra): the
same ASGI app can be mounted by the OneRoster proxy, and the shared runner
(:mod:`gatekeeper._serving`) already handles binding and shutdown.
"""

from __future__ import annotations

import gzip
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gatekeeper.audit import merkle
from gatekeeper.audit.note import Checkpoint
from gatekeeper.audit.tiles import entry_bundle
from gatekeeper.errors import GatekeeperError

if TYPE_CHECKING:
    from gatekeeper.audit.readonly import LogReader

__all__ = [
    "CHECKPOINT_CACHE",
    "FULL_TILE_CACHE",
    "PARTIAL_TILE_CACHE",
    "TileReader",
    "TileRef",
    "is_loopback",
    "parse_tile_path",
    "run_server",
    "tiles_app",
]

CHECKPOINT_CACHE = "no-cache, max-age=2"
FULL_TILE_CACHE = "public, max-age=31536000, immutable"
PARTIAL_TILE_CACHE = "public, max-age=60"

_TILE_PATH = re.compile(
    r"tile/(?P<level>entries|0|[1-9][0-9]?)/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


@dataclass(frozen=True, slots=True)
class TileRef:
    """One tile: ``level`` None for an entry bundle; ``width`` 256 for a full tile."""

    level: int | None
    index: int
    width: int

    @property
    def full(self) -> bool:
        return self.width == merkle.TILE_WIDTH

    @property
    def path(self) -> str:
        if self.level is None:
            return merkle.entries_tile_path(self.index, self.width)
        return merkle.tile_path(self.level, self.index, self.width)


def parse_tile_path(path: str) -> TileRef | None:
    """The tile a C2SP path names (``tile/1/x001/234.p/7``), or None if not canonical."""
    match = _TILE_PATH.fullmatch(path.lstrip("/"))
    if match is None:
        return None
    level_text = match["level"]
    level = None if level_text == "entries" else int(level_text)
    if level is not None and level > 63:
        return None
    index = int(match["index"].replace("x", "").replace("/", ""))
    width = int(match["width"]) if match["width"] else merkle.TILE_WIDTH
    if match["width"] and width >= merkle.TILE_WIDTH:
        return None
    ref = TileRef(level, index, width)
    # Reject non-canonical spellings (e.g. x000/001 for 001) by round-tripping.
    return ref if ref.path == path.lstrip("/") else None


def checkpoint_size(note: str) -> int:
    """The tree size a signed checkpoint note states (its signatures are not checked here)."""
    text, sep, _ = note.partition("\n\n")
    if not sep:
        raise GatekeeperError("the stored checkpoint is not a signed note", reason="audit_invalid")
    return Checkpoint.parse(text + "\n").size


class TileReader:
    """The C2SP resources of one log, generated from its store on demand."""

    def __init__(self, store: LogReader, *, entries: bool = True) -> None:
        self.store = store
        #: Whether entry bundles are served (they hold decision entries).
        self.entries = entries

    def checkpoint(self) -> str | None:
        """The latest signed checkpoint note, or None for a log without one."""
        return self.store.latest_checkpoint()

    def size(self) -> int:
        """The size of the latest checkpoint: nothing beyond it is served."""
        note = self.checkpoint()
        return 0 if note is None else checkpoint_size(note)

    def tile(self, ref: TileRef, size: int | None = None) -> bytes | None:
        """The bytes of ``ref`` in the tree of ``size`` (default: the latest
        checkpoint's), or None when that tree does not have it."""
        tree = self.size() if size is None else size
        level = 0 if ref.level is None else ref.level
        available = tree >> (merkle.TILE_HEIGHT * level)
        if ref.index * merkle.TILE_WIDTH + ref.width > available:
            return None
        if ref.level is None:
            return entry_bundle(self.store, ref.index, ref.width) if self.entries else None
        return merkle.hash_tile(ref.level, ref.index, ref.width, self.store.read_hashes)

    def get(self, path: str) -> bytes | None:
        """The resource at a C2SP path (``checkpoint`` or a tile), or None."""
        if path.lstrip("/") == "checkpoint":
            note = self.checkpoint()
            return None if note is None else note.encode("utf-8")
        ref = parse_tile_path(path)
        return None if ref is None else self.tile(ref)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tiles_app(reader: TileReader) -> Any:
    """A Starlette app serving ``reader`` as C2SP tlog-tiles (GET and HEAD only)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def _plain(status: int, text: str) -> Response:
        return Response(
            text + "\n",
            status_code=status,
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    def checkpoint(request: Request) -> Response:
        try:
            note = reader.checkpoint()
        except GatekeeperError:
            return _plain(503, "the audit log is unavailable")
        if note is None:
            return _plain(404, "the log has no checkpoint yet")
        return Response(
            note.encode("utf-8"),
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": CHECKPOINT_CACHE, "X-Content-Type-Options": "nosniff"},
        )

    def tile(request: Request) -> Response:
        ref = parse_tile_path("tile/" + request.path_params["rest"])
        if ref is None:
            return _plain(404, "not a C2SP tile path")
        try:
            data = reader.tile(ref)
        except GatekeeperError:
            return _plain(503, "the audit log is unavailable")
        if data is None:
            return _plain(404, "no such tile in the latest checkpoint's tree")
        headers = {
            "Cache-Control": FULL_TILE_CACHE if ref.full else PARTIAL_TILE_CACHE,
            "X-Content-Type-Options": "nosniff",
        }
        if ref.level is None:
            headers["Vary"] = "Accept-Encoding"
            if "gzip" in request.headers.get("accept-encoding", ""):
                data = gzip.compress(data, compresslevel=6, mtime=0)
                headers["Content-Encoding"] = "gzip"
        return Response(data, media_type="application/octet-stream", headers=headers)

    return Starlette(
        routes=[
            Route("/checkpoint", checkpoint, methods=["GET", "HEAD"]),
            Route("/tile/{rest:path}", tile, methods=["GET", "HEAD"]),
        ]
    )


def run_server(
    reader: TileReader,
    *,
    host: str = "127.0.0.1",
    port: int = 8800,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``reader`` in the foreground until SIGINT/SIGTERM (uvicorn)."""
    from gatekeeper._serving import serve_forever

    serve_forever(tiles_app(reader), host, port, ready=ready)
