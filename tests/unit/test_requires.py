"""A scenario's `requires` (skip on an app that cannot test it) and `prepare` (one-shot
steps before the load)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos_runner.model import scenario
from chaos_runner.model.scenario import Requires
from chaos_runner.run.schedule import StopAttempt
from chaos_runner.target.lab import AppEndpoint
from tests.unit.test_lab_state import attempt_on

BODY = """\
id: cache.example
phase: 3
description: an example
faults:
  - {kind: cache.flush, host: "@cache"}
load: {rate: 10, mix: {query: 1}}
windows: {hold_s: 5}
expect: {class: tolerate}
"""


@pytest.mark.parametrize(
    ("requires", "line", "cache", "problem"),
    [
        (Requires(cache=["redis"]), "0.5.3", "redis", None),
        (Requires(cache=["redis"]), "1.31.1", "none",
         "needs the result cache redis; app1 runs FraiseQL 1.31.1 with result cache 'none'"),
        (Requires(cache=["redis", "postgresql"]), "1.9.16", "postgresql", None),
        (Requires(cache=["redis"]), "0.5.3", None,
         "needs the result cache redis; app1 runs FraiseQL 0.5.3 with result cache 'none'"),
        (Requires(min_line="1.0"), "1.9.16", "none", None),
        (Requires(min_line="1.0"), "0.5.3", "redis",
         "needs FraiseQL >= 1.0; app1 runs FraiseQL 0.5.3 with result cache 'redis'"),
        (Requires(min_line="1.9.16"), "1.9.16", "none", None),
        (Requires(max_line="1.9"), "1.9.16", "none", None),
        (Requires(max_line="1.9"), "1.31.1", "none",
         "needs FraiseQL <= 1.9; app1 runs FraiseQL 1.31.1 with result cache 'none'"),
        (Requires(), "main", "none", "'main' is not a FraiseQL version like 1.0 or 1.9.16"),
    ],
)  # fmt: skip
def test_requires_names_what_the_app_lacks(requires, line, cache, problem):
    assert requires.problem(line, cache, "app1") == problem


def _doc(tmp_path: Path, extra: str) -> scenario.Scenario:
    path = tmp_path / "cache.example.yml"
    path.write_text(BODY + extra)
    (loaded,) = scenario.load_file(path)
    return loaded


def _state(version: str, cache: str) -> SimpleNamespace:
    app = AppEndpoint("app1", "http://198.18.0.13:8000", version, "i", "a", True,
                      "/srv/chaoslab/app1/run/fraiseql.pid", {"cache": cache})  # fmt: skip
    return SimpleNamespace(app=lambda ref: app, host=lambda ref: "app1" if ref == "@app" else ref)


def test_the_gate_skips_before_touching_the_lab_when_a_requirement_is_unmet(tmp_path):
    loaded = _doc(tmp_path, "requires: {cache: [redis]}\n")
    attempt = attempt_on(_state("1.31.1", "none"), faults=None)
    attempt.scenario, attempt.doc = loaded, loaded.doc
    with pytest.raises(StopAttempt) as stop:
        attempt.gate()  # lab_checks would fail on this state: it is never reached
    assert stop.value.outcome == "skipped"
    assert "needs the result cache redis" in stop.value.reason


class Client:
    """Answers as the agent does, and keeps what it was asked."""

    def __init__(self, state: SimpleNamespace, ok: bool) -> None:
        self.state = SimpleNamespace(
            app=state.app, host=state.host, gateway="198.18.0.1", roles=None
        )
        self.ok = ok
        self.calls: list[tuple[str, str]] = []

    def inject(self, spec):
        self.calls.append(("inject", spec.kind))
        return {"id": spec.id, "mechanism": "service-layer"}

    def verify(self, host, fault_id):
        self.calls.append(("verify", host))
        return {"ok": self.ok, "evidence": "pid 10 -> 11" if self.ok else "pid 10 -> 10"}

    def heal(self, host, fault_id):
        self.calls.append(("heal", host))
        return {"healed": True}


def prepared_attempt(tmp_path, monkeypatch, ok: bool):
    """An attempt of a scenario that restarts the app first, and the agent it talks to."""
    loaded = _doc(
        tmp_path,
        'prepare:\n  - {kind: proc.restart, host: "@app", params: {program: fraiseql}}\n',
    )
    monkeypatch.setattr("chaos_runner.faults.steps.resolve_params", lambda p, roles: p)
    client = Client(_state("0.5.3", "redis"), ok=ok)
    attempt = attempt_on(client.state, faults=client)
    attempt.scenario, attempt.doc = loaded, loaded.doc
    return attempt, client


def test_prepare_runs_each_step_inject_verify_heal_and_records_it(tmp_path, monkeypatch):
    attempt, client = prepared_attempt(tmp_path, monkeypatch, ok=True)
    attempt.prepare()
    assert client.calls == [("inject", "proc.restart"), ("verify", "app1"), ("heal", "app1")]
    (prepared,) = attempt.result["prepared"]
    assert prepared["ok"] and prepared["evidence"] == "pid 10 -> 11"
    assert attempt.timeline.first("prepared") is not None


def test_a_prepare_step_that_did_not_take_stops_the_attempt(tmp_path, monkeypatch):
    attempt, client = prepared_attempt(tmp_path, monkeypatch, ok=False)
    with pytest.raises(StopAttempt) as stop:
        attempt.prepare()
    assert stop.value.outcome == "baseline-not-met"
    assert stop.value.reason == "prepare proc.restart on app1: pid 10 -> 10"
    assert ("heal", "app1") in client.calls


def test_a_prepare_step_runs_only_on_an_app_that_meets_its_when(tmp_path, monkeypatch):
    loaded = _doc(
        tmp_path,
        "prepare:\n"
        '  - {kind: proc.restart, host: "@app", params: {program: fraiseql},\n'
        '     when: {cache: [redis], max_line: "0.5"}}\n',
    )
    monkeypatch.setattr("chaos_runner.faults.steps.resolve_params", lambda p, roles: p)
    for version, cache, ran in (("0.5.3", "redis", True), ("1.31.1", "none", False)):
        client = Client(_state(version, cache), ok=True)
        attempt = attempt_on(client.state, faults=client)
        attempt.scenario, attempt.doc = loaded, loaded.doc
        attempt.prepare()
        assert bool(client.calls) is ran, version
        assert ("prepared" in attempt.result) is ran, version


def test_the_journal_keeps_what_prepare_did():
    from chaos_runner.results.records import summary_record

    prepared = {"kind": "proc.restart", "host": "app1", "params": {"program": "fraiseql"},
                "mechanism": "service-layer", "ok": True, "evidence": "pid 10 -> 11"}  # fmt: skip
    attempt = {"scenario": "x.y", "attempt": 1, "outcome": "passed", "prepared": [prepared]}
    record = summary_record({"scenario": "x.y", "outcome": "passed", "attempts": [attempt]})
    assert record.attempts[0].prepared == [prepared]


def test_a_scenario_naming_an_absent_optional_group_loads_and_is_skipped_at_the_gate(tmp_path):
    from chaos_runner.target.roles import HostRoles

    no_cache = HostRoles(
        {"db": ["db1"], "proxy": ["proxy1"], "app": ["app1"], "auth": ["auth1"]},
        {"db1": "192.0.2.11", "proxy1": "192.0.2.12", "app1": "192.0.2.13", "auth1": "192.0.2.14"},
    )
    path = tmp_path / "cache.example.yml"
    path.write_text(BODY)
    (loaded,) = scenario.load_file(path, no_cache)  # a cluster without a cache host
    state = _state("1.31.1", "none")
    state.roles = no_cache
    attempt = attempt_on(state, faults=None)
    attempt.scenario, attempt.doc = loaded, loaded.doc
    with pytest.raises(StopAttempt) as stop:
        attempt.gate()
    assert stop.value.outcome == "skipped"
    assert stop.value.reason == (
        "@cache: the inventory has no hosts in group 'cache' (groups: app, auth, db, proxy):"
        " the scenario needs that host"
    )
    # A group the stack does not know is still an error in the file.
    assert no_cache.file_problem("@mainframe") is not None
    assert no_cache.file_problem("@cache") is None and no_cache.problem("@cache") is not None
