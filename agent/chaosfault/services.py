"""The service layer: every lab program is the systemd unit `chaoslab-<program>.service`,
started, stopped and limited through `systemctl` (a host booted with systemd: a guest or a
VM). Runtime property changes (`set-property --runtime`) live in drop-ins under
/run/systemd/system.control, found and removed by name."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from chaosfault.errors import FaultFailed
from chaosfault.processes import run

# sd_booted(3): systemd is PID 1 when this directory exists.
SYSTEMD_RUNTIME = Path("/run/systemd/system")
# Where `systemctl set-property --runtime` writes its drop-ins (systemd >= 238).
RUNTIME_CONTROL = Path("/run/systemd/system.control")
UNIT_PREFIX = "chaoslab-"

# The unit limits faults set, and the value that lifts each again.
LIMIT_RELEASE = {"MemoryLimit": "infinity", "MemoryMax": "infinity"}


def booted() -> bool:
    return SYSTEMD_RUNTIME.is_dir()


def unit(program: str) -> str:
    return f"{UNIT_PREFIX}{program}.service"


def systemctl(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return run(["systemctl", *args], check=check)


def service(action: str, program: str) -> subprocess.CompletedProcess[str]:
    """`systemctl <action> chaoslab-<program>.service`; the caller judges the outcome."""
    return systemctl(action, unit(program))


def active_states(programs: list[str]) -> dict[str, str]:
    """Program -> `systemctl is-active` state (active, inactive, failed, activating...), one
    call for all; `unknown` for a unit systemd did not answer for."""
    if not programs:
        return {}
    lines = systemctl("is-active", *(unit(p) for p in programs)).stdout.splitlines()
    states = [line.strip() for line in lines]
    return {p: states[i] if i < len(states) else "unknown" for i, p in enumerate(programs)}


def show(unit_name: str, *properties: str) -> dict[str, str]:
    """Unit properties as systemd reports them (`systemctl show -p ...`)."""
    args = [a for p in properties for a in ("-p", p)]
    out = systemctl("show", *args, unit_name).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def main_exits(unit_name: str, since_epoch: float) -> list[str]:
    """How the unit's main process ended since a moment, oldest first, from systemd's own
    journal lines ("Main process exited, code=killed, status=9/KILL" -> "killed, status=9/KILL").
    systemd resets its ExecMain* properties when it restarts the unit, the journal keeps them."""
    out = run(
        [
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            unit_name,
            "--since",
            f"@{since_epoch:.0f}",
        ],
        check=False,
    ).stdout
    found = re.findall(r"Main process exited, code=(\w+), status=(\S+)", out)
    return [f"{code}, status={status.rstrip('.')}" for code, status in found]


def set_runtime_properties(unit_name: str, properties: dict[str, str]) -> None:
    """Applied to the running unit's cgroup at once and kept in a runtime drop-in."""
    systemctl(
        "set-property", "--runtime", unit_name, *(f"{k}={v}" for k, v in properties.items()),
        check=True,
    )  # fmt: skip


def limit_dropins(unit_name: str = f"{UNIT_PREFIX}*.service") -> list[Path]:
    """Runtime drop-ins holding one of the limits faults set, for one unit or every lab unit."""
    return sorted(
        path
        for prop in LIMIT_RELEASE
        for path in RUNTIME_CONTROL.glob(f"{unit_name}.d/50-{prop}.conf")
    )


def release_limits(unit_name: str) -> list[str]:
    """Lift every fault limit on the unit (live, through systemd), remove the drop-ins that
    held them and make sure the program runs: after an OOM loop the unit may have hit its
    start rate limit and failed. Safe when nothing was set."""
    dropins = limit_dropins(unit_name)
    done = []
    if dropins:
        props = {_limit_property(p) for p in dropins}
        # Lift first, through systemd: the running cgroup is no longer capped even if the
        # reload below fails. This rewrites the drop-ins (now "infinity"); they go next.
        set_runtime_properties(unit_name, {p: LIMIT_RELEASE[p] for p in sorted(props)})
        for path in limit_dropins(unit_name):
            path.unlink(missing_ok=True)
            done.append(f"drop-in {path}")
        directory = RUNTIME_CONTROL / f"{unit_name}.d"
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
        systemctl("daemon-reload", check=True)
    systemctl("reset-failed", unit_name)
    started = systemctl("start", unit_name)
    # A unit that does not exist has nothing to restore (an inject refused by systemd).
    if started.returncode != 0 and "not found" not in started.stderr:
        raise FaultFailed(f"start {unit_name} failed: {started.stderr.strip()[:400]}")
    return done


def _limit_property(dropin: Path) -> str:
    return dropin.stem.split("-", 1)[1]  # 50-MemoryLimit.conf -> MemoryLimit


def lab_units_with_limits() -> list[str]:
    return sorted({p.parent.name.removesuffix(".d") for p in limit_dropins()})


def release_all_limits() -> list[str]:
    """The sweep: every lab unit's fault limits lifted and their drop-ins removed."""
    swept: list[str] = []
    for unit_name in lab_units_with_limits():
        swept += release_limits(unit_name)
    return swept
