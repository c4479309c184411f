"""The running medledger's version, from the installed distribution's metadata (the one
number in pyproject.toml), and what it runs on: for `medledger --version`, `/version`
and the `medledger_build_info` metric."""

from __future__ import annotations

import importlib.metadata
import platform


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


VERSION = _distribution_version("medledger")
LIBP2P_VERSION = _distribution_version("libp2p")


def build_info() -> dict[str, str]:
    return {"version": VERSION, "python": platform.python_version(), "libp2p": LIBP2P_VERSION}
