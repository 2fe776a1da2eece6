"""One scenario, phase by phase: gate -> baseline -> inject -> verify -> hold -> heal
(always, from `finally`) -> recover -> checks; retries and flakiness across attempts.

Every phase boundary is an event on the monotonic clock of the history. The outcome is one
of SCENARIOS.md's: passed, deviated (a finding about FraiseQL), baseline-not-met,
fault-not-effective, aborted, error (a lab failure), skipped.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_runner.analysis.baseline import (
    BaselineStore,
    Environment,
    compare,
    load_signature,
    stored_summary,
)
from chaos_runner.analysis.checkers import Evidence, judge
from chaos_runner.analysis.history import History, Operation
from chaos_runner.analysis.ledger import LedgerStore
from chaos_runner.analysis.metrics import (
    NS_PER_S,
    Pooled,
    Slo,
    baseline_estimates,
    bite_ns,
    counter_check,
    ledger_check,
    ok_latency_ms,
    pooled,
    recovery_ns,
    windows,
)
from chaos_runner.analysis.sampling import ProcessSampler, max_rss_mb, restarts
from chaos_runner.errors import ChaosRunnerError
from chaos_runner.faults.channel import FaultClient, FaultSpec
from chaos_runner.model.config import RunnerConfig
from chaos_runner.model.scenario import Abort, FaultStep, Scenario, resolve_params
from chaos_runner.target.lab import LabState, lab_checks
from chaos_runner.workload.load import GraphQLLoad, LoadSettings
from chaos_runner.workload.tokens import TokenMinter, bad_authorization

log = logging.getLogger(__name__)

VERDICTS = ("passed", "deviated")
NO_VERDICT = ("baseline-not-met", "fault-not-effective", "aborted", "error")
Progress = Callable[[str, str], None]


class Aborted(Exception):
    """A stop condition hit while the fault held."""


# ------------------------------------------------------------------ tokens


class TokenSwitch:
    """The load's token policy: valid tokens, or (while a client fault holds) bad ones for a
    share of the chosen operation kinds, cycling through the bad kinds."""

    def __init__(self, minter: TokenMinter, ttl_s: int) -> None:
        self.minter = minter
        self.valid = f"Bearer {minter.mint(subject='chaos-runner', ttl_s=ttl_s)}"
        self.bad: list[tuple[str, str | None]] = []
        self.every = 1
        self.ops: set[str] = set()
        self.sent = 0

    def activate(self, tokens: list[str], share: float, ops: list[str]) -> None:
        self.bad = [(t, bad_authorization(t, self.minter)) for t in tokens]
        self.every = max(1, round(1 / share))
        self.ops = set(ops)

    def deactivate(self) -> None:
        self.bad = []

    def __call__(self, kind: str, index: int) -> tuple[str, str | None]:
        bad = self.bad
        if bad and kind in self.ops and index % self.every == 0:
            self.sent += 1
            return bad[(index // self.every) % len(bad)]
        return "valid", self.valid


# ------------------------------------------------------------------ faults


class AgentFault:
    """A lab fault through the host's agent (fast path) or playbooks/fault.yml (Ansible)."""

    def __init__(self, step: FaultStep, client: FaultClient, ttl_s: float, ansible: Any = None):
        self.step = step
        self.client = client
        self.ttl_s = ttl_s
        self.ansible = ansible
        self.id = f"{step.kind.replace('.', '-').replace('_', '-')}-{uuid.uuid4().hex[:8]}"

    def inject(self) -> dict[str, Any]:
        addresses = {h: v["address"] for h, v in self.client.state.hosts.items()}
        params = resolve_params(self.step.params, addresses)
        spec = FaultSpec(self.step.host, self.step.kind, params, self.ttl_s, self.id)
        if self.ansible is not None:
            return dict(self.ansible("inject", spec))
        return self.client.inject(spec)

    def verify(self) -> dict[str, Any]:
        return self.client.verify(self.step.host, self.id)

    def heal(self) -> dict[str, Any]:
        if self.ansible is not None:
            return dict(self.ansible("heal", FaultSpec(self.step.host, self.step.kind, id=self.id)))
        return self.client.heal(self.step.host, self.id)


