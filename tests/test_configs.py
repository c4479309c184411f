"""The shipped example configs load and say what they claim."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import load_config
from node.genesis import genesis_from_members_file

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_node_configs_load() -> None:
    production = load_config(CONFIGS / "production.toml", environ={})
    assert production.p2p.open_for_observers is False
    assert production.rpc.host == "127.0.0.1"
    assert len(production.p2p.bootstrap) == 2
    devnet = load_config(CONFIGS / "devnet.toml", environ={})
    assert devnet.log.format == "console"


def test_retain_blocks_default_and_docs_agree() -> None:
    from node.config import StorageSection

    production = load_config(CONFIGS / "production.toml", environ={})
    assert production.storage.retain_blocks == StorageSection().retain_blocks == 0
    guide = (CONFIGS / "README.md").read_text()
    assert "[storage]\nretain_blocks = 100000" in guide
    assert "0 (the default) keeps every block" in guide
    assert "-32012" in guide  # the error older queries answer


def test_members_file_makes_a_genesis() -> None:
    genesis = genesis_from_members_file(CONFIGS / "members.example.toml")
    assert genesis.chain_id == "medledger-example"
    assert [member.org_id for member in genesis.validators()] == ["hospital-a", "hospital-b", "lab"]


def test_systemd_unit_and_prometheus_config_name_the_right_things() -> None:
    unit = (CONFIGS / "medledger.service").read_text()
    assert "ExecStart=/opt/medledger/.venv/bin/medledger start -c" in unit
    assert "KillSignal=SIGTERM" in unit
    assert "metrics_path: /metrics" in (CONFIGS / "prometheus.yml").read_text()


def test_the_genesis_command_is_reproducible_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from node.cli import main

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    members = str(CONFIGS / "members.example.toml")
    assert main(["genesis", "-m", members, "-o", str(first)]) == 0
    assert main(["genesis", "-m", members, "-o", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()  # same inputs, same genesis
    before = first.read_bytes()
    assert main(["genesis", "-m", members, "-o", str(first),
                 "--genesis-time-ms", "1767225600001"]) == 1
    assert "never overwritten unless you pass --force" in capsys.readouterr().err
    assert first.read_bytes() == before
    assert main(["genesis", "-m", members, "-o", str(first), "--force",
                 "--genesis-time-ms", "1767225600001"]) == 0
    assert first.read_bytes() != before
    # No genesis time anywhere: refused (a default of "now" would differ per member).
    timeless = tmp_path / "members.toml"
    timeless.write_text("\n".join(line for line in (CONFIGS / "members.example.toml")
                                  .read_text().splitlines()
                                  if not line.startswith("genesis_time_ms")))
    assert main(["genesis", "-m", str(timeless), "-o", str(tmp_path / "c.json")]) == 1
    assert "no genesis_time_ms" in capsys.readouterr().err


def test_the_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.metadata

    from node.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"medledger {importlib.metadata.version('medledger')}")
