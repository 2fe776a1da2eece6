"""No generated secret leaks: not into run artifacts, the controller's lab state outside its
secrets directory, nor any world-readable file of a guest (issue 8: secrets and privileges
as on a cluster you would trust)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from chaos_runner.target.lab import LabState, on_host
from tests.conftest import REPO, chaoslab

pytestmark = pytest.mark.integration


def _secrets(lab: LabState) -> dict[str, bytes]:
    directory = lab.settings.state_dir / "secrets"
    found = {p.name: lab.settings.secret(p.name).encode() for p in sorted(directory.iterdir())}
    assert {"postgresql_app_password", "postgresql_chaos_password"} <= set(found), found.keys()
    for p in directory.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    return found


def _holders(files: list[Path], secrets: dict[str, bytes]) -> list[str]:
    hits = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        hits += [f"{path}: {name}" for name, value in secrets.items() if value in data]
    return hits


def _world_readable(root: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.stat().st_mode & stat.S_IROTH
    ]


def test_no_generated_secret_in_artifacts_state_or_world_readable_guest_files(lab, tmp_path):
    secrets = _secrets(lab)
    # A run of our own, so its artifacts (journal, ansible events, histories) are scanned too.
    proc = chaoslab("--runs-dir", str(tmp_path), "run", "net.db-blackhole", timeout=900)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    artifacts = [p for p in tmp_path.rglob("*") if p.is_file()]
    artifacts += [p for p in (REPO / "runs").rglob("*") if p.is_file()]
    state = [
        p
        for p in lab.settings.state_dir.rglob("*")
        if p.is_file()
        and "secrets" not in p.relative_to(lab.settings.state_dir).parts[:1]
        and "guests" not in p.relative_to(lab.settings.state_dir).parts[:1]
    ]
    # A guest's own files are the ones it changed on top of its template (the overlay's
    # upper directory): every secret a role wrote is there.
    guests = {h: Path(v["guest_dir"]) / "upper" for h, v in lab.hosts.items()}
    readable = [p for upper in guests.values() for p in _world_readable(upper)]
    assert len(artifacts) > 10 and len(readable) > 10, (len(artifacts), len(readable))
    assert _holders(artifacts + state + readable, secrets) == []

    # The scan can find what it looks for: the app's secret environment holds the password,
    # readable by root only, and systemd hands it to the unit.
    env = guests["app1"] / "srv/chaoslab/app1/etc/fraiseql.env"
    assert _holders([env], secrets) == [f"{env}: postgresql_app_password"]
    assert stat.S_IMODE(env.stat().st_mode) == 0o600 and env.stat().st_uid == 0
    unit = on_host(lab, "app1", "systemctl", "show", "-p", "User", "--value", "chaoslab-fraiseql")
    assert unit.stdout.strip() == "fraiseql"
