"""The fault agent as a package: its serve loop, leases, the zipapp the role builds, and the
artifact declarations of its families. Nothing here touches the host's kernel: the only
fault ever "healed" is cache.flush, whose heal does nothing."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

import chaosfault
from chaosfault import artifacts as artifacts_module
from chaosfault import services
from chaosfault.agent import Agent
from chaosfault.errors import FaultFailed, FaultInputError
from chaosfault.kinds import ARTIFACTS, FAMILIES, FAULTS, WORKERS, cache, jwks, net, pg, proc, res
from chaosfault.processes import is_our_process, kill
from chaosfault.validation import validate

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "agent" / "chaosfault"
FAMILY_MODULES = {"net": net, "proc": proc, "res": res, "pg": pg, "cache": cache, "jwks": jwks}


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"host": "t1", "root": str(tmp_path / "root")}))
    return path


@pytest.fixture()
def agent(config: Path) -> Agent:
    return Agent(config)


def leased_record(agent: Agent, fault_id: str, lease_s: float, lease_left_s: float) -> dict:
    """A recorded, injected cache.flush (its heal does nothing) with a lease."""
    now = time.time()
    record = {
        "id": fault_id,
        "kind": "cache.flush",
        "params": {},
        "mechanism": "redis",
        "ttl_s": 60.0,
        "injected_at": now,
        "expires_at": now + 60,
        "artifacts": {"keys_before": 0},
        "watchdog_pid": None,
        "state": "injected",
        "lease_s": lease_s,
        "lease_expires_at": now + lease_left_s,
    }
    agent.save(record)
    return record


def agent_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "agent")}


# --------------------------------------------------------------------- serve


def serve(config: Path, lines: list[str]) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "chaosfault", "--config", str(config), "serve"],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        env=agent_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_serve_answers_every_bad_request_and_keeps_serving(config: Path, agent: Agent):
    (agent.state_dir / "broken.json").write_text("{not json")  # verify raises JSONDecodeError
    answers = serve(
        config,
        [
            "this is not JSON",
            json.dumps({"op": "teleport", "rid": "r1"}),
            json.dumps([1, 2, 3]),
            json.dumps({"op": "verify", "id": "broken", "rid": "r2"}),
            json.dumps({"op": "inject", "fault": {"kind": "net.loss"}, "rid": "r3"}),
            json.dumps({"op": "renew", "ids": "x", "lease_s": 5, "rid": "r4"}),
            "\xff\xfe garbage \x00",
            json.dumps({"op": "ping", "rid": 42}),
        ],
    )
    assert len(answers) == 8
    not_json, unknown_op, not_object, raised, input_error, bad_ids, garbage, ping = answers
    assert not_json["ok"] is False and not_json["input_error"] is True
    assert "request is not JSON" in not_json["error"]
    assert unknown_op == {
        "ok": False,
        "error": unknown_op["error"],
        "input_error": True,
        "rid": "r1",
    }
    assert "op: unknown operation 'teleport'" in unknown_op["error"]
    assert not_object["ok"] is False and "expected a JSON object" in not_object["error"]
    assert raised["ok"] is False and raised["input_error"] is False and raised["rid"] == "r2"
    assert "JSONDecodeError" in raised["error"]
    assert (
        input_error["input_error"] is True
        and "params.probability: required" in (input_error["error"])
    )
    assert bad_ids["rid"] == "r4" and "ids: expected a list" in bad_ids["error"]
    assert garbage["ok"] is False and garbage["input_error"] is True
    assert ping == {"ok": True, "result": {"host": "t1", "pid": ping["result"]["pid"]}, "rid": 42}
    # The unexpected exception is in the agent's log with its traceback.
    assert "JSONDecodeError" in (agent.root / "faults" / "agent.log").read_text()


def test_argv_commands_keep_their_json_shape_and_exit_codes(config: Path):
    def run(*args: str) -> tuple[int, dict]:
        proc = subprocess.run(
            [sys.executable, "-m", "chaosfault", "--config", str(config), *args],
            capture_output=True,
            text=True,
            env=agent_env(),
            timeout=60,
            check=False,
        )
        return proc.returncode, json.loads(proc.stdout)

    assert run("list") == (0, {"ok": True, "result": []})
    code, answer = run(
        "inject", json.dumps({"kind": "net.reset", "params": {"port": 1}, "lease_s": 0.5})
    )
    assert code == 2 and "lease_s: 0.5 is outside 1.0..60.0" in answer["error"]
    code, answer = run("renew", "soon", "a")
    assert code == 2 and "renew: bad arguments" in answer["error"]
    assert run("renew", "5", "a", "b") == (
        0,
        {"ok": True, "result": {"renewed": [], "missing": ["a", "b"], "unleased": []}},
    )
    code, answer = run("heal", "nothing-here")
    assert code == 0 and answer["result"] == {
        "id": "nothing-here",
        "healed": False,
        "reason": "not injected",
    }


# -------------------------------------------------------------------- leases


@pytest.mark.parametrize(
    ("lease_s", "message"),
    [
        (0, "lease_s: 0 is outside 1.0..60.0"),
        (60.5, "lease_s: 60.5 is outside"),
        ("6", "lease_s: expected a number"),
        (True, "lease_s: expected a number"),
    ],
)
def test_bad_lease_is_an_input_error_naming_lease_s(lease_s, message):
    with pytest.raises(FaultInputError) as err:
        validate({"kind": "net.reset", "params": {"port": 5432}, "lease_s": lease_s})
    assert message in str(err.value)


def test_a_lease_is_optional_and_allowed_next_to_the_ttl():
    spec = {"kind": "net.reset", "params": {"port": 5432}, "ttl_s": 30, "lease_s": 6}
    assert validate(spec) == ("net.reset", {"port": 5432}, 30.0)


def test_renew_extends_leased_records_and_names_the_others(agent: Agent):
    leased_record(agent, "f1", lease_s=6, lease_left_s=1)
    unleased = leased_record(agent, "f2", lease_s=6, lease_left_s=1)
    del unleased["lease_s"], unleased["lease_expires_at"]
    agent.save(unleased)
    before = time.time()
    answer = agent.renew(["f1", "f2", "gone"], 20)
    assert answer == {"renewed": ["f1"], "missing": ["gone"], "unleased": ["f2"]}
    record = agent.load("f1")
    assert record is not None and before + 20 <= record["lease_expires_at"] <= time.time() + 20
    # One small file per renewal; the record itself is not rewritten.
    assert json.loads((agent.state_dir / "f1.json").read_text())["lease_expires_at"] < before + 2
    assert float((agent.state_dir / "f1.lease").read_text()) == record["lease_expires_at"]
    with pytest.raises(FaultInputError, match=r"lease_s: 0\.1 is outside"):
        agent.renew(["f1"], 0.1)
    with pytest.raises(FaultInputError, match=r"id: '\.\./x' must be"):
        agent.renew(["../x"], 5)


def test_the_watchdog_heals_when_the_lease_runs_out_not_before(agent: Agent):
    leased_record(agent, "w1", lease_s=1, lease_left_s=1)
    watchdog = threading.Thread(target=agent.watchdog, args=("w1", time.time() + 60))
    watchdog.start()
    for _ in range(4):  # renewed past its first expiry
        time.sleep(0.5)
        assert agent.renew(["w1"], 1)["renewed"] == ["w1"]
    assert agent.load("w1") is not None
    stopped = time.monotonic()
    watchdog.join(timeout=5)
    assert not watchdog.is_alive()
    assert time.monotonic() - stopped < 1 + 0.5 + 0.5  # lease + one poll + slack
    assert agent.load("w1") is None and not (agent.state_dir / "w1.lease").exists()
    assert (
        "lease expired w1 (cache.flush, redis)" in (agent.root / "faults" / "agent.log").read_text()
    )


def test_a_lease_does_not_cut_an_inject_in_progress_short(agent: Agent):
    record = leased_record(agent, "a1", lease_s=1, lease_left_s=-5)
    record["state"] = "arming"
    agent.save(record)
    watchdog = threading.Thread(target=agent.watchdog, args=("a1", time.time() + 1.2))
    watchdog.start()
    time.sleep(0.7)
    assert agent.load("a1") is not None  # arming: only the TTL deadline applies
    watchdog.join(timeout=5)
    assert agent.load("a1") is None
    assert "expired a1" in (agent.root / "faults" / "agent.log").read_text()


def test_without_a_lease_only_the_ttl_counts(agent: Agent):
    record = leased_record(agent, "t1", lease_s=1, lease_left_s=-5)
    del record["lease_s"], record["lease_expires_at"]
    agent.save(record)
    watchdog = threading.Thread(target=agent.watchdog, args=("t1", time.time() + 1.0))
    watchdog.start()
    time.sleep(0.6)
    assert agent.load("t1") is not None
    watchdog.join(timeout=5)
    assert agent.load("t1") is None
    assert "expired t1 (cache.flush, redis)" in (agent.root / "faults" / "agent.log").read_text()


def test_spawned_watchdog_is_recognised_and_heals_on_lease_expiry(agent: Agent):
    leased_record(agent, "s1", lease_s=1, lease_left_s=0.5)
    pid = agent.spawn("watchdog", "s1", repr(time.time() + 30))
    try:
        deadline = time.monotonic() + 10
        seen = False
        while agent.load("s1") is not None and time.monotonic() < deadline:
            seen = seen or is_our_process(pid, "watchdog", "s1")
            time.sleep(0.05)
        assert seen, "the helper's command line does not name chaosfault"
        assert agent.load("s1") is None
    finally:
        kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # subprocess may have reaped it
            os.waitpid(pid, 0)


# -------------------------------------------------------------------- zipapp


BUILDER = Path(__file__).resolve().parents[2] / "roles" / "faults" / "files" / "build_agent.py"


def build_zipapp(tmp_path: Path) -> Path:
    """What roles/faults/tasks/install.yml does on the controller."""
    target = tmp_path / "chaosfault.pyz"
    subprocess.run([sys.executable, str(BUILDER), str(PACKAGE), str(target)], check=True)
    return target


def test_the_zipapp_is_the_same_bytes_for_the_same_sources_and_rebuilt_when_one_changes(
    tmp_path: Path,
):
    package = tmp_path / "src" / "chaosfault"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "out" / "chaosfault.pyz"

    def build() -> bool:
        out = subprocess.run(
            [sys.executable, str(BUILDER), str(package), str(target)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)["changed"]

    assert build() is True
    first = target.read_bytes()
    os.utime(package / "cli.py")  # a touched file with the same content: nothing to do
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"not shipped")
    assert build() is False and target.read_bytes() == first
    with open(package / "cli.py", "a") as source:
        source.write("\n# changed\n")
    assert build() is True and target.read_bytes() != first
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
    assert names == sorted(names) and "__main__.py" in names
    assert not any("__pycache__" in n for n in names)
    assert target.read_bytes().startswith(b"#!/usr/bin/python3\n")


def test_builds_asked_for_at_once_all_succeed_and_leave_one_whole_archive(tmp_path: Path):
    """site.yml converges hosts at their own pace: each host asks for the build."""
    target = tmp_path / "out" / "chaosfault.pyz"
    builds = [
        subprocess.Popen(
            [sys.executable, str(BUILDER), str(PACKAGE), str(target)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    answers = [json.loads(build.communicate(timeout=60)[0]) for build in builds]
    assert [build.returncode for build in builds] == [0] * 5
    assert any(answer["changed"] for answer in answers)
    assert sorted(p.name for p in target.parent.iterdir()) == ["chaosfault.pyz"]
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None


def test_zipapp_lists_every_kind_with_its_parameters(tmp_path: Path):
    pyz = build_zipapp(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(pyz), "kinds"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    answer = json.loads(proc.stdout)
    assert answer["result"] == {kind: list(f.params) for kind, f in sorted(FAULTS.items())}
    assert len(answer["result"]) == 29


def test_zipapp_starts_its_helpers_from_the_archive(tmp_path: Path, config: Path):
    pyz = build_zipapp(tmp_path)
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(pyz)!r})\n"
        "from chaosfault.agent import self_command\n"
        "print(json.dumps(self_command()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    command, env = json.loads(proc.stdout)
    assert command == [str(pyz)] and env is None


def test_the_controller_imports_the_same_package():
    assert Path(chaosfault.__file__).resolve().parent == PACKAGE


# ----------------------------------------------------------------- artifacts


def test_every_family_module_declares_its_faults_and_artifacts():
    assert [f.name for f in FAMILIES] == ["net", "proc", "res", "pg", "jwks", "cache"]
    for family in FAMILIES:
        assert family is FAMILY_MODULES[family.name].FAMILY
        assert family.artifacts, f"{family.name} declares no artifacts"
        assert all(kind.startswith(f"{family.name}.") for kind in family.faults)
    assert sorted(FAULTS) == sorted(k for f in FAMILIES for k in f.faults)
    assert sorted(WORKERS) == ["fill", "nfqueue", "repeat"]


def test_artifact_names_are_the_ones_heal_all_reported_before():
    names = [a.name for a in artifacts_module.declared()]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(
        [
            "records",
            "iptables_rules",
            "qdisc",
            "cgroups",
            "unit_limits",
            "stopped_processes",
            "processes",
            "pg_settings",
            "pg_sessions",
            "jwks_override",
            "redis_config",
        ]
    )


def test_list_artifacts_covers_exactly_the_declarations(agent: Agent, monkeypatch):
    monkeypatch.setattr(services, "booted", lambda: True)
    agent.config.update(postgresql={"x": 1}, nginx={"x": 1}, redis={"x": 1})
    present = {
        "records": ["f1"],
        "iptables_rules": ["-A CHAOS-IN -j DROP"],
        "qdisc": True,
        "pg_sessions": 2,
    }
    fakes = tuple(
        replace(a, find=lambda _agent, name=a.name: present.get(name, []))
        for a in artifacts_module.declared()
    )
    answer = artifacts_module.list_artifacts(agent, fakes)
    assert set(answer) == {a.name for a in artifacts_module.declared()} | {"left"}
    assert answer["left"] == [
        "records=['f1']",
        "iptables_rules=['-A CHAOS-IN -j DROP']",
        "qdisc",
        "pg_sessions=2",
    ]


def test_hosts_without_a_service_leave_its_artifacts_out(agent: Agent, monkeypatch):
    monkeypatch.setattr(services, "booted", lambda: False)  # no systemd: no unit limits
    fakes = tuple(replace(a, find=lambda _agent: []) for a in artifacts_module.declared())
    answer = artifacts_module.list_artifacts(agent, fakes)
    assert set(answer) == {
        "records",
        "iptables_rules",
        "qdisc",
        "cgroups",
        "stopped_processes",
        "processes",
        "left",
    }
    assert answer["left"] == []


def test_sweep_runs_every_declared_sweep_in_order_and_survives_a_failure(agent: Agent):
    calls: list[str] = []

    def sweeper(name: str):
        def sweep(_agent: Agent) -> list[str]:
            calls.append(name)
            if name == "qdisc":
                raise OSError("tc is gone")
            return [f"swept {name}"]

        return sweep

    fakes = tuple(
        replace(a, sweep=sweeper(a.name), applies=lambda _agent: True)
        for a in (*ARTIFACTS, artifacts_module.RECORDS)
    )
    swept = artifacts_module.sweep_artifacts(agent, fakes)
    assert calls == [
        "iptables_rules",
        "qdisc",
        "stopped_processes",
        "processes",
        "cgroups",
        "unit_limits",
        "pg_settings",
        "pg_sessions",
        "jwks_override",
        "redis_config",
        "records",
    ]
    assert "qdisc: sweep failed: tc is gone" in swept and "swept records" in swept


# -------------------------------------------------------------------- layout


def test_no_agent_module_is_over_600_lines():
    for path in PACKAGE.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 600, path


def test_the_agent_uses_the_standard_library_only():
    allowed = set(sys.stdlib_module_names) | {"chaosfault", "netfilterqueue"}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path}: imports {name}"


class FlakyHeal:
    """Makes cache.flush's heal fail `times` times (PostgreSQL away, a pid gone...)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, times: int) -> None:
        self.left = times
        real = FAULTS["cache.flush"].heal

        def heal(agent: Agent, record: dict) -> None:
            if self.left > 0:
                self.left -= 1
                raise FaultFailed("psql: could not connect to server")
            real(agent, record)

        monkeypatch.setattr(FAULTS["cache.flush"], "heal", heal)


