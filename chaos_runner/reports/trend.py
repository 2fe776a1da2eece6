"""Scenarios across runs (`chaoslab trend [--last N]`): per scenario, its outcome and key
metrics in each run of the runs directory that has it, oldest first, with every change of
environment (FraiseQL version, Python, cores, kernel, lab or cluster) marked.

A table on the terminal (one line per scenario: the outcomes in order, then the latest
metrics) and runs/trend.html: small multiples, one panel per scenario, p95 during the
fault and recovery against the run, each point coloured by its outcome, a dotted line
where the environment changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots
from tabulate import tabulate

from chaos_runner.errors import ChaosRunnerError
from chaos_runner.reports.html import COLOURS, copy_plotly, figure_json, render
from chaos_runner.results.records import Journal, read_journal

OUTCOME_COLOURS = {"passed": COLOURS["ok"], "deviated": COLOURS["fail"], "skipped": "#78909c"}
LETTERS = {"passed": "P", "deviated": "D", "skipped": "s", "aborted": "A", "error": "E",
           "baseline-not-met": "b", "fault-not-effective": "f"}  # fmt: skip


@dataclass(frozen=True)
class Point:
    run_id: str
    started_at: str
    environment: str
    outcome: str
    metrics: dict[str, Any]


def journals(runs_dir: Path, last: int | None = None) -> list[Journal]:
    """The scenario runs under runs_dir (lab-up runs and unreadable directories left out),
    oldest first; the last `last` of them."""
    found = []
    for path in sorted(runs_dir.glob("run-*/journal.json")):
        try:
            found.append(read_journal(path))
        except ChaosRunnerError:
            continue
    found.sort(key=lambda j: j.started_at or j.run_id)
    return found[-last:] if last else found


def series(runs: list[Journal]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    for j in runs:
        env = str(j.environment.get("key") or j.environment.get("fraiseql") or "?")
        for s in j.scenarios:
            out.setdefault(s.scenario, []).append(
                Point(j.run_id, j.started_at or "", env, s.outcome, s.chosen().metrics)
            )
    return out


def table(points: dict[str, list[Point]]) -> str:
    rows = []
    for sid, pts in sorted(points.items()):
        marks = []
        for i, p in enumerate(pts):
            changed = i > 0 and p.environment != pts[i - 1].environment
            marks.append(("|" if changed else "") + LETTERS.get(p.outcome, "?"))
        last = pts[-1].metrics
        rows.append((sid, "".join(marks), pts[-1].outcome, last.get("fault_p95_ms"),
                     last.get("fault_error_rate"), last.get("recovery_s")))  # fmt: skip
    return tabulate(
        rows,
        headers=["scenario", "outcomes (oldest first; | = environment changed)", "latest",
                 "p95 ms", "error rate", "recovery s"],
    )  # fmt: skip


def figure(points: dict[str, list[Point]]) -> go.Figure:
    ids = sorted(points)
    cols = 3
    rows = max(1, math.ceil(len(ids) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=ids, vertical_spacing=0.3 / rows,
                        specs=[[{"secondary_y": True}] * cols] * rows)  # fmt: skip
    for n, sid in enumerate(ids):
        row, col = n // cols + 1, n % cols + 1
        pts = points[sid]
        x = list(range(len(pts)))
        text = [f"{p.run_id}<br>{p.environment}<br>{p.outcome}" for p in pts]
        fig.add_trace(go.Scatter(
            x=x, y=[p.metrics.get("fault_p95_ms") for p in pts], mode="lines+markers",
            marker={"color": [OUTCOME_COLOURS.get(p.outcome, COLOURS["info"]) for p in pts],
                    "size": 8}, line={"color": "#90a4ae"}, text=text, name="p95 ms",
            showlegend=n == 0, hovertemplate="%{text}<br>p95 %{y} ms<extra></extra>"),
            row=row, col=col)  # fmt: skip
        fig.add_trace(go.Scatter(
            x=x, y=[p.metrics.get("recovery_s") for p in pts], mode="lines",
            line={"color": "#6a1b9a", "dash": "dot"}, name="recovery s", showlegend=n == 0),
            row=row, col=col, secondary_y=True)  # fmt: skip
        for i in range(1, len(pts)):
            if pts[i].environment != pts[i - 1].environment:
                fig.add_vline(x=i - 0.5, line={"color": "#ef6c00", "dash": "dot"},
                              row=row, col=col)  # fmt: skip
    fig.update_layout(height=260 * rows + 80, template="plotly_white",
                      margin={"l": 50, "r": 50, "t": 60, "b": 40},
                      title={"text": "p95 during the fault (points coloured by outcome) and"
                             " recovery, per run; orange: the environment changed"})  # fmt: skip
    return fig


def write_html(path: Path, runs: list[Journal], points: dict[str, list[Point]]) -> Path:
    copy_plotly(path.parent)
    page = render(
        "trend.html.j2", runs=runs, figure=figure_json(figure(points)), table=table(points)
    )
    path.write_text(page)
    return path
