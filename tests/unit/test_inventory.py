from pathlib import Path

import pytest

from chaos_runner.errors import ConfigError
from chaos_runner.target.inventory import load_inventory

REPO = Path(__file__).resolve().parents[2]


def test_the_lab_inventory_has_every_group_and_only_lab_hosts():
    inv = load_inventory(REPO / "inventory" / "lab")
    inv.require_groups()
    inv.require_lab_hosts()
    assert {h.name: h.address for h in inv.group("lab")} == {
        "db1": "198.18.0.11",
        "proxy1": "198.18.0.12",
        "app1": "198.18.0.13",
        "auth1": "198.18.0.14",
        "cache1": "198.18.0.15",
        "mon1": "198.18.0.16",
    }
    assert inv.hosts["db1"].groups >= {"all", "lab", "db"}


def test_the_cluster_example_is_marked_allowed():
    inv = load_inventory(REPO / "inventory" / "cluster.example")
    inv.require_groups()
    inv.require_lab_hosts()
    assert all(h.lab_allowed for h in inv.hosts.values() if "controller" not in h.groups)


def write(tmp_path, text):
    (tmp_path / "hosts.yml").write_text(text)
    return tmp_path


def test_a_missing_group_is_named(tmp_path):
    inv = load_inventory(
        write(
            tmp_path,
            """
all:
  children:
    db: {hosts: {db1: {ansible_host: 198.18.0.11}}}
    app: {hosts: {app1: {ansible_host: 198.18.0.13}}}
""",
        )
    )
    with pytest.raises(ConfigError, match=r"no hosts in group\(s\) proxy, auth"):
        inv.require_groups()


def test_a_host_outside_the_lab_is_refused_unless_allowed(tmp_path):
    inv = load_inventory(
        write(
            tmp_path,
            """
all:
  children:
    db: {hosts: {db9: {ansible_host: 10.20.30.40}}}
""",
        )
    )
    with pytest.raises(ConfigError, match=r"db9 \(10.20.30.40\) is not on the lab network"):
        inv.require_lab_hosts()
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "db.yml").write_text("chaos_lab_allowed: true\n")
    load_inventory(tmp_path).require_lab_hosts()


def test_bad_yaml_names_the_file(tmp_path):
    write(tmp_path, "all: [unclosed\n")
    with pytest.raises(ConfigError, match=r"hosts.yml: not valid YAML"):
        load_inventory(tmp_path)


def test_unknown_group_keys_are_named(tmp_path):
    write(tmp_path, "all:\n  childs: {}\n")
    with pytest.raises(ConfigError, match=r"group 'all' has unknown key\(s\) \['childs'\]"):
        load_inventory(tmp_path)
