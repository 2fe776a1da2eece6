"""Checkers on hand-built evidence: every check passing and failing, numbers by hand.

The fault holds from 1 s to 2 s, the heal ends at 2 s. Baseline: p95 20 ms, 10 ops/s
completed and offered. Operations are built with known nanosecond timestamps, so every
expected number below is computed from them (percentiles by the nearest-rank rule of
metrics.py: rank = ceil(p/100 * n), the rank-th smallest value).
"""

from __future__ import annotations

from typing import Any

import pytest

from chaos_runner.analysis.checkers import (
    NO_FAULT_OPS,
    CheckResult,
    Evidence,
    common,
    consistent,
    fail_fast,
    intended_restart_windows,
    judge,
    reject,
    scoped,
    tolerate,
)
from chaos_runner.analysis.history import Operation
from chaos_runner.analysis.metrics import CounterCheck, LedgerCheck, Pooled, Slo
from chaos_runner.analysis.sampling import Sample, pid_samples, restarts
from chaos_runner.model.scenario import Detect, Expect

MS = 1_000_000
S = 1_000 * MS
FAULT_START, FAULT_END = 1 * S, 2 * S

BASELINE = Pooled(
    operations=30, p50_ms=10.0, p95_ms=20.0, p99_ms=25.0, throughput=10.0, offered=10.0
)


def op(start_ms: float, latency_ms: float, outcome: str = "ok", **kw: Any) -> Operation:
    start = int(start_ms * MS)
    return Operation(
        index=kw.pop("index", 0),
        kind=kw.pop("kind", "query"),
        start_ns=start,
        end_ns=start + int(latency_ms * MS),
        outcome=outcome,  # type: ignore[arg-type]
        **kw,
    )


def during(
    latencies_ms: list[float], outcomes: list[str] | None = None, **kw: Any
) -> list[Operation]:
    """One operation every 100 ms from the fault's start, with these latencies."""
    outcomes = outcomes or ["ok"] * len(latencies_ms)
    return [
        op(1000 + 100 * i, lat, out, index=i, **kw)
        for i, (lat, out) in enumerate(zip(latencies_ms, outcomes, strict=True))
    ]


BEFORE = [op(100 * i, 10, index=100 + i) for i in range(10)]  # baseline: not in the fault
EIGHT_OK = [10, 12, 14, 16, 18, 20, 22, 60]  # p95 = 8th of 8 (ceil(7.6)) = 60 ms


def ledger(**kw: Any) -> LedgerCheck:
    values: dict[str, Any] = {
        "acknowledged": 5,
        "lost": [],
        "failed_but_applied": [],
        "unknown_applied": 0,
        "unknown_not_applied": 0,
        "failed_not_applied": 0,
    }
    values.update(kw)
    return LedgerCheck(**values)


def evidence(
    class_: str,
    ops: list[Operation] | None = None,
    *,
    expect: dict[str, Any] | None = None,
    **kw: Any,
) -> Evidence:
    values: dict[str, Any] = {
        "expect": Expect(class_=class_, **(expect or {})),  # type: ignore[arg-type]
        "valid_ops": BEFORE + (during(EIGHT_OK) if ops is None else ops),
        "probe_ops": [],
        "windows": [],
        "baseline": BASELINE,
        "slo": Slo(p95_ms=50),
        "fault_start_ns": FAULT_START,
        "fault_end_ns": FAULT_END,
        "heal_end_ns": FAULT_END,
        "recovery_ns": FAULT_END + 500 * MS,
        "hang_limit_s": 5.0,
        "max_rss_mb": 100.0,
        "process_samples": 40,
    }
    values.update(kw)
    return Evidence(**values)


def by_name(checks: list[CheckResult]) -> dict[str, CheckResult]:
    names = [c.name for c in checks]
    assert len(names) == len(set(names)), names
    return {c.name: c for c in checks}


# ------------------------------------------------------------------ tolerate


def test_tolerate_passes_at_the_limits():
    checks = by_name(tolerate(evidence("tolerate")))
    rate = checks["error rate during fault"]
    assert (rate.ok, rate.measured, rate.detail) == (True, 0.0, "8 operations")
    # p95 = 60 ms, limit 3 x 20 = 60 ms: equal is within.
    p95 = checks["p95 during fault (ms)"]
    assert (p95.ok, p95.measured) == (True, 60.0)
    assert p95.expected == "<= 60.0 (3 x baseline 20.0 ms)"
    # 8 successes completed in [1 s, 2 s) -> 8 ops/s; 8 started -> offered 8/s. Need
    # 0.8 x 10 x (8/10) = 6.4.
    tp = checks["throughput during fault (ops/s)"]
    assert (tp.ok, tp.measured) == (True, 8.0)
    assert tp.expected.startswith(">= 6.4 ")


