"""roles/lab/files/lab_guest_files.py: identity files written in one step, only those differing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WRITER = Path(__file__).resolve().parents[2] / "roles" / "lab" / "files" / "lab_guest_files.py"


def write(root: Path, spec: list[dict]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(WRITER), str(root)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=30,
    )


def changed(root: Path, spec: list[dict]) -> list[str]:
    done = write(root, spec)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["changed"]


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_writes_contents_and_copies_with_modes_then_changes_nothing(tmp_path: Path):
    root, key = tmp_path / "root", tmp_path / "host_key"
    root.mkdir()
    key.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    spec = [
        {"path": "etc/hostname", "content": "db1\n"},
        {"path": "sbin/chaoslab-init", "content": "#!/bin/sh\n", "mode": "0755"},
        {"path": "etc/ssh/ssh_host_ed25519_key", "src": str(key), "mode": "0600"},
        {
            "path": "root/.ssh/authorized_keys",
            "content": "ssh-ed25519 AAAA lab\n",
            "mode": "0600",
            "dir_mode": "0700",
        },
    ]
    done = write(root, spec)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changed"] == [entry["path"] for entry in spec]
    assert "secret" not in done.stdout + done.stderr
    assert (root / "etc/hostname").read_text() == "db1\n" and mode(root / "etc/hostname") == 0o644
    assert mode(root / "sbin/chaoslab-init") == 0o755
    assert (root / "etc/ssh/ssh_host_ed25519_key").read_bytes() == key.read_bytes()
    assert mode(root / "etc/ssh/ssh_host_ed25519_key") == 0o600
    assert mode(root / "root/.ssh") == 0o700 and mode(root / "root/.ssh/authorized_keys") == 0o600
    assert changed(root, spec) == []
    assert sorted(p.name for p in (root / "etc").iterdir()) == ["hostname", "ssh"]


def test_rewrites_only_a_file_whose_bytes_or_mode_differ(tmp_path: Path):
    spec = [
        {"path": "etc/hostname", "content": "db1\n"},
        {"path": "etc/hosts", "content": "127.0.0.1 localhost\n"},
    ]
    assert len(changed(tmp_path, spec)) == 2
    (tmp_path / "etc/hosts").chmod(0o600)
    assert changed(tmp_path, spec) == ["etc/hosts"] and mode(tmp_path / "etc/hosts") == 0o644
    spec[0]["content"] = "db2\n"
    assert (
        changed(tmp_path, spec) == ["etc/hostname"]
        and (tmp_path / "etc/hostname").read_text() == "db2\n"
    )


def test_refuses_a_path_outside_the_root_a_missing_root_and_a_bad_spec(tmp_path: Path):
    escape = write(tmp_path, [{"path": "../outside", "content": "x"}])
    assert escape.returncode == 2 and "outside the guest root" in escape.stderr
    assert not (tmp_path.parent / "outside").exists()
    missing = write(tmp_path / "absent", [])
    assert missing.returncode == 2 and "is the guest root mounted?" in missing.stderr
    no_source = write(tmp_path, [{"path": "etc/x"}])
    assert no_source.returncode == 2 and "src" in no_source.stderr
