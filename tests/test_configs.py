"""The shipped example configs load and say what they claim."""

from __future__ import annotations

from pathlib import Path

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


def test_members_file_makes_a_genesis() -> None:
    genesis = genesis_from_members_file(CONFIGS / "members.example.toml")
    assert genesis.chain_id == "medledger-example"
    assert [member.org_id for member in genesis.validators()] == ["hospital-a", "hospital-b", "lab"]


def test_systemd_unit_and_prometheus_config_name_the_right_things() -> None:
    unit = (CONFIGS / "medledger.service").read_text()
    assert "ExecStart=/opt/medledger/.venv/bin/medledger start -c" in unit
    assert "KillSignal=SIGTERM" in unit
    assert "metrics_path: /metrics" in (CONFIGS / "prometheus.yml").read_text()