def test_tolerate_error_rate_is_failed_over_started_during_the_fault():
    ops = during(EIGHT_OK, ["ok", "fail", "ok", "ok", "info", "ok", "ok", "ok"])
    rate = by_name(tolerate(evidence("tolerate", ops)))["error rate during fault"]
    assert (rate.ok, rate.measured) == (False, 0.25)  # 2 / 8
    assert "query fail" in rate.detail and "query info" in rate.detail
    assert "query ok" not in rate.detail  # the examples are of the failures only
    allowed = evidence("tolerate", ops, expect={"max_error_rate": 0.25})
    assert by_name(tolerate(allowed))["error rate during fault"].ok


def test_tolerate_p95_over_the_factor_or_the_budget_fails():
    slow = by_name(tolerate(evidence("tolerate", during([*EIGHT_OK[:7], 61]))))
    assert (slow["p95 during fault (ms)"].ok, slow["p95 during fault (ms)"].measured) == (False, 61)
    # A budget replaces the factor: 20 + 30 = 50 ms, and 60 is over it.
    budget = by_name(tolerate(evidence("tolerate", expect={"p95_budget_ms": 30})))
    p95 = budget["p95 during fault (ms)"]
    assert (p95.ok, p95.expected) == (False, "<= 50.0 (baseline 20.0 + 30 ms)")
    # Failed operations carry no latency: a slow failure does not move the p95.
    ops = during([10, 12, 14, 16, 18, 20, 22, 60, 5000], [*["ok"] * 8, "fail"])
    assert by_name(tolerate(evidence("tolerate", ops)))["p95 during fault (ms)"].measured == 60


def test_tolerate_throughput_scales_with_the_offered_load():
    # Baseline 16 ops/s for 16 offered: the fault's 8 offered need 0.8 x 16 x 8/16 = 6.4.
    base = Pooled(30, 10.0, 20.0, 25.0, throughput=16.0, offered=16.0)
    assert by_name(tolerate(evidence("tolerate", baseline=base)))[
        "throughput during fault (ops/s)"
    ].ok
    # Baseline 20 ops/s for 10 offered: need 0.8 x 20 x 8/10 = 12.8 > 8.
    base = Pooled(30, 10.0, 20.0, 25.0, throughput=20.0, offered=10.0)
    tp = by_name(tolerate(evidence("tolerate", baseline=base)))["throughput during fault (ops/s)"]
    assert (tp.ok, tp.measured) == (False, 8.0)
    assert tp.expected.startswith(">= 12.8 ")


def test_tolerate_throughput_counts_the_successes_among_operations_asked_in_the_fault():
    # Goodput by start: four slow successes ending after the window (2.3 s and later) still
    # count for the window they were asked in (8 ops/s >= 6.4); their latency is judged by
    # the p95 check alone. Four failures among the eight: 4 ops/s < 6.4.
    slow = during([10, 12, 14, 16, 1900, 1900, 1900, 1900])
    tp = by_name(tolerate(evidence("tolerate", slow)))["throughput during fault (ops/s)"]
    assert (tp.ok, tp.measured) == (True, 8.0)
    half = during([10] * 8, ["ok", "fail"] * 4)
    tp = by_name(tolerate(evidence("tolerate", half)))["throughput during fault (ops/s)"]
    assert (tp.ok, tp.measured) == (False, 4.0)


def test_tolerate_without_operations_during_the_fault_fails_every_check():
    checks = tolerate(evidence("tolerate", []))
    assert [(c.ok, c.detail) for c in checks] == [(False, NO_FAULT_OPS)] * 3
    assert checks[0].measured is None and checks[1].measured is None


def test_tolerate_without_a_successful_operation_has_no_p95_and_fails():
    ops = during([5] * 4, ["fail"] * 4)
    p95 = by_name(tolerate(evidence("tolerate", ops)))["p95 during fault (ms)"]
    assert (p95.ok, p95.measured) == (False, None)
    assert p95.detail == "no successful operation during the fault: p95 not measured"


def test_tolerate_without_a_baseline_p95_or_load_fails_with_the_reason():
    empty = Pooled(0, None, None, None, 0.0, 0.0)
    checks = by_name(tolerate(evidence("tolerate", baseline=empty)))
    assert not checks["p95 during fault (ms)"].ok
    assert "no successful baseline operation" in checks["p95 during fault (ms)"].detail
    assert not checks["throughput during fault (ops/s)"].ok
    assert checks["throughput during fault (ops/s)"].detail == "no baseline load to compare with"


def test_tolerate_without_a_fault_window_fails():
    checks = by_name(tolerate(evidence("tolerate", fault_start_ns=None)))
    assert not any(c.ok for c in checks.values())
    assert checks["throughput during fault (ops/s)"].detail.startswith("no fault window")


# ------------------------------------------------------------------ fail-fast


