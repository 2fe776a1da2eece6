"""Checkers: evidence (history, windows, timeline, ground truth) -> checks -> verdict.

One checker per expectation class of SCENARIOS.md, plus the checks every scenario shares
(recovery, lost writes, crashes, memory, bad tokens refused). A checker never looks at
anything but the evidence, so a verdict can be recomputed from the journal. A check with
nothing to measure (no operation during the fault, no process sample, no acknowledged
write) fails and says why: absence of evidence is never a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chaos_runner.analysis.checks import CheckResult, examples
from chaos_runner.analysis.history import Operation
from chaos_runner.analysis.isolation import (
    IsolationEvidence,
    isolation,
)
from chaos_runner.analysis.metrics import (
    NS_PER_S,
    CounterCheck,
    LedgerCheck,
    Pooled,
    Slo,
    Window,
    ok_latency_ms,
    p95_limit,
    pooled_spans,
    within,
)
from chaos_runner.model.scenario import Expect
from chaos_runner.target.monitoring import error_categories
from chaos_runner.workload.alerts import ALERT_KIND
from chaos_runner.workload.operations import EXPECTED_REFUSAL_KINDS
from chaos_runner.workload.tokens import EXPIRING_TTL_S

# CheckResult lives in chaos_runner.analysis.checks; callers may take it from here too.
__all__ = [
    "CHECKERS",
    "CheckResult",
    "Evidence",
    "common",
    "consistent",
    "fail_fast",
    "intended_restart_windows",
    "judge",
    "reject",
    "scoped",
    "tolerate",
]

UNCLEAR = ("without a message", "internal server error")

# Faults that restart FraiseQL on purpose: SIGKILL (the service layer starts a new process),
# a service-layer restart, and a stop whose heal starts it again. res.memory with
# `restart: true` also does (it restarts the program into its cgroup, and a cap below the
# working set OOM-kills it again until heal): see intended_restart_windows.
RESTARTING_KINDS = ("proc.kill", "proc.restart", "proc.stop")
NO_FAULT_OPS = "no operation during the fault"


@dataclass
class Evidence:
    expect: Expect
    valid_ops: list[Operation]
    probe_ops: list[Operation]
    windows: list[Window]
    baseline: Pooled
    slo: Slo
    fault_start_ns: int | None
    fault_end_ns: int | None
    heal_end_ns: int | None
    recovery_ns: int | None
    hang_limit_s: float
    ledger: LedgerCheck | None = None
    counter: CounterCheck | None = None
    restarts: list[dict[str, Any]] = field(default_factory=list)
    max_rss_mb: float | None = None
    # Process samples that found FraiseQL's pid (None: the process was not sampled).
    process_samples: int | None = None
    # [start, end] (monotonic ns) in which the scenario itself restarts or kills FraiseQL:
    # a pid change inside one is the fault doing its work, not a crash.
    intended_restarts: list[tuple[int, int]] = field(default_factory=list)
    # Valid-token operations outside the service load: health/ready probes and invalid
    # GraphQL (an expected refusal). Judged by the scoped checks, never by the SLO.
    side_ops: list[Operation] = field(default_factory=list)
    bite_ns: int | None = None
    isolation: IsolationEvidence | None = None
    # Disjoint [start, end) spans in which a fault held (empty: the one fault window).
    fault_spans: list[tuple[int, int]] = field(default_factory=list)
    # Operations signed with a key the JWKS withdrew (jwks.rotate), judged by their own
    # check, never by the SLO or as bad tokens.
    withdrawn_ops: list[Operation] = field(default_factory=list)
    # Operations whose token was minted as they were sent, expiring 1-2 s later (tokens).
    expiring_ops: list[Operation] = field(default_factory=list)
    # FraiseQL's counters' growth over the attempt (expect.counted_in_metrics), or None.
    app_counters: dict[str, float] | None = None
    # When the first fault's inject began (its harm may come before `fault_start_ns`).
    inject_ns: int | None = None

    def spans(self) -> list[tuple[int, int]]:
        """Where the fault held: the stages' own spans when known (a schedule may leave
        gaps without a fault), else the one window from fault start to fault end."""
        if self.fault_spans:
            return self.fault_spans
        if self.fault_start_ns is None or self.fault_end_ns is None:
            return []
        return [(self.fault_start_ns, self.fault_end_ns)]

    def fault_ops(self) -> list[Operation]:
        return within(self.valid_ops, self.spans())

    def fault_probes(self) -> list[Operation]:
        return self.probe_ops


class Checker(Protocol):
    def __call__(self, ev: Evidence) -> list[CheckResult]: ...


def intended_restart_windows(
    faults: list[dict[str, Any]],
    app_host: str,
    app_program: str,
    grace_ns: int,
    end_ns: int,
) -> list[tuple[int, int]]:
    """The windows in which the scenario's own faults restart FraiseQL: from the inject of
    each restarting fault on the app's program until its heal (`end_ns`, the end of the
    attempt, when it has no `healed_ns`) plus `grace_ns` for the service layer to bring the
    new process up and the sampler to see it."""
    out: list[tuple[int, int]] = []
    for f in faults:
        params = f.get("params") or {}
        if f.get("host") != app_host or params.get("program") != app_program:
            continue
        kind = f.get("kind")
        if kind not in RESTARTING_KINDS and not (
            kind == "res.memory" and params.get("restart") is True
        ):
            continue
        healed = f.get("healed_ns")
        out.append((int(f["inject_ns"]), (end_ns if healed is None else int(healed)) + grace_ns))
    return out


def common(ev: Evidence) -> list[CheckResult]:
    e = ev.expect
    out: list[CheckResult] = []
    if ev.heal_end_ns is not None:
        rec = (
            None
            if ev.recovery_ns is None
            else max(0.0, (ev.recovery_ns - ev.heal_end_ns) / NS_PER_S)
        )
        out.append(
            CheckResult(
                "recovery",
                rec is not None and rec <= e.recovery_s,
                None if rec is None else round(rec, 3),
                f"<= {e.recovery_s:g} s after heal (first of 3 windows meeting the SLO)",
                "never recovered within the recovery window" if rec is None else "",
            )
        )
    if ev.ledger is not None:
        led = ev.ledger
        lost = len(led.lost)
        out.append(
            CheckResult(
                "acknowledged writes lost",
                bool(led.acknowledged) and lost <= e.lost_writes,
                lost,
                f"<= {e.lost_writes}",
                ", ".join(led.lost[:5])
                if led.acknowledged
                else "no acknowledged write: losses not measured",
            )
        )
        wrong = len(led.failed_but_applied)
        refused = wrong + led.failed_not_applied
        out.append(
            CheckResult(
                "writes applied although refused",
                wrong == 0,
                wrong,
                "0",
                ", ".join(led.failed_but_applied[:5]) if refused else "no write was refused",
            )
        )
    out.append(_restarts(ev))
    out.append(
        CheckResult(
            "FraiseQL memory (max RSS MB)",
            ev.max_rss_mb is not None and ev.max_rss_mb <= e.memory_mb,
            ev.max_rss_mb,
            f"<= {e.memory_mb:g}",
            "" if ev.max_rss_mb is not None else "no resident-memory sample: memory not measured",
        )
    )
    if ev.probe_ops:
        accepted = [o for o in ev.probe_ops if not o.auth_rejected]
        out.append(
            CheckResult(
                "bad tokens refused",
                not accepted,
                f"{len(ev.probe_ops) - len(accepted)}/{len(ev.probe_ops)}",
                "every one (401/403 or an auth error)",
                "; ".join(
                    sorted({f"{o.token}: {o.outcome} {o.status} {o.error}" for o in accepted})
                )[:300],
            )
        )
    return out


def _restarts(ev: Evidence) -> CheckResult:
    """Pid changes outside the scenario's own restart windows are crashes."""
    expected = f"<= {ev.expect.crashes}"
    if not ev.process_samples:
        return CheckResult(
            "FraiseQL restarts", False, None, expected, "no process samples: restarts not measured"
        )
    crashes = [r for r in ev.restarts if not _inside(r["ns"], ev.intended_restarts)]
    intended = len(ev.restarts) - len(crashes)
    detail = [f"pid {r['old_pid']} -> {r['new_pid']}" for r in crashes[:3]]
    if intended:
        detail.append(
            f"{intended} intended restart{'s' if intended != 1 else ''}"
            " (the scenario's own restart, kill or stop of FraiseQL)"
        )
    return CheckResult(
        "FraiseQL restarts",
        len(crashes) <= ev.expect.crashes,
        len(crashes),
        expected,
        "; ".join(detail),
    )


