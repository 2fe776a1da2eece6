"""Static checks every role must pass (style: argument_specs, READMEs, FQCN modules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir())


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_has_argument_specs_for_every_public_default(role):
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert "main" in specs
    declared = set().union(*((s.get("options") or {}).keys() for s in specs.values()))
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    public = {k for k in defaults if not k.startswith("__")}
    assert public <= declared, sorted(public - declared)


TASK_KEYWORDS = {
    "name",
    "when",
    "loop",
    "loop_control",
    "register",
    "vars",
    "tags",
    "changed_when",
    "failed_when",
    "check_mode",
    "delegate_to",
    "run_once",
    "throttle",
    "until",
    "retries",
    "delay",
    "no_log",
    "environment",
    "ignore_errors",
    "become",
    "become_user",
    "notify",
    "args",
    "any_errors_fatal",
    "diff",
    "async",
    "poll",
}


def _actions(tasks, where):
    for task in tasks or []:
        for block_key in ("block", "rescue", "always"):
            if block_key in task:
                yield from _actions(task[block_key], where)
        if any(k in task for k in ("block", "rescue", "always")):
            continue
        action = [k for k in task if k not in TASK_KEYWORDS]
        assert len(action) == 1, f"{where}: task {task.get('name')!r} has keys {action}"
        yield task.get("name"), action[0]


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_tasks_use_fully_qualified_modules(role):
    for task_file in (role / "tasks").glob("*.yml"):
        for name, action in _actions(yaml.safe_load(task_file.read_text()), task_file):
            # lab_pki is this repository's own module (library/).
            assert "." in action or action == "lab_pki", f"{task_file}: {name!r} uses {action!r}"


def test_role_readmes_are_current():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "role_readmes.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


def test_playbooks_pass_syntax_check():
    for playbook in ("lab_up", "lab_down", "site"):
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                "--syntax-check",
                "-i",
                str(REPO / "inventory" / "lab"),
                str(REPO / "playbooks" / f"{playbook}.yml"),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