REFUSED = "database unavailable: connection refused"


def test_fail_fast_passes_when_every_failure_is_quick_and_clear():
    ops = during([10, 10, 10, 10, 3, 3, 3, 3], [*["ok"] * 4, *["fail"] * 4], error=REFUSED)
    checks = by_name(fail_fast(evidence("fail-fast", ops)))
    assert checks["requests hanging past the timeout"].ok
    assert checks["requests hanging past the timeout"].measured == 0
    assert (
        checks["errors carrying a message"].ok,
        checks["errors carrying a message"].measured,
    ) == (
        True,
        1.0,
    )
    assert (checks["clients saw the fault"].ok, checks["clients saw the fault"].measured) == (
        True,
        4,
    )


def test_fail_fast_a_request_past_the_hang_limit_is_a_hang():
    ops = during([10, 5001], ["fail", "fail"], error=REFUSED)  # limit 5 s
    hang = by_name(fail_fast(evidence("fail-fast", ops)))["requests hanging past the timeout"]
    assert (hang.ok, hang.measured) == (False, 1)
    ok_at_limit = during([10, 5000], ["fail", "fail"], error=REFUSED)
    assert by_name(fail_fast(evidence("fail-fast", ok_at_limit)))[
        "requests hanging past the timeout"
    ].ok


def test_fail_fast_a_client_timeout_is_a_hang_unless_the_deadline_is_the_expectation():
    ops = during([2000, 3], ["info", "fail"], error=REFUSED)
    ops[0] = op(1000, 2000, "info", timed_out=True, error="client timeout")
    hang = by_name(fail_fast(evidence("fail-fast", ops)))["requests hanging past the timeout"]
    assert (hang.ok, hang.measured) == (False, 1)
    deadline = evidence("fail-fast", ops, expect={"client_deadline_is_fail_fast": True})
    checks = by_name(fail_fast(deadline))
    assert checks["requests hanging past the timeout"].ok
    # The timed-out request had no answer: clarity is judged over the answered one only.
    assert checks["errors carrying a message"].measured == 1.0


def test_fail_fast_error_clarity_is_the_share_of_answered_errors_with_a_message():
    errors = [REFUSED, REFUSED, "Internal Server Error", None]
    ops = [op(1000 + 100 * i, 5, "fail", error=e) for i, e in enumerate(errors)]
    clarity = by_name(fail_fast(evidence("fail-fast", ops)))["errors carrying a message"]
    assert (clarity.ok, clarity.measured) == (False, 0.5)  # 2 / 4
    assert "Internal Server Error" in clarity.detail
    lenient = evidence("fail-fast", ops, expect={"error_clarity": 0.5})
    assert by_name(fail_fast(lenient))["errors carrying a message"].ok


def test_fail_fast_only_client_deadlines_leave_no_error_to_judge_for_clarity():
    # A frozen server answers nothing (res.app-pause): no clarity check, and the
    # deadline-as-expectation scenario is judged by hangs and by the fault reaching clients.
    ops = [op(1000 + 100 * i, 2000, "info", timed_out=True) for i in range(3)]
    names = [c.name for c in fail_fast(evidence("fail-fast", ops))]
    assert "errors carrying a message" not in names


def test_fail_fast_every_request_succeeding_means_the_fault_never_reached_clients():
    seen = by_name(fail_fast(evidence("fail-fast")))["clients saw the fault"]
    assert (seen.ok, seen.measured) == (False, 0)
    assert seen.detail == "every request succeeded within the SLO: the fault did not reach clients"


def test_fail_fast_a_fault_absorbed_with_slower_answers_still_reached_clients():
    # No request failed, but one was slowed past the SLO at 1.2 s, inside the fault.
    ev = evidence("fail-fast", bite_ns=FAULT_START + 200 * MS)
    seen = by_name(fail_fast(ev))["clients saw the fault"]
    assert (seen.ok, seen.measured) == (True, 0)
    assert seen.detail == "no request failed: FraiseQL absorbed the fault (slower answers only)"
    after = by_name(fail_fast(evidence("fail-fast", bite_ns=FAULT_END + MS)))
    assert not after["clients saw the fault"].ok  # a bite after the fault is not the fault's


def test_fail_fast_without_operations_during_the_fault_fails_with_the_reason():
    checks = by_name(fail_fast(evidence("fail-fast", [])))
    hang = checks["requests hanging past the timeout"]
    assert (hang.ok, hang.detail) == (False, NO_FAULT_OPS)
    assert (checks["clients saw the fault"].ok, checks["clients saw the fault"].detail) == (
        False,
        NO_FAULT_OPS,
    )


# ------------------------------------------------------------------ reject


