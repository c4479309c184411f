"""Consortium tooling: ``medledger keygen``, ``init`` with flags, hex with or without 0x,
bad inputs refused in one line with exit code 2, /dns4 bootstrap addresses, and
``medledger member list|propose|vote`` against a consortium set up the production way
(keygen, init, members file, genesis, start) on 127.0.0.1. Each test stops only the
processes it started."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiaddr
import pytest
import trio
from node_harness import wait_for

from ledger.errors import ConfigError
from node.cli import main
from node.client import RpcClient, RpcError, RpcUnreachableError
from node.config import load_config
from node.genesis import genesis_from_members_file, genesis_hash
from node.keys import read_key_file
from node.p2p.identity import peer_id_from_seed
from node.p2p.libp2p_glue import parse_bootstrap, resolve_host_names
from node.tools.devnet import die_with_parent, free_port

ROOT = Path(__file__).resolve().parent.parent
PEER_ID = "12D3KooWDaikXJbkeGQTPSbUQHBwPpvTAZGfskymVMa3ZHYyt8U1"
CHAIN_ID = "medledger-consortium-test"
CLI_TIMEOUT_S = 60
LEADER_TIMEOUT_S = 60
NODE_STOP_TIMEOUT_S = 15


def run_cli(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_refusal(code: int, err: str, *needles: str) -> str:
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("medledger: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------- keygen


def test_keygen_writes_an_owner_only_seed_and_prints_its_public_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys" / "hospital-a.admin.key"
    code, out, _ = run_cli(capsys, "keygen", "-o", str(path))
    assert code == 0
    printed = json.loads(out)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The node key files' format: one line of 64 hex digits.
    assert len(path.read_text().strip()) == 64 and path.read_text().endswith("\n")
    assert printed["public_key"] == "0x" + read_key_file(path).public_key.hex()


def test_keygen_never_overwrites_without_force(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "admin.key"
    run_cli(capsys, "keygen", "-o", str(path))
    first = path.read_text()
    code, out, err = run_cli(capsys, "keygen", "-o", str(path))
    one_line_refusal(code, err, str(path), "--force")
    assert out == "" and path.read_text() == first
    code, out, _ = run_cli(capsys, "keygen", "-o", str(path), "--force")
    assert code == 0 and path.read_text() != first
    assert json.loads(out)["public_key"] == "0x" + read_key_file(path).public_key.hex()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry.name for entry in tmp_path.iterdir()] == ["admin.key"]


def test_key_files_are_read_with_or_without_0x(tmp_path: Path) -> None:
    seed = bytes(range(32))
    (tmp_path / "plain.key").write_text(seed.hex() + "\n")
    (tmp_path / "prefixed.key").write_text("0x" + seed.hex() + "\n")
    assert read_key_file(tmp_path / "plain.key") == read_key_file(tmp_path / "prefixed.key")
    (tmp_path / "bad.key").write_text("0x" + "zz" * 32)
    with pytest.raises(ConfigError, match="not hex") as raised:
        read_key_file(tmp_path / "bad.key", role="admin key file")
    assert "admin key file" in str(raised.value) and "zz" not in str(raised.value)


# ---------------------------------------------------------------------------- init


def test_init_with_flags_writes_a_config_load_config_accepts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "node-a"
    bootstrap = [f"/ip4/10.0.0.2/tcp/30333/p2p/{PEER_ID}",
                 "/dns4/validator-b.example/tcp/30333/p2p/"
                 "12D3KooWNnfWUfK9dPhRqkZNFyztkN8mAFNHCuLt4pzM7X98a6sY"]
    code, out, err = run_cli(
        capsys, "init", "--dir", str(directory), "--listen", "/ip4/0.0.0.0/tcp/30333",
        "--rpc-host", "0.0.0.0", "--rpc-port", "8600", "--bootstrap", bootstrap[0],
        "--bootstrap", bootstrap[1], "--genesis", str(tmp_path / "genesis.json"),
        "--data-dir", str(tmp_path / "data-a"))
    assert code == 0, err
    printed = json.loads(out)
    config = load_config(directory / "node.toml", environ={})
    assert config.p2p.listen == "/ip4/0.0.0.0/tcp/30333"
    assert config.p2p.bootstrap == tuple(bootstrap)
    assert (config.rpc.host, config.rpc.port) == ("0.0.0.0", 8600)
    assert config.genesis_file == tmp_path / "genesis.json"
    assert config.data_dir == tmp_path / "data-a"
    assert config.key_file == directory / "node.key"
    assert stat.S_IMODE(config.key_file.stat().st_mode) == 0o600

    peer_id = peer_id_from_seed(read_key_file(config.key_file).seed)
    assert printed["peer_id"] == peer_id
    address = multiaddr.Multiaddr(printed["multiaddr"])
    assert str(address) == f"/ip4/0.0.0.0/tcp/30333/p2p/{peer_id}"
    assert address.value_for_protocol("p2p") == peer_id
    assert printed["notes"]  # 0.0.0.0 is no address to give other operators
    # Every key written is under a comment saying what it is.
    lines = (directory / "node.toml").read_text().splitlines()
    for index, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            assert lines[index - 1].startswith("# "), line


def test_init_keeps_its_old_flags_and_the_node_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "init", "--dir", str(tmp_path), "--rpc-port", "8601",
                           "--p2p-port", "30444")
    assert code == 0
    first = json.loads(out)
    config = load_config(tmp_path / "node.toml", environ={})
    assert (config.p2p.listen, config.rpc.port) == ("/ip4/127.0.0.1/tcp/30444", 8601)
    assert first["multiaddr"] == f"/ip4/127.0.0.1/tcp/30444/p2p/{first['peer_id']}"

    code, _, err = run_cli(capsys, "init", "--dir", str(tmp_path))
    one_line_refusal(code, err, "node.toml exists", "--force")
    code, out, _ = run_cli(capsys, "init", "--dir", str(tmp_path), "--force",
                           "--listen", "/ip4/127.0.0.1/tcp/30555")
    assert code == 0
    again = json.loads(out)
    assert again["peer_id"] == first["peer_id"]  # the node's identity survives --force
    assert load_config(tmp_path / "node.toml", environ={}).p2p.listen.endswith("/30555")


@pytest.mark.parametrize(("flags", "needles"), [
    (["--listen", "tcp:30333"], ["--listen 'tcp:30333' is not a multiaddr"]),
    (["--listen", "/ip4/10.0.0.1/udp/30333"], ["--listen", "/ip4/ADDRESS/tcp/PORT"]),
    (["--listen", "/dns4/a.example/tcp/30333"], ["--listen", "/ip4/ADDRESS/tcp/PORT"]),
    (["--bootstrap", "/ip4/10.0.0.2/tcp/30333"], ["--bootstrap", "/p2p/<peer id>"]),
    (["--bootstrap", "/ip4/10.0.0.2/tcp/30333/p2p/not-a-peer-id"],
     ["--bootstrap", "/p2p/<peer id>"]),
    (["--bootstrap", f"/dnsaddr/bootstrap.example/p2p/{PEER_ID}"], ["/dnsaddr", "/dns4"]),
    (["--rpc-port", "70000"], ["[rpc] port"]),
    (["--rpc-host", " "], ["--rpc-host"]),
    (["--listen", "/ip4/127.0.0.1/tcp/1", "--p2p-port", "2"], ["--listen", "--p2p-port"]),
])
def test_init_refuses_a_bad_input_in_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
        needles: list[str]) -> None:
    directory = tmp_path / "node"
    code, out, err = run_cli(capsys, "init", "--dir", str(directory), *flags)
    one_line_refusal(code, err, *needles)
    assert out == "" and not directory.exists()


def test_a_bad_init_input_is_one_line_from_the_real_process(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", "init", "--dir", str(tmp_path / "node"),
         "--bootstrap", "/ip4/10.0.0.2/tcp/30333"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "medledger: --bootstrap '/ip4/10.0.0.2/tcp/30333' has no /p2p/<peer id>: give the "
        "full address the other operator's `medledger init` printed"]


# ---------------------------------------------------------------------------- hex


def members_toml(admin_keys: list[str], node_keys: list[str | None]) -> str:
    lines = [f'chain_id = "{CHAIN_ID}"', "genesis_time_ms = 1767225600000", ""]
    for index, (admin_key, node_key) in enumerate(zip(admin_keys, node_keys, strict=True)):
        lines += ["[[member]]", f'org_id = "org-{index}"', 'kind = "provider"',
                  f'admin_key = "{admin_key}"']
        if node_key is not None:
            lines += [f'node_key = "{node_key}"', "validator = true"]
        lines.append("")
    return "\n".join(lines)


def test_members_file_keys_with_or_without_0x_make_the_same_genesis(tmp_path: Path) -> None:
    admin = [bytes([index]) * 32 for index in (1, 2)]
    node = bytes([9]) * 32
    prefixed = tmp_path / "prefixed.toml"
    prefixed.write_text(members_toml(["0x" + key.hex() for key in admin],
                                     ["0x" + node.hex(), None]))
    plain = tmp_path / "plain.toml"
    plain.write_text(members_toml([key.hex().upper() for key in admin], [node.hex(), None]))
    assert genesis_hash(genesis_from_members_file(prefixed)) == genesis_hash(
        genesis_from_members_file(plain))


@pytest.mark.parametrize(("admin_key", "needles"), [
    ("0xzz", ["member 'org-1' admin_key", "not hex"]),
    ("abcd", ["member 'org-1' admin_key", "2 bytes", "expected 32"]),
])
def test_a_bad_members_file_key_names_the_member(tmp_path: Path, admin_key: str,
                                                 needles: list[str]) -> None:
    members = tmp_path / "members.toml"
    members.write_text(members_toml([(bytes([1]) * 32).hex(), admin_key],
                                    [(bytes([9]) * 32).hex(), None]))
    with pytest.raises(ConfigError) as raised:
        genesis_from_members_file(members)
    for needle in needles:
        assert needle in str(raised.value)


# ---------------------------------------------------------------------------- /dns4


def test_host_names_resolve_to_ip_addresses_at_dial_time() -> None:
    addresses = [multiaddr.Multiaddr("/dns4/localhost/tcp/4001"),
                 multiaddr.Multiaddr("/ip4/10.0.0.2/tcp/4002"),
                 multiaddr.Multiaddr("/dns4/no-such-host.invalid/tcp/4003")]
    resolved = trio.run(lambda: resolve_host_names(addresses, timeout_s=3.0))
    assert [str(address) for address in resolved] == ["/ip4/127.0.0.1/tcp/4001",
                                                      "/ip4/10.0.0.2/tcp/4002"]


def test_bootstrap_host_names_are_kept_for_the_dial_and_dnsaddr_is_refused() -> None:
    by_peer = parse_bootstrap([f"/dns4/localhost/tcp/4001/p2p/{PEER_ID}"], "me")
    assert [str(address) for address in by_peer[PEER_ID]] == ["/dns4/localhost/tcp/4001"]
    with pytest.raises(ConfigError, match="/dnsaddr"):
        parse_bootstrap([f"/dnsaddr/bootstrap.example/p2p/{PEER_ID}"], "me")


# ---------------------------------------------------------------------------- a consortium


@dataclass
class Consortium:
    """Two validators (hospital-a, hospital-b) and a third member (lab), set up the
    production way; the nodes dial each other by /dns4/localhost."""

    directory: Path
    rpc_urls: list[str]
    admin_keys: dict[str, Path]


def cli_json(capsys: pytest.CaptureFixture[str], *arguments: str) -> Any:
    code, out, err = run_cli(capsys, *arguments)
    assert code == 0, (err, out)
    return json.loads(out)


@pytest.fixture
def consortium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Consortium]:
    orgs = ["hospital-a", "hospital-b", "lab"]
    admin_keys = {org: tmp_path / "admin" / f"{org}.key" for org in orgs}
    admin_public = {org: cli_json(capsys, "keygen", "-o", str(path))["public_key"]
                    for org, path in admin_keys.items()}
    p2p_ports = [free_port(), free_port()]
    rpc_ports = [free_port(), free_port()]
    nodes = [tmp_path / name for name in orgs[:2]]

    def init(index: int, bootstrap: list[str]) -> Any:
        flags = [flag for address in bootstrap for flag in ("--bootstrap", address)]
        return cli_json(capsys, "init", "--dir", str(nodes[index]), "--force",
                        "--listen", f"/ip4/127.0.0.1/tcp/{p2p_ports[index]}",
                        "--rpc-host", "127.0.0.1", "--rpc-port", str(rpc_ports[index]),
                        "--genesis", str(tmp_path / "genesis.json"), *flags)

    def by_name(printed: Any) -> str:
        # What an operator hands the others: the printed multiaddr, with a host name.
        return str(printed["multiaddr"]).replace("/ip4/127.0.0.1/", "/dns4/localhost/")

    first = init(0, [])
    second = init(1, [by_name(first)])
    assert init(0, [by_name(second)])["peer_id"] == first["peer_id"]
    members = tmp_path / "members.toml"
    members.write_text("\n".join([
        f'chain_id = "{CHAIN_ID}"', "genesis_time_ms = 1767225600000",
        '[[member]]', 'org_id = "hospital-a"', 'kind = "provider"',
        f'admin_key = "{admin_public["hospital-a"]}"',
        f'node_key = "0x{first["node_public_key"]}"', "validator = true",
        '[[member]]', 'org_id = "hospital-b"', 'kind = "provider"',
        f'admin_key = "{admin_public["hospital-b"].removeprefix("0x")}"',
        f'node_key = "{second["node_public_key"]}"', "validator = true",
        '[[member]]', 'org_id = "lab"', 'kind = "custodian"',
        f'admin_key = "{admin_public["lab"]}"', "",
    ]))
    code, _, err = run_cli(capsys, "genesis", "-m", str(members), "-o",
                           str(tmp_path / "genesis.json"))
    assert code == 0, err
    processes = []
    try:
        for node in nodes:
            with open(node / "node.log", "ab") as log_file:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "node.cli", "start", "-c", str(node / "node.toml")],
                    stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=die_with_parent))
        urls = [f"http://127.0.0.1:{port}/" for port in rpc_ports]
        yield Consortium(tmp_path, urls, admin_keys)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=NODE_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=NODE_STOP_TIMEOUT_S)


def wait_for_leader(consortium: Consortium) -> None:
    """Two validators elect a leader only once connected: each knows the other by its
    /dns4/localhost address alone."""
    def leader() -> bool:
        for url in consortium.rpc_urls:
            try:
                with RpcClient(url, timeout_s=2.0) as client:
                    if client.call("node_status").get("role") == "leader":
                        return True
            except (RpcUnreachableError, RpcError):
                pass
        return False

    try:
        wait_for(leader, timeout_s=LEADER_TIMEOUT_S, interval_s=0.5, what="a leader")
    except AssertionError:
        logs = [(consortium.directory / name / "node.log").read_text(errors="replace")[-3000:]
                for name in ("hospital-a", "hospital-b")]
        raise AssertionError("no leader:\n" + "\n".join(logs)) from None


@pytest.mark.slow
def test_members_propose_and_vote_in_a_consortium_set_up_the_production_way(
        consortium: Consortium, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    wait_for_leader(consortium)
    rpc = ["--rpc", consortium.rpc_urls[1]]
    listed = cli_json(capsys, "member", "list", *rpc)
    assert listed["chain_id"] == CHAIN_ID
    assert [member["org_id"] for member in listed["members"]] == [
        "hospital-a", "hospital-b", "lab"]
    assert listed["proposals"] == []

    clinic_admin = cli_json(capsys, "keygen", "-o", str(tmp_path / "clinic.key"))["public_key"]
    evidence = tmp_path / "clinic-accreditation.pdf"
    evidence.write_bytes(b"accreditation of the clinic, signed by the board")
    admin = consortium.admin_keys
    proposed = cli_json(
        capsys, "member", "propose", *rpc, "--key", str(admin["hospital-a"]),
        "--proposal-id", "add-clinic", "--org-id", "clinic", "--kind", "provider",
        "--admin-key", clinic_admin.removeprefix("0x"), "--evidence-file", str(evidence))
    assert proposed["committed"] and proposed["result_name"] == "OK", proposed
    assert proposed["tx_id"].startswith("0x")

    for org in ("hospital-a", "hospital-b"):
        voted = cli_json(capsys, "member", "vote", *rpc, "--key", str(admin[org]),
                         "--proposal-id", "add-clinic")
        assert voted["committed"] and voted["result_name"] == "OK", voted
    # Two of three members: not more than two thirds yet.
    listed = cli_json(capsys, "member", "list", *rpc)
    assert [proposal["status"] for proposal in listed["proposals"]] == ["open"]

    code, out, err = run_cli(capsys, "member", "vote", *rpc, "--key",
                             str(admin["hospital-b"]), "--proposal-id", "add-clinic")
    assert code == 1, err
    assert json.loads(out)["result_name"] == "VOTE_DUPLICATE"

    voted = cli_json(capsys, "member", "vote", *rpc, "--key", str(admin["lab"]),
                     "--proposal-id", "add-clinic")
    assert voted["result_name"] == "OK", voted
    listed = cli_json(capsys, "member", "list", "--rpc", consortium.rpc_urls[0])
    assert [proposal["status"] for proposal in listed["proposals"]] == ["passed"]
    clinic = [member for member in listed["members"] if member["org_id"] == "clinic"]
    assert len(clinic) == 1 and clinic[0]["active"]
    assert clinic[0]["admin_key"] == clinic_admin


def test_member_commands_refuse_bad_inputs_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "admin.key"
    unreachable = ["--rpc", "http://127.0.0.1:9/"]
    code, _, err = run_cli(capsys, "member", "vote", *unreachable, "--key",
                           str(tmp_path / "missing.key"), "--proposal-id", "p")
    one_line_refusal(code, err, "admin key file", "missing.key", "medledger keygen")
    key.write_text("0x" + "zz" * 32 + "\n")
    code, _, err = run_cli(capsys, "member", "vote", *unreachable, "--key", str(key),
                           "--proposal-id", "p")
    one_line_refusal(code, err, "admin key file", "not hex")


@pytest.mark.parametrize(("flags", "needles"), [
    (["--admin-key", "0xzz", "--kind", "provider", "--evidence-hash", "00" * 32],
     ["--admin-key: '0xzz' is not hex"]),
    (["--admin-key", "11" * 32, "--kind", "provider", "--evidence-hash", "0xabcd"],
     ["--evidence-hash", "2 bytes", "expected 32"]),
    (["--admin-key", "11" * 32, "--kind", "provider"], ["--evidence-hash", "--evidence-file"]),
    (["--admin-key", "11" * 32, "--evidence-hash", "00" * 32], ["--action add needs", "--kind"]),
    (["--admin-key", "11" * 32, "--kind", "provider", "--evidence-hash", "00" * 32,
      "--validator"], ["--validator needs --node-key"]),
    (["--admin-key", "11" * 32, "--kind", "provider", "--evidence-hash", "00" * 32,
      "--node-key", "12D3KooWnot"], ["--node-key"]),
])
def test_member_propose_refuses_bad_inputs_before_using_the_node(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
        needles: list[str]) -> None:
    code, out, err = run_cli(capsys, "member", "propose", "--rpc", "http://127.0.0.1:9/",
                             "--key", str(tmp_path / "unused.key"), "--proposal-id", "p",
                             "--org-id", "clinic", *flags)
    one_line_refusal(code, err, *needles)
    assert out == ""


def test_the_shipped_production_config_names_bootstrap_peers_by_host_name() -> None:
    config = load_config(ROOT / "configs" / "production.toml", environ={})
    by_peer = parse_bootstrap(config.p2p.bootstrap, "me")
    addresses = [str(address) for addresses in by_peer.values() for address in addresses]
    assert addresses and all(address.startswith("/dns4/") for address in addresses)
