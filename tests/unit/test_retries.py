"""Retry policy: attempts until a verdict, deviations confirmed, disagreement = flaky."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos_runner.model.build import build
from chaos_runner.model.config import RunnerConfig
from chaos_runner.model.scenario import Catalog
from chaos_runner.reports.summary import exit_code, junit, table
from chaos_runner.results.records import Journal
from chaos_runner.run.attempt import RunContext
from chaos_runner.run.retries import run_scenario


def scripted(outcomes: list[str]):
    calls = []

    def attempt(scenario, ctx, number):
        calls.append(number)
        return {
            "scenario": scenario.id,
            "attempt": number,
            "outcome": outcomes[number - 1],
            "reason": f"attempt {number}",
            "timeline": [],
            "faults": [],
        }

    return attempt, calls


def ctx(attempts: int = 3, confirm: bool = True) -> RunContext:
    return RunContext(
        state=None,  # type: ignore[arg-type]  (the retry policy never touches the lab)
        config=RunnerConfig(attempts=attempts, confirm_deviations=confirm),
        faults=None,  # type: ignore[arg-type]
        run_dir=Path("/nonexistent"),
        environment=None,  # type: ignore[arg-type]
        baselines=None,  # type: ignore[arg-type]
        seed=1,
    )


SCENARIO = Catalog.load().scenarios["net.db-stopped"]


@pytest.mark.parametrize(
    ("outcomes", "tries", "final", "flaky"),
    [
        (["passed"], 1, "passed", False),
        (["deviated", "deviated"], 2, "deviated", False),
        (["deviated", "passed", "passed"], 3, "passed", True),
        (["deviated", "passed", "deviated"], 3, "deviated", True),
        (["baseline-not-met", "passed"], 2, "passed", False),
        (["error", "fault-not-effective", "error"], 3, "error", False),
        (["skipped"], 1, "skipped", False),
        (["aborted", "aborted", "aborted"], 3, "aborted", False),
        # No verdict in any attempt: the last attempt's outcome is the result.
        (["baseline-not-met"] * 3, 3, "baseline-not-met", False),
        (["fault-not-effective"] * 3, 3, "fault-not-effective", False),
        (["error"] * 3, 3, "error", False),
        (["baseline-not-met", "error", "fault-not-effective"], 3, "fault-not-effective", False),
        (["error", "skipped"], 2, "skipped", False),
        # A deviation that no later attempt could confirm or contradict stands.
        (["deviated", "error", "error"], 3, "deviated", False),
        (["deviated", "baseline-not-met", "deviated"], 3, "deviated", False),
        # An abort is not a verdict (VERDICTS = passed, deviated): it is retried like a lab
        # failure, and a later verdict decides alone, without making the result flaky.
        (["aborted", "passed"], 2, "passed", False),
        (["aborted", "deviated", "deviated"], 3, "deviated", False),
        (["deviated", "aborted", "passed"], 3, "passed", True),
    ],
)
def test_attempts_until_a_settled_verdict(outcomes, tries, final, flaky):
    attempt, calls = scripted(outcomes)
    result = run_scenario(SCENARIO, ctx(), attempt)
    assert calls == list(range(1, tries + 1))
    assert (result["outcome"], result["flaky"]) == (final, flaky)
    assert len(result["attempts"]) == tries  # every attempt is kept
    assert [a["outcome"] for a in result["attempts"]] == outcomes[:tries]
    # The reason is the chosen attempt's, and the chosen attempt has the final outcome.
    chosen = result["attempts"][result["chosen_attempt"] - 1]
    assert chosen["outcome"] == final
    assert result["reason"] == f"attempt {result['chosen_attempt']}"


@pytest.mark.parametrize(
    ("outcomes", "chosen"),
    [
        (["deviated", "passed", "passed"], 3),  # the latest attempt of the majority
        (["deviated", "passed", "deviated"], 3),
        (["passed"], 1),
        (["error", "passed"], 2),
        (["error", "error", "error"], 3),
    ],
)
def test_the_chosen_attempt_is_the_latest_with_the_final_outcome(outcomes, chosen):
    attempt, _ = scripted(outcomes)
    assert run_scenario(SCENARIO, ctx(), attempt)["chosen_attempt"] == chosen


def test_two_attempts_that_disagree_go_to_the_latest_and_are_flaky():
    attempt, calls = scripted(["deviated", "passed"])
    result = run_scenario(SCENARIO, ctx(attempts=2), attempt)
    assert calls == [1, 2]
    assert (result["outcome"], result["flaky"], result["chosen_attempt"]) == ("passed", True, 2)


def test_without_confirmation_a_deviation_stands_alone():
    attempt, calls = scripted(["deviated", "passed"])
    assert run_scenario(SCENARIO, ctx(confirm=False), attempt)["outcome"] == "deviated"
    assert calls == [1]


def test_one_attempt_configured_means_one_attempt():
    attempt, calls = scripted(["error", "passed"])
    assert run_scenario(SCENARIO, ctx(attempts=1), attempt)["outcome"] == "error"
    assert calls == [1]


def _journal(*outcomes: str) -> Journal:
    data = {
        "run_id": "r",
        "scenarios": [
            {
                "scenario": f"x.s{i}",
                "outcome": o,
                "flaky": False,
                "reason": "",
                "chosen_attempt": 1,
                "attempts": [{"scenario": f"x.s{i}", "attempt": 1, "outcome": o, "timeline": []}],
            }
            for i, o in enumerate(outcomes)
        ],
    }
    return build(Journal, data, "test")


@pytest.mark.parametrize(
    ("outcomes", "code"),
    [
        (["passed", "skipped"], 0),
        (["passed", "deviated"], 1),
        (["aborted"], 1),
        (["deviated", "error"], 2),
        (["baseline-not-met"], 2),
        ([], 2),
    ],
)
def test_exit_codes(outcomes, code):
    assert exit_code(_journal(*outcomes)) == code


def test_junit_marks_deviations_as_failures_and_lab_trouble_as_errors():
    import xml.etree.ElementTree as ET

    root = ET.fromstring(junit(_journal("passed", "deviated", "error", "skipped")))
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "4",
        "1",
        "1",
        "1",
    )
    assert "x.s1" in table(_journal("passed", "deviated"))


def test_error_budget_counts_only_recent_finished_operations():
    from chaos_runner.analysis.history import Operation
    from chaos_runner.model.scenario import Abort
    from chaos_runner.run.attempt import error_budget_blown

    s = 1_000_000_000

    def op(start: float, end: float, outcome: str) -> Operation:
        return Operation(0, "query", int(start * s), int(end * s), outcome)  # type: ignore[arg-type]

    abort = Abort(max_error_rate=0.5, sustained_s=2)
    ops = [op(8.1, 8.2, "fail"), op(8.5, 8.6, "fail"), op(9.0, 9.1, "fail"), op(9.2, 9.3, "ok")]
    assert error_budget_blown(ops, 10 * s, abort) is None  # only 4: too few to judge
    ops.append(op(9.5, 9.6, "fail"))
    assert "0.80" in error_budget_blown(ops, 10 * s, abort)
    # Two seconds later every one of them has fallen out of the window...
    assert error_budget_blown([*ops, op(9.9, 12.0, "fail")], 12 * s, abort) is None
    # ...but slow failures count when they end, however long ago they started.
    slow = [op(5.0 + i / 10, 11.5 + i / 10, "fail") for i in range(5)]
    assert error_budget_blown(slow, 12 * s, abort) is not None
    # An operation still running is not counted before it ends.
    assert error_budget_blown([*ops, op(9.7, 11.0, "fail")], 10 * s, abort) is not None
    assert error_budget_blown(ops, 10 * s, Abort()) is None  # no budget configured
