"""chaoslab compare on hand-built journals: a regression made on purpose is flagged and
exits 1; equal runs exit 0; A's confidence interval and the margins decide."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chaos_runner.reports.compare import compare, mean_ci, regressions
from chaos_runner.results.records import read_journal

REPO = Path(__file__).resolve().parents[2]


def journal(tmp_path: Path, name: str, outcome: str, attempts: list[dict]) -> Path:
    where = tmp_path / name
    where.mkdir()
    body = {
        "run_id": name, "schema_version": 2, "environment": {"fraiseql": "1.31.1"},
        "scenarios": [{
            "scenario": "net.latency-constant", "outcome": outcome, "chosen_attempt": 1,
            "attempts": [{"scenario": "net.latency-constant", "attempt": i + 1,
                          "outcome": outcome, "metrics": m} for i, m in enumerate(attempts)],
        }],
    }  # fmt: skip
    (where / "journal.json").write_text(json.dumps(body))
    return where


def metrics(p95: float, errors: float = 0.0, recovery: float = 1.0) -> dict:
    return {"fault_p95_ms": p95, "fault_error_rate": errors, "recovery_s": recovery,
            "first_success_s": 0.2, "bite_s": 0.05}  # fmt: skip


def rows_of(tmp_path, a: list[dict], b: list[dict], out_a="passed", out_b="passed"):
    pair = tmp_path / f"pair-{len(list(tmp_path.glob('pair-*')))}"
    pair.mkdir()
    ja = read_journal(journal(pair, "a", out_a, a))
    jb = read_journal(journal(pair, "b", out_b, b))
    return {r.metric: r for r in compare(ja, jb)}


def test_equal_runs_have_no_regression(tmp_path):
    rows = rows_of(tmp_path, [metrics(120)], [metrics(120)])
    assert {r.verdict for m, r in rows.items() if m != "bite_s"} == {"same"}


def test_a_latency_beyond_the_interval_and_margin_is_a_regression(tmp_path):
    # A: 100, 110, 120 ms -> mean 110, CI ±24.8 (t=4.303, sd 10); limit 110 + 24.8 + 22.
    a = [metrics(100), metrics(110), metrics(120)]
    assert round(mean_ci([100, 110, 120])[1] or 0, 1) == 24.8
    assert rows_of(tmp_path, a, [metrics(156)])["fault_p95_ms"].verdict == "same"
    worse = rows_of(tmp_path, a, [metrics(160)])["fault_p95_ms"]
    assert worse.verdict == "regression" and worse.note == "limit 156.8ms"


def test_small_absolute_changes_are_within_the_floor(tmp_path):
    # 3 ms -> 20 ms is under the 20 ms floor; 0.00 -> 0.015 errors under 0.02.
    rows = rows_of(tmp_path, [metrics(3)], [metrics(20, errors=0.015)])
    assert rows["fault_p95_ms"].verdict == "same"
    assert rows["fault_error_rate"].verdict == "same"


def test_an_outcome_that_gets_worse_is_a_regression_and_a_better_one_is_said(tmp_path):
    rows = rows_of(tmp_path, [metrics(100)], [metrics(100)], "passed", "deviated")
    assert rows["outcome"].verdict == "regression"
    back = rows_of(tmp_path, [metrics(100)], [metrics(100)], "deviated", "passed")
    assert back["outcome"].verdict == "better"


def test_the_cli_exits_1_on_a_regression_0_without_and_writes_html(tmp_path):
    a = journal(tmp_path, "run-a", "passed", [metrics(100)])
    b = journal(tmp_path, "run-b", "passed", [metrics(100, errors=0.5)])
    same = journal(tmp_path, "run-c", "passed", [metrics(100)])

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chaos_runner.cli", "--runs-dir", str(tmp_path), *args],
            cwd=REPO, capture_output=True, text=True, check=False,
        )  # fmt: skip

    bad = cli("compare", "run-a", "run-b")
    assert bad.returncode == 1, bad.stderr
    assert "REGRESSION" in bad.stdout and "1 regression(s) of run-b against run-a" in bad.stderr
    assert "regression" in (b / "compare-run-a.html").read_text()
    good = cli("compare", str(a), str(same))
    assert good.returncode == 0, good.stdout + good.stderr
    missing = cli("compare", "run-a", "no-such-run")
    assert missing.returncode == 2 and "cannot read the journal" in missing.stderr


def test_regressions_lists_only_regressions(tmp_path):
    rows = list(rows_of(tmp_path, [metrics(100)], [metrics(900, recovery=9)]).values())
    assert sorted(r.metric for r in regressions(rows)) == ["fault_p95_ms", "recovery_s"]


def test_a_run_that_never_recovers_regresses(tmp_path):
    never = {**metrics(100), "recovery_s": None, "first_success_s": None}
    rows = rows_of(tmp_path, [metrics(100)], [metrics(100), never])
    assert rows["recovery_s"].verdict == "regression" and rows["recovery_s"].b == "never"
    assert rows["first_success_s"].verdict == "regression"
    back = rows_of(tmp_path, [never], [metrics(100)])
    assert back["recovery_s"].verdict == "better"


def test_the_interval_uses_students_t_for_many_attempts():
    values = [100.0, 102.0, 98.0, 101.0, 99.0, 100.0, 100.0]  # 6 degrees of freedom
    _, ci = mean_ci(values)
    assert round(ci or 0, 3) == round(2.447 * 1.2909944 / 7**0.5, 3)
