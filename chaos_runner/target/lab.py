"""The embedded lab as the runner sees it: where its state is, what is up, how healthy.

`lab up` and `lab down` are Ansible playbooks (playbooks/lab_up.yml, lab_down.yml,
site.yml); this module reads what they recorded and checks it against the kernel.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_runner.ansible import REPO_ROOT
from chaos_runner.errors import LabNotReady
from chaos_runner.target.inventory import load_inventory
from chaos_runner.target.netguard import DEFAULT_LAB_NETWORK, NetworkGuard
from chaos_runner.target.roles import HostRoles

DEFAULT_STATE_DIR = Path("/var/lib/chaoslab")
DEFAULT_HOST_ROOT = Path("/srv/chaoslab")
DEFAULT_SUPERVISORCTL = Path("/opt/chaoslab/supervisor/bin/supervisorctl")


@dataclass(frozen=True)
class LabSettings:
    state_dir: Path
    inventory: Path
    host_root: Path = DEFAULT_HOST_ROOT

    @classmethod
    def from_env(cls, state_dir: str | None = None, inventory: str | None = None) -> LabSettings:
        return cls(
            state_dir=Path(state_dir or os.environ.get("CHAOSLAB_STATE_DIR") or DEFAULT_STATE_DIR),
            inventory=Path(
                inventory or os.environ.get("CHAOSLAB_INVENTORY") or REPO_ROOT / "inventory" / "lab"
            ),
        )


@dataclass(frozen=True)
class AppEndpoint:
    """How to reach one FraiseQL app host, as recorded by the fraiseql role."""

    host: str
    url: str
    version: str
    issuer: str
    audience: str
    auth_enabled: bool
    pidfile: str
    raw: dict[str, Any]

    @property
    def address(self) -> str:
        return self.url.split("//", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@dataclass
class LabState:
    settings: LabSettings
    bridge: str
    gateway: str
    hosts: dict[str, dict[str, str]]
    apps: dict[str, AppEndpoint] = field(default_factory=dict)
    roles: HostRoles = field(default_factory=lambda: HostRoles({}, {}))
    network: ipaddress.IPv4Network | ipaddress.IPv6Network = DEFAULT_LAB_NETWORK

    @classmethod
    def load(cls, settings: LabSettings) -> LabState:
        path = settings.state_dir / "lab.json"
        if not path.is_file():
            raise LabNotReady(f"the lab is not up: {path} does not exist (run `chaoslab lab up`)")
        data = json.loads(path.read_text())
        apps: dict[str, AppEndpoint] = {}
        for app_file in sorted((settings.state_dir / "apps").glob("*.json")):
            raw = json.loads(app_file.read_text())
            apps[raw["host"]] = AppEndpoint(
                host=raw["host"],
                url=raw["url"],
                version=raw["version"],
                issuer=raw["issuer"],
                audience=raw["audience"],
                auth_enabled=bool(raw["auth_enabled"]),
                pidfile=raw["pidfile"],
                raw=raw,
            )
        inventory = load_inventory(settings.inventory)
        inventory_roles = inventory.roles()
        # Addresses as recorded by `lab up`; groups as the inventory defines them.
        addresses = {h: v["address"] for h, v in data["hosts"].items()}
        return cls(
            settings=settings,
            bridge=data["bridge"],
            gateway=data["gateway"],
            hosts=data["hosts"],
            apps=apps,
            roles=HostRoles(
                {g: [h for h in m if h in addresses] for g, m in inventory_roles.groups.items()},
                addresses,
            ),
            network=inventory.lab_network(),
        )

    @property
    def guard(self) -> NetworkGuard:
        return NetworkGuard(lab_network=self.network, bridge=self.bridge)

    def host(self, reference: str) -> str:
        """A host name from `@group[i]` (or a known host name, for the CLI)."""
        if reference in self.hosts:
            return reference
        return self.roles.host(reference)

    def app(self, host: str | None = None) -> AppEndpoint:
        if not self.apps:
            raise LabNotReady("no FraiseQL app is recorded: run `chaoslab lab up` (site.yml)")
        if host is None:
            return self.apps[sorted(self.apps)[0]]
        if host.startswith("@"):
            host = self.roles.host(host)
        if host not in self.apps:
            raise LabNotReady(f"no FraiseQL app on {host!r}; known: {', '.join(sorted(self.apps))}")
        return self.apps[host]


@dataclass(frozen=True)
class Check:
    host: str
    item: str
    ok: bool
    detail: str


def _netns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except FileNotFoundError:
        return None


def _pid_in_netns(pidfile: Path, inode: int | None) -> tuple[bool, str]:
    try:
        pid = int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return False, f"no pid in {pidfile}"
    try:
        ns = os.stat(f"/proc/{pid}/ns/net").st_ino
    except FileNotFoundError:
        return False, f"pid {pid} is not running"
    if inode is not None and ns != inode:
        return False, f"pid {pid} is in another network namespace"
    return True, f"pid {pid}"


def _tcp_open(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def supervised_programs(settings: LabSettings, host: str) -> dict[str, str]:
    """Program -> state line from the host's supervisord (lab hosts share the filesystem)."""
    conf = settings.host_root / host / "etc" / "supervisord.conf"
    if not conf.is_file() or not DEFAULT_SUPERVISORCTL.exists():
        return {}
    proc = subprocess.run(
        [str(DEFAULT_SUPERVISORCTL), "-c", str(conf), "status"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    programs = {}
    for line in proc.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and not line.startswith(("unix://", "error")):
            programs[parts[0]] = parts[1].strip()
    return programs


def lab_checks(state: LabState) -> list[Check]:
    """Everything `lab status` reports, each with ok/not ok and a detail."""
    checks: list[Check] = []
    bridge_up = Path(f"/sys/class/net/{state.bridge}/operstate")
    up = bridge_up.exists() and bridge_up.read_text().strip() in ("up", "unknown")
    checks.append(
        Check(
            "controller",
            f"bridge {state.bridge}",
            up,
            f"gateway {state.gateway}" if up else "missing or down",
        )
    )
    for name, host in sorted(state.hosts.items()):
        inode = _netns_inode(host["netns"])
        checks.append(Check(name, "namespace", inode is not None, host["netns"]))
        veth = Path(f"/sys/class/net/{host['veth']}").exists()
        checks.append(Check(name, "veth", veth, host["veth"]))
        ok, detail = _pid_in_netns(Path(host["sshd_pidfile"]), inode)
        checks.append(Check(name, "sshd", ok, detail))
        if up:
            reachable = _tcp_open(state.guard.check(host["address"]), 22)
            checks.append(Check(name, "ssh port", reachable, f"{host['address']}:22"))
        for program, line in sorted(supervised_programs(state.settings, name).items()):
            checks.append(Check(name, program, line.startswith("RUNNING"), line))
    for app in state.apps.values():
        checks.append(_app_health(state, app))
    return checks


def _app_health(state: LabState, app: AppEndpoint) -> Check:
    try:
        state.guard.check(app.address)
        with urllib.request.urlopen(app.url + "/health", timeout=3) as resp:
            body = resp.read(200).decode(errors="replace")
            return Check(app.host, f"fraiseql {app.version} /health", resp.status == 200, body)
    except (urllib.error.URLError, OSError, LabNotReady) as exc:
        return Check(app.host, f"fraiseql {app.version} /health", False, str(exc))