def test_a_failed_heal_keeps_the_record_so_the_lease_still_heals_it(agent, monkeypatch):
    leased_record(agent, "h1", lease_s=5, lease_left_s=5)
    FlakyHeal(monkeypatch, times=1)
    with pytest.raises(FaultFailed):
        agent.heal("h1")
    assert agent.load("h1") is not None  # still recorded: its watchdog is not disarmed
    assert agent.heal("h1")["healed"] is True


def test_the_watchdog_retries_a_failed_heal_until_it_succeeds(agent, monkeypatch):
    import chaosfault.agent as agent_module

    monkeypatch.setattr(agent_module, "WATCHDOG_RETRY_S", 0.05)
    leased_record(agent, "h2", lease_s=1, lease_left_s=0)
    flaky = FlakyHeal(monkeypatch, times=2)
    agent.watchdog("h2", time.time() + 60)
    assert flaky.left == 0 and agent.load("h2") is None
    log = (agent.root / "faults" / "agent.log").read_text()
    assert log.count("heal of h2 failed, retrying") == 2 and "lease expired h2" in log


def test_heal_all_heals_the_others_when_one_fails(agent, monkeypatch):
    leased_record(agent, "a1", lease_s=5, lease_left_s=5)
    leased_record(agent, "a2", lease_s=5, lease_left_s=5)
    FlakyHeal(monkeypatch, times=1)
    answer = agent.heal_all()
    assert answer["healed"] == ["a2"] and answer["failed"][0].startswith("a1: ")
    # The sweep by artifact names ran after the failure, as heal-all's last resort.
    assert "remaining" in answer and agent.load("a2") is None


