"""res.memory with restart=true on a systemd host: the cap is a runtime property of the
program's unit, the unit is restarted under it, and heal (or heal-all's sweep, by the
drop-ins' names) lifts it and makes sure the program runs. systemd is a stand-in here: a
`systemctl` on PATH that keeps runtime drop-ins and a fake cgroup tree in a temporary
directory, and logs every call."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from chaosfault import cgroups, services
from chaosfault.agent import Agent
from chaosfault.artifacts import list_artifacts, sweep_artifacts
from chaosfault.errors import FaultFailed
from chaosfault.kinds import res

UNIT = "chaoslab-fraiseql.service"
LIMIT = str(40 * 1024 * 1024)

SYSTEMCTL = r"""
import json, os, pathlib, sys
world = pathlib.Path(os.environ["FAKE_SYSTEMD"])
control = world / "run" / "systemd" / "system.control"
memory = world / "cgroup" / "memory" / "system.slice"
args = sys.argv[1:]
state = world / "state"
with open(world / "systemctl.log", "a") as log:
    log.write(" ".join(args) + "\n")
    if args[:1] == ["set-property"]:
        # What the agent had recorded when the cap went on.
        for record in sorted(pathlib.Path(os.environ["FAKE_FAULT_STATE"]).glob("*.json")):
            log.write("  recorded: " + json.dumps(json.loads(record.read_text())["artifacts"],
                                                  sort_keys=True) + "\n")
if "missing" in " ".join(args):
    unit = next(a for a in args if a.endswith(".service"))
    print(f"Unit {unit} not found.", file=sys.stderr)
    sys.exit(5)
if args[0] == "set-property":
    unit = args[2]
    for setting in args[3:]:
        key, value = setting.split("=", 1)
        dropin = control / f"{unit}.d" / f"50-{key}.conf"
        dropin.parent.mkdir(parents=True, exist_ok=True)
        dropin.write_text(f"[Service]\n{key}={value}\n")
        group = memory / unit
        group.mkdir(parents=True, exist_ok=True)
        live = "9223372036854771712" if value == "infinity" else value
        (group / "memory.limit_in_bytes").write_text(live + "\n")
elif args[0] == "show":
    unit = args[-1]
    active = state / "active_state"
    dropin = control / f"{unit}.d" / "50-MemoryLimit.conf"
    configured = dropin.read_text().split("=")[1].strip() if dropin.exists() else "infinity"
    values = {"ControlGroup": f"/system.slice/{unit}",
              "ActiveState": active.read_text() if active.exists() else "active",
              "NRestarts": (state / "nrestarts").read_text().strip(),
              "MemoryLimit": configured}
    for i, arg in enumerate(args):
        if arg == "-p":
            print(f"{args[i + 1]}={values[args[i + 1]]}")
"""

# journalctl -u UNIT --since @EPOCH -o cat: the world's journal lines for the unit, each kept
# as "EPOCH UNIT MESSAGE" in state/journal.
JOURNALCTL = r"""
import os, pathlib, sys
world = pathlib.Path(os.environ["FAKE_SYSTEMD"])
args = sys.argv[1:]
unit = args[args.index("-u") + 1]
since = float(args[args.index("--since") + 1].lstrip("@"))
journal = world / "state" / "journal"
for line in journal.read_text().splitlines() if journal.exists() else []:
    stamp, name, message = line.split(" ", 2)
    if name == unit and float(stamp) >= since:
        print(f"{name}: {message}")
"""


def journal(world: Path, *messages: str, unit: str = UNIT, at: float | None = None) -> None:
    """systemd logs these for the unit now (or at `at`)."""
    stamp = time.time() if at is None else at
    with open(world / "state" / "journal", "a") as out:
        out.writelines(f"{stamp} {unit} {m}\n" for m in messages)


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A systemd host in a directory: cgroup v1 (memory, cpu), /run/systemd, systemctl."""
    world = tmp_path / "world"
    for sub in ("cgroup/memory", "cgroup/cpu", "run/systemd/system", "state", "bin"):
        (world / sub).mkdir(parents=True)
    (world / "state" / "nrestarts").write_text("0")
    systemctl = world / "bin" / "systemctl"
    systemctl.write_text(f"#!{sys.executable}\n{SYSTEMCTL}")
    systemctl.chmod(0o755)
    journalctl = world / "bin" / "journalctl"
    journalctl.write_text(f"#!{sys.executable}\n{JOURNALCTL}")
    journalctl.chmod(0o755)
    monkeypatch.setenv("FAKE_SYSTEMD", str(world))
    monkeypatch.setenv("PATH", f"{world / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(cgroups, "CGROUP_FS", world / "cgroup")
    monkeypatch.setattr(res, "CGROUP_FS", world / "cgroup")
    monkeypatch.setattr(services, "SYSTEMD_RUNTIME", world / "run" / "systemd" / "system")
    monkeypatch.setattr(services, "RUNTIME_CONTROL", world / "run" / "systemd" / "system.control")
    return world


@pytest.fixture()
def agent(tmp_path: Path, world: Path, monkeypatch: pytest.MonkeyPatch) -> Agent:
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"host": "t1", "root": str(tmp_path / "root")}))
    (tmp_path / "root" / "run").mkdir(parents=True)
    (tmp_path / "root" / "run" / "fraiseql.pid").write_text(f"{os.getpid()}\n")
    made = Agent(config)
    monkeypatch.setenv("FAKE_FAULT_STATE", str(made.state_dir))
    return made


def calls(world: Path) -> list[str]:
    return (world / "systemctl.log").read_text().splitlines()


def memory_fault(program: str = "fraiseql") -> dict:
    return {
        "kind": "res.memory",
        "id": "cap",
        "ttl_s": 60,
        "params": {"program": program, "limit_mb": 40, "restart": True},
    }


