#!/usr/bin/python3
"""chaosfault - the on-host fault agent of the chaos lab.

Runs on a lab host (inside its network namespace, as root) with nothing but the
standard library. Every fault has inject / verify / heal; every fault is recorded in
this host's state directory *before* it takes effect, together with a watchdog
process that reverts it after ttl + grace even if the controller dies. `heal` is
idempotent and safe when nothing was injected; `heal --all` also sweeps artifacts
by their names (chains CHAOS-*, tc handle cafe:, cgroup subtree chaoslab/<host>).

Commands (argv form, or JSON lines on stdin with `serve` for the controller's fast path):
    inject '<json spec>'     {"kind": ..., "id": ..., "ttl_s": ..., "params": {...}}
    verify <id>              prove the fault is in effect (counters, states, rows)
    heal <id> | --all        undo (idempotent)
    list                     faults recorded on this host
    capabilities             what this host's kernel and tools can do
    serve                    read one JSON request per line, answer one JSON line each
    artifacts                every lab fault artifact present (for heal-all checks)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHAIN_IN = "CHAOS-IN"
CHAIN_OUT = "CHAOS-OUT"
TC_HANDLE = "cafe:"
GRACE_S = 5.0
MAX_TTL_S = 3600.0
PG_SETTINGS = (
    "statement_timeout",
    "work_mem",
    "temp_file_limit",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
)


class FaultInputError(ValueError):
    """A fault request is malformed; the message names the parameter."""


class FaultFailed(RuntimeError):
    """A fault could not be applied or undone."""


# ---------------------------------------------------------------- configuration


class Agent:
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

    def _save(self, record: dict[str, Any]) -> None:
        path = self._state_path(record["id"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, sort_keys=True))
        os.replace(tmp, path)

    def _load(self, fault_id: str) -> dict[str, Any] | None:
        path = self._state_path(fault_id)
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.state_dir.glob("*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return out

    # ------------------------------------------------------------------ inject
    def inject(self, spec: dict[str, Any]) -> dict[str, Any]:
        kind, params, ttl = validate(spec)
        fault_id = str(spec.get("id") or f"{kind.replace('.', '-')}-{uuid.uuid4().hex[:8]}")
        existing = self._load(fault_id)
        if existing is not None:
            if existing["kind"] == kind and existing["params"] == params:
                return {"id": fault_id, "already": True, **_summary(existing)}
            raise FaultInputError(f"id: {fault_id!r} is already injected as {existing['kind']}")
        impl = FAULTS[kind]
        mechanism = impl.mechanism(self, params)
        if mechanism.startswith("skipped:"):
            return {"id": fault_id, "kind": kind, "mechanism": mechanism, "skipped": True}
        now = time.time()
        record = {
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
        # Recorded and armed before it bites: the revert exists before the fault does.
        self._save(record)
        record["watchdog_pid"] = self._arm_watchdog(fault_id, now + ttl + GRACE_S)
        self._save(record)
        try:
            impl.inject(self, record)
        except Exception:
            self.heal(fault_id)
            raise
        record["state"] = "injected"
        self._save(record)
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
        if isinstance(params.get("program"), str):
            out["program_pid"] = self.program_pid(params["program"])
        return out

    def spawn(self, *args: str, python: str | None = None, stderr: Any = subprocess.DEVNULL) -> int:
        """Start this agent in the background as a helper (watchdog, NFQUEUE worker, loop):
        its own session, so it outlives the request that started it; found again by its
        command line (`_is_our_process`), never by name."""
        proc = subprocess.Popen(
            [
                python or sys.executable,
                str(Path(__file__).resolve()),
                "--config",
                str(self.config_path),
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            close_fds=True,
        )
        return proc.pid

    def _arm_watchdog(self, fault_id: str, deadline: float) -> int:
        return self.spawn("watchdog", fault_id, repr(deadline))

    def watchdog(self, fault_id: str, deadline: float) -> None:
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                break
            time.sleep(min(remaining, 1.0))
            if self._load(fault_id) is None:
                return
        record = self._load(fault_id)
        if record is not None:
            record["watchdog_pid"] = None  # do not signal ourselves
            self._save(record)
            self._heal_record(record, reason="expired")

    # -------------------------------------------------------------------- heal
    def heal(self, fault_id: str) -> dict[str, Any]:
        record = self._load(fault_id)
        if record is None:
            return {"id": fault_id, "healed": False, "reason": "not injected"}
        return self._heal_record(record, reason="healed")

    def _heal_record(self, record: dict[str, Any], reason: str) -> dict[str, Any]:
        pid = record.get("watchdog_pid")
        if pid and _is_our_process(pid, "watchdog", record["id"]) and pid != os.getpid():
            _kill(pid, signal.SIGKILL)
        FAULTS[record["kind"]].heal(self, record)
        self._state_path(record["id"]).unlink(missing_ok=True)
        self._log(f"{reason} {record['id']} ({record['kind']}, {record['mechanism']})")
        return {
            "id": record["id"],
            "healed": True,
            "reason": reason,
            "mechanism": record["mechanism"],
        }

    def heal_all(self) -> dict[str, Any]:
        healed = [self._heal_record(r, reason="heal-all")["id"] for r in self.records()]
        swept = sweep_artifacts(self)
        return {"healed": healed, "swept": swept, "remaining": list_artifacts(self)}

    # ------------------------------------------------------------------ verify
    def verify(self, fault_id: str) -> dict[str, Any]:
        record = self._load(fault_id)
        if record is None:
            return {"id": fault_id, "ok": False, "evidence": "not injected"}
        ok, evidence = FAULTS[record["kind"]].verify(self, record)
        return {"id": fault_id, "ok": ok, "evidence": evidence, "mechanism": record["mechanism"]}

    def _log(self, message: str) -> None:
        with open(self.root / "faults" / "agent.log", "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")

    # -------------------------------------------------------------- helpers
    def program_pid(self, program: str) -> int:
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", program):
            raise FaultInputError(f"params.program: {program!r} is not a program name")
        pidfile = self.root / "run" / f"{program}.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            raise FaultFailed(f"program {program!r}: no pid in {pidfile}") from None
        if not Path(f"/proc/{pid}").exists():
            raise FaultFailed(f"program {program!r}: pid {pid} from {pidfile} is not running")
        return pid

    def program_tree(self, program: str) -> list[int]:
        return process_tree(self.program_pid(program))

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        ctl = self.config.get("supervisorctl")
        if ctl:
            return run([ctl, "-c", str(self.root / "etc" / "supervisord.conf"), *args], check=False)
        return run(["systemctl", args[0], f"chaoslab-{args[1]}.service"], check=False)

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
        proc = subprocess.Popen(
            self._psql_cmd(sql, role),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PGAPPNAME": f"chaoslab:{label}"},
        )
        return proc.pid


# ------------------------------------------------------------------ validation


def _number(
    params: dict[str, Any],
    key: str,
    lo: float,
    hi: float,
    default: Any = None,
    integer: bool = False,
) -> Any:
    value = params.get(key, default)
    if value is None:
        raise FaultInputError(f"params.{key}: required")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultInputError(f"params.{key}: expected a number, got {value!r}")
    if integer and int(value) != value:
        raise FaultInputError(f"params.{key}: expected a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise FaultInputError(f"params.{key}: {value!r} is outside {lo}..{hi}")
    return int(value) if integer else float(value)


def _ip(params: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = params.get(key)
    if value is None and not required:
        return None
    if (
        not isinstance(value, str)
        or not re.fullmatch(r"(\d{1,3}\.){3}\d{1,3}", value)
        or any(int(p) > 255 for p in value.split("."))
    ):
        raise FaultInputError(f"params.{key}: expected an IPv4 address, got {value!r}")
    return value


def _choice(params: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = params.get(key, default)
    if value not in choices:
        raise FaultInputError(f"params.{key}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def validate(spec: Any) -> tuple[str, dict[str, Any], float]:
    if not isinstance(spec, dict):
        raise FaultInputError("fault: expected a JSON object")
    unknown = set(spec) - {"kind", "id", "ttl_s", "params"}
    if unknown:
        raise FaultInputError(f"fault: unknown key(s) {sorted(unknown)}")
    kind = spec.get("kind")
    if kind not in FAULTS:
        raise FaultInputError(f"kind: unknown fault {kind!r}; known: {', '.join(sorted(FAULTS))}")
    ttl = _number(spec, "ttl_s", 0.1, MAX_TTL_S, default=60.0)
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        raise FaultInputError("params: expected an object")
    allowed = FAULTS[kind].params
    extra = set(params) - set(allowed)
    if extra:
        raise FaultInputError(
            f"params: unknown parameter(s) {sorted(extra)} for {kind}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    return kind, FAULTS[kind].check(params), ttl


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("kind", "mechanism", "expires_at", "artifacts") if k in record}


# ------------------------------------------------------------------ processes


def run(
    cmd: list[str], check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise FaultFailed(
            f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[:400]}"
        )
    return proc


def _kill(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _is_our_process(pid: int, *markers: str) -> bool:
    cmd = _cmdline(pid)
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


# ------------------------------------------------------------------- iptables


def ipt(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["iptables", "-w", "5", *args], check=check)


def ensure_chains() -> None:
    for chain, parent in ((CHAIN_IN, "INPUT"), (CHAIN_OUT, "OUTPUT")):
        if ipt("-n", "-L", chain, check=False).returncode != 0:
            ipt("-N", chain)
        if ipt("-C", parent, "-j", chain, check=False).returncode != 0:
            ipt("-I", parent, "1", "-j", chain)


def rule_args(record: dict[str, Any], chain: str, match: list[str], target: list[str]) -> list[str]:
    comment = ["-m", "comment", "--comment", f"chaoslab:{record['id']}"]
    return [chain, *match, *comment, *target]


def add_rule(record: dict[str, Any], chain: str, match: list[str], target: list[str]) -> None:
    ensure_chains()
    args = rule_args(record, chain, match, target)
    if ipt("-C", *args, check=False).returncode != 0:
        ipt("-A", *args)
    record["artifacts"].setdefault("rules", []).append(args)


def remove_rules(record: dict[str, Any]) -> None:
    for args in record["artifacts"].get("rules", []):
        while ipt("-C", *args, check=False).returncode == 0:
            ipt("-D", *args, check=False)


def rule_packets(record: dict[str, Any]) -> int:
    total = 0
    for chain in (CHAIN_IN, CHAIN_OUT):
        proc = ipt("-n", "-v", "-x", "-L", chain, check=False)
        for line in proc.stdout.splitlines():
            if f"chaoslab:{record['id']}" in line:
                total += int(line.split()[0])
    return total


def rules_present(record: dict[str, Any]) -> bool:
    rules = record["artifacts"].get("rules", [])
    return bool(rules) and all(ipt("-C", *a, check=False).returncode == 0 for a in rules)


# ------------------------------------------------------------------------ tc


def lab_qdisc(agent: Agent) -> str:
    """This host's qdiscs on the lab interface, with counters."""
    return run(["tc", "-s", "qdisc", "show", "dev", agent.iface], check=False).stdout


