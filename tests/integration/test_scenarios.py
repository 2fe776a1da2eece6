"""The first slice of the catalog, run end to end on the lab by the real CLI.

These tests check the runner's *measurements* against independent evidence (PostgreSQL's
own log and tables, the injected parameters, the fault agents), not FraiseQL's verdicts:
a `deviated` scenario is a finding about FraiseQL, not a failure of the lab.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from chaos_runner.analysis.history import History, Operation
from chaos_runner.analysis.ledger import LedgerStore
from chaos_runner.analysis.metrics import percentile
from chaos_runner.faults.channel import FaultClient, artifacts_left
from chaos_runner.target.lab import on_host
from chaos_runner.workload.alerts import ALERT_KIND

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHAOSLAB = [sys.executable, "-m", "chaos_runner.cli"]
PG_LOG = "/srv/chaoslab/db1/log/postgresql.log"  # on db1
VERDICT_OR_REASON = {"passed", "deviated", "skipped", "aborted"}


def chaoslab(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHAOSLAB, *args], cwd=REPO, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def slice_run(lab, tmp_path_factory) -> tuple[dict, Path]:
    """One run of the whole slice (one attempt each: CI time), shared by the tests below."""
    runs = tmp_path_factory.mktemp("runs")
    config = runs / "config.yml"
    config.write_text(yaml.safe_dump({"attempts": 1}))
    proc = chaoslab(
        "--runs-dir",
        str(runs),
        "run",
        "slice",
        "--config",
        str(config),
        "--seed",
        "7",
        timeout=1200,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    return json.loads((run_dir / "journal.json").read_text()), run_dir


def attempt(journal: dict, scenario: str) -> dict:
    (summary,) = [s for s in journal["scenarios"] if s["scenario"] == scenario]
    return summary["attempts"][-1]


def history(run_dir: Path, a: dict) -> list[Operation]:
    """The attempt's requests and probes: its history without the alerts the receiver took
    (they stand in the history too, on the same clock)."""
    return [o for o in History.read_jsonl(run_dir / a["history_file"]) if o.kind != ALERT_KIND]


def to_monotonic(a: dict, wall: datetime) -> int:
    anchor = a["anchor"]
    return anchor["monotonic_ns"] + int(wall.timestamp() * 1e9) - anchor["wall_ns"]


def pg_events(lab, a: dict, needle: str) -> list[int]:
    """Monotonic times of PostgreSQL log lines containing `needle` during the attempt."""
    out = []
    log = on_host(lab, "db1", "grep", "-F", "--", needle, PG_LOG, check=False).stdout
    for line in log.splitlines():
        if needle not in line:
            continue
        stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        ns = to_monotonic(a, stamp)
        if a["timeline"][0]["ns"] <= ns <= a["timeline"][-1]["ns"]:
            out.append(ns)
    return out


def event(a: dict, name: str) -> int:
    return next(e["ns"] for e in a["timeline"] if e["event"] == name)


# ------------------------------------------------------------------ the run as a whole


def test_every_slice_scenario_ends_with_a_verdict_and_its_evidence(slice_run):
    journal, run_dir = slice_run
    ids = {s["scenario"] for s in journal["scenarios"]}
    assert ids == {
        "net.db-stopped",
        "net.db-blackhole",
        "net.loss-5",
        "net.latency-constant",
        "db.lost-update",
        "res.app-cpu-throttle",
        "res.app-pause",
        "auth.jwks-500",
        "auth.bypass",
    }
    for s in journal["scenarios"]:
        assert s["outcome"] in VERDICT_OR_REASON, (s["scenario"], s["outcome"], s["reason"])
        a = s["attempts"][-1]
        if s["outcome"] in ("passed", "deviated"):
            assert a["checks"], s["scenario"]
            assert a["baseline_windows"] >= 10
            assert len(history(run_dir, a)) > 50
        for fault in a["faults"]:
            assert fault["mechanism"], fault  # every report says what produced the fault
    # Reports exist and regenerate from the journal alone, identically.
    table = (run_dir / "summary.txt").read_text()
    root = ET.parse(run_dir / "junit.xml").getroot()
    assert root.get("tests") == "9"
    for path in (run_dir / "summary.txt", run_dir / "junit.xml"):
        path.unlink()
    proc = chaoslab("report", str(run_dir))
    assert proc.returncode in (0, 1), proc.stderr
    assert (run_dir / "summary.txt").read_text() == table
    assert ET.parse(run_dir / "junit.xml").getroot().get("tests") == "9"
    assert sorted(p.stem for p in (run_dir / "scenarios").glob("*.json")) == sorted(ids)


def test_the_html_report_renders_every_scenario_with_its_fault_bands_in_a_browser(slice_run):
    from chaos_runner.reports.browser import open_report

    journal, run_dir = slice_run
    page = run_dir / "report.html"
    assert page.is_file() and (run_dir / "plotly.min.js").is_file()
    rendered = open_report(page, run_dir / "screenshots")
    print(f"report {page.stat().st_size} bytes, loaded in {rendered.load_s} s")
    attempts = {
        f"fig-{a['scenario']}-{a['attempt']}".replace(".", "-"): a
        for s in journal["scenarios"]
        for a in s["attempts"]
        if a.get("history_file")
    }
    assert sorted(f["id"] for f in rendered.figures) == sorted(attempts)
    for figure in rendered.figures:
        assert figure["drawn"] and figure["points"] > 50, figure
        # Each injected fault's band, on the figure's three rows.
        injected = [f for f in attempts[figure["id"]]["faults"] if f.get("inject_ns")]
        assert figure["expected_bands"] == len(injected), figure
        assert figure["bands"] >= 3 * len(injected), figure
    assert rendered.errors == [], rendered.console
    # Screenshots kept under the run directory: the page's top and each scenario.
    assert {p.name for p in rendered.screenshots} >= {"report.png", "net.db-stopped.png"}
    assert all(p.stat().st_size > 10_000 for p in rendered.screenshots)


def test_the_evidence_bundle_of_net_db_stopped_holds_the_shutdown_and_the_state(slice_run):
    journal, run_dir = slice_run
    a = attempt(journal, "net.db-stopped")
    files = {Path(f).name: run_dir / f for f in a["evidence"]}
    assert all(p.is_file() for p in files.values()), files
    pg_log = files["log-db1-postgresql.txt"].read_text()
    assert "database system is shut down" in pg_log, pg_log[-2000:]
    assert "database system is ready to accept connections" in pg_log, pg_log[-2000:]
    for when in ("before-inject", "after-heal"):
        state = files[f"state-{when}-db1.txt"].read_text()
        assert "# iptables -S (filter)" in state and "-P INPUT" in state, state[:500]
        assert "# tc qdisc" in state and "qdisc" in state.split("# tc qdisc", 1)[1]
    (fault,) = json.loads(files["faults.json"].read_text())
    assert fault["kind"] == "proc.stop" and fault["commands"] and fault["heal_commands"]
    at_fault = json.loads(files["pg-activity-at-fault.json"].read_text())
    assert "error" in at_fault  # PostgreSQL was stopped: why it could not be read
    after = json.loads(files["pg-activity-after-heal.json"].read_text())
    assert "activity" in after and "locks" in after
    assert "FraiseQL" in files["versions.txt"].read_text()
    assert "fraiseql" in files["log-app1-fraiseql.txt"].name


def test_injected_delay_shows_up_in_latency(slice_run):
    journal, run_dir = slice_run
    a = attempt(journal, "net.latency-constant")
    (fault,) = a["faults"]
    assert fault["mechanism"] in ("netem", "nfqueue")
    delay_ms = fault["params"]["delay_ms"]
    ops = [o for o in history(run_dir, a) if o.outcome == "ok" and o.token == "valid"]
    # Requests started in the last seconds before the heal are cut short by it (the held
    # packets are released): judge the ones that ran entirely under the fault.
    full = event(a, "heal-start") - 8 * delay_ms * 1_000_000
    during = sorted(
        o.latency_ns / 1e6 for o in ops if event(a, "fault-holding") <= o.start_ns < full
    )
    before = sorted(o.latency_ns / 1e6 for o in ops if o.start_ns < event(a, "inject-start"))
    assert during and before
    # Every database round trip pays the delay once: the fastest request during the fault
    # is at least one delay slower than the median before it; none took longer than the
    # client's timeout (it would not be `ok`).
    assert during[0] >= before[len(before) // 2] + 0.95 * delay_ms
    assert during[-1] < 15_000
    # The reported ratio is recomputed from the history with the runner's definition
    # (median during the whole fault window minus the baseline window's median).
    window = [
        o.latency_ns
        for o in ops
        if event(a, "fault-holding") <= o.start_ns < event(a, "heal-start")
    ]
    base = [
        o.latency_ns
        for o in ops
        if event(a, "baseline-start") <= o.start_ns < event(a, "baseline-end")
    ]
    added_ms = (percentile(window, 50) - percentile(base, 50)) / 1e6
    assert a["metrics"]["delayed_round_trips"] == pytest.approx(added_ms / delay_ms, abs=0.01)
    assert a["metrics"]["delayed_round_trips"] >= 0.95
    # After the heal, latency returns to the baseline range.
    after = sorted(o.latency_ns / 1e6 for o in ops if o.start_ns > event(a, "heal-end") + 2e9)
    assert after and after[len(after) // 2] < before[len(before) // 2] + delay_ms / 4


def test_bite_and_recovery_agree_with_the_postgresql_log(lab, slice_run):
    journal, run_dir = slice_run
    a = attempt(journal, "net.db-stopped")
    shutdown = pg_events(lab, a, "received fast shutdown request")
    ready = pg_events(lab, a, "database system is ready to accept connections")
    assert len(shutdown) == 1 and len(ready) == 1, (shutdown, ready)
    injected = event(a, "injected")
    bite = a["metrics"]["bite_ns"]
    # The fault timeline and PostgreSQL agree on when the stop happened...
    assert abs(shutdown[0] - injected) <= 0.5e9
    # ...and the runner saw the fault bite when PostgreSQL went down.
    assert abs(bite - shutdown[0]) <= 0.5e9, (bite - shutdown[0]) / 1e9
    # PostgreSQL is back after the heal; the runner's recovery is measured from there on
    # and the first success after the heal comes within 0.5 s of PostgreSQL's readiness
    # (or as soon as FraiseQL's pool reconnects, whichever is later, reported as measured).
    heal_start, heal_end = event(a, "heal-start"), event(a, "heal-end")
    assert heal_start - 0.5e9 <= ready[0] <= heal_end + 0.5e9
    ops = history(run_dir, a)
    first_ok = min(o.end_ns for o in ops if o.outcome == "ok" and o.start_ns >= heal_start)
    authorized = pg_events(lab, a, "connection authorized: user=fraiseql")
    app_back = [t for t in authorized if t >= ready[0]]
    assert app_back, "FraiseQL never reconnected according to PostgreSQL"
    assert abs(first_ok - app_back[0]) <= 0.5e9, (first_ok - app_back[0]) / 1e9
    # The reported recovery (start of the first of 3 windows meeting the SLO; a window
    # holds the operations that *started* in it) follows the same evidence: not before
    # FraiseQL was back in PostgreSQL (one window of slack), and no later than the backlog
    # queued during the outage took to drain, plus two windows.
    recovery = a["metrics"]["recovery_ns"]
    window = 0.25e9
    backlog = [o.end_ns for o in ops if o.start_ns < app_back[0]]
    assert recovery is not None
    assert app_back[0] - 2 * window <= recovery <= max(backlog) + 2 * window, (
        (recovery - app_back[0]) / 1e9,
        (max(backlog) - app_back[0]) / 1e9,
    )


def test_lost_update_counter_matches_postgresql(slice_run, db_admin):
    journal, run_dir = slice_run
    a = attempt(journal, "db.lost-update")
    counter = a["counter"]
    (value,) = db_admin.execute(
        "SELECT value FROM core.tb_counter WHERE name = 'chaos-lost-update'"
    ).fetchone()
    assert counter["after"] == value
    increments = [o for o in history(run_dir, a) if o.kind == "increment"]
    assert counter["acknowledged"] == sum(1 for o in increments if o.outcome == "ok") > 100


def test_ledger_check_matches_postgresql_row_by_row(slice_run, db_admin):
    journal, run_dir = slice_run
    a = attempt(journal, "auth.bypass")
    writes = [o for o in history(run_dir, a) if o.op_id]
    present = {
        r[0]
        for r in db_admin.execute(
            "SELECT op_id FROM core.tb_ledger WHERE op_id = ANY(%s)", ([o.op_id for o in writes],)
        ).fetchall()
    }
    assert a["ledger"]["acknowledged"] == sum(1 for o in writes if o.outcome == "ok")
    bad = [o for o in writes if o.token != "valid"]
    assert bad and not {o.op_id for o in bad} & present  # no bad-token write executed
    assert {o.op_id for o in writes if o.outcome == "ok"} <= present


def test_pause_is_seen_as_client_timeouts_and_ends_with_sigcont(slice_run):
    journal, run_dir = slice_run
    a = attempt(journal, "res.app-pause")
    ops = history(run_dir, a)
    holding, heal = event(a, "fault-holding"), event(a, "heal-start")
    frozen = [o for o in ops if holding + 0.5e9 <= o.start_ns < heal - 2.5e9]
    assert frozen and all(o.outcome != "ok" and o.timed_out for o in frozen)
    assert a["metrics"]["recovery_s"] is not None and a["metrics"]["recovery_s"] < 5


# ------------------------------------------------------------------ killed runner


KILL_TEST = {
    "id": "net.kill-test",
    "phase": 1,
    "description": "a partition held long enough to kill the runner during it",
    "faults": [
        # A TTL far beyond the test: only the lease can heal it within seconds.
        {"kind": "net.partition", "host": "@app", "ttl_s": 120, "params": {"peer": "@proxy"}},
    ],
    "load": {"rate": 10, "timeout_s": 3, "mix": {"query": 1}},
    "windows": {"settle_s": 0.5, "baseline_s": 2.5, "hold_s": 8, "recovery_s": 6},
    "expect": {"class": "fail-fast"},
}


def _scenario_dir(tmp_path: Path, doc: dict = KILL_TEST) -> Path:
    """A scenario directory holding just `doc` (file name = id, as the catalog demands)."""
    directory = tmp_path / "scenarios"
    directory.mkdir()
    (directory / f"{doc['id']}.yml").write_text(yaml.safe_dump(doc))
    return directory


def _run_one(tmp_path: Path, doc: dict, **config: object) -> tuple[int, dict, Path]:
    """`chaoslab run` of one scenario with a runner config; (exit code, summary, run dir)."""
    config_file = tmp_path / "config.yml"
    config_file.write_text(yaml.safe_dump({"attempts": 1, **config}))
    proc = chaoslab(
        "--runs-dir", str(tmp_path / "runs"), "run", doc["id"],
        "--scenarios", str(_scenario_dir(tmp_path, doc)), "--config", str(config_file),
        timeout=300,
    )  # fmt: skip
    assert (tmp_path / "runs").is_dir(), proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    (summary,) = json.loads((run_dir / "journal.json").read_text())["scenarios"]
    return proc.returncode, summary, run_dir


def _delay_doc(delay_ms: int) -> dict:
    return {
        "id": "net.compare-test",
        "phase": 1,
        "description": f"{delay_ms} ms on the app's path to PostgreSQL",
        "faults": [{"kind": "net.delay", "host": "@app",
                    "params": {"peer": "@proxy", "port": 5432, "port_side": "remote",
                               "delay_ms": delay_ms}}],
        "load": {"rate": 10, "mix": {"query": 3, "nested": 1}},
        "windows": {"settle_s": 0.5, "baseline_s": 2.5, "hold_s": 5, "recovery_s": 6},
        "expect": {"class": "tolerate"},
    }  # fmt: skip


def test_compare_flags_the_same_scenario_run_with_a_delay_as_a_regression(lab, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, fast, run_a = _run_one(tmp_path / "a", _delay_doc(1))
    _, slow, run_b = _run_one(tmp_path / "b", _delay_doc(300))
    assert fast["outcome"] in ("passed", "deviated") and slow["outcome"] in ("passed", "deviated")
    worse = chaoslab("compare", str(run_a), str(run_b))
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert re.search(r"net\.compare-test\s+fault_p95_ms.*REGRESSION", worse.stdout), worse.stdout
    assert (run_b / f"compare-{run_a.name}.html").is_file()
    same = chaoslab("compare", str(run_a), str(run_a))
    assert same.returncode == 0, same.stdout + same.stderr


def _start_and_wait_for_injection(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            *CHAOSLAB,
            "--runs-dir",
            str(tmp_path / "runs"),
            "run",
            "net.kill-test",
            "--scenarios",
            str(_scenario_dir(tmp_path)),
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if ": hold " in line:
            return proc
    raise AssertionError(f"the runner never reached the hold phase (rc={proc.wait()})")


def _left(lab) -> list[str]:
    with FaultClient(lab) as client:
        return artifacts_left(client.artifacts("app1"))


def assert_heal_all_finds_nothing(lab) -> None:
    """Heal-all on app1 heals no fault and sweeps no fault artifact (the lab's own empty
    CHAOS-IN/CHAOS-OUT chains are removed by every sweep without being reported)."""
    with FaultClient(lab) as client:
        swept = client.heal_all(["app1"])["app1"]
    assert not swept["healed"], swept
    assert all(s.startswith("iptables chain CHAOS-") for s in swept["swept"]), swept
    assert artifacts_left(swept["remaining"]) == [], swept


def test_sigterm_mid_scenario_heals_from_finally(lab, tmp_path):
    proc = _start_and_wait_for_injection(tmp_path)
    assert _left(lab), "the fault should be in place during the hold"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 2
    assert _left(lab) == []


def test_sigkill_mid_scenario_is_healed_by_the_lease_within_15_s(lab, tmp_path):
    proc = _start_and_wait_for_injection(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    proc.wait(timeout=10)
    assert _left(lab), "nothing healed the fault yet: only the lease will"
    while _left(lab) and time.monotonic() - killed < 15:
        time.sleep(0.25)
    assert _left(lab) == [], "the lease did not heal the fault within 15 s"
    assert_heal_all_finds_nothing(lab)


def test_a_fast_path_cut_mid_fault_ends_as_error_and_the_lease_heals_the_host(lab, tmp_path):
    """The controller loses its SSH path to the faulty host for longer than the lease: the
    runner cannot renew nor heal; the host heals the fault by itself; the attempt ends as
    `error` naming what happened, and nothing is left behind."""
    address = lab.hosts["app1"]["address"]
    cut = ["OUTPUT", "-d", address, "-p", "tcp", "--dport", "22", "-m", "comment",
           "--comment", "chaoslab-test-cut", "-j", "REJECT",
           "--reject-with", "tcp-reset"]  # fmt: skip
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"attempts": 1}))
    proc = _start_and_wait_for_injection(tmp_path, "--config", str(config))
    subprocess.run(["iptables", "-w", "5", "-I", *cut], check=True)
    try:
        assert proc.wait(timeout=60) == 2
    finally:
        subprocess.run(["iptables", "-w", "5", "-D", *cut], check=True)
    (run_dir,) = (tmp_path / "runs").iterdir()
    (summary,) = json.loads((run_dir / "journal.json").read_text())["scenarios"]
    assert summary["outcome"] == "error", summary
    assert "heal of" in summary["reason"] or "healed by its host" in summary["reason"], summary
    assert _left(lab) == []
    assert_heal_all_finds_nothing(lab)


# ------------------------------------------------------------------ transports and dry run


def test_dry_run_checks_every_fault_in_check_mode_and_injects_nothing(lab, tmp_path):
    proc = chaoslab(
        "--runs-dir", str(tmp_path), "run", "net.db-stopped", "net.db-blackhole", "--dry-run"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "proc.stop on db1 (@db): check mode ok" in proc.stderr
    assert "net.partition on app1 (@app): check mode ok" in proc.stderr
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("dry-run-") and list((run_dir / "ansible").iterdir())
    with FaultClient(lab) as client:
        for host in ("db1", "app1"):
            assert artifacts_left(client.artifacts(host)) == []


def test_ansible_transport_puts_playbook_events_on_the_history_clock(lab, tmp_path):
    doc = copy.deepcopy(KILL_TEST)
    doc["windows"].update(hold_s=3, recovery_s=6)
    doc["faults"][0]["ttl_s"] = 60
    code, summary, run_dir = _run_one(tmp_path, doc, fault_transport="ansible")
    assert code in (0, 1), summary
    a = summary["attempts"][0]
    (fault,) = a["faults"]
    assert fault["mechanism"] == "iptables"
    names = [e["event"] for e in a["timeline"]]
    assert names.count("ansible:runner_on_ok") >= 2  # inject and heal tasks
    # Ansible reported the injection between the phase marks, on the same clock.
    assert event(a, "inject-start") <= fault["applied_ns"] <= event(a, "injected")
    assert [e["ns"] for e in a["timeline"]] == sorted(e["ns"] for e in a["timeline"])
    assert list((run_dir / "ansible").iterdir())
    assert _left(lab) == []


def test_a_blown_error_budget_aborts_and_heals_early(lab, tmp_path):
    doc = {
        "id": "db.abort-test",
        "phase": 2,
        "description": "a tolerate expectation PostgreSQL being stopped cannot meet",
        "faults": [{"kind": "proc.stop", "host": "@db", "params": {"program": "postgresql"}}],
        "load": {"rate": 20, "timeout_s": 8, "mix": {"query": 1}},
        "windows": {"baseline_s": 2.5, "hold_s": 30, "recovery_s": 8},
        "abort": {"max_error_rate": 0.3, "sustained_s": 1},
        "expect": {"class": "tolerate"},
    }
    code, summary, _ = _run_one(tmp_path, doc)
    assert code == 1, summary  # aborted counts as not passed
    assert summary["outcome"] == "aborted" and "error rate" in summary["reason"]
    a = summary["attempts"][0]
    held = (event(a, "heal-start") - event(a, "fault-holding")) / 1e9
    assert held < 15, f"the fault held {held:.1f} s although the budget was blown"
    assert event(a, "abort") < event(a, "heal-start")
    # PostgreSQL is back (a new session: the stop ended every earlier one).
    assert LedgerStore.for_lab(lab).ping()


# ------------------------------------------------------------------ schedules


def test_a_schedule_injects_heals_and_measures_each_stage(lab, tmp_path):
    """Two delay stages one after the other: each stage's faults are injected, verified and
    healed on the clock, and the latency measured per stage follows the injected delay."""
    delay = {"kind": "net.delay", "host": "@app"}
    params = {"peer": "@proxy", "port": 5432, "port_side": "remote"}
    doc = {
        "id": "net.schedule-test",
        "phase": 1,
        "description": "100 ms then 300 ms on the database path",
        "schedule": [
            {"at_s": 0, "duration_s": 4, "label": "100",
             "faults": [{**delay, "params": {**params, "delay_ms": 100}}]},
            {"at_s": 4, "duration_s": 4, "label": "300",
             "faults": [{**delay, "params": {**params, "delay_ms": 300}}]},
        ],
        "load": {"rate": 4, "timeout_s": 10, "mix": {"query": 1}},
        "windows": {"baseline_s": 3, "hold_s": 8, "recovery_s": 8},
        "expect": {"class": "tolerate", "p95_budget_ms": 9000},
    }  # fmt: skip
    code, summary, _ = _run_one(tmp_path, doc)
    a = summary["attempts"][0]
    assert code in (0, 1) and a["outcome"] in ("passed", "deviated"), (a["outcome"], a["reason"])
    first, second = a["faults"]
    assert (first["stage"], second["stage"]) == (0, 1)
    assert first["verified"] and second["verified"]
    # Stage 1 was healed at its end (4 s), stage 2 injected right after that heal, both on
    # the history's clock (one link fault at a time: the heal comes first).
    assert first["inject_ns"] < first["healed_ns"] <= second["inject_ns"] < second["healed_ns"]
    assert (first["heal_ns"] - first["inject_ns"]) / 1e9 == pytest.approx(4, abs=0.5)
    assert (second["inject_ns"] - first["healed_ns"]) / 1e9 < 0.5
    s100, s300 = a["stages"]
    assert s100["operations"] >= 8 and s300["operations"] >= 8
    # A list query pays the delay at least once per database round trip.
    assert s100["p50_ms"] >= 100 and s300["p50_ms"] >= 300
    assert s300["p50_ms"] > s100["p50_ms"] + 150
    assert _left(lab) == []
