"""Where a load test ran, for the report: the load tester's software and host (CPU model,
cores, memory, kernel), and each target node's software from its /version, so that two
reports compared later say whether they measured the same thing."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from node.loadtest.chain import TargetInfo
from node.version import build_info

VERSION_TIMEOUT_SECONDS = 5.0
# The libraries whose versions move a node's figures.
LIBRARIES = ("trio", "libp2p", "plyvel", "cryptography", "httpx")


def _library_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def host() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "kernel": platform.release(),
        "system": platform.system(),
        "machine": platform.machine(),
    }


async def _node_version(client: httpx.AsyncClient, target: TargetInfo) -> dict[str, Any]:
    url = target.url.rstrip("/") + "/version"
    try:
        response = await client.get(url)
        if response.status_code == 200:
            return {"url": target.url, "role": target.role, **response.json()}
        error = f"HTTP {response.status_code}"
    except (httpx.HTTPError, ValueError) as failure:
        error = repr(failure)
    return {"url": target.url, "role": target.role, "error": error}


async def describe(targets: Sequence[TargetInfo]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=VERSION_TIMEOUT_SECONDS) as client:
        nodes = [await _node_version(client, target) for target in targets]
    return {
        "load_tester": {**build_info(),
                        "libraries": {name: _library_version(name) for name in LIBRARIES}},
        "host": host(),
        "nodes": nodes,
    }