def add_lab_qdisc(agent: Agent, record: dict[str, Any], *spec: str) -> None:
    """Root qdisc with the lab's own handle; one link fault per interface at a time."""
    if f" {TC_HANDLE} " in lab_qdisc(agent):
        raise FaultFailed(
            f"{agent.iface} already carries a lab qdisc ({TC_HANDLE}): one link fault at a time"
        )
    run(["tc", "qdisc", "add", "dev", agent.iface, "root", "handle", TC_HANDLE, *spec])
    record["artifacts"]["qdisc"] = agent.iface


def del_lab_qdisc(agent: Agent) -> None:
    if f" {TC_HANDLE} " in lab_qdisc(agent):
        run(["tc", "qdisc", "del", "dev", agent.iface, "root", "handle", TC_HANDLE], check=False)


# --------------------------------------------------------------------- faults


class Fault:
    params: tuple[str, ...] = ()

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(params)

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "iptables"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        raise NotImplementedError

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        raise NotImplementedError


class IptablesFault(Fault):
    """Faults made of rules in this host's CHAOS-IN / CHAOS-OUT chains."""

    def rules(self, params: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
        raise NotImplementedError

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        for chain, match, target in self.rules(record["params"]):
            add_rule(record, chain, match, target)

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        present = rules_present(record)
        return present, f"rules present={present}, matched packets={rule_packets(record)}"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        remove_rules(record)


def _directions(params: dict[str, Any]) -> list[str]:
    direction = params.get("direction", "both")
    return ["in", "out"] if direction == "both" else [direction]


class Partition(IptablesFault):
    params = ("peer", "direction", "port")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {
            "peer": _ip(params, "peer"),
            "direction": _choice(params, "direction", ("both", "in", "out"), "both"),
        }
        if "port" in params:
            out["port"] = _number(params, "port", 1, 65535, integer=True)
        return out

    def rules(self, params: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
        out = []
        for d in _directions(params):
            match = ["-s" if d == "in" else "-d", params["peer"]]
            if "port" in params:
                match += ["-p", "tcp", "--dport" if d == "in" else "--sport", str(params["port"])]
            out.append((CHAIN_IN if d == "in" else CHAIN_OUT, match, ["-j", "DROP"]))
        return out


class Reset(IptablesFault):
    params = ("port", "peer")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {"port": _number(params, "port", 1, 65535, integer=True)}
        if params.get("peer") is not None:
            out["peer"] = _ip(params, "peer")
        return out

    def rules(self, params: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
        match = ["-p", "tcp", "--dport", str(params["port"])]
        if params.get("peer"):
            match = ["-s", params["peer"], *match]
        return [(CHAIN_IN, match, ["-j", "REJECT", "--reject-with", "tcp-reset"])]


class Loss(IptablesFault):
    params = ("probability", "peer", "direction")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {
            "probability": _number(params, "probability", 0.0, 1.0),
            "direction": _choice(params, "direction", ("both", "in", "out"), "in"),
        }
        if params.get("peer") is not None:
            out["peer"] = _ip(params, "peer")
        return out

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "iptables-statistic"

    def rules(self, params: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
        out = []
        for d in _directions(params):
            match = ["-s" if d == "in" else "-d", params["peer"]] if params.get("peer") else []
            match += [
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                f"{params['probability']:.4f}",
            ]
            out.append((CHAIN_IN if d == "in" else CHAIN_OUT, match, ["-j", "DROP"]))
        return out


class Bandwidth(Fault):
    params = ("rate_kbit", "burst_kbit", "latency_ms")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "rate_kbit": _number(params, "rate_kbit", 8, 10_000_000, integer=True),
            "burst_kbit": _number(params, "burst_kbit", 8, 1_000_000, default=32, integer=True),
            "latency_ms": _number(params, "latency_ms", 1, 60_000, default=400, integer=True),
        }

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "tc-tbf"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        p = record["params"]
        add_lab_qdisc(
            agent,
            record,
            "tbf",
            "rate",
            f"{p['rate_kbit']}kbit",
            "burst",
            f"{p['burst_kbit']}kbit",
            "latency",
            f"{p['latency_ms']}ms",
        )

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        out = lab_qdisc(agent)
        ok = f"qdisc tbf {TC_HANDLE}" in out
        sent = re.search(r"Sent (\d+) bytes (\d+) pkt", out)
        return ok, f"tbf present={ok}, {sent.group(0) if sent else 'no counters'}"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        del_lab_qdisc(agent)


class QueueFault(Fault):
    """Delay / jitter / reorder / corrupt on packets *received* by this host, by an NFQUEUE
    worker (netem is used instead where the kernel has it). Queued on INPUT - never on the
    sender's OUTPUT, which collapses TCP - and always with --queue-bypass, so a dead worker
    lets traffic through instead of blackholing it."""

    params = ("delay_ms", "jitter_ms", "peer", "port", "port_side", "syn_only", "probability")
    op = "delay"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "delay_ms": _number(params, "delay_ms", 0, 30_000, default=100),
            "jitter_ms": _number(params, "jitter_ms", 0, 30_000, default=0),
            "syn_only": bool(params.get("syn_only", False)),
            "probability": _number(params, "probability", 0.0, 1.0, default=1.0),
            "port_side": _choice(params, "port_side", ("local", "remote"), "local"),
        }
        if params.get("peer") is not None:
            out["peer"] = _ip(params, "peer")
        if params.get("port") is not None:
            out["port"] = _number(params, "port", 1, 65535, integer=True)
        if out["syn_only"] and "port" not in out:
            raise FaultInputError("params.port: required with syn_only (which connections to slow)")
        return out

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        # netem shapes a whole link's egress; a peer or port selector needs the NFQUEUE
        # worker (tc classifiers are not assumed to exist).
        whole_link = not params.get("peer") and not params.get("port")
        return "netem" if whole_link and capabilities(agent).get("netem") else "nfqueue"

    def netem_args(self, p: dict[str, Any]) -> list[str]:
        delay = ["delay", f"{p['delay_ms']:g}ms"] + (
            [f"{p['jitter_ms']:g}ms"] if p["jitter_ms"] else []
        )
        if self.op == "reorder":
            return [*delay, "reorder", f"{(1 - p['probability']) * 100:.2f}%"]
        if self.op == "corrupt":
            return ["corrupt", f"{p['probability'] * 100:.2f}%"]
        return delay

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        p = record["params"]
        if record["mechanism"] == "netem":
            add_lab_qdisc(agent, record, "netem", *self.netem_args(p))
            return
        queue = _free_queue(agent)
        python = agent.config.get("nfqueue_python")
        if not python or not Path(python).exists():
            raise FaultFailed(
                "the NFQUEUE worker's Python (with NetfilterQueue) is not installed:"
                " run the faults role"
            )
        log_path = agent.root / "faults" / f"nfqueue-{record['id']}.log"
        with open(log_path, "w") as worker_log:
            worker_pid = agent.spawn(
                "nfqueue",
                record["id"],
                str(queue),
                self.op,
                json.dumps(p),
                python=python,
                stderr=worker_log,
            )
        record["artifacts"]["worker_pid"] = worker_pid
        record["artifacts"]["queue"] = queue
        ready = agent.root / "faults" / f"nfqueue-{record['id']}.ready"
        for _ in range(100):
            if ready.exists() or not Path(f"/proc/{worker_pid}").exists():
                break
            time.sleep(0.02)
        if not ready.exists():
            raise FaultFailed(
                f"NFQUEUE worker did not start (see faults/nfqueue-{record['id']}.log)"
            )
        match = ["-s", p["peer"]] if p.get("peer") else []
        if p.get("port"):
            match += [
                "-p",
                "tcp",
                "--dport" if p["port_side"] == "local" else "--sport",
                str(p["port"]),
            ]
            if p["syn_only"]:
                match += ["--syn"]
        add_rule(
            record, CHAIN_IN, match, ["-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"]
        )

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        if record["mechanism"] == "netem":
            out = lab_qdisc(agent)
            return f"qdisc netem {TC_HANDLE}" in out, out.strip().replace("\n", " | ")
        pid = record["artifacts"].get("worker_pid")
        alive = bool(pid) and _is_our_process(pid, "nfqueue", record["id"])
        present = rules_present(record)
        return (
            alive and present,
            f"worker alive={alive}, rule present={present}, queued packets={rule_packets(record)}",
        )

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        if record["mechanism"] == "netem":
            del_lab_qdisc(agent)
            return
        remove_rules(record)
        pid = record["artifacts"].get("worker_pid")
        if pid and _is_our_process(pid, "nfqueue", record["id"]):
            _kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.02)
            _kill(pid, signal.SIGKILL)
        for suffix in ("ready",):
            (agent.root / "faults" / f"nfqueue-{record['id']}.{suffix}").unlink(missing_ok=True)


class Reorder(QueueFault):
    op = "reorder"


class Corrupt(QueueFault):
    op = "corrupt"


class Duplicate(Fault):
    params = ("probability",)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"probability": _number(params, "probability", 0.0, 1.0)}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        if capabilities(agent).get("netem"):
            return "netem"
        return (
            "skipped: duplication needs sch_netem, which this kernel lacks; an NFQUEUE "
            "verdict can accept, drop, delay or rewrite a packet but not emit a second copy"
        )

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        add_lab_qdisc(
            agent, record, "netem", "duplicate", f"{record['params']['probability'] * 100:.2f}%"
        )

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        out = lab_qdisc(agent)
        return f"qdisc netem {TC_HANDLE}" in out, out.strip()

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        del_lab_qdisc(agent)


