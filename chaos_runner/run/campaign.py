"""A run of selected scenarios: context, journal after every scenario, reports at the end.

`runs/<run_id>/` receives journal.json (rewritten after each scenario, so even a killed
run leaves what it measured), history/*.jsonl, ansible/ (playbook artifacts), summary.txt,
junit.xml and scenarios/*.json.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from chaos_runner.analysis.baseline import BaselineStore, Environment
from chaos_runner.ansible import run_playbook
from chaos_runner.errors import ChaosRunnerError, PlaybookFailed
from chaos_runner.faults.channel import FaultClient, FaultSpec
from chaos_runner.model.config import RunnerConfig
from chaos_runner.model.scenario import RUNNER_KINDS, Scenario
from chaos_runner.reports.summary import exit_code, table, write_reports
from chaos_runner.results.records import (
    SCHEMA_VERSION,
    Journal,
    add_to_series,
    summary_record,
    write_journal,
)
from chaos_runner.run.attempt import RunContext, needs_alerts
from chaos_runner.run.retries import run_scenario
from chaos_runner.target.lab import LabState
from chaos_runner.target.roles import resolve_params
from chaos_runner.workload.alerts import alert_receiver

log = logging.getLogger(__name__)


class Terminated(BaseException):
    """SIGTERM: unwind so every `finally` heals what it injected. A BaseException, like
    KeyboardInterrupt, so no `except ChaosRunnerError` turns it into a scenario outcome."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"signal {signum}")


class PhasePrinter:
    def __init__(self, stream: TextIO = sys.stderr, total: int = 0) -> None:
        self.stream = stream
        self.start = time.monotonic()
        self.total = total
        self.done = 0

    def __call__(self, scenario: str, message: str) -> None:
        elapsed = time.monotonic() - self.start
        print(
            f"[{elapsed:6.1f}s] ({self.done + 1}/{self.total}) {scenario}: {message}",
            file=self.stream,
            flush=True,
        )


def new_run_dir(runs_dir: Path, label: str = "run") -> tuple[str, Path]:
    run_id = f"{label}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"
    path = runs_dir / run_id
    path.mkdir(parents=True, exist_ok=False)
    return run_id, path


def ansible_transport(state: LabState, run_dir: Path) -> Any:
    """Faults through playbooks/fault.yml; events stamped on the history's clock."""

    def call(action: str, spec: FaultSpec) -> dict[str, Any]:
        extravars: dict[str, Any] = {
            "fault_action": action,
            "faults_id": spec.id,
            "lab_state_dir": str(state.settings.state_dir),
        }
        if action == "inject":
            extravars.update(
                faults_kind=spec.kind, faults_params=spec.params, faults_ttl_s=spec.ttl_s
            )
        result = run_playbook(
            "fault",
            inventory=state.settings.inventory,
            artifacts_dir=run_dir / "ansible" / f"{spec.id}-{action}",
            extravars=extravars,
            limit=spec.host,
        )
        # Ansible's own events, stamped on the history's clock when the runner got them:
        # the fault timeline of this transport.
        answer: dict[str, Any] = {
            "id": spec.id,
            "playbook_rc": result.rc,
            "ansible_events": [
                {"ns": e.monotonic_ns, "event": f"ansible:{e.event}", "task": e.task}
                for e in result.events
                if e.task and not e.task.startswith("Gathering")
            ],
        }
        for event in result.events:
            if event.event == "runner_on_ok" and (event.task or "").startswith(("Inject", "Heal")):
                answer["applied_ns"] = event.monotonic_ns
        if action == "inject":
            # The agent records the mechanism; ask it (fast path is read-only here).
            answer["mechanism"] = next(
                (r.get("mechanism") for r in _list(state, spec.host) if r.get("id") == spec.id),
                None,
            )
        return answer

    return call


def host_facts(state: LabState, faults: FaultClient) -> dict[str, Any]:
    """What the report's front page names of each host: address, groups, release and the
    fault mechanisms its kernel offers (or why they could not be read)."""
    groups = state.roles.groups
    out: dict[str, Any] = {}
    for name, host in sorted(state.hosts.items()):
        facts: dict[str, Any] = {
            "address": host.get("address"),
            "groups": sorted(g for g, members in groups.items() if name in members),
            "release": host.get("release"),
        }
        try:
            facts["capabilities"] = faults.capabilities(name)
        except ChaosRunnerError as exc:
            facts["capabilities"] = {"error": str(exc)}
        out[name] = facts
    return out


def _list(state: LabState, host: str) -> list[dict[str, Any]]:
    with FaultClient(state) as client:
        return client.list(host)


