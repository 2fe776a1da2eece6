"""The roles and playbooks pass ansible-lint at its strictest profile (production).

Offline: ansible-lint never tries to install collections or refresh its schemas from the
network, so the result depends only on the checkout and the pinned linter.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_ansible_lint_production_profile():
    proc = subprocess.run(
        [
            str(BIN / "ansible-lint"),
            "--offline",
            "--profile",
            "production",
            "--nocolor",
            "-f",
            "pep8",
            "roles",
            "playbooks",
        ],
        cwd=REPO,
        # ansible-lint runs ansible-playbook --syntax-check: the venv's, not another one.
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