def _inside(ns: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= ns <= end for start, end in spans)


def tolerate(ev: Evidence) -> list[CheckResult]:
    e = ev.expect
    ops = ev.fault_ops()
    out: list[CheckResult] = []
    failed = [o for o in ops if o.outcome != "ok"]
    rate = len(failed) / len(ops) if ops else None
    out.append(
        CheckResult(
            "error rate during fault",
            rate is not None and rate <= e.max_error_rate,
            None if rate is None else round(rate, 4),
            f"<= {e.max_error_rate:g}",
            NO_FAULT_OPS if not ops else examples(failed) if failed else f"{len(ops)} operations",
        )
    )
    out.append(_p95_during_fault(ev, ops))
    if e.p50_factor is not None:
        out.append(_p50_during_fault(ev, ops, e.p50_factor))
    out.append(_throughput_during_fault(ev))
    return out


def _p50_during_fault(ev: Evidence, ops: list[Operation], factor: float) -> CheckResult:
    base = ev.baseline.p50_ms
    p50 = ok_latency_ms(ops, 50)
    expected = (
        "<= ?" if base is None else f"<= {base * factor:.2f} ({factor:g} x baseline {base:.2f} ms)"
    )
    ok = base is not None and p50 is not None and p50 <= base * factor
    return CheckResult(
        "p50 during fault (ms)", ok, p50, expected, _unmeasured("p50", base, ops, p50)
    )


