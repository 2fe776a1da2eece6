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

from chaos_runner.errors import ConfigError
from chaos_runner.target.netguard import DEFAULT_LAB_NETWORK
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
            return DEFAULT_LAB_NETWORK
        value = values.pop()
        try:
            return ipaddress.ip_network(value)
        except ValueError:
            raise ConfigError(
                f"{self.path}: lab_subnet: {value!r} is not a network like 198.18.0.0/24"
            ) from None

    def require_groups(self, groups: Iterable[str] = REQUIRED_GROUPS) -> None:
        missing = [g for g in groups if not self.group(g)]
        if missing:
            raise ConfigError(
                f"{self.path}: inventory has no hosts in group(s) {', '.join(missing)}; "
                f"the stack needs {', '.join(REQUIRED_GROUPS)}"
            )

    def require_lab_hosts(
        self, network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    ) -> None:
        """Refuse hosts outside the lab network unless marked chaos_lab_allowed."""
        network = network or self.lab_network()
        for host in self.hosts.values():
            if "controller" in host.groups:
                continue
            try:
                inside = ipaddress.ip_address(host.address) in network
            except ValueError:
                inside = False
            if not inside and not host.lab_allowed:
                raise ConfigError(
                    f"{self.path}: host {host.name} ({host.address}) is not on the lab network "
                    f"{network} and is not marked chaos_lab_allowed: true - refusing to act on it"
                )


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