def probe(n: int, outcome: str = "fail", rejected: bool = True, **kw: Any) -> Operation:
    kw.setdefault("op_id", f"p{n}")
    return op(
        1000 + 50 * n,
        4,
        outcome,
        index=n,
        kind="mutation",
        token="alg-none",
        status=401 if rejected else 200,
        auth_rejected=rejected,
        **kw,
    )


def test_reject_passes_when_every_bad_token_write_was_refused_and_absent():
    ev = evidence("reject", probe_ops=[probe(i) for i in range(3)], ledger=ledger())
    checks = by_name(reject(ev))
    assert (checks["bad-token requests sent"].ok, checks["bad-token requests sent"].measured) == (
        True,
        3,
    )
    executed = checks["bad-token writes executed"]
    assert (executed.ok, executed.measured, executed.detail) == (
        True,
        0,
        "3 bad-token writes checked",
    )


def test_reject_a_refused_write_found_in_the_ledger_was_executed():
    ev = evidence(
        "reject",
        probe_ops=[probe(i) for i in range(3)],
        ledger=ledger(failed_but_applied=["p1", "v9"]),  # v9: a valid-token write
    )
    executed = by_name(reject(ev))["bad-token writes executed"]
    assert (executed.ok, executed.measured, executed.detail) == (False, 1, "p1")


def test_reject_an_accepted_bad_token_write_that_is_present_was_executed():
    probes = [probe(0), probe(1, "ok", rejected=False), probe(2, "ok", rejected=False)]
    ev = evidence("reject", probe_ops=probes, ledger=ledger(lost=["p2"]))
    executed = by_name(reject(ev))["bad-token writes executed"]
    assert (executed.ok, executed.measured, executed.detail) == (False, 1, "p1")


def test_reject_without_bad_token_requests_fails():
    checks = by_name(reject(evidence("reject", ledger=ledger())))
    sent = checks["bad-token requests sent"]
    assert (sent.ok, sent.measured, sent.detail) == (
        False,
        0,
        "no request with a bad token was sent",
    )
    assert not checks["bad-token writes executed"].ok


def test_reject_with_only_bad_token_reads_cannot_prove_nothing_executed():
    reads = [probe(i, op_id=None) for i in range(2)]
    executed = by_name(reject(evidence("reject", probe_ops=reads, ledger=ledger())))[
        "bad-token writes executed"
    ]
    assert (executed.ok, executed.measured) == (False, None)
    assert executed.detail.startswith("no bad-token write sent")


def test_reject_without_the_ledger_fails():
    executed = by_name(reject(evidence("reject", probe_ops=[probe(0)], ledger=None)))[
        "bad-token writes executed"
    ]
    assert (executed.ok, executed.detail) == (False, "the ledger was not read")


# ------------------------------------------------------------------ consistent


def test_consistent_counter_moved_by_the_acknowledged_increments():
    ev = evidence(
        "consistent", counter=CounterCheck(before=10, after=17, acknowledged=5, unknown=2)
    )
    check = by_name(consistent(ev))["counter = acknowledged increments"]
    assert (check.ok, check.measured, check.expected) == (True, 7, "5 (+ up to 2 unknown)")


def test_consistent_counter_short_of_the_acknowledged_increments_lost_some():
    ev = evidence(
        "consistent", counter=CounterCheck(before=10, after=13, acknowledged=5, unknown=0)
    )
    check = by_name(consistent(ev))["counter = acknowledged increments"]
    assert (check.ok, check.measured) == (False, 3)
    assert check.detail == "before 10, after 13, lost 2"
    too_far = evidence("consistent", counter=CounterCheck(10, 18, acknowledged=5, unknown=2))
    assert not consistent(too_far)[0].ok  # 8 > 5 + 2


def test_consistent_counter_without_an_acknowledged_increment_fails():
    ev = evidence(
        "consistent", counter=CounterCheck(before=10, after=10, acknowledged=0, unknown=0)
    )
    check = consistent(ev)[0]
    assert not check.ok and check.detail.endswith("no acknowledged increment to check")


def test_consistent_ledger():
    assert by_name(consistent(evidence("consistent", ledger=ledger())))["ledger consistent"].ok
    lost = by_name(consistent(evidence("consistent", ledger=ledger(lost=["w1"]))))
    assert (lost["ledger consistent"].ok, lost["ledger consistent"].detail) == (
        False,
        "lost 1, applied although refused 0",
    )
    refused = evidence("consistent", ledger=ledger(failed_but_applied=["w2"]))
    assert not by_name(consistent(refused))["ledger consistent"].ok
    nothing = by_name(consistent(evidence("consistent", ledger=ledger(acknowledged=0))))
    assert (nothing["ledger consistent"].ok, nothing["ledger consistent"].detail) == (
        False,
        "no acknowledged write to check",
    )


def test_consistent_without_a_ledger_or_counter_fails():
    [check] = consistent(evidence("consistent"))
    assert (check.name, check.ok) == ("consistency evidence", False)


