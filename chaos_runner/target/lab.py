"""The lab as the runner sees it: its hosts, how to reach them, what is up, how healthy.

Any inventory (the embedded lab's or a cluster's) is a lab: its hosts and groups come from
the inventory; how to reach each host's fault agent (address, SSH user, port, key,
known_hosts, become, the agent's paths) and each FraiseQL app comes from the records the
playbooks write on the controller (`<state>/hosts/*.json` by the faults role,
`<state>/apps/*.json` by the fraiseql role, `<state>/monitoring/*.json` by the monitoring
role). The embedded lab adds lab.json (one systemd-nspawn guest per host, the bridge):
only then are guests, mounts and the bridge checked on the controller. A host's files
and PIDs are its own: its programs are read through its fault agent.
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
from chaos_runner.errors import ChaosRunnerError, ConfigError, LabNotReady
from chaos_runner.target import defaults
from chaos_runner.target.inventory import Inventory, load_inventory
from chaos_runner.target.monitoring import Monitor, load_monitors, monitor_checks
from chaos_runner.target.netguard import NetworkGuard, route_source
from chaos_runner.target.roles import HostRoles

DEFAULT_STATE_DIR = defaults.STATE_DIR
# What `lab up` builds each host as; a lab.json of another substrate is from an older lab.
SUBSTRATE = "nspawn"
# The faults role's record of each host (roles/faults/tasks/configure.yml).
HOST_RECORD_KEYS = (
    "address",
    "user",
    "port",
    "key_file",
    "known_hosts",
    "become",
    "agent",
    "agent_config",
)


@dataclass(frozen=True)
class LabSettings:
    state_dir: Path
    inventory: Path

    @classmethod
    def from_env(cls, state_dir: str | None = None, inventory: str | None = None) -> LabSettings:
        """The state directory: --state-dir, else CHAOSLAB_STATE_DIR, else the inventory's
        `lab_state_dir` (when a plain path), else the embedded lab's."""
        inventory_path = Path(
            inventory or os.environ.get("CHAOSLAB_INVENTORY") or REPO_ROOT / defaults.INVENTORY
        )
        chosen = state_dir or os.environ.get("CHAOSLAB_STATE_DIR")
        if chosen:
            return cls(state_dir=Path(chosen), inventory=inventory_path)
        try:
            own = load_inventory(inventory_path).state_dir()
        except ConfigError:
            own = None  # reported by whatever reads the inventory next
        return cls(state_dir=own or DEFAULT_STATE_DIR, inventory=inventory_path)

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


@dataclass(frozen=True)
class SshTarget:
    """One host as SSH reaches it (the way Ansible did when it converged the host)."""

    host: str
    address: str
    port: int
    user: str
    key_file: Path | None  # None: the controller user's own keys and agent
    known_hosts: Path
    become: bool
    agent: str  # the fault agent's zipapp on the host
    agent_config: str  # and its configuration

    def command(self, argv: list[str]) -> str:
        """The remote command line for `argv`, as root (sudo when the host wants become)."""
        line = shlex.join(argv)
        return f"sudo -n {line}" if self.become else line

    def ssh_argv(self) -> list[str]:
        """The OpenSSH client's arguments up to (and with) the destination."""
        key = ["-i", str(self.key_file), "-o", "IdentitiesOnly=yes"] if self.key_file else []
        return [
            "ssh", *key,
            "-p", str(self.port),
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5",
            f"{self.user}@{self.address}",
        ]  # fmt: skip


