"""Commands and processes: run a tool, signal a pid, walk a process tree, and recognise the
agent's own helpers (watchdogs, NFQUEUE workers, loops) by their command line."""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from chaosfault.errors import FaultFailed

# Command-line words of the agent's short-lived request handlers: never swept as helpers.
REQUEST_COMMANDS = frozenset(
    {
        "serve", "heal", "artifacts", "list", "verify", "inject", "plan", "renew", "kinds",
        "programs", "proc",
    }
)  # fmt: skip


# Command journals open while an inject or a heal runs (recording()): every command run
# through run() is added to each, as the shell would show it.
_RECORDING: list[list[str]] = []


@contextlib.contextmanager
def recording() -> Iterator[list[str]]:
    """The commands run() runs while the context lasts (the exact commands of a fault)."""
    ran: list[str] = []
    _RECORDING.append(ran)
    try:
        yield ran
    finally:
        _RECORDING.remove(ran)


def note_command(cmd: list[str], input: str | None = None) -> None:
    """Add a command (and what it was fed on stdin) to every open command journal."""
    line = shlex.join(cmd) + (f" <<< {input.strip()[:500]!r}" if input else "")
    for journal in _RECORDING:
        journal.append(line)


def run(
    cmd: list[str], check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    note_command(cmd, input)
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise FaultFailed(
            f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[:400]}"
        )
    return proc


def kill(pid: int, sig: int) -> bool:
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = str(sig)
    note_command(["kill", f"-{name}", str(pid)])
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def is_our_process(pid: int, *markers: str) -> bool:
    cmd = cmdline(pid)
    return (
        bool(cmd)
        and any("chaosfault" in part or "nfqueue" in part for part in cmd)
        and all(m in cmd for m in markers)
    )


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def wait_dead(pid: int, timeout_s: float = 3.0) -> bool:
    """True once `pid` has exited (gone or zombie); a SIGKILL takes a moment to land."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process_state(pid) in ("gone", "Z", "X"):
            return True
        time.sleep(0.01)
    return False


def process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def this_host(pid: int) -> bool:
    """In this host's PID namespace. A guest sees only its own processes anyway; the
    controller sees every guest's too, and an agent run there must never touch them."""
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino == os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return False


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").glob("[0-9]*")]


def _of_this_agent(pid: int, config: str) -> bool:
    """A process of the agent configured by `config`: its helpers are started with
    `--config <that file>`. Another agent's processes, or a process that merely names
    chaosfault (the controller building the agent's zipapp), are not its own."""
    cmd = cmdline(pid)
    return is_our_process(pid) and any(
        a == "--config" and b == config for a, b in itertools.pairwise(cmd)
    )


def agent_processes(config: str) -> list[int]:
    """The agent's processes on this host (its own PID space), but this one and `serve`
    sessions."""
    me = os.getpid()
    return [
        pid
        for pid in _pids()
        if pid != me
        and this_host(pid)
        and _of_this_agent(pid, config)
        and "serve" not in cmdline(pid)
    ]


def helper_processes(config: str) -> list[int]:
    """The agent's background helpers on this host (what heal-all may kill): not this
    process and not a request being handled right now."""
    me = os.getpid()
    return [
        pid
        for pid in _pids()
        if pid != me
        and this_host(pid)
        and _of_this_agent(pid, config)
        and not REQUEST_COMMANDS & set(cmdline(pid))
    ]
