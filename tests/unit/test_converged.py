"""`lab up` on a lab that is up: it converges unless the last whole converge had the same
inputs, the guests are the processes it configured and every status check passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos_runner.target import converged
from chaos_runner.target.lab import Check, LabSettings


@pytest.fixture()
def settings(tmp_path: Path) -> LabSettings:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "lab.yml").write_text("all: {}\n")
    state = tmp_path / "state"
    (state / "secrets").mkdir(parents=True)
    (state / "secrets" / "postgresql_app_password").write_text("first\n")
    return LabSettings(state_dir=state, inventory=inventory)


def checks(guest_pid: int = 100, healthy: bool = True) -> list[Check]:
    return [
        Check("app1", "guest", True, f"pid {guest_pid}, release trixie"),
        Check("app1", "fraiseql 1.9.16 /health", healthy, "ok" if healthy else "refused"),
    ]


def test_a_recorded_converge_with_the_same_inputs_guests_and_health_has_nothing_to_do(settings):
    assert converged.unchanged(settings, "x", checks()) == (
        False,
        "no complete converge is recorded",
    )
    print_ = converged.fingerprint(settings, {"lab_state_dir": "/s"})
    converged.record(settings, print_, checks())
    record = settings.state_dir / converged.RECORD
    assert record.stat().st_mode & 0o777 == 0o600
    assert json.loads(record.read_text())["guests"] == {"app1": "pid 100, release trixie"}
    done, when = converged.unchanged(settings, print_, checks())
    assert done and when == json.loads(record.read_text())["at"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("extravars", "inputs changed since the last converge"),
        ("inventory", "inputs changed since the last converge"),
        ("secret", "inputs changed since the last converge"),
        ("rebooted guest", "a guest is not the process the last converge configured"),
        ("unhealthy", "status checks fail: app1 fraiseql 1.9.16 /health"),
        ("forgotten", "no complete converge is recorded"),
    ],
)
def test_any_difference_converges_and_says_why(settings, change, why):
    extravars = {"lab_state_dir": "/s"}
    converged.record(settings, converged.fingerprint(settings, extravars), checks())
    now = checks()
    if change == "extravars":
        extravars = {**extravars, "fraiseql_version": "0.5.3"}
    elif change == "inventory":
        (settings.inventory / "lab.yml").write_text("all: {hosts: {app1: {}}}\n")
    elif change == "secret":
        (settings.state_dir / "secrets" / "postgresql_app_password").write_text("second\n")
    elif change == "rebooted guest":
        now = checks(guest_pid=200)
    elif change == "unhealthy":
        now = checks(healthy=False)
    elif change == "forgotten":
        converged.forget(settings)
    assert converged.unchanged(settings, converged.fingerprint(settings, extravars), now) == (
        False,
        why,
    )


def test_the_fingerprint_covers_the_roles_and_the_agent(settings):
    inputs = converged._files(converged.REPO_ROOT / p for p in converged.REPO_INPUTS)
    names = {p.relative_to(converged.REPO_ROOT).as_posix() for p in inputs}
    assert "roles/fraiseql/tasks/main.yml" in names
    assert "agent/chaosfault/agent.py" in names
    assert "playbooks/site.yml" in names
    assert not any("__pycache__" in n for n in names)