def _free_queue(agent: Agent) -> int:
    used = {r["artifacts"].get("queue") for r in agent.records()}
    for queue in range(100, 200):
        if queue not in used:
            return queue
    raise FaultFailed("no free NFQUEUE number (100-199)")


class ProgramFault(Fault):
    params = ("program",)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        program = params.get("program")
        if not isinstance(program, str) or not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", program):
            raise FaultInputError(f"params.program: {program!r} is not a program name")
        return {"program": program}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "signal"


class Kill(ProgramFault):
    """SIGKILL the program's main process; the service layer restarts it (one-shot)."""

    def target(self, agent: Agent, record: dict[str, Any]) -> int:
        return agent.program_pid(record["params"]["program"])

    def program(self, record: dict[str, Any]) -> str:
        return str(record["params"]["program"])

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        pid = self.target(agent, record)
        record["artifacts"]["killed_pid"] = pid
        _kill(pid, signal.SIGKILL)

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        old = record["artifacts"]["killed_pid"]
        gone = wait_dead(old)
        return gone, f"pid {old} {'gone' if gone else 'still running'}"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        agent.supervisorctl("start", self.program(record))


class Pause(ProgramFault):
    """SIGSTOP the whole process tree; SIGCONT on heal."""

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        tree = agent.program_tree(record["params"]["program"])
        record["artifacts"]["pids"] = tree
        for pid in tree:
            _kill(pid, signal.SIGSTOP)

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        # SIGSTOP takes effect when each task next handles signals: poll briefly. A pid
        # that has exited meanwhile ("gone") no longer answers either.
        deadline = time.monotonic() + 2.0
        while True:
            states = {pid: process_state(pid) for pid in record["artifacts"]["pids"]}
            stopped = all(s in ("T", "gone") for s in states.values()) and "T" in states.values()
            if stopped or time.monotonic() > deadline:
                return stopped, f"process states {states}"
            time.sleep(0.02)

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        for pid in record["artifacts"].get("pids", []):
            _kill(pid, signal.SIGCONT)


