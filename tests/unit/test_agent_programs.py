"""The agent's `programs` and `proc` requests on a temporary host root: pidfiles pointing at
real processes started here (sleep), a stale pid, a zombie, a daemon's own pidfile; and
systemd's view through a stand-in `systemctl` on PATH. Nothing here touches the lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaosfault import programs, services
from chaosfault.agent import Agent
from chaosfault.cli import handle
from chaosfault.processes import process_state

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"host": "t1", "root": str(tmp_path / "root")}))
    (tmp_path / "root" / "run").mkdir(parents=True)
    return path


@pytest.fixture()
def agent(config: Path, monkeypatch: pytest.MonkeyPatch) -> Agent:
    monkeypatch.setattr(services, "booted", lambda: False)
    return Agent(config)


@pytest.fixture()
def spawn():
    """Start processes for the test and end them after it, by their own pids."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait()


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def write_pidfile(agent: Agent, name: str, content: str) -> None:
    (agent.root / "run" / f"{name}.pid").write_text(content)


def children_of(pid: int, count: int, comm: str, timeout_s: float = 5.0) -> list[int]:
    """`count` children of pid that have exec'd `comm` (a forked child is a copy of its
    parent, resident set and all, until its exec)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        names = [Path(f"/proc/{k}/comm").read_text().strip() for k in kids]
        if len(kids) >= count and all(name == comm for name in names):
            return [int(k) for k in kids]
        time.sleep(0.01)
    raise AssertionError(f"{pid} did not start {count} children")


def request(agent: Agent, op: str, **fields) -> dict:
    return handle(agent, {"op": op, **fields})


# ---------------------------------------------------------------------- proc


def test_proc_answers_the_pid_and_the_memory_of_the_whole_tree(agent, spawn):
    parent = spawn("sh", "-c", "sleep 60 & sleep 60 & wait")
    kids = children_of(parent.pid, 2, "sleep")
    write_pidfile(agent, "fraiseql", f"{parent.pid}\n")
    answer = request(agent, "proc", program="fraiseql")
    assert answer["ok"], answer
    assert answer["result"]["pid"] == parent.pid
    # Sleeping processes do not change their resident set: the sum is exact.
    assert answer["result"]["rss_kb"] == sum(vm_rss_kb(p) for p in [parent.pid, *kids])
    assert answer["result"]["rss_kb"] > vm_rss_kb(parent.pid)


def test_proc_says_none_for_a_program_that_does_not_run(agent, spawn):
    gone = spawn("true")
    gone.wait()
    write_pidfile(agent, "stale", str(gone.pid))
    write_pidfile(agent, "empty", "")
    for program in ("stale", "empty", "missing"):
        assert request(agent, "proc", program=program) == {
            "ok": True,
            "result": {"pid": None, "rss_kb": None},
        }


def test_a_zombie_is_not_running(agent):
    # Not reaped until the end of the test: its pid stays, in state Z.
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 5
        while process_state(child.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process_state(child.pid) == "Z"
        write_pidfile(agent, "fraiseql", str(child.pid))
        assert request(agent, "proc", program="fraiseql")["result"]["pid"] is None
    finally:
        child.wait()


@pytest.mark.parametrize("program", ["../etc/passwd", "Fraiseql", "", None, 7])
def test_proc_refuses_what_is_not_a_program_name(agent, program):
    answer = request(agent, "proc", program=program)
    assert answer["ok"] is False and answer["input_error"] is True
    assert answer["error"] == f"program: {program!r} is not a program name"


# ------------------------------------------------------------------ programs


def test_programs_lists_every_pidfile_with_its_state(agent, spawn):
    running = spawn("sleep", "60")
    gone = spawn("true")
    gone.wait()
    write_pidfile(agent, "postgresql", str(running.pid))
    write_pidfile(agent, "haproxy", str(gone.pid))
    write_pidfile(agent, "redis", "not a pid")
    write_pidfile(agent, "nginx.master", str(running.pid))  # nginx's own: not a program
    answer = request(agent, "programs")
    assert answer["ok"], answer
    assert answer["result"] == [
        {
            "name": "haproxy",
            "pid": gone.pid,
            "alive": False,
            "rss_kb": None,
            "active": False,
            "unit_state": None,
        },
        {
            "name": "postgresql",
            "pid": running.pid,
            "alive": True,
            "rss_kb": vm_rss_kb(running.pid),
            "active": True,  # no systemd here: active means alive
            "unit_state": None,
        },
        {
            "name": "redis",
            "pid": None,
            "alive": False,
            "rss_kb": None,
            "active": False,
            "unit_state": None,
        },
    ]


def fake_systemctl(tmp_path: Path, states: dict[str, str]) -> Path:
    """A `systemctl` that answers is-active from `states` (unit -> state), one line per
    unit like the real one, and logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"states = {json.dumps(states)}\n"
        f"open({str(tmp_path / 'systemctl.log')!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1] == 'is-active':\n"
        "    answers = [states.get(u, 'inactive') for u in sys.argv[2:]]\n"
        "    print('\\n'.join(answers))\n"
        "    sys.exit(0 if all(a == 'active' for a in answers) else 3)\n"
    )
    script.chmod(0o755)
    return bin_dir