def run_campaign(
    scenarios: list[Scenario],
    state: LabState,
    config: RunnerConfig,
    runs_dir: Path,
    seed: int,
    selection: list[str],
    argv: list[str],
    stream: TextIO = sys.stderr,
) -> tuple[int, Path]:
    run_id, run_dir = new_run_dir(runs_dir)
    app = state.app(scenarios[0].doc.app) if scenarios else state.app()
    env = Environment.detect(config.environment, app.version, str(app.raw.get("python", "")))
    journal = Journal(
        run_id=run_id,
        schema_version=SCHEMA_VERSION,
        started_at=datetime.now(UTC).isoformat(),
        argv=list(argv),
        seed=seed,
        selection=list(selection),
        config=dict(config.__dict__),
        environment=env.as_dict(),
        apps={h: a.raw for h, a in state.apps.items()},
        definitions={s.id: s.as_dict() for s in scenarios},
    )
    write_journal(run_dir, journal)
    printer = PhasePrinter(stream, len(scenarios))
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    print(f"run {run_id}: {len(scenarios)} scenario(s), artifacts in {run_dir}", file=stream)
    try:
        with (
            FaultClient(state) as faults,
            alert_receiver(
                state.monitors.values(), required=any(needs_alerts(s) for s in scenarios)
            ) as alerts,
        ):
            journal.hosts = host_facts(state, faults)
            write_journal(run_dir, journal)
            ctx = RunContext(
                state=state,
                config=config,
                faults=faults,
                run_dir=run_dir,
                environment=env,
                baselines=BaselineStore(
                    Path(config.baseline_dir)
                    if config.baseline_dir
                    else state.settings.state_dir / "baselines"
                ),
                seed=seed,
                progress=printer,
                ansible=ansible_transport(state, run_dir)
                if config.fault_transport == "ansible"
                else None,
                alerts=alerts,
            )
            for scenario in scenarios:
                summary = summary_record(run_scenario(scenario, ctx), scenario.id)
                journal.scenarios.append(summary)
                if scenario.sweep is not None:
                    add_to_series(journal, summary, scenario.sweep)
                write_journal(run_dir, journal)
                printer.done += 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        journal.finished_at = datetime.now(UTC).isoformat()
        journal.exit_code = exit_code(journal) if journal.scenarios else 2
        write_journal(run_dir, journal)
        if journal.scenarios:
            write_reports(run_dir, journal)
    print(table(journal), file=sys.stdout)
    print(
        f"\njournal: {run_dir / 'journal.json'}  junit: {run_dir / 'junit.xml'}"
        + (f"  report: {run_dir / 'report.html'}" if (run_dir / "report.html").exists() else ""),
        file=stream,
    )
    return journal.exit_code, run_dir


def dry_run(scenarios: list[Scenario], state: LabState, runs_dir: Path, stream: TextIO) -> int:
    """Check mode of every fault of the selection through playbooks/fault.yml: arguments,
    reachability and the role's checks run; nothing is injected."""
    run_id, run_dir = new_run_dir(runs_dir, "dry-run")
    failures = 0
    for scenario in scenarios:
        for i, step in enumerate(scenario.all_faults()):
            if step.kind.startswith("client.") or step.kind in RUNNER_KINDS:
                print(
                    f"{scenario.id}: {step.kind} runs in the controller (nothing to check)",
                    file=stream,
                )
                continue
            absent = state.roles.absent_among((step.host, *step.params.values()))
            if absent:
                print(f"{scenario.id}: {step.kind} skipped: {absent}", file=stream)
                continue
            try:
                run_playbook(
                    "fault",
                    inventory=state.settings.inventory,
                    artifacts_dir=run_dir / "ansible" / f"{scenario.id}-{i}",
                    extravars={
                        "fault_action": "inject",
                        "faults_kind": step.kind,
                        "faults_params": resolve_params(
                            {
                                k: (state.gateway if v == "@controller" else v)
                                for k, v in step.params.items()
                            },
                            state.roles,
                        ),
                        "faults_ttl_s": 30,
                        "lab_state_dir": str(state.settings.state_dir),
                    },
                    limit=state.host(step.host),
                    check=True,
                )
                verdict = "check mode ok"
            except PlaybookFailed as exc:
                failures += 1
                verdict = f"check mode FAILED: {'; '.join(exc.failures) or exc}"
            print(
                f"{scenario.id}: {step.kind} on {state.host(step.host)} ({step.host}): {verdict}",
                file=stream,
            )
    print(f"dry run {run_id}: {len(scenarios)} scenario(s), nothing injected", file=stream)
    return 0 if not failures else 2