# ------------------------------------------------------------------ common


def test_common_all_passing():
    ev = evidence("tolerate", ledger=ledger(failed_not_applied=2))
    checks = by_name(common(ev))
    assert set(checks) == {
        "recovery",
        "acknowledged writes lost",
        "writes applied although refused",
        "FraiseQL restarts",
        "FraiseQL memory (max RSS MB)",
    }
    assert all(c.ok for c in checks.values())
    assert checks["recovery"].measured == 0.5  # 2.5 s - 2.0 s
    assert checks["FraiseQL restarts"].measured == 0


@pytest.mark.parametrize(
    ("recovery_ns", "ok", "measured"),
    [
        (FAULT_END + 5 * S, True, 5.0),  # at the limit
        (FAULT_END + 6 * S, False, 6.0),
        (FAULT_END - S, True, 0.0),  # healthy before the heal ended: 0
        (None, False, None),
    ],
)
def test_common_recovery(recovery_ns, ok, measured):
    rec = by_name(common(evidence("fail-fast", recovery_ns=recovery_ns)))["recovery"]
    assert (rec.ok, rec.measured) == (ok, measured)
    if recovery_ns is None:
        assert rec.detail == "never recovered within the recovery window"


def test_common_no_heal_no_recovery_check():
    assert "recovery" not in by_name(common(evidence("consistent", heal_end_ns=None)))


def test_common_lost_writes():
    checks = by_name(common(evidence("tolerate", ledger=ledger(lost=["w1", "w2"]))))
    lost = checks["acknowledged writes lost"]
    assert (lost.ok, lost.measured, lost.detail) == (False, 2, "w1, w2")
    allowed = evidence("tolerate", ledger=ledger(lost=["w1"]), expect={"lost_writes": 1})
    assert by_name(common(allowed))["acknowledged writes lost"].ok
    nothing = by_name(common(evidence("tolerate", ledger=ledger(acknowledged=0))))
    lost = nothing["acknowledged writes lost"]
    assert (lost.ok, lost.detail) == (False, "no acknowledged write: losses not measured")


def test_common_writes_applied_although_refused():
    none_refused = by_name(common(evidence("tolerate", ledger=ledger())))
    check = none_refused["writes applied although refused"]
    assert (check.ok, check.measured, check.detail) == (True, 0, "no write was refused")
    wrong = by_name(common(evidence("tolerate", ledger=ledger(failed_but_applied=["w3"]))))
    check = wrong["writes applied although refused"]
    assert (check.ok, check.measured, check.detail) == (False, 1, "w3")


def test_common_without_writes_has_no_ledger_checks():
    names = by_name(common(evidence("tolerate")))
    assert "acknowledged writes lost" not in names
    assert "writes applied although refused" not in names


def test_common_memory():
    assert by_name(common(evidence("tolerate", max_rss_mb=500.0)))[
        "FraiseQL memory (max RSS MB)"
    ].ok
    over = by_name(common(evidence("tolerate", max_rss_mb=500.1)))["FraiseQL memory (max RSS MB)"]
    assert (over.ok, over.measured, over.expected) == (False, 500.1, "<= 500")
    raised = evidence("tolerate", max_rss_mb=600.0, expect={"memory_mb": 1024})
    assert by_name(common(raised))["FraiseQL memory (max RSS MB)"].ok
    unmeasured = by_name(common(evidence("tolerate", max_rss_mb=None)))
    check = unmeasured["FraiseQL memory (max RSS MB)"]
    assert (check.ok, check.measured) == (False, None)
    assert check.detail.endswith("memory not measured")


def test_common_bad_tokens_refused():
    probes = [probe(0), probe(1), probe(2, "ok", rejected=False)]
    check = by_name(common(evidence("reject", probe_ops=probes)))["bad tokens refused"]
    assert (check.ok, check.measured) == (False, "2/3")
    assert "alg-none: ok 200" in check.detail
    assert by_name(common(evidence("reject", probe_ops=probes[:2])))["bad tokens refused"].ok
    assert "bad tokens refused" not in by_name(common(evidence("tolerate")))


# ------------------------------------------------------------------ restarts


@pytest.mark.parametrize("samples", [None, 0])
def test_restarts_not_sampled_fail_and_never_pass(samples):
    check = by_name(common(evidence("tolerate", process_samples=samples)))["FraiseQL restarts"]
    assert (check.ok, check.measured) == (False, None)
    assert check.detail == "no process samples: restarts not measured"


def test_a_pid_change_is_a_crash():
    seen = [{"ns": 1500 * MS, "old_pid": 10, "new_pid": 11}]
    check = by_name(common(evidence("tolerate", restarts=seen)))["FraiseQL restarts"]
    assert (check.ok, check.measured, check.detail) == (False, 1, "pid 10 -> 11")
    allowed = evidence("tolerate", restarts=seen, expect={"crashes": 1})
    assert by_name(common(allowed))["FraiseQL restarts"].ok


