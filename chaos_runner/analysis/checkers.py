"""Checkers: evidence (history, windows, timeline, ground truth) -> checks -> verdict.

One checker per expectation class of SCENARIOS.md, plus the checks every scenario shares
(recovery, lost writes, crashes, memory, bad tokens refused). A checker never looks at
anything but the evidence, so a verdict can be recomputed from the journal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from chaos_runner.analysis.history import Operation
from chaos_runner.analysis.metrics import (
    NS_PER_S,
    CounterCheck,
    LedgerCheck,
    Pooled,
    Slo,
    Window,
    ok_latency_ms,
    pooled,
)
from chaos_runner.model.scenario import Expect

UNCLEAR = ("without a message", "internal server error")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    measured: Any
    expected: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    def fault_ops(self) -> list[Operation]:
        if self.fault_start_ns is None or self.fault_end_ns is None:
            return []
        return [o for o in self.valid_ops if self.fault_start_ns <= o.start_ns < self.fault_end_ns]

    def fault_probes(self) -> list[Operation]:
        return self.probe_ops


class Checker(Protocol):
    def __call__(self, ev: Evidence) -> list[CheckResult]: ...


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
        lost = len(ev.ledger.lost)
        out.append(
            CheckResult(
                "acknowledged writes lost",
                lost <= e.lost_writes,
                lost,
                f"<= {e.lost_writes}",
                ", ".join(ev.ledger.lost[:5]),
            )
        )
        wrong = len(ev.ledger.failed_but_applied)
        out.append(
            CheckResult(
                "writes applied although refused",
                wrong == 0,
                wrong,
                "0",
                ", ".join(ev.ledger.failed_but_applied[:5]),
            )
        )
    crashes = len(ev.restarts)
    out.append(CheckResult("FraiseQL restarts", crashes <= e.crashes, crashes, f"<= {e.crashes}"))
    if ev.max_rss_mb is not None:
        out.append(
            CheckResult(
                "FraiseQL memory (max RSS MB)",
                ev.max_rss_mb <= e.memory_mb,
                ev.max_rss_mb,
                f"<= {e.memory_mb:g}",
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


def tolerate(ev: Evidence) -> list[CheckResult]:
    e = ev.expect
    ops = ev.fault_ops()
    out: list[CheckResult] = []
    errors = sum(1 for o in ops if o.outcome != "ok")
    rate = errors / len(ops) if ops else 0.0
    out.append(
        CheckResult(
            "error rate during fault",
            bool(ops) and rate <= e.max_error_rate,
            round(rate, 4),
            f"<= {e.max_error_rate:g}",
            _examples(ops) if errors else f"{len(ops)} operations",
        )
    )
    base_p95 = ev.baseline.p95_ms
    p95 = ok_latency_ms(ops, 95)
    if base_p95 is not None:
        if e.p95_budget_ms is not None:
            limit = base_p95 + e.p95_budget_ms
            how = f"baseline {base_p95:.1f} + {e.p95_budget_ms:g} ms"
        else:
            limit = base_p95 * e.p95_factor
            how = f"{e.p95_factor:g} x baseline {base_p95:.1f} ms"
        out.append(
            CheckResult(
                "p95 during fault (ms)",
                p95 is not None and p95 <= limit,
                p95,
                f"<= {limit:.1f} ({how})",
            )
        )
    if ev.fault_start_ns is not None and ev.fault_end_ns is not None and ev.baseline.offered:
        during = pooled(ev.valid_ops, ev.fault_start_ns, ev.fault_end_ns)
        # Compare like with like: what completed per request offered (probes with bad
        # tokens are not part of the valid load, and an open loop offers a fixed rate).
        scale = during.offered / ev.baseline.offered
        need = e.throughput_min * ev.baseline.throughput * scale
        out.append(
            CheckResult(
                "throughput during fault (ops/s)",
                during.throughput >= need,
                during.throughput,
                f">= {need:.1f} ({e.throughput_min:g} x baseline {ev.baseline.throughput:.1f}"
                f" x offered {during.offered:.1f}/{ev.baseline.offered:.1f})",
            )
        )
    return out


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
            not hangs,
            len(hangs),
            f"0 (limit {ev.hang_limit_s:g} s)",
            _examples(hangs),
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
                _examples([o for o in answered if o not in clear]),
            )
        )
    out.append(
        CheckResult(
            "clients saw the fault",
            bool(failed),
            len(failed),
            ">= 1 failed request while the fault held",
            "" if failed else "every request succeeded: the fault did not reach clients",
        )
    )
    return out


def reject(ev: Evidence) -> list[CheckResult]:
    out = []
    probes = ev.probe_ops
    out.append(CheckResult("bad-token requests sent", bool(probes), len(probes), ">= 1"))
    if ev.ledger is not None:
        probe_ids = {o.op_id for o in probes if o.op_id}
        applied = sorted(probe_ids & set(ev.ledger.failed_but_applied))
        out.append(
            CheckResult(
                "bad-token writes executed", not applied, len(applied), "0", ", ".join(applied[:5])
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
                c.consistent,
                c.delta,
                f"{c.acknowledged} (+ up to {c.unknown} unknown)",
                f"before {c.before}, after {c.after}, lost {c.lost}",
            )
        )
    if ev.ledger is not None:
        out.append(
            CheckResult(
                "ledger consistent",
                ev.ledger.consistent,
                ev.ledger.acknowledged,
                "every acknowledged write present, no refused write present",
            )
        )
    if not out:
        out.append(
            CheckResult(
                "consistency evidence",
                False,
                None,
                "a ledger or a counter",
                "the scenario's load has no writes to check",
            )
        )
    return out


def _examples(ops: list[Operation], n: int = 3) -> str:
    seen: dict[str, int] = {}
    for o in ops:
        key = f"{o.kind} {o.outcome} {o.status or '-'} {o.error or ''}"[:160]
        seen[key] = seen.get(key, 0) + 1
    return "; ".join(f"{k} (x{v})" for k, v in list(seen.items())[:n])


CHECKERS: dict[str, Callable[[Evidence], list[CheckResult]]] = {
    "tolerate": tolerate,
    "fail-fast": fail_fast,
    "reject": reject,
    "consistent": consistent,
}


def judge(ev: Evidence) -> tuple[str, list[CheckResult]]:
    """(`passed` | `deviated`, every check) for the scenario's expectation class."""
    checks = CHECKERS[ev.expect.class_](ev) + common(ev)
    return ("passed" if all(c.ok for c in checks) else "deviated"), checks