class Stop(ProgramFault):
    """Stop through the service layer (clean stop); heal starts it."""

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "service-layer"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        proc = agent.supervisorctl("stop", record["params"]["program"])
        if proc.returncode != 0 and "NOT_RUNNING" not in proc.stdout:
            raise FaultFailed(
                f"stop {record['params']['program']}: {proc.stdout.strip()} {proc.stderr.strip()}"
            )

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        out = agent.supervisorctl("status", record["params"]["program"]).stdout.strip()
        return "STOPPED" in out or "inactive" in out, out

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        agent.supervisorctl("start", record["params"]["program"])


class Restart(ProgramFault):
    """Restart through the service layer (one-shot); heal makes sure it runs."""

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "service-layer"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        program = record["params"]["program"]
        record["artifacts"]["old_pid"] = agent.program_pid(program)
        proc = agent.supervisorctl("restart", program)
        if proc.returncode != 0:
            raise FaultFailed(f"restart {program}: {proc.stdout.strip()} {proc.stderr.strip()}")

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        new = agent.program_pid(record["params"]["program"])
        old = record["artifacts"]["old_pid"]
        return new != old, f"pid {old} -> {new}"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        agent.supervisorctl("start", record["params"]["program"])


# ---------------------------------------------------------------- cgroups


def cgroup_layout() -> str:
    if Path("/sys/fs/cgroup/memory").is_dir() and Path("/sys/fs/cgroup/cpu").is_dir():
        return "v1"
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return "v2"
    return "none"


class Resource(ProgramFault):
    params = ("program", "limit_mb", "quota_pct", "max")
    controller = ""

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        layout = cgroup_layout()
        return f"cgroup-{layout}" if layout != "none" else "skipped: no cgroup hierarchy mounted"

    def _dir(self, agent: Agent, record: dict[str, Any]) -> Path:
        if cgroup_layout() == "v1":
            return Path("/sys/fs/cgroup") / self.controller / "chaoslab" / agent.host / record["id"]
        return Path("/sys/fs/cgroup/chaoslab") / agent.host / record["id"]

    def limits(self, params: dict[str, Any]) -> dict[str, str]:
        raise NotImplementedError

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
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
            str(pid): _current_cgroup(pid, self.controller) for pid in tree
        }
        for pid in tree:
            try:
                (path / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                continue

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
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

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        path = Path(record["artifacts"].get("cgroup", self._dir(agent, record)))
        if not path.exists():
            return
        # Lift the cap first: a task moved out of a throttled CFS group can otherwise stay
        # starved for up to a second (measured here: 0.0-0.05 of a core right after heal).
        for name, value in self.release().items():
            if (path / name).exists():
                (path / name).write_text(value)
        root = _cgroup_root(path, self.controller)
        for pid in (path / "cgroup.procs").read_text().split():
            original = record["artifacts"].get("moved", {}).get(pid, "/")
            target = root / original.lstrip("/")
            try:
                (target / "cgroup.procs").write_text(pid)
            except OSError:
                (root / "cgroup.procs").write_text(pid)
        _rmdir_up(path, stop=root)


def _current_cgroup(pid: int, controller: str) -> str:
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if (controller in ctrls.split(",")) or (ctrls == "" and cgroup_layout() == "v2"):
                return path
    except OSError:
        pass
    return "/"


def _cgroup_root(path: Path, controller: str) -> Path:
    if cgroup_layout() == "v1":
        return Path("/sys/fs/cgroup") / controller
    return Path("/sys/fs/cgroup")


def _rmdir_up(path: Path, stop: Path) -> None:
    while path != stop and path.exists():
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent
        if path.name != "chaoslab" and path.parent.name != "chaoslab":
            return


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

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        super().inject(agent, record)
        if not record["params"]["restart"]:
            return
        supervisor = _supervisor_pid(agent)
        path = Path(record["artifacts"]["cgroup"])
        record["artifacts"]["moved"][str(supervisor)] = _current_cgroup(supervisor, self.controller)
        (path / "cgroup.procs").write_text(str(supervisor))
        agent._save(record)
        _kill(agent.program_pid(record["params"]["program"]), signal.SIGKILL)

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


# ---------------------------------------------------------------- PostgreSQL

IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?")


def _ident(params: dict[str, Any], key: str, default: str | None = None) -> str:
    value = params.get(key, default)
    if not isinstance(value, str) or not IDENT.fullmatch(value):
        raise FaultInputError(f"params.{key}: {value!r} is not a plain SQL name")
    return value


class PgTerminate(Fault):
    """pg_terminate_backend on the app's backends, once or every interval_ms until healed."""

    params = ("which", "user", "interval_ms")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {
            "which": _choice(params, "which", ("all", "active"), "all"),
            "user": _ident(params, "user", "fraiseql"),
        }
        if params.get("interval_ms") is not None:
            out["interval_ms"] = _number(params, "interval_ms", 50, 600_000, integer=True)
        return out

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def _sql(self, p: dict[str, Any]) -> str:
        active = " AND state = 'active'" if p["which"] == "active" else ""
        return (
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE usename = '{p['user']}' AND pid <> pg_backend_pid(){active}"
        )

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        p = record["params"]
        record["artifacts"]["terminated_first"] = int(agent.psql(self._sql(p)) or 0)
        if "interval_ms" in p:
            loop_pid = agent.spawn("repeat", record["id"], str(p["interval_ms"]), self._sql(p))
            record["artifacts"]["loop_pid"] = loop_pid

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        pid = record["artifacts"].get("loop_pid")
        looping = bool(pid) and _is_our_process(pid, "repeat", record["id"])
        first = record["artifacts"].get("terminated_first", 0)
        ok = looping if pid else True
        return ok, f"terminated {first} backend(s) at inject; repeating={looping}"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        pid = record["artifacts"].get("loop_pid")
        if pid and _is_our_process(pid, "repeat", record["id"]):
            _kill(pid, signal.SIGKILL)


class PgLock(Fault):
    params = ("table", "mode")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        mode = _choice(
            params,
            "mode",
            ("ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE"),
            "ACCESS EXCLUSIVE",
        )
        return {"table": _ident(params, "table", "core.tb_post"), "mode": mode}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        p = record["params"]
        label = record["id"]
        agent.psql_background(
            f"BEGIN; LOCK TABLE {p['table']} IN {p['mode']} MODE;"
            f" SELECT pg_sleep({record['ttl_s'] + GRACE_S}); COMMIT;",
            label,
        )
        for _ in range(100):
            if self._holder(agent, record):
                return
            time.sleep(0.05)
        raise FaultFailed(f"the lock on {p['table']} was not taken within 5 s")

    def _holder(self, agent: Agent, record: dict[str, Any]) -> str:
        return agent.psql(
            "SELECT string_agg(l.pid::text, ',') FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid "
            f"WHERE a.application_name = 'chaoslab:{record['id']}' AND l.granted "
            f"AND l.relation = '{record['params']['table']}'::regclass"
        )

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        holder = self._holder(agent, record)
        waiting = agent.psql(
            "SELECT count(*) FROM pg_locks WHERE NOT granted "
            f"AND relation = '{record['params']['table']}'::regclass"
        )
        return bool(
            holder
        ), f"held by backend {holder or '-'}; {waiting} waiting lock request(s) in pg_locks"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        agent.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = 'chaoslab:{record['id']}'",
            check=False,
        )


