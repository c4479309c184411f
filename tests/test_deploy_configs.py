"""The deployment files in configs/ say what they claim: the alert rules and the Grafana
dashboard parse and name only metrics a running node serves (one real node on 127.0.0.1),
the systemd unit is hardened, consistent with configs/production.toml and accepted by
systemd's own tools where they are installed, and the RPC port serves HTTPS and WSS with
a certificate and key from the config."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import trio
import trio_websocket
import yaml
from rpc_fakes import FakeNode, WsClient, running_server

from ledger.errors import ConfigError
from ledger.results import ResultCode
from node.client import RpcClient
from node.config import config_from_dict, load_config
from node.metrics import RAFT_ROLES, STAGES
from node.rpc.dispatch import OUTCOME_OK
from node.rpc.errors import RpcError
from node.rpc.server import RpcServer
from node.tools.devnet import create_devnet, die_with_parent, stop_processes, wait_ready

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
UNIT = CONFIGS / "medledger.service"

NODE_READY_TIMEOUT_SECONDS = 60.0
HTTP_TIMEOUT_SECONDS = 5.0
TOOL_TIMEOUT_SECONDS = 60

# Metrics the rules and the dashboard may name that no medledger node serves: `up` is
# Prometheus's own per-target series; the filesystem ones come from node_exporter, the
# only source of free disk space (each maps to the scrape job that provides it).
EXTERNAL_METRICS = {
    "up": None,
    "node_filesystem_avail_bytes": "node",
    "node_filesystem_size_bytes": "node",
}
# Labels Prometheus attaches to every series of a target (configs/prometheus.yml).
TARGET_LABELS = {"job", "instance", "network"}
# The values each medledger label can take, from the code that sets it.
LABEL_VALUES: dict[str, set[str]] = {
    "role": set(RAFT_ROLES),
    "stage": set(STAGES),
    "reason": {code.name.lower() for code in ResultCode if code != ResultCode.OK},
    "outcome": {OUTCOME_OK} | {error.name for error in (
        *RpcError.__subclasses__(),
        *(grandchild for child in RpcError.__subclasses__()
          for grandchild in child.__subclasses__()),
    ) if hasattr(error, "name")},
}
# Grafana's variables, replaced by values PromQL accepts before parsing a panel's query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
                     "$network": ".*", "$instance": ".*"}
# An alert rule set worth its name covers each of these conditions.
REQUIRED_ALERTS = {
    "MedledgerNodeDown", "MedledgerNoLeader", "MedledgerHeightStalled",
    "MedledgerPeersBelowQuorum", "MedledgerMempoolFull", "MedledgerDiskLow",
    "MedledgerDiskFull",
}
# systemd-analyze security: 0 is fully locked down, 10 is a unit with no hardening (the
# unit before hardening scored 8.5). A node needs the network, hence not near 0.
UNIT_EXPOSURE_MAX = 2.0


# ------------------------------------------------------------------ a real node's /metrics


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The /metrics text of one real validator (started, read once it leads, stopped)."""
    directory = tmp_path_factory.mktemp("deploy-node")
    (node,) = create_devnet(directory, validators=1, observers=0, rpc_port=0,
                            chain_id="medledger-deploy-test")
    log_path = directory / node.name / "node.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "start", "-c",
             str(directory / node.name / "node.toml")],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=die_with_parent,
        )
    try:
        assert wait_ready([node], timeout_s=NODE_READY_TIMEOUT_SECONDS), (
            log_path.read_text(errors="replace")[-3000:])
        response = httpx.get(f"{node.rpc_url}metrics", timeout=HTTP_TIMEOUT_SECONDS)
        assert response.status_code == 200, response.text
        return response.text
    finally:
        stop_processes([process])