def _p95_during_fault(ev: Evidence, ops: list[Operation]) -> CheckResult:
    e = ev.expect
    base_p95 = ev.baseline.p95_ms
    p95 = ok_latency_ms(ops, 95)
    name = "p95 during fault (ms)"
    if base_p95 is None:
        how = (
            f"baseline + {e.p95_budget_ms:g} ms"
            if e.p95_budget_ms is not None
            else f"{e.p95_factor:g} x baseline"
        )
        return CheckResult(name, False, p95, f"<= {how}", _unmeasured("p95", None, ops, p95))
    if e.p95_budget_ms is not None:
        limit = base_p95 + e.p95_budget_ms
        how = f"baseline {base_p95:.1f} + {e.p95_budget_ms:g} ms"
    else:
        limit = base_p95 * e.p95_factor
        how = f"{e.p95_factor:g} x baseline {base_p95:.1f} ms"
    return CheckResult(
        name,
        p95 is not None and p95 <= limit,
        p95,
        f"<= {limit:.1f} ({how})",
        _unmeasured("p95", base_p95, ops, p95),
    )


def _unmeasured(label: str, base: float | None, ops: list[Operation], value: float | None) -> str:
    """Why a percentile during the fault could not be compared with the baseline's ("" when
    it could)."""
    if base is None:
        return f"no successful baseline operation: no {label} to compare"
    if value is not None:
        return ""
    if not ops:
        return NO_FAULT_OPS
    return f"no successful operation during the fault: {label} not measured"


def _throughput_during_fault(ev: Evidence) -> CheckResult:
    e = ev.expect
    base = ev.baseline
    name = "throughput during fault (ops/s)"
    floor = f">= {e.throughput_min:g} x baseline"
    if ev.fault_start_ns is None or ev.fault_end_ns is None:
        return CheckResult(name, False, None, floor, "no fault window: throughput not measured")
    if not base.offered:
        return CheckResult(name, False, None, floor, "no baseline load to compare with")
    during = pooled_spans(ev.valid_ops, ev.spans())
    # Compare like with like: what completed per request offered (probes with bad
    # tokens are not part of the valid load, and an open loop offers a fixed rate).
    scale = during.offered / base.offered
    need = e.throughput_min * base.throughput * scale
    return CheckResult(
        name,
        bool(during.offered) and during.throughput >= need,
        during.throughput,
        f">= {need:.1f} ({e.throughput_min:g} x baseline {base.throughput:.1f}"
        f" x offered {during.offered:.1f}/{base.offered:.1f})",
        "" if during.offered else NO_FAULT_OPS,
    )


