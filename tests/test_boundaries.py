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
    # Tests and scripts too: what they need below the store is in storage.raw.
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


# Which of our packages each room may import: (room, forbidden prefixes). A module
# belongs to the longest room that prefixes its dotted name.
SERVICES = ("node.service", "node.admission", "node.applier", "node.bootstrap",
            "node.builder", "node.events", "node.feeds", "node.follower", "node.forwarding",
            "node.health", "node.membership")
DIRECTION: dict[str, tuple[str, ...]] = {
    "ledger": ("consensus", "storage", "node"),
    # consensus may use only ledger's codec, errors and limits of ours
    "consensus": ("storage", "node", "ledger."),
    "storage": ("node",),
    "node.p2p": (*SERVICES, "node.rpc", "node.loadtest", "node.tools", "node.testnet"),
    "node.loadtest": (*SERVICES, "node.p2p", "node.chain", "node.raft_driver", "storage",
                      "consensus"),
}
CONSENSUS_MAY_USE = ("ledger.codec", "ledger.errors", "ledger.limits")
OURS = ("ledger", "consensus", "storage", "node")


def imported_names(source: str) -> set[str]:
    """Every dotted name an import statement names (for ``from a.b import c``: a.b and
    a.b.c), function-local imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in OURS}


def room_of(module: str) -> str | None:
    rooms = [room for room in DIRECTION if module == room or module.startswith(room + ".")]
    return max(rooms, key=len, default=None)


def direction_violations(module: str, source: str) -> list[str]:
    room = room_of(module)
    if room is None:
        return []
    bad = []
    for name in sorted(imported_names(source)):
        if room == "consensus" and name.startswith(CONSENSUS_MAY_USE):
            continue
        if name == room or name.startswith(room + "."):
            continue
        if any(name == prefix or name.startswith(prefix if prefix.endswith(".") else
                                                   prefix + ".")
               for prefix in DIRECTION[room]):
            bad.append(f"{module} imports {name}")
    return bad


def test_packages_import_only_downwards() -> None:
    violations = []
    for package in OURS:
        for path in python_files(package):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            violations += direction_violations(module, path.read_text())
    assert violations == []


def test_the_direction_check_sees_a_forbidden_import() -> None:
    planted = "from node.service import Node\n\ndef f():\n    import storage.store\n"
    assert direction_violations("node.p2p.planted", planted) == [
        "node.p2p.planted imports node.service", "node.p2p.planted imports node.service.Node"]
    assert direction_violations("consensus.planted", "from ledger.app import apply\n") == [
        "consensus.planted imports ledger.app", "consensus.planted imports ledger.app.apply"]
    assert direction_violations("consensus.planted", "from ledger.codec import decode\n") == []
    assert direction_violations("ledger.planted", "import node.cli\n") == [
        "ledger.planted imports node.cli"]
    assert direction_violations("node.loadtest.planted", "from storage import keys\n") == [
        "node.loadtest.planted imports storage", "node.loadtest.planted imports storage.keys"]
