"""The layer boundaries of ARCHITECTURE.md, read from the imports of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE_FORBIDDEN = {"trio", "plyvel", "libp2p", "socket", "threading", "asyncio", "time", "random"}
SHELL_ONLY = {"trio", "libp2p", "hypercorn", "trio_websocket"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["ledger", "consensus"])
def test_pure_core_imports_no_io_clock_or_randomness(package: str) -> None:
    offenders = {}
    for path in python_files(package):
        forbidden = PURE_FORBIDDEN
        relative = path.relative_to(ROOT)
        # The simulator builds its own seeded random.Random; nothing else in the core may.
        if relative.parts[:2] == ("consensus", "sim"):
            forbidden = forbidden - {"random"}
        bad = imported_modules(path) & forbidden
        if bad:
            offenders[str(relative)] = sorted(bad)
    assert offenders == {}


def test_only_storage_imports_plyvel() -> None:
    # Tests and scripts too: what they need below the store is storage.raw.open_raw.
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("ledger", "consensus", "node", "tests", "scripts")
        for path in python_files(package)
        if "plyvel" in imported_modules(path)
    ]
    assert offenders == []


def test_only_node_imports_trio_libp2p_or_http() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & SHELL_ONLY)
        for package in ("ledger", "consensus", "storage")
        for path in python_files(package)
        if imported_modules(path) & SHELL_ONLY
    }
    assert offenders == {}


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom time import monotonic\nimport trio.lowlevel\n")
    assert imported_modules(sample) & PURE_FORBIDDEN == {"time", "trio"}