def fail_fast(ev: Evidence) -> list[CheckResult]:
    e = ev.expect
    ops = ev.fault_ops()
    failed = [o for o in ops if o.outcome != "ok"]
    hangs = [
        o
        for o in ops
        if o.latency_ns > ev.hang_limit_s * NS_PER_S
        or (o.timed_out and not e.client_deadline_is_fail_fast)
    ]
    out = [
        CheckResult(
            "requests hanging past the timeout",
            bool(ops) and not hangs,
            len(hangs),
            f"0 (limit {ev.hang_limit_s:g} s)",
            examples(hangs) if ops else NO_FAULT_OPS,
        ),
    ]
    answered = [o for o in failed if not o.timed_out]
    if answered:
        clear = [o for o in answered if o.error and not any(u in o.error.lower() for u in UNCLEAR)]
        share = len(clear) / len(answered)
        out.append(
            CheckResult(
                "errors carrying a message",
                share >= e.error_clarity,
                round(share, 3),
                f">= {e.error_clarity:g}",
                examples([o for o in answered if o not in clear]),
            )
        )
    # The fault must reach clients: failed requests, or (a fault FraiseQL absorbs, such as
    # a restart its pool rides out) requests hurt beyond the SLO while it held.
    bit = (
        ev.bite_ns is not None
        and ev.fault_start_ns is not None
        and ev.fault_end_ns is not None
        and ev.bite_ns < ev.fault_end_ns
    )
    out.append(
        CheckResult(
            "clients saw the fault",
            bool(failed) or bit,
            len(failed),
            ">= 1 failed request, or requests slowed past the SLO, while the fault held",
            ""
            if failed
            else "no request failed: FraiseQL absorbed the fault (slower answers only)"
            if bit
            else "every request succeeded within the SLO: the fault did not reach clients"
            if ops
            else NO_FAULT_OPS,
        )
    )
    return out


def reject(ev: Evidence) -> list[CheckResult]:
    probes = ev.probe_ops
    out = [
        CheckResult(
            "bad-token requests sent",
            bool(probes),
            len(probes),
            ">= 1",
            "" if probes else "no request with a bad token was sent",
        )
    ]
    writes = [o for o in probes if o.op_id]
    name = "bad-token writes executed"
    if not writes:
        out.append(
            CheckResult(
                name, False, None, "0", "no bad-token write sent: the ledger cannot prove anything"
            )
        )
    elif ev.ledger is None:
        out.append(CheckResult(name, False, None, "0", "the ledger was not read"))
    else:
        # A refused write present in the ledger, and an accepted one not lost, both ran.
        applied_refused = set(ev.ledger.failed_but_applied)
        lost = set(ev.ledger.lost)
        executed = sorted(
            o.op_id
            for o in writes
            if o.op_id
            and (
                (o.outcome == "fail" and o.op_id in applied_refused)
                or (o.outcome == "ok" and o.op_id not in lost)
            )
        )
        out.append(
            CheckResult(
                name,
                not executed,
                len(executed),
                "0",
                ", ".join(executed[:5]) or f"{len(writes)} bad-token writes checked",
            )
        )
    return out


def consistent(ev: Evidence) -> list[CheckResult]:
    out = []
    if ev.counter is not None:
        c = ev.counter
        out.append(
            CheckResult(
                "counter = acknowledged increments",
                bool(c.acknowledged) and c.consistent,
                c.delta,
                f"{c.acknowledged} (+ up to {c.unknown} unknown)",
                f"before {c.before}, after {c.after}, lost {c.lost}"
                + ("" if c.acknowledged else ": no acknowledged increment to check"),
            )
        )
    if ev.ledger is not None:
        led = ev.ledger
        out.append(
            CheckResult(
                "ledger consistent",
                bool(led.acknowledged) and led.consistent,
                led.acknowledged,
                "every acknowledged write present, no refused write present",
                f"lost {len(led.lost)}, applied although refused {len(led.failed_but_applied)}"
                if led.acknowledged
                else "no acknowledged write to check",
            )
        )
    out.extend(isolation(ev))
    if not out:
        out.append(
            CheckResult(
                "consistency evidence",
                False,
                None,
                "a ledger, a counter or an account group",
                "the scenario's load has no writes to check",
            )
        )
    return out