class PgFillConnections(Fault):
    """Every ordinary connection slot held by idle sessions of an unprivileged role; a
    keeper process tops them up when other sessions leave. Superuser-reserved slots stay
    free (the agent heals through them)."""

    params = ("leave",)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"leave": _number(params, "leave", 0, 1000, default=0, integer=True)}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        keeper_pid = agent.spawn(
            "fill", record["id"], str(record["params"]["leave"]), str(record["ttl_s"] + GRACE_S)
        )
        record["artifacts"]["keeper_pid"] = keeper_pid
        agent._save(record)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if free_slots(agent) <= record["params"]["leave"]:
                return
            time.sleep(0.05)
        raise FaultFailed("the connection slots were not all taken within 15 s")

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        held = int(
            agent.psql(
                "SELECT count(*) FROM pg_stat_activity"
                f" WHERE application_name = 'chaoslab:{record['id']}'"
            )
        )
        free = free_slots(agent)
        return free <= record["params"][
            "leave"
        ], f"{held} lab sessions hold slots, {free} ordinary slot(s) free"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        pid = record["artifacts"].get("keeper_pid")
        if pid and _is_our_process(pid, "fill", record["id"]):
            _kill(pid, signal.SIGKILL)
        agent.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = 'chaoslab:{record['id']}'",
            check=False,
        )


def free_slots(agent: Agent) -> int:
    return int(
        agent.psql(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())"
        )
    )


def fill(agent: Agent, fault_id: str, leave: int, hold_s: float) -> None:
    """Keep every ordinary slot (but `leave`) taken until the fault is healed or expires."""
    while agent._load(fault_id) is not None:
        missing = free_slots(agent) - leave
        for _ in range(max(0, missing)):
            agent.psql_background(f"SELECT pg_sleep({hold_s})", fault_id, role="chaoslab_filler")
        time.sleep(0.2)


class PgSetting(Fault):
    params = ("name", "value")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _choice(params, "name", PG_SETTINGS, "statement_timeout")
        value = params.get("value")
        if not isinstance(value, (str, int)) or not re.fullmatch(
            r"-?[0-9]+\s*[a-zA-Z]*", str(value)
        ):
            raise FaultInputError(
                f"params.value: {value!r} is not a PostgreSQL setting value like '50ms', '64kB'"
            )
        return {"name": name, "value": str(value)}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        p = record["params"]
        agent.psql(f"ALTER SYSTEM SET {p['name']} = '{p['value']}'")
        agent.psql("SELECT pg_reload_conf()")

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        p = record["params"]
        for _ in range(20):
            row = agent.psql(
                f"SELECT setting, unit, source FROM pg_settings WHERE name = '{p['name']}'"
            )
            if "configuration file" in row:
                return True, f"{p['name']} = {row}"
            time.sleep(0.05)
        return False, f"{p['name']} = {row}"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        agent.psql(f"ALTER SYSTEM RESET {record['params']['name']}", check=False)
        agent.psql("SELECT pg_reload_conf()", check=False)


class PgRevoke(Fault):
    params = ("privilege", "object", "role")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "privilege": _choice(
                params, "privilege", ("SELECT", "INSERT", "UPDATE", "EXECUTE"), "SELECT"
            ),
            "object": _ident(params, "object", "public.v_post"),
            "role": _ident(params, "role", "fraiseql"),
        }

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def _on(self, p: dict[str, Any]) -> str:
        return f"FUNCTION {p['object']}" if p["privilege"] == "EXECUTE" else p["object"]

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        p = record["params"]
        agent.psql(f"REVOKE {p['privilege']} ON {self._on(p)} FROM {p['role']}")

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        p = record["params"]
        fn = "has_function_privilege" if p["privilege"] == "EXECUTE" else "has_table_privilege"
        has = agent.psql(f"SELECT {fn}('{p['role']}', '{p['object']}', '{p['privilege']}')")
        return has == "f", f"{fn}({p['role']}, {p['object']}, {p['privilege']}) = {has}"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        p = record["params"]
        agent.psql(f"GRANT {p['privilege']} ON {self._on(p)} TO {p['role']}", check=False)


class PgDropIndex(Fault):
    params = ("index",)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"index": _ident(params, "index", "core.tb_post_author_idx")}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        index = record["params"]["index"]
        definition = agent.psql(f"SELECT pg_get_indexdef('{index}'::regclass)")
        record["artifacts"]["definition"] = definition
        agent._save(record)  # the definition must survive a crash before heal
        agent.psql(f"DROP INDEX {index}")

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        gone = agent.psql(f"SELECT to_regclass('{record['params']['index']}') IS NULL")
        return gone == "t", f"index {record['params']['index']} absent={gone}"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        definition = record["artifacts"].get("definition")
        if (
            definition
            and agent.psql(f"SELECT to_regclass('{record['params']['index']}') IS NULL") == "t"
        ):
            agent.psql(definition)


class PgCrash(Kill):
    """SIGKILL the postmaster; the service layer restarts it and crash recovery runs."""

    params = ()

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def target(self, agent: Agent, record: dict[str, Any]) -> int:
        pg = agent.config["postgresql"]
        return int(Path(pg["data_dir"], "postmaster.pid").read_text().split()[0])

    def program(self, record: dict[str, Any]) -> str:
        return "postgresql"


# --------------------------------------------------------------------- JWKS