def exported_names(text: str) -> set[str]:
    """Every series name the exposition can produce: sample names, declared families
    (a labelled counter has no sample until first counted), and histogram series."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.mark.slow
def test_the_node_serves_the_families_we_expect(exposition: str) -> None:
    names = exported_names(exposition)
    assert {"medledger_height", "medledger_raft_role", "medledger_txs_rejected_total",
            "medledger_stage_seconds_bucket"} <= names
    assert 'medledger_raft_role{role="leader"} 1.0' in exposition


# ------------------------------------------------------------------------- PromQL walking


def children(expression: Any) -> Iterator[Any]:
    """The sub-expressions of a parsed PromQL expression (operands, arguments)."""
    for attribute in ("lhs", "rhs", "expr", "param"):
        child = getattr(expression, attribute, None)
        if child is not None:
            yield child
    yield from getattr(expression, "args", None) or ()


def selectors(expression: Any) -> Iterator[Any]:
    """The vector selectors of a parsed PromQL expression, depth first."""
    if isinstance(expression, promql_parser.VectorSelector):
        yield expression
    elif isinstance(expression, promql_parser.MatrixSelector):
        yield expression.vector_selector
    else:
        for child in children(expression):
            yield from selectors(child)


def grouping_labels(expression: Any) -> Iterator[str]:
    """Label names in ``by (...)``, ``without (...)`` and ``on (...)`` clauses."""
    modifier = getattr(expression, "modifier", None)
    for holder in (modifier, getattr(modifier, "matching", None)):
        labels = getattr(holder, "labels", None)
        if isinstance(labels, list | tuple):
            yield from labels
    for child in children(expression):
        yield from grouping_labels(child)


def problems_of(expression_text: str, exported: set[str], jobs: set[str]) -> list[str]:
    """What is wrong with one query: unparsable, an unknown metric, a label value the
    node never sets, a job Prometheus does not scrape."""
    try:
        expression = promql_parser.parse(expression_text)
    except Exception as error:  # the parser's own error type is not exported
        return [f"does not parse: {error}"]
    problems = []
    for selector in selectors(expression):
        name = selector.name
        if name is None:
            problems.append("a selector without a metric name")
            continue
        if name.startswith(("medledger_", "process_")):
            if name not in exported:
                problems.append(f"{name} is not on the node's /metrics")
        elif name not in EXTERNAL_METRICS:
            problems.append(f"{name} is neither the node's nor a known external metric")
        elif EXTERNAL_METRICS[name] is not None and EXTERNAL_METRICS[name] not in jobs:
            problems.append(f"{name} needs the scrape job {EXTERNAL_METRICS[name]!r}")
        for matcher in selector.matchers.matchers:
            if matcher.name == "job" and matcher.op == promql_parser.MatchOp.Equal and (
                    matcher.value not in jobs):
                problems.append(f"job {matcher.value!r} is not scraped")
            allowed = LABEL_VALUES.get(matcher.name)
            if (allowed is not None and matcher.op == promql_parser.MatchOp.Equal
                    and matcher.value not in allowed):
                problems.append(f"{name}: {matcher.name}={matcher.value!r} is never set")
    known_labels = TARGET_LABELS | set(LABEL_VALUES) | {"le", "method", "mountpoint",
                                                         "version", "python", "libp2p"}
    problems.extend(f"grouping by unknown label {label!r}"
                    for label in grouping_labels(expression) if label not in known_labels)
    return problems


def test_the_query_checker_catches_what_it_should() -> None:
    exported = {"medledger_height"}
    jobs = {"medledger"}
    assert problems_of("medledger_height > 1", exported, jobs) == []
    assert problems_of("medledger_heigth > 1", exported, jobs)
    assert problems_of("medledger_height >", exported, jobs)
    assert problems_of('medledger_height{role="boss"}', exported, jobs)
    assert problems_of('up{job="nodes"} == 0', exported, jobs)
    assert problems_of("node_filesystem_avail_bytes < 1", exported, jobs)  # no node job
    assert problems_of("sum by (instnace) (medledger_height)", exported, jobs)
    assert problems_of("process_open_fds > 1", exported, jobs)  # not served here
    assert problems_of("go_goroutines > 1", exported, jobs)


def prometheus_config() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((CONFIGS / "prometheus.yml").read_text())
    return document


def scrape_jobs() -> set[str]:
    return {job["job_name"] for job in prometheus_config()["scrape_configs"]}


# ------------------------------------------------------------------------ alert rules


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((CONFIGS / "alerts.yml").read_text())
    assert isinstance(document, dict) and set(document) == {"groups"}, document
    rules = []
    for group in document["groups"]:
        assert set(group) == {"name", "rules"}, group
        assert group["rules"], f"group {group['name']} has no rules"
        rules.extend(group["rules"])
    return rules


def test_the_alert_rules_are_well_formed_and_cover_the_conditions() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    assert set(names) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(names)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
        if "for" in rule:
            assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0, rule


@pytest.mark.slow
def test_every_alert_names_only_metrics_a_running_node_serves(exposition: str) -> None:
    exported, jobs = exported_names(exposition), scrape_jobs()
    problems = {rule["alert"]: problems_of(rule["expr"], exported, jobs)
                for rule in alert_rules()}
    assert not {name: found for name, found in problems.items() if found}, problems


def test_prometheus_loads_the_alert_rules() -> None:
    config = prometheus_config()
    assert config["rule_files"] == ["alerts.yml"]
    assert all((CONFIGS / name).is_file() for name in config["rule_files"])
    assert {"medledger", "node"} <= scrape_jobs()
    medledger = next(job for job in config["scrape_configs"] if job["job_name"] == "medledger")
    assert medledger["metrics_path"] == "/metrics"


# ---------------------------------------------------------------------- the dashboard


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((CONFIGS / "grafana-dashboard.json").read_text())
    return document


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    queries = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            text = variable["query"]["query"]
            found = re.fullmatch(r"label_values\((.+), (\w+)\)", text)
            assert found, f"variable {variable['name']}: {text}"
            queries.append((f"variable {variable['name']}", found[1]))
    return queries


def with_grafana_variables_replaced(query: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    assert "$" not in query, f"an unknown Grafana variable in {query}"
    return query


def test_the_dashboard_is_valid_and_every_panel_has_a_query() -> None:
    board = dashboard()
    assert board["title"] and board["uid"]
    variables = {variable["name"] for variable in board["templating"]["list"]}
    assert {"datasource", "network", "instance"} <= variables
    panels = board["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    graphs = [panel for panel in panels if panel["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert panel["title"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r}: an empty query"


@pytest.mark.slow
def test_every_dashboard_query_names_only_metrics_a_running_node_serves(
        exposition: str) -> None:
    exported, jobs = exported_names(exposition), scrape_jobs()
    problems = {where: problems_of(with_grafana_variables_replaced(query), exported, jobs)
                for where, query in dashboard_queries()}
    assert not {where: found for where, found in problems.items() if found}, problems


# ---------------------------------------------------------------------- the systemd unit


def unit_entries(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values in order (systemd allows a key more than once)."""
    entries: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), line
            section = line[1:-1]
            continue
        key, separator, value = line.partition("=")
        assert separator, f"not key=value: {line}"
        entries.setdefault((section, key.strip()), []).append(value.strip())
    return entries


