"""The lab as the runner reads it: lab.json of nspawn guests, whether a guest runs (its
systemd-nspawn process, by the pid nspawn recorded), `lab status` checks with program
states from the fault agents (stand-ins here), the attempt's lab-health abort, and the
sampler's probe. No lab host is contacted: addresses are loopback, ports never opened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos_runner.errors import FaultError
from chaos_runner.model.config import RunnerConfig
from chaos_runner.model.scenario import Catalog
from chaos_runner.run.attempt import Attempt, RunContext
from chaos_runner.run.schedule import StopAttempt
from chaos_runner.target import lab as lab_module
from chaos_runner.target import netguard
from chaos_runner.target.inventory import load_inventory
from chaos_runner.target.lab import LabSettings, LabState, guest_alive, lab_checks

REPO = Path(__file__).resolve().parents[2]

# A process whose comm is "systemd-nspawn" and whose command line names the machine, as
# the real one's does: `... -M <machine> ...`.
FAKE_NSPAWN = (
    "import ctypes, sys, time\n"
    "ctypes.CDLL(None).prctl(15, b'systemd-nspawn', 0, 0, 0)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture()
def nspawn():
    """Start stand-in nspawn processes: nspawn(*args) -> pid; ended after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> int:
        proc = subprocess.Popen(
            [sys.executable, "-c", FAKE_NSPAWN, *args], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        started.append(proc)
        return proc.pid

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def guest(tmp_path: Path, name: str, address: str = "127.0.0.1", pid: int | None = None) -> dict:
    guest_dir = tmp_path / "guests" / name
    guest_dir.mkdir(parents=True, exist_ok=True)
    if pid is not None:
        (guest_dir / "nspawn.pid").write_text(f"{pid}\n")
    return {
        "address": address,
        "release": "bookworm",
        "machine": name,
        "guest_dir": str(guest_dir),
        "root": str(guest_dir / "merged"),
        "nspawn_pidfile": str(guest_dir / "nspawn.pid"),
    }


def record_hosts(state_dir: Path, inventory: Path = REPO / "inventory" / "lab", **extra) -> None:
    """What the faults role records on the controller for every host of `inventory`."""
    (state_dir / "hosts").mkdir(parents=True, exist_ok=True)
    for host in load_inventory(inventory).lab_hosts():
        record = {
            "host": host.name, "address": host.address, "user": "root", "port": 22,
            "key_file": str(state_dir / "ssh" / "id_ed25519"),
            "known_hosts": str(state_dir / "ssh" / "known_hosts"), "become": False,
            "agent": "/opt/chaoslab/faults/chaosfault.pyz",
            "agent_config": f"/srv/chaoslab/{host.name}/faults/agent.json",
            "controller_address": "198.18.0.1", "interface": "host0", **extra,
        }  # fmt: skip
        (state_dir / "hosts" / f"{host.name}.json").write_text(json.dumps(record))


# ------------------------------------------------------------------ lab.json


def test_lab_json_of_guests_is_read_with_its_ssh_identity(tmp_path, monkeypatch):
    # The kernel routes the lab addresses to the bridge (as while the lab is up).
    monkeypatch.setattr(netguard, "route_device", lambda address: "labbr0")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "lab.json").write_text(
        json.dumps(
            {
                "bridge": "labbr0",
                "gateway": "198.18.0.1",
                "prefix": 24,
                "substrate": "nspawn",
                "ssh_key": "/keys/id_ed25519",
                "known_hosts": "/keys/known_hosts",
                "hosts": {"db1": guest(tmp_path, "db1", "198.18.0.11")},
            }
        )
    )
    record_hosts(state_dir)
    state = LabState.load(LabSettings(state_dir, REPO / "inventory" / "lab"))
    assert state.substrate == "nspawn" and state.embedded
    assert (state.ssh_key, state.known_hosts) == (
        Path("/keys/id_ed25519"),
        Path("/keys/known_hosts"),
    )
    assert state.hosts["db1"]["machine"] == "db1"
    assert state.roles.host("@db[0]") == "db1"
    # How to reach each host's agent comes from the faults role's record.
    target = state.ssh("cache1")
    assert (target.address, target.port, target.user) == ("198.18.0.15", 22, "root")
    assert target.key_file == state_dir / "ssh" / "id_ed25519"
    assert target.agent_config == "/srv/chaoslab/cache1/faults/agent.json"