CHECKERS: dict[str, Callable[[Evidence], list[CheckResult]]] = {
    "tolerate": tolerate,
    "fail-fast": fail_fast,
    "reject": reject,
    "consistent": consistent,
}


def scoped(ev: Evidence) -> list[CheckResult]:
    """Checks on classes of operations: invalid GraphQL refused, the kinds that do not need
    the faulty dependency unaffected, and a probe that reports the failure in time."""
    out: list[CheckResult] = []
    refusals = [o for o in ev.side_ops if o.kind in EXPECTED_REFUSAL_KINDS]
    if refusals:
        executed = [o for o in refusals if o.outcome == "ok"]
        out.append(
            CheckResult(
                "invalid GraphQL refused",
                not executed,
                f"{len(refusals) - len(executed)}/{len(refusals)}",
                "every one refused with an error",
                examples(executed),
            )
        )
    ops = [*ev.valid_ops, *ev.side_ops]
    in_spans = within(ops, ev.spans())
    for kind in ev.expect.unaffected:
        during = [o for o in in_spans if o.kind == kind]
        before = [
            o
            for o in ops
            if o.kind == kind and ev.fault_start_ns and o.start_ns < ev.fault_start_ns
        ]
        base = ok_latency_ms(before, 95)
        p95 = ok_latency_ms(during, 95)
        errors = [o for o in during if o.outcome != "ok"]
        limit = None if base is None else p95_limit(base, ev.expect.p95_factor)
        ok = bool(during) and not errors and p95 is not None and limit is not None and p95 <= limit
        out.append(
            CheckResult(
                f"{kind} unaffected by the fault",
                ok,
                f"{len(errors)}/{len(during)} failed, p95 {p95} ms",
                "none failed, p95 <= "
                + ("?" if limit is None else f"{limit:.1f} ms (before: {base} ms)"),
                "no such operation during the fault" if not during else examples(errors),
            )
        )
    for kind in ev.expect.same_answers:
        out.append(_same_answers(ev, kind))
    if ev.withdrawn_ops:
        out.append(_withdrawn_key(ev))
    if ev.expiring_ops:
        out.append(_expiring_tokens(ev))
    if ev.expect.counted_in_metrics:
        out.append(_counted_in_metrics(ev))
    if ev.expect.reads_see_writes:
        out.append(_reads_see_writes(ev))
    detect = ev.expect.detect
    if detect is not None:
        probes = [o for o in ev.side_ops if o.kind == detect.probe]
        took = None if ev.bite_ns is None else first_report_s(probes, ev.bite_ns)
        why = (
            "no bite: the fault never hurt a request"
            if ev.bite_ns is None
            else "no alert arrived"
            if detect.probe == ALERT_KIND and not probes
            else f"no {detect.probe} probe was sent"
            if not probes
            else f"{detect.probe} never reported the failure"
            if took is None
            else ""
        )
        out.append(
            CheckResult(
                "an alert reports the failure"
                if detect.probe == ALERT_KIND
                else f"/{detect.probe} reports the failure",
                took is not None and took <= detect.within_s,
                took,
                f"<= {detect.within_s:g} s after the bite",
                why,
            )
        )
        if detect.probe == ALERT_KIND:
            out.append(_quiet_while_healthy(ev, probes))
    return out


def first_report_s(ops: Iterable[Operation], bite: int) -> float | None:
    """Seconds from the bite to the end of the first failed operation that ended after it."""
    ends = [o.end_ns for o in ops if o.outcome != "ok" and o.end_ns >= bite]
    return round((min(ends) - bite) / NS_PER_S, 3) if ends else None


def _quiet_while_healthy(ev: Evidence, alerts: list[Operation]) -> CheckResult:
    """No alert fired while the system was healthy: from the load's start to the first
    inject (the baseline the attempt measured)."""
    start = ev.inject_ns if ev.inject_ns is not None else ev.fault_start_ns
    early = [o for o in alerts if o.outcome != "ok" and start is not None and o.end_ns < start]
    return CheckResult(
        "no alert during the healthy baseline",
        start is not None and not early,
        f"{len(early)} fired",
        "none fired before the first inject",
        examples(early) if early else "" if start is not None else "no inject",
    )


