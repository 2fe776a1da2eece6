"""Metric math against histories small enough to compute by hand."""

from __future__ import annotations

import math

import pytest

from chaos_runner.analysis.history import History, Operation
from chaos_runner.analysis.metrics import (
    Slo,
    baseline_estimates,
    bite_ns,
    counter_check,
    estimate,
    ledger_check,
    percentile,
    recovery_ns,
    windows,
)

MS = 1_000_000


def op(start_ms: float, latency_ms: float, outcome: str = "ok", **kw) -> Operation:
    start = int(start_ms * MS)
    return Operation(
        index=kw.pop("index", 0),
        kind=kw.pop("kind", "query"),
        start_ns=start,
        end_ns=start + int(latency_ms * MS),
        outcome=outcome,  # type: ignore[arg-type]
        **kw,
    )


# ------------------------------------------------------------------ percentiles


def test_nearest_rank_percentiles_of_ten_values():
    values = [15, 20, 35, 40, 50, 60, 70, 80, 90, 100]
    # rank = ceil(p/100 * 10): p50 -> 5th (50), p95 -> 10th (100), p90 -> 9th (90), p10 -> 1st
    assert percentile(values, 50) == 50
    assert percentile(values, 90) == 90
    assert percentile(values, 95) == 100
    assert percentile(values, 10) == 15
    assert percentile(values, 100) == 100


def test_percentile_is_an_observed_value_and_order_does_not_matter():
    assert percentile([3, 1, 2], 50) == 2  # rank ceil(1.5) = 2 -> 2
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1], 0)


# ------------------------------------------------------------------ windows


def test_windows_split_by_start_and_count_completions_by_end():
    history = History(
        [
            op(0, 10),  # window 0, completes in 0
            op(100, 200),  # window 0, completes at 300 -> window 1
            op(260, 20, "fail"),  # window 1
            op(300, 40),  # window 1, completes at 340 -> 1
            op(510, 5, "info", op_id="w1"),  # window 2
        ]
    )
    ws = windows(history, origin_ns=0, until_ns=750 * MS, window_ns=250 * MS)
    assert len(ws) == 3
    w0, w1, w2 = ws
    assert (w0.started, w0.ok, w0.fail, w0.info) == (2, 2, 0, 0)
    assert w0.p50_ms == 10 and w0.p95_ms == 200 and w0.max_ms == 200
    assert w0.completed_ok == 1 and w0.throughput == 4.0  # 1 per 0.25 s
    assert (w1.started, w1.ok, w1.fail) == (2, 1, 1)
    assert w1.error_rate == 0.5
    assert w1.completed_ok == 2 and w1.throughput == 8.0
    assert w1.p95_ms == 40  # only successful operations carry a latency
    assert w2.error_rate == 1.0 and w2.p95_ms is None and w2.completed_ok == 0


def test_operations_outside_the_range_are_ignored():
    ws = windows([op(-10, 1), op(0, 1), op(999, 1)], 0, 500 * MS, 250 * MS)
    assert [w.started for w in ws] == [1, 0]


# ------------------------------------------------------------------ bite / recovery


def test_bite_is_the_first_hurt_operation_after_injection():
    slo = Slo(p95_ms=50)
    history = [
        op(0, 10),
        op(900, 300),  # in flight at injection (1000), ends slow at 1200 -> bite at 1000
        op(1100, 10),
        op(1200, 5, "fail"),
    ]
    assert bite_ns(history, inject_ns=1000 * MS, slo=slo) == 1000 * MS
    # Without the in-flight one, the failed op at 1200 ms is the first hurt one.
    assert bite_ns(history[2:], inject_ns=1000 * MS, slo=slo) == 1200 * MS
    assert bite_ns([op(1100, 10)], inject_ns=1000 * MS, slo=slo) is None


