"""monitoring + node_exporter on one host: Prometheus with its rules and targets,
Alertmanager routing to the runner's webhook receiver on the controller."""

import json
import time
import urllib.request
from pathlib import Path

from chaos_runner.target.netguard import NetworkGuard
from chaos_runner.workload.alerts import AlertReceiver

ADDRESS = "198.18.0.161"
ROOT = "/srv/chaoslab/mol-mon"


def get(host, port, path):
    return json.loads(host.check_output(f"curl -sf http://{ADDRESS}:{port}{path}"))


def test_prometheus_and_alertmanager_are_ready(host):
    for port in (9090, 9093):
        assert host.run(f"curl -sf http://{ADDRESS}:{port}/-/ready").rc == 0


def test_the_alert_rules_are_loaded(host):
    groups = get(host, 9090, "/api/v1/rules")["data"]["groups"]
    names = sorted(r["name"] for g in groups for r in g["rules"])
    assert names == ["FraiseQLDown", "FraiseQLErrorRatio", "FraiseQLLatencyHigh", "PostgreSQLDown"]
    assert all(r["health"] == "ok" for g in groups for r in g["rules"])


def test_every_target_is_up(host):
    # Scrapes every second; the node exporter's every 5 s: allow a first round.
    for _ in range(40):
        active = get(host, 9090, "/api/v1/targets?state=active")["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active}
        if set(health.values()) == {"up"}:
            break
        time.sleep(0.5)
    # No app or database host in this inventory: no fraiseql or postgresql job.
    assert health == {"node": "up", "prometheus": "up", "alertmanager": "up"}


def test_the_programs_run_unprivileged_from_their_own_units(host):
    for name in ("prometheus", "alertmanager", "node-exporter"):
        unit = host.service(f"chaoslab-{name}")
        assert unit.is_running and unit.is_enabled
        pid = host.file(f"{ROOT}/run/{name}.pid").content_string.strip()
        assert host.check_output(f"ps -o user= -p {pid}").strip() == "prometheus"
    assert not host.service("prometheus").is_running  # Debian's own unit stays off
    assert host.file(f"{ROOT}/etc/alertmanager.yml").mode == 0o640


def test_an_alert_reaches_the_runners_receiver_on_the_controller(host):
    record = json.loads(Path("/var/lib/chaoslab-molecule/monitoring/mol-mon.json").read_text())
    assert record["webhook_address"] == "198.18.0.1"
    with AlertReceiver(record["webhook_address"], record["webhook_port"]) as receiver:
        body = json.dumps([{"labels": {"alertname": "MoleculeProbe", "host": "mol-mon"}}]).encode()
        req = urllib.request.Request(
            f"http://{NetworkGuard().check(ADDRESS)}:9093/api/v2/alerts",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        sent = time.monotonic()
        while not receiver.received and time.monotonic() - sent < 15:
            time.sleep(0.1)
    assert [(o.detail["alertname"], o.outcome) for o in receiver.received][:1] == [
        ("MoleculeProbe", "fail")
    ]