@dataclass
class LabState:
    """What the runner knows of a lab. `hosts[name]` holds the host's `address` and, as
    recorded by the faults role, `user`, `port`, `key_file`, `known_hosts`, `become`,
    `agent` and `agent_config`; an embedded lab's hosts also their guest (`machine`,
    `root`, `nspawn_pidfile`, `release`)."""

    settings: LabSettings
    bridge: str
    gateway: str
    hosts: dict[str, dict[str, Any]]
    apps: dict[str, AppEndpoint] = field(default_factory=dict)
    # Monitoring hosts (Prometheus, Alertmanager) the monitoring role recorded; none is fine.
    monitors: dict[str, Monitor] = field(default_factory=dict)
    roles: HostRoles = field(default_factory=lambda: HostRoles({}, {}))
    network: ipaddress.IPv4Network | ipaddress.IPv6Network = defaults.LAB_NETWORK
    substrate: str = SUBSTRATE
    # The controller's key and known_hosts for hosts whose record names none.
    ssh_key: Path = DEFAULT_STATE_DIR / "ssh" / "id_ed25519"
    known_hosts: Path = DEFAULT_STATE_DIR / "ssh" / "known_hosts"
    # Addresses of hosts marked chaos_lab_allowed: true (outside the lab network).
    allowed: frozenset[str] = frozenset()
    # An embedded lab (lab.json): its guests, mounts and bridge are checked on the controller.
    embedded: bool = True
    # What brings this lab up (or repairs it), for messages.
    up_command: str = "chaoslab lab up"

    @classmethod
    def load(cls, settings: LabSettings) -> LabState:
        inventory = load_inventory(settings.inventory)
        network = inventory.lab_network()
        inventory.require_lab_hosts(network)
        inventory.require_groups()
        lab_json = settings.state_dir / "lab.json"
        data = None
        if inventory.embedded():  # only the embedded lab has guests (lab.json)
            if not lab_json.is_file():
                raise LabNotReady(
                    f"the lab is not up: {lab_json} does not exist (run `{inventory.up_command()}`)"
                )
            data = json.loads(lab_json.read_text())
        guests = (data or {}).get("hosts", {})
        hosts = {
            h.name: {
                **guests.get(h.name, {}),
                **_host_record(settings, inventory, h.name, h.address),
            }
            for h in inventory.lab_hosts()
        }
        addresses = {name: str(host["address"]) for name, host in hosts.items()}
        if data is None:
            # No embedded lab: the controller is where the hosts' SSH sessions come from
            # (as they saw it), else the source address the kernel picks to reach them.
            seen = sorted({str(h.get("controller_address") or "") for h in hosts.values()} - {""})
            first = next(iter(addresses.values()), "")
            gateway = seen[0] if seen else (route_source(first) or "" if first else "")
            bridge = defaults.LAB_BRIDGE
        else:
            gateway, bridge = data["gateway"], data["bridge"]
        return cls(
            settings=settings,
            bridge=bridge,
            gateway=gateway,
            hosts=hosts,
            apps=_apps(settings, addresses),
            monitors=load_monitors(settings.state_dir, set(addresses)),
            roles=HostRoles(
                {g: [h for h in m if h in addresses] for g, m in inventory.roles().groups.items()},
                addresses,
            ),
            network=network,
            # A lab.json without a substrate is from before guests (network namespaces).
            substrate=str(data.get("substrate", "netns")) if data is not None else "inventory",
            ssh_key=Path((data or {}).get("ssh_key") or settings.state_dir / "ssh" / "id_ed25519"),
            known_hosts=Path(
                (data or {}).get("known_hosts") or settings.state_dir / "ssh" / "known_hosts"
            ),
            allowed=frozenset(h.address for h in inventory.lab_hosts() if h.lab_allowed),
            embedded=data is not None,
            up_command=inventory.up_command(),
        )

    def ssh(self, host: str) -> SshTarget:
        """How to reach `host` over SSH and run its fault agent (its address checked by the
        guard): from the faults role's record, else the embedded lab's key and known_hosts."""
        if host not in self.hosts:
            raise ConfigError(f"unknown lab host {host!r}; known: {', '.join(sorted(self.hosts))}")
        record = self.hosts[host]
        # As OpenSSH would: a recorded `~/...` is the controller user's home.
        key = Path(record["key_file"]).expanduser() if record.get("key_file") else None
        key = key or (self.ssh_key if self.embedded else None)
        known = Path(record["known_hosts"]).expanduser() if record.get("known_hosts") else None
        known = known or (
            self.known_hosts if self.embedded else Path.home() / ".ssh" / "known_hosts"
        )
        return SshTarget(
            host=host,
            address=self.guard.check(str(record["address"])),
            port=int(record.get("port", 22)),
            user=str(record.get("user", "root")),
            key_file=key,
            known_hosts=known,
            become=bool(record.get("become", False)),
            agent=str(record.get("agent", "")),
            agent_config=str(record.get("agent_config", "")),
        )

    @property
    def guard(self) -> NetworkGuard:
        return NetworkGuard(lab_network=self.network, bridge=self.bridge, allowed=self.allowed)

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


