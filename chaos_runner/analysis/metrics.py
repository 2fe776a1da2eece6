"""Numbers derived from a history and a fault timeline (both on the monotonic clock).

Percentiles use the nearest-rank definition (the smallest value with at least p % of the
sample at or below it): every reported latency is one that was really observed.
Windows are fixed slots of `window_ns` from the run's origin; an operation belongs to the
window its (intended) start falls in.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from chaos_runner.analysis.history import History, Operation

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000

# Two-sided 95 % Student t quantiles t(0.975, df) for df = 1..30; above 30 the normal 1.96
# is within 4 % and is used.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of `values` (None for an empty sample)."""
    if not values:
        return None
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is outside (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def ok_latency_ms(ops: Iterable[Operation], p: float) -> float | None:
    """Percentile `p` of the successful operations' latencies, in ms (2 decimals)."""
    value = percentile([o.latency_ns for o in ops if o.outcome == "ok"], p)
    return None if value is None else round(value / NS_PER_MS, 2)


def t_quantile(df: int) -> float:
    if df < 1:
        raise ValueError("a confidence interval needs at least two samples")
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True)
class Window:
    """One fixed window of the history."""

    start_ns: int
    end_ns: int
    started: int
    ok: int
    fail: int
    info: int
    completed_ok: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @property
    def error_rate(self) -> float:
        return (self.fail + self.info) / self.started if self.started else 0.0

    @property
    def throughput(self) -> float:
        """Successful operations completed per second in this window."""
        return self.completed_ok * NS_PER_S / (self.end_ns - self.start_ns)

    def meets(self, slo: Slo) -> bool:
        """An empty window is no evidence of health and does not meet the SLO."""
        if self.started == 0:
            return False
        if self.error_rate > slo.error_rate:
            return False
        return self.p95_ms is not None and self.p95_ms <= slo.p95_ms

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["error_rate"] = round(self.error_rate, 4)
        out["throughput"] = round(self.throughput, 2)
        return out


@dataclass(frozen=True)
class Slo:
    """What a healthy window looks like (used for bite and recovery)."""

    p95_ms: float
    error_rate: float = 0.0


def _ms(ns: int | float) -> float:
    return round(ns / NS_PER_MS, 3)


def summarize(ops: Sequence[Operation], start_ns: int, end_ns: int) -> Window:
    """The window statistics of `ops` (already selected by start time)."""
    latencies = [op.latency_ns for op in ops if op.outcome == "ok"]
    counts = {o: 0 for o in ("ok", "fail", "info")}
    for op in ops:
        counts[op.outcome] += 1

    def pct(p: float) -> float | None:
        value = percentile(latencies, p)
        return None if value is None else _ms(value)

    return Window(
        start_ns=start_ns,
        end_ns=end_ns,
        started=len(ops),
        ok=counts["ok"],
        fail=counts["fail"],
        info=counts["info"],
        completed_ok=0,
        p50_ms=pct(50),
        p95_ms=pct(95),
        p99_ms=pct(99),
        max_ms=_ms(max(latencies)) if latencies else None,
    )


def windows(
    history: History | Iterable[Operation], origin_ns: int, until_ns: int, window_ns: int
) -> list[Window]:
    """Fixed windows [origin + k*w, origin + (k+1)*w) covering [origin, until).

    Latency percentiles cover successful operations that *started* in the window; the
    error rate covers every operation that started in it; throughput counts successful
    operations that *completed* in it.
    """
    if window_ns <= 0:
        raise ValueError("window length must be positive")
    count = max(0, math.ceil((until_ns - origin_ns) / window_ns))
    started: list[list[Operation]] = [[] for _ in range(count)]
    completed_ok = [0] * count
    for op in history:
        k = (op.start_ns - origin_ns) // window_ns
        if 0 <= k < count:
            started[k].append(op)
        if op.outcome == "ok":
            j = (op.end_ns - origin_ns) // window_ns
            if 0 <= j < count:
                completed_ok[j] += 1
    out = []
    for k in range(count):
        w = summarize(started[k], origin_ns + k * window_ns, origin_ns + (k + 1) * window_ns)
        out.append(_with_completed(w, completed_ok[k]))
    return out


def _with_completed(w: Window, completed_ok: int) -> Window:
    data = asdict(w)
    data["completed_ok"] = completed_ok
    return Window(**data)


def is_bad(op: Operation, slo: Slo) -> bool:
    return op.outcome != "ok" or op.latency_ns > slo.p95_ms * NS_PER_MS


def bite_ns(history: Iterable[Operation], inject_ns: int, slo: Slo) -> int | None:
    """When the fault first showed: the earliest moment an operation that ended after the
    injection was hurt (its start, or the injection itself for one already in flight).
    None if no operation was hurt."""
    candidates = [
        max(op.start_ns, inject_ns) for op in history if op.end_ns > inject_ns and is_bad(op, slo)
    ]
    return min(candidates) if candidates else None


def recovery_ns(
    all_windows: Sequence[Window], heal_ns: int, slo: Slo, consecutive: int = 3
) -> int | None:
    """Start of the first of `consecutive` windows in a row that meet the SLO, among the
    windows starting at or after the heal; None if that never happened."""
    run = 0
    for index, w in enumerate(all_windows):
        if w.start_ns < heal_ns:
            continue
        run = run + 1 if w.meets(slo) else 0
        if run == consecutive:
            return all_windows[index - consecutive + 1].start_ns
    return None


