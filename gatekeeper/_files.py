"""Atomic file writes: readers see the old file or the new one, whole, never a part."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int | None = None,
    dir_mode: int = 0o777,
    sync_dir: bool = False,
) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file and ``os.replace``.

    ``mode``: the file's permission bits (the temporary file is created 0600
    either way, so a private file is never readable by others, even briefly).
    ``dir_mode``: for parent directories this creates. ``sync_dir``: also fsync
    the directory, so the rename itself survives a crash.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