def test_restarts_inside_the_scenarios_own_restart_windows_are_not_crashes():
    seen = [
        {"ns": 1100 * MS, "old_pid": 10, "new_pid": 11},
        {"ns": 2100 * MS, "old_pid": 11, "new_pid": 12},  # the window's end is inclusive
        {"ns": 3000 * MS, "old_pid": 12, "new_pid": 13},  # later: a crash
    ]
    ev = evidence("tolerate", restarts=seen, intended_restarts=[(1000 * MS, 2100 * MS)])
    check = by_name(common(ev))["FraiseQL restarts"]
    assert (check.ok, check.measured) == (False, 1)
    assert check.detail == (
        "pid 12 -> 13; 2 intended restarts (the scenario's own restart, kill or stop of FraiseQL)"
    )
    ev = evidence("tolerate", restarts=seen[:2], intended_restarts=[(1000 * MS, 2100 * MS)])
    check = by_name(common(ev))["FraiseQL restarts"]
    assert (check.ok, check.measured) == (True, 0)
    assert check.detail.startswith("2 intended restarts")


FAULTS: list[dict[str, Any]] = [
    {
        "kind": "proc.restart",
        "host": "app1",
        "params": {"program": "fraiseql"},
        "inject_ns": 100,
        "healed_ns": 200,
    },
    {"kind": "proc.kill", "host": "app1", "params": {"program": "fraiseql"}, "inject_ns": 300},
    {
        "kind": "proc.stop",
        "host": "app1",
        "params": {"program": "fraiseql"},
        "inject_ns": 400,
        "healed_ns": None,
    },
    {
        "kind": "res.memory",
        "host": "app1",
        "params": {"program": "fraiseql", "limit_mb": 40, "restart": True},
        "inject_ns": 500,
        "healed_ns": 600,
    },
    # Not restarts of this FraiseQL:
    {
        "kind": "res.memory",
        "host": "app1",
        "params": {"program": "fraiseql", "limit_mb": 400},
        "inject_ns": 510,
        "healed_ns": 610,
    },
    {
        "kind": "res.memory",
        "host": "app1",
        "params": {"program": "fraiseql", "limit_mb": 40, "restart": False},
        "inject_ns": 520,
        "healed_ns": 620,
    },
    {"kind": "proc.pause", "host": "app1", "params": {"program": "fraiseql"}, "inject_ns": 530},
    {"kind": "proc.kill", "host": "db1", "params": {"program": "postgresql"}, "inject_ns": 540},
    {"kind": "proc.kill", "host": "app2", "params": {"program": "fraiseql"}, "inject_ns": 550},
    {"kind": "proc.kill", "host": "app1", "params": {"program": "nginx"}, "inject_ns": 560},
    {"kind": "net.delay", "host": "app1", "params": {"delay_ms": 100}, "inject_ns": 570},
    {
        "kind": "client.bad-token",
        "host": "controller",
        "params": {"tokens": ["none"]},
        "inject_ns": 580,
    },
]


def test_intended_restart_windows_from_the_fault_entries():
    windows = intended_restart_windows(FAULTS, "app1", "fraiseql", grace_ns=10, end_ns=1000)
    # healed -> heal + grace; not healed (missing or None) -> end of the attempt + grace
    assert windows == [(100, 210), (300, 1010), (400, 1010), (500, 610)]
    assert intended_restart_windows(FAULTS, "app1", "fraiseql", 0, 1000)[0] == (100, 200)
    assert intended_restart_windows(FAULTS, "app2", "fraiseql", 0, 900) == [(550, 900)]
    assert intended_restart_windows([], "app1", "fraiseql", 10, 1000) == []


def test_a_proc_restart_scenario_is_not_judged_by_its_own_restart():
    """End to end from process samples: the restart the scenario asked for is not a crash."""
    samples = [
        Sample(900 * MS, 10, 50_000),
        Sample(1000 * MS, None, None),  # restarting: no pid for a moment
        Sample(1250 * MS, 11, 40_000),  # the intended restart
        Sample(2500 * MS, 11, 41_000),
        Sample(2750 * MS, 12, 30_000),  # an unexplained new process after the grace
    ]
    faults = [
        {
            "kind": "proc.restart",
            "host": "app1",
            "params": {"program": "fraiseql"},
            "inject_ns": 1000 * MS,
            "healed_ns": 2000 * MS,
        },
    ]
    windows = intended_restart_windows(faults, "app1", "fraiseql", grace_ns=500 * MS, end_ns=3 * S)
    assert windows == [(1000 * MS, 2500 * MS)]
    assert pid_samples(samples) == 4
    ev = evidence(
        "tolerate",
        restarts=restarts(samples),
        intended_restarts=windows,
        process_samples=pid_samples(samples),
    )
    check = by_name(common(ev))["FraiseQL restarts"]
    assert (check.ok, check.measured) == (False, 1)
    assert check.detail.startswith("pid 11 -> 12; 1 intended restart ")
    assert pid_samples([Sample(0, None, None)]) == 0


