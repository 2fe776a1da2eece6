"""Reports, all derived from the run's journal (runs/<run_id>/journal.json).

The journal holds every attempt of every scenario (timeline, faults and mechanisms,
baseline, windows, checks, verdict); `chaoslab report RUN` regenerates the terminal
table, per-scenario JSON and JUnit XML from it alone.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from tabulate import tabulate

from chaos_runner.errors import ConfigError

LAB_ERRORS = ("error", "baseline-not-met", "fault-not-effective")


def exit_code(journal: dict[str, Any]) -> int:
    """0 all passed (or skipped with a reason), 1 deviations found, 2 lab trouble."""
    outcomes = [s["outcome"] for s in journal.get("scenarios", [])]
    if any(o in LAB_ERRORS for o in outcomes) or not outcomes:
        return 2
    if any(o in ("deviated", "aborted") for o in outcomes):
        return 1
    return 0


def write_journal(run_dir: Path, journal: dict[str, Any]) -> Path:
    path = run_dir / "journal.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(journal, indent=1, default=str))
    os.replace(tmp, path)
    return path


def read_journal(where: Path) -> dict[str, Any]:
    path = where / "journal.json" if where.is_dir() else where
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the journal: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a journal (line {exc.lineno}: {exc.msg})") from None
    if "scenarios" not in data:
        raise ConfigError(f"{path}: not a journal (no `scenarios`)")
    return data


def _chosen(summary: dict[str, Any]) -> dict[str, Any]:
    attempt: dict[str, Any] = next(
        (a for a in summary["attempts"] if a["attempt"] == summary.get("chosen_attempt")),
        summary["attempts"][-1],
    )
    return attempt


def _fmt(value: Any, unit: str = "") -> str:
    return (
        "-"
        if value is None
        else f"{value:g}{unit}"
        if isinstance(value, float)
        else f"{value}{unit}"
    )


def table(journal: dict[str, Any]) -> str:
    rows = []
    for s in journal["scenarios"]:
        a = _chosen(s)
        m = a.get("metrics", {})
        mechanisms = ", ".join(
            sorted({f"{f['kind']}:{f.get('mechanism')}" for f in a.get("faults", [])})
        )
        rows.append(
            [
                s["scenario"],
                s["outcome"] + (" (flaky)" if s.get("flaky") else ""),
                len(s["attempts"]),
                _fmt(m.get("bite_s"), " s"),
                _fmt(m.get("recovery_s"), " s"),
                _fmt(m.get("fault_p95_ms"), " ms"),
                _fmt(m.get("fault_error_rate")),
                mechanisms or "-",
                (s.get("reason") or "")[:90],
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
    return tabulate(rows, headers=headers, tablefmt="simple")


def junit(journal: dict[str, Any]) -> str:
    suite = ET.Element(
        "testsuite",
        name=f"chaoslab {journal.get('run_id', '')}",
        tests=str(len(journal["scenarios"])),
        failures=str(
            sum(1 for s in journal["scenarios"] if s["outcome"] in ("deviated", "aborted"))
        ),
        errors=str(sum(1 for s in journal["scenarios"] if s["outcome"] in LAB_ERRORS)),
        skipped=str(sum(1 for s in journal["scenarios"] if s["outcome"] == "skipped")),
    )
    for s in journal["scenarios"]:
        a = _chosen(s)
        events = a.get("timeline") or []
        duration = (events[-1]["ns"] - events[0]["ns"]) / 1e9 if len(events) > 1 else 0.0
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"chaoslab.{s['scenario'].split('.')[0]}",
            name=s["scenario"],
            time=f"{duration:.3f}",
        )
        message = f"{s['outcome']}: {s.get('reason') or ''}".strip()
        if s["outcome"] in ("deviated", "aborted"):
            ET.SubElement(case, "failure", message=message, type=s["outcome"]).text = _checks_text(
                a
            )
        elif s["outcome"] in LAB_ERRORS:
            ET.SubElement(case, "error", message=message, type=s["outcome"])
        elif s["outcome"] == "skipped":
            ET.SubElement(case, "skipped", message=s.get("reason") or "skipped")
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="attempts", value=str(len(s["attempts"])))
        ET.SubElement(props, "property", name="flaky", value=str(bool(s.get("flaky"))).lower())
        ET.SubElement(case, "system-out").text = _checks_text(a)
    return ET.tostring(suite, encoding="unicode")


def _checks_text(attempt: dict[str, Any]) -> str:
    return "\n".join(
        f"[{'ok' if c['ok'] else 'FAIL'}] {c['name']}: {c['measured']} (expected {c['expected']})"
        + (f" - {c['detail']}" if c.get("detail") else "")
        for c in attempt.get("checks", [])
    )


def write_reports(run_dir: Path, journal: dict[str, Any]) -> dict[str, Path]:
    """Every report of the run, from the journal alone."""
    out = {"table": run_dir / "summary.txt", "junit": run_dir / "junit.xml"}
    out["table"].write_text(table(journal) + "\n")
    out["junit"].write_text(junit(journal) + "\n")
    per = run_dir / "scenarios"
    per.mkdir(exist_ok=True)
    for s in journal["scenarios"]:
        path = per / f"{s['scenario']}.json"
        path.write_text(
            json.dumps(
                {"run_id": journal.get("run_id"), "environment": journal.get("environment"), **s},
                indent=1,
                default=str,
            )
        )
    out["scenarios"] = per
    return out
