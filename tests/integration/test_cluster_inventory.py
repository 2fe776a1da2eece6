"""The runner on a cluster-shaped inventory, proven on the guests.

The inventory is written as an operator writes one for their test cluster: hosts by
address, every host marked `chaos_lab_allowed: true`, its own controller state directory
(passwords, PKI and the playbooks' records made afresh there), its own SSH key authorised
on the hosts and their host keys scanned into its own known_hosts - nothing taken from the
embedded lab's state. The hosts are the embedded lab's guests (the only machines here),
keeping their inventory names so the services' paths and units stay the same ones.
`lab up` on it runs site.yml only (no substrate), then its status checks over SSH; the
smoke suite runs on it with the outcomes it has on the embedded lab (README findings);
heal leaves nothing. Afterwards the embedded lab is converged back to its own state.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from chaos_runner.target import converged
from chaos_runner.target.lab import LabSettings, LabState, on_host
from tests.conftest import chaoslab

pytestmark = pytest.mark.integration

# The groups of the cluster inventory: the stack without a monitoring host (an optional
# group), so a cluster without one is proven to run too.
CLUSTER_GROUPS = ("db", "proxy", "app", "auth", "cache")
SMOKE = ["auth.bypass", "auth.jwks-500", "db.lost-update", "net.db-stopped", "res.app-pause"]
# The smoke suite's outcomes on the embedded lab, per FraiseQL line (README findings): all
# pass, but for 1.31.1's masked errors while PostgreSQL is stopped.
DEVIATIONS = {"1.31.1": {"net.db-stopped"}}


def embedded_outcomes(line: str) -> dict[str, str]:
    deviated = DEVIATIONS.get(line, set())
    return {s: "deviated" if s in deviated else "passed" for s in SMOKE}


def cluster_hosts(lab: LabState) -> list[str]:
    return sorted(h for g in CLUSTER_GROUPS for h in lab.roles.groups.get(g, []))


def cluster_cli(
    inventory: Path, *args: str, timeout: int = 1800
) -> subprocess.CompletedProcess[str]:
    """chaoslab on the cluster inventory, its state directory from the inventory alone."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("CHAOSLAB_STATE_DIR", "CHAOSLAB_INVENTORY")
    }
    # Its own SSH master connections: never one the embedded lab's key opened.
    env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(inventory.parent / "cp")
    return chaoslab("--inventory", str(inventory), *args, timeout=timeout, env=env)


def write_inventory(base: Path, lab: LabState, key: Path, known_hosts: Path) -> Path:
    groups: dict[str, dict] = {}
    for group in CLUSTER_GROUPS:
        groups[group] = {
            "hosts": {
                host: {"ansible_host": lab.hosts[host]["address"]}
                for host in lab.roles.groups.get(group, [])
            }
        }
    inventory = base / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "controller": {
                            "hosts": {
                                "localhost": {
                                    "ansible_connection": "local",
                                    "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                                }
                            }
                        },
                        "lab": {"children": groups},
                    }
                }
            },
            sort_keys=False,
        )
    )
    secrets = "{{ lab_state_dir }}/secrets"
    password = (
        "{{{{ lookup('ansible.builtin.password', '{}/{}', length=32,"
        " chars=['ascii_letters', 'digits']) }}}}"
    )
    (inventory / "group_vars" / "all.yml").write_text(
        yaml.safe_dump(
            {
                "lab_state_dir": str(base / "state"),
                "chaos_environment": "cluster",
                "postgresql_app_password": password.format(secrets, "postgresql_app_password"),
                "postgresql_chaos_password": password.format(secrets, "postgresql_chaos_password"),
                "fraiseql_database_password": "{{ postgresql_app_password }}",
            }
        )
    )
    (inventory / "group_vars" / "lab.yml").write_text(
        yaml.safe_dump(
            {
                "chaos_lab_allowed": True,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
                    " -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=5"
                ),
                "ansible_python_interpreter": "/usr/bin/python3",
                "faults_interface": "host0",
            }
        )
    )
    return inventory


@pytest.fixture(scope="module")
def cluster(lab: LabState, lab_settings: LabSettings, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("cluster")
    key = base / "id_ed25519"
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "chaoslab-cluster-test",
            "-f",
            str(key),
        ],
        check=True,
    )
    public = key.with_name("id_ed25519.pub").read_text().strip()
    scanned = []
    for host in sorted(lab.hosts):
        # The cluster's operator authorises the key on each host, as on a VM.
        on_host(lab, host, "sh", "-c", f"echo {shlex.quote(public)} >> /root/.ssh/authorized_keys")
        address = lab.guard.check(lab.hosts[host]["address"])
        scan = subprocess.run(
            ["ssh-keyscan", "-t", "ed25519", address],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        scanned.append(scan.stdout)
    known_hosts = base / "known_hosts"
    known_hosts.write_text("".join(scanned))
    inventory = write_inventory(base, lab, key, known_hosts)
    # The guests get other passwords and keys: the embedded lab's record of its last
    # converge no longer holds, whatever happens below.
    converged.forget(lab_settings)
    line = LabState.load(lab_settings).app().version  # the line the guests run now
    try:
        up = cluster_cli(inventory, "lab", "up", "-q", "--fraiseql-version", line)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield inventory
    finally:
        back = chaoslab("lab", "up", "-q", "--converge", "--fraiseql-version", line, timeout=1800)
        assert back.returncode == 0, back.stderr[-3000:]


def test_lab_up_on_a_cluster_runs_the_stack_only_and_records_how_to_reach_each_host(cluster, lab):
    state_dir = cluster.parent / "state"
    assert not (state_dir / "lab.json").exists()
    cluster_state = LabState.load(LabSettings(state_dir, cluster))
    assert not cluster_state.embedded and cluster_state.settings.state_dir == state_dir
    assert sorted(cluster_state.hosts) == cluster_hosts(lab)
    assert cluster_state.monitors == {}
    for host in cluster_state.hosts:
        target = cluster_state.ssh(host)
        assert target.key_file == cluster.parent / "id_ed25519"
        assert target.known_hosts == cluster.parent / "known_hosts"
    # The passwords are this inventory's own, generated in its state directory.
    own = (state_dir / "secrets" / "postgresql_chaos_password").read_text().split()[0]
    embedded = (
        (lab.settings.state_dir / "secrets" / "postgresql_chaos_password").read_text().split()[0]
    )
    assert own != embedded
    status = cluster_cli(cluster, "lab", "status", timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "guest" not in status.stdout and "ssh port" in status.stdout


def test_the_smoke_suite_on_the_cluster_inventory_has_the_embedded_labs_outcomes(
    cluster, lab, tmp_path
):
    run = cluster_cli(cluster, "--runs-dir", str(tmp_path), "run", "smoke", timeout=900)
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    journal = json.loads((run_dir / "journal.json").read_text())
    outcomes = {s["scenario"]: s["outcome"] for s in journal["scenarios"]}
    line = LabState.load(LabSettings(cluster.parent / "state", cluster)).app().version
    expected = embedded_outcomes(line)
    assert outcomes == expected, run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == (1 if "deviated" in expected.values() else 0)
    heal = cluster_cli(cluster, "heal", timeout=300)
    assert heal.returncode == 0, heal.stdout + heal.stderr
    rows = [line.split() for line in heal.stdout.splitlines()[2:] if line.strip()]
    assert sorted(row[0] for row in rows) == cluster_hosts(lab)
    assert all(row[-1] == "clean" for row in rows), heal.stdout