def test_the_cap_is_on_the_unit_recorded_first_and_healed_by_systemd(agent, world):
    dropin = world / "run" / "systemd" / "system.control" / f"{UNIT}.d" / "50-MemoryLimit.conf"
    assert agent.plan(memory_fault())["mechanism"] == "systemd-unit-cgroup-v1"
    answer = agent.inject(memory_fault())
    try:
        assert answer["mechanism"] == "systemd-unit-cgroup-v1"
        assert answer["artifacts"]["unit"] == UNIT
        assert answer["artifacts"]["unit_limit"] == {"MemoryLimit": LIMIT}
        assert answer["artifacts"]["dropins"] == [str(dropin)]
        log = calls(world)
        assert log[0] == f"set-property --runtime {UNIT} MemoryLimit={LIMIT}"
        # The record on disk named the unit and the limit before systemd was asked.
        recorded = json.loads(log[1].split("recorded: ", 1)[1])
        assert recorded["unit"] == UNIT and recorded["unit_limit"] == {"MemoryLimit": LIMIT}
        assert log[2] == f"restart --no-block {UNIT}"
        assert dropin.read_text() == f"[Service]\nMemoryLimit={LIMIT}\n"

        # The cap bites: the kernel OOM-kills the program twice, systemd restarts it.
        group = world / "cgroup" / "memory" / "system.slice" / UNIT
        (group / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
        (world / "state" / "nrestarts").write_text("2")
        killed = "Main process exited, code=killed, status=9/KILL"
        journal(world, killed, at=time.time() - 3600)  # before the cap: not this fault's
        journal(world, killed, "Failed with result 'signal'.", killed)
        verified = agent.verify("cap")
        assert verified["ok"], verified
        assert "(journal): 2 x killed, status=9/KILL," in verified["evidence"]
        assert f"memory.limit_in_bytes={LIMIT}" in verified["evidence"]
        assert "oom_kill=2" in verified["evidence"]
        assert "restarts since inject=2" in verified["evidence"]
        assert list_artifacts(agent)["unit_limits"] == [str(dropin)]
    finally:
        healed = agent.heal("cap")
    assert healed["healed"] is True
    after_inject = calls(world)[calls(world).index(f"restart --no-block {UNIT}") + 1 :]
    assert [c for c in after_inject if not c.startswith(("show", "  "))] == [
        f"set-property --runtime {UNIT} MemoryLimit=infinity",
        "daemon-reload",
        f"reset-failed {UNIT}",
        f"start {UNIT}",
    ]
    assert not dropin.exists() and not dropin.parent.exists()
    assert list_artifacts(agent)["unit_limits"] == []
    assert agent.load("cap") is None
    # Healing again changes nothing and still makes sure the program runs.
    assert agent.heal("cap")["healed"] is False


def test_a_cap_systemd_did_not_apply_is_not_effective(agent, world):
    agent.inject(memory_fault())
    try:
        group = world / "cgroup" / "memory" / "system.slice" / UNIT
        # A controller mounted read-only in the guest: systemd accepted, the kernel has no cap.
        (group / "memory.limit_in_bytes").write_text("9223372036854771712\n")
        verified = agent.verify("cap")
        assert verified["ok"] is False
        assert "the cap is not in effect" in verified["evidence"]
    finally:
        agent.heal("cap")


def test_between_oom_kills_systemds_own_setting_is_the_evidence(agent, world):
    agent.inject(memory_fault())
    try:
        group = world / "cgroup" / "memory" / "system.slice" / UNIT
        (group / "memory.limit_in_bytes").unlink()  # no process, no cgroup
        (world / "state" / "active_state").write_text("failed")  # its start limit was hit
        (world / "state" / "nrestarts").write_text("5")
        verified = agent.verify("cap")
        assert verified["ok"], verified
        assert f"no cgroup while failed, systemd's MemoryLimit={LIMIT}" in verified["evidence"]
        assert "restarts since inject=5" in verified["evidence"]
        # Running without a capped cgroup: the guest cannot write the memory controller.
        (world / "state" / "active_state").write_text("active")
        verified = agent.verify("cap")
        assert verified["ok"] is False
        assert "the cap is not in effect" in verified["evidence"]
    finally:
        agent.heal("cap")


def test_a_refused_inject_heals_what_it_did_and_leaves_nothing(agent, world):
    (agent.root / "run" / "missing.pid").write_text(f"{os.getpid()}\n")
    with pytest.raises(FaultFailed, match=r"chaoslab-missing\.service not found"):
        agent.inject({**memory_fault("missing"), "id": "refused"})
    assert agent.load("refused") is None
    assert "start chaoslab-missing.service" in calls(world)
    assert list_artifacts(agent)["unit_limits"] == []


def test_heal_all_sweeps_unit_limits_by_name_without_a_record(agent, world):
    agent.inject(memory_fault())
    agent._state_path("cap").unlink()  # the record is lost; the drop-in is not
    unit_limits = tuple(a for a in res.FAMILY.artifacts if a.name == "unit_limits")
    assert list_artifacts(agent, unit_limits)["left"] != []
    swept = sweep_artifacts(agent, unit_limits)
    assert swept == [f"drop-in {world}/run/systemd/system.control/{UNIT}.d/50-MemoryLimit.conf"]
    assert list_artifacts(agent, unit_limits)["left"] == []
    assert f"start {UNIT}" in calls(world)


def test_without_systemd_restart_true_is_skipped_with_the_reason(agent, world, monkeypatch):
    monkeypatch.setattr(services, "booted", lambda: False)
    answer = agent.inject(memory_fault())
    assert answer["skipped"] is True
    assert "systemd does not run this host" in answer["mechanism"]
    assert not (world / "systemctl.log").exists()
