"""The alert receiver and what the checks make of alerts.

The receiver is a real HTTP server on loopback, posted to the way Alertmanager's webhook
does (payload version 4, as Alertmanager 0.25 sends it); the checks judge hand-built
alert operations with known timestamps.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from chaos_runner.analysis.checkers import Evidence, first_report_s, scoped
from chaos_runner.analysis.evaluate import SIDE_KINDS, detection_s, fired_alerts, service_ops
from chaos_runner.analysis.history import Operation
from chaos_runner.errors import ConfigError
from chaos_runner.model.scenario import Detect, Expect
from chaos_runner.target.monitoring import Monitor
from chaos_runner.workload.alerts import (
    ALERT_INDEX_BASE,
    ALERT_KIND,
    AlertReceiver,
    alert_receiver,
)
from tests.unit.test_checkers import MS, during, evidence


def notification(status: str, *alerts: tuple[str, str]) -> dict[str, Any]:
    """An Alertmanager webhook body: alerts as (alertname, status)."""
    return {
        "version": "4",
        "status": status,
        "receiver": "chaoslab",
        "groupLabels": {"alertname": alerts[0][0]},
        "alerts": [
            {
                "status": st,
                "labels": {"alertname": name, "host": "db1", "severity": "critical"},
                "annotations": {"summary": f"{name} summary"},
                "startsAt": "2026-11-27T06:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": f"fp-{name}",
            }
            for name, st in alerts
        ],
    }


def post(port: int, body: bytes, path: str = "/alerts") -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_receiver_stamps_each_alert_and_hands_it_to_the_sink():
    taken: list[Operation] = []
    with AlertReceiver("127.0.0.1", 0) as receiver:
        port = receiver._server.server_address[1]  # type: ignore[union-attr]
        receiver.attach(taken.append)
        before = time.monotonic_ns()
        body = notification("firing", ("PostgreSQLDown", "firing"), ("FraiseQLDown", "firing"))
        assert post(port, json.dumps(body).encode()) == 200
        after = time.monotonic_ns()
        receiver.attach(None)
        resolved = notification("resolved", ("PostgreSQLDown", "resolved"))
        assert post(port, json.dumps(resolved).encode()) == 200
    assert [(o.kind, o.outcome, o.detail["alertname"]) for o in taken] == [  # type: ignore[index]
        (ALERT_KIND, "fail", "PostgreSQLDown"),
        (ALERT_KIND, "fail", "FraiseQLDown"),
    ]
    assert all(before <= o.end_ns == o.start_ns <= after for o in taken)
    assert taken[0].error == "PostgreSQLDown firing (db1): PostgreSQLDown summary"
    assert [o.index for o in taken] == [ALERT_INDEX_BASE, ALERT_INDEX_BASE + 1]
    # Kept by the receiver also while no one listens; a resolved alert is `ok`, no error.
    assert [(o.outcome, o.error) for o in receiver.received[2:]] == [("ok", None)]


def test_the_receiver_refuses_what_is_not_a_notification():
    with AlertReceiver("127.0.0.1", 0) as receiver:
        port = receiver._server.server_address[1]  # type: ignore[union-attr]
        assert post(port, b"{not json") == 400
        assert post(port, b'{"alerts": "x"}') == 400
        assert post(port, b'{"alerts": [1]}') == 400
        assert post(port, json.dumps(notification("firing", ("A", "firing"))).encode(), "/x") == 404
    assert receiver.received == []


def test_a_receiver_that_cannot_listen_names_the_settings():
    with AlertReceiver("127.0.0.1", 0) as first:
        port = first._server.server_address[1]  # type: ignore[union-attr]
        with pytest.raises(ConfigError, match="monitoring_webhook_address"):
            AlertReceiver("127.0.0.1", port).start()


def test_no_monitoring_host_no_receiver():
    with alert_receiver([]) as receiver:
        assert receiver is None
    monitor = Monitor("mon1", "http://x:9090", "http://x:9093", "127.0.0.1", 0)
    with alert_receiver([monitor]) as receiver:
        assert isinstance(receiver, AlertReceiver)


def alert(at_ms: float, status: str = "firing", name: str = "PostgreSQLDown") -> Operation:
    at = int(at_ms * MS)
    return Operation(
        index=ALERT_INDEX_BASE,
        kind=ALERT_KIND,
        start_ns=at,
        end_ns=at,
        outcome="fail" if status == "firing" else "ok",
        detail={"alertname": name, "status": status},
    )


def alerting(side: list[Operation], within_s: float = 5, **kw: Any) -> Evidence:
    expect = Expect(class_="fail-fast", detect=Detect("alert", within_s))
    ev = evidence("fail-fast", side_ops=side, bite_ns=1200 * MS, inject_ns=1000 * MS, **kw)
    return Evidence(**{**ev.__dict__, "expect": expect})


def test_an_alert_in_time_and_a_quiet_baseline_pass():
    # Bite at 1.2 s; the first firing alert arrives at 4.2 s: 3.0 s after it.
    detect, quiet = scoped(alerting([alert(4200), alert(4300, name="FraiseQLErrorRatio")]))
    assert (detect.name, detect.ok, detect.measured) == ("an alert reports the failure", True, 3.0)
    assert (quiet.ok, quiet.measured) == (True, "0 fired")


def test_a_late_or_missing_alert_fails():
    (late, _) = scoped(alerting([alert(4200)], within_s=2))
    assert (late.ok, late.measured) == (False, 3.0)
    (missing, quiet) = scoped(alerting([]))
    assert (missing.ok, missing.detail) == (False, "no alert arrived")
    assert quiet.ok
    # A resolved notification is not a report of the failure.
    (resolved_only, _) = scoped(alerting([alert(4200, "resolved")]))
    assert (resolved_only.ok, resolved_only.detail) == (False, "alert never reported the failure")


def test_an_alert_before_the_fault_is_a_false_alarm():
    (detect, quiet) = scoped(alerting([alert(500), alert(4200)]))
    assert detect.ok and detect.measured == 3.0
    assert (quiet.ok, quiet.measured) == (False, "1 fired")
    # A resolution arriving in the baseline (of an earlier alert) is not an alarm.
    (_, calm) = scoped(alerting([alert(500, "resolved"), alert(4200)]))
    assert calm.ok


def test_alerts_are_side_operations_and_each_signal_is_timed_from_the_bite():
    assert ALERT_KIND in SIDE_KINDS
    bite = 1200 * MS
    valid = during([5, 5, 5, 5], ["ok", "ok", "fail", "fail"])  # fail at 1.2 s + 5 ms
    ready = during([5, 5, 5, 5, 5, 5], ["ok", "ok", "ok", "ok", "fail", "fail"], kind="ready")
    side = [*ready, alert(4200), alert(6000, "resolved")]
    assert service_ops([*valid, *side]) == valid
    assert detection_s(valid, side, bite, alerting=True) == {
        "client": 0.005,
        "ready": 0.205,
        "alert": 3.0,
    }
    # Without a receiver the alert is not a signal; with one, never firing is None.
    assert "alert" not in detection_s(valid, side, bite, alerting=False)  # type: ignore[operator]
    assert detection_s(valid, ready, bite, alerting=True)["alert"] is None  # type: ignore[index]
    assert detection_s(valid, side, None, alerting=True) is None
    assert fired_alerts(side) == ["PostgreSQLDown"]
    assert first_report_s([alert(1000)], bite) is None  # before the bite: not a report


def record(tmp_path: Any, name: str, **fields: Any) -> None:
    raw = {
        "host": name,
        "prometheus": "http://198.18.0.16:9090",
        "alertmanager": "http://198.18.0.16:9093",
        "webhook_address": "198.18.0.1",
        "webhook_port": 9099,
        **fields,
    }
    (tmp_path / "monitoring").mkdir(exist_ok=True)
    (tmp_path / "monitoring" / f"{name}.json").write_text(json.dumps(raw))


def test_monitors_come_from_the_roles_records_of_this_inventory(tmp_path):
    from chaos_runner.target.monitoring import load_monitors

    assert load_monitors(tmp_path, {"mon1"}) == {}
    record(tmp_path, "mon1")
    record(tmp_path, "mon9")  # another inventory's host, same state directory
    assert load_monitors(tmp_path, {"mon1", "db1"}) == {
        "mon1": Monitor(
            "mon1", "http://198.18.0.16:9090", "http://198.18.0.16:9093", "198.18.0.1", 9099
        )
    }


def test_a_broken_monitor_record_says_to_converge_again(tmp_path):
    from chaos_runner.errors import LabNotReady
    from chaos_runner.target.monitoring import load_monitors

    record(tmp_path, "mon1", webhook_port=None)
    raw = json.loads((tmp_path / "monitoring" / "mon1.json").read_text())
    del raw["webhook_port"]
    (tmp_path / "monitoring" / "mon1.json").write_text(json.dumps(raw))
    with pytest.raises(LabNotReady, match=r"mon1\.json: lacks webhook_port; converge again"):
        load_monitors(tmp_path, {"mon1"})
    (tmp_path / "monitoring" / "mon1.json").write_text("{")
    with pytest.raises(LabNotReady, match="unreadable"):
        load_monitors(tmp_path, {"mon1"})


METRICS = """# HELP fraiseql_http_requests_total Total HTTP requests
# TYPE fraiseql_http_requests_total counter
fraiseql_http_requests_total{endpoint="/graphql",method="POST",status="200"} 120.0
fraiseql_http_requests_total{endpoint="/graphql",method="POST",status="400"} 30.0
fraiseql_http_requests_total{endpoint="/health",method="GET",status="503"} 2.0
fraiseql_http_requests_created{endpoint="/graphql",method="POST",status="200"} 1.7e9
fraiseql_errors_total{error_code="GRAPHQL_PARSE_FAILED",error_type="GraphQLError",\
operation="query"} 25.0
fraiseql_db_connections_active 3.0
"""


def test_the_apps_error_counters_are_read_by_category():
    from chaos_runner.target.monitoring import counter_deltas, error_categories, parse_counters

    before = parse_counters(METRICS)
    assert len(before) == 4  # the *_total series only
    after = parse_counters(
        METRICS.replace('status="400"} 30.0', 'status="400"} 1030.0').replace("} 25.0", "} 525.0")
    )
    deltas = counter_deltas(before, after)
    assert error_categories(deltas) == {
        "HTTP 400": 1000.0,
        'fraiseql_errors_total{error_code="GRAPHQL_PARSE_FAILED",error_type="GraphQLError",'
        'operation="query"}': 500.0,
    }
    # Before any error: a series that appears counts from 0.
    assert counter_deltas({}, {"a_errors_total": 2.0}) == {"a_errors_total": 2.0}


def test_failures_must_show_in_the_apps_metrics():
    from chaos_runner.analysis.checkers import scoped

    refused = [*during([5, 5, 5], ["fail", "fail", "fail"], kind="invalid", status=400)]
    base = evidence("tolerate", side_ops=refused, expect={"counted_in_metrics": ["invalid"]})

    def check(counters):
        ev = Evidence(**{**base.__dict__, "app_counters": counters})
        return next(c for c in scoped(ev) if c.name == "failures counted in FraiseQL's metrics")

    ok = check({'x_http_requests_total{status="400"}': 3.0})
    assert (ok.ok, ok.measured, ok.expected) == (True, 3, ">= 3 (failed answers to invalid)")
    short = check({'x_http_requests_total{status="200"}': 3.0})
    assert (short.ok, short.measured, short.detail) == (False, 0, "no error series grew")
    unread = check(None)
    assert not unread.ok and "could not be read" in unread.detail