class ClientTokenFault:
    """auth.*: the client sends tokens that must be refused (real requests, real FraiseQL)."""

    def __init__(self, step: FaultStep, switch: TokenSwitch) -> None:
        self.step = step
        self.switch = switch
        self.id = f"client-bad-token-{uuid.uuid4().hex[:8]}"
        self._before = 0

    def inject(self) -> dict[str, Any]:
        p = self.step.params
        self._before = self.switch.sent
        self.switch.activate(
            list(p["tokens"]),
            float(p.get("share", 1.0)),
            list(p.get("ops", ["query", "nested", "mutation", "increment"])),
        )
        return {
            "id": self.id,
            "mechanism": "client: bad Authorization headers",
            "host": "controller",
        }

    def verify(self) -> dict[str, Any]:
        deadline = time.monotonic() + 3
        while self.switch.sent == self._before and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = self.switch.sent - self._before
        return {"id": self.id, "ok": sent > 0, "evidence": f"{sent} requests with bad tokens sent"}

    def heal(self) -> dict[str, Any]:
        self.switch.deactivate()
        return {"id": self.id, "healed": True}


# ------------------------------------------------------------------ context


@dataclass
class RunContext:
    state: LabState
    config: RunnerConfig
    faults: FaultClient
    run_dir: Path
    environment: Environment
    baselines: BaselineStore
    seed: int
    progress: Progress = lambda scenario, message: None
    ansible: Any = None

    def minter(self, app: str) -> TokenMinter:
        endpoint = self.state.app(app)
        return TokenMinter(
            self.state.settings.state_dir / "pki", endpoint.issuer, endpoint.audience
        )


@dataclass
class Timeline:
    events: list[dict[str, Any]] = field(default_factory=list)

    def mark(self, event: str, **detail: Any) -> int:
        ns = time.monotonic_ns()
        self.events.append({"ns": ns, "event": event, **detail})
        return ns

    def first(self, event: str) -> int | None:
        return next((e["ns"] for e in self.events if e["event"] == event), None)


def _gate(ctx: RunContext, scenario: Scenario) -> str | None:
    """Why the lab is not in steady state, or None."""
    bad = [c for c in lab_checks(ctx.state) if not c.ok]
    if bad:
        return "; ".join(f"{c.host} {c.item}: {c.detail}" for c in bad[:4])
    hosts = {s.host for s in scenario.doc.faults if not s.kind.startswith("client.")}
    for host in sorted(hosts):
        left = ctx.faults.list(host)
        if left:
            return f"{host} still has faults injected: {[r.get('id') for r in left]}"
    return None


