"""common: guard, per-host layout, a program as a systemd unit, restart on crash."""

import time

ROOT = "/srv/chaoslab/mol-common"
UNIT = "chaoslab-echo-server.service"


def test_per_host_directories(host):
    for sub in ("etc", "run", "log", "data", "tmp"):
        assert host.file(f"{ROOT}/{sub}").is_directory


def test_systemd_is_pid_1(host):
    assert host.check_output("cat /proc/1/comm") == "systemd"


def test_program_runs_as_its_unit_and_writes_its_own_pidfile(host):
    assert host.check_output(f"systemctl is-active {UNIT}") == "active"
    pid = host.file(f"{ROOT}/run/echo-server.pid").content_string.strip()
    assert pid == host.check_output(f"systemctl show -p MainPID --value {UNIT}")
    assert host.socket("tcp://198.18.0.101:8080").is_listening


def test_program_is_restarted_after_kill_9(host):
    pid = host.file(f"{ROOT}/run/echo-server.pid").content_string.strip()
    host.run(f"kill -9 {pid}")
    for _ in range(50):
        new = host.file(f"{ROOT}/run/echo-server.pid").content_string.strip()
        active = host.run(f"systemctl is-active {UNIT}").stdout.strip() == "active"
        if new not in (pid, "") and active:
            break
        time.sleep(0.2)
    assert new != pid
    assert host.check_output(f"systemctl is-active {UNIT}") == "active"
