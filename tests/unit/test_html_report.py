"""The HTML run report from a hand-built journal and history: offline, one figure per
attempt with the fault's band, the checks table, findings first."""

from __future__ import annotations

import json
import re
from pathlib import Path

from chaos_runner.reports.html import MAX_OK_POINTS, build_html, fault_bands
from chaos_runner.reports.summary import write_reports
from chaos_runner.results.records import read_journal

S = 1_000_000_000
T0 = 50 * S  # the load's start on the monotonic clock


def op(i: int, at_s: float, ms: float, outcome: str = "ok", kind: str = "query") -> dict:
    start = T0 + int(at_s * S)
    return {"index": i, "kind": kind, "start_ns": start, "end_ns": start + int(ms * 1e6),
            "outcome": outcome, "status": 200, "token": "valid",
            "error": None if outcome == "ok" else "Internal server error"}  # fmt: skip


def attempt(scenario: str, n: int, outcome: str, history: str | None) -> dict:
    return {
        "scenario": scenario, "attempt": n, "outcome": outcome, "reason": "",
        "anchor": {"monotonic_ns": T0, "wall_ns": 1_795_000_000 * S},
        "faults": [{"id": "f1", "kind": "proc.stop", "host": "db1", "target": "@db",
                    "params": {"program": "postgresql"}, "mechanism": "service-layer",
                    "inject_ns": T0 + 4 * S, "injected_ns": T0 + 4 * S, "verified": True,
                    "heal_ns": T0 + 9 * S, "healed_ns": T0 + 9 * S}],
        "timeline": [{"ns": T0, "event": "load-start"},
                     {"ns": T0 + 4 * S, "event": "inject-start"},
                     {"ns": T0 + 4 * S + 10, "event": "verified", "fault": "f1", "ok": True},
                     {"ns": T0 + 9 * S, "event": "heal-end"}],
        "slo": {"p95_ms": 50.0},
        "checks": [{"name": "recovery", "ok": outcome == "passed", "measured": 2.5,
                    "expected": "<= 5 s", "detail": "<script>alert(1)</script>"}],
        "metrics": {"recovery_ns": T0 + 11 * S, "bite_s": 0.1},
        "windows": [{"start_ns": T0 + i * S // 4, "end_ns": T0 + (i + 1) * S // 4,
                     "p50_ms": 10.0, "p95_ms": 12.0, "p99_ms": 14.0, "throughput": 20.0,
                     "error_rate": 0.0} for i in range(48)],
        "history_file": history,
    }  # fmt: skip


def run_dir(tmp_path: Path) -> Path:
    ops = [op(i, i * 0.005, 10) for i in range(2400)]  # more ok points than are drawn
    ops += [op(10_000 + i, 4 + i * 0.1, 5000, "fail") for i in range(40)]
    ops += [op(20_000 + i, i * 0.5, 3, "ok" if i < 8 else "fail", "ready") for i in range(20)]
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "a.passes-1.jsonl").write_text(
        "\n".join(json.dumps(o) for o in ops) + "\n"
    )
    journal = {
        "run_id": "run-test", "schema_version": 2, "exit_code": 1,
        "environment": {"kind": "lab", "fraiseql": "1.31.1"},
        "started_at": "2026-11-27T06:00:00+00:00", "finished_at": "2026-11-27T06:01:30+00:00",
        "hosts": {"db1": {"address": "198.18.0.11", "groups": ["db", "lab"], "release": "bookworm",
                          "capabilities": {"netem": False, "tbf": True, "iptables": True,
                                           "nfqueue": True, "cgroup": "v1"}},
                  "app1": {"address": "198.18.0.13", "capabilities": {"error": "no answer"}}},
        "definitions": {"b.deviates": {"question": "does it <b>hold</b>?"}},
        "scenarios": [
            {"scenario": "a.passes", "outcome": "passed", "chosen_attempt": 1,
             "attempts": [attempt("a.passes", 1, "passed", "history/a.passes-1.jsonl")]},
            {"scenario": "b.deviates", "outcome": "deviated", "flaky": True, "chosen_attempt": 1,
             "attempts": [attempt("b.deviates", 1, "deviated", None)]},
        ],
    }  # fmt: skip
    (tmp_path / "journal.json").write_text(json.dumps(journal))
    return tmp_path


