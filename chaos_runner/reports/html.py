"""The HTML run report (runs/<id>/report.html), from the journal and the histories it names.

One page: the environment, every scenario's outcome (findings first, flaky ones marked),
then per scenario and attempt one time axis from the load's start to the end of the
recovery window - every operation as a point (latency, log scale, coloured by outcome),
p50/p95/p99 per window, throughput and error rate per window, the probes and alerts -
with each fault (and each stage of a schedule) as a shaded band naming kind, target and
mechanism, and inject, verify, heal and the recovery point marked; then the checks
(measured against expected), the baseline and links to the raw history. A sweep is drawn
as resilience curves: recovery, first success, p95 and error rate against the swept
value, every attempt a point, the spread shaded.

Charts are Plotly figures (plotly.graph_objects), rendered by the plotly.min.js that ships
in Plotly's wheel, copied once into the run directory: the page opens offline, from
file://. Pages are Jinja2 templates (chaos_runner/reports/templates).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import jinja2
import plotly
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from chaos_runner.results.records import AttemptRecord, Journal, ScenarioRecord, Series

NS = 1e9
# Outcome colours, shared by points, tables and badges.
COLOURS = {"ok": "#2e7d32", "fail": "#c62828", "info": "#ef6c00"}
OUTCOME_ORDER = ("deviated", "aborted", "error", "baseline-not-met", "fault-not-effective")
PROBE_KINDS = ("health", "ready", "metrics", "alert")
# Points drawn per attempt at most (SVG, no WebGL: a headless browser has none): a flood
# of 15,000 requests would otherwise make one figure megabytes. The legend says how many
# of each outcome there were and how many are drawn.
MAX_OK_POINTS = 1500
MAX_FAILED_POINTS = 3000
BAND_COLOURS = ("rgba(198,40,40,0.13)", "rgba(21,101,192,0.13)", "rgba(106,27,154,0.13)")
TEMPLATES = Path(__file__).parent / "templates"
PLOTLY_JS = "plotly.min.js"


def read_history(run_dir: Path, attempt: AttemptRecord) -> list[dict[str, Any]]:
    """The attempt's operations (history/<scenario>-<n>.jsonl), or [] when it has none."""
    if not attempt.history_file:
        return []
    path = run_dir / attempt.history_file
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _origin(attempt: AttemptRecord, ops: list[dict[str, Any]]) -> int:
    """Time zero of the attempt's axis: the load's start."""
    marks = [e["ns"] for e in attempt.timeline if e.get("event") == "load-start"]
    if marks:
        return int(marks[0])
    starts = [int(o["start_ns"]) for o in ops]
    return min(starts) if starts else int(attempt.anchor.get("monotonic_ns", 0))