def test_recovery_is_the_first_of_three_consecutive_windows_meeting_the_slo():
    slo = Slo(p95_ms=50)
    history = []
    # windows of 250 ms from 0: 0..3 bad (failures), 4 good, 5 bad, 6,7,8 good, 9 good
    for w in range(10):
        good = w in (4, 6, 7, 8, 9)
        history.append(op(w * 250 + 10, 10, "ok" if good else "fail"))
        history.append(op(w * 250 + 100, 20 if good else 10, "ok"))
    ws = windows(history, 0, 2500 * MS, 250 * MS)
    # heal at 900 ms: windows starting >= 900 are 4 (1000 ms) onwards
    assert recovery_ns(ws, heal_ns=900 * MS, slo=slo) == 1500 * MS
    assert recovery_ns(ws, heal_ns=2000 * MS, slo=slo) is None  # only 2 windows left


def test_a_slow_window_does_not_count_as_recovered_and_an_empty_one_neither():
    slo = Slo(p95_ms=50)
    history = [op(0, 10), op(250, 80), op(750, 10), op(1000, 10), op(1250, 10)]
    ws = windows(history, 0, 1500 * MS, 250 * MS)
    # window 1 is slow, window 2 (500-750) is empty: recovery starts at window 3 (750 ms)
    assert recovery_ns(ws, heal_ns=0, slo=slo) == 750 * MS


# ------------------------------------------------------------------ confidence intervals


def test_estimate_uses_the_student_t_quantile():
    values = [10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0, 24.0, 26.0, 28.0]
    e = estimate(values)
    assert e.n == 10 and e.mean == 19.0
    sd = math.sqrt(sum((v - 19) ** 2 for v in values) / 9)  # 6.0553
    assert e.stddev == pytest.approx(sd)
    half = 2.262 * sd / math.sqrt(10)  # t(0.975, 9) = 2.262
    assert (e.ci_low, e.ci_high) == (pytest.approx(19 - half), pytest.approx(19 + half))


def test_estimate_needs_two_values_and_large_samples_use_1_96():
    with pytest.raises(ValueError):
        estimate([1.0])
    e = estimate([0.0, 2.0] * 20)  # n = 40, sd = 1.0127
    sd = math.sqrt(40 / 39)
    assert e.ci_high - e.mean == pytest.approx(1.96 * sd / math.sqrt(40))


def test_baseline_estimates_skip_windows_without_latency():
    history = [op(w * 250, 10 + w) for w in range(10)] + [op(2500 + 10, 5, "fail")]
    ws = windows(history, 0, 2750 * MS, 250 * MS)
    est = baseline_estimates(ws)
    assert est["p50_ms"].n == 10 and est["p50_ms"].mean == pytest.approx(14.5)
    assert est["error_rate"].n == 11 and est["error_rate"].mean == pytest.approx(1 / 11)


# ------------------------------------------------------------------ ledger / counter


def test_ledger_classification():
    writes = [
        op(0, 1, "ok", op_id="a"),  # acknowledged, present
        op(0, 1, "ok", op_id="b"),  # acknowledged, missing -> lost
        op(0, 1, "fail", op_id="c"),  # refused, absent
        op(0, 1, "fail", op_id="d"),  # refused but present -> wrong
        op(0, 1, "info", op_id="e"),  # unknown, resolved: applied
        op(0, 1, "info", op_id="f"),  # unknown, resolved: not applied
        op(0, 1, "ok"),  # a read: ignored
    ]
    check = ledger_check(writes, present={"a", "d", "e"})
    assert check.acknowledged == 2
    assert check.lost == ["b"]
    assert check.failed_but_applied == ["d"]
    assert (check.unknown_applied, check.unknown_not_applied, check.failed_not_applied) == (1, 1, 1)
    assert not check.consistent
    assert ledger_check(writes[:1], present={"a"}).consistent


def test_counter_must_move_by_acknowledged_plus_at_most_unknown():
    incs = [op(0, 1, "ok")] * 5 + [op(0, 1, "info")] * 2 + [op(0, 1, "fail")] * 3
    assert counter_check(incs, before=10, after=15).consistent
    assert counter_check(incs, before=10, after=17).consistent
    lost = counter_check(incs, before=10, after=13)
    assert not lost.consistent and lost.lost == 2
    assert not counter_check(incs, before=10, after=18).consistent  # more than possible