class JwksResponse(Fault):
    """Rewrites what nginx answers for /.well-known/jwks.json (500, invalid JSON)."""

    params = ("status", "body")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        status = _number(params, "status", 200, 599, default=500, integer=True)
        body = params.get("body", "")
        if not isinstance(body, str) or any(c in body for c in "'\\;{}\n"):
            raise FaultInputError(
                "params.body: plain text without quotes, braces, semicolons or newlines"
            )
        return {"status": status, "body": body}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "nginx"

    def _conf(self, agent: Agent) -> Path:
        nginx = agent.config.get("nginx")
        if not nginx:
            raise FaultInputError(f"{agent.host} serves no JWKS: JWKS faults target an auth host")
        return Path(nginx["fault_conf"])

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        p = record["params"]
        conf = self._conf(agent)
        if conf.read_text().strip():
            raise FaultFailed("another JWKS response fault is active on this host")
        body = f" '{p['body']}'" if p["body"] else ""
        conf.write_text(f"# chaoslab:{record['id']}\nreturn {p['status']}{body};\n")
        self._reload(agent)

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        text = self._conf(agent).read_text()
        return f"chaoslab:{record['id']}" in text, text.strip().replace("\n", " | ")

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        conf = self._conf(agent)
        if f"chaoslab:{record['id']}" in conf.read_text():
            conf.write_text("")
            self._reload(agent)

    def _reload(self, agent: Agent) -> None:
        pid = agent.program_pid("nginx")
        _kill(pid, signal.SIGHUP)
        time.sleep(0.3)  # nginx re-reads its configuration and replaces the worker