def service(key: str) -> str:
    values = unit_entries(UNIT.read_text()).get(("Service", key))
    assert values, f"[Service] {key} is not set"
    return values[-1]


def test_the_unit_is_hardened_and_restarts_on_failure() -> None:
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "Restart": "on-failure",
        "KillSignal": "SIGTERM", "CapabilityBoundingSet": "", "User": "medledger",
        "Group": "medledger",
    }
    for key, value in expected.items():
        assert service(key) == value, key
    assert 10 <= int(service("TimeoutStopSec")) <= 120
    assert int(service("LimitNOFILE")) >= 65536
    entries = unit_entries(UNIT.read_text())
    assert ("Install", "WantedBy") in entries and ("Unit", "After") in entries


def test_the_unit_matches_the_production_config() -> None:
    executable, command, flag, config_path = service("ExecStart").split()
    assert (executable, command, flag) == ("/opt/medledger/.venv/bin/medledger", "start", "-c")
    assert config_path == "/etc/medledger/node.toml"
    production = load_config(CONFIGS / "production.toml", environ={})
    data_dir = production.node.data_dir
    # The only place the node writes is its data directory, made for the unit's user.
    assert service("ReadWritePaths").split() == [data_dir]
    assert data_dir == f"/var/lib/{service('StateDirectory')}"
    # Key and genesis are beside the config, outside what the unit hides from the node.
    hidden = ("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/")
    for path in (production.node.key_file, production.node.genesis_file, config_path):
        assert Path(path).parent == Path(config_path).parent, path
        assert not path.startswith(hidden), path
    # No capabilities: both ports must be unprivileged.
    assert production.rpc.port > 1024
    listen_port = int(production.p2p.listen.rsplit("/", 1)[1])
    assert listen_port > 1024