def test_cache_delete_takes_one_key_pattern():
    from chaosfault.kinds.cache import CacheDelete

    assert CacheDelete().check({}) == {"pattern": "fraiseql:*"}
    assert CacheDelete().check({"pattern": "fraiseql:v_note:*"}) == {"pattern": "fraiseql:v_note:*"}
    for bad in ("", "a b", "x\nFLUSHALL", 7, "k" * 201):
        with pytest.raises(FaultInputError, match=r"params\.pattern"):
            CacheDelete().check({"pattern": bad})


def test_heal_all_kills_only_this_agents_helpers_never_another_process_naming_chaosfault(
    agent, tmp_path
):
    """A sweep on the controller (an agent run there, as in these tests) must not end the
    controller's own processes that merely name chaosfault - the zipapp build of a lab up
    running meanwhile - nor another agent's helpers."""
    from chaosfault.kinds.proc import _kill_helpers

    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    mine = subprocess.Popen([*sleeper, "chaosfault", "--config", str(agent.config_path), "loop"])
    build = subprocess.Popen([*sleeper, "build_agent.py", "/x/agent/chaosfault", "out.pyz"])
    other = subprocess.Popen([*sleeper, "chaosfault", "--config", str(tmp_path / "other.json")])
    try:
        swept = _kill_helpers(agent)
        assert swept == [f"killed lab process {mine.pid}"]
        assert mine.wait(5) == -signal.SIGKILL
        assert build.poll() is None and other.poll() is None
    finally:
        for p in (mine, build, other):
            p.kill()
            p.wait()
