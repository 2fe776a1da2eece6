"""The embedded lab as the runner sees it: where its state is, what is up, how healthy.

`lab up` and `lab down` are Ansible playbooks (playbooks/lab_up.yml, lab_down.yml,
site.yml); this module reads what they recorded (lab.json: one systemd-nspawn guest per
host) and checks it against the kernel on the controller, and each host's programs through
its fault agent (a guest's files and PIDs are its own: the controller does not read them).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from chaos_runner.ansible import REPO_ROOT
from chaos_runner.errors import ChaosRunnerError, LabNotReady
from chaos_runner.target.inventory import load_inventory
from chaos_runner.target.netguard import DEFAULT_LAB_NETWORK, NetworkGuard
from chaos_runner.target.roles import HostRoles

DEFAULT_STATE_DIR = Path("/var/lib/chaoslab")
# What `lab up` builds each host as; a lab.json of another substrate is from an older lab.
SUBSTRATE = "nspawn"


@dataclass(frozen=True)
class LabSettings:
    state_dir: Path
    inventory: Path

    @classmethod
    def from_env(cls, state_dir: str | None = None, inventory: str | None = None) -> LabSettings:
        return cls(
            state_dir=Path(state_dir or os.environ.get("CHAOSLAB_STATE_DIR") or DEFAULT_STATE_DIR),
            inventory=Path(
                inventory or os.environ.get("CHAOSLAB_INVENTORY") or REPO_ROOT / "inventory" / "lab"
            ),
        )

    def secret(self, name: str) -> str:
        """A password the inventory generated for this lab (Ansible's password lookup: a
        0600 file in <state>/secrets; its first word is the password)."""
        path = self.state_dir / "secrets" / name
        try:
            return path.read_text().split()[0]
        except (OSError, IndexError):
            raise LabNotReady(
                f"{path}: no generated secret {name!r} (run `chaoslab lab up`, which creates it)"
            ) from None


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

    @property
    def program(self) -> str:
        """The app's program name on its host: its pidfile's (a path on the host) stem."""
        return PurePosixPath(self.pidfile).stem


@dataclass
class LabState:
    settings: LabSettings
    bridge: str
    gateway: str
    hosts: dict[str, dict[str, str]]
    apps: dict[str, AppEndpoint] = field(default_factory=dict)
    roles: HostRoles = field(default_factory=lambda: HostRoles({}, {}))
    network: ipaddress.IPv4Network | ipaddress.IPv6Network = DEFAULT_LAB_NETWORK
    substrate: str = SUBSTRATE
    # The controller's key for root@<host> and the lab's own known_hosts.
    ssh_key: Path = DEFAULT_STATE_DIR / "ssh" / "id_ed25519"
    known_hosts: Path = DEFAULT_STATE_DIR / "ssh" / "known_hosts"

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
            # A lab.json without a substrate is from before guests (network namespaces).
            substrate=str(data.get("substrate", "netns")),
            ssh_key=Path(data.get("ssh_key") or settings.state_dir / "ssh" / "id_ed25519"),
            known_hosts=Path(data.get("known_hosts") or settings.state_dir / "ssh" / "known_hosts"),
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


def guest_alive(host: dict[str, str]) -> tuple[bool, str]:
    """Whether a host's guest runs: the pid in its nspawn pidfile is a `systemd-nspawn`
    process for this machine (`-M <machine>`); with the pid (and release) as the detail."""
    path = host.get("nspawn_pidfile")
    if not path:
        return False, "lab.json has no nspawn_pidfile for this host (run `chaoslab lab up`)"
    try:
        pid = int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False, f"no pid in {path}"
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False, f"pid {pid} from {path} is not running"
    if comm != "systemd-nspawn":
        return False, f"pid {pid} from {path} is {comm!r}, not systemd-nspawn"
    machine = host.get("machine", "")
    if machine not in _machine_names(argv):
        return False, f"pid {pid} is systemd-nspawn for another machine (not -M {machine})"
    return True, f"pid {pid}, release {host.get('release', '?')}"


def _machine_names(argv: list[str]) -> list[str]:
    """The -M/--machine values on a systemd-nspawn command line, in any of their spellings."""
    names = []
    for i, arg in enumerate(argv):
        if arg in ("-M", "--machine") and i + 1 < len(argv):
            names.append(argv[i + 1])
        elif arg.startswith("--machine="):
            names.append(arg.split("=", 1)[1])
        elif arg.startswith("-M") and len(arg) > 2 and not arg.startswith("--"):
            names.append(arg[2:])
    return names


def _tcp_open(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


# Host -> the `programs` answer of its fault agent: [{name, pid, alive, rss_kb, active, ...}].
ProgramStates = Callable[[str], list[dict[str, Any]]]


def lab_checks(state: LabState, programs: ProgramStates | None = None) -> list[Check]:
    """Everything `lab status` reports, each with ok/not ok and a detail. Program states come
    from each host's fault agent: `programs` (e.g. FaultClient.programs) or, when None, a
    client opened for these checks."""
    if programs is None:
        from chaos_runner.faults.channel import FaultClient  # the channel imports this module

        with FaultClient(state) as client:
            return lab_checks(state, client.programs)
    checks: list[Check] = []
    if state.substrate != SUBSTRATE:
        checks.append(
            Check(
                "controller",
                "substrate",
                False,
                f"lab.json describes a {state.substrate!r} lab, not {SUBSTRATE!r} guests"
                " (run `chaoslab lab up`)",
            )
        )
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
        alive, detail = guest_alive(host)
        checks.append(Check(name, "guest", alive, detail))
        root = host.get("root", "")
        checks.append(Check(name, "root", bool(root) and os.path.ismount(root), root or "?"))
        reachable = False
        if up:
            reachable = _tcp_open(state.guard.check(host["address"]), 22)
            checks.append(Check(name, "ssh port", reachable, f"{host['address']}:22"))
        if alive and reachable:
            checks += _program_checks(name, programs)
    for app in state.apps.values():
        checks.append(_app_health(state, app))
    return checks


def _program_checks(host: str, programs: ProgramStates) -> list[Check]:
    try:
        answer = programs(host)
    except ChaosRunnerError as exc:
        return [Check(host, "fault agent", False, str(exc))]
    checks = [Check(host, "fault agent", True, f"{len(answer)} programs")]
    for p in sorted(answer, key=lambda p: str(p["name"])):
        if p["alive"]:
            rss = f", {p['rss_kb'] / 1024:.0f} MB" if p.get("rss_kb") is not None else ""
            detail = f"pid {p['pid']}{rss}"
        else:
            detail = "not running" if p["pid"] is None else f"pid {p['pid']} is not running"
        if p.get("unit_state") not in (None, "active"):
            detail += f"; unit {p['unit_state']}"
        checks.append(Check(host, str(p["name"]), bool(p["active"]), detail))
    return checks


def _app_health(state: LabState, app: AppEndpoint) -> Check:
    try:
        state.guard.check(app.address)
        with urllib.request.urlopen(app.url + "/health", timeout=3) as resp:
            body = resp.read(200).decode(errors="replace")
            return Check(app.host, f"fraiseql {app.version} /health", resp.status == 200, body)
    except (urllib.error.URLError, OSError, LabNotReady) as exc:
        return Check(app.host, f"fraiseql {app.version} /health", False, str(exc))


def on_host(
    lab: LabState,
    host: str,
    *argv: str,
    timeout: float = 30,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command on lab host `host` (in its guest: its files, processes and network
    namespace), as root over SSH with the lab's key - the way Ansible reaches it. The
    controller never reads a host's files or PIDs itself."""
    address = lab.guard.check(lab.hosts[host]["address"])
    return subprocess.run(
        [
            "ssh",
            "-i", str(lab.ssh_key),
            "-o", f"UserKnownHostsFile={lab.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5",
            f"root@{address}",
            shlex.join(argv),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )  # fmt: skip


def start_on_host(lab: LabState, host: str, *argv: str) -> int:
    """Start a long-running command on `host`, detached from the SSH session; its pid there."""
    script = f"setsid {shlex.join(argv)} </dev/null >/dev/null 2>&1 & echo $!"
    return int(on_host(lab, host, "sh", "-c", script).stdout.split()[0])