def _same_answers(ev: Evidence, kind: str) -> CheckResult:
    """Every successful `kind` answer from the first inject to the end of the history
    (corruption may outlive the heal) is one the baseline saw."""
    ops = [o for o in ev.valid_ops if o.kind == kind and o.outcome == "ok"]
    # The reference is what ended before the first inject began: a corruption is written
    # during the inject, before the fault is said to hold.
    start = ev.inject_ns if ev.inject_ns is not None else ev.fault_start_ns

    def digest(o: Operation) -> str | None:
        return (o.detail or {}).get("answer")

    seen = {str(digest(o)) for o in ops if start is not None and o.end_ns < start and digest(o)}
    after = [o for o in ops if start is not None and o.start_ns >= start]
    wrong = [o for o in after if digest(o) not in seen]
    why = (
        f"no successful {kind} answer in the baseline to compare with"
        if not seen
        else f"no successful {kind} answer from the fault on"
        if not after
        else ""
    )
    shown = sorted({str(digest(o)) for o in wrong})[:3]
    return CheckResult(
        f"{kind} answers as in the baseline",
        bool(seen) and bool(after) and not wrong,
        f"{len(wrong)}/{len(after)} differ",
        f"none differs from the {len(seen)} answer(s) the baseline saw",
        why
        or (
            f"answer digests {', '.join(shown)}; baseline: {', '.join(sorted(seen))}"
            if wrong
            else ""
        ),
    )


def _withdrawn_key(ev: Evidence) -> CheckResult:
    """Tokens under a key the JWKS no longer publishes are refused once `withdrawn_key_s`
    have passed since the withdrawal (the fault's start); measured: how long after it the
    last one was accepted."""
    start = ev.fault_start_ns
    limit_s = ev.expect.withdrawn_key_s
    ops = ev.withdrawn_ops
    accepted = [o for o in ops if o.outcome == "ok"]
    stayed = (
        None
        if start is None or not accepted
        else round((max(o.end_ns for o in accepted) - start) / NS_PER_S, 3)
    )
    cutoff = None if start is None else start + int(limit_s * NS_PER_S)
    judged = [o for o in ops if cutoff is not None and o.start_ns >= cutoff]
    late = [o for o in judged if o.outcome == "ok"]
    refused = [o for o in judged if o.auth_rejected]
    if not judged:
        why = f"no withdrawn-key request later than {limit_s:g} s after the withdrawal"
    elif late:
        why = (
            f"{len(late)}/{len(judged)} accepted later than {limit_s:g} s after the withdrawal;"
            f" the last {stayed} s after it"
        )
    else:
        why = f"{len(refused)}/{len(judged)} refused as an auth error" + (
            f"; {len(judged) - len(refused)} failed otherwise: {examples(judged)}"
            if len(refused) < len(judged)
            else ""
        )
    return CheckResult(
        "withdrawn key refused",
        bool(judged) and not late and len(refused) == len(judged),
        "never accepted" if stayed is None else f"accepted until {stayed} s after the withdrawal",
        f"refused from {limit_s:g} s after the withdrawal on",
        why,
    )


def _version(o: Operation) -> int | None:
    value = (o.detail or {}).get("version")
    return int(value) if isinstance(value, int) else None


def _reads_see_writes(ev: Evidence) -> CheckResult:
    """A read of the note started after a rename was acknowledged shows that rename (its
    version or a later one); measured: how many reads were stale, and for how long the
    longest one lagged - from the acknowledgement of the first write it missed."""
    writes = sorted(
        (o.end_ns, v)
        for o in ev.valid_ops
        if o.kind == "note_write" and o.outcome == "ok" and (v := _version(o)) is not None
    )
    reads = [o for o in ev.valid_ops if o.kind == "note_read" and o.outcome == "ok"]
    judged = 0
    stale: list[tuple[Operation, float]] = []
    shown: list[str] = []
    for r in reads:
        seen = _version(r)
        acked = [(end, v) for end, v in writes if end < r.start_ns]
        if not acked or seen is None:
            continue
        judged += 1
        newest = max(v for _, v in acked)
        if seen < newest:
            missed = min(end for end, v in acked if v > seen)
            stale.append((r, (r.start_ns - missed) / NS_PER_S))
            if len(shown) < 3:
                shown.append(f"read version {seen} after version {newest} was acknowledged")
    longest = max((lag for _, lag in stale), default=0.0)
    return CheckResult(
        "reads see acknowledged writes",
        judged > 0 and not stale,
        f"{len(stale)}/{judged} stale",
        "0 stale: every read shows the writes acknowledged before it",
        "no note read after an acknowledged note write"
        if not judged
        else f"the longest lagged {longest:.1f} s behind an acknowledged write; " + "; ".join(shown)
        if stale
        else f"{len(writes)} writes acknowledged",
    )


