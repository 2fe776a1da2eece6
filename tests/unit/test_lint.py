"""Lint and types are part of the test command (ruff + mypy --strict on chaos_runner and the
fault agent, chaosfault)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PATHS = [
    "chaos_runner",
    "tests",
    "scripts",
    "benchmarks",
    "library",
    "molecule",
    "agent",
]


def test_ruff():
    proc = subprocess.run(
        [str(BIN / "ruff"), "check", *PATHS], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout


def test_mypy_strict():
    proc = subprocess.run(
        [str(BIN / "mypy")], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout
