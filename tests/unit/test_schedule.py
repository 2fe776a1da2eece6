"""FaultSchedule on fake faults: stage order on the clock, verification, heal of every stage
(also when one heal fails or the hold is cut short), and the heal marks recovery counts
from. The faults here are test doubles of the Fault protocol; the schedule is real."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chaos_runner.errors import FaultError
from chaos_runner.model.scenario import FaultStep, PlannedStage
from chaos_runner.run.schedule import FaultSchedule, StopAttempt
from chaos_runner.run.timeline import Timeline


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str, str]] = []
        self.t0 = time.monotonic()
        self.unverified: set[str] = set()
        self.failing_heal: set[str] = set()
        self.interrupting_heal: set[str] = set()
        self.gone: set[str] = set()

    def make(self, step: FaultStep, stage: PlannedStage) -> Any:
        recorder = self

        class Fake:
            host = "h1"

            def __init__(self) -> None:
                self.step = step
                self.id = f"{step.params['name']}"

            def inject(self) -> dict[str, Any]:
                recorder.calls.append((time.monotonic() - recorder.t0, "inject", self.id))
                return {"mechanism": "fake"}

            def verify(self) -> dict[str, Any]:
                return {"ok": self.id not in recorder.unverified, "evidence": "counted"}

            def heal(self) -> dict[str, Any]:
                recorder.calls.append((time.monotonic() - recorder.t0, "heal", self.id))
                if self.id in recorder.failing_heal:
                    raise FaultError("ssh went away")
                if self.id in recorder.interrupting_heal:
                    raise KeyboardInterrupt
                if self.id in recorder.gone:
                    return {"healed": False, "reason": "not injected"}
                return {"healed": True}

        return Fake()


def _stage(i: int, start: float, end: float, *names: str) -> PlannedStage:
    steps = tuple(FaultStep("net.delay", "@app", {"name": n}) for n in names)
    return PlannedStage(i, f"s{i}", start, end, steps)


def _run(stages: list[PlannedStage], hold_s: float, rec: Recorder, check: Any = None):
    timeline = Timeline()
    entries: list[dict[str, Any]] = []
    schedule = FaultSchedule(stages, rec.make, timeline, entries)
    try:
        schedule.run(time.monotonic_ns(), hold_s, check or (lambda now: None), 0.01)
    finally:
        schedule.heal_remaining()
    return schedule, timeline, entries


def test_stages_inject_and_heal_at_their_offsets_and_the_last_heals_in_the_heal_phase():
    rec = Recorder()
    schedule, timeline, entries = _run(
        [_stage(0, 0.0, 0.1, "a"), _stage(1, 0.1, 0.2, "b"), _stage(2, 0.2, 0.3, "c")], 0.3, rec
    )
    order = [(what, name) for _, what, name in rec.calls]
    assert order == [
        ("inject", "a"), ("heal", "a"), ("inject", "b"), ("heal", "b"), ("inject", "c"),
        ("heal", "c"),
    ]  # fmt: skip
    times = {(what, name): t for t, what, name in rec.calls}
    assert times[("inject", "b")] == pytest.approx(0.1, abs=0.05)
    assert times[("inject", "c")] == pytest.approx(0.2, abs=0.05)
    assert not schedule.active
    events = [e["event"] for e in timeline.events]
    assert events.count("heal-start") == events.count("heal-end") == 1
    assert [e["stage"] for e in entries] == [0, 1, 2]
    assert all(e["verified"] and e["healed_ns"] >= e["heal_ns"] for e in entries)


def test_a_schedule_healed_before_the_hold_ends_marks_its_last_heal():
    rec = Recorder()
    _, timeline, entries = _run([_stage(0, 0.0, 0.05, "a")], 0.15, rec)
    heal_start = next(e["ns"] for e in timeline.events if e["event"] == "heal-start")
    assert heal_start == entries[0]["heal_ns"]


def test_a_fault_not_in_effect_stops_the_attempt_and_everything_is_healed():
    rec = Recorder()
    rec.unverified = {"b"}
    with pytest.raises(StopAttempt) as stop:
        _run([_stage(0, 0.0, 0.3, "a", "b")], 0.3, rec)
    assert stop.value.outcome == "fault-not-effective"
    assert sorted(n for _, what, n in rec.calls if what == "heal") == ["a", "b"]


def test_an_abort_mid_hold_heals_what_is_in_and_never_injects_later_stages():
    rec = Recorder()

    def check(now_ns: int) -> None:
        if any(name == "a" for _, _, name in rec.calls):
            raise StopAttempt("aborted", "error budget")

    with pytest.raises(StopAttempt):
        _run([_stage(0, 0.0, 0.1, "a"), _stage(1, 0.2, 0.3, "b")], 0.3, rec, check)
    assert [(w, n) for _, w, n in rec.calls] == [("inject", "a"), ("heal", "a")]


def test_a_failing_heal_does_not_stop_the_others():
    rec = Recorder()
    rec.failing_heal = {"b"}
    schedule, _, _ = _run([_stage(0, 0.0, 0.1, "a", "b", "c")], 0.1, rec)
    assert sorted(n for _, w, n in rec.calls if w == "heal") == ["a", "b", "c"]
    assert len(schedule.heal_errors) == 1 and "ssh went away" in schedule.heal_errors[0]


def test_a_fault_already_gone_at_heal_time_is_a_heal_error():
    rec = Recorder()
    rec.gone = {"a"}
    schedule, _, _ = _run([_stage(0, 0.0, 0.1, "a")], 0.1, rec)
    assert schedule.heal_errors == ["a on h1 was already gone when healed (not injected)"]


def test_a_signal_during_one_heal_still_heals_the_others_then_goes_on():
    rec = Recorder()
    rec.interrupting_heal = {"c"}  # healed first (newest first), interrupted
    with pytest.raises(KeyboardInterrupt):
        _run([_stage(0, 0.0, 0.1, "a", "b", "c")], 0.1, rec)
    assert [n for _, w, n in rec.calls if w == "heal"] == ["c", "b", "a"]


def test_the_hold_is_announced_once_the_first_faults_are_in_and_verified():
    rec = Recorder()
    said: list[float] = []
    timeline = Timeline()
    schedule = FaultSchedule(
        [_stage(0, 0.0, 0.05, "a"), _stage(1, 0.05, 0.1, "b")],
        rec.make,
        timeline,
        [],
        on_holding=lambda: said.append(time.monotonic() - rec.t0),
    )
    schedule.run(time.monotonic_ns(), 0.1, lambda now: None, 0.01)
    schedule.heal_remaining()
    assert len(said) == 1 and said[0] >= rec.calls[0][0]  # after the first inject
