"""The hold as a schedule: each stage's faults injected at its offset, verified, and healed
at its end; the abort conditions checked every window in between. Whatever is still
injected when the hold ends, aborts or fails is healed by `heal_remaining`, which the
attempt calls from `finally`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from chaos_runner.analysis.metrics import NS_PER_S
from chaos_runner.errors import ChaosRunnerError
from chaos_runner.faults.steps import Fault
from chaos_runner.model.scenario import FaultStep, PlannedStage
from chaos_runner.run.timeline import Timeline

log = logging.getLogger(__name__)


class StopAttempt(Exception):
    """Ends an attempt early with an outcome (aborted, fault-not-effective, skipped...)."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


class FaultSchedule:
    def __init__(
        self,
        stages: list[PlannedStage],
        make: Callable[[FaultStep, PlannedStage], Fault],
        timeline: Timeline,
        entries: list[dict[str, Any]],
        on_holding: Callable[[], None] = lambda: None,
    ) -> None:
        self.stages = stages
        self.make = make
        self.timeline = timeline
        self.entries = entries
        self.on_holding = on_holding
        self.active: list[tuple[Fault, dict[str, Any]]] = []
        self.heal_errors: list[str] = []

    def run(
        self,
        hold_start_ns: int,
        hold_s: float,
        check: Callable[[int], None],
        step_s: float,
    ) -> None:
        """Inject, verify and heal stage by stage until the hold ends. Stages that end with
        the hold are left to `heal_remaining` (the heal phase)."""
        events: list[tuple[float, int, PlannedStage]] = []
        for stage in self.stages:
            events.append((stage.start_s, 1, stage))
            if stage.end_s < hold_s - 1e-9:
                events.append((stage.end_s, 0, stage))  # heals before injects at one instant
        events.sort(key=lambda e: (e[0], e[1], e[2].index))
        for offset, action, stage in events:
            self._wait(hold_start_ns + int(offset * NS_PER_S), check, step_s)
            if action == 1:
                self._inject(stage)
            else:
                self._heal(stage)
        self._wait(hold_start_ns + int(hold_s * NS_PER_S), check, step_s)

    def _wait(self, until_ns: int, check: Callable[[int], None], step_s: float) -> None:
        while True:
            now = time.monotonic_ns()
            if now >= until_ns:
                return
            time.sleep(min(step_s, (until_ns - now) / NS_PER_S))
            check(time.monotonic_ns())

    def _inject(self, stage: PlannedStage) -> None:
        self.timeline.mark("stage-start", stage=stage.index, label=stage.label)
        injected: list[tuple[Fault, dict[str, Any]]] = []
        for step in stage.faults:
            fault = self.make(step, stage)
            started = time.monotonic_ns()
            answer = fault.inject()
            entry: dict[str, Any] = {
                "id": fault.id,
                "kind": step.kind,
                "host": fault.host,
                "target": step.host,
                "params": step.params,
                "stage": stage.index,
                "stage_label": stage.label,
                "mechanism": answer.get("mechanism"),
                "inject_ns": started,
                "injected_ns": time.monotonic_ns(),
            }
            if "applied_ns" in answer:
                entry["applied_ns"] = answer["applied_ns"]
            # The exact commands the agent ran to inject it (its record; none for the
            # runner's own client faults).
            entry["commands"] = list(answer.get("commands") or [])
            self.timeline.events.extend(answer.get("ansible_events", []))
            self.entries.append(entry)
            if answer.get("skipped"):
                raise StopAttempt("skipped", f"{step.kind}: {answer.get('mechanism')}")
            self.active.append((fault, entry))
            injected.append((fault, entry))
            self.timeline.mark("injected", fault=fault.id, kind=step.kind, host=fault.host)
        first = self.timeline.first("fault-holding") is None
        if first:
            self.timeline.mark("fault-holding")
        for fault, entry in injected:
            check = fault.verify()
            entry["verified"] = bool(check.get("ok"))
            entry["evidence"] = check.get("evidence")
            self.timeline.mark("verified", fault=fault.id, ok=entry["verified"])
            if not check.get("ok"):
                raise StopAttempt(
                    "fault-not-effective",
                    f"{fault.step.kind} on {fault.host}: {check.get('evidence')}",
                )
        if first:
            self.on_holding()  # the first faults are in and proven: the fault holds

    def _heal(self, stage: PlannedStage) -> None:
        self._heal_all([(f, e) for f, e in self.active if e["stage"] == stage.index])
        self.timeline.mark("stage-end", stage=stage.index, label=stage.label)

    def _heal_one(self, fault: Fault, entry: dict[str, Any]) -> None:
        entry["heal_ns"] = time.monotonic_ns()
        try:
            healed = fault.heal()
            entry["heal_commands"] = list(healed.get("commands") or [])
            self.timeline.events.extend(healed.get("ansible_events", []))
            if healed.get("healed") is False:
                # The host no longer held it: its lease or expiry healed it while the runner
                # believed it in effect, so what was measured is not what was asked.
                self.heal_errors.append(
                    f"{fault.id} on {fault.host} was already gone when healed "
                    f"({healed.get('reason', 'not injected')})"
                )
        except ChaosRunnerError as exc:
            # Keep healing the others; the host's lease and expiry still cover this one.
            self.heal_errors.append(f"heal of {fault.id} on {fault.host} failed: {exc}")
            log.error("heal of %s failed: %s", fault.id, exc)
        finally:
            entry["healed_ns"] = time.monotonic_ns()
            self.timeline.mark("healed", fault=fault.id)
            self.active.remove((fault, entry))

    def _heal_all(self, faults: list[tuple[Fault, dict[str, Any]]]) -> None:
        """Heal each of `faults`, newest first. A signal (SIGTERM unwinding as Terminated,
        Ctrl-C) arriving during one heal does not skip the others: it is raised again once
        every heal was tried."""
        interrupted: BaseException | None = None
        for fault, entry in reversed(faults):
            try:
                self._heal_one(fault, entry)
            except BaseException as exc:  # re-raised below, after the other heals
                interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted

    def heal_remaining(self) -> None:
        """The heal phase: every fault still injected, newest first. `heal-start` and
        `heal-end` frame the last heal of the attempt (stages healed during the hold
        included), so recovery counts from when the last fault went away."""
        if self.active:
            self.timeline.mark("heal-start")
            try:
                self._heal_all(list(self.active))
            finally:
                self.timeline.mark("heal-end")
        elif self.entries:
            last = max(self.entries, key=lambda e: e.get("healed_ns", 0))
            if "healed_ns" in last:
                self.timeline.events.append({"ns": last["heal_ns"], "event": "heal-start"})
                self.timeline.events.append({"ns": last["healed_ns"], "event": "heal-end"})