def _thin(ops: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most `limit` of `ops`, evenly spread over them."""
    if len(ops) <= limit:
        return ops
    step = len(ops) / limit
    return [ops[int(i * step)] for i in range(limit)]


def fault_bands(attempt: AttemptRecord, origin: int, end_s: float) -> list[dict[str, Any]]:
    """One band per fault: from its inject to its heal (seconds on the attempt's axis),
    labelled with kind, target host and mechanism (and the stage, in a schedule)."""
    bands = []
    for i, f in enumerate(attempt.faults):
        start = f.inject_ns or f.injected_ns
        if start is None:
            continue
        stop = f.healed_ns or f.heal_ns
        label = f"{f.kind} {f.target or f.host} ({f.mechanism or '?'})"
        if f.stage_label and f.stage_label != "hold":
            label = f"{f.stage_label}: {label}"
        bands.append(
            {
                "x0": (start - origin) / NS,
                "x1": (stop - origin) / NS if stop is not None else end_s,
                "label": label,
                "colour": BAND_COLOURS[i % len(BAND_COLOURS)],
            }
        )
    return bands


def _marks(attempt: AttemptRecord, origin: int) -> list[tuple[float, str]]:
    """Inject, verify, heal and the recovery point, as (seconds, label)."""
    out: list[tuple[float, str]] = []
    for event in attempt.timeline:
        name = event.get("event")
        if name in ("inject-start", "heal-end"):
            out.append(((event["ns"] - origin) / NS, name.split("-")[0]))
        elif name == "verified":
            out.append(
                ((event["ns"] - origin) / NS, "verified" if event.get("ok") else "verify failed")
            )
    recovery = attempt.metrics.get("recovery_ns")
    if recovery:
        out.append(((recovery - origin) / NS, "recovered"))
    return out


def attempt_figure(run_dir: Path, scenario: ScenarioRecord, attempt: AttemptRecord) -> go.Figure:
    ops = read_history(run_dir, attempt)
    origin = _origin(attempt, ops)
    windows = attempt.windows
    ends = [float(o["end_ns"] - origin) / NS for o in ops] + [
        (w["end_ns"] - origin) / NS for w in windows
    ]
    end_s = max(ends, default=1.0)
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.58, 0.24, 0.18],
        vertical_spacing=0.04,
        specs=[[{}], [{"secondary_y": True}], [{}]],
        subplot_titles=(
            "latency (ms, log)",
            "throughput (ok/s) and error rate",
            "probes and alerts",
        ),
    )
    requests = [o for o in ops if o["kind"] not in PROBE_KINDS and o.get("token") == "valid"]
    for outcome in ("ok", "info", "fail"):
        chosen = [o for o in requests if o["outcome"] == outcome]
        shown = _thin(chosen, MAX_OK_POINTS if outcome == "ok" else MAX_FAILED_POINTS)
        if not shown:
            continue
        fig.add_trace(
            go.Scatter(
                x=[round((o["start_ns"] - origin) / NS, 4) for o in shown],
                y=[max(0.01, round((o["end_ns"] - o["start_ns"]) / 1e6, 2)) for o in shown],
                mode="markers",
                marker={"size": 4, "color": COLOURS[outcome], "opacity": 0.6},
                name=f"{outcome} ({len(chosen)}"
                + (f", {len(shown)} drawn)" if len(shown) < len(chosen) else ")"),
                text=[f"{o['kind']}: {(o.get('error') or '')[:80]}" for o in shown],
                hovertemplate="%{x:.2f} s, %{y} ms<br>%{text}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    mids = [round(((w["start_ns"] + w["end_ns"]) / 2 - origin) / NS, 3) for w in windows]
    for key, dash in (("p50_ms", "dot"), ("p95_ms", "solid"), ("p99_ms", "dash")):
        fig.add_trace(
            go.Scatter(
                x=mids,
                y=[w.get(key) for w in windows],
                mode="lines",
                line={"color": "#37474f", "dash": dash, "width": 1.2},
                name=key.replace("_ms", ""),
                connectgaps=False,
            ),
            row=1,
            col=1,
        )
    slo = (attempt.slo or {}).get("p95_ms")
    if slo:
        fig.add_hline(y=slo, line={"color": "#6d4c41", "dash": "longdash", "width": 1},
                      annotation_text=f"SLO p95 {slo:g} ms", row=1, col=1)  # fmt: skip
    fig.add_trace(
        go.Scatter(x=mids, y=[w.get("throughput") for w in windows], mode="lines",
                   line={"color": COLOURS["ok"]}, name="throughput"),
        row=2, col=1,
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(x=mids, y=[w.get("error_rate") for w in windows], mode="lines",
                   line={"color": COLOURS["fail"]}, name="error rate"),
        row=2, col=1, secondary_y=True,
    )  # fmt: skip
    side = [o for o in ops if o["kind"] in PROBE_KINDS]
    for kind in PROBE_KINDS:
        mine = [o for o in side if o["kind"] == kind]
        if not mine:
            continue
        fig.add_trace(
            go.Scatter(
                x=[round((o["end_ns"] - origin) / NS, 3) for o in mine],
                y=[kind] * len(mine),
                mode="markers",
                marker={"size": 7, "symbol": "line-ns-open",
                        "color": [COLOURS.get(o["outcome"], "#777") for o in mine]},
                name=kind,
                text=[(o.get("error") or o["outcome"])[:80] for o in mine],
                hovertemplate="%{x:.2f} s %{text}<extra>" + kind + "</extra>",
                showlegend=False,
            ),
            row=3, col=1,
        )  # fmt: skip
    for band in fault_bands(attempt, origin, end_s):
        fig.add_vrect(
            x0=band["x0"], x1=band["x1"], fillcolor=band["colour"], line_width=0, layer="below",
            annotation_text=band["label"], annotation_position="top left",
            annotation_font_size=10, row="all", col=1, exclude_empty_subplots=False,
        )  # fmt: skip
    for x, label in _marks(attempt, origin):
        fig.add_vline(x=x, line={"color": "#455a64", "width": 1, "dash": "dot"},
                      annotation_text=label, annotation_font_size=9,
                      annotation_position="bottom right", row=1, col=1)  # fmt: skip
    latencies = [
        (o["end_ns"] - o["start_ns"]) / 1e6 for o in requests if o["end_ns"] > o["start_ns"]
    ]
    low, high = (min(latencies), max(latencies)) if latencies else (1.0, 1000.0)
    # An explicit range: bands and their labels must not stretch the log axis.
    fig.update_yaxes(
        type="log", range=[math.log10(max(low, 0.05) / 1.5), math.log10(high * 1.5)], row=1, col=1
    )
    fig.update_yaxes(rangemode="tozero", row=2, col=1, secondary_y=False)
    fig.update_yaxes(range=[0, 1.05], row=2, col=1, secondary_y=True)
    fig.update_xaxes(title_text="seconds from the load's start", row=3, col=1)
    fig.update_layout(
        height=620,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.12},
        title={"text": f"{scenario.scenario} - attempt {attempt.attempt}: {attempt.outcome}",
               "font": {"size": 14}},
        template="plotly_white",
    )  # fmt: skip
    return fig


# A sweep's curves: metric -> axis title. Each attempt is a point; the line joins the
# means; the band spans the attempts' lowest and highest value (the spread).
CURVES = {
    "recovery_s": "recovery after the heal (s)",
    "first_success_s": "first success after the heal (s)",
    "fault_p95_ms": "p95 during the fault (ms)",
    "fault_error_rate": "error rate during the fault",
}


def sweep_figure(series: Series) -> go.Figure:
    """A sweep as resilience curves: each metric against the swept value."""
    fig = make_subplots(rows=1, cols=len(CURVES), subplot_titles=list(CURVES.values()))
    values = [p.value for p in series.points]
    numeric = all(isinstance(v, (int, float)) for v in values)
    for col, metric in enumerate(CURVES, start=1):
        xs, ys, means, lows, highs = [], [], [], [], []
        for p in series.points:
            found = [a[metric] for a in p.attempts if isinstance(a.get(metric), (int, float))]
            xs += [p.value] * len(found)
            ys += found
            means.append(sum(found) / len(found) if found else None)
            lows.append(min(found) if found else None)
            highs.append(max(found) if found else None)
        fig.add_trace(go.Scatter(x=values + values[::-1], y=highs + lows[::-1], fill="toself",
                                 fillcolor="rgba(55,71,79,0.12)", line={"width": 0},
                                 hoverinfo="skip", showlegend=False), row=1, col=col)  # fmt: skip
        fig.add_trace(go.Scatter(x=values, y=means, mode="lines", line={"color": "#37474f"},
                                 name="mean", showlegend=col == 1), row=1, col=col)  # fmt: skip
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker={"size": 7,
                                 "color": "#1565c0"}, name="attempt", showlegend=col == 1),
                      row=1, col=col)  # fmt: skip
        fig.update_xaxes(title_text=f"{series.label} ({series.key})",
                         type="linear" if numeric else "category", row=1, col=col)  # fmt: skip
    fig.update_layout(height=380, margin={"l": 50, "r": 20, "t": 80, "b": 50},
                      title={"text": f"sweep {series.base}: {series.label}", "font": {"size": 14},
                             "y": 0.98},
                      template="plotly_white")  # fmt: skip
    return fig


def _scenario_order(journal: Journal) -> list[ScenarioRecord]:
    """Findings first (deviated, then the lab's troubles), then the rest as run."""

    def rank(s: ScenarioRecord) -> int:
        return OUTCOME_ORDER.index(s.outcome) if s.outcome in OUTCOME_ORDER else len(OUTCOME_ORDER)

    return sorted(journal.scenarios, key=rank)


def render(template: str, **context: Any) -> str:
    """One of the report templates (chaos_runner/reports/templates), HTML-escaped."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda v, unit="": "-" if v is None else f"{v:g}{unit}"
    return env.get_template(template).render(**context)


def figure_json(fig: go.Figure) -> str:
    """A figure as JSON to embed in a <script> block: no "</" may close it early."""
    return str(fig.to_json()).replace("</", "<\\/")


def copy_plotly(directory: Path) -> Path:
    """Plotly's own bundle (from its wheel) in `directory`, for pages there to load offline."""
    bundle = directory / PLOTLY_JS
    source = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not bundle.is_file() or bundle.stat().st_size != source.stat().st_size:
        shutil.copyfile(source, bundle)
    return bundle


def build_html(run_dir: Path, journal: Journal) -> Path:
    """Write run_dir/report.html (and plotly.min.js beside it); its path."""
    copy_plotly(run_dir)
    scenarios = []
    for s in _scenario_order(journal):
        attempts = []
        for a in s.attempts:
            fig = attempt_figure(run_dir, s, a) if a.history_file else None
            attempts.append(
                {
                    "record": a,
                    "div": f"fig-{s.scenario}-{a.attempt}".replace(".", "-"),
                    "figure": figure_json(fig) if fig is not None else None,
                    "bands": len(fault_bands(a, 0, 0.0)),
                }
            )
        scenarios.append(
            {
                "record": s,
                "attempts": attempts,
                "definition": journal.definitions.get(s.scenario, {}),
            }
        )
    sweeps = [
        {"series": series, "div": f"sweep-{name}".replace(".", "-"),
         "figure": figure_json(sweep_figure(series))}
        for name, series in sorted(journal.series.items())
    ]  # fmt: skip
    counts: dict[str, int] = {}
    for s in journal.scenarios:
        counts[s.outcome] = counts.get(s.outcome, 0) + 1
    wall_s = None
    if journal.started_at and journal.finished_at:
        from datetime import datetime

        wall_s = (
            datetime.fromisoformat(journal.finished_at) - datetime.fromisoformat(journal.started_at)
        ).total_seconds()
    page = render(
        "report.html.j2",
        wall_s=wall_s,
        journal=journal,
        scenarios=scenarios,
        sweeps=sweeps,
        counts=counts,
        colours=COLOURS,
        plotly_js=PLOTLY_JS,
    )
    out = run_dir / "report.html"
    out.write_text(page)
    return out