def test_the_report_is_offline_with_one_figure_per_attempt_and_its_fault_band(tmp_path):
    where = run_dir(tmp_path)
    page = build_html(where, read_journal(where))
    html = page.read_text()
    assert (where / "plotly.min.js").stat().st_size > 1_000_000  # Plotly's own bundle
    # Offline: the only script source is the bundle beside it; nothing from a network.
    assert re.findall(r"<script[^>]*src=\"([^\"]+)\"", html) == ["plotly.min.js"]
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "https://" not in html.replace("https://plotly.com", "")
    (block,) = re.findall(r'id="fig-a-passes-1-data">(.*?)</script>', html, re.S)
    figure = json.loads(block)
    rects = [s for s in figure["layout"]["shapes"] if s["type"] == "rect"]
    assert len(rects) == 3  # the band on each of the three rows
    assert rects[0]["x0"] == 4.0 and rects[0]["x1"] == 9.0
    labels = [a["text"] for a in figure["layout"]["annotations"]]
    assert "proc.stop @db (service-layer)" in labels
    assert {"inject", "verified", "heal", "recovered"} <= set(labels)
    names = [t.get("name", "") for t in figure["data"]]
    assert f"ok (2400, {MAX_OK_POINTS} drawn)" in names and "fail (40)" in names
    drawn = {t["name"]: len(t["x"]) for t in figure["data"] if t.get("name")}
    assert drawn["fail (40)"] == 40
    # The front page: hosts with the mechanisms their kernel offers, and the wall time.
    assert "netem no, tbf yes, iptables yes, nfqueue yes; cgroup v1" in html
    assert "not read: no answer" in html and "wall time 90 s" in html
    # Findings first; a flaky one marked; no history, no figure (said so).
    assert html.index('id="b.deviates"') < html.index('id="a.passes"')
    assert "<b>flaky</b>" in html and "no history: nothing to draw" in html
    # Text from the journal is escaped.
    assert "<script>alert(1)</script>" not in html and "&lt;b&gt;hold&lt;/b&gt;" in html


def test_bands_follow_the_faults_and_a_fault_never_healed_runs_to_the_end():
    journal_attempt = read_journal_attempt()
    (band,) = fault_bands(journal_attempt, T0, 30.0)
    assert (band["x0"], band["x1"]) == (4.0, 9.0)
    journal_attempt.faults[0].heal_ns = None
    journal_attempt.faults[0].healed_ns = None
    assert fault_bands(journal_attempt, T0, 30.0)[0]["x1"] == 30.0


def read_journal_attempt():
    from chaos_runner.model.build import build
    from chaos_runner.results.records import AttemptRecord

    return build(AttemptRecord, attempt("x.y", 1, "passed", None), "test")


def test_write_reports_writes_the_html_report_too(tmp_path):
    where = run_dir(tmp_path)
    written = write_reports(where, read_journal(where))
    assert written["html"] == where / "report.html" and written["html"].is_file()


def test_a_sweep_is_drawn_as_curves_with_every_attempt_a_point(tmp_path):
    where = run_dir(tmp_path)
    body = json.loads((where / "journal.json").read_text())
    body["series"] = {
        "net.db-outage": {
            "base": "net.db-outage", "key": "windows.hold_s", "label": "outage",
            "points": [
                {"value": 5, "scenario": "net.db-outage-5", "outcome": "passed",
                 "attempts": [{"attempt": 1, "recovery_s": 0.6, "fault_p95_ms": 4850.0}]},
                {"value": 10, "scenario": "net.db-outage-10", "outcome": "deviated",
                 "attempts": [{"attempt": 1, "recovery_s": 5.8},
                              {"attempt": 2, "recovery_s": 5.5}]},
            ],
        }
    }  # fmt: skip
    (where / "journal.json").write_text(json.dumps(body))
    html = build_html(where, read_journal(where)).read_text()
    (block,) = re.findall(r'id="sweep-net-db-outage-data">(.*?)</script>', html, re.S)
    traces = json.loads(block)["data"]
    recovery = [t for t in traces if t.get("xaxis", "x") == "x"]
    points = next(t for t in recovery if t.get("mode") == "markers")
    assert (points["x"], points["y"]) == ([5, 10, 10], [0.6, 5.8, 5.5])
    mean = next(t for t in recovery if t.get("mode") == "lines")
    assert mean["y"] == [0.6, 5.65]


def test_the_report_links_every_file_of_the_evidence_bundle(tmp_path):
    where = run_dir(tmp_path)
    bundle = where / "evidence" / "a.passes-1"
    bundle.mkdir(parents=True)
    names = ["faults.json", "log-db1-postgresql.txt", "pg-activity-at-fault.json",
             "state-after-heal-db1.txt", "state-before-inject-db1.txt", "versions.txt"]  # fmt: skip
    for name in names:
        (bundle / name).write_text("x")
    body = json.loads((where / "journal.json").read_text())
    attempt_ = body["scenarios"][0]["attempts"][0]
    attempt_["evidence"] = [f"evidence/a.passes-1/{n}" for n in names]
    attempt_["faults"][0]["commands"] = ["systemctl stop chaoslab-postgresql.service"]
    (where / "journal.json").write_text(json.dumps(body))
    html = build_html(where, read_journal(where)).read_text()
    links = set(re.findall(r'href="(evidence/[^"]+)"', html))
    assert links == {f"evidence/a.passes-1/{n}" for n in names}
    assert all((where / link).is_file() for link in links)
    assert "systemctl stop chaoslab-postgresql.service" in html