class JwksPublish(Fault):
    """Publishes another JWKS document (key rotation): the controller makes the new key
    and sends only the public document; heal puts the previous document back."""

    params = ("document",)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = params.get("document")
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, dict) and "kid" in k for k in keys):
            raise FaultInputError(
                "params.document: expected a JWKS object {'keys': [{'kid': ...}, ...]}"
            )
        if any("d" in k or "p" in k for k in keys):
            raise FaultInputError("params.document: contains private key material - refused")
        return {"document": doc}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "jwks-document"

    def _path(self, agent: Agent) -> Path:
        if not agent.config.get("nginx"):
            raise FaultInputError(f"{agent.host} serves no JWKS: JWKS faults target an auth host")
        return agent.root / "data" / "jwks" / ".well-known" / "jwks.json"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        path = self._path(agent)
        record["artifacts"]["previous"] = path.read_text()
        agent._save(record)  # the previous document must survive anything before heal
        tmp = path.with_suffix(".chaoslab-tmp")
        tmp.write_text(json.dumps(record["params"]["document"], indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        served = json.loads(self._path(agent).read_text())
        kids = [k["kid"] for k in served.get("keys", [])]
        want = [k["kid"] for k in record["params"]["document"]["keys"]]
        return kids == want, f"published kids {kids}"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        previous = record["artifacts"].get("previous")
        if previous is not None:
            path = self._path(agent)
            tmp = path.with_suffix(".chaoslab-tmp")
            tmp.write_text(previous)
            os.replace(tmp, path)


# -------------------------------------------------------------------- cache


def redis_cli(agent: Agent, *args: str, check: bool = True, raw: bool = False) -> str:
    """redis-cli against this host's Redis; `raw` for plain lines, else quoted replies."""
    facts = agent.config.get("redis")
    if not facts:
        raise FaultInputError(f"{agent.host} runs no Redis: cache faults target a cache host")
    fmt = "--raw" if raw else "--no-raw"
    cmd = ["redis-cli", "-h", facts["address"], "-p", str(facts["port"]), fmt, *args]
    return run(cmd, check=check).stdout.strip()


def _redis_int(agent: Agent, *args: str) -> int:
    return int(redis_cli(agent, *args).removeprefix("(integer) "))


def _redis_keys(agent: Agent, pattern: str) -> list[str]:
    return [k for k in redis_cli(agent, "--scan", "--pattern", pattern, raw=True).splitlines() if k]


def _redis_memory_config(agent: Agent) -> dict[str, str]:
    out = redis_cli(agent, "CONFIG", "GET", "maxmemory*", raw=True).split()
    return dict(zip(out[::2], out[1::2], strict=False))


def _redis_restore_memory(agent: Agent, saved: dict[str, str]) -> None:
    for name in ("maxmemory", "maxmemory-policy"):
        if name in saved:
            redis_cli(agent, "CONFIG", "SET", name, saved[name], check=False)


class CacheFlush(Fault):
    """FLUSHALL (one-shot: the cache rebuilds itself; heal has nothing to undo)."""

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "redis"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        record["artifacts"]["keys_before"] = _redis_int(agent, "DBSIZE")
        redis_cli(agent, "FLUSHALL")

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        now = _redis_int(agent, "DBSIZE")
        before = record["artifacts"]["keys_before"]
        return True, f"flushed {before} key(s) at inject; {now} key(s) now (refilled by the app)"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        return None


class CacheCorrupt(Fault):
    """Overwrites cached entries with garbage (TTL kept); heal deletes what is still garbage."""

    params = ("pattern", "value")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        pattern = params.get("pattern", "fraiseql:*")
        value = params.get("value", "chaoslab-garbage{{{")
        for key, v in (("pattern", pattern), ("value", value)):
            if not isinstance(v, str) or not v or len(v) > 200 or any(c in v for c in "\n\r"):
                raise FaultInputError(f"params.{key}: expected one line of text (1-200 characters)")
        return {"pattern": pattern, "value": value}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "redis"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        keys = _redis_keys(agent, record["params"]["pattern"])
        for key in keys:
            redis_cli(agent, "SET", key, record["params"]["value"], "KEEPTTL")
        record["artifacts"]["corrupted"] = keys

    def _still_corrupt(self, agent: Agent, record: dict[str, Any]) -> list[str]:
        value = json.dumps(record["params"]["value"])
        return [
            k
            for k in record["artifacts"].get("corrupted", [])
            if redis_cli(agent, "GET", k, check=False) == value
        ]

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        corrupt = self._still_corrupt(agent, record)
        total = len(record["artifacts"]["corrupted"])
        return bool(corrupt), f"{len(corrupt)} of {total} corrupted key(s) still hold garbage"

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        for key in self._still_corrupt(agent, record):
            redis_cli(agent, "DEL", key, check=False)


class CacheMemory(Fault):
    """Shrinks Redis's memory bound at runtime: `evict` (LRU evicts under load) or
    `write_fail` (noeviction: every write is refused with OOM). Heal restores both settings."""

    params = ("maxmemory_kb",)
    policy = "allkeys-lru"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "maxmemory_kb": _number(
                params, "maxmemory_kb", 1, 64 * 1024 * 1024, default=1, integer=True
            )
        }

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "redis"

    def inject(self, agent: Agent, record: dict[str, Any]) -> None:
        record["artifacts"]["saved"] = _redis_memory_config(agent)
        agent._save(record)  # the original bound must survive anything before heal
        redis_cli(agent, "CONFIG", "SET", "maxmemory-policy", self.policy)
        redis_cli(agent, "CONFIG", "SET", "maxmemory", f"{record['params']['maxmemory_kb']}kb")

    def verify(self, agent: Agent, record: dict[str, Any]) -> tuple[bool, str]:
        current = _redis_memory_config(agent)
        want = str(record["params"]["maxmemory_kb"] * 1024)
        evicted = re.search(r"evicted_keys:(\d+)", redis_cli(agent, "INFO", "stats"))
        ok = current.get("maxmemory") == want and current.get("maxmemory-policy") == self.policy
        return (
            ok,
            f"maxmemory={current.get('maxmemory')} policy={current.get('maxmemory-policy')}, "
            f"evicted_keys={evicted.group(1) if evicted else '?'}",
        )

    def heal(self, agent: Agent, record: dict[str, Any]) -> None:
        _redis_restore_memory(agent, record["artifacts"].get("saved", {}))


class CacheWriteFail(CacheMemory):
    policy = "noeviction"


FAULTS: dict[str, Fault] = {
    "net.partition": Partition(),
    "net.reset": Reset(),
    "net.loss": Loss(),
    "net.bandwidth": Bandwidth(),
    "net.delay": QueueFault(),
    "net.reorder": Reorder(),
    "net.corrupt": Corrupt(),
    "net.duplicate": Duplicate(),
    "proc.kill": Kill(),
    "proc.pause": Pause(),
    "proc.stop": Stop(),
    "proc.restart": Restart(),
    "res.memory": Memory(),
    "res.cpu": Cpu(),
    "res.pids": Pids(),
    "pg.terminate": PgTerminate(),
    "pg.lock": PgLock(),
    "pg.fill_connections": PgFillConnections(),
    "pg.setting": PgSetting(),
    "pg.revoke": PgRevoke(),
    "pg.drop_index": PgDropIndex(),
    "pg.crash": PgCrash(),
    "jwks.response": JwksResponse(),
    "jwks.publish": JwksPublish(),
    "cache.flush": CacheFlush(),
    "cache.corrupt": CacheCorrupt(),
    "cache.evict": CacheMemory(),
    "cache.write_fail": CacheWriteFail(),
}


# ---------------------------------------------------------- capabilities, sweep


def capabilities(agent: Agent, refresh: bool = False) -> dict[str, Any]:
    cache = agent.root / "faults" / "capabilities.json"
    if cache.exists() and not refresh:
        return json.loads(cache.read_text())
    caps: dict[str, Any] = {"cgroup": cgroup_layout()}
    # Try each qdisc on a throwaway veth pair inside this namespace (this kernel has no
    # dummy links; veth is what the lab itself is made of).
    probe = "chaosprobe0"
    run(["ip", "link", "add", probe, "type", "veth", "peer", "name", "chaosprobe1"], check=False)

    def qdisc_works(*spec: str) -> bool:
        ok = run(["tc", "qdisc", "add", "dev", probe, "root", *spec], check=False).returncode == 0
        run(["tc", "qdisc", "del", "dev", probe, "root"], check=False)
        return ok

    caps["netem"] = qdisc_works("netem", "delay", "1ms")
    caps["tbf"] = qdisc_works("tbf", "rate", "1mbit", "burst", "32kbit", "latency", "50ms")
    run(["ip", "link", "del", probe], check=False)
    caps["iptables"] = ipt("-n", "-L", "INPUT", check=False).returncode == 0
    python = agent.config.get("nfqueue_python")
    caps["nfqueue"] = (
        bool(python) and run([python, "-c", "import netfilterqueue"], check=False).returncode == 0
    )
    cache.write_text(json.dumps(caps, sort_keys=True))
    return caps


def list_artifacts(agent: Agent) -> dict[str, Any]:
    out: dict[str, Any] = {"records": [r["id"] for r in agent.records()]}
    rules = []
    for chain in (CHAIN_IN, CHAIN_OUT):
        proc = ipt("-S", chain, check=False)
        rules += [line for line in proc.stdout.splitlines() if line.startswith("-A")]
    out["iptables_rules"] = rules
    out["qdisc"] = f" {TC_HANDLE} " in lab_qdisc(agent)
    cg = []
    for base in [
        Path("/sys/fs/cgroup") / c / "chaoslab" / agent.host for c in ("memory", "cpu", "pids")
    ] + [Path("/sys/fs/cgroup/chaoslab") / agent.host]:
        if base.exists():
            cg += [str(p) for p in base.iterdir() if p.is_dir()]
    out["cgroups"] = cg
    out["stopped_processes"] = [
        pid for pid in _lab_program_pids(agent) if process_state(pid) == "T"
    ]
    out["processes"] = [
        int(p.name)
        for p in Path("/proc").glob("[0-9]*")
        if _is_our_process(int(p.name))
        and int(p.name) != os.getpid()
        and _same_netns(int(p.name))
        and "serve" not in _cmdline(int(p.name))
    ]
    if agent.config.get("postgresql"):
        try:
            out["pg_settings"] = agent.psql(
                "SELECT string_agg(name, ',') FROM pg_settings WHERE source = 'configuration file' "
                "AND sourcefile LIKE '%postgresql.auto.conf' "
                f"AND name IN ({', '.join(repr(s) for s in PG_SETTINGS)})"
            ).replace('"', "")
            out["pg_sessions"] = int(
                agent.psql(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'chaoslab:%'"
                )
            )
        except FaultFailed as exc:
            out["pg_error"] = str(exc)
    if agent.config.get("nginx"):
        out["jwks_override"] = bool(Path(agent.config["nginx"]["fault_conf"]).read_text().strip())
    if agent.config.get("redis"):
        facts = agent.config["redis"]
        try:
            current = _redis_memory_config(agent)
            drift = current.get("maxmemory") != str(facts["maxmemory_mb"] * 1024 * 1024) or (
                current.get("maxmemory-policy") != facts["policy"]
            )
            out["redis_config"] = current if drift else {}
        except FaultFailed as exc:
            out["redis_error"] = str(exc)
    return out


def _same_netns(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


def _lab_program_pids(agent: Agent) -> list[int]:
    pids = []
    for pidfile in (agent.root / "run").glob("*.pid"):
        try:
            pids += process_tree(int(pidfile.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def sweep_artifacts(agent: Agent) -> list[str]:
    """Remove every lab artifact by name, whether or not a record survived."""
    swept = []
    for chain, parent in ((CHAIN_IN, "INPUT"), (CHAIN_OUT, "OUTPUT")):
        if ipt("-n", "-L", chain, check=False).returncode == 0:
            ipt("-F", chain, check=False)
            while ipt("-C", parent, "-j", chain, check=False).returncode == 0:
                ipt("-D", parent, "-j", chain, check=False)
            ipt("-X", chain, check=False)
            swept.append(f"iptables chain {chain}")
    if f" {TC_HANDLE} " in lab_qdisc(agent):
        del_lab_qdisc(agent)
        swept.append(f"qdisc {TC_HANDLE} on {agent.iface}")
    for pid in _lab_program_pids(agent):
        if process_state(pid) == "T":
            _kill(pid, signal.SIGCONT)
            swept.append(f"SIGCONT {pid}")
    for pid in list_artifacts_processes():
        _kill(pid, signal.SIGKILL)
        swept.append(f"killed lab process {pid}")
    for controller in ("memory", "cpu", "pids", ""):
        base = (
            (Path("/sys/fs/cgroup") / controller / "chaoslab" / agent.host)
            if controller
            else (Path("/sys/fs/cgroup/chaoslab") / agent.host)
        )
        if not base.exists():
            continue
        root = Path("/sys/fs/cgroup") / controller if controller else Path("/sys/fs/cgroup")
        for group in [p for p in base.iterdir() if p.is_dir()]:
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (root / "cgroup.procs").write_text(pid)
            group.rmdir()
            swept.append(f"cgroup {group}")
        _rmdir_up(base, stop=root)
    if agent.config.get("postgresql"):
        try:
            for name in PG_SETTINGS:
                agent.psql(f"ALTER SYSTEM RESET {name}")
            agent.psql("SELECT pg_reload_conf()")
            n = agent.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE 'chaoslab:%'"
            )
            swept.append(f"reset PostgreSQL settings, ended {n} lab session(s)")
        except FaultFailed as exc:
            swept.append(f"PostgreSQL not reachable for sweep: {exc}")
    if agent.config.get("nginx"):
        conf = Path(agent.config["nginx"]["fault_conf"])
        if conf.read_text().strip():
            conf.write_text("")
            with contextlib.suppress(FaultFailed):
                _kill(agent.program_pid("nginx"), signal.SIGHUP)
            swept.append("JWKS response override")
    if agent.config.get("redis"):
        facts = agent.config["redis"]
        want = {
            "maxmemory": str(facts["maxmemory_mb"] * 1024 * 1024),
            "maxmemory-policy": facts["policy"],
        }
        try:
            if _redis_memory_config(agent) != want:
                _redis_restore_memory(agent, want)
                swept.append("Redis memory bound restored")
        except FaultFailed as exc:
            swept.append(f"Redis not reachable for sweep: {exc}")
    for path in agent.state_dir.glob("*.json"):
        path.unlink()
    return swept


def list_artifacts_processes() -> list[int]:
    me = os.getpid()
    return [
        int(p.name)
        for p in Path("/proc").glob("[0-9]*")
        if int(p.name) != me
        and _same_netns(int(p.name))
        and _is_our_process(int(p.name))
        and not {"serve", "heal", "artifacts", "list", "verify", "inject"}
        & set(_cmdline(int(p.name)))
    ]


# ------------------------------------------------------------ NFQUEUE worker


def nfqueue_worker(
    agent: Agent, fault_id: str, queue: int, op: str, params: dict[str, Any]
) -> None:
    import heapq as hq
    import random
    import select

    from netfilterqueue import NetfilterQueue  # type: ignore[import-not-found]

    delay = params.get("delay_ms", 0) / 1000.0
    jitter = params.get("jitter_ms", 0) / 1000.0
    probability = params.get("probability", 1.0)
    pending: list[tuple[float, int, Any]] = []
    seq = 0

    def on_packet(pkt: Any) -> None:
        nonlocal seq
        if op == "corrupt":
            if random.random() < probability:
                payload = bytearray(pkt.get_payload())
                if len(payload) > 40:
                    i = random.randrange(28, len(payload))
                    payload[i] ^= 1 << random.randrange(8)
                    pkt.set_payload(bytes(payload))
            pkt.accept()
            return
        if op == "reorder" and random.random() >= probability:
            pkt.accept()
            return
        hold = max(0.0, random.gauss(delay, jitter) if jitter else delay)
        if hold <= 0:
            pkt.accept()
            return
        seq += 1
        hq.heappush(pending, (time.monotonic() + hold, seq, pkt))

    nfq = NetfilterQueue()
    nfq.bind(queue, on_packet, max_len=65536)
    ready = agent.root / "faults" / f"nfqueue-{fault_id}.ready"
    stop = False

    def on_term(_sig: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    ready.write_text(str(os.getpid()))
    fd = nfq.get_fd()
    try:
        while not stop:
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                hq.heappop(pending)[2].accept()
            timeout = max(0.0, pending[0][0] - now) if pending else 0.2
            readable, _, _ = select.select([fd], [], [], min(timeout, 0.2))
            if readable:
                nfq.run(block=False)
    finally:
        for _, _, pkt in pending:
            pkt.accept()
        nfq.unbind()


def repeat(agent: Agent, fault_id: str, interval_ms: int, sql: str) -> None:
    while agent._load(fault_id) is not None:
        agent.psql(sql, check=False)
        time.sleep(interval_ms / 1000.0)


# ------------------------------------------------------------------- main


def handle(agent: Agent, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    handlers: dict[str, Callable[[], Any]] = {
        "inject": lambda: agent.inject(request.get("fault", {})),
        "plan": lambda: agent.plan(request.get("fault", {})),
        "verify": lambda: agent.verify(str(request.get("id"))),
        "heal": lambda: (
            agent.heal_all() if request.get("all") else agent.heal(str(request.get("id")))
        ),
        "list": lambda: agent.records(),
        "capabilities": lambda: capabilities(agent, refresh=bool(request.get("refresh"))),
        "artifacts": lambda: list_artifacts(agent),
        "ping": lambda: {"host": agent.host, "pid": os.getpid()},
    }
    if op not in handlers:
        return {"ok": False, "error": f"op: unknown operation {op!r}; known: {', '.join(handlers)}"}
    try:
        return {"ok": True, "result": handlers[op]()}
    except FaultInputError as exc:
        return {"ok": False, "error": str(exc), "input_error": True}
    except FaultFailed as exc:
        return {"ok": False, "error": str(exc)}


def main(argv: list[str]) -> int:
    config = Path(os.environ.get("CHAOSFAULT_CONFIG", ""))
    if len(argv) >= 2 and argv[0] == "--config":
        config, argv = Path(argv[1]), argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    agent = Agent(config)
    cmd, args = argv[0], argv[1:]
    if cmd == "watchdog":
        agent.watchdog(args[0], float(args[1]))
        return 0
    if cmd == "nfqueue":
        nfqueue_worker(agent, args[0], int(args[1]), args[2], json.loads(args[3]))
        return 0
    if cmd == "fill":
        fill(agent, args[0], int(args[1]), float(args[2]))
        return 0
    if cmd == "repeat":
        repeat(agent, args[0], int(args[1]), args[2])
        return 0
    if cmd == "serve":
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except json.JSONDecodeError as exc:
                answer = {"ok": False, "error": f"request is not JSON: {exc}", "input_error": True}
            else:
                answer = handle(agent, request)
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
        return 0
    requests = {
        "inject": lambda: {"op": "inject", "fault": json.loads(args[0]) if args else {}},
        "plan": lambda: {"op": "plan", "fault": json.loads(args[0]) if args else {}},
        "verify": lambda: {"op": "verify", "id": args[0]},
        "heal": lambda: (
            {"op": "heal", "all": True} if args == ["--all"] else {"op": "heal", "id": args[0]}
        ),
        "list": lambda: {"op": "list"},
        "capabilities": lambda: {"op": "capabilities", "refresh": args == ["--refresh"]},
        "artifacts": lambda: {"op": "artifacts"},
    }
    if cmd not in requests:
        print(f"chaosfault: unknown command {cmd!r}", file=sys.stderr)
        return 2
    try:
        answer = handle(agent, requests[cmd]())
    except (IndexError, json.JSONDecodeError) as exc:
        answer = {"ok": False, "error": f"{cmd}: bad arguments ({exc})", "input_error": True}
    print(json.dumps(answer, indent=2, sort_keys=True))
    if answer["ok"]:
        return 0
    return 2 if answer.get("input_error") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