# ------------------------------------------------------------------ judge


def passing(class_: str) -> Evidence:
    if class_ == "tolerate":
        return evidence("tolerate")
    if class_ == "fail-fast":
        return evidence("fail-fast", during([3] * 8, ["fail"] * 8, error=REFUSED))
    if class_ == "reject":
        return evidence("reject", probe_ops=[probe(i) for i in range(3)], ledger=ledger())
    return evidence("consistent", ledger=ledger(), counter=CounterCheck(0, 5, 5, 0))


@pytest.mark.parametrize("class_", ["tolerate", "fail-fast", "reject", "consistent"])
def test_judge_passes_when_every_check_passes(class_):
    outcome, checks = judge(passing(class_))
    assert outcome == "passed", [c for c in checks if not c.ok]
    # The class's own checks come first, then the common ones.
    assert [c.name for c in checks[-2:]] in (
        ["FraiseQL restarts", "FraiseQL memory (max RSS MB)"],
        ["FraiseQL memory (max RSS MB)", "bad tokens refused"],
    )


@pytest.mark.parametrize(
    ("class_", "change", "failing"),
    [
        ("tolerate", {"valid_ops": BEFORE + during([*EIGHT_OK[:7], 61])}, "p95 during fault (ms)"),
        ("fail-fast", {"valid_ops": BEFORE}, "requests hanging past the timeout"),
        ("reject", {"ledger": ledger(failed_but_applied=["p0"])}, "bad-token writes executed"),
        ("consistent", {"counter": CounterCheck(0, 4, 5, 0)}, "counter = acknowledged increments"),
        ("consistent", {"process_samples": None}, "FraiseQL restarts"),
        ("tolerate", {"recovery_ns": None}, "recovery"),
    ],
)
def test_judge_deviates_on_one_failing_check(class_, change, failing):
    base = passing(class_)
    outcome, checks = judge(Evidence(**{**base.__dict__, **change}))
    assert outcome == "deviated"
    assert failing in [c.name for c in checks if not c.ok]


def test_check_results_keep_the_journal_shape():
    _, checks = judge(passing("tolerate"))
    for c in checks:
        assert list(c.as_dict()) == ["name", "ok", "measured", "expected", "detail"]


# ------------------------------------------------------------------ scoped checks


def test_invalid_graphql_must_be_refused_every_time():
    refused = [op(1000, 5, "fail", kind="invalid", error="Syntax Error", index=1)]
    executed = [op(1100, 5, "ok", kind="invalid", index=2)]
    (check,) = scoped(evidence("tolerate", side_ops=refused))
    assert (check.name, check.ok, check.measured) == ("invalid GraphQL refused", True, "1/1")
    (check,) = scoped(evidence("tolerate", side_ops=refused + executed))
    assert (check.ok, check.measured) == (False, "1/2")
    assert "invalid ok" in check.detail


def test_unaffected_kinds_keep_their_latency_and_never_fail():
    health_before = [op(100 * i, 2, kind="health", index=200 + i) for i in range(10)]
    fine = during([2, 3, 2, 4], kind="health")
    slow = during([2, 3, 2, 40], kind="health")  # p95 40 > max(3 x 2, 2 + 25) = 27
    broken = during([2, 3, 2, 4], ["ok", "ok", "fail", "ok"], kind="health")
    expect = {"unaffected": ["health"]}
    (ok,) = scoped(evidence("fail-fast", side_ops=health_before + fine, expect=expect))
    assert ok.ok and ok.expected == "none failed, p95 <= 27.0 ms (before: 2.0 ms)"
    (late,) = scoped(evidence("fail-fast", side_ops=health_before + slow, expect=expect))
    assert not late.ok and late.measured == "0/4 failed, p95 40.0 ms"
    (bad,) = scoped(evidence("fail-fast", side_ops=health_before + broken, expect=expect))
    assert not bad.ok and bad.measured.startswith("1/4 failed")
    (none,) = scoped(evidence("fail-fast", side_ops=health_before, expect=expect))
    assert not none.ok and none.detail == "no such operation during the fault"


