"""chaoslab trend over hand-built runs: outcomes in order, environment changes marked."""

from __future__ import annotations

import json
import re
from pathlib import Path

from chaos_runner.reports.trend import journals, series, table, write_html


def run(runs: Path, name: str, started: str, env: str, outcome: str, p95: float) -> None:
    (runs / name).mkdir(parents=True)
    body = {
        "run_id": name, "schema_version": 2, "started_at": started,
        "environment": {"key": env},
        "scenarios": [{"scenario": "net.db-stopped", "outcome": outcome, "chosen_attempt": 1,
                       "attempts": [{"scenario": "net.db-stopped", "attempt": 1,
                                     "outcome": outcome, "metrics": {"fault_p95_ms": p95}}]}],
    }  # fmt: skip
    (runs / name / "journal.json").write_text(json.dumps(body))


def test_outcomes_oldest_first_with_environment_changes_marked(tmp_path):
    run(tmp_path, "run-2", "2026-11-27T02:00:00", "lab-fraiseql1.31.1", "deviated", 4800.0)
    run(tmp_path, "run-1", "2026-11-27T01:00:00", "lab-fraiseql1.9.16", "passed", 4700.0)
    run(tmp_path, "run-3", "2026-11-27T03:00:00", "lab-fraiseql1.31.1", "deviated", 4900.0)
    (tmp_path / "lab-up-x").mkdir()  # not a scenario run
    (tmp_path / "run-broken").mkdir()
    (tmp_path / "run-broken" / "journal.json").write_text("{")
    runs = journals(tmp_path)
    assert [j.run_id for j in runs] == ["run-1", "run-2", "run-3"]
    points = series(runs)
    assert re.search(r"net\.db-stopped\s+P\|DD\s+deviated\s+4900", table(points))
    assert [j.run_id for j in journals(tmp_path, last=2)] == ["run-2", "run-3"]
    page = write_html(tmp_path / "trend.html", runs, points)
    html = page.read_text()
    (block,) = re.findall(r'id="trend-data">(.*?)</script>', html, re.S)
    figure = json.loads(block)
    assert figure["data"][0]["y"] == [4700.0, 4800.0, 4900.0]
    assert [s["x0"] for s in figure["layout"]["shapes"]] == [0.5]  # the environment change
    assert (tmp_path / "plotly.min.js").is_file()
