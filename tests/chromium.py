"""Headless Chromium (Debian's ``chromium``) for the report and UI tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import skip_or_fail


def chromium() -> str:
    """The Chromium binary: $GATEKEEPER_CHROMIUM, or chromium on PATH; none: skip, or
    fail under CI=true / GATEKEEPER_REQUIRE_ALL=1."""
    named = os.environ.get("GATEKEEPER_CHROMIUM")
    found = (
        (named if named and shutil.which(named) else None)
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not found:
        skip_or_fail(
            "no chromium: run scripts/ensure-chromium (Debian package 'chromium') "
            "or set GATEKEEPER_CHROMIUM"
        )
    return found


def browse(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Open ``url`` headless with ``args`` (``--dump-dom``, ``--screenshot=...``)."""
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args, url],
        capture_output=True, timeout=180, check=False,
    )  # fmt: skip


def screenshot_is_a_page(png: Path, size: tuple[int, int], *, flat_below: float) -> int:
    """A non-blank PNG of ``size`` with text and colour, no single colour covering
    ``flat_below`` of it or more; returns its colour count."""
    from PIL import Image

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        assert image.size == size
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 24) or []
        darkest = rgb.convert("L").getextrema()[0]
    assert len(colours) > 50, "a blank or flat screenshot"
    assert darkest < 80, "no text drawn"
    assert max(colours)[0] / (size[0] * size[1]) < flat_below, "almost all one colour"
    return len(colours)
