"""cgroup v1 / v2 paths: the lab's subtree (`chaoslab/<host>/<id>`), a process's current
group, and removal of emptied lab groups."""

from __future__ import annotations

import contextlib
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "pids")


def cgroup_layout() -> str:
    if (CGROUP_FS / "memory").is_dir() and (CGROUP_FS / "cpu").is_dir():
        return "v1"
    if (CGROUP_FS / "cgroup.controllers").exists():
        return "v2"
    return "none"


def current_cgroup(pid: int, controller: str) -> str:
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if (controller in ctrls.split(",")) or (ctrls == "" and cgroup_layout() == "v2"):
                return path
    except OSError:
        pass
    return "/"


def cgroup_root(controller: str) -> Path:
    """Where `controller`'s hierarchy is mounted (v1), or the unified hierarchy (v2)."""
    if cgroup_layout() == "v1":
        return CGROUP_FS / controller
    return CGROUP_FS


def rmdir_up(path: Path, stop: Path) -> None:
    while path != stop and path.exists():
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent
        if path.name != "chaoslab" and path.parent.name != "chaoslab":
            return


def lab_bases(host: str) -> list[tuple[Path, Path]]:
    """(this host's lab subtree, the hierarchy root) for each v1 controller, then v2."""
    return [(CGROUP_FS / c / "chaoslab" / host, CGROUP_FS / c) for c in V1_CONTROLLERS] + [
        (CGROUP_FS / "chaoslab" / host, CGROUP_FS)
    ]


def lab_groups(host: str) -> list[str]:
    groups: list[str] = []
    for base, _ in lab_bases(host):
        if base.exists():
            groups += [str(p) for p in base.iterdir() if p.is_dir()]
    return groups


def remove_lab_groups(host: str) -> list[str]:
    """Move every process out of the lab's groups to the hierarchy root, then remove them."""
    swept = []
    for base, root in lab_bases(host):
        if not base.exists():
            continue
        for group in [p for p in base.iterdir() if p.is_dir()]:
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (root / "cgroup.procs").write_text(pid)
            group.rmdir()
            swept.append(f"cgroup {group}")
        rmdir_up(base, stop=root)
    return swept
