"""From what an attempt observed (history, fault timeline, PostgreSQL's ground truth,
process samples) to metrics, checks and a verdict. Pure: everything it needs is passed in,
so a verdict can be recomputed from the journal and the raw history."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chaos_runner.analysis.checkers import (
    Evidence,
    first_report_s,
    intended_restart_windows,
    judge,
)
from chaos_runner.analysis.history import Operation
from chaos_runner.analysis.invariants import check_accounts
from chaos_runner.analysis.isolation import (
    ISOLATION_KINDS,
    IsolationEvidence,
    isolation_refusal,
)
from chaos_runner.analysis.metrics import (
    NS_PER_S,
    Pooled,
    Slo,
    bite_ns,
    counter_check,
    ledger_check,
    ok_latency_ms,
    recovery_ns,
    windows,
)
from chaos_runner.analysis.sampling import (
    DbSample,
    Sample,
    db_load,
    max_rss_mb,
    pid_samples,
    restarts,
    unknown_samples,
)
from chaos_runner.model.scenario import Scenario
from chaos_runner.target.monitoring import error_categories
from chaos_runner.workload.alerts import ALERT_KIND
from chaos_runner.workload.operations import EXPECTED_REFUSAL_KINDS, PROBE_PATHS
from chaos_runner.workload.tokens import EXPIRING, WITHDRAWN

if TYPE_CHECKING:
    from chaos_runner.analysis.ledger import GroupRows


class Marks(Protocol):
    def first(self, event: str) -> int | None: ...


@dataclass
class Observed:
    history: Sequence[Operation]
    timeline: Marks
    faults: list[dict[str, Any]]
    slo: Slo
    base: Pooled
    origin_ns: int
    window_ns: int
    ledger_present: set[str]
    counter_before: int | None
    counter_after: int | None
    samples: list[Sample]
    app_host: str
    app_program: str
    hang_limit_s: float
    # PostgreSQL's rows of the attempt's account group, read when the load moved money
    # (transfer / snapshot_read); op_prefix names the attempt's transfers.
    accounts: GroupRows | None = None
    op_prefix: str = ""
    # An alert receiver listened during the attempt (a monitoring host exists): an alert
    # that never came counts as not detected.
    alerting: bool = False
    # PostgreSQL's load through the attempt (scenario `observe: [postgresql]`), else None.
    db_samples: list[DbSample] | None = None
    # How FraiseQL's own counters (/metrics) grew over the attempt, when the scenario
    # asked (expect.counted_in_metrics); None: not asked, or no /metrics to read.
    app_counters: dict[str, float] | None = None


# Operations outside the service load: probes, invalid GraphQL (expected refusals) and the
# alerts the receiver took.
SIDE_KINDS = frozenset({*PROBE_PATHS, *EXPECTED_REFUSAL_KINDS, ALERT_KIND})
# Faults that do their harm while being injected: a service-layer restart returns once the
# program runs again and a SIGKILL or one round of terminations is over at once, and a
# client burst may be sent before its inject returns, so their window opens at the inject,
# not at `fault-holding`.
IMMEDIATE_KINDS = ("proc.restart", "proc.kill", "pg.crash", "client.burst")


def service_ops(ops: Iterable[Operation]) -> list[Operation]:
    """The load the SLO, the baseline and the error budget are about: valid tokens, and
    neither probes, invalid GraphQL nor isolation refusals."""
    return [
        o
        for o in ops
        if o.token == "valid" and o.kind not in SIDE_KINDS and not isolation_refusal(o)
    ]


def one_shot(fault: dict[str, Any]) -> bool:
    """A fault that does its harm while being injected (see IMMEDIATE_KINDS; a single round
    of pg.terminate too)."""
    kind = fault.get("kind")
    single_terminate = kind == "pg.terminate" and not (fault.get("params") or {}).get("interval_ms")
    return kind in IMMEDIATE_KINDS or single_terminate


def fault_window(
    scenario: Scenario, faults: list[dict[str, Any]], t: Marks
) -> tuple[int | None, int | None]:
    """Where the fault's harm is judged. A scenario without faults stresses FraiseQL with
    its load alone (bad GraphQL, concurrent transactions): its hold is the window."""
    if not scenario.all_faults():
        return t.first("inject-start"), t.first("hold-end") or t.first("abort")
    start = t.first("fault-holding")
    shots = [int(f["inject_ns"]) for f in faults if f.get("inject_ns") is not None and one_shot(f)]
    if shots:
        start = min(shots) if start is None else min(start, *shots)
    return start, t.first("heal-start") or t.first("hold-end") or t.first("abort")


def fault_spans(
    faults: list[dict[str, Any]], start: int | None, end: int | None
) -> list[tuple[int, int]]:
    """The disjoint spans in which some fault held, inside [start, end): each fault from
    its injection (its inject call, for one-shot kinds) to the start of its heal. A
    schedule's gaps without a fault are left out; one stage gives one span."""
    if start is None or end is None:
        return []
    raw = []
    for f in faults:
        begin = f.get("inject_ns") if one_shot(f) else f.get("injected_ns")
        if begin is None:
            continue
        stop = f.get("heal_ns") or end
        raw.append((max(int(begin), start), min(int(stop), end)))
    merged: list[tuple[int, int]] = []
    for s, e in sorted(r for r in raw if r[0] < r[1]):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def isolation_evidence(scenario: Scenario, seen: Observed) -> IsolationEvidence | None:
    rows = seen.accounts
    if rows is None:
        return None
    return IsolationEvidence(
        level=scenario.doc.load.params.isolation.replace("_", " "),
        group=rows.group,
        op_prefix=seen.op_prefix,
        ops=tuple(o for o in seen.history if o.token == "valid" and o.kind in ISOLATION_KINDS),
        accounts=rows.accounts,
        transfers=rows.transfers,
        committed=rows.transfer_ops,
        concurrency_required=not scenario.all_faults(),
    )


