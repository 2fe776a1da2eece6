"""The lab's programs on this host, each found through its pidfile (`<root>/run/<name>.pid`,
written by its unit's ExecStart; never by name): its pid, whether it runs, the resident
memory of its process tree, and what the service layer says. Answers the `programs` and
`proc` requests - `proc` is the controller's process sampler, asked every quarter second,
so it reads a pidfile and a few /proc files and starts nothing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaosfault import services
from chaosfault.errors import FaultInputError
from chaosfault.processes import process_state, process_tree

if TYPE_CHECKING:
    from chaosfault.agent import Agent

PROGRAM_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def check_program(program: Any, where: str = "params.program") -> str:
    if not isinstance(program, str) or not PROGRAM_NAME.fullmatch(program):
        raise FaultInputError(f"{where}: {program!r} is not a program name")
    return program


def pidfile(agent: Agent, program: str) -> Path:
    return agent.root / "run" / f"{program}.pid"


def pidfile_pid(path: Path) -> int | None:
    """The pid a pidfile names (it may be stale), or None: missing, empty, not a number."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def running(pid: int) -> bool:
    """Alive and not a zombie: a killed main process is reaped by systemd in a moment."""
    return process_state(pid) not in ("gone", "Z", "X")


def rss_kb(pid: int) -> int | None:
    """Resident memory of the process and its descendants (uvicorn workers) in KiB; None
    when none of them could be read."""
    total = 0
    found = False
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
                found = True
    return total if found else None


def program_pidfiles(agent: Agent) -> dict[str, Path]:
    """Every program with a pidfile on this host. Files that are no program's (a daemon's
    own `nginx.master.pid`) are not programs."""
    return {
        path.stem: path
        for path in sorted((agent.root / "run").glob("*.pid"))
        if PROGRAM_NAME.fullmatch(path.stem)
    }


def probe(agent: Agent, program: Any) -> dict[str, int | None]:
    """The `proc` answer: {pid, rss_kb}; pid None when the program is not running."""
    name = check_program(program, where="program")
    pid = pidfile_pid(pidfile(agent, name))
    if pid is None or not running(pid):
        return {"pid": None, "rss_kb": None}
    return {"pid": pid, "rss_kb": rss_kb(pid)}


def program_states(agent: Agent) -> list[dict[str, Any]]:
    """The `programs` answer: per pidfile {name, pid, alive, rss_kb, active, unit_state}.
    `pid` is what the pidfile says (`alive`: it runs). `active` is systemd's view where
    systemd runs (`is-active` answers "active"; `unit_state` is that answer), else `alive`."""
    files = program_pidfiles(agent)
    booted = services.booted()
    units = services.active_states(list(files)) if booted else {}
    out = []
    for name, path in files.items():
        pid = pidfile_pid(path)
        alive = pid is not None and running(pid)
        out.append(
            {
                "name": name,
                "pid": pid,
                "alive": alive,
                "rss_kb": rss_kb(pid) if alive and pid is not None else None,
                "active": units.get(name) == "active" if booted else alive,
                "unit_state": units.get(name),
            }
        )
    return out
