"""Reading the lab's YAML inventories (hosts, groups, addresses) without Ansible.

Used to check, before anything runs, that every host is a lab host and that the
groups the playbooks need exist.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chaos_runner.ansible import REPO_ROOT
from chaos_runner.errors import ConfigError
from chaos_runner.target.defaults import INVENTORY, LAB_NETWORK
from chaos_runner.target.roles import HostRoles

REQUIRED_GROUPS = ("db", "proxy", "app", "auth")


@dataclass
class InventoryHost:
    name: str
    address: str
    groups: set[str] = field(default_factory=set)
    variables: dict[str, Any] = field(default_factory=dict)

    @property
    def lab_allowed(self) -> bool:
        return bool(self.variables.get("chaos_lab_allowed", False))


@dataclass
class Inventory:
    path: Path
    hosts: dict[str, InventoryHost]

    def group(self, name: str) -> list[InventoryHost]:
        return [h for h in self.hosts.values() if name in h.groups]

    def roles(self) -> HostRoles:
        """Every group with its hosts in inventory order, for `@group[i]` references."""
        groups: dict[str, list[str]] = {}
        for host in self.hosts.values():
            for group in host.groups:
                groups.setdefault(group, []).append(host.name)
        return HostRoles(groups, {h.name: h.address for h in self.hosts.values()})

    def lab_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The lab network: `lab_subnet` of the inventory (group_vars), else the default."""
        values = {
            str(h.variables["lab_subnet"])
            for h in self.hosts.values()
            if "lab_subnet" in h.variables
        }
        if len(values) > 1:
            raise ConfigError(f"{self.path}: lab_subnet differs between hosts: {sorted(values)}")
        if not values:
            return LAB_NETWORK
        value = values.pop()
        try:
            return ipaddress.ip_network(value)
        except ValueError:
            raise ConfigError(
                f"{self.path}: lab_subnet: {value!r} is not a network like {LAB_NETWORK}"
            ) from None

    def require_groups(self, groups: Iterable[str] = REQUIRED_GROUPS) -> None:
        missing = [g for g in groups if not self.group(g)]
        if missing:
            raise ConfigError(
                f"{self.path}: inventory has no hosts in group(s) {', '.join(missing)}; "
                f"the stack needs {', '.join(REQUIRED_GROUPS)}"
            )

    def lab_hosts(self) -> list[InventoryHost]:
        """The hosts the tooling acts on: every host but the controller, in inventory order."""
        return [h for h in self.hosts.values() if "controller" not in h.groups]

    def embedded(self) -> bool:
        """An embedded-lab inventory: every host on the lab network, none marked allowed
        (`lab up` builds its guests on this machine)."""
        network = self.lab_network()
        hosts = self.lab_hosts()
        return bool(hosts) and all(not h.lab_allowed and _in(h.address, network) for h in hosts)

    def up_command(self) -> str:
        """The command that brings this inventory's lab up, for messages."""
        default = self.path.resolve() == (REPO_ROOT / INVENTORY).resolve()
        return "chaoslab lab up" if default else f"chaoslab --inventory {self.path} lab up"

    def state_dir(self) -> Path | None:
        """`lab_state_dir` when the inventory sets it to a plain path (not a template)."""
        values = {
            str(h.variables["lab_state_dir"])
            for h in self.hosts.values()
            if "lab_state_dir" in h.variables
        }
        plain = {v for v in values if "{{" not in v}
        if len(plain) > 1:
            raise ConfigError(f"{self.path}: lab_state_dir differs between hosts: {sorted(plain)}")
        return Path(plain.pop()) if plain else None

    def require_lab_hosts(
        self, network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    ) -> None:
        """Refuse a host without an IP address, and hosts outside the lab network unless
        marked chaos_lab_allowed."""
        network = network or self.lab_network()
        for host in self.lab_hosts():
            try:
                inside = ipaddress.ip_address(host.address) in network
            except ValueError:
                raise ConfigError(
                    f"{self.path}: host {host.name} has no address ({host.address!r} is not an IP "
                    "address, and names are never resolved): set ansible_host: <its IP address>"
                ) from None
            if not inside and not host.lab_allowed:
                raise ConfigError(
                    f"{self.path}: host {host.name} ({host.address}) is not on the lab network "
                    f"{network} and is not marked chaos_lab_allowed: true - refusing to act on it"
                )


def _in(address: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


def _inventory_file(path: Path) -> Path:
    if path.is_dir():
        for candidate in ("hosts.yml", "hosts.yaml"):
            if (path / candidate).is_file():
                return path / candidate
        raise ConfigError(f"{path}: inventory directory has no hosts.yml")
    if not path.is_file():
        raise ConfigError(f"{path}: inventory does not exist")
    return path


def load_inventory(path: str | Path) -> Inventory:
    inv_path = Path(path)
    source = _inventory_file(inv_path)
    try:
        data = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a YAML mapping at the top")
    hosts: dict[str, InventoryHost] = {}

    def walk(group: str, node: Any, parents: tuple[str, ...], inherited: dict[str, Any]) -> None:
        if node is None:
            return
        if not isinstance(node, dict):
            raise ConfigError(
                f"{source}: group {group!r} must be a mapping, got {type(node).__name__}"
            )
        unknown = set(node) - {"hosts", "children", "vars"}
        if unknown:
            raise ConfigError(f"{source}: group {group!r} has unknown key(s) {sorted(unknown)}")
        variables = {**inherited, **(node.get("vars") or {})}
        lineage = (*parents, group)
        for name, host_vars in (node.get("hosts") or {}).items():
            host_vars = host_vars or {}
            host = hosts.setdefault(name, InventoryHost(name=name, address=""))
            host.groups.update(lineage)
            host.variables = {**variables, **host.variables, **host_vars}
            host.address = str(host.variables.get("ansible_host", name))
        for child, child_node in (node.get("children") or {}).items():
            walk(child, child_node, lineage, variables)

    for top, node in data.items():
        walk(top, node, (), {})
    if inv_path.is_dir():
        _apply_vars_dirs(inv_path, hosts)
    return Inventory(path=inv_path, hosts=hosts)


def _vars_files(directory: Path, name: str) -> list[Path]:
    files = [directory / f"{name}.yml", directory / f"{name}.yaml"]
    if (directory / name).is_dir():
        files += sorted((directory / name).glob("*.y*ml"))
    return [f for f in files if f.is_file()]


def _apply_vars_dirs(inv_dir: Path, hosts: dict[str, InventoryHost]) -> None:
    """Merge group_vars/ and host_vars/ (static values only; templates stay strings)."""
    for host in hosts.values():
        merged: dict[str, Any] = {}
        for group in ["all", *sorted(host.groups - {"all"})]:
            for f in _vars_files(inv_dir / "group_vars", group):
                merged.update(_load_vars(f))
        merged.update(host.variables)
        for f in _vars_files(inv_dir / "host_vars", host.name):
            merged.update(_load_vars(f))
        host.variables = merged
        host.address = str(merged.get("ansible_host", host.name))


def _load_vars(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of variables")
    return data
