"""The process sampler with a stand-in probe: a failed probe is an unknown sample, never a
crash; a restart is a pid change between two samples that found the program."""

from __future__ import annotations

import itertools
import time

import pytest

from chaos_runner.analysis.sampling import (
    ProcessSampler,
    Sample,
    max_rss_mb,
    pid_samples,
    restarts,
    unknown_samples,
)
from chaos_runner.errors import FaultError

LOST = FaultError("app1: proc failed after one reconnect: no answer within 2 s")


class ScriptedProbe:
    """Answers (pid, rss_kb) in turn; an exception in the script is raised instead."""

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.calls = 0

    def __call__(self) -> tuple[int | None, int | None]:
        self.calls += 1
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step


def sampled(script: list) -> list[Sample]:
    sampler = ProcessSampler(ScriptedProbe(script))
    return [sampler.sample() for _ in script]


def test_a_failed_probe_is_an_unknown_sample_not_a_stopped_program():
    before = time.monotonic_ns()
    first, lost, down = sampled([(10, 50_000), LOST, (None, None)])
    assert (first.pid, first.rss_kb, first.known) == (10, 50_000, True)
    assert (lost.pid, lost.rss_kb, lost.known) == (None, None, False)
    assert (down.pid, down.rss_kb, down.known) == (None, None, True)
    assert before <= first.ns <= lost.ns <= down.ns <= time.monotonic_ns()
    assert unknown_samples([first, lost, down]) == 1
    assert pid_samples([first, lost, down]) == 1


def test_unknown_samples_neither_add_nor_hide_a_restart():
    # The connection to the host is lost for a while; the same process is there after.
    assert restarts(sampled([(10, 1), LOST, LOST, LOST, (10, 1)])) == []
    # A new process after the gap: a pid change between two samples that found the program.
    seen = sampled([(10, 1), LOST, LOST, (11, 1), (11, 1)])
    assert [(r["old_pid"], r["new_pid"]) for r in restarts(seen)] == [(10, 11)]
    assert restarts(seen)[0]["ns"] == seen[3].ns


def test_not_running_then_a_new_pid_is_one_restart_and_the_same_pid_is_none():
    crashed = sampled([(10, 1), (None, None), (None, None), (12, 1)])
    assert [(r["old_pid"], r["new_pid"]) for r in restarts(crashed)] == [(10, 12)]
    assert restarts(sampled([(10, 1), (None, None), (10, 1)])) == []


def test_a_probe_that_never_answers_measures_nothing():
    samples = sampled([LOST, LOST, LOST])
    assert pid_samples(samples) == 0  # the restarts check then says "not measured"
    assert restarts(samples) == [] and max_rss_mb(samples) is None
    assert unknown_samples(samples) == 3


def test_memory_comes_only_from_samples_that_found_the_program():
    samples = sampled([(10, 2048), (None, 999_999), LOST, (10, 4096)])
    assert samples[1].rss_kb is None  # no pid, no memory
    assert max_rss_mb(samples) == 4.0


def test_the_sampler_keeps_its_interval_and_survives_failing_probes(caplog):
    probe = ScriptedProbe([(10, 1), LOST, LOST, (10, 1)])
    sampler = ProcessSampler(probe, interval_s=0.02)
    started = time.monotonic()
    sampler.start()
    # However busy the machine: wait for 6 probes (never more than 10 s), not a fixed time.
    while probe.calls < 6 and time.monotonic() - started < 10:
        time.sleep(0.01)
    samples = sampler.stop()
    elapsed = time.monotonic() - started
    # At least the 6 waited for; never more often than every 15 ms.
    assert 6 <= len(samples) <= elapsed / 0.015 + 1, (len(samples), elapsed)
    assert [s.known for s in samples[:4]] == [True, False, False, True]
    gaps = [b.ns - a.ns for a, b in itertools.pairwise(samples)]
    assert min(gaps) >= 0.015e9
    # One warning for the run of failures, not one per probe.
    assert caplog.text.count("process probe failed") == 1
    calls = probe.calls
    time.sleep(0.05)
    assert probe.calls == calls  # stopped


@pytest.mark.parametrize("exc", [LOST, OSError("connection reset"), KeyError("pid")])
def test_any_probe_failure_is_unknown(exc):
    (sample,) = sampled([exc])
    assert sample.known is False and sample.pid is None


def activity(
    waiters: int = 0, active: int = 1, wait_s: float = 0.0, xacts: int = 0, tuples: int = 0
):
    from chaos_runner.analysis.ledger import DbActivity

    return DbActivity(waiters, active, active + 2, wait_s, xacts, tuples)


def test_db_load_reports_each_span_from_its_own_samples():
    from chaos_runner.analysis.sampling import DbSample, db_load

    s = 1_000_000_000
    samples = [
        DbSample(0, activity(xacts=100, tuples=1000)),
        DbSample(1 * s, activity(xacts=110, tuples=1100)),
        DbSample(2 * s, activity(xacts=120, tuples=1200)),  # baseline: 10 xacts/s
        DbSample(3 * s, activity(waiters=4, active=9, wait_s=0.8, xacts=140, tuples=1500)),
        DbSample(4 * s, None),  # lost: PostgreSQL did not answer
        DbSample(5 * s, activity(waiters=2, active=5, wait_s=1.25, xacts=200, tuples=2400)),
    ]
    out = db_load(samples, {"baseline": (0, 2 * s), "fault": (3 * s, 5 * s), "none": None})
    assert out == {
        "baseline": {
            "samples": 3, "unknown": 0, "lock_waiters_max": 0, "active_max": 1,
            "lock_wait_max_s": 0.0, "xacts_per_s": 10.0, "tuples_per_s": 100.0,
        },
        "fault": {
            "samples": 3, "unknown": 1, "lock_waiters_max": 4, "active_max": 9,
            "lock_wait_max_s": 1.25, "xacts_per_s": 30.0, "tuples_per_s": 450.0,
        },
        "none": None,
        "xact_ratio": 3.0,
    }  # fmt: skip
    # A span with no answer at all has no numbers, only its count of lost samples.
    lost = db_load([DbSample(0, None)], {"baseline": (0, 1), "fault": (0, 1)})
    assert lost == {
        "baseline": {"samples": 1, "unknown": 1},
        "fault": {"samples": 1, "unknown": 1},
        "xact_ratio": None,
    }
    assert db_load([], {"fault": (0, 1)}) is None


def test_the_activity_sampler_records_lost_samples_and_warns_once(caplog):
    from chaos_runner.analysis.sampling import ActivitySampler

    answers = iter([activity(), LOST, LOST, activity(waiters=1)])

    def probe():
        answer = next(answers, None)
        if answer is None:
            return activity()
        if isinstance(answer, Exception):
            raise answer
        return answer

    sampler = ActivitySampler(probe, interval_s=0.01)
    started = time.monotonic()
    sampler.start()
    while len(sampler.samples) < 5 and time.monotonic() - started < 10:
        time.sleep(0.01)
    samples = sampler.stop()
    assert [s.activity is not None for s in samples[:4]] == [True, False, False, True]
    assert samples[3].activity.lock_waiters == 1  # type: ignore[union-attr]
    assert caplog.text.count("PostgreSQL activity probe failed") == 1
