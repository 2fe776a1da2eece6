"""Every outcome of SCENARIOS.md across attempts, with the verdicts coming from `judge`.

An attempt here is either hand-built evidence (judged as run_attempt's `_conclude` does:
the verdict and a reason naming every failing check) or an outcome that happens before
any evidence exists (gate, verify, abort, lab failure, missing capability). The retry
policy itself is tested on scripted outcomes in test_retries.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from chaos_runner.analysis.checkers import Evidence, judge
from chaos_runner.run.retries import NO_VERDICT, VERDICTS, run_scenario
from tests.unit.test_checkers import MS, evidence, passing
from tests.unit.test_retries import SCENARIO, ctx

OUTCOMES = (
    "passed",
    "deviated",
    "baseline-not-met",
    "fault-not-effective",
    "aborted",
    "error",
    "skipped",
)

PASS = passing("tolerate")
CRASH = replace(PASS, restarts=[{"ns": 1500 * MS, "old_pid": 10, "new_pid": 11}])


def attempts(items: list[Evidence | str]):
    """An attempt function: evidence is judged, a string is an outcome without a verdict."""
    calls: list[int] = []

    def attempt(scenario, ctx, number: int) -> dict[str, Any]:
        calls.append(number)
        item = items[number - 1]
        result: dict[str, Any] = {
            "scenario": scenario.id,
            "attempt": number,
            "timeline": [],
            "faults": [],
        }
        if isinstance(item, str):
            return {**result, "outcome": item, "reason": f"{item} in attempt {number}"}
        outcome, checks = judge(item)
        return {
            **result,
            "outcome": outcome,
            "reason": "; ".join(
                f"{c.name}: {c.measured} (expected {c.expected})" for c in checks if not c.ok
            ),
            "checks": [c.as_dict() for c in checks],
        }

    return attempt, calls


def test_the_outcomes_are_the_verdicts_the_no_verdicts_and_skipped():
    assert (*VERDICTS, *NO_VERDICT, "skipped") == OUTCOMES


@pytest.mark.parametrize(
    ("items", "tries", "final", "flaky"),
    [
        pytest.param([PASS], 1, "passed", False, id="passed"),
        pytest.param([CRASH, CRASH], 2, "deviated", False, id="deviated-confirmed"),
        pytest.param(["baseline-not-met"] * 3, 3, "baseline-not-met", False, id="baseline"),
        pytest.param(["fault-not-effective"] * 3, 3, "fault-not-effective", False, id="verify"),
        pytest.param(["aborted"] * 3, 3, "aborted", False, id="aborted"),
        pytest.param(["error"] * 3, 3, "error", False, id="error"),
        pytest.param(["skipped"], 1, "skipped", False, id="skipped"),
        pytest.param([CRASH, PASS, PASS], 3, "passed", True, id="flaky-passed"),
        pytest.param([CRASH, PASS, CRASH], 3, "deviated", True, id="flaky-deviated"),
        pytest.param(["baseline-not-met", PASS], 2, "passed", False, id="gate-then-pass"),
        pytest.param(["error", CRASH, CRASH], 3, "deviated", False, id="error-then-deviated"),
    ],
)
def test_every_outcome_across_attempts(items, tries, final, flaky):
    attempt, calls = attempts(items)
    result = run_scenario(SCENARIO, ctx(), attempt)
    assert calls == list(range(1, tries + 1))
    assert (result["outcome"], result["flaky"]) == (final, flaky)
    assert result["outcome"] in OUTCOMES


def test_a_deviation_is_confirmed_by_a_second_attempt_and_says_why():
    attempt, calls = attempts([CRASH, CRASH, PASS])
    result = run_scenario(SCENARIO, ctx(), attempt)
    assert calls == [1, 2]
    assert result["reason"] == "FraiseQL restarts: 1 (expected <= 0)"
    failing = [c for c in result["attempts"][1]["checks"] if not c["ok"]]
    assert failing == [
        {
            "name": "FraiseQL restarts",
            "ok": False,
            "measured": 1,
            "expected": "<= 0",
            "detail": "pid 10 -> 11",
        }
    ]


def test_a_scenario_restarting_fraiseql_itself_passes():
    intended = replace(CRASH, intended_restarts=[(1000 * MS, 2000 * MS)])
    attempt, _ = attempts([intended])
    result = run_scenario(SCENARIO, ctx(), attempt)
    assert result["outcome"] == "passed"
    [restarts] = [c for c in result["attempts"][0]["checks"] if c["name"] == "FraiseQL restarts"]
    assert restarts["measured"] == 0 and "1 intended restart" in restarts["detail"]


def test_unmeasured_evidence_never_passes():
    blind = replace(PASS, process_samples=None)
    attempt, _ = attempts([blind, blind])
    result = run_scenario(SCENARIO, ctx(), attempt)
    assert result["outcome"] == "deviated"
    assert result["reason"] == "FraiseQL restarts: None (expected <= 0)"


@pytest.mark.parametrize("class_", ["tolerate", "fail-fast", "reject", "consistent"])
def test_every_expectation_class_passes_and_deviates(class_):
    attempt, _ = attempts([passing(class_)])
    assert run_scenario(SCENARIO, ctx(), attempt)["outcome"] == "passed"
    # The same class with nothing measured during the fault (no operation, no probe, no
    # ledger or counter) deviates, and the deviation is confirmed.
    empty = evidence(class_, [], probe_ops=[], ledger=None, counter=None)
    attempt, calls = attempts([empty, empty])
    result = run_scenario(SCENARIO, ctx(), attempt)
    assert (result["outcome"], calls) == ("deviated", [1, 2])
    assert result["reason"]
