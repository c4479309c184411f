"""The load tester in a real consortium (members with their own admin keys, no devnet
keys): key files named in the errors that need them and in --help; the report's mix is
what ran, with the configured types left out and why; node CPU and memory come from the
nodes' /metrics, whatever host they are on."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
from test_loadtest_runner import FakeNode, run_round
from test_loadtest_workload import InProcessPort, commit_block, interleave

from ledger.app.genesis import Genesis, GenesisMember
from ledger.bodies import MemberKind
from ledger.crypto import SigningKey
from ledger.errors import ConfigError
from ledger.results import ResultCode
from ledger.sdk.devnet import devnet_genesis
from ledger.sdk.inprocess import InProcessLedger
from ledger.tx import decode_transaction
from node.keys import write_key_file
from node.loadtest.chain import TargetInfo, scrape_metrics
from node.loadtest.command import Observation, build_report
from node.loadtest.command import main as loadtest_main
from node.loadtest.config import DEFAULT_WEIGHTS, LoadtestConfig, load, parser
from node.loadtest.pool import worker_pool
from node.loadtest.prepare import Prepared, prepare
from node.loadtest.rate import FixedRate
from node.loadtest.report import render_html
from node.loadtest.runner import RoundOutcome
from node.loadtest.system import NodeMetricsSampler, ProcessSampler, local_port, process_figures
from node.loadtest.workload import generate_pool, lane_tx_types

CHAIN_ID = "medledger-consortium-unit"
GENESIS_TIME_MS = int(time.time() * 1000)
# A consortium made the production way: every member has its own admin key.
MEMBERS = (("hosp-east", MemberKind.PROVIDER), ("hosp-west", MemberKind.PROVIDER),
           ("records-vault", MemberKind.CUSTODIAN), ("acme-insurance", MemberKind.INSURER))
SETTING = "[workload] key_files"


def admin_key(org_id: str) -> SigningKey:
    return SigningKey(hashlib.sha256(f"consortium test admin {org_id}".encode()).digest())


def consortium_ledger() -> InProcessLedger:
    node_keys = [SigningKey(bytes([index + 1]) * 32).public_key for index in range(3)]
    parameters = devnet_genesis(CHAIN_ID, node_keys, genesis_time_ms=GENESIS_TIME_MS).parameters
    members = tuple(
        GenesisMember(org_id, kind, admin_key(org_id).public_key,
                      node_keys[index] if index < len(node_keys) else None,
                      index < len(node_keys))
        for index, (org_id, kind) in enumerate(MEMBERS)
    )
    return InProcessLedger(Genesis(CHAIN_ID, GENESIS_TIME_MS, members, parameters))


def key_files(directory: Path, *org_ids: str) -> dict[str, str]:
    files = {}
    for org_id in org_ids:
        path = directory / f"{org_id}.key"
        write_key_file(path, admin_key(org_id))
        files[org_id] = str(path)
    return files


async def prepare_on(ledger: InProcessLedger, files: Mapping[str, str], *, workers: int,
                     txs: int = 120) -> Prepared:
    return await prepare(
        InProcessPort(ledger), chain_id=CHAIN_ID, run_tag="consortium", workers=workers,
        healthcare=True, weights=DEFAULT_WEIGHTS, lane_txs=lambda lanes: txs,
        key_files=files,
    )


# ---- the key-file setting ---------------------------------------------------------------------


def test_a_missing_key_file_is_one_line_naming_the_setting_the_option_and_the_file(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "absent.key"
    with pytest.raises(ConfigError) as refused:
        load(["--key-file", f"hosp-east={missing}"])
    message = str(refused.value)
    assert "\n" not in message
    assert f"{SETTING}.hosp-east" in message and "--key-file hosp-east=PATH" in message
    assert str(missing) in message and "does not exist" in message
    assert "medledger keygen" in message


@pytest.mark.parametrize("problem", ["a directory", "not hex", "too short"])
def test_an_unreadable_key_file_from_the_config_file_names_the_setting(
    tmp_path: Path, problem: str
) -> None:
    bad = tmp_path / "vault.key"
    if problem == "a directory":
        bad.mkdir()
    else:
        bad.write_text("zz" * 32 if problem == "not hex" else "ab" * 16)
    config = tmp_path / "loadtest.toml"
    config.write_text(f'[workload]\nkey_files = {{ records-vault = "{bad}" }}\n')
    with pytest.raises(ConfigError) as refused:
        load(["-c", str(config)])
    message = str(refused.value)
    assert "\n" not in message
    assert f"{SETTING}.records-vault" in message and str(bad) in message
    assert "zz" not in message  # a key file's content is never quoted


def test_the_command_exits_2_with_that_line(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.key"
    code = loadtest_main(["--url", "http://127.0.0.1:9/", "--key-file",
                          f"hosp-east={missing}", "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and error.startswith("medledger loadtest: ")
    assert SETTING in error and str(missing) in error


def test_a_key_file_option_without_an_org_is_refused() -> None:
    with pytest.raises(ConfigError, match="--key-file expects ORG=PATH"):
        load(["--key-file", "/etc/hosp-east.key"])


def test_help_documents_the_key_file_setting() -> None:
    text = parser().format_help()
    assert "--key-file ORG=PATH" in text and SETTING in text
    assert "medledger keygen" in text and "CLAIM_SUBMIT" in text


def test_key_file_options_add_to_the_config_file(tmp_path: Path) -> None:
    files = key_files(tmp_path, "hosp-east", "hosp-west")
    config = tmp_path / "loadtest.toml"
    config.write_text(f'[workload]\nkey_files = {{ hosp-east = "{files["hosp-east"]}" }}\n')
    loaded = load(["-c", str(config), "--key-file", f"hosp-west={files['hosp-west']}"])
    assert loaded.key_files == files


async def test_without_key_files_a_real_consortium_asks_for_them() -> None:
    with pytest.raises(ConfigError) as refused:
        await prepare_on(consortium_ledger(), {}, workers=2)
    message = str(refused.value)
    assert "--key-file ORG=PATH" in message and SETTING in message
    assert "0 of 4 members' keys" in message


async def test_a_key_file_holding_another_members_key_is_refused(tmp_path: Path) -> None:
    files = key_files(tmp_path, "acme-insurance")
    files = {"hosp-east": files["acme-insurance"]}
    with pytest.raises(ConfigError) as refused:
        await prepare_on(consortium_ledger(), files, workers=1)
    message = str(refused.value)
    assert f"{SETTING}.hosp-east" in message and files["hosp-east"] in message
    assert "0x" + admin_key("hosp-east").public_key.hex() in message


async def test_a_key_file_for_an_unknown_org_is_refused(tmp_path: Path) -> None:
    files = key_files(tmp_path, "hosp-east", "hosp-north")
    with pytest.raises(ConfigError, match=r"names \['hosp-north'\], not active members"):
        await prepare_on(consortium_ledger(), files, workers=1)


async def test_with_key_files_members_are_never_voted_in(tmp_path: Path) -> None:
    ledger = consortium_ledger()
    # Three of four members' keys: a two-thirds majority a devnet run would vote with.
    files = key_files(tmp_path, "hosp-east", "hosp-west", "acme-insurance")
    with pytest.raises(ConfigError) as refused:
        await prepare_on(ledger, files, workers=3)
    message = str(refused.value)
    assert "['hosp-east', 'hosp-west']" in message and "--key-file" in message
    members = ledger.query("gov_members", {})
    assert sorted(member["org_id"] for member in members) == sorted(org for org, _ in MEMBERS)


# ---- the mix that ran -------------------------------------------------------------------------


async def run_lanes(prepared: Prepared, txs: int) -> tuple[RoundOutcome, list[list[bytes]]]:
    """Sign each lane's txs and run a one-second round of them against the fake node."""
    lanes = generate_pool(prepared.specs, [txs] * len(prepared.specs), processes=0)
    pools = [worker_pool(lane, lane_tx_types(spec, len(lane)))
             for spec, lane in zip(prepared.specs, lanes, strict=True)]
    outcome = await run_round(FakeNode(), pools, FixedRate(100.0, 1000), warmup_seconds=0.2,
                              duration_seconds=1.0)
    return outcome, lanes


