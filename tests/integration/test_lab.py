"""The lab itself: status, idempotence, repair of a half-up lab, and refusals of bad input."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaos_runner.target.lab import LabState, on_host, start_on_host
from tests.conftest import REPO, chaoslab

pytestmark = pytest.mark.integration


def test_status_reports_every_host_healthy(lab):
    proc = chaoslab("lab", "status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in ("db1", "proxy1", "app1", "auth1"):
        assert host in proc.stdout
    for program in ("postgresql", "haproxy", "fraiseql", "nginx"):
        assert program in proc.stdout
    for check in ("guest", "root", "ssh port", "fault agent"):
        assert check in proc.stdout
    assert "checks ok" in proc.stderr


def test_lab_up_twice_changes_nothing_and_then_has_nothing_to_converge(lab, lab_settings):
    # A converge of every host (substrate and site) on the lab that is up changes nothing...
    again = chaoslab("lab", "up", "-q", "--converge")
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(r"lab up: done in .*, 0 changed task results\)", again.stderr), again.stderr
    # ... and records it: the next `lab up` finds the same inputs, guests and health, and
    # runs no playbook (no artifacts directory, nothing converged).
    runs = set((REPO / "runs").glob("lab-up-*"))
    quick = chaoslab("lab", "up", "-q")
    assert quick.returncode == 0, quick.stderr[-3000:]
    assert "lab up: nothing to converge" in quick.stderr, quick.stderr
    assert "checks ok" in quick.stderr
    assert set((REPO / "runs").glob("lab-up-*")) == runs


def test_a_half_up_lab_is_reported_and_repaired(lab, lab_settings):
    # One guest stops (SIGTERM to its systemd-nspawn: a clean shutdown), another loses a
    # program (stopped inside the guest, behind the service layer's back).
    nspawn_pid = int(Path(lab.hosts["auth1"]["nspawn_pidfile"]).read_text().split()[0])
    os.kill(nspawn_pid, signal.SIGTERM)
    on_host(lab, "proxy1", "systemctl", "stop", "chaoslab-haproxy.service")
    for _ in range(100):
        if not Path(f"/proc/{nspawn_pid}").exists():
            break
        time.sleep(0.1)

    broken = chaoslab("lab", "status")
    assert broken.returncode == 2
    failing = [line for line in broken.stdout.splitlines() if "FAIL" in line]
    for host, check in (("auth1", "guest"), ("auth1", "ssh port"), ("proxy1", "haproxy")):
        assert any(line.startswith(host) and check in line for line in failing), broken.stdout
    assert "repairs a half-up lab" in broken.stderr

    repaired = chaoslab("lab", "up", "-q", "--limit", "auth1,proxy1")
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert chaoslab("lab", "status").returncode == 0


def test_an_unsupported_fraiseql_version_is_named(lab):
    proc = chaoslab("lab", "up", "-q", "--check", "--limit", "app1", "--fraiseql-version", "1.8.0")
    assert proc.returncode == 2
    assert "fraiseql_version" in proc.stderr and "1.8.0" in proc.stderr, proc.stderr[-2000:]
    assert "1.9.16" in proc.stderr and "0.5.3" in proc.stderr


def _copy_inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory" / "lab", inv)
    return inv


def test_a_missing_host_group_is_named(lab, tmp_path):
    inv = _copy_inventory(tmp_path)
    text = (inv / "hosts.yml").read_text()
    cut = text.index("        auth:")
    (inv / "hosts.yml").write_text(text[:cut])
    proc = chaoslab("--inventory", str(inv), "lab", "up", "-q")
    assert proc.returncode == 2
    assert "no hosts in group(s) auth" in proc.stderr


def test_a_non_lab_host_is_refused_before_any_connection(lab, tmp_path):
    inv = _copy_inventory(tmp_path)
    (inv / "hosts.yml").write_text(
        (inv / "hosts.yml").read_text().replace("198.18.0.11", "10.9.8.7")
    )
    proc = chaoslab("--inventory", str(inv), "lab", "up", "-q")
    assert proc.returncode == 2
    assert "db1 (10.9.8.7) is not on the lab network" in proc.stderr

    # The playbook itself refuses too (for `ansible-playbook`/ansible-runner users), and
    # stops before any play connects to a host.
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    direct = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(inv),
            str(REPO / "playbooks" / "site.yml"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert direct.returncode != 0
    assert "refusing to act on 'db1' (10.9.8.7)" in direct.stdout
    assert "Gathering Facts" not in direct.stdout


def test_a_taken_port_is_named_and_nothing_changes(lab):
    address = lab.hosts["proxy1"]["address"]
    listener = start_on_host(
        lab,
        "proxy1",
        "python3",
        "-c",
        "import socket, time; s = socket.socket();"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
        f"s.bind(('{address}', 6543)); s.listen(); time.sleep(120)",
    )
    try:
        time.sleep(0.5)
        proc = chaoslab("lab", "up", "-q", "--check", "--limit", "proxy1", "-e", "proxy_port=6543")
        assert proc.returncode == 2
        assert f"{address}:6543 on proxy1 is already taken by another process" in proc.stderr, (
            proc.stderr[-2000:]
        )
    finally:
        on_host(lab, "proxy1", "kill", str(listener), check=False)
    assert chaoslab("lab", "status").returncode == 0


def test_a_bridge_name_taken_by_another_interface_is_named_and_nothing_changes(lab):
    # An interface of another kind under the name the lab would use for its bridge: the
    # preflight refuses before anything is created, and the lab that is up is untouched.
    taken = "chaostaken0"
    subprocess.run(
        ["ip", "link", "add", taken, "type", "veth", "peer", "name", "chaostaken1"], check=True
    )
    try:
        proc = chaoslab("lab", "up", "-q", "--check", "-e", f"lab_bridge={taken}")
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"interface {taken} already exists and is a veth interface (not a bridge)" in (
            proc.stderr
        ), proc.stderr[-2000:]
        assert f"ip link del {taken}" in proc.stderr
    finally:
        subprocess.run(["ip", "link", "del", taken], check=True)
    assert chaoslab("lab", "status").returncode == 0


def test_traffic_to_a_lab_address_is_refused_when_the_bridge_route_is_missing(lab):
    from chaos_runner.errors import AddressRefused
    from chaos_runner.target.netguard import NetworkGuard

    # 198.18.0.0/24 is routed to labbr0 only while the lab is up; another bridge name
    # stands for "the route is elsewhere" without touching the real routing table.
    with pytest.raises(AddressRefused, match="not the lab bridge"):
        NetworkGuard(bridge="labbr-missing").check(lab.hosts["db1"]["address"])
    assert LabState.load(lab.settings).guard.check(lab.hosts["db1"]["address"])