def test_a_lab_json_from_before_guests_is_named_as_such(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    old = {"bridge": "lo", "gateway": "127.0.0.1", "hosts": {}}
    (state_dir / "lab.json").write_text(json.dumps(old))
    record_hosts(state_dir)
    state = LabState.load(LabSettings(state_dir, REPO / "inventory" / "lab"))
    assert state.substrate == "netns"
    assert state.ssh_key == state_dir / "ssh" / "id_ed25519"
    bad = next(c for c in lab_checks(state, lambda host: []) if not c.ok)
    assert (bad.host, bad.item) == ("controller", "substrate")
    assert "run `chaoslab lab up`" in bad.detail


# ------------------------------------------------------------------ the guest


def test_a_guest_is_alive_when_its_nspawn_process_runs_for_its_machine(tmp_path, nspawn):
    pid = nspawn("--quiet", "-M", "db1", "--boot")
    assert guest_alive(guest(tmp_path, "db1", pid=pid)) == (True, f"pid {pid}, release bookworm")
    for spelling in (["--machine=app1"], ["--machine", "app1"], ["-Mapp1"]):
        other = nspawn(*spelling)
        assert guest_alive(guest(tmp_path, "app1", pid=other))[0], spelling


def test_a_guest_is_down_for_every_other_reason(tmp_path, nspawn):
    pid = nspawn("-M", "db1")
    alive, detail = guest_alive(guest(tmp_path, "proxy1", pid=pid))
    assert not alive and "another machine (not -M proxy1)" in detail
    alive, detail = guest_alive(guest(tmp_path, "db1", pid=os.getpid()))
    assert not alive and "not systemd-nspawn" in detail
    alive, detail = guest_alive(guest(tmp_path, "app1"))
    assert not alive and detail.startswith("no pid in ")
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive, detail = guest_alive(guest(tmp_path, "auth1", pid=gone.pid))
    assert not alive and "is not running" in detail
    alive, detail = guest_alive({"address": "198.18.0.11", "netns": "chaoslab-db1"})
    assert not alive and "no nspawn_pidfile" in detail


# --------------------------------------------------------------- lab status


def loopback_state(tmp_path: Path, hosts: dict) -> LabState:
    """A lab on loopback (`lo` stands for the bridge): the guard lets it through unrouted."""
    return LabState(
        settings=LabSettings(tmp_path, REPO / "inventory" / "lab"),
        bridge="lo",
        gateway="127.0.0.1",
        hosts=hosts,
    )


def test_status_checks_each_guest_and_its_programs_from_the_agent(tmp_path, nspawn, monkeypatch):
    monkeypatch.setattr(lab_module, "_tcp_open", lambda address, port: True)
    monkeypatch.setattr(os.path, "ismount", lambda path: path.endswith("db1/merged"))
    state = loopback_state(
        tmp_path,
        {
            "db1": guest(tmp_path, "db1", pid=nspawn("-M", "db1")),
            "cache1": guest(tmp_path, "cache1", pid=nspawn("-M", "cache1")),
            "auth1": guest(tmp_path, "auth1"),  # down: its programs are not asked for
        },
    )
    answers = {
        "db1": [
            {"name": "postgresql", "pid": 41, "alive": True, "rss_kb": 30720, "active": True,
             "unit_state": "active"},
            {"name": "pgbouncer", "pid": 42, "alive": True, "rss_kb": 2048, "active": False,
             "unit_state": "deactivating"},
        ],
        "cache1": FaultError("cannot reach the fault agent on cache1: connection refused"),
    }  # fmt: skip
    asked: list[str] = []

    def programs(host: str) -> list[dict]:
        asked.append(host)
        answer = answers[host]
        if isinstance(answer, Exception):
            raise answer
        return answer

    checks = {(c.host, c.item): c for c in lab_checks(state, programs)}
    assert sorted(asked) == ["cache1", "db1"]
    assert checks[("controller", "bridge lo")].ok
    assert checks[("db1", "guest")].ok and checks[("db1", "root")].ok
    assert not checks[("cache1", "root")].ok
    assert checks[("db1", "ssh port")].ok
    assert checks[("db1", "fault agent")].ok
    assert checks[("db1", "postgresql")].ok
    assert checks[("db1", "postgresql")].detail == "pid 41, 30 MB"
    assert not checks[("db1", "pgbouncer")].ok
    assert checks[("db1", "pgbouncer")].detail == "pid 42, 2 MB; unit deactivating"
    agent = checks[("cache1", "fault agent")]
    assert not agent.ok and "connection refused" in agent.detail
    assert not checks[("auth1", "guest")].ok
    assert ("auth1", "fault agent") not in checks
    # Nothing of the namespace lab is checked any more.
    assert not {item for _, item in checks} & {"namespace", "veth", "sshd"}


# ------------------------------------------------------------------ attempt

SCENARIO = Catalog.load().scenarios["net.db-stopped"]


def attempt_on(state: LabState, faults: object) -> Attempt:
    ctx = RunContext(
        state=state,
        config=RunnerConfig(),
        faults=faults,  # type: ignore[arg-type]
        run_dir=Path("/nonexistent"),
        environment=None,  # type: ignore[arg-type]
        baselines=None,  # type: ignore[arg-type]
        seed=1,
    )
    attempt = Attempt(SCENARIO, ctx, 1)
    attempt.load = SimpleNamespace(done=False, history=lambda: [])  # type: ignore[assignment]
    return attempt


def test_the_hold_aborts_when_a_guest_goes_down(tmp_path, nspawn):
    state = loopback_state(tmp_path, {"db1": guest(tmp_path, "db1", pid=nspawn("-M", "db1"))})
    attempt = attempt_on(state, SimpleNamespace(lost=[]))
    attempt.check_abort(time.monotonic_ns())  # the guest runs: nothing happens
    state.hosts["app1"] = guest(tmp_path, "app1")
    attempt._next_health = 0
    with pytest.raises(StopAttempt) as stop:
        attempt.check_abort(time.monotonic_ns())
    assert stop.value.outcome == "aborted"
    assert stop.value.reason.startswith("lab health lost: guests down: app1 (no pid in ")


def test_the_sampler_asks_the_app_hosts_agent_for_its_program():
    asked: list[tuple[str, str]] = []

    class Faults:
        def proc(self, host: str, program: str) -> dict:
            asked.append((host, program))
            return {"pid": 123, "rss_kb": 4567}

    attempt = attempt_on(None, Faults())  # type: ignore[arg-type]
    probe = attempt._process_probe("app1", "fraiseql")
    assert probe() == (123, 4567)
    assert asked == [("app1", "fraiseql")]


def test_the_apps_program_is_its_pidfiles_name_on_the_host():
    from chaos_runner.target.lab import AppEndpoint

    app = AppEndpoint("app1", "http://198.18.0.13:8000", "1.9.16", "i", "a", True,
                      "/srv/chaoslab/app1/run/fraiseql.pid", {})  # fmt: skip
    assert app.program == "fraiseql"