def isolation_summary(iso: IsolationEvidence | None) -> dict[str, Any] | None:
    """What the journal keeps of the account group (under metrics: the record has no
    other place for it)."""
    if iso is None:
        return None
    check = check_accounts(iso.accounts, iso.transfers)
    return {
        "level": iso.level,
        "group": iso.group,
        "accounts": len(iso.accounts),
        "total": check.total,
        "withdrawn": check.withdrawn,
        "initial_total": check.initial_total,
        "drift": check.drift,
        "mismatched": check.mismatched,
        "committed_transfers": len(iso.transfers),
    }


def _rate(ops: list[Operation]) -> float | None:
    return round(sum(1 for o in ops if o.outcome != "ok") / len(ops), 4) if ops else None


def evaluate(scenario: Scenario, seen: Observed) -> tuple[str, str, dict[str, Any]]:
    """(outcome, reason, what the journal keeps: checks, metrics, windows, ledger, counter,
    stages)."""
    doc = scenario.doc
    t = seen.timeline
    end = t.first("recovery-end") or max((o.end_ns for o in seen.history), default=0)
    valid = service_ops(seen.history)
    side = [o for o in seen.history if o.token == "valid" and o.kind in SIDE_KINDS]
    probes = [o for o in seen.history if o.token not in ("valid", WITHDRAWN, EXPIRING)]
    withdrawn = [o for o in seen.history if o.token == WITHDRAWN]
    expiring = [o for o in seen.history if o.token == EXPIRING]
    all_windows = windows(valid, seen.origin_ns, end, seen.window_ns)
    heal_end = t.first("heal-end")
    inject_start = t.first("inject-start")
    rec = recovery_ns(all_windows, heal_end, seen.slo) if heal_end is not None else None
    # The bite counts from the first fault's own inject (a schedule may start with a stretch
    # of hold without a fault: a slow request there is not the fault's doing).
    first_inject = min(
        (int(f["inject_ns"]) for f in seen.faults if f.get("inject_ns")), default=None
    )
    bite_from = first_inject if first_inject is not None else inject_start
    bite = bite_ns(valid, bite_from, seen.slo) if bite_from is not None else None
    writes = [o for o in seen.history if o.op_id is not None]
    ledger = ledger_check(writes, seen.ledger_present) if writes else None
    counter = None
    if seen.counter_before is not None and seen.counter_after is not None:
        counter = counter_check(
            [o for o in seen.history if o.kind == "increment"],
            seen.counter_before,
            seen.counter_after,
        )
    fault_start, fault_end = fault_window(scenario, seen.faults, t)
    iso = isolation_evidence(scenario, seen)
    evidence = Evidence(
        expect=doc.expect,
        valid_ops=valid,
        probe_ops=probes,
        withdrawn_ops=withdrawn,
        expiring_ops=expiring,
        app_counters=seen.app_counters,
        inject_ns=bite_from,
        windows=all_windows,
        baseline=seen.base,
        slo=seen.slo,
        fault_start_ns=fault_start,
        fault_end_ns=fault_end,
        heal_end_ns=heal_end,
        recovery_ns=rec,
        hang_limit_s=seen.hang_limit_s,
        ledger=ledger,
        counter=counter,
        restarts=restarts(seen.samples),
        max_rss_mb=max_rss_mb(seen.samples),
        process_samples=pid_samples(seen.samples),
        # The scenario's own restarts of FraiseQL are not crashes; 2 s of grace covers the
        # service layer's start and the sampler's 0.25 s period.
        side_ops=side,
        bite_ns=bite,
        intended_restarts=intended_restart_windows(
            seen.faults, seen.app_host, seen.app_program, grace_ns=2 * NS_PER_S, end_ns=end
        ),
        isolation=iso,
        fault_spans=fault_spans(seen.faults, fault_start, fault_end),
    )
    outcome, checks = judge(evidence)
    reason = "; ".join(
        f"{c.name}: {c.measured} (expected {c.expected})" for c in checks if not c.ok
    )
    fault_ops = evidence.fault_ops()
    requests = [o for o in seen.history if o.kind != ALERT_KIND]
    metrics = {
        "operations": len(requests),
        "ok": sum(1 for o in requests if o.outcome == "ok"),
        "fail": sum(1 for o in requests if o.outcome == "fail"),
        "info": sum(1 for o in requests if o.outcome == "info"),
        "alerts": fired_alerts(side),
        "detection_s": detection_s(valid, side, bite, seen.alerting),
        "bad_token_requests": len(probes),
        "withdrawn_key_requests": len(withdrawn),
        "expiring_token_requests": len(expiring),
        "bite_s": None
        if bite is None or bite_from is None
        else round((bite - bite_from) / NS_PER_S, 3),
        "bite_ns": bite,
        "recovery_s": None
        if rec is None or heal_end is None
        else round(max(0, rec - heal_end) / NS_PER_S, 3),
        "recovery_ns": rec,
        "first_success_s": first_success_s(valid, heal_end),
        "fault_p50_ms": ok_latency_ms(fault_ops, 50),
        "fault_p95_ms": ok_latency_ms(fault_ops, 95),
        "fault_p99_ms": ok_latency_ms(fault_ops, 99),
        "fault_error_rate": _rate(fault_ops),
        **delay_ratio(seen.faults, seen.base, fault_ops),
        "max_rss_mb": evidence.max_rss_mb,
        "restarts": evidence.restarts,
        # Probes of FaultClient's process sampler that got no answer: neither up nor down.
        "process_samples_unknown": unknown_samples(seen.samples),
        "isolation": isolation_summary(iso),
        "app_errors_counted": None
        if seen.app_counters is None
        else error_categories(seen.app_counters),
        "postgresql": None
        if seen.db_samples is None
        else db_load(
            seen.db_samples,
            {
                "baseline": (seen.origin_ns, bite_from) if bite_from is not None else None,
                "fault": (fault_start, fault_end)
                if fault_start is not None and fault_end is not None
                else None,
            },
        ),
    }
    details = {
        "checks": [c.as_dict() for c in checks],
        "metrics": metrics,
        "windows": [w.as_dict() for w in all_windows],
        "ledger": ledger.as_dict() if ledger else None,
        "counter": counter.as_dict() if counter else None,
        "stages": stage_metrics(seen.faults, valid),
    }
    return outcome, reason, details


