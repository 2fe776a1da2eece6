"""Two runs side by side: scenario by scenario and metric by metric, with regressions
flagged (`chaoslab compare RUN_A RUN_B`).

For each scenario both runs have, the outcome and the metrics an operator gates a release
on - p95 and error rate while the fault held, recovery after the heal, the first success
after it, the bite. A's value is the mean over its attempts with a 95 % confidence
interval (Student's t; none with one attempt); B regresses when its mean is worse than the
top of A's interval plus the metric's margin - relative (`margin`, default 20 %) or
absolute (the metric's floor: a 3 ms p95 that becomes 5 ms is noise, not a regression),
whichever is larger. An outcome regresses when B's is worse (passed -> deviated).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from chaos_runner.reports.html import render
from chaos_runner.results.records import Journal, ScenarioRecord

# metric -> (unit, absolute floor of the margin). Higher is worse for every one.
METRICS: dict[str, tuple[str, float]] = {
    "fault_p95_ms": ("ms", 20.0),
    "fault_error_rate": ("", 0.02),
    "recovery_s": ("s", 1.0),
    "first_success_s": ("s", 1.0),
}
# Reported, never judged: an earlier bite is not by itself worse.
REPORTED = ("bite_s",)
# Worse to the right.
OUTCOME_RANK = {"passed": 0, "skipped": 0, "deviated": 1, "aborted": 1, "baseline-not-met": 2,
                "fault-not-effective": 2, "error": 2}  # fmt: skip
# Student's t for a two-sided 95 % interval by degrees of freedom (1.96 beyond 30).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip
# Missing in an attempt that reached a verdict means the worst: the service never
# recovered, never succeeded after the heal, or no request succeeded during the fault.
NEVER = {"recovery_s", "first_success_s", "fault_p95_ms"}


@dataclass(frozen=True)
class Row:
    scenario: str
    metric: str
    a: Any
    a_ci: float | None
    b: Any
    verdict: str  # regression | better | same | not comparable | only in A | only in B
    note: str = ""


def _values(s: ScenarioRecord, metric: str) -> list[float]:
    """The metric over the attempts that reached a verdict (passed / deviated); for the
    NEVER metrics a missing value is infinity (never recovered, never succeeded)."""
    out = []
    for a in s.attempts:
        if a.outcome not in ("passed", "deviated"):
            continue
        v = a.metrics.get(metric)
        if isinstance(v, (int, float)):
            out.append(float(v))
        elif v is None and metric in NEVER:
            out.append(math.inf)
    return out


def mean_ci(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and the half-width of its 95 % confidence interval (None with one value)."""
    if not values:
        return None, None
    if any(math.isinf(v) for v in values):
        return math.inf, None
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, None
    df = len(values) - 1
    t = T95[max(k for k in T95 if k <= df)] if df <= 30 else 1.96
    return m, t * statistics.stdev(values) / math.sqrt(len(values))


def compare(a: Journal, b: Journal, margin: float = 0.2) -> list[Row]:
    rows: list[Row] = []
    by_a = {s.scenario: s for s in a.scenarios}
    by_b = {s.scenario: s for s in b.scenarios}
    for sid in sorted(set(by_a) | set(by_b)):
        sa, sb = by_a.get(sid), by_b.get(sid)
        if sa is None or sb is None:
            present = sa or sb
            assert present is not None
            rows.append(Row(sid, "outcome", sa and sa.outcome, None, sb and sb.outcome,
                            "only in A" if sb is None else "only in B"))  # fmt: skip
            continue
        ra, rb = OUTCOME_RANK.get(sa.outcome, 2), OUTCOME_RANK.get(sb.outcome, 2)
        verdict = "regression" if rb > ra else "better" if rb < ra else "same"
        rows.append(Row(sid, "outcome", sa.outcome, None, sb.outcome, verdict, sb.reason[:120]))
        for metric, (unit, floor) in METRICS.items():
            rows.append(_metric_row(sid, metric, unit, floor, margin, sa, sb))
        for metric in REPORTED:
            ma, _ = mean_ci(_values(sa, metric))
            mb, _ = mean_ci(_values(sb, metric))
            rows.append(Row(sid, metric, _round(ma), None, _round(mb), "reported"))
    return rows


def _metric_row(
    sid: str, metric: str, unit: str, floor: float, margin: float,
    sa: ScenarioRecord, sb: ScenarioRecord,
) -> Row:  # fmt: skip
    ma, ci = mean_ci(_values(sa, metric))
    mb, _ = mean_ci(_values(sb, metric))
    if ma is None or mb is None:
        return Row(sid, metric, _round(ma), ci, _round(mb), "not comparable",
                   "not measured in " + ("A" if ma is None else "B"))  # fmt: skip
    if math.isinf(ma) or math.isinf(mb):
        verdict = "same" if ma == mb else "regression" if math.isinf(mb) else "better"
        note = "never (in some attempt)" if math.isinf(mb) and verdict == "regression" else ""
        return Row(sid, metric, _round(ma), None, _round(mb), verdict, note)
    allowed = ma + (ci or 0.0) + max(abs(ma) * margin, floor)
    better = ma - (ci or 0.0) - max(abs(ma) * margin, floor)
    verdict = "regression" if mb > allowed else "better" if mb < better else "same"
    note = f"limit {allowed:.4g}{unit}" if verdict == "regression" else ""
    return Row(sid, metric, _round(ma), None if ci is None else round(ci, 4), _round(mb),
               verdict, note)  # fmt: skip


def _round(v: float | None) -> float | str | None:
    return None if v is None else "never" if math.isinf(v) else round(v, 4)


def regressions(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.verdict == "regression"]


def table(rows: list[Row]) -> str:
    return tabulate(
        [
            (
                r.scenario,
                r.metric,
                r.a,
                "-" if r.a_ci is None else f"±{r.a_ci:g}",
                r.b,
                r.verdict.upper() if r.verdict == "regression" else r.verdict,
                r.note,
            )
            for r in rows
        ],
        headers=["scenario", "metric", "A", "A 95% CI", "B", "verdict", "note"],
    )


def write_html(path: Path, a: Journal, b: Journal, rows: list[Row], margin: float) -> Path:
    path.write_text(
        render("compare.html.j2", a=a, b=b, rows=rows, margin=margin,
               regressions=regressions(rows))
    )  # fmt: skip
    return path