@dataclass(frozen=True)
class Estimate:
    """Mean, sample standard deviation and 95 % confidence interval of a sample."""

    n: int
    mean: float
    stddev: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def estimate(values: Sequence[float]) -> Estimate:
    if len(values) < 2:
        raise ValueError(f"an estimate needs at least 2 values, got {len(values)}")
    mean = statistics.fmean(values)
    sd = statistics.stdev(values)
    half = t_quantile(len(values) - 1) * sd / math.sqrt(len(values))
    return Estimate(len(values), mean, sd, mean - half, mean + half)


BASELINE_METRICS = ("p50_ms", "p95_ms", "p99_ms", "error_rate", "throughput")


@dataclass(frozen=True)
class Pooled:
    """One phase's operations taken together (what a KPI ratio compares)."""

    operations: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    throughput: float
    offered: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pooled(ops: Sequence[Operation], start_ns: int, end_ns: int) -> Pooled:
    """Latency percentiles of the successful operations that started in [start, end);
    throughput = those that succeeded, per second of the phase (goodput by start: a slow
    success still counts for the phase it was asked in, so latency is judged by the latency
    check alone, not twice); offered = starts per second."""
    return pooled_spans(ops, [(start_ns, end_ns)])


def within(ops: Sequence[Operation], spans: Sequence[tuple[int, int]]) -> list[Operation]:
    """The operations that started inside one of `spans` (half-open: [start, end))."""
    return [o for o in ops if any(start <= o.start_ns < end for start, end in spans)]


def p95_limit(base_ms: float, factor: float) -> float:
    """The p95 a phase may reach against a baseline p95: `factor` times it, and never less
    than 25 ms above it (a fast baseline's jitter is not a regression)."""
    return max(factor * base_ms, base_ms + 25)


def pooled_spans(ops: Sequence[Operation], spans: Sequence[tuple[int, int]]) -> Pooled:
    """`pooled` over disjoint spans taken together (a schedule's stages with gaps between
    them): the operations started inside any span, per second of the spans' total length."""
    total = max(sum(end - start for start, end in spans), 1) / NS_PER_S
    started = within(ops, spans)
    latencies = [o.latency_ns for o in started if o.outcome == "ok"]

    def pct(p: float) -> float | None:
        value = percentile(latencies, p)
        return None if value is None else _ms(value)

    return Pooled(
        len(started),
        pct(50),
        pct(95),
        pct(99),
        round(len(latencies) / total, 3),
        round(len(started) / total, 3),
    )


def median_p95(ws: Sequence[Window]) -> float | None:
    """The typical window p95: robust to one slow window (a GC pause, a reconnect)."""
    values = [w.p95_ms for w in ws if w.p95_ms is not None]
    return statistics.median(values) if values else None


def baseline_estimates(base_windows: Sequence[Window]) -> dict[str, Estimate]:
    """Per-metric estimate across baseline windows. A window without successful operations
    has no latency; it still counts for error rate and throughput."""
    out: dict[str, Estimate] = {}
    for metric in BASELINE_METRICS:
        values = [getattr(w, metric) for w in base_windows]
        present = [float(v) for v in values if v is not None]
        if len(present) >= 2:
            out[metric] = estimate(present)
    return out


@dataclass(frozen=True)
class LedgerCheck:
    """Every ledger write of the history against the rows PostgreSQL holds."""

    acknowledged: int
    lost: list[str]
    failed_but_applied: list[str]
    unknown_applied: int
    unknown_not_applied: int
    failed_not_applied: int

    @property
    def consistent(self) -> bool:
        return not self.lost and not self.failed_but_applied

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["consistent"] = self.consistent
        return out


def ledger_check(writes: Iterable[Operation], present: set[str]) -> LedgerCheck:
    """Classify each write: ok must be present (else lost), fail must be absent (else it
    was applied although the client was told it failed), info is resolved either way."""
    acknowledged = unknown_applied = unknown_not = failed_not = 0
    lost: list[str] = []
    failed_applied: list[str] = []
    for op in writes:
        if op.op_id is None:
            continue
        there = op.op_id in present
        if op.outcome == "ok":
            acknowledged += 1
            if not there:
                lost.append(op.op_id)
        elif op.outcome == "fail":
            if there:
                failed_applied.append(op.op_id)
            else:
                failed_not += 1
        elif there:
            unknown_applied += 1
        else:
            unknown_not += 1
    return LedgerCheck(acknowledged, lost, failed_applied, unknown_applied, unknown_not, failed_not)


@dataclass(frozen=True)
class CounterCheck:
    """Concurrent increments: the counter must have moved by every acknowledged increment,
    plus at most the ones whose outcome is unknown."""

    before: int
    after: int
    acknowledged: int
    unknown: int

    @property
    def delta(self) -> int:
        return self.after - self.before

    @property
    def consistent(self) -> bool:
        return self.acknowledged <= self.delta <= self.acknowledged + self.unknown

    @property
    def lost(self) -> int:
        return max(0, self.acknowledged - self.delta)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(delta=self.delta, consistent=self.consistent, lost=self.lost)
        return out


def counter_check(increments: Iterable[Operation], before: int, after: int) -> CounterCheck:
    acked = unknown = 0
    for op in increments:
        if op.outcome == "ok":
            acked += 1
        elif op.outcome == "info":
            unknown += 1
    return CounterCheck(before, after, acked, unknown)