def test_the_sysusers_snippet_creates_the_units_user(tmp_path: Path) -> None:
    snippet = (CONFIGS / "medledger.sysusers.conf").read_text()
    (line,) = [line for line in snippet.splitlines() if line and not line.startswith("#")]
    kind, name = line.split()[:2]
    assert (kind, name) == ("u", service("User"))
    if shutil.which("systemd-sysusers") is None:
        pytest.skip("systemd-sysusers is not installed; the snippet's fields were checked")
    (tmp_path / "etc").mkdir()
    result = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", "-"], input=snippet,
                            capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stderr
    users = {entry.split(":")[0]: entry.split(":")
             for entry in (tmp_path / "etc" / "passwd").read_text().splitlines()}
    user = users[service("User")]
    assert user[5] == load_config(CONFIGS / "production.toml", environ={}).node.data_dir
    assert user[6] == "/usr/sbin/nologin"
    groups = (tmp_path / "etc" / "group").read_text()
    assert f"{service('Group')}:x:{user[3]}:" in groups


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's medledger: systemd-analyze
    insists that the binary exist, and /opt/medledger is not installed here."""
    for tool in ("systemd-analyze",):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (the unit was checked as INI above)")
    installed = Path(sys.executable).parent / "medledger"
    assert installed.is_file(), f"no medledger console script at {installed}"
    text = UNIT.read_text().replace("ExecStart=/opt/medledger/.venv/bin/medledger",
                                    f"ExecStart={installed}")
    assert text != UNIT.read_text()
    path = tmp_path / "medledger.service"
    path.write_text(text)
    return path


def test_systemd_analyze_verify_accepts_the_unit(verifiable_unit: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(verifiable_unit)],
                            capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS)
    # verify exits 0 on an unknown key or a bad value too, and only says so on stderr.
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if verifiable_unit.name in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_systemd_rates_the_units_exposure_low(verifiable_unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(verifiable_unit)],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS)
    overall = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    if overall is None and "offline" in result.stderr:
        pytest.skip(f"this systemd-analyze has no --offline: {result.stderr.strip()}")
    assert overall is not None, result.stdout + result.stderr
    assert float(overall[1]) <= UNIT_EXPOSURE_MAX, result.stdout


# ------------------------------------------------------------------------- RPC over TLS


def test_tls_files_are_both_or_neither() -> None:
    config = config_from_dict({"rpc": {"tls_cert_file": "rpc.crt", "tls_key_file": "rpc.key"}},
                              base_dir="/etc/medledger", environ={})
    assert config.rpc_tls_files == (Path("/etc/medledger/rpc.crt"),
                                    Path("/etc/medledger/rpc.key"))
    assert config_from_dict({}, environ={}).rpc_tls_files is None
    with pytest.raises(ConfigError, match=r"\[rpc\] tls_cert_file is set but tls_key_file"):
        config_from_dict({"rpc": {"tls_cert_file": "rpc.crt"}}, environ={})
    with pytest.raises(ConfigError, match=r"\[rpc\] tls_key_file is set but tls_cert_file"):
        config_from_dict({"rpc": {"tls_key_file": "rpc.key"}}, environ={})
    with pytest.raises(ConfigError, match="MEDLEDGER_RPC_TLS_CERT_FILE"):
        config_from_dict({}, environ={"MEDLEDGER_RPC_TLS_CERT_FILE": "/etc/rpc.crt"})


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, PEM, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path, key_path = directory / "rpc.crt", directory / "rpc.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return certificate_path, key_path


async def test_the_rpc_port_serves_https_and_wss_and_refuses_plain_http(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    certificate, key = write_self_signed(tmp_path)
    trusted = ssl.create_default_context(cafile=str(certificate))
    async with running_server(tls_files=(certificate, key)) as running:
        https = f"https://127.0.0.1:{running.port}"
        async with httpx.AsyncClient(verify=trusted, timeout=HTTP_TIMEOUT_SECONDS) as client:
            response = await client.post(https, json={"jsonrpc": "2.0", "id": 1,
                                                      "method": "chain_head"})
            assert response.status_code == 200, response.text
            assert response.json()["result"]["height"] == 0
            assert (await client.get(f"{https}/metrics")).status_code == 200
        async with trio_websocket.open_websocket_url(
                f"wss://127.0.0.1:{running.port}/ws", ssl_context=trusted) as connection:
            assert (await WsClient(connection).result("chain_head"))["height"] == 0
        # The CLI's client (medledger status --rpc https://...) trusts SSL_CERT_FILE.
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))

        def call_with_the_cli_client() -> Any:
            with RpcClient(https, timeout_s=HTTP_TIMEOUT_SECONDS) as cli_client:
                return cli_client.call("chain_head")

        assert (await trio.to_thread.run_sync(call_with_the_cli_client))["height"] == 0
        monkeypatch.delenv("SSL_CERT_FILE")
        # Plain HTTP on the same port gets no JSON-RPC answer: the TLS handshake fails.
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
            with pytest.raises(httpx.TransportError):
                await client.post(f"http://127.0.0.1:{running.port}",
                                  json={"jsonrpc": "2.0", "id": 1, "method": "chain_head"})
        # A client that does not trust the certificate refuses the server.
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{https}/healthz")


async def test_an_unloadable_certificate_is_a_config_error_naming_the_setting(
        tmp_path: Path) -> None:
    certificate, key = write_self_signed(tmp_path)
    certificate.write_text("not a certificate\n")
    with trio.fail_after(HTTP_TIMEOUT_SECONDS):
        with pytest.raises(ConfigError, match=r"\[rpc\] tls_cert_file .*rpc.crt"):
            await RpcServer(FakeNode(), host="127.0.0.1", port=0,
                            tls_files=(certificate, key)).run()
        with pytest.raises(ConfigError, match="No such file"):
            await RpcServer(FakeNode(), host="127.0.0.1", port=0,
                            tls_files=(tmp_path / "missing.crt", key)).run()


@pytest.mark.slow
def test_a_real_node_serves_its_rpc_over_tls_when_configured(tmp_path: Path) -> None:
    """`medledger start` with the two TLS settings (here from the environment) serves
    HTTPS; plain HTTP on that port gets no answer."""
    certificate, key = write_self_signed(tmp_path)
    (node,) = create_devnet(tmp_path, validators=1, observers=0, rpc_port=0,
                            chain_id="medledger-tls-test")
    log_path = tmp_path / node.name / "node.log"
    environment = {**os.environ, "MEDLEDGER_RPC_TLS_CERT_FILE": str(certificate),
                   "MEDLEDGER_RPC_TLS_KEY_FILE": str(key)}
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "start", "-c",
             str(tmp_path / node.name / "node.toml")],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT, env=environment,
            preexec_fn=die_with_parent,
        )
    https = node.rpc_url.replace("http://", "https://")
    trusted = ssl.create_default_context(cafile=str(certificate))
    try:
        deadline = time.monotonic() + NODE_READY_TIMEOUT_SECONDS
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"{https}readyz", verify=trusted,
                                  timeout=HTTP_TIMEOUT_SECONDS)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, (
            log_path.read_text(errors="replace")[-3000:])
        answer = httpx.post(https, json={"jsonrpc": "2.0", "id": 1, "method": "node_status"},
                            verify=trusted, timeout=HTTP_TIMEOUT_SECONDS).json()
        assert answer["result"]["role"] == "leader"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{node.rpc_url}readyz", timeout=HTTP_TIMEOUT_SECONDS)
    finally:
        stop_processes([process])
