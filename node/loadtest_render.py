"""Render a report page in headless Chromium and check the picture is not blank.

:func:`screenshot` runs Debian's ``chromium`` (``apt-get install -y chromium``) with
everything that would reach the network switched off; :func:`ink_fraction` decodes the
PNG in pure Python (zlib and the five PNG row filters) and tells how much of it is not
white. ``scripts/render-report REPORT.html [OUT.png]`` does both from the shell.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from ledger.errors import LocalError

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
WINDOW_SIZE = "1200,1600"
RENDER_TIMEOUT_SECONDS = 90.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A pixel is ink when some channel is darker than this (anti-aliased edges included).
WHITE_THRESHOLD = 245
# 8-bit colour types we decode: greyscale, RGB, greyscale+alpha, RGBA (not palettes).
CHANNELS_BY_COLOUR_TYPE = {0: 1, 2: 3, 4: 2, 6: 4}


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


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(PNG_SIGNATURE):
        raise RenderError("not a PNG file")
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        chunks.append((kind, data[offset + 8:offset + 8 + length]))
        offset += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _unfilter(kind: int, line: bytearray, prior: bytes, step: int) -> None:
    """Undo one row's PNG filter in place (RFC 2083 section 6)."""
    width = len(line)
    if kind == 1:
        for index in range(step, width):
            line[index] = (line[index] + line[index - step]) & 0xFF
    elif kind == 2:
        line[:] = bytes((value + above) & 0xFF for value, above in zip(line, prior,
                                                                         strict=True))
    elif kind == 3:
        for index in range(width):
            left = line[index - step] if index >= step else 0
            line[index] = (line[index] + ((left + prior[index]) >> 1)) & 0xFF
    elif kind == 4:
        for index in range(width):
            left = line[index - step] if index >= step else 0
            above = prior[index]
            upper_left = prior[index - step] if index >= step else 0
            estimate = left + above - upper_left
            distance_left = abs(estimate - left)
            distance_above = abs(estimate - above)
            distance_upper_left = abs(estimate - upper_left)
            if distance_left <= distance_above and distance_left <= distance_upper_left:
                predictor = left
            elif distance_above <= distance_upper_left:
                predictor = above
            else:
                predictor = upper_left
            line[index] = (line[index] + predictor) & 0xFF
    elif kind != 0:
        raise RenderError(f"unknown PNG filter {kind}")


def decode_rows(data: bytes, *, rows_max: int | None = None) -> tuple[int, int, list[bytes]]:
    """(width, channels, rows) of an 8-bit non-interlaced PNG; the first ``rows_max`` rows
    only when given (each row depends only on those above it)."""
    chunks = _chunks(data)
    header = next((body for kind, body in chunks if kind == b"IHDR"), None)
    if header is None:
        raise RenderError("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = CHANNELS_BY_COLOUR_TYPE.get(colour)
    if depth != 8 or channels is None or interlace:
        raise RenderError(f"PNG of depth {depth}, colour type {colour}, interlace {interlace}")
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * channels
    rows: list[bytes] = []
    prior = bytes(stride)
    for row in range(height if rows_max is None else min(height, rows_max)):
        start = row * (stride + 1)
        line = bytearray(pixels[start + 1:start + 1 + stride])
        _unfilter(pixels[start], line, prior, channels)
        prior = bytes(line)
        rows.append(prior)
    return width, channels, rows


def ink_fraction(png_path: Path, *, rows_max: int | None = None) -> float:
    """The fraction of pixels (of the first ``rows_max`` rows) that are not white."""
    _, channels, rows = decode_rows(png_path.read_bytes(), rows_max=rows_max)
    colour_channels = 1 if channels <= 2 else 3
    ink = total = 0
    for row in rows:
        for start in range(0, len(row), channels):
            total += 1
            if min(row[start:start + colour_channels]) < WHITE_THRESHOLD:
                ink += 1
    return ink / total if total else 0.0


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
