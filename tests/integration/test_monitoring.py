"""The monitoring host on the lab: Prometheus scrapes every target, and a real failure
reaches the runner's webhook receiver as an alert, then its resolution."""

from __future__ import annotations

import time

import pytest

from chaos_runner.faults.channel import FaultClient, FaultSpec
from chaos_runner.target.lab import lab_checks
from chaos_runner.target.monitoring import targets
from chaos_runner.workload.alerts import AlertReceiver, alert_receiver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("healed_after")]


@pytest.fixture(scope="module")
def faults(lab):
    with FaultClient(lab) as client:
        yield client
        client.heal_all()


@pytest.fixture(scope="module")
def monitor(lab):
    assert list(lab.monitors) == ["mon1"], "the embedded lab has one monitoring host"
    return lab.monitors["mon1"]


def test_lab_status_shows_prometheus_targets_up_and_alertmanager_ready(lab, monitor):
    checks = {c.item: c for c in lab_checks(lab) if c.host == "mon1"}
    for item in ("prometheus ready", "alertmanager ready", "prometheus targets"):
        assert checks[item].ok, checks[item]
    for program in ("prometheus", "alertmanager", "postgres-exporter", "node-exporter"):
        assert checks[program].ok, checks[program]
    jobs = {(t["job"], t["host"]) for t in targets(lab.guard, monitor)}
    assert {("fraiseql", "app1"), ("postgresql", "db1")} <= jobs
    assert {h for j, h in jobs if j == "node"} == set(lab.hosts)


def wait_for(receiver: AlertReceiver, name: str, status: str, limit_s: float) -> float | None:
    """Seconds until an alert `name` with `status` arrived, or None after limit_s."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        for op in receiver.received:
            if (op.detail or {}).get("alertname") == name and op.detail["status"] == status:
                return round((op.end_ns / 1e9) - start, 3)
        time.sleep(0.1)
    return None


def test_a_stopped_postgresql_pages_within_seconds_and_resolves_after_the_heal(lab, faults):
    with alert_receiver(lab.monitors.values()) as receiver:
        assert receiver is not None
        time.sleep(2)
        # The lab is healthy: nothing new fires (a resolution of an earlier alert may come).
        assert [o.error for o in receiver.received if o.outcome == "fail"] == []
        fault = faults.inject(FaultSpec("db1", "proc.stop", {"program": "postgresql"}, ttl_s=60))
        fired = wait_for(receiver, "PostgreSQLDown", "firing", 20)
        faults.heal("db1", fault["id"])
        resolved = wait_for(receiver, "PostgreSQLDown", "resolved", 30)
    print(f"PostgreSQLDown fired {fired} s after the stop, resolved {resolved} s after")
    assert fired is not None and fired < 10, receiver.received
    assert resolved is not None, receiver.received