def fired_alerts(side: list[Operation]) -> list[str]:
    """The names of the alerts that fired during the attempt."""
    return sorted(
        {
            str((o.detail or {}).get("alertname"))
            for o in side
            if o.kind == ALERT_KIND and o.outcome == "fail"
        }
    )


def detection_s(
    valid: list[Operation], side: list[Operation], bite: int | None, alerting: bool
) -> dict[str, float | None] | None:
    """Seconds from the bite to each signal's first report of the failure: a failed client
    request, a failed /health or /ready probe, a firing alert. Only the signals the attempt
    had (probes it sent, an alert receiver); None for one that never reported."""
    if bite is None:
        return None
    signals = {"client": first_report_s(valid, bite)}
    for kind in ("health", "ready", *([ALERT_KIND] if alerting else [])):
        ops = [o for o in side if o.kind == kind]
        if ops or kind == ALERT_KIND:
            signals[kind] = first_report_s(ops, bite)
    return signals


def first_success_s(ops: list[Operation], heal_end_ns: int | None) -> float | None:
    """Seconds from the end of the heal to the first request that succeeded after it (it
    may have been sent before: a request queued in the pool counts when it comes back)."""
    if heal_end_ns is None:
        return None
    ends = [o.end_ns for o in ops if o.outcome == "ok" and o.end_ns >= heal_end_ns]
    return round((min(ends) - heal_end_ns) / NS_PER_S, 3) if ends else None