def report_of(prepared: Prepared, outcome: RoundOutcome,
              observation: Observation | None = None) -> dict[str, Any]:
    report = build_report(
        LoadtestConfig(workers=len(prepared.specs)), "consortium",
        [TargetInfo("http://node/", CHAIN_ID, "leader", 1, "")], prepared, outcome,
        observation or Observation(ProcessSampler([])), {"status": "ok"},
        signing_seconds=0.1, pool_txs=0,
    )
    report["name"] = "consortium"
    return report


async def test_without_an_insurers_key_claims_are_left_out_and_the_report_shows_what_ran(
    tmp_path: Path,
) -> None:
    ledger = consortium_ledger()
    prepared = await prepare_on(ledger, key_files(tmp_path, "hosp-east", "hosp-west"),
                                workers=2)
    (left_out,) = prepared.left_out
    assert left_out.tx_type == "CLAIM_SUBMIT" and left_out.lanes == (0, 1)
    outcome, lanes = await run_lanes(prepared, 300)
    # What the pools say they hold is what was signed, and it is valid on the chain.
    for spec, lane in zip(prepared.specs, lanes, strict=True):
        assert [decode_transaction(raw).type.name for raw in lane] == lane_tx_types(spec, 300)
    for block in interleave(lanes, batch=50):
        assert set(commit_block(ledger, block)) == {ResultCode.OK}

    report = report_of(prepared, outcome)
    mix = report["mix"]
    by_type = {row["tx_type"]: row for row in mix["by_type"]}
    assert by_type["CLAIM_SUBMIT"]["weight"] == 15 and by_type["CLAIM_SUBMIT"]["submitted"] == 0
    assert sum(row["submitted"] for row in mix["by_type"]) == report["summary"]["submitted"]
    assert by_type["ANCHOR_RECORD"]["submitted"] > by_type["ACCESS_LOG"]["submitted"] > 0
    assert by_type["ANCHOR_RECORD"]["committed"] == by_type["ANCHOR_RECORD"]["submitted"]
    (item,) = mix["left_out"]
    assert item["tx_type"] == "CLAIM_SUBMIT" and item["all_lanes"]
    assert "no insurer" in item["reason"]
    assert "healthcare mix without CLAIM_SUBMIT" in report["description"]
    page = render_html(report)
    assert "Configured types left out" in page and "no insurer" in page


