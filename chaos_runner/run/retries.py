"""Attempts until there is a verdict; deviations confirmed; disagreeing attempts `flaky`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chaos_runner.model.scenario import Scenario
from chaos_runner.run.attempt import RunContext, run_attempt

VERDICTS = ("passed", "deviated")
NO_VERDICT = ("baseline-not-met", "fault-not-effective", "aborted", "error")

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
        if settled(attempts, ctx.config.confirm_deviations):
            break
    return summarize_attempts(scenario.id, attempts)


def settled(attempts: list[dict[str, Any]], confirm_deviations: bool) -> bool:
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
