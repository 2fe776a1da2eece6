#!/usr/bin/env python3
"""How much of a catalog run is spent outside the scenarios' own windows.

Prints, for one run, its wall time, the sum over every attempt of the windows its scenario
defines (settle + baseline + hold + recovery; an attempt skipped or stopped before its hold
counts only what it ran), and their ratio (target <= 1.2: the rest is gates, injects,
heals, verification and the runner itself). Either reads an existing run or runs the
selection first.

    .venv/bin/python benchmarks/catalog_overhead.py runs/run-...        # an existing run
    .venv/bin/python benchmarks/catalog_overhead.py --run phase1 phase2 # run it, then measure
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chaos_runner.analysis.metrics import NS_PER_S  # noqa: E402
from chaos_runner.results.records import AttemptRecord, read_journal  # noqa: E402
from chaos_runner.run.timeline import Timeline  # noqa: E402


def attempt_window_s(attempt: AttemptRecord) -> float:
    """The scenario's own windows as this attempt lived them: from the load's start (settle,
    baseline, hold, recovery follow) to the end of its recovery window, or to its last event
    when it stopped early (0 when it never started its load)."""
    timeline = Timeline(events=attempt.timeline)
    start = timeline.first("load-start")
    if start is None:
        return 0.0
    end = timeline.first("recovery-end") or max(e["ns"] for e in attempt.timeline)
    return (end - start) / NS_PER_S


def measure(run_dir: Path) -> None:
    journal = read_journal(run_dir)
    if not journal.started_at or not journal.finished_at:
        sys.exit(f"{run_dir}: the run has not finished (no finished_at in its journal)")
    wall = (
        datetime.fromisoformat(journal.finished_at) - datetime.fromisoformat(journal.started_at)
    ).total_seconds()
    windows = 0.0
    attempts = 0
    for record in journal.scenarios:
        for attempt in record.attempts:
            attempts += 1
            windows += attempt_window_s(attempt)
    print(f"run {journal.run_id}: {len(journal.scenarios)} scenarios, {attempts} attempts")
    print(f"wall time              {wall:8.1f} s")
    print(f"scenario windows       {windows:8.1f} s  (settle + baseline + hold + recovery)")
    ratio = wall / windows if windows else float("inf")
    print(f"wall / windows         {ratio:8.2f}    (target <= 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", nargs="?", type=Path, help="runs/<run_id> to measure")
    parser.add_argument("--run", nargs="+", metavar="SELECTOR", help="run this selection first")
    args = parser.parse_args()
    if args.run:
        runs = REPO / "runs"
        before = set(runs.glob("run-*")) if runs.is_dir() else set()
        subprocess.run([sys.executable, "-m", "chaos_runner.cli", "run", *args.run], cwd=REPO)
        new = sorted(set(runs.glob("run-*")) - before)
        if not new:
            sys.exit("the run left no run directory")
        measure(new[-1])
    elif args.run_dir:
        measure(args.run_dir)
    else:
        parser.error("give a run directory or --run SELECTOR...")


if __name__ == "__main__":
    main()