def _host_record(
    settings: LabSettings, inventory: Inventory, host: str, address: str
) -> dict[str, Any]:
    """How to reach `host`'s fault agent, as the faults role recorded it."""
    path = settings.state_dir / "hosts" / f"{host}.json"
    redo = f"run `{inventory.up_command()}`"
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabNotReady(
            f"{path}: no record of how to reach {host}'s fault agent ({redo})"
        ) from None
    except (OSError, ValueError) as exc:
        raise LabNotReady(f"{path}: unreadable record of {host} ({exc}; {redo})") from None
    missing = [k for k in HOST_RECORD_KEYS if k not in record]
    if missing:
        raise LabNotReady(f"{path}: the record of {host} lacks {', '.join(missing)} ({redo})")
    if str(record["address"]) != address:
        raise LabNotReady(
            f"{path}: {host} was converged at {record['address']}, the inventory now says "
            f"{address} ({redo})"
        )
    return record


def _apps(settings: LabSettings, addresses: dict[str, str]) -> dict[str, AppEndpoint]:
    """The FraiseQL apps the fraiseql role recorded, of the inventory's hosts."""
    apps: dict[str, AppEndpoint] = {}
    for app_file in sorted((settings.state_dir / "apps").glob("*.json")):
        raw = json.loads(app_file.read_text())
        if raw["host"] not in addresses:
            continue  # a host of another inventory converged with the same state directory
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
    return apps


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


def lab_checks(
    state: LabState, programs: ProgramStates | None = None, monitoring: bool = True
) -> list[Check]:
    """Everything `lab status` reports, each with ok/not ok and a detail. Program states come
    from each host's fault agent: `programs` (e.g. FaultClient.programs) or, when None, a
    client opened for these checks. `monitoring`: also Prometheus's readiness and targets
    and Alertmanager's (the programs of a monitoring host are checked either way)."""
    if programs is None:
        from chaos_runner.faults.channel import FaultClient  # the channel imports this module

        with FaultClient(state) as client:
            return lab_checks(state, client.programs, monitoring)
    checks: list[Check] = []
    up = True
    if state.embedded:
        checks += _substrate_checks(state)
        up = all(c.ok for c in checks if c.item.startswith("bridge "))
    for name, host in sorted(state.hosts.items()):
        alive = True
        if state.embedded:
            alive, detail = guest_alive(host)
            checks.append(Check(name, "guest", alive, detail))
            root = host.get("root", "")
            checks.append(Check(name, "root", bool(root) and os.path.ismount(root), root or "?"))
        if not up:
            continue
        try:
            address = state.guard.check(str(host["address"]))
        except ChaosRunnerError as exc:
            checks.append(Check(name, "address", False, str(exc)))
            continue
        port = int(host.get("port", 22))
        reachable = _tcp_open(address, port)
        detail = f"{address}:{port}"
        if not reachable:
            detail += (
                " unreachable: check its ansible_host/ansible_port in the inventory and that"
                " its sshd runs"
            )
        checks.append(Check(name, "ssh port", reachable, detail))
        if alive and reachable:
            checks += _program_checks(name, programs)
    for app in state.apps.values():
        checks.append(_app_health(state, app))
    for monitor in state.monitors.values() if monitoring else ():
        checks += [Check(monitor.host, *c) for c in monitor_checks(state.guard, monitor)]
    return checks


def _substrate_checks(state: LabState) -> list[Check]:
    """The embedded lab's own pieces on the controller: its substrate and its bridge."""
    checks = []
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
    detail = f"gateway {state.gateway}" if up else "missing or down"
    checks.append(Check("controller", f"bridge {state.bridge}", up, detail))
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
    """Run a command on lab host `host` (on the host: its files, processes and network), as
    root over SSH the way Ansible reaches it. The controller never reads a host's files or
    PIDs itself."""
    target = lab.ssh(host)
    return subprocess.run(
        [*target.ssh_argv(), target.command(list(argv))],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def start_on_host(lab: LabState, host: str, *argv: str) -> int:
    """Start a long-running command on `host`, detached from the SSH session; its pid there."""
    script = f"setsid {shlex.join(argv)} </dev/null >/dev/null 2>&1 & echo $!"
    return int(on_host(lab, host, "sh", "-c", script).stdout.split()[0])
