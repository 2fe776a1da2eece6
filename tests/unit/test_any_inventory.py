"""The runner on any inventory: a lab is the inventory plus what the playbooks recorded
(no lab.json needed), reached the way Ansible reached it; bad inventories are refused with
exit 2 naming the host or group. No host is contacted: cluster hosts here are loopback
addresses or documentation addresses that the guard refuses before any traffic."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest
import yaml

from chaos_runner.cli.main import main
from chaos_runner.errors import AddressRefused, LabNotReady
from chaos_runner.target import lab as lab_module
from chaos_runner.target.lab import LabSettings, LabState, lab_checks
from tests.unit.test_lab_state import record_hosts

REPO = Path(__file__).resolve().parents[2]


def cluster(tmp_path: Path, hosts: dict[str, dict] | None = None) -> Path:
    """A copy of inventory/cluster.example, its hosts replaced when `hosts` is given
    ({name: {group, vars}})."""
    inventory = tmp_path / "mycluster"
    shutil.copytree(REPO / "inventory" / "cluster.example", inventory)
    if hosts is not None:
        data = yaml.safe_load((inventory / "hosts.yml").read_text())
        groups = data["all"]["children"]["lab"]["children"]
        for members in groups.values():
            members["hosts"] = {}
        for name, spec in hosts.items():
            groups.setdefault(spec["group"], {"hosts": {}})["hosts"][name] = spec.get("vars")
        (inventory / "hosts.yml").write_text(yaml.safe_dump(data))
    return inventory


# A cluster host as the faults role records it: its own user and port, the controller
# user's keys and known_hosts, sudo for the agent.
CLUSTER_HOST = {
    "user": "chaos", "port": 2222, "key_file": "", "known_hosts": "", "become": True,
    "controller_address": "192.0.2.1", "interface": "eth0",
}  # fmt: skip


def record(state_dir: Path, inventory: Path, **extra: object) -> None:
    """What the faults role records for each host of a cluster inventory."""
    record_hosts(state_dir, inventory, **{**CLUSTER_HOST, **extra})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_chaos_runner_names_lab_hosts_and_the_lab_prefix_only_in_its_defaults():
    pattern = re.compile(
        r"\b(db1|proxy1|app1|auth1|cache1|mon1)\b|198\.18\.|labbr0|/var/lib/chaoslab"
    )
    hits = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in sorted((REPO / "chaos_runner").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits and all(h.startswith("chaos_runner/target/defaults.py:") for h in hits), hits


def test_a_cluster_is_its_inventory_and_the_playbooks_records_without_lab_json(tmp_path):
    inventory = cluster(tmp_path)
    state_dir = tmp_path / "state"
    record(state_dir, inventory)
    state = LabState.load(LabSettings(state_dir, inventory))
    assert not state.embedded and state.substrate == "inventory"
    assert sorted(state.hosts) == ["app1", "auth1", "cache1", "db1", "mon1", "proxy1"]
    assert state.roles.host("@db") == "db1" and state.gateway == "192.0.2.1"
    # Off the lab network but marked chaos_lab_allowed: let through without a bridge route.
    assert state.guard.check("192.0.2.11") == "192.0.2.11"
    with pytest.raises(AddressRefused, match="chaos_lab_allowed"):
        state.guard.check("192.0.2.99")  # no inventory host there
    target = state.ssh("db1")
    assert (target.address, target.port, target.user) == ("192.0.2.11", 2222, "chaos")
    assert target.key_file is None  # the controller user's own keys
    assert target.known_hosts == Path.home() / ".ssh" / "known_hosts"
    assert target.command(["python3", "agent", "serve"]) == "sudo -n python3 agent serve"
    assert target.ssh_argv()[-1] == "chaos@192.0.2.11" and "2222" in target.ssh_argv()


def test_the_inventory_gives_the_state_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("CHAOSLAB_STATE_DIR", raising=False)
    inventory = cluster(tmp_path)
    assert LabSettings.from_env(None, str(inventory)).state_dir == Path(
        "/var/lib/chaoslab-mycluster"
    )
    assert LabSettings.from_env(str(tmp_path), str(inventory)).state_dir == tmp_path


def test_a_host_converged_at_another_address_or_never_is_named(tmp_path):
    inventory = cluster(tmp_path)
    state_dir = tmp_path / "state"
    record(state_dir, inventory)
    (state_dir / "hosts" / "auth1.json").unlink()
    settings = LabSettings(state_dir, inventory)
    with pytest.raises(LabNotReady, match=r"auth1\.json: no record of how to reach auth1.s fault"):
        LabState.load(settings)
    record(state_dir, inventory, address="192.0.2.50")
    with pytest.raises(LabNotReady, match=r"converged at 192\.0\.2\.50, the inventory now says"):
        LabState.load(settings)


def test_status_of_a_cluster_checks_each_host_over_ssh_and_names_an_unreachable_one(
    tmp_path, monkeypatch
):
    inventory = cluster(tmp_path)
    state_dir = tmp_path / "state"
    record(state_dir, inventory)
    state = LabState.load(LabSettings(state_dir, inventory))
    monkeypatch.setattr(lab_module, "_tcp_open", lambda address, port: address != "192.0.2.14")
    asked: list[str] = []

    def programs(host: str) -> list[dict]:
        asked.append(host)
        return [{"name": "x", "pid": 7, "alive": True, "rss_kb": 1024, "active": True}]

    checks = {(c.host, c.item): c for c in lab_checks(state, programs)}
    assert not {item for _, item in checks} & {"guest", "root", "substrate", "bridge labbr0"}
    assert checks[("db1", "ssh port")].detail == "192.0.2.11:2222"
    down = checks[("auth1", "ssh port")]
    assert not down.ok and "unreachable: check its ansible_host/ansible_port" in down.detail
    assert sorted(asked) == ["app1", "cache1", "db1", "mon1", "proxy1"]


def lab_status(inventory: Path, state_dir: Path, capsys) -> tuple[int, str]:
    rc = main(["--inventory", str(inventory), "--state-dir", str(state_dir), "lab", "status"])
    return rc, capsys.readouterr().err


def test_bad_inventories_exit_2_naming_the_host_or_group(tmp_path, capsys):
    no_address = cluster(tmp_path / "a", {"db1": {"group": "db"}})
    rc, err = lab_status(no_address, tmp_path, capsys)
    assert rc == 2 and "host db1 has no address" in err and "ansible_host" in err

    not_allowed = cluster(
        tmp_path / "b",
        {
            name: {"group": group, "vars": {"ansible_host": f"192.0.2.{i}"}}
            for i, (name, group) in enumerate(
                [("db1", "db"), ("proxy1", "proxy"), ("app1", "app"), ("auth1", "auth")], 11
            )
        },
    )
    (not_allowed / "group_vars" / "lab.yml").write_text("ansible_user: root\n")
    rc, err = lab_status(not_allowed, tmp_path, capsys)
    assert rc == 2 and re.search(r"host app1 \(192\.0\.2\.13\) is not on the lab network", err)
    assert "chaos_lab_allowed: true" in err

    no_auth = cluster(
        tmp_path / "c",
        {
            "db1": {"group": "db", "vars": {"ansible_host": "192.0.2.11"}},
            "proxy1": {"group": "proxy", "vars": {"ansible_host": "192.0.2.12"}},
            "app1": {"group": "app", "vars": {"ansible_host": "192.0.2.13"}},
        },
    )
    rc, err = lab_status(no_auth, tmp_path, capsys)
    assert rc == 2 and "no hosts in group(s) auth" in err


def test_an_unreachable_host_stops_a_run_with_exit_2_naming_it(tmp_path, capsys):
    hosts = {
        name: {"group": group, "vars": {"ansible_host": "127.0.0.1"}}
        for name, group in [("pg-a", "db"), ("lb-a", "proxy"), ("api-a", "app"), ("idp-a", "auth")]
    }
    inventory = cluster(tmp_path, hosts)
    state_dir = tmp_path / "state"
    record(state_dir, inventory, port=free_port())  # nothing listens there
    rc = main(
        ["--inventory", str(inventory), "--state-dir", str(state_dir), "run", "smoke", "--dry-run"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "api-a ssh port: 127.0.0.1:" in err and "unreachable" in err
    assert f"chaoslab --inventory {inventory} lab up" in err


def test_an_unsupported_fraiseql_line_is_refused_before_anything_runs(tmp_path, capsys):
    rc = main(["--state-dir", str(tmp_path), "lab", "up", "--fraiseql-version", "1.2.3"])
    err = capsys.readouterr().err
    assert rc == 2 and "fraiseql_version 1.2.3 (--fraiseql-version): not a supported" in err
    assert "1.9.16" in err and "0.5.3" in err
    assert list(tmp_path.iterdir()) == []
