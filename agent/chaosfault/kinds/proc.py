"""Process faults: signals by pidfile (kill, pause) and the service layer - systemd units
`chaoslab-<program>.service` - (stop, restart). The agent's own background helpers are
processes too, swept here."""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any

from chaosfault.errors import FaultFailed
from chaosfault.fault import Artifact, Family, Fault, Record
from chaosfault.processes import (
    agent_processes,
    helper_processes,
    kill,
    process_state,
    process_tree,
    wait_dead,
)
from chaosfault.programs import check_program, pidfile_pid, program_pidfiles
from chaosfault.services import service

if TYPE_CHECKING:
    from chaosfault.agent import Agent


class ProgramFault(Fault):
    params: tuple[str, ...] = ("program",)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"program": check_program(params.get("program"))}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "signal"


class Kill(ProgramFault):
    """SIGKILL the program's main process; the service layer restarts it (one-shot)."""

    def target(self, agent: Agent, record: Record) -> int:
        return agent.program_pid(record["params"]["program"])

    def program(self, record: Record) -> str:
        return str(record["params"]["program"])

    def inject(self, agent: Agent, record: Record) -> None:
        pid = self.target(agent, record)
        record["artifacts"]["killed_pid"] = pid
        kill(pid, signal.SIGKILL)

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        old = record["artifacts"]["killed_pid"]
        gone = wait_dead(old)
        return gone, f"pid {old} {'gone' if gone else 'still running'}"

    def heal(self, agent: Agent, record: Record) -> None:
        service("start", self.program(record))


class Pause(ProgramFault):
    """SIGSTOP the whole process tree; SIGCONT on heal."""

    def inject(self, agent: Agent, record: Record) -> None:
        tree = agent.program_tree(record["params"]["program"])
        record["artifacts"]["pids"] = tree
        for pid in tree:
            kill(pid, signal.SIGSTOP)

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        # SIGSTOP takes effect when each task next handles signals: poll briefly. A pid
        # that has exited meanwhile ("gone") no longer answers either.
        deadline = time.monotonic() + 2.0
        while True:
            states = {pid: process_state(pid) for pid in record["artifacts"]["pids"]}
            stopped = all(s in ("T", "gone") for s in states.values()) and "T" in states.values()
            if stopped or time.monotonic() > deadline:
                return stopped, f"process states {states}"
            time.sleep(0.02)

    def heal(self, agent: Agent, record: Record) -> None:
        for pid in record["artifacts"].get("pids", []):
            kill(pid, signal.SIGCONT)


class Stop(ProgramFault):
    """Stop through the service layer (clean stop); heal starts it."""

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "service-layer"

    def inject(self, agent: Agent, record: Record) -> None:
        proc = service("stop", record["params"]["program"])
        if proc.returncode != 0:
            raise FaultFailed(
                f"stop {record['params']['program']}: {proc.stdout.strip()} {proc.stderr.strip()}"
            )

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        state = service("is-active", record["params"]["program"]).stdout.strip()
        return state in ("inactive", "failed"), f"unit {state}"

    def heal(self, agent: Agent, record: Record) -> None:
        service("start", record["params"]["program"])


class Restart(ProgramFault):
    """Restart through the service layer (one-shot); heal makes sure it runs."""

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "service-layer"

    def inject(self, agent: Agent, record: Record) -> None:
        program = record["params"]["program"]
        record["artifacts"]["old_pid"] = agent.program_pid(program)
        proc = service("restart", program)
        if proc.returncode != 0:
            raise FaultFailed(f"restart {program}: {proc.stdout.strip()} {proc.stderr.strip()}")

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        new = agent.program_pid(record["params"]["program"])
        old = record["artifacts"]["old_pid"]
        return new != old, f"pid {old} -> {new}"

    def heal(self, agent: Agent, record: Record) -> None:
        service("start", record["params"]["program"])


# ----------------------------------------------------------------- artifacts


def lab_program_pids(agent: Agent) -> list[int]:
    pids = []
    for path in program_pidfiles(agent).values():
        pid = pidfile_pid(path)
        if pid is not None:
            pids += process_tree(pid)
    return pids


def _stopped_programs(agent: Agent) -> list[int]:
    return [pid for pid in lab_program_pids(agent) if process_state(pid) == "T"]


def _continue_stopped(agent: Agent) -> list[str]:
    swept = []
    for pid in _stopped_programs(agent):
        kill(pid, signal.SIGCONT)
        swept.append(f"SIGCONT {pid}")
    return swept


def _agent_processes(agent: Agent) -> list[int]:
    return agent_processes(str(agent.config_path))


def _kill_helpers(agent: Agent) -> list[str]:
    swept = []
    for pid in helper_processes(str(agent.config_path)):
        kill(pid, signal.SIGKILL)
        swept.append(f"killed lab process {pid}")
    return swept


FAMILY = Family(
    name="proc",
    faults={
        "proc.kill": Kill(),
        "proc.pause": Pause(),
        "proc.stop": Stop(),
        "proc.restart": Restart(),
    },
    artifacts=(
        Artifact("stopped_processes", _stopped_programs, _continue_stopped),
        # Watchdogs, NFQUEUE workers, repeat and fill loops: killed before the cgroups and
        # PostgreSQL sessions are swept, so a fill keeper cannot take the slots back.
        Artifact("processes", lambda agent: agent_processes(str(agent.config_path)), _kill_helpers),
    ),
)
