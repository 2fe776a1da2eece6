"""The journal as typed records with a schema version.

A run's journal.json is written from these records and read back into them; every report
reads records, never raw dicts. Reading uses the same typed builder as scenario files, so
a damaged or foreign journal is refused naming the file and the key. Schema 1 (journals
written before the version existed) reads as well: every field added since has a default.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos_runner.errors import ConfigError
from chaos_runner.model.build import build, field

SCHEMA_VERSION = 2
READABLE = (1, 2)


@dataclass
class FaultRecord:
    id: str
    kind: str
    host: str
    params: dict[str, Any] = field({})
    mechanism: str | None = None
    target: str | None = None
    stage: int = 0
    stage_label: str | None = None
    inject_ns: int | None = None
    injected_ns: int | None = None
    applied_ns: int | None = None
    verified: bool | None = None
    evidence: Any = None
    heal_ns: int | None = None
    healed_ns: int | None = None
    # The exact commands the fault agent ran to inject and to heal it.
    commands: list[str] = field([])
    heal_commands: list[str] = field([])


@dataclass
class CheckRecord:
    name: str
    ok: bool
    measured: Any
    expected: str
    detail: str = ""


@dataclass
class AttemptRecord:
    scenario: str
    attempt: int
    outcome: str
    reason: str = ""
    anchor: dict[str, int] = field({})
    faults: list[FaultRecord] = field([])
    timeline: list[dict[str, Any]] = field([])
    baseline: dict[str, Any] | None = None
    baseline_pooled: dict[str, Any] | None = None
    baseline_windows: int | None = None
    stored_baseline: dict[str, Any] | None = None
    slo: dict[str, Any] | None = None
    checks: list[CheckRecord] = field([])
    metrics: dict[str, Any] = field({})
    windows: list[dict[str, Any]] = field([])
    ledger: dict[str, Any] | None = None
    counter: dict[str, Any] | None = None
    stages: list[dict[str, Any]] = field([])
    history_file: str | None = None
    # The scenario's `prepare` steps that ran before the load (kind, host, ok, evidence).
    prepared: list[dict[str, Any]] = field([])
    # The files of the attempt's evidence bundle, relative to the run directory.
    evidence: list[str] = field([])


@dataclass
class ScenarioRecord:
    scenario: str
    outcome: str
    attempts: list[AttemptRecord]
    flaky: bool = False
    reason: str = ""
    chosen_attempt: int | None = None

    def chosen(self) -> AttemptRecord:
        return next(
            (a for a in self.attempts if a.attempt == self.chosen_attempt), self.attempts[-1]
        )


@dataclass
class SeriesPoint:
    value: int | float | str
    scenario: str
    outcome: str
    attempts: list[dict[str, Any]] = field([])


@dataclass
class Series:
    """A sweep: the swept key and, per value, the metrics of every attempt."""

    base: str
    key: str
    label: str
    points: list[SeriesPoint] = field([])


@dataclass
class Journal:
    run_id: str
    scenarios: list[ScenarioRecord] = field([])
    schema_version: int = 1
    started_at: str | None = None
    finished_at: str | None = None
    argv: list[str] = field([])
    seed: int | None = None
    selection: list[str] = field([])
    config: dict[str, Any] = field({})
    environment: dict[str, Any] = field({})
    apps: dict[str, Any] = field({})
    # Each host: address, inventory groups, release (a guest) and the fault mechanisms its
    # kernel offers (the agent's capability probe: netem, tbf, iptables, nfqueue, cgroups).
    hosts: dict[str, Any] = field({})
    definitions: dict[str, Any] = field({})
    series: dict[str, Series] = field({})
    exit_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SERIES_METRICS = (
    "recovery_s",
    "first_success_s",
    "bite_s",
    "fault_p50_ms",
    "fault_p95_ms",
    "fault_error_rate",
)


def add_to_series(journal: Journal, summary: ScenarioRecord, point: Any) -> None:
    """Record one sweep point (a `SweepPoint`) with the metrics of each attempt."""
    series = journal.series.setdefault(point.base, Series(point.base, point.key, point.label))
    series.points.append(
        SeriesPoint(
            value=point.value,
            scenario=summary.scenario,
            outcome=summary.outcome,
            attempts=[
                {
                    "attempt": a.attempt,
                    "outcome": a.outcome,
                    **{k: a.metrics.get(k) for k in SERIES_METRICS},
                }
                for a in summary.attempts
            ],
        )
    )


def write_journal(run_dir: Path, journal: Journal) -> Path:
    path = run_dir / "journal.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(journal.to_dict(), indent=1, default=str))
    os.replace(tmp, path)
    return path


def read_journal(where: Path) -> Journal:
    path = where / "journal.json" if where.is_dir() else where
    try:
        data: Any = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the journal: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a journal (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict) or "scenarios" not in data:
        raise ConfigError(f"{path}: not a journal (no `scenarios`)")
    version = data.get("schema_version", 1)
    if version not in READABLE:
        raise ConfigError(
            f"{path}: schema_version: journal schema {version!r} is not one this chaoslab "
            f"reads ({', '.join(map(str, READABLE))}); use the chaoslab that wrote it"
        )
    return build(Journal, data, str(path))


def summary_record(summary: dict[str, Any], source: str = "attempt") -> ScenarioRecord:
    """A scenario's summary (as the runner assembles it) as a checked record."""
    return build(ScenarioRecord, summary, source)