def delay_ratio(faults: list[dict[str, Any]], base: Pooled, ops: list[Operation]) -> dict[str, Any]:
    """Latency against injected delay: how many delayed round trips a request paid. Only
    for one constant delay (a ramp is reported per stage)."""
    delays = [float(f["params"].get("delay_ms", 0)) for f in faults if f["kind"] == "net.delay"]
    during = ok_latency_ms(ops, 50)
    if len(delays) != 1 or not delays[0] or during is None or base.p50_ms is None:
        return {}
    added = during - base.p50_ms
    return {"added_p50_ms": round(added, 1), "delayed_round_trips": round(added / delays[0], 2)}


def stage_metrics(faults: list[dict[str, Any]], ops: list[Operation]) -> list[dict[str, Any]]:
    """Per stage of a schedule: when it held and what the operations started in it saw."""
    stages: dict[int, dict[str, Any]] = {}
    for f in faults:
        s = stages.setdefault(
            f["stage"],
            {"stage": f["stage"], "label": f.get("stage_label"), "faults": [], "start_ns": None},
        )
        s["faults"].append({"kind": f["kind"], "host": f["host"], "params": f["params"]})
        start = f.get("injected_ns")
        s["start_ns"] = start if s["start_ns"] is None else min(s["start_ns"], start)
        s["end_ns"] = max(s.get("end_ns") or 0, f.get("heal_ns") or 0) or None
    out = []
    for s in sorted(stages.values(), key=lambda s: s["start_ns"] or 0):
        inside = [
            o
            for o in ops
            if s["start_ns"] is not None
            and s["end_ns"] is not None
            and s["start_ns"] <= o.start_ns < s["end_ns"]
        ]
        s.update(
            operations=len(inside),
            p50_ms=ok_latency_ms(inside, 50),
            p95_ms=ok_latency_ms(inside, 95),
            error_rate=_rate(inside),
        )
        out.append(s)
    return out
