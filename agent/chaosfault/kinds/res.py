"""Resource faults: the program's process tree moved into a lab cgroup with a memory, CPU
or pids limit (cgroup v1 `/sys/fs/cgroup/<ctrl>/chaoslab/<host>/<id>`, or v2)."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaosfault.cgroups import (
    cgroup_layout,
    cgroup_root,
    current_cgroup,
    lab_groups,
    remove_lab_groups,
    rmdir_up,
)
from chaosfault.errors import FaultFailed, FaultInputError
from chaosfault.fault import Artifact, Family, Record
from chaosfault.kinds.proc import ProgramFault
from chaosfault.processes import kill
from chaosfault.validation import _number

if TYPE_CHECKING:
    from chaosfault.agent import Agent


class Resource(ProgramFault):
    controller = ""

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        layout = cgroup_layout()
        return f"cgroup-{layout}" if layout != "none" else "skipped: no cgroup hierarchy mounted"

    def _dir(self, agent: Agent, record: Record) -> Path:
        return cgroup_root(self.controller) / "chaoslab" / agent.host / str(record["id"])

    def limits(self, params: dict[str, Any]) -> dict[str, str]:
        raise NotImplementedError

    def inject(self, agent: Agent, record: Record) -> None:
        path = self._dir(agent, record)
        if cgroup_layout() == "v2":
            for parent in (path.parent.parent, path.parent):
                parent.mkdir(exist_ok=True)
                (parent / "cgroup.subtree_control").write_text("+memory +cpu +pids")
        path.mkdir(parents=True, exist_ok=True)
        record["artifacts"]["cgroup"] = str(path)
        for name, value in self.limits(record["params"]).items():
            (path / name).write_text(value)
        tree = agent.program_tree(record["params"]["program"])
        record["artifacts"]["moved"] = {
            str(pid): current_cgroup(pid, self.controller) for pid in tree
        }
        for pid in tree:
            try:
                (path / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                continue

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        path = Path(record["artifacts"]["cgroup"])
        procs = (path / "cgroup.procs").read_text().split() if path.exists() else []
        limits = {
            n: (path / n).read_text().strip()
            for n in self.limits(record["params"])
            if (path / n).exists()
        }
        return bool(
            procs
        ), f"{len(procs)} processes in {path}, limits {limits}{self.extra_evidence(path)}"

    def extra_evidence(self, path: Path) -> str:
        return ""

    def release(self) -> dict[str, str]:
        """Limit values that lift the cap; written before the processes are moved out."""
        return {}

    def heal(self, agent: Agent, record: Record) -> None:
        path = Path(record["artifacts"].get("cgroup", self._dir(agent, record)))
        if not path.exists():
            return
        # Lift the cap first: a task moved out of a throttled CFS group can otherwise stay
        # starved for up to a second (measured here: 0.0-0.05 of a core right after heal).
        for name, value in self.release().items():
            if (path / name).exists():
                (path / name).write_text(value)
        root = cgroup_root(self.controller)
        for pid in (path / "cgroup.procs").read_text().split():
            original = record["artifacts"].get("moved", {}).get(pid, "/")
            target = root / original.lstrip("/")
            try:
                (target / "cgroup.procs").write_text(pid)
            except OSError:
                (root / "cgroup.procs").write_text(pid)
        rmdir_up(path, stop=root)


class Memory(Resource):
    """Memory cap. On cgroup v1 a moved process keeps its old charges, and a limit below
    current usage is refused (EBUSY) rather than enforced. With restart=true the program's
    supervisor is moved into the cgroup and the program restarted: its whole working set is
    then charged there, and a cap below it OOM-kills it (the service layer keeps restarting it
    until heal)."""

    params = ("program", "limit_mb", "restart")
    controller = "memory"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out = super().check({"program": params.get("program")})
        out["limit_mb"] = _number(params, "limit_mb", 4, 1_048_576, integer=True)
        restart = params.get("restart", False)
        if not isinstance(restart, bool):
            raise FaultInputError(f"params.restart: expected true or false, got {restart!r}")
        out["restart"] = restart
        return out

    def limits(self, params: dict[str, Any]) -> dict[str, str]:
        value = str(params["limit_mb"] * 1024 * 1024)
        return (
            {"memory.limit_in_bytes": value} if cgroup_layout() == "v1" else {"memory.max": value}
        )

    def inject(self, agent: Agent, record: Record) -> None:
        super().inject(agent, record)
        if not record["params"]["restart"]:
            return
        supervisor = _supervisor_pid(agent)
        path = Path(record["artifacts"]["cgroup"])
        record["artifacts"]["moved"][str(supervisor)] = current_cgroup(supervisor, self.controller)
        (path / "cgroup.procs").write_text(str(supervisor))
        agent.save(record)
        kill(agent.program_pid(record["params"]["program"]), signal.SIGKILL)

    def extra_evidence(self, path: Path) -> str:
        oom = path / "memory.oom_control"
        events = path / "memory.events"
        if oom.exists():
            kills = re.search(r"oom_kill (\d+)", oom.read_text())
            return f", oom_kill={kills.group(1) if kills else '?'}"
        if events.exists():
            kills = re.search(r"oom_kill (\d+)", events.read_text())
            return f", oom_kill={kills.group(1) if kills else '?'}"
        return ""


def _supervisor_pid(agent: Agent) -> int:
    pidfile = agent.root / "run" / "supervisord.pid"
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        raise FaultFailed(
            "restart=true needs the host's supervisord (the lab service layer)"
        ) from None


class Cpu(Resource):
    params = ("program", "quota_pct")
    controller = "cpu"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out = super().check({"program": params.get("program")})
        out["quota_pct"] = _number(params, "quota_pct", 1, 1000)
        return out

    def limits(self, params: dict[str, Any]) -> dict[str, str]:
        quota = int(params["quota_pct"] * 1000)
        if cgroup_layout() == "v1":
            return {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": str(quota)}
        return {"cpu.max": f"{quota} 100000"}

    def release(self) -> dict[str, str]:
        return {"cpu.cfs_quota_us": "-1", "cpu.max": "max 100000"}


class Pids(Resource):
    params = ("program", "max")
    controller = "pids"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out = super().check({"program": params.get("program")})
        out["max"] = _number(params, "max", 1, 4_194_304, integer=True)
        return out

    def limits(self, params: dict[str, Any]) -> dict[str, str]:
        return {"pids.max": str(params["max"])}

    def release(self) -> dict[str, str]:
        return {"pids.max": "max"}


FAMILY = Family(
    name="res",
    faults={"res.memory": Memory(), "res.cpu": Cpu(), "res.pids": Pids()},
    artifacts=(
        Artifact(
            "cgroups",
            lambda agent: lab_groups(agent.host),
            lambda agent: remove_lab_groups(agent.host),
        ),
    ),
)