async def test_a_custodian_lane_leaves_out_the_claims_the_provider_lane_submits(
    tmp_path: Path,
) -> None:
    files = key_files(tmp_path, "hosp-east", "records-vault", "acme-insurance")
    prepared = await prepare_on(consortium_ledger(), files, workers=2)
    (left_out,) = prepared.left_out
    assert left_out.tx_type == "CLAIM_SUBMIT" and left_out.lanes == (1,)
    assert "custodian" in left_out.reason
    outcome, _ = await run_lanes(prepared, 300)
    report = report_of(prepared, outcome)
    by_type = {row["tx_type"]: row for row in report["mix"]["by_type"]}
    assert by_type["CLAIM_SUBMIT"]["submitted"] > 0
    assert report["mix"]["left_out"][0]["lanes"] == [1]
    assert "CLAIM_SUBMIT in 1 of 2 lanes" in report["description"]


# ---- node CPU and memory from /metrics --------------------------------------------------------


def process_metrics(cpu_seconds: float, resident_bytes: int, open_fds: int) -> str:
    """/metrics text as a node serves it (prometheus_client's ProcessCollector names)."""
    return (
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        "# TYPE process_cpu_seconds_total counter\n"
        f"process_cpu_seconds_total {cpu_seconds}\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        f"process_resident_memory_bytes {float(resident_bytes)}\n"
        "# TYPE process_open_fds gauge\n"
        f"process_open_fds {float(open_fds)}\n"
        "# TYPE medledger_height gauge\n"
        "medledger_height 12.0\n"
    )


