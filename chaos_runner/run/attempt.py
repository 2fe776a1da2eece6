"""One attempt of one scenario, phase by phase: gate -> baseline -> inject / verify / hold
(a schedule of stages) -> heal (always, from `finally`) -> recover -> checks.

Every phase boundary is an event on the monotonic clock of the history. The outcome is one
of SCENARIOS.md's: passed, deviated (a finding about FraiseQL), baseline-not-met,
fault-not-effective, aborted, error (a lab failure), skipped.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos_runner.analysis.baseline import (
    BaselineStore,
    Environment,
    compare,
    load_signature,
    stored_summary,
)
from chaos_runner.analysis.evaluate import Observed, evaluate, service_ops
from chaos_runner.analysis.history import Operation
from chaos_runner.analysis.isolation import ISOLATION_KINDS
from chaos_runner.analysis.ledger import ActivityProbe, LedgerStore
from chaos_runner.analysis.metrics import (
    NS_PER_S,
    Slo,
    Window,
    baseline_estimates,
    p95_limit,
    pooled,
    windows,
)
from chaos_runner.analysis.sampling import ActivitySampler, DbSample, Probe, ProcessSampler
from chaos_runner.errors import ChaosRunnerError
from chaos_runner.faults.channel import FaultClient
from chaos_runner.faults.steps import AgentFault, build_fault
from chaos_runner.model.config import RunnerConfig
from chaos_runner.model.scenario import (
    Abort,
    FaultStep,
    PlannedStage,
    PrepareStep,
    Requires,
    Scenario,
)
from chaos_runner.run.evidence import EvidenceBundle
from chaos_runner.run.schedule import FaultSchedule, StopAttempt
from chaos_runner.run.timeline import Timeline
from chaos_runner.target.lab import LabState, guest_alive, lab_checks
from chaos_runner.target.monitoring import counter_deltas, scrape_counters
from chaos_runner.workload.alerts import ALERT_KIND, AlertReceiver
from chaos_runner.workload.load import GraphQLLoad
from chaos_runner.workload.operations import LoadSettings, account_group, line_problem
from chaos_runner.workload.tokens import TokenMinter, TokenSwitch

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]


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
    # Takes the monitoring host's alerts for the whole campaign (None: no monitoring host).
    alerts: AlertReceiver | None = None

    def minter(self, app: str) -> TokenMinter:
        endpoint = self.state.app(app)
        return TokenMinter(
            self.state.settings.state_dir / "pki", endpoint.issuer, endpoint.audience
        )


# A prepare step's fault lives only for its inject/verify/heal; the TTL is the backstop.
PREPARE_TTL_S = 60.0


def error_budget_blown(ops: Iterable[Operation], now_ns: int, abort: Abort) -> str | None:
    """Why the error budget is blown, or None: among the service operations (service_ops)
    that ended in the last `sustained_s` (however long they took: a failure after a 5 s
    pool wait counts when it comes), more than `max_error_rate` failed; at least 5 are
    needed to judge. Called every window: only the recent operations are classified."""
    if abort.max_error_rate is None:
        return None
    since = now_ns - int(abort.sustained_s * NS_PER_S)
    recent = service_ops(o for o in ops if since <= o.end_ns <= now_ns)
    if len(recent) < 5:
        return None
    rate = sum(1 for o in recent if o.outcome != "ok") / len(recent)
    if rate <= abort.max_error_rate:
        return None
    return (
        f"error rate {rate:.2f} over the last {abort.sustained_s:g} s exceeds "
        f"abort.max_error_rate={abort.max_error_rate:g}"
    )


def baseline_problem(base_windows: list[Window], stored: list[Window], factor: float) -> str | None:
    if len(base_windows) < 10:
        return f"only {len(base_windows)} baseline windows (need >= 10)"
    failed = sum(w.fail + w.info for w in base_windows)
    if failed:
        return f"{failed} operations failed during the baseline"
    return compare(base_windows, stored, factor)


def _sleep(seconds: float) -> None:
    time.sleep(max(0.0, seconds))


class Attempt:
    """The phases of one attempt; `run()` never raises for lab trouble (outcome `error`)."""

    def __init__(self, scenario: Scenario, ctx: RunContext, number: int) -> None:
        self.scenario = scenario
        self.doc = scenario.doc
        self.ctx = ctx
        self.number = number
        self.timeline = Timeline()
        self.result: dict[str, Any] = {
            "scenario": scenario.id,
            "attempt": number,
            "outcome": "error",
            "reason": "",
            "anchor": {"monotonic_ns": time.monotonic_ns(), "wall_ns": time.time_ns()},
            "faults": [],
            "timeline": self.timeline.events,
        }
        self.load: GraphQLLoad | None = None
        self.sampler: ProcessSampler | None = None
        self.db_sampler: ActivitySampler | None = None
        self.evidence: EvidenceBundle | None = None
        self.db_probe: ActivityProbe | None = None
        self.counters_before: dict[str, float] | None = None
        self.schedule: FaultSchedule | None = None

    def say(self, message: str) -> None:
        self.ctx.progress(self.scenario.id, message)

    # ------------------------------------------------------------------ phases
    def run(self) -> dict[str, Any]:
        if self.doc.skip:
            self.result.update(outcome="skipped", reason=self.doc.skip)
            return self.result
        try:
            self.gate()
            self.start_load()
            self.baseline()
            try:
                self.hold()
            except StopAttempt as stop:
                if stop.outcome != "aborted":
                    self.heal(quiet=True)
                    if self.schedule is not None and self.schedule.heal_errors:
                        # A heal failed: the lab is in doubt, whatever ended the hold.
                        raise StopAttempt("error", self.result["reason"]) from stop
                    raise
                self.result.update(outcome="aborted", reason=stop.reason)
            except BaseException:
                # A signal (Terminated, KeyboardInterrupt) or a lab error: heal, and let
                # it go on unwinding - a failed heal must not replace it.
                self.heal(quiet=True)
                raise
            self.heal()
            self.recover()
            self.conclude()
        except StopAttempt as stop:
            cause = stop.__cause__
            first = cause.reason if isinstance(cause, StopAttempt) else ""
            reasons = [first, stop.reason] if first not in stop.reason else [stop.reason]
            self.result.update(outcome=stop.outcome, reason="; ".join(r for r in reasons if r))
        except ChaosRunnerError as exc:
            reasons = [str(exc), self.result["reason"]]
            self.result.update(outcome="error", reason="; ".join(r for r in reasons if r))
        finally:
            self.cleanup()
        return self.result

    def gate(self) -> None:
        """The lab in steady state: every check green, no fault left on the target hosts."""
        self.say("gate")
        state = self.ctx.state
        unmet = self._unmet(self.doc.requires)
        if unmet:
            raise StopAttempt("skipped", unmet)
        absent = self.absent_hosts()
        if absent:
            raise StopAttempt("skipped", f"{absent}: the scenario needs that host")
        if self.needs_alerts and self.ctx.alerts is None:
            raise StopAttempt(
                "skipped",
                "expect.detect waits for an alert, and no alert receiver listens: the"
                " inventory has no monitoring host (group monitoring), or its receiver"
                " could not listen (see the run's log)",
            )
        # Prometheus's targets and Alertmanager gate only what waits for an alert: a
        # scrape target down must not block scenarios that never look at it.
        bad = [
            c
            for c in lab_checks(state, self.ctx.faults.programs, monitoring=self.needs_alerts)
            if not c.ok
        ]
        if bad:
            problem = "; ".join(f"{c.host} {c.item}: {c.detail}" for c in bad[:4])
            raise StopAttempt("baseline-not-met", f"steady-state gate: {problem}")
        bursts = [
            str(s.params.get("op", "query"))
            for s in self.scenario.all_faults()
            if s.kind == "client.burst"
        ]
        unserved = line_problem([*self.doc.load.mix, *bursts], state.app(self.doc.app).version)
        if unserved:
            raise StopAttempt("skipped", unserved)
        hosts = {
            state.host(s.host)
            for s in self.scenario.all_faults()
            if not s.kind.startswith("client.")
        }
        for host in sorted(hosts):
            left = self.ctx.faults.list(host)
            if left:
                raise StopAttempt(
                    "baseline-not-met",
                    f"steady-state gate: {host} still has faults injected: "
                    f"{[r.get('id') for r in left]}",
                )
        self.prepare()

    @property
    def needs_alerts(self) -> bool:
        return needs_alerts(self.scenario)

    def _unmet(self, requires: Requires) -> str | None:
        """What the app under test lacks for `requires`, or None."""
        app = self.ctx.state.app(self.doc.app)
        return requires.problem(app.version, app.raw.get("cache"), app.host)

    def _applies(self, prep: PrepareStep) -> bool:
        return self._unmet(prep.when) is None

    def absent_hosts(self) -> str | None:
        """Why a host the scenario names (a fault's target or address, a prepare step's
        target) is in an optional group this inventory has no host in, or None."""
        prepared = [p.step() for p in self.doc.prepare if self._applies(p)]
        steps = [*self.scenario.all_faults(), *prepared]
        roles = self.ctx.state.roles
        return next(
            (p for s in steps if (p := roles.absent_among((s.host, *s.params.values())))), None
        )

    def prepare(self) -> None:
        """The scenario's one-shot `prepare` steps whose `when` the app meets (a fresh app
        process, an empty cache), each proven by its verify, before the load starts."""
        for prep in self.doc.prepare:
            if not self._applies(prep):
                continue
            step = prep.step()
            fault = AgentFault(step, self.ctx.faults, step.ttl_s or PREPARE_TTL_S, self.ctx.ansible)
            self.say(f"prepare {step.kind} on {fault.host}")
            try:
                answer = fault.inject()
                check = fault.verify()
            finally:
                fault.heal()  # one-shot: nothing stays in effect, nor on the host's record
            self.timeline.mark("prepared", kind=step.kind, host=fault.host, ok=check.get("ok"))
            self.result.setdefault("prepared", []).append(
                {
                    "kind": step.kind,
                    "host": fault.host,
                    "params": step.params,
                    "mechanism": answer.get("mechanism"),
                    "ok": bool(check.get("ok")),
                    "evidence": check.get("evidence"),
                }
            )
            if not check.get("ok"):
                raise StopAttempt(
                    "baseline-not-met",
                    f"prepare {step.kind} on {fault.host}: {check.get('evidence')}",
                )

    def start_load(self) -> None:
        doc, ctx = self.doc, self.ctx
        app = ctx.state.app(doc.app)
        self.app = app
        self.switch = TokenSwitch(ctx.minter(doc.app), ttl_s=int(self.scenario.bound_s + 120))
        run_tag = f"{self.scenario.id}-{self.number}-{uuid.uuid4().hex[:6]}"
        self.load = GraphQLLoad(
            LoadSettings(
                url=app.url,
                mode=doc.load.mode,
                rate=doc.load.rate,
                concurrency=doc.load.concurrency,
                max_in_flight=doc.load.max_in_flight,
                timeout_s=doc.load.timeout_s,
                mix=tuple(doc.load.mix.items()),
                max_ops=doc.load.max_ops,
                max_duration_s=self.scenario.bound_s + 30,
                seed=ctx.seed + self.number,
                op_prefix=run_tag,
                counter=doc.counter,
                params=doc.load.params,
                line=app.version,
            ),
            ctx.state.guard,
            self.switch,
        )
        self.ledger = LedgerStore.for_lab(ctx.state, ctx.config.db_host)
        self.counter_before = self.ledger.counter(doc.counter) if doc.counter else None
        self.sampler = ProcessSampler(self._process_probe(app.host, app.program))
        self.sampler.start()
        if "postgresql" in doc.observe:
            self.db_probe = ActivityProbe(self.ledger)
            self.db_sampler = ActivitySampler(self.db_probe)
            self.db_sampler.start()
        self.counters_before = (
            scrape_counters(ctx.state.guard, app.url) if doc.expect.counted_in_metrics else None
        )
        # The log offsets and the alert receiver come first: nothing the load's first
        # seconds cause may be missed.
        self.evidence = EvidenceBundle(
            ctx.state,
            self.ledger,
            ctx.run_dir / "evidence" / f"{self.scenario.id}-{self.number}",
            sorted(
                {
                    ctx.state.host(s.host)
                    for s in self.scenario.all_faults()
                    if not s.kind.startswith("client.") and s.host != "controller"
                }
            ),
            [(ctx.state.host(ctx.config.db_host), "postgresql"), (app.host, "fraiseql")],
        )
        self.evidence.at_load_start()
        self.evidence.before_inject()  # the hosts as they are until the inject
        if ctx.alerts is not None:
            ctx.alerts.attach(self.load.note)
        self.timeline.mark("load-start")
        self.load.start()

    def _process_probe(self, host: str, program: str) -> Probe:
        """The program's pid and memory from its host's fault agent (op `proc`, its own
        connection): a guest's pidfiles and PIDs are not the controller's to read."""
        faults = self.ctx.faults

        def probe() -> tuple[int | None, int | None]:
            answer = faults.proc(host, program)
            return answer.get("pid"), answer.get("rss_kb")

        return probe

    def baseline(self) -> None:
        assert self.load is not None
        w, ctx = self.doc.windows, self.ctx
        _sleep(w.settle_s)
        self.base_start = self.timeline.mark("baseline-start")
        self.say("baseline")
        _sleep(w.baseline_s)
        base_end = self.timeline.mark("baseline-end")
        self.window_ns = w.window_ms * 1_000_000
        ops = service_ops(self.load.history())
        base_windows = windows(ops, self.base_start, base_end, self.window_ns)[
            : int(w.baseline_s * 1000 // w.window_ms)
        ]
        self.base = pooled(ops, self.base_start, base_end)
        self.result["baseline"] = {
            k: v.as_dict() for k, v in baseline_estimates(base_windows).items()
        }
        self.result["baseline_pooled"] = self.base.as_dict()
        self.result["baseline_windows"] = len(base_windows)
        load = self.doc.load
        signature = load_signature(
            {
                "mode": load.mode,
                "rate": load.rate,
                "concurrency": load.concurrency,
                "mix": load.mix,
                "params": dataclasses.asdict(load.params),
            }
        )
        stored = ctx.baselines.stored(ctx.environment, signature)
        self.result["stored_baseline"] = stored_summary(stored) if len(stored) >= 2 else None
        unhealthy = baseline_problem(base_windows, stored, ctx.config.baseline_factor)
        if unhealthy or self.base.p95_ms is None:
            raise StopAttempt("baseline-not-met", unhealthy or "no successful operation")
        ctx.baselines.add(ctx.environment, signature, base_windows)
        base_p95 = self.base.p95_ms
        e = self.doc.expect
        self.slo = Slo(p95_ms=e.slo_p95_ms or p95_limit(base_p95, e.p95_factor))
        self.result["slo"] = {
            "p95_ms": round(self.slo.p95_ms, 2),
            "error_rate": self.slo.error_rate,
        }

    def hold(self) -> None:
        w = self.doc.windows
        recovery = w.recovery_s

        def make(step: FaultStep, stage: PlannedStage) -> Any:
            ttl = (stage.end_s - stage.start_s) + recovery + 30
            return build_fault(
                step,
                self.ctx.faults,
                self.switch,
                ttl,
                self.ctx.ansible,
                load=self.load,
                statements=self.ledger.statement_calls,
                deadline_s=self.doc.load.timeout_s,
            )

        self.schedule = FaultSchedule(
            self.scenario.stages(),
            make,
            self.timeline,
            self.result["faults"],
            on_holding=self._holding,
        )
        hold_start = self.timeline.mark("inject-start")
        self.say("inject")
        self.schedule.run(hold_start, w.hold_s, self.check_abort, w.window_ms / 1000)
        self.timeline.mark("hold-end")

    def _holding(self) -> None:
        self.say(f"hold {self.doc.windows.hold_s:g}s")
        if self.evidence is not None:
            self.evidence.at_fault()

    def check_abort(self, now_ns: int) -> None:
        """The stop conditions, every window while the fault holds."""
        assert self.load is not None
        abort = self.doc.abort
        if self.load.done:
            raise StopAttempt("aborted", "the load driver stopped early (bound reached or failed)")
        mine = {f["id"] for f in self.result["faults"]}
        lost = [f"{fid} on {host}" for host, fid in self.ctx.faults.lost if fid in mine]
        if lost:
            self.timeline.mark("abort", reason="fault lost")
            raise StopAttempt(
                "error",
                f"{', '.join(lost)} healed by its host while the hold ran (lease renewals "
                "failed): the runner lost its connection to the fault agent",
            )
        blown = error_budget_blown(self.load.history(), now_ns, abort)
        if blown:
            self.timeline.mark("abort", reason="error budget")
            raise StopAttempt("aborted", blown)
        if abort.lab_health and self.ctx.state.embedded:
            if now_ns < getattr(self, "_next_health", 0):
                return
            self._next_health = now_ns + NS_PER_S
            down = {h: guest_alive(v) for h, v in sorted(self.ctx.state.hosts.items())}
            lost = [f"{h} ({detail})" for h, (alive, detail) in down.items() if not alive]
            if lost:
                self.timeline.mark("abort", reason="lab health")
                raise StopAttempt("aborted", f"lab health lost: guests down: {', '.join(lost)}")

    def heal(self, quiet: bool = False) -> None:
        """Heal everything still injected. A heal that failed leaves the lab in doubt: the
        attempt ends as `error` (the fault's lease and expiry heal it on the host) - unless
        `quiet`, when another exception is already on its way out and the heal errors
        are only added to the reason."""
        if self.schedule is None:
            return
        if self.schedule.active:
            self.say("heal")
        self.schedule.heal_remaining()
        if self.schedule.heal_errors and quiet:
            reasons = [self.result["reason"], *self.schedule.heal_errors]
            self.result["reason"] = "; ".join(r for r in reasons if r)
        elif self.schedule.heal_errors:
            raise StopAttempt(
                "error",
                "; ".join(self.schedule.heal_errors)
                + " (the host's lease heals what the runner could not)",
            )

    def recover(self) -> None:
        self.say("recover")
        _sleep(self.doc.windows.recovery_s)
        self.timeline.mark("recovery-end")

    def conclude(self) -> None:
        assert self.load is not None and self.sampler is not None
        self.load.stop()
        if self.evidence is not None:
            self.evidence.after_heal()  # the load has stopped: nothing left to perturb
        if self.ctx.alerts is not None:
            self.ctx.alerts.attach(None)
        history = self.load.history()
        samples = self.sampler.stop()
        self.sampler = None
        db_samples = self._stop_db_sampler()
        counted = None
        if self.counters_before is not None:
            after = scrape_counters(self.ctx.state.guard, self.app.url)
            counted = None if after is None else counter_deltas(self.counters_before, after)
        writes = [o for o in history if o.op_id is not None]
        present = self.ledger.present(o.op_id for o in writes if o.op_id) if writes else set()
        counter_after = self.ledger.counter(self.doc.counter) if self.doc.counter else None
        # The isolation experiments' ground truth: the account group the load moved money
        # in (operations.request_for: `account_group`, else the attempt's op prefix).
        settings = self.load.settings
        moved = any(self.doc.load.mix.get(k, 0) > 0 for k in ISOLATION_KINDS)
        accounts = self.ledger.accounts(account_group(settings)) if moved else None
        observed = Observed(
            history=history.operations,
            timeline=self.timeline,
            faults=self.result["faults"],
            slo=self.slo,
            base=self.base,
            origin_ns=self.base_start,
            window_ns=self.window_ns,
            ledger_present=present,
            counter_before=self.counter_before,
            counter_after=counter_after,
            samples=samples,
            app_host=self.app.host,
            app_program=self.app.program,
            hang_limit_s=self.doc.expect.hang_s or float(self.app.raw.get("query_timeout", 10)) + 1,
            accounts=accounts,
            op_prefix=settings.op_prefix,
            alerting=self.ctx.alerts is not None,
            db_samples=db_samples,
            app_counters=counted,
        )
        outcome, reason, details = evaluate(self.scenario, observed)
        if self.result["outcome"] != "aborted":
            self.result["outcome"] = outcome
            self.result["reason"] = "; ".join(r for r in (reason, self.result["reason"]) if r)
        self.result.update(details)

    def cleanup(self) -> None:
        self.timeline.events.sort(key=lambda e: e["ns"])
        if self.evidence is not None:  # made once the load started (self.app known)
            try:
                self.result["evidence"] = self.evidence.finish(self.result["faults"], self.app.raw)
            except Exception as exc:  # evidence never ends an attempt or a campaign
                log.error("evidence bundle: %r", exc)
        if self.ctx.alerts is not None:
            self.ctx.alerts.attach(None)
        if self.load is not None and not self.load.done:
            try:
                self.load.stop()
            except ChaosRunnerError as exc:
                log.error("load driver: %s", exc)
        if self.load is not None and "history_file" not in self.result:
            name = f"history/{self.scenario.id}-{self.number}.jsonl"
            path = self.ctx.run_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            self.load.history().write_jsonl(path)
            self.result["history_file"] = name
        if self.sampler is not None:
            self.sampler.stop()
        self._stop_db_sampler()

    def _stop_db_sampler(self) -> list[DbSample] | None:
        """The PostgreSQL samples (None when the scenario did not ask for them)."""
        if self.db_sampler is None:
            return None
        samples = self.db_sampler.stop()
        self.db_sampler = None
        if self.db_probe is not None:
            self.db_probe.close()
        return samples


def needs_alerts(scenario: Scenario) -> bool:
    """The scenario waits for an alert (expect.detect probe alert)."""
    detect = scenario.doc.expect.detect
    return detect is not None and detect.probe == ALERT_KIND


def run_attempt(scenario: Scenario, ctx: RunContext, number: int) -> dict[str, Any]:
    return Attempt(scenario, ctx, number).run()