def run_attempt(scenario: Scenario, ctx: RunContext, attempt: int) -> dict[str, Any]:
    """One attempt of one scenario; never raises for lab trouble (outcome `error`)."""
    doc = scenario.doc
    timeline = Timeline()
    result: dict[str, Any] = {
        "scenario": scenario.id,
        "attempt": attempt,
        "outcome": "error",
        "reason": "",
        "anchor": {"monotonic_ns": time.monotonic_ns(), "wall_ns": time.time_ns()},
        "faults": [],
        "timeline": timeline.events,
    }
    if doc.skip:
        result.update(outcome="skipped", reason=doc.skip)
        return result

    def say(message: str) -> None:
        ctx.progress(scenario.id, message)

    load: GraphQLLoad | None = None
    sampler: ProcessSampler | None = None
    injected: list[AgentFault | ClientTokenFault] = []
    try:
        say("gate")
        problem = _gate(ctx, scenario)
        if problem:
            result.update(outcome="baseline-not-met", reason=f"steady-state gate: {problem}")
            return result
        app = ctx.state.app(doc.app)
        w = doc.windows
        switch = TokenSwitch(ctx.minter(doc.app), ttl_s=int(scenario.bound_s + 120))
        run_tag = f"{scenario.id}-{attempt}-{uuid.uuid4().hex[:6]}"
        load = GraphQLLoad(
            LoadSettings(
                url=app.url,
                mode=doc.load.mode,
                rate=doc.load.rate,
                concurrency=doc.load.concurrency,
                max_in_flight=doc.load.max_in_flight,
                timeout_s=doc.load.timeout_s,
                mix=tuple(doc.load.mix.items()),
                max_ops=doc.load.max_ops,
                max_duration_s=scenario.bound_s + 30,
                seed=ctx.seed + attempt,
                op_prefix=run_tag,
                counter=doc.counter,
            ),
            ctx.state.guard,
            switch,
        )
        ledger = LedgerStore.for_lab(ctx.state, ctx.config.db_host)
        counter_before = ledger.counter(doc.counter) if doc.counter else None
        sampler = ProcessSampler(Path(app.pidfile))
        sampler.start()
        timeline.mark("load-start")
        load.start()
        _sleep(w.settle_s)
        base_start = timeline.mark("baseline-start")
        say("baseline")
        _sleep(w.baseline_s)
        base_end = timeline.mark("baseline-end")
        window_ns = w.window_ms * 1_000_000
        valid_now = _valid(load.history())
        base_windows = windows(valid_now, base_start, base_end, window_ns)[
            : int(w.baseline_s * 1000 // w.window_ms)
        ]
        estimates = baseline_estimates(base_windows)
        base = pooled(valid_now, base_start, base_end)
        result["baseline"] = {k: v.as_dict() for k, v in estimates.items()}
        result["baseline_pooled"] = base.as_dict()
        result["baseline_windows"] = len(base_windows)
        signature = load_signature(_load_profile(scenario))
        stored = ctx.baselines.stored(ctx.environment, signature)
        result["stored_baseline"] = stored_summary(stored) if len(stored) >= 2 else None
        unhealthy = _baseline_problem(base_windows, stored, ctx.config.baseline_factor)
        if unhealthy or base.p95_ms is None:
            result.update(outcome="baseline-not-met", reason=unhealthy or "no successful operation")
            return result
        ctx.baselines.add(ctx.environment, signature, base_windows)
        base_p95 = base.p95_ms
        slo = Slo(
            p95_ms=doc.expect.slo_p95_ms or max(doc.expect.p95_factor * base_p95, base_p95 + 25)
        )
        result["slo"] = {"p95_ms": round(slo.p95_ms, 2), "error_rate": slo.error_rate}

        # ---- inject, verify, hold; heal from finally
        faults = _build_faults(scenario, ctx, switch)
        try:
            timeline.mark("inject-start")
            say("inject")
            for fault in faults:
                started = time.monotonic_ns()
                answer = fault.inject()
                injected.append(fault)
                timeline.mark(
                    "injected", fault=fault.id, kind=fault.step.kind, host=fault.step.host
                )
                entry = {
                    "id": fault.id,
                    "kind": fault.step.kind,
                    "host": fault.step.host,
                    "params": fault.step.params,
                    "mechanism": answer.get("mechanism"),
                    "inject_ns": started,
                    "injected_ns": time.monotonic_ns(),
                }
                if "applied_ns" in answer:
                    entry["applied_ns"] = answer["applied_ns"]
                timeline.events.extend(answer.get("ansible_events", []))
                result["faults"].append(entry)
                if answer.get("skipped"):
                    result.update(
                        outcome="skipped", reason=f"{fault.step.kind}: {answer.get('mechanism')}"
                    )
                    return result
            fault_start = timeline.mark("fault-holding")
            for fault, entry in zip(injected, result["faults"], strict=True):
                check = fault.verify()
                entry["verified"] = bool(check.get("ok"))
                entry["evidence"] = check.get("evidence")
                timeline.mark("verified", fault=fault.id, ok=entry["verified"])
                if not check.get("ok"):
                    result.update(
                        outcome="fault-not-effective",
                        reason=f"{fault.step.kind} on {fault.step.host}: {check.get('evidence')}",
                    )
                    return result
            say(f"hold {w.hold_s:g}s")
            _hold(ctx, scenario, load, fault_start + int(w.hold_s * NS_PER_S), timeline)
            timeline.mark("hold-end")
        except Aborted as exc:
            result.update(outcome="aborted", reason=str(exc))
        finally:
            if injected:
                timeline.mark("heal-start")
                say("heal")
                for fault in reversed(injected):
                    try:
                        healed = fault.heal()
                        timeline.events.extend(healed.get("ansible_events", []))
                    except ChaosRunnerError as exc:
                        result["reason"] += f" heal of {fault.id} failed: {exc}"
                        log.error("heal of %s failed: %s", fault.id, exc)
                timeline.mark("heal-end")
        if result["outcome"] in ("fault-not-effective", "skipped"):
            return result
        heal_end = timeline.first("heal-end")
        say("recover")
        _sleep(w.recovery_s)
        timeline.mark("recovery-end")
        load.stop()
        history = load.history()
        sampled = sampler.stop()
        sampler = None
        return _conclude(
            result,
            scenario,
            ctx,
            history,
            timeline,
            slo,
            base,
            ledger,
            counter_before,
            sampled,
            base_start,
            window_ns,
            heal_end,
        )
    except ChaosRunnerError as exc:
        result.update(outcome="error", reason=str(exc))
        return result
    finally:
        timeline.events.sort(key=lambda e: e["ns"])
        if load is not None and not load.done:
            try:
                load.stop()
            except ChaosRunnerError as exc:
                log.error("load driver: %s", exc)
        if load is not None and "history_file" not in result:
            _write_history(result, ctx, scenario, attempt, load.history())
        if sampler is not None:
            sampler.stop()


def _load_profile(scenario: Scenario) -> dict[str, Any]:
    d = scenario.doc.load
    return {"mode": d.mode, "rate": d.rate, "concurrency": d.concurrency, "mix": d.mix}


def _valid(history: History) -> list[Operation]:
    return [o for o in history if o.token == "valid"]


def _sleep(seconds: float) -> None:
    time.sleep(max(0.0, seconds))


def _baseline_problem(base_windows: list[Any], stored: list[Any], factor: float) -> str | None:
    if len(base_windows) < 10:
        return f"only {len(base_windows)} baseline windows (need >= 10)"
    failed = sum(w.fail + w.info for w in base_windows)
    if failed:
        return f"{failed} operations failed during the baseline"
    return compare(base_windows, stored, factor)


def _build_faults(scenario: Scenario, ctx: RunContext, switch: TokenSwitch) -> list[Any]:
    out: list[Any] = []
    hold = scenario.doc.windows.hold_s
    for step in scenario.doc.faults:
        if step.kind.startswith("client."):
            out.append(ClientTokenFault(step, switch))
        else:
            ttl = step.ttl_s or hold + scenario.doc.windows.recovery_s + 30
            out.append(AgentFault(step, ctx.faults, ttl, ctx.ansible))
    return out


def _hold(
    ctx: RunContext, scenario: Scenario, load: GraphQLLoad, until_ns: int, timeline: Timeline
) -> None:
    """Wait out the hold, checking the abort conditions every window."""
    abort = scenario.doc.abort
    step = scenario.doc.windows.window_ms / 1000
    next_health = time.monotonic_ns()
    while time.monotonic_ns() < until_ns:
        time.sleep(min(step, max(0.0, (until_ns - time.monotonic_ns()) / NS_PER_S)))
        now = time.monotonic_ns()
        if load.done:
            raise Aborted("the load driver stopped early (bound reached or failed)")
        blown = error_budget_blown(_valid(load.history()), now, abort)
        if blown:
            timeline.mark("abort", reason="error budget")
            raise Aborted(blown)
        if abort.lab_health and now >= next_health:
            next_health = now + NS_PER_S
            lost = [
                h
                for h, v in ctx.state.hosts.items()
                if not Path(f"/run/netns/{v['netns']}").exists()
            ]
            if lost and ctx.config.environment == "lab":
                timeline.mark("abort", reason="lab health")
                raise Aborted(f"lab health lost: namespaces gone for {', '.join(lost)}")


def error_budget_blown(ops: list[Operation], now_ns: int, abort: Abort) -> str | None:
    """Why the error budget is blown, or None: among the operations that ended in the last
    `sustained_s` (however long they took: a failure after a 5 s pool wait counts when it
    comes), more than `max_error_rate` failed; at least 5 are needed to judge."""
    if abort.max_error_rate is None:
        return None
    since = now_ns - int(abort.sustained_s * NS_PER_S)
    recent = [o for o in ops if since <= o.end_ns <= now_ns]
    if len(recent) < 5:
        return None
    rate = sum(1 for o in recent if o.outcome != "ok") / len(recent)
    if rate <= abort.max_error_rate:
        return None
    return (
        f"error rate {rate:.2f} over the last {abort.sustained_s:g} s exceeds "
        f"abort.max_error_rate={abort.max_error_rate:g}"
    )


def _conclude(
    result: dict[str, Any],
    scenario: Scenario,
    ctx: RunContext,
    history: History,
    timeline: Timeline,
    slo: Slo,
    base: Pooled,
    ledger: LedgerStore,
    counter_before: int | None,
    sampled: list[Any],
    origin_ns: int,
    window_ns: int,
    heal_end: int | None,
) -> dict[str, Any]:
    doc = scenario.doc
    end = timeline.first("recovery-end") or time.monotonic_ns()
    valid = _valid(history)
    probes = [o for o in history if o.token != "valid"]
    all_windows = windows(valid, origin_ns, end, window_ns)
    fault_start = timeline.first("fault-holding")
    heal_start = timeline.first("heal-start")
    inject_start = timeline.first("inject-start")
    rec = recovery_ns(all_windows, heal_end, slo) if heal_end is not None else None
    bite = bite_ns(valid, inject_start, slo) if inject_start is not None else None
    writes = [o for o in history if o.op_id is not None]
    ledger_result = (
        ledger_check(writes, ledger.present(o.op_id for o in writes if o.op_id)) if writes else None
    )
    counter_result = None
    if doc.counter and counter_before is not None:
        counter_result = counter_check(
            [o for o in history if o.kind == "increment"],
            counter_before,
            ledger.counter(doc.counter),
        )
    seen_restarts = restarts(sampled)
    evidence = Evidence(
        expect=doc.expect,
        valid_ops=valid,
        probe_ops=probes,
        windows=all_windows,
        baseline=base,
        slo=slo,
        fault_start_ns=fault_start,
        fault_end_ns=heal_start or timeline.first("hold-end") or timeline.first("abort"),
        heal_end_ns=heal_end,
        recovery_ns=rec,
        hang_limit_s=doc.expect.hang_s
        or float(ctx.state.app(doc.app).raw.get("query_timeout", 10)) + 1,
        ledger=ledger_result,
        counter=counter_result,
        restarts=seen_restarts,
        max_rss_mb=max_rss_mb(sampled),
    )
    outcome, checks = judge(evidence)
    if result["outcome"] != "aborted":
        result["outcome"] = outcome
        result["reason"] = "; ".join(
            f"{c.name}: {c.measured} (expected {c.expected})" for c in checks if not c.ok
        )
    fault_ops = evidence.fault_ops()
    result.update(
        checks=[c.as_dict() for c in checks],
        metrics={
            "operations": len(history),
            "ok": sum(1 for o in history if o.outcome == "ok"),
            "fail": sum(1 for o in history if o.outcome == "fail"),
            "info": sum(1 for o in history if o.outcome == "info"),
            "bad_token_requests": len(probes),
            "bite_s": None
            if bite is None or inject_start is None
            else round((bite - inject_start) / NS_PER_S, 3),
            "bite_ns": bite,
            "recovery_s": None
            if rec is None or heal_end is None
            else round(max(0, rec - heal_end) / NS_PER_S, 3),
            "recovery_ns": rec,
            "fault_p50_ms": ok_latency_ms(fault_ops, 50),
            "fault_p95_ms": ok_latency_ms(fault_ops, 95),
            "fault_p99_ms": ok_latency_ms(fault_ops, 99),
            "fault_error_rate": round(
                sum(1 for o in fault_ops if o.outcome != "ok") / len(fault_ops), 4
            )
            if fault_ops
            else None,
            **_delay_ratio(result["faults"], base, fault_ops),
            "max_rss_mb": evidence.max_rss_mb,
            "restarts": seen_restarts,
        },
        windows=[w.as_dict() for w in all_windows],
        ledger=ledger_result.as_dict() if ledger_result else None,
        counter=counter_result.as_dict() if counter_result else None,
    )
    return result


def _delay_ratio(
    faults: list[dict[str, Any]], base: Pooled, ops: list[Operation]
) -> dict[str, Any]:
    """Latency against injected delay: how many delayed round trips a request paid."""
    delay = sum(float(f["params"].get("delay_ms", 0)) for f in faults if f["kind"] == "net.delay")
    during = ok_latency_ms(ops, 50)
    if not delay or during is None or base.p50_ms is None:
        return {}
    added = during - base.p50_ms
    return {"added_p50_ms": round(added, 1), "delayed_round_trips": round(added / delay, 2)}


def _write_history(
    result: dict[str, Any], ctx: RunContext, scenario: Scenario, attempt: int, history: History
) -> None:
    name = f"history/{scenario.id}-{attempt}.jsonl"
    path = ctx.run_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    history.write_jsonl(path)
    result["history_file"] = name


Attempt = Callable[[Scenario, RunContext, int], dict[str, Any]]


def run_scenario(
    scenario: Scenario, ctx: RunContext, attempt_fn: Attempt | None = None
) -> dict[str, Any]:
    """Attempts until there is a verdict (at most config.attempts). A deviation is confirmed
    by another attempt when configured; attempts that disagree make the result `flaky` and
    the majority decides."""
    attempt_fn = attempt_fn or run_attempt
    attempts: list[dict[str, Any]] = []
    while len(attempts) < ctx.config.attempts:
        attempt = attempt_fn(scenario, ctx, len(attempts) + 1)
        attempts.append(attempt)
        ctx.progress(scenario.id, f"attempt {attempt['attempt']}: {attempt['outcome']}")
        if _settled(attempts, ctx.config.confirm_deviations):
            break
    return summarize_attempts(scenario.id, attempts)


def _settled(attempts: list[dict[str, Any]], confirm_deviations: bool) -> bool:
    last = attempts[-1]["outcome"]
    if last == "skipped":
        return True
    if last not in VERDICTS:
        return False  # no verdict: try again
    verdicts = [a["outcome"] for a in attempts if a["outcome"] in VERDICTS]
    if len(verdicts) == 1:
        return last == "passed" or not confirm_deviations
    return verdicts.count(last) >= 2


def summarize_attempts(scenario_id: str, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = [a["outcome"] for a in attempts if a["outcome"] in VERDICTS]
    flaky = len(set(verdicts)) > 1
    if verdicts:
        # Majority of the verdicts; a tie goes to the latest attempt.
        final = max(set(verdicts), key=lambda v: (verdicts.count(v), -verdicts[::-1].index(v)))
        chosen = next(a for a in reversed(attempts) if a["outcome"] == final)
    else:
        chosen = attempts[-1]
        final = chosen["outcome"]
    return {
        "scenario": scenario_id,
        "outcome": final,
        "flaky": flaky,
        "reason": chosen.get("reason", ""),
        "attempts": attempts,
        "chosen_attempt": chosen["attempt"],
    }
