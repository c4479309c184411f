"""consensus/ is pure: no I/O, clock, threads or global randomness (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "consensus"
FORBIDDEN = {"trio", "plyvel", "libp2p", "socket", "threading", "asyncio", "time", "random"}
# The simulator builds its own seeded random.Random; nothing else may import random.
RANDOM_ALLOWED_UNDER = PACKAGE / "sim"


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def test_consensus_imports_no_io_clock_threads_or_global_random() -> None:
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        forbidden = imported_modules(path) & FORBIDDEN
        if RANDOM_ALLOWED_UNDER in path.parents:
            forbidden.discard("random")
        if forbidden:
            offences.append(f"{path.relative_to(PACKAGE.parent)}: {sorted(forbidden)}")
    assert not offences, "\n".join(offences)


def test_core_modules_do_not_depend_on_the_simulator() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("consensus.sim"), path.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("consensus.sim"), path.name
