"""common: guard, per-host layout, a supervisord in the host's namespace, restart on crash."""

import time

ROOT = "/srv/chaoslab/mol-common"
CTL = f"/opt/chaoslab/supervisor/bin/supervisorctl -c {ROOT}/etc/supervisord.conf"


def test_per_host_directories(host):
    for sub in ("etc", "run", "log", "data", "tmp", "etc/supervisor.d"):
        assert host.file(f"{ROOT}/{sub}").is_directory


def test_supervisord_runs_in_this_hosts_namespace(host):
    pid = host.check_output(f"{CTL} pid")
    assert pid.isdigit()
    own_ns = host.check_output("readlink /proc/self/ns/net")
    assert host.check_output(f"readlink /proc/{pid}/ns/net") == own_ns


def test_program_runs_and_writes_its_own_pidfile(host):
    status = host.check_output(f"{CTL} status echo-server")
    assert "RUNNING" in status
    pid = host.file(f"{ROOT}/run/echo-server.pid").content_string.strip()
    assert f"pid {pid}," in status
    assert host.socket("tcp://198.18.0.101:8080").is_listening


def test_program_is_restarted_after_kill_9(host):
    pid = host.file(f"{ROOT}/run/echo-server.pid").content_string.strip()
    host.run(f"kill -9 {pid}")
    for _ in range(50):
        new = host.file(f"{ROOT}/run/echo-server.pid").content_string.strip()
        if new != pid and "RUNNING" in host.run(f"{CTL} status echo-server").stdout:
            break
        time.sleep(0.2)
    assert new != pid
    assert "RUNNING" in host.check_output(f"{CTL} status echo-server")