def _counted_in_metrics(ev: Evidence) -> CheckResult:
    """FraiseQL counts the failures of the named kinds in its own metrics: its error
    series grew by at least the failed answers of those kinds (other failures may add to
    them, never subtract)."""
    kinds = ev.expect.counted_in_metrics
    answered = [
        o
        for o in [*ev.valid_ops, *ev.side_ops]
        if o.kind in kinds and o.outcome != "ok" and o.status is not None
    ]
    categories = None if ev.app_counters is None else error_categories(ev.app_counters)
    counted = None if categories is None else round(sum(categories.values()))
    shown = sorted((categories or {}).items(), key=lambda kv: -kv[1])[:4]
    return CheckResult(
        "failures counted in FraiseQL's metrics",
        counted is not None and bool(answered) and counted >= len(answered),
        counted,
        f">= {len(answered)} (failed answers to {', '.join(kinds)})",
        "FraiseQL's /metrics could not be read before and after the load"
        if counted is None
        else f"no failed answer to {', '.join(kinds)}"
        if not answered
        else "; ".join(f"{k}: {v:g}" for k, v in shown) or "no error series grew",
    )


def _expiring_tokens(ev: Evidence) -> CheckResult:
    """A request whose token expires while it is in flight is executed whole or refused as
    an auth error - never failed another way (a half-done request, a server error) that
    requests with valid tokens did not get too: a failure valid tokens also got (the same
    kind, the same error) is the fault's doing, not the token's. Its writes are judged by
    the ledger (executed: present; not executed: absent). The scenario must have made
    tokens expire in flight: a request answered later than the token's lifetime
    (executed though expired by then), or one refused because it expired first."""
    ops = ev.expiring_ops
    ttl_ns = EXPIRING_TTL_S * NS_PER_S
    executed = [o for o in ops if o.outcome == "ok"]
    outlived = [o for o in executed if o.latency_ns > ttl_ns]
    refused = [o for o in ops if o.auth_rejected]
    failed = [o for o in ops if o.outcome != "ok" and not o.auth_rejected]
    shared = {(o.kind, o.error) for o in ev.valid_ops if o.outcome != "ok"}
    as_valid = [o for o in failed if (o.kind, o.error) in shared]
    other = [o for o in failed if (o.kind, o.error) not in shared]
    exercised = bool(outlived or refused)
    why = (
        f"{len(other)} failed otherwise: {examples(other)}"
        if other
        else ""
        if exercised
        else f"no token expired in flight: no request took longer than {EXPIRING_TTL_S} s"
        " and none was refused (slow the request path more)"
    )
    if as_valid and not other:
        why = f"failed as valid tokens did: {examples(as_valid)}"
    return CheckResult(
        "expiring tokens: executed whole or refused",
        exercised and not other,
        f"{len(executed)} executed ({len(outlived)} answered after the token expired),"
        f" {len(refused)} refused, {len(as_valid)} failed as valid tokens did,"
        f" {len(other)} other",
        "each executed or refused as an auth error; some expired in flight",
        why,
    )


def judge(ev: Evidence) -> tuple[str, list[CheckResult]]:
    """(`passed` | `deviated`, every check) for the scenario's expectation class."""
    # `consistent` judges the accounts itself; any other class reports them too (a fault
    # must not change what a transaction reads or commits).
    extra = isolation(ev) if ev.expect.class_ != "consistent" else []
    checks = CHECKERS[ev.expect.class_](ev) + extra + scoped(ev) + common(ev)
    return ("passed" if all(c.ok for c in checks) else "deviated"), checks
