#!/usr/bin/env python3
"""Lab-up wall time: cold (purged caches), after down (caches kept), warm (already up).

Prints the three times and their ratios, measured in one run. Leaves the lab up.
Run as root: .venv/bin/python benchmarks/lab_up.py [--skip-cold]
Target: warm <= 90 s.
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
    results["after down (venv cache kept)"] = chaoslab("lab", "up", "-q")
    results["warm (already up, no change)"] = chaoslab("lab", "up", "-q")
    warm = results["warm (already up, no change)"]
    width = max(map(len, results))
    for name, seconds in results.items():
        print(f"{name:<{width}}  {seconds:7.1f} s   {seconds / warm:5.2f}x warm")
    print(f"{'warm target':<{width}}     90.0 s   {'met' if warm <= 90 else 'NOT met'}")


if __name__ == "__main__":
    main()
