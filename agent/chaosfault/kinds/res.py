"""Resource faults: the program's process tree moved into a lab cgroup with a memory, CPU
or pids limit (cgroup v1 `/sys/fs/cgroup/<ctrl>/chaoslab/<host>/<id>`, or v2) - or, for a
memory cap the program is restarted under, a limit on its systemd unit."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaosfault import services
from chaosfault.cgroups import (
    CGROUP_FS,
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
from chaosfault.programs import pidfile, pidfile_pid
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


# How long verify waits for a queued restart to get past stopping the old process.
RESTART_SETTLE_S = 20.0


class Memory(Resource):
    """Memory cap. On cgroup v1 a moved process keeps its old charges, and a limit below
    current usage is refused (EBUSY) rather than enforced. With restart=true the cap is set
    on the program's systemd unit instead (`MemoryLimit=` on v1, `MemoryMax=` on v2, a
    runtime property) and the unit restarted: the new process's whole working set is charged
    to the unit's cgroup, a cap below it OOM-kills it, and systemd keeps restarting it until
    heal lifts the cap (and starts the unit again should it have hit its start limit)."""

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

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        mechanism = super().mechanism(agent, params)
        if not params["restart"] or mechanism.startswith("skipped:"):
            return mechanism
        if not services.booted():
            return (
                "skipped: restart=true caps the program's systemd unit, and systemd does not"
                " run this host"
            )
        return f"systemd-unit-{mechanism}"

    def limits(self, params: dict[str, Any]) -> dict[str, str]:
        value = str(params["limit_mb"] * 1024 * 1024)
        return (
            {"memory.limit_in_bytes": value} if cgroup_layout() == "v1" else {"memory.max": value}
        )

    # ------------------------------------------------------- restart=true: the unit
    @staticmethod
    def unit_property() -> str:
        return "MemoryLimit" if cgroup_layout() == "v1" else "MemoryMax"

    def inject(self, agent: Agent, record: Record) -> None:
        if not record["params"]["restart"]:
            super().inject(agent, record)
            return
        program = record["params"]["program"]
        unit = services.unit(program)
        value = str(record["params"]["limit_mb"] * 1024 * 1024)
        artifacts = record["artifacts"]
        artifacts["unit"] = unit
        artifacts["unit_limit"] = {self.unit_property(): value}
        artifacts["dropins"] = [
            str(services.RUNTIME_CONTROL / f"{unit}.d" / f"50-{self.unit_property()}.conf")
        ]
        artifacts["old_pid"] = pidfile_pid(pidfile(agent, program))
        # From here on, the journal's record of how the main process ended is this cap's.
        artifacts["since_epoch"] = int(time.time())
        agent.save(record)  # what heal undoes is on disk before the cap exists
        services.set_runtime_properties(unit, artifacts["unit_limit"])
        # Queued, not waited for: a unit whose start waits for its port (ExecStartPost) may
        # never come up under the cap, and that is the fault; verify reads what happened.
        restarted = services.systemctl("restart", "--no-block", unit)
        if restarted.returncode != 0:
            raise FaultFailed(f"restart {unit} failed: {restarted.stderr.strip()[:300]}")
        # systemd's count of its automatic restarts of the unit, from here on: each one is
        # the cap killing the program.
        artifacts["restarts_before"] = _int(services.show(unit, "NRestarts").get("NRestarts"))

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        """The cap as the kernel applies it (the unit cgroup's limit file), not as systemd
        accepted it: a controller the guest cannot write takes the setting and caps nothing.
        Only while the unit has no process (between OOM kills, or failed at its start limit)
        and so no cgroup is systemd's own setting the evidence."""
        if not record["params"]["restart"]:
            return super().verify(agent, record)
        artifacts = record["artifacts"]
        unit = artifacts["unit"]
        prop, wanted = next(iter(artifacts["unit_limit"].items()))
        # The restart was queued: while the old process is still stopping (a server under
        # load drains its connections) the cap cannot be in effect yet - wait for it.
        settle = time.monotonic() + RESTART_SETTLE_S
        while (
            services.show(unit, "ActiveState").get("ActiveState") == "deactivating"
            and time.monotonic() < settle
        ):
            time.sleep(0.2)
        shown = services.show(unit, "ControlGroup", "NRestarts", "ActiveState", prop)
        state = shown.get("ActiveState", "?")
        group = _unit_cgroup(shown.get("ControlGroup") or f"/system.slice/{unit}")
        limit_file = group / next(iter(self.limits(record["params"])))
        if limit_file.exists():
            current = limit_file.read_text().strip()
            in_effect = _int(current) == int(wanted)
            where = f"{limit_file}={current}"
        else:
            in_effect = state != "active" and _int(shown.get(prop)) == int(wanted)
            where = f"no cgroup while {state}, systemd's {prop}={shown.get(prop)}"
        restarts = _int(shown.get("NRestarts")) - _int(artifacts.get("restarts_before"))
        pid = pidfile_pid(pidfile(agent, record["params"]["program"]))
        return in_effect, (
            f"unit {unit} ({state}): {where}"
            f"{'' if in_effect else f' (wanted {wanted}: the cap is not in effect)'}"
            f"{self.extra_evidence(group)}, restarts since inject={max(restarts, 0)},"
            f" main process ends since inject (journal): {_ends(unit, artifacts)},"
            f" pid {artifacts.get('old_pid')} -> {pid}"
        )

    def heal(self, agent: Agent, record: Record) -> None:
        if not record["params"]["restart"]:
            super().heal(agent, record)
            return
        services.release_limits(services.unit(record["params"]["program"]))

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


def _unit_cgroup(control_group: str) -> Path:
    """The unit's cgroup directory for the memory controller (as this host mounts it)."""
    base = CGROUP_FS / "memory" if cgroup_layout() == "v1" else CGROUP_FS
    return base / control_group.lstrip("/")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


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
        # Limits set on lab units (restart=true), by their runtime drop-ins' names.
        Artifact(
            "unit_limits",
            lambda agent: [str(p) for p in services.limit_dropins()],
            lambda agent: services.release_all_limits(),
            applies=lambda agent: services.booted(),
        ),
    ),
)


def _ends(unit: str, artifacts: dict[str, Any]) -> str:
    """How the unit's main process ended since the cap went on, counted per way, from
    systemd's journal (a restarted unit's ExecMain* properties and its cgroup's OOM counter are
    new each time): a SIGKILL under the cap is the kernel's OOM kill."""
    since = artifacts.get("since_epoch")
    if since is None:
        return "unknown (no inject time recorded)"
    ends = services.main_exits(unit, float(since))
    if not ends:
        return "none"
    return ", ".join(f"{ends.count(end)} x {end}" for end in dict.fromkeys(ends))
