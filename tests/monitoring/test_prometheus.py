"""The compose stack's monitoring, checked with Debian's Prometheus: the scrape config and the alert rules pass
promtool (and the rules their unit tests, alerts_test.yml); the receiver's real /metrics and the host collector's
pass `promtool check metrics`; and a real Prometheus, on the compose scrape config with its targets moved to
loopback, scrapes a running receiver and host collector (`up == 1`) and fires the tick-rate alert for a game
server whose report says 50 FPS. promtool and prometheus come from `make promtool` (`make test` runs it).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import generate_latest

from collectors.config import Settings
from collectors.dev.ports import free_port
from collectors.ingest import metrics
from collectors.ingest.service import SERVICE_NAME
from collectors.monitoring import ALERT_RULES, PROMETHEUS_CONFIG
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient
from collectors.senders.client.spool import Spool
from collectors.senders.host.exposition import CurrentValues
from collectors.senders.host.sampler import HostSampler
from tests.support.receivers import TOKEN

HERE = Path(__file__).resolve().parent
RULE_TESTS = HERE / "alerts_test.yml"
REPORT = HERE.parent / "receiver" / "data" / "game_server_report.json"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: run `make promtool` (as root; `make test` does it)", pytrace=False)
    return found


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=60)


def report(server_id: str, **performance: float) -> dict:
    """The game server's example document, now, with ``performance`` fields replaced."""
    document = json.loads(REPORT.read_text())
    document["server_id"] = server_id
    document["timestamp"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    document["network"]["packet_loss_percent"] = 0.2
    document["performance"].update(performance)
    return document


def samples(page: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """``{labels: value}`` of the metric ``name`` in an exposition page (labels as a set of pairs)."""
    found = {}
    for line in page.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match:
            found[frozenset(re.findall(r'(\w+)="([^"]*)"', match[1] or ""))] = float(match[2])
    return found


def value(page: str, name: str, **labels: str) -> float:
    """The value of the sample of ``name`` with exactly these labels."""
    found = samples(page, name)
    key = frozenset(labels.items())
    assert key in found, f"no {name}{labels} in /metrics: {sorted(found, key=str)[:10]}"
    return found[key]


def names(page: str) -> set[str]:
    return {line.split()[2] for line in page.splitlines() if line.startswith("# TYPE ")} | {
        re.split(r"[{ ]", line, maxsplit=1)[0] for line in page.splitlines() if line and not line.startswith("#")
    }


@pytest.fixture
def receiver(warehouse_url: str) -> Iterator[Receiver]:
    settings = Settings(
        database_url=warehouse_url,
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        metrics_port=free_port(),
        ingest_tokens=TOKEN,
        workers=2,
    )
    running = Receiver(settings).start()
    yield running
    running.stop(grace=5)


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def post_report(receiver: Receiver, document: dict) -> None:
    answer = httpx.post(f"http://127.0.0.1:{receiver.http_port}/api/v1/telemetry", json=document, headers=AUTH)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text


def host_exposition(tmp_path: Path) -> CurrentValues:
    spool = Spool(tmp_path / "spool")
    spool.put("PushHostMinutes", b"waiting")  # one batch the receiver has not taken yet
    current = CurrentValues(spool=spool)
    sampler = HostSampler()
    current.update(sampler.sample())
    time.sleep(0.2)
    current.update(sampler.sample())
    return current


# --------------------------------------------------------------------------- promtool on the files


def test_the_scrape_config_passes_promtool() -> None:
    done = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout + done.stderr  # alerts.yml, beside it


def test_the_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", str(ALERT_RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_game_server_threshold_has_a_warning_and_a_critical_rule() -> None:
    rules = [r for g in yaml.safe_load(ALERT_RULES.read_text())["groups"] for r in g["rules"]]
    thresholds = {
        "server_cpu_usage_ratio": (">", 0.80, 0.95),
        "server_memory_usage_ratio": (">", 0.85, 0.95),
        "server_tick_rate_fps": ("<", 58, 55),
        "server_player_ping_p95_seconds": (">", 0.100, 0.200),
        "server_packet_loss_ratio": (">", 0.01, 0.05),
    }
    for metric, (op, warning, critical) in thresholds.items():
        found = {}
        for rule in rules:
            match = re.search(rf"\({metric}\)\s*{re.escape(op)}\s*([\d.]+)$", rule["expr"].strip())
            if match:
                found[rule["labels"]["severity"]] = float(match[1])
        assert found == {"warning": warning, "critical": critical}, metric


# --------------------------------------------------------------------------- promtool on the real /metrics


def test_the_receivers_metrics_pass_promtool(receiver: Receiver) -> None:
    server_id = f"promtool-{uuid.uuid4().hex[:8]}"
    post_report(receiver, report(server_id, tick_rate_fps=50.0))
    target = f"127.0.0.1:{receiver.port}"
    with grpc.insecure_channel(target) as channel:  # a health check, and a call without a token
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(f"/{SERVICE_NAME}/PushServerReports")(b"", timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        made_up = f"/made.up.Service/Method{uuid.uuid4().hex}"  # a name the caller chose: no label may take it
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(made_up)(b"", timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    over_grpc = f"grpc-{uuid.uuid4().hex[:8]}"  # reports sent over gRPC show as well
    stamp = pb.ServerReport(server_id=over_grpc, document_json=json.dumps(report(over_grpc, tick_rate_fps=59.5)))
    stamp.timestamp.GetCurrentTime()
    with IngestClient(target, TOKEN, attempts=1) as client:
        assert client.push("server_reports", [stamp]).accepted == 1

    # the server counts a call once it is over, in a callback that may run after the client has its answer
    push = {"grpc_type": "unary", "grpc_service": SERVICE_NAME, "grpc_method": "PushServerReports"}
    push_ok = frozenset({**push, "grpc_code": "OK"}.items())
    deadline = time.monotonic() + 10
    page = scrape(receiver.settings.metrics_port)
    while push_ok not in samples(page, "grpc_server_handled_total") and time.monotonic() < deadline:
        time.sleep(0.1)
        page = scrape(receiver.settings.metrics_port)
    done = promtool("check", "metrics", stdin=page)
    assert done.returncode == 0, done.stdout + done.stderr

    # the live gauges of the report, in base units
    assert value(page, "server_tick_rate_fps", server_id=server_id) == 50.0
    assert value(page, "server_tick_rate_fps", server_id=over_grpc) == 59.5
    assert value(page, "server_cpu_usage_ratio", server_id=server_id) == pytest.approx(0.452)
    assert value(page, "server_avg_player_ping_seconds", server_id=server_id) == pytest.approx(0.0453)
    assert value(page, "server_player_ping_p95_seconds", server_id=server_id) == pytest.approx(0.058)
    assert value(page, "server_memory_usage_ratio", server_id=server_id) == pytest.approx(0.25)
    assert value(page, "server_packet_loss_ratio", server_id=server_id) == pytest.approx(0.002)
    assert value(page, metrics.LAST_REPORT, server_id=server_id) == pytest.approx(time.time(), abs=60)
    # the standard gRPC server metrics, by method and code
    check = {"grpc_type": "unary", "grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}
    assert value(page, "grpc_server_handled_total", **check, grpc_code="OK") >= 1
    assert value(page, "grpc_server_handled_total", **push, grpc_code="Unauthenticated") >= 1
    assert value(page, "grpc_server_handled_total", **push, grpc_code="OK") >= 1
    assert value(page, "grpc_server_started_total", **push) >= 2
    assert value(page, "grpc_server_handling_seconds_count", **push) >= 2
    assert value(page, "grpc_server_calls_in_flight", **push) == 0
    unknown = {"grpc_type": "client_stream", "grpc_service": "unknown", "grpc_method": "unknown"}
    assert value(page, "grpc_server_handled_total", **unknown, grpc_code="Unauthenticated") >= 1
    assert made_up.rsplit("/", 1)[1] not in page
    # the connection pool
    assert 1 <= value(page, "telemetry_receiver_db_pool_connections") <= 2
    assert value(page, "telemetry_receiver_db_pool_connections_max") == 2
    assert 0 <= value(page, "telemetry_receiver_db_pool_connections_in_use") <= 2


def test_the_host_collectors_metrics_pass_promtool(tmp_path: Path) -> None:
    current = host_exposition(tmp_path)
    page = generate_latest(current.registry).decode()
    done = promtool("check", "metrics", stdin=page)
    assert done.returncode == 0, done.stdout + done.stderr
    exposed = names(page)
    assert not [n for n in exposed if n.endswith(("_per_s", "_percent"))], "rates and percents are gone"
    assert {"host_memory_total_bytes", "host_memory_used_bytes", "host_memory_available_bytes"} <= exposed
    assert "host_network_receive_bytes_total" in exposed and "host_disk_read_bytes_total" in exposed
    assert 0 <= value(page, "host_cpu_usage_ratio") <= 1
    assert value(page, "telemetry_client_spool_batches") == 1


def test_the_alert_rules_use_only_metrics_that_are_exposed(receiver: Receiver, tmp_path: Path) -> None:
    """A renamed metric must not leave a rule watching nothing."""
    post_report(receiver, report(f"names-{uuid.uuid4().hex[:8]}"))
    with grpc.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    exposed = names(scrape(receiver.settings.metrics_port)) | names(
        generate_latest(host_exposition(tmp_path).registry).decode()
    )
    exposed |= {"up"}  # Prometheus' own, per target
    keywords = {"by", "without", "on", "ignoring", "and", "or", "unless", "group_left", "group_right"}
    for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]:
        for rule in group["rules"]:
            expr = re.sub(r"\{[^}]*\}|\b(by|without|on)\s*\([^)]*\)|\"[^\"]*\"", " ", rule["expr"])
            used = {m[1] for m in re.finditer(r"\b([a-z_:][a-z0-9_:]*)\b(?!\s*\()", expr) if m[1] not in keywords}
            missing = used - exposed
            assert not missing, f"{rule['alert']}: {sorted(missing)} exposed by nothing"


# --------------------------------------------------------------------------- a live Prometheus


def prometheus_api(port: int, path: str, **query: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    answer = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert answer["status"] == "success", answer
    return answer["data"]


def wait_for(what: str, check, timeout: float = 40.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus: {what} within {timeout:g} s")
        time.sleep(0.5)


def test_prometheus_scrapes_the_receiver_and_the_collector_and_fires_the_tick_rate_alert(
    receiver: Receiver, tmp_path: Path
) -> None:
    prometheus = tool("prometheus")
    current = host_exposition(tmp_path)
    host_port = current.serve(0)
    port = free_port()
    # the compose scrape config, its targets on loopback and its clocks fast; the rules with short `for:`
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    loopback = {
        "receiver:9464": f"127.0.0.1:{receiver.settings.metrics_port}",
        "host-collector:9464": f"127.0.0.1:{host_port}",
        "localhost:9090": f"127.0.0.1:{port}",
    }
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [loopback[t] for t in static["targets"]]
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    rules = yaml.safe_load(ALERT_RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "1s"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))

    slow, healthy = f"live-50fps-{uuid.uuid4().hex[:6]}", f"live-ok-{uuid.uuid4().hex[:6]}"
    post_report(receiver, report(slow, tick_rate_fps=50.0))
    post_report(receiver, report(healthy, tick_rate_fps=59.8))
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def all_up() -> bool:
            up = prometheus_api(port, "query", query="up")["result"]
            return {r["metric"]["job"]: r["value"][1] for r in up} == {
                "receiver": "1",
                "host-collector": "1",
                "prometheus": "1",
            }

        wait_for("up == 1 for the receiver, the host collector and itself", all_up)

        def tick_alerts() -> list[dict]:  # of this test's servers (other tests' reports may still be live)
            alerts = prometheus_api(port, "alerts")["alerts"]
            firing = [
                a
                for a in alerts
                if a["labels"]["alertname"] == "GameServerTickRateLow"
                and a["state"] == "firing"
                and a["labels"]["server_id"] in (slow, healthy)
            ]
            return firing if len(firing) >= 2 else []

        firing = wait_for("GameServerTickRateLow firing (warning and critical)", tick_alerts)
        assert {(a["labels"]["server_id"], a["labels"]["severity"]) for a in firing} == {
            (slow, "warning"),
            (slow, "critical"),
        }
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(20)
        log.close()
        current.close()


# --------------------------------------------------------------------------- the live gauges' bounds


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def shown(live: metrics.LiveServers, name: str) -> dict[str, float]:
    return {s.labels["server_id"]: s.value for f in live.collect() if f.name == name for s in f.samples}


def test_live_gauges_go_stale_then_are_forgotten_and_their_number_is_capped() -> None:
    clock = Clock()
    live = metrics.LiveServers(fresh_seconds=60, forget_seconds=600, max_servers=2, clock=clock)
    live.observe("a", clock.now, {"performance": {"tick_rate_fps": 50}, "hardware": {"cpu_usage_percent": 97}})
    live.observe("b", clock.now, {"performance": {"tick_rate_fps": 60}})
    assert shown(live, "server_tick_rate_fps") == {"a": 50, "b": 60}
    assert shown(live, "server_cpu_usage_ratio") == {"a": pytest.approx(0.97)}
    assert not live.observe("c", clock.now, {"performance": {"tick_rate_fps": 59}}), "over the cap"
    assert live.dropped == 1
    assert not live.observe("a", clock.now - 5, {"performance": {"tick_rate_fps": 10}}), "older than the one shown"

    clock.now += 61  # a's and b's reports are stale: only their last-report time shows, which alerts use
    live.observe("b", clock.now, {"performance": {"tick_rate_fps": 61}})
    assert shown(live, "server_tick_rate_fps") == {"b": 61}
    assert set(shown(live, metrics.LAST_REPORT)) == {"a", "b"}

    clock.now += 600  # a is forgotten, which makes room for c
    assert set(shown(live, metrics.LAST_REPORT)) == {"b"}
    assert live.observe("c", clock.now, {"performance": {"tick_rate_fps": 59}})
    assert set(shown(live, metrics.LAST_REPORT)) == {"b", "c"}
    assert [s.value for f in live.collect() if f.name == "telemetry_receiver_live_servers" for s in f.samples] == [2]
