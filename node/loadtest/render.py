"""Render a report page in headless Chromium and check the picture is not blank.

:func:`screenshot` runs Debian's ``chromium`` (``apt-get install -y chromium``) with
everything that would reach the network switched off; :func:`ink_fraction` reads the
PNG with Pillow and tells how much of it is not white.
``scripts/render-report REPORT.html [OUT.png]`` does both from the shell.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ledger.errors import LocalError

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
WINDOW_SIZE = "1200,1600"
RENDER_TIMEOUT_SECONDS = 90.0
# A pixel is ink when some channel is darker than this (anti-aliased edges included).
WHITE_THRESHOLD = 245


class RenderError(LocalError):
    """Chromium is missing, failed, or wrote no picture; or the PNG is not one we read."""


def chromium_path() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


def screenshot(html_path: Path, png_path: Path, *, window_size: str = WINDOW_SIZE) -> Path:
    chromium = chromium_path()
    if chromium is None:
        raise RenderError("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="medledger-chromium-") as profile:
        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={png_path}",
            f"--window-size={window_size}", html_path.resolve().as_uri(),
        ]
        try:
            completed = subprocess.run(command, capture_output=True, text=True,
                                       timeout=RENDER_TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            raise RenderError(f"chromium took over {RENDER_TIMEOUT_SECONDS} s") from None
    if not png_path.exists() or png_path.stat().st_size == 0:
        raise RenderError(f"chromium wrote no screenshot (exit {completed.returncode}): "
                          f"{completed.stderr[-500:]}")
    return png_path


def ink_fraction(png_path: Path, *, rows_max: int | None = None) -> float:
    """The fraction of pixels (of the first ``rows_max`` rows) that are not white: some
    colour channel darker than WHITE_THRESHOLD."""
    try:
        from PIL import Image, ImageChops, UnidentifiedImageError
    except ImportError:
        raise RenderError("reading screenshots needs pillow, the load tester's extra: "
                          "pip install 'medledger[loadtest]'") from None
    try:
        with Image.open(png_path) as opened:
            image = opened.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise RenderError(f"{png_path} is not a picture we can read: {error}") from None
    if rows_max is not None:
        image = image.crop((0, 0, image.width, min(image.height, rows_max)))
    if image.width == 0 or image.height == 0:
        return 0.0
    # Per channel: 255 where darker than the threshold; a pixel is ink if any channel is.
    masks = [band.point(lambda value: 255 if value < WHITE_THRESHOLD else 0)
             for band in image.split()]
    ink = ImageChops.lighter(ImageChops.lighter(masks[0], masks[1]), masks[2])
    return ink.histogram()[255] / (image.width * image.height)


def main(argv: Sequence[str]) -> int:
    if not argv or len(argv) > 2:
        print("usage: render-report REPORT.html [OUT.png]", file=sys.stderr)
        return 2
    html_path = Path(argv[0])
    png_path = Path(argv[1]) if len(argv) > 1 else html_path.with_suffix(".png")
    screenshot(html_path, png_path)
    print(f"{png_path}: {ink_fraction(png_path):.1%} of the pixels are not white")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
