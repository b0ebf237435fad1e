"""Export a log as a C2SP tlog-tiles directory (static files any HTTP server can serve).

    gatekeeper audit export ./tiles
    # ./tiles/checkpoint, ./tiles/tile/0/000, ./tiles/tile/0/001.p/17, ...
    #                     ./tiles/tile/entries/000, ...

Hash tiles hold the 32-byte hashes at tree level 8·L; entry tiles hold the
entries, each prefixed by its length as a big-endian uint16. Only tiles up
to the exported checkpoint's size are written, so the directory is
consistent with its ``checkpoint`` file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from gatekeeper.audit import merkle
from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.note import Checkpoint
from gatekeeper.audit.store import AuditStore

if TYPE_CHECKING:
    from gatekeeper.audit.readonly import LogReader

__all__ = ["entry_bundle", "export_tiles"]

WIDTH = 1 << merkle.TILE_HEIGHT


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _spans(count: int) -> list[tuple[int, int]]:
    """(tile index, width) of the tiles covering ``count`` items at one level."""
    spans = [(i, WIDTH) for i in range(count // WIDTH)]
    if count % WIDTH:
        spans.append((count // WIDTH, count % WIDTH))
    return spans


def entry_bundle(store: LogReader, index: int, width: int) -> bytes:
    """The C2SP entry bundle ``tile/entries/<index>[.p/<width>]``: entries
    ``index*256`` to ``index*256 + width - 1``, each prefixed by its length
    (big-endian uint16)."""
    start = index * WIDTH
    entries = store.read_entries(start, start + width)
    if len(entries) != width:
        raise AuditError(f"entries {start}..{start + width - 1} are incomplete in the store")
    chunks = []
    for entry in entries:
        if len(entry.data) > 0xFFFF:
            raise AuditError(f"entry {entry.index} is larger than 65535 bytes")
        chunks.append(len(entry.data).to_bytes(2, "big") + entry.data)
    return b"".join(chunks)


def export_tiles(store: AuditStore, note: str, checkpoint: Checkpoint, out: str | Path) -> int:
    """Write the tiles for ``checkpoint`` (whose signed ``note`` becomes
    ``checkpoint``) into ``out``; return the number of files written."""
    size = checkpoint.size
    if size > store.size():
        raise AuditError("the checkpoint is larger than the log")
    base = Path(out)
    written = 0
    level = 0
    while (size >> (merkle.TILE_HEIGHT * level)) > 0:
        for index, width in _spans(size >> (merkle.TILE_HEIGHT * level)):
            data = merkle.hash_tile(level, index, width, store.read_hashes)
            _write(base / merkle.tile_path(level, index, width), data)
            written += 1
        level += 1
    for index, width in _spans(size):
        _write(base / merkle.entries_tile_path(index, width), entry_bundle(store, index, width))
        written += 1
    _write(base / "checkpoint", note.encode("utf-8"))
    return written + 1