def test_a_probe_must_report_the_failure_within_its_time():
    bite = FAULT_START + 200 * MS
    ready = during([5, 5, 5, 5, 5, 5], ["ok", "ok", "ok", "fail", "fail", "fail"], kind="ready")
    ev = evidence("fail-fast", side_ops=ready, bite_ns=bite)
    ev = Evidence(
        **{**ev.__dict__, "expect": Expect(class_="fail-fast", detect=Detect("ready", 0.2))}
    )
    (check,) = scoped(ev)
    # The first failed ready ends at 1300 + 5 ms: 0.105 s after the bite at 1200 ms.
    assert (check.ok, check.measured) == (True, 0.105)
    late = Evidence(
        **{**ev.__dict__, "expect": Expect(class_="fail-fast", detect=Detect("ready", 0.1))}
    )
    assert not scoped(late)[0].ok
    silent = Evidence(**{**ev.__dict__, "side_ops": during([5, 5], kind="ready")})
    (never,) = scoped(silent)
    assert not never.ok and never.detail == "ready never reported the failure"
    no_bite = Evidence(**{**ev.__dict__, "bite_ns": None})
    assert scoped(no_bite)[0].detail == "no bite: the fault never hurt a request"


def test_a_schedule_with_gaps_is_judged_on_its_stages_only():
    # Faulty stages 1.0-1.3 s and 1.7-2.0 s; the gap between them holds the 4 fast ops.
    ops = during([500, 500, 500, 10, 10, 10, 10, 500, 500, 500])
    whole = tolerate(evidence("tolerate", ops))
    spans = [(FAULT_START, FAULT_START + 300 * MS), (FAULT_START + 700 * MS, FAULT_END)]
    staged = tolerate(evidence("tolerate", ops, fault_spans=spans))
    assert by_name(whole)["p95 during fault (ms)"].measured == 500.0
    # The 6 ops inside the stages, none of the gap's: throughput 6 per 0.6 s = 10 ops/s.
    tp = by_name(staged)["throughput during fault (ops/s)"]
    assert tp.measured == 10.0
    assert len(evidence("tolerate", ops, fault_spans=spans).fault_ops()) == 6


def test_fault_spans_leave_out_the_gaps_and_merge_overlaps():
    from chaos_runner.analysis.evaluate import fault_spans

    entries = [
        {"kind": "net.delay", "inject_ns": 90, "injected_ns": 100, "heal_ns": 200},
        {"kind": "net.delay", "inject_ns": 290, "injected_ns": 300, "heal_ns": 400},
        {"kind": "net.loss", "inject_ns": 340, "injected_ns": 350, "heal_ns": 450},
        {"kind": "proc.restart", "inject_ns": 600, "injected_ns": 700, "heal_ns": 710},
    ]
    assert fault_spans(entries, 100, 1000) == [(100, 200), (300, 450), (600, 710)]
    assert fault_spans(entries, None, 1000) == []


# ------------------------------------------------------------------ same answers


def answered(start_ms: float, digest: str | None, outcome: str = "ok") -> Operation:
    return op(start_ms, 10, outcome, detail=None if digest is None else {"answer": digest})


def same_answers(ops: list[Operation]) -> CheckResult:
    ev = evidence("consistent", [], expect={"same_answers": ["query"]}, valid_ops=ops)
    return by_name(scoped(ev))["query answers as in the baseline"]


def test_answers_that_differ_from_the_baselines_are_counted_with_their_digests():
    base = [answered(100 * i, "aaaa") for i in range(5)]
    after = [answered(1000, "aaaa"), answered(1100, "bbbb"), answered(2500, "cccc")]
    check = same_answers(base + after + [answered(1200, None, "fail")])
    assert (check.ok, check.measured) == (False, "2/3 differ")  # a failure is not an answer
    assert check.expected == "none differs from the 1 answer(s) the baseline saw"
    assert check.detail == "answer digests bbbb, cccc; baseline: aaaa"  # after the heal too


def test_answers_as_in_the_baseline_pass_and_nothing_to_compare_fails():
    base = [answered(100 * i, "aaaa") for i in range(5)]
    assert same_answers([*base, answered(1500, "aaaa")]).ok
    empty = same_answers([answered(1500, "aaaa")])
    assert (
        not empty.ok
        and empty.detail == "no successful query answer in the baseline to compare with"
    )
    none_after = same_answers(base)
    assert not none_after.ok and none_after.detail == "no successful query answer from the fault on"


def test_the_median_is_judged_only_when_asked_and_against_the_baseline_median():
    # Baseline p50 10 ms; during the fault: 10, 12, 14, 16, 18, 20, 22, 60 -> p50 = 16 ms.
    assert "p50 during fault (ms)" not in by_name(tolerate(evidence("tolerate")))
    tight = by_name(tolerate(evidence("tolerate", expect={"p50_factor": 1.05})))
    p50 = tight["p50 during fault (ms)"]
    assert (p50.ok, p50.measured, p50.expected) == (
        False,
        16.0,
        "<= 10.50 (1.05 x baseline 10.00 ms)",
    )
    loose = by_name(tolerate(evidence("tolerate", expect={"p50_factor": 1.6})))
    assert loose["p50 during fault (ms)"].ok
