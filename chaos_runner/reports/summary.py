"""Reports, all derived from the run's journal records (runs/<run_id>/journal.json).

The journal holds every attempt of every scenario (timeline, faults and mechanisms,
baseline, windows, checks, verdict); `chaoslab report RUN` regenerates the terminal
table, per-scenario JSON, JUnit XML and the HTML report (reports/html.py) from it and the
histories it names alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from tabulate import tabulate

from chaos_runner.results.records import AttemptRecord, Journal

log = logging.getLogger(__name__)
LAB_ERRORS = ("error", "baseline-not-met", "fault-not-effective")


def exit_code(journal: Journal) -> int:
    """0 all passed (or skipped with a reason), 1 deviations found, 2 lab trouble."""
    outcomes = [s.outcome for s in journal.scenarios]
    if any(o in LAB_ERRORS for o in outcomes) or not outcomes:
        return 2
    if any(o in ("deviated", "aborted") for o in outcomes):
        return 1
    return 0


def _fmt(value: Any, unit: str = "") -> str:
    return (
        "-"
        if value is None
        else f"{value:g}{unit}"
        if isinstance(value, float)
        else f"{value}{unit}"
    )


def table(journal: Journal) -> str:
    rows = []
    for s in journal.scenarios:
        a = s.chosen()
        m = a.metrics
        mechanisms = ", ".join(sorted({f"{f.kind}:{f.mechanism}" for f in a.faults}))
        rows.append(
            [
                s.scenario,
                s.outcome + (" (flaky)" if s.flaky else ""),
                len(s.attempts),
                _fmt(m.get("bite_s"), " s"),
                _fmt(m.get("recovery_s"), " s"),
                _fmt(m.get("fault_p95_ms"), " ms"),
                _fmt(m.get("fault_error_rate")),
                mechanisms or "-",
                (s.reason or "")[:90],
            ]
        )
    headers = [
        "scenario",
        "outcome",
        "tries",
        "bite",
        "recovery",
        "p95 fault",
        "err rate",
        "fault mechanism",
        "reason",
    ]
    out = tabulate(rows, headers=headers, tablefmt="simple")
    for series in journal.series.values():
        out += f"\n\n{series.base}: {series.label} ({series.key}) -> recovery, first success"
        for p in series.points:
            values = ", ".join(
                f"{_fmt(a.get('recovery_s'), ' s')} / {_fmt(a.get('first_success_s'), ' s')}"
                for a in p.attempts
            )
            out += f"\n  {p.value!s:>8}: {p.outcome:<10} {values}"
    return out


def junit(journal: Journal) -> str:
    scenarios = journal.scenarios
    suite = ET.Element(
        "testsuite",
        name=f"chaoslab {journal.run_id}",
        tests=str(len(scenarios)),
        failures=str(sum(1 for s in scenarios if s.outcome in ("deviated", "aborted"))),
        errors=str(sum(1 for s in scenarios if s.outcome in LAB_ERRORS)),
        skipped=str(sum(1 for s in scenarios if s.outcome == "skipped")),
    )
    for s in scenarios:
        a = s.chosen()
        events = a.timeline
        duration = (events[-1]["ns"] - events[0]["ns"]) / 1e9 if len(events) > 1 else 0.0
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"chaoslab.{s.scenario.split('.')[0]}",
            name=s.scenario,
            time=f"{duration:.3f}",
        )
        message = f"{s.outcome}: {s.reason or ''}".strip()
        if s.outcome in ("deviated", "aborted"):
            failure = ET.SubElement(case, "failure", message=message, type=s.outcome)
            failure.text = _checks_text(a)
        elif s.outcome in LAB_ERRORS:
            ET.SubElement(case, "error", message=message, type=s.outcome)
        elif s.outcome == "skipped":
            ET.SubElement(case, "skipped", message=s.reason or "skipped")
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="attempts", value=str(len(s.attempts)))
        ET.SubElement(props, "property", name="flaky", value=str(s.flaky).lower())
        ET.SubElement(case, "system-out").text = _checks_text(a)
    return ET.tostring(suite, encoding="unicode")


def _checks_text(attempt: AttemptRecord) -> str:
    return "\n".join(
        f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.measured} (expected {c.expected})"
        + (f" - {c.detail}" if c.detail else "")
        for c in attempt.checks
    )


def write_reports(run_dir: Path, journal: Journal) -> dict[str, Path]:
    """Every report of the run, from the journal alone."""
    out = {"table": run_dir / "summary.txt", "junit": run_dir / "junit.xml"}
    out["table"].write_text(table(journal) + "\n")
    out["junit"].write_text(junit(journal) + "\n")
    per = run_dir / "scenarios"
    per.mkdir(exist_ok=True)
    for s in journal.scenarios:
        path = per / f"{s.scenario}.json"
        body = {
            "schema_version": journal.schema_version,
            "run_id": journal.run_id,
            "environment": journal.environment,
            **dataclasses.asdict(s),
        }
        path.write_text(json.dumps(body, indent=1, default=str))
    out["scenarios"] = per
    from chaos_runner.reports.html import build_html  # Plotly loads only for the report

    try:
        out["html"] = build_html(run_dir, journal)
    except Exception as exc:  # the other reports and the run's exit code must survive it
        log.error("report.html not written: %r", exc)
    return out
