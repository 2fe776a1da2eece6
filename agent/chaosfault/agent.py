"""The agent on one host: fault records in its state directory, inject / plan / verify /
heal, the watchdog that reverts a fault on its own (ttl, lease), and helpers it spawns."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from chaosfault.artifacts import list_artifacts, sweep_artifacts
from chaosfault.errors import FaultFailed, FaultInputError
from chaosfault.fault import GRACE_S, Record
from chaosfault.kinds import FAULTS
from chaosfault.processes import (
    is_our_process,
    kill,
    note_command,
    process_tree,
    recording,
    run,
)
from chaosfault.programs import check_program, pidfile, pidfile_pid, running
from chaosfault.validation import (
    MAX_LEASE_S,
    MAX_TTL_S,
    MIN_LEASE_S,
    _number,
    lease_seconds,
    validate,
)

# How often a watchdog looks at its fault: a lease is noticed within this of running out.
WATCH_POLL_S = 0.5
# A watchdog whose heal failed tries again this often (until healed, gone, or an hour).
WATCHDOG_RETRY_S = 2.0


def self_command() -> tuple[list[str], dict[str, str] | None]:
    """Arguments (after the interpreter) that start this agent again, and its environment:
    the zipapp it runs from - any interpreter can run it, the NFQUEUE worker's too - or,
    from a source checkout, the package as a module. Either way the command line names
    `chaosfault`, which is how `is_our_process` finds the helpers again."""
    home = Path(__file__).resolve().parents[1]
    if home.is_file():
        return [str(home)], None
    pythonpath = os.pathsep.join(p for p in (str(home), os.environ.get("PYTHONPATH")) if p)
    return ["-m", "chaosfault"], {**os.environ, "PYTHONPATH": pythonpath}


def _write_atomic(path: Path, text: str) -> None:
    # A per-process temporary name: the serve session, a watchdog and a CLI call may write
    # the same fault's files at once, and a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _summary(record: Record) -> dict[str, Any]:
    keys = ("kind", "mechanism", "expires_at", "lease_expires_at", "artifacts", "commands")
    return {k: record[k] for k in keys if k in record}


class Agent:
    config_path: Path  # helpers carry `--config <it>`: how this agent knows its own

    def __init__(self, config_path: Path) -> None:
        self.config = json.loads(config_path.read_text())
        self.host: str = self.config["host"]
        self.root = Path(self.config["root"])
        self.state_dir = self.root / "faults" / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.iface: str = self.config.get("iface", "eth0")
        self.config_path = config_path
        # Each service role records its facts on the host (etc/services/<name>.json).
        for facts in sorted((self.root / "etc" / "services").glob("*.json")):
            self.config.setdefault(facts.stem, json.loads(facts.read_text()))

    # -------------------------------------------------------------- state files
    def _state_path(self, fault_id: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", fault_id):
            raise FaultInputError(f"id: {fault_id!r} must be 1-64 characters [A-Za-z0-9_.-]")
        return self.state_dir / f"{fault_id}.json"

    def _lease_path(self, fault_id: str) -> Path:
        """A leased fault's current expiry, apart from its record: renewing is one small
        write that can never race with an inject or heal rewriting the record."""
        return self._state_path(fault_id).with_suffix(".lease")

    def save(self, record: Record) -> None:
        _write_atomic(self._state_path(record["id"]), json.dumps(record, sort_keys=True))

    def load(self, fault_id: str) -> Record | None:
        path = self._state_path(fault_id)
        if not path.exists():
            return None
        record: Record = json.loads(path.read_text())
        if record.get("lease_s") is not None:
            # Without a lease file (not renewed yet) the record's own expiry holds.
            with contextlib.suppress(OSError, ValueError):
                record["lease_expires_at"] = float(self._lease_path(fault_id).read_text())
        return record

    def records(self) -> list[Record]:
        out = []
        for path in sorted(self.state_dir.glob("*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return out

    def remove_state_files(self) -> list[str]:
        """Every state file, whether or not it still parses (after heal-all healed the rest)."""
        left = []
        for path in sorted(self.state_dir.glob("*.json")):
            left.append(f"state file {path.name}")
            path.unlink(missing_ok=True)
        for pattern in ("*.lease", ".*.tmp"):
            for path in self.state_dir.glob(pattern):
                path.unlink(missing_ok=True)
        return left

    # ------------------------------------------------------------------ inject
    def inject(self, spec: dict[str, Any]) -> dict[str, Any]:
        kind, params, ttl = validate(spec)
        lease = lease_seconds(spec)
        fault_id = str(spec.get("id") or f"{kind.replace('.', '-')}-{uuid.uuid4().hex[:8]}")
        existing = self.load(fault_id)
        if existing is not None:
            if existing["kind"] == kind and existing["params"] == params:
                if lease is not None and existing.get("lease_s") is not None:
                    # A repeated inject (the controller retrying after a lost answer) is
                    # proof of life too.
                    existing["lease_expires_at"] = self._write_lease(fault_id, lease)
                return {"id": fault_id, "already": True, **_summary(existing)}
            raise FaultInputError(f"id: {fault_id!r} is already injected as {existing['kind']}")
        impl = FAULTS[kind]
        mechanism = impl.mechanism(self, params)
        if mechanism.startswith("skipped:"):
            return {"id": fault_id, "kind": kind, "mechanism": mechanism, "skipped": True}
        now = time.time()
        record: Record = {
            "id": fault_id,
            "kind": kind,
            "params": params,
            "mechanism": mechanism,
            "ttl_s": ttl,
            "injected_at": now,
            "expires_at": now + ttl,
            "artifacts": {},
            "watchdog_pid": None,
            "state": "arming",
        }
        if lease is not None:
            record["lease_s"] = lease
            record["lease_expires_at"] = now + lease
        self._lease_path(fault_id).unlink(missing_ok=True)  # left by a fault healed mid-renew
        # Recorded and armed before it bites: the revert exists before the fault does.
        self.save(record)
        record["watchdog_pid"] = self._arm_watchdog(fault_id, now + ttl + GRACE_S)
        self.save(record)
        try:
            with recording() as ran:
                impl.inject(self, record)
            record["commands"] = ran
        except Exception:
            try:
                self.heal(fault_id)
            except Exception as exc:  # the watchdog stays armed and retries; report the cause
                self.log(f"heal after a failed inject of {fault_id} failed: {exc!r}")
            raise
        record["state"] = "injected"
        if lease is not None:
            # The lease runs from the moment the fault is in effect: an inject slower than
            # the lease (filling every connection slot) is not cut short by its watchdog.
            record["lease_expires_at"] = time.time() + lease
        self.save(record)
        return {"id": fault_id, **_summary(record)}

    def plan(self, spec: dict[str, Any]) -> dict[str, Any]:
        """What `inject` would do, changing nothing: the validated request, the mechanism the
        capability probe picks, and the target process when the fault needs one."""
        kind, params, ttl = validate(spec)
        mechanism = FAULTS[kind].mechanism(self, params)
        out: dict[str, Any] = {
            "kind": kind,
            "params": params,
            "ttl_s": ttl,
            "mechanism": mechanism,
            "skipped": mechanism.startswith("skipped:"),
        }
        lease = lease_seconds(spec)
        if lease is not None:
            out["lease_s"] = lease
        if isinstance(params.get("program"), str):
            out["program_pid"] = self.program_pid(params["program"])
        return out

    # ------------------------------------------------------------------ leases
    def _write_lease(self, fault_id: str, lease_s: float) -> float:
        expires_at = time.time() + lease_s
        _write_atomic(self._lease_path(fault_id), repr(expires_at))
        return expires_at

    def renew(self, ids: Any, lease_s: Any) -> dict[str, list[str]]:
        """Extend the lease of each recorded, leased fault to now + lease_s."""
        lease: float = _number({"lease_s": lease_s}, "lease_s", MIN_LEASE_S, MAX_LEASE_S, where="")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise FaultInputError(f"ids: expected a list of fault ids, got {ids!r}")
        answer: dict[str, list[str]] = {"renewed": [], "missing": [], "unleased": []}
        for fault_id in ids:
            try:
                record = json.loads(self._state_path(fault_id).read_text())
            except FileNotFoundError:
                answer["missing"].append(fault_id)
                continue
            if record.get("lease_s") is None:
                answer["unleased"].append(fault_id)
                continue
            self._write_lease(fault_id, lease)
            answer["renewed"].append(fault_id)
        return answer

    # ---------------------------------------------------------------- watchdog
    def spawn(self, *args: str, python: str | None = None, stderr: Any = subprocess.DEVNULL) -> int:
        """Start this agent in the background as a helper (watchdog, NFQUEUE worker, loop):
        its own session, so it outlives the request that started it; found again by its
        command line (`is_our_process`), never by name."""
        command, env = self_command()
        argv = [python or sys.executable, *command, "--config", str(self.config_path), *args]
        note_command(argv)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
        return proc.pid

    def _arm_watchdog(self, fault_id: str, deadline: float) -> int:
        return self.spawn("watchdog", fault_id, repr(deadline))

    def watchdog(self, fault_id: str, deadline: float) -> None:
        """Heal the fault at `deadline` (ttl + grace) or, for a leased fault that is in
        effect, once its lease has run out; return when it is healed by someone else."""
        while True:
            record = self.load(fault_id)
            if record is None:
                return
            now = time.time()
            if now >= deadline:
                reason = "expired"
                break
            lease_end = record.get("lease_expires_at")
            if lease_end is not None and record.get("state") == "injected" and now >= lease_end:
                reason = "lease expired"
                break
            time.sleep(min(deadline - now, WATCH_POLL_S))
        record["watchdog_pid"] = None  # do not signal ourselves
        self.save(record)
        # The last resort must not give up on one failed heal (PostgreSQL briefly away, a
        # pid gone between reading and writing a cgroup): retry until healed or gone.
        give_up = time.time() + MAX_TTL_S
        while True:
            try:
                self._heal_record(record, reason=reason)
                return
            except Exception as exc:
                self.log(f"{reason} heal of {fault_id} failed, retrying: {exc!r}")
            time.sleep(WATCHDOG_RETRY_S)
            current = self.load(fault_id)
            if current is None or time.time() > give_up:
                return
            record = current

    # -------------------------------------------------------------------- heal
    def heal(self, fault_id: str) -> dict[str, Any]:
        record = self.load(fault_id)
        if record is None:
            return {"id": fault_id, "healed": False, "reason": "not injected"}
        return self._heal_record(record, reason="healed")

    def _heal_record(self, record: Record, reason: str) -> dict[str, Any]:
        # Heal first: if it fails, the record and its watchdog stay, so the lease or the
        # expiry still heals the fault later. Only a fault that is gone disarms its watchdog.
        with recording() as ran:
            FAULTS[record["kind"]].heal(self, record)
        pid = record.get("watchdog_pid")
        if pid and is_our_process(pid, "watchdog", record["id"]) and pid != os.getpid():
            kill(pid, signal.SIGKILL)
        self._state_path(record["id"]).unlink(missing_ok=True)
        self._lease_path(record["id"]).unlink(missing_ok=True)
        self.log(f"{reason} {record['id']} ({record['kind']}, {record['mechanism']})")
        return {
            "id": record["id"],
            "healed": True,
            "reason": reason,
            "mechanism": record["mechanism"],
            "commands": ran,
        }

    def heal_all(self) -> dict[str, Any]:
        """Every recorded fault, then the sweep by artifact names - each heal tried even when
        another failed; the failures are in the answer."""
        healed: list[str] = []
        failed: list[str] = []
        for record in self.records():
            try:
                healed.append(self._heal_record(record, reason="heal-all")["id"])
            except Exception as exc:
                failed.append(f"{record.get('id')}: {exc}")
                self.log(f"heal-all: {record.get('id')} failed: {exc!r}")
        swept = sweep_artifacts(self)
        out: dict[str, Any] = {"healed": healed, "swept": swept, "remaining": list_artifacts(self)}
        if failed:
            out["failed"] = failed
        return out

    # ------------------------------------------------------------------ verify
    def verify(self, fault_id: str) -> dict[str, Any]:
        record = self.load(fault_id)
        if record is None:
            return {"id": fault_id, "ok": False, "evidence": "not injected"}
        ok, evidence = FAULTS[record["kind"]].verify(self, record)
        return {"id": fault_id, "ok": ok, "evidence": evidence, "mechanism": record["mechanism"]}

    def log(self, message: str) -> None:
        with open(self.root / "faults" / "agent.log", "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")

    # -------------------------------------------------------------- helpers
    def program_pid(self, program: str) -> int:
        """The running program's main pid, from its pidfile; FaultFailed when it does not run."""
        path = pidfile(self, check_program(program))
        pid = pidfile_pid(path)
        if pid is None:
            raise FaultFailed(f"program {program!r}: no pid in {path}")
        if not running(pid):
            raise FaultFailed(f"program {program!r}: pid {pid} from {path} is not running")
        return pid

    def program_tree(self, program: str) -> list[int]:
        return process_tree(self.program_pid(program))

    def _psql_cmd(self, sql: str, role: str = "postgres", *extra: str) -> list[str]:
        pg = self.config.get("postgresql")
        if not pg:
            raise FaultInputError(
                f"{self.host} runs no PostgreSQL: PostgreSQL faults target a db host"
            )
        return [
            "runuser", "-u", "postgres", "--", f"{pg['bin_dir']}/psql", "-X", "-At",
            "-U", role, "-h", pg["socket_dir"], "-p", str(pg["port"]), "-d", pg["database"],
            *extra, "-c", sql,
        ]  # fmt: skip

    def psql(self, sql: str, check: bool = True) -> str:
        return run(
            self._psql_cmd(sql, "postgres", "-v", "ON_ERROR_STOP=1"), check=check
        ).stdout.strip()

    def psql_background(self, sql: str, label: str, role: str = "postgres") -> int:
        """A session that holds something (a lock, a slot) until it is terminated."""
        note_command(self._psql_cmd(sql, role))
        proc = subprocess.Popen(
            self._psql_cmd(sql, role),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PGAPPNAME": f"chaoslab:{label}"},
        )
        return proc.pid
