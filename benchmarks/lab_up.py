#!/usr/bin/env python3
"""Lab-up wall time: cold (purged: templates built, PyPI cache empty), cached (after
`lab down`, templates and caches kept), warm (already up: nothing to converge) and a warm
`lab up --converge` (the playbooks run on the lab that is up and change nothing).

Prints the times and their ratios, measured in one run. Leaves the lab up.
Run as root: .venv/bin/python benchmarks/lab_up.py [--skip-cold]
Targets (issue 8): warm <= 30 s, cached <= 3 min.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def chaoslab(*args: str) -> float:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "chaos_runner.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"chaoslab {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--skip-cold", action="store_true", help="do not purge caches (no downloads)"
    )
    args = parser.parse_args()
    results: dict[str, float] = {}
    if not args.skip_cold:
        chaoslab("lab", "down", "-q", "--purge")
        results["cold (purged: templates, PyPI cache, keys, PKI)"] = chaoslab("lab", "up", "-q")
    chaoslab("lab", "down", "-q")
    results["cached (after down: templates, PyPI cache kept)"] = chaoslab("lab", "up", "-q")
    results["warm (already up: nothing to converge)"] = chaoslab("lab", "up", "-q")
    results["warm --converge (playbooks, no change)"] = chaoslab("lab", "up", "-q", "--converge")
    warm = results["warm (already up: nothing to converge)"]
    cached = results["cached (after down: templates, PyPI cache kept)"]
    width = max(map(len, results))
    for name, seconds in results.items():
        print(f"{name:<{width}}  {seconds:7.1f} s   {seconds / warm:6.1f}x warm")
    for name, seconds, target in (("warm", warm, 30.0), ("cached", cached, 180.0)):
        verdict = "met" if seconds <= target else "NOT met"
        print(f"{name + ' target':<{width}}  {target:7.1f} s   {verdict}")


if __name__ == "__main__":
    main()