def test_node_figures_come_from_the_process_metrics() -> None:
    sampler = NodeMetricsSampler()
    url = "http://10.1.2.3:8545/"
    sampler.add(url, 0.5, process_metrics(3.0, 100 * 2**20, 40))  # before the window
    sampler.add(url, 2.0, process_metrics(4.0, 110 * 2**20, 41))
    sampler.add(url, 6.0, process_metrics(7.0, 150 * 2**20, 60))  # arrives late ...
    sampler.add(url, 4.0, process_metrics(5.5, 130 * 2**20, 55))  # ... kept in time order
    sampler.add(url, 5.0, "<html>502 Bad Gateway</html>")
    sampler.add(url, 5.5, "medledger_height 12.0\n")
    figures = sampler.figures(2.0, 6.0, committed_txs=1_500)[url]
    assert figures["cpu_seconds"] == pytest.approx(3.0)
    assert figures["cores_used"] == pytest.approx(0.75)
    assert figures["cpu_seconds_per_committed_tx"] == pytest.approx(0.002)
    assert figures["rss_bytes_first"] == 110 * 2**20
    assert figures["rss_bytes_max"] == figures["rss_bytes_last"] == 150 * 2**20
    assert figures["open_fds_max"] == 60
    assert figures["scrapes_without_figures"] == 2
    assert sampler.series[url].seconds == [0.5, 2.0, 4.0, 6.0]


def test_a_real_node_registry_serves_the_figures_we_read() -> None:
    from prometheus_client import generate_latest

    from node.metrics import Metrics

    figures = process_figures(generate_latest(Metrics().registry).decode())
    assert figures is not None
    status = Path("/proc/self/status").read_text()
    resident_kib = next(int(line.split()[1]) for line in status.splitlines()
                        if line.startswith("VmRSS:"))
    assert 0.5 < figures.resident_memory_bytes / (resident_kib * 1024) < 2.0
    assert figures.cpu_seconds > 0 and figures.open_fds > 2


def non_loopback_address() -> str | None:
    """This host's address on its default route, if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # UDP: no packet is sent
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


class FakeMetricsNode:
    """Serves /metrics over HTTP; each scrape finds 0.25 CPU seconds and 1 MiB more."""

    def __init__(self) -> None:
        self.scrapes = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            request += chunk
        assert request.startswith(b"GET /metrics ")
        self.scrapes += 1
        body = process_metrics(10.0 + 0.25 * self.scrapes, (200 + self.scrapes) * 2**20,
                               30 + self.scrapes).encode()
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                              + f"Content-Length: {len(body)}\r\n".encode()
                              + b"Connection: close\r\n\r\n" + body)
        await stream.aclose()


@pytest.fixture
def address() -> Iterator[str]:
    found = non_loopback_address()
    if found is None:
        pytest.skip("this host has no address off loopback")
    yield found


async def test_a_node_off_loopback_is_measured_from_its_metrics(address: str) -> None:
    node = FakeMetricsNode()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, node.handle, 0)
        port = listeners[0].socket.getsockname()[1]
        url = f"http://{address}:{port}/"
        assert local_port(url) is None  # /proc sampling would not see this node
        observation = Observation(ProcessSampler([]))
        with trio.fail_after(10):
            for second in range(4):
                for target, scrape in (await scrape_metrics([url])).items():
                    observation.nodes.add(target, float(second), scrape.text)
        nursery.cancel_scope.cancel()
    assert node.scrapes == 4
    outcome = outcome_with(committed=500, done_seconds=3.0)
    report = report_of(empty_prepared(), outcome, observation)
    figures = report["nodes"]["by_node"][url]
    assert figures["cpu_seconds"] == pytest.approx(0.75)  # scrapes 1..4, seconds 0..3
    assert figures["cpu_seconds_per_committed_tx"] == pytest.approx(0.75 / 500)
    assert figures["rss_bytes_max"] == 204 * 2**20 and figures["open_fds_max"] == 34
    page = render_html(report)
    assert "Nodes (from their /metrics)" in page and url in page and "1.500 ms" in page


def empty_prepared() -> Prepared:
    return Prepared((), 0, (), 0, tuple(DEFAULT_WEIGHTS.items()))


def outcome_with(*, committed: int, done_seconds: float) -> RoundOutcome:
    from node.loadtest.runner import PhaseCounts

    return RoundOutcome(
        start=0.0, measured_start_seconds=0.0, submit_end_seconds=done_seconds - 1.0,
        done_seconds=done_seconds, measured_submit_seconds=[], measured_commits=[],
        measured=PhaseCounts(submitted=committed, committed=committed), warmup=PhaseCounts(),
        submitted_ids=set(), committed_ids=set(), measured_ids=set(), highest_height=0,
        subscription_overflows=0, unknown_notifications=0, error_samples=[],
        pool_exhausted=False, stopped_workers=[],
    )