def test_with_systemd_active_is_what_systemd_says(agent, spawn, tmp_path, monkeypatch):
    bin_dir = fake_systemctl(
        tmp_path,
        {"chaoslab-fraiseql.service": "active", "chaoslab-redis.service": "activating"},
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(services, "booted", lambda: True)
    app = spawn("sleep", "60")
    restarting = spawn("sleep", "60")
    write_pidfile(agent, "fraiseql", str(app.pid))
    write_pidfile(agent, "redis", str(restarting.pid))
    states = {p["name"]: p for p in request(agent, "programs")["result"]}
    assert (states["fraiseql"]["active"], states["fraiseql"]["unit_state"]) == (True, "active")
    # Its pid runs, but systemd is restarting it: not active.
    assert states["redis"]["alive"] is True
    assert (states["redis"]["active"], states["redis"]["unit_state"]) == (False, "activating")
    # One systemctl call for every unit.
    assert (tmp_path / "systemctl.log").read_text() == (
        "is-active chaoslab-fraiseql.service chaoslab-redis.service\n"
    )


# ----------------------------------------------------------- the wire forms


def test_serve_and_the_command_line_answer_both_requests(agent, config, spawn):
    sleeper = spawn("sleep", "60")
    write_pidfile(agent, "fraiseql", str(sleeper.pid))
    env = {**os.environ, "PYTHONPATH": str(REPO / "agent")}
    lines = [
        json.dumps({"op": "proc", "program": "fraiseql", "rid": 1}),
        json.dumps({"op": "programs", "rid": 2}),
    ]
    served = subprocess.run(
        [sys.executable, "-m", "chaosfault", "--config", str(config), "serve"],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    proc, listing = (json.loads(line) for line in served.stdout.splitlines())
    assert proc["rid"] == 1 and proc["result"]["pid"] == sleeper.pid
    assert proc["result"]["rss_kb"] > 0
    assert listing["rid"] == 2 and [p["name"] for p in listing["result"]] == ["fraiseql"]

    def argv(*args: str) -> tuple[int, dict]:
        done = subprocess.run(
            [sys.executable, "-m", "chaosfault", "--config", str(config), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        return done.returncode, json.loads(done.stdout)

    code, answer = argv("proc", "fraiseql")
    assert code == 0 and answer["result"]["pid"] == sleeper.pid
    code, answer = argv("programs")
    assert code == 0 and answer["result"][0]["alive"] is True
    code, answer = argv("proc", "no/such")
    assert code == 2 and "is not a program name" in answer["error"]
    code, answer = argv("proc")
    assert code == 2 and "proc: bad arguments" in answer["error"]


def test_the_processes_the_agent_may_sweep_are_its_own_hosts_only():
    from chaosfault.processes import this_host

    assert this_host(os.getpid())
    assert not this_host(2**22 + 1)  # no such process
    assert programs.check_program("fraiseql") == "fraiseql"
