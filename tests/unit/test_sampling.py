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
