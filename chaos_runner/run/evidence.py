"""The evidence bundle of one attempt (runs/<id>/evidence/<scenario>-<n>/): what the hosts
and PostgreSQL looked like around the fault, collected over the same SSH the fault agent
uses, so an operator can check the verdict against the raw material.

- `state-before-inject-<host>.txt`, `state-after-heal-<host>.txt`: iptables rules, tc
  qdiscs and filters, the chaoslab cgroups and the agent's recorded faults of each host a
  fault targets;
- `pg-activity-at-fault.json`, `pg-activity-after-heal.json`: pg_stat_activity and
  pg_locks of the app database once the first faults hold (the bite comes within
  milliseconds of that) and after the heal - or why they could not be read;
- `log-<host>-<program>.txt`: what PostgreSQL and FraiseQL logged from the load's start to
  the end of the attempt (at most 512 KB each, the end kept);
- `faults.json`: every fault with its parameters, mechanism, verify evidence and the
  exact commands the agent ran to inject and to heal it;
- `versions.txt`: FraiseQL, PostgreSQL, and each involved host's kernel and packages.

Collection never decides a verdict and never stops an attempt: a piece that cannot be
read is written as the reason it could not.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import threading
from pathlib import Path, PurePosixPath
from typing import Any

import psycopg

from chaos_runner.analysis.ledger import LedgerStore
from chaos_runner.errors import ChaosRunnerError, LabNotReady
from chaos_runner.target.lab import LabState, on_host

log = logging.getLogger(__name__)

MAX_LOG_BYTES = 512 * 1024
STATE_SCRIPT = """
echo '# iptables -S (filter)'; iptables -S 2>&1
echo; echo '# iptables-save (every table in use)'; iptables-save 2>&1
echo; echo '# tc qdisc'; tc -s qdisc show 2>&1
echo; echo '# tc filter'
for d in $(ls /sys/class/net); do tc filter show dev "$d" 2>/dev/null; done
echo; echo '# chaoslab cgroups'; find /sys/fs/cgroup -maxdepth 3 -name 'chaos*' 2>/dev/null
echo; echo '# recorded faults'; ls -1 {state} 2>/dev/null; cat {state}/*.json 2>/dev/null
"""
PACKAGES = ("postgresql-15", "postgresql-17", "haproxy", "nginx-light", "redis-server",
            "prometheus", "prometheus-alertmanager")  # fmt: skip
ACTIVITY_SQL = (
    "SELECT json_build_object("
    "'activity', (SELECT coalesce(json_agg(a), '[]') FROM (SELECT pid, usename,"
    " application_name, client_addr, state, wait_event_type, wait_event,"
    " now() - query_start AS running_for, left(query, 300) AS query FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()) a),"
    "'locks', (SELECT coalesce(json_agg(l), '[]') FROM (SELECT locktype, relation::regclass::text"
    " AS relation, mode, granted, pid FROM pg_locks WHERE pid <> pg_backend_pid()) l))"
)


def host_root(record: dict[str, Any]) -> PurePosixPath:
    """The host's chaoslab root (common_root): the agent's config sits in <root>/faults/."""
    return PurePosixPath(str(record.get("agent_config", ""))).parent.parent


class EvidenceBundle:
    def __init__(
        self, state: LabState, store: LedgerStore, directory: Path, hosts: list[str],
        logs: list[tuple[str, str]],
    ) -> None:  # fmt: skip
        self.state = state
        self.store = store
        self.dir = directory
        self.hosts = hosts  # the hosts the faults target
        self.logs = logs  # (host, program) whose log is excerpted
        self._offsets: dict[tuple[str, str], int] = {}
        self._threads: list[threading.Thread] = []
        directory.mkdir(parents=True, exist_ok=True)

    # -------------------------------------------------------------- phases
    def at_load_start(self) -> None:
        for host, program in self.logs:
            try:
                size = self._sh(host, f"stat -c %s {shlex.quote(self._log(host, program))}")
                self._offsets[(host, program)] = int(size.strip() or 0)
            except (ChaosRunnerError, ValueError, OSError) as exc:
                log.warning("evidence: no log offset for %s %s: %s", host, program, exc)

    # Collection must not perturb what is measured (an SSH burst on two cores slows the
    # load's requests): the hosts' state is read before the load starts (nothing is
    # injected between then and the inject) and after the load has stopped (the heal is
    # long done); only one PostgreSQL query runs while the fault holds.
    def before_inject(self) -> None:
        self._states("before-inject")

    def at_fault(self) -> None:
        self._background("pg-at-fault", self._activity, "pg-activity-at-fault.json")

    def after_heal(self) -> None:
        self._background("state-after-heal", self._states, "after-heal")
        self._background("pg-after-heal", self._activity, "pg-activity-after-heal.json")

    def finish(self, faults: list[dict[str, Any]], app: dict[str, Any]) -> list[str]:
        """Logs, faults and versions; every file of the bundle, relative to its run."""
        for t in self._threads:
            t.join(30)
        for host, program in self.logs:
            self._excerpt(host, program)
        (self.dir / "faults.json").write_text(json.dumps(faults, indent=1, default=str))
        self._versions(app)
        run_dir = self.dir.parent.parent
        return sorted(str(p.relative_to(run_dir)) for p in self.dir.iterdir() if p.is_file())

    # -------------------------------------------------------------- pieces
    def _background(self, name: str, work: Any, arg: str) -> None:
        def guarded() -> None:
            try:
                work(arg)
            except Exception as exc:  # evidence never stops an attempt
                (self.dir / f"{name}.error.txt").write_text(f"{exc!r}\n")

        t = threading.Thread(target=guarded, name=f"evidence-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _sh(self, host: str, script: str, timeout: float = 20) -> str:
        """The script's output on `host`, or why there is none (a slow or lost host must
        not end the attempt: evidence never decides anything)."""
        try:
            proc = on_host(self.state, host, "sh", "-c", script, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return f"# no answer from {host} within {timeout:g} s\n"
        except (subprocess.SubprocessError, OSError, ChaosRunnerError, KeyError) as exc:
            return f"# could not run on {host}: {exc!r}\n"
        return proc.stdout + (f"\n# stderr\n{proc.stderr}" if proc.stderr.strip() else "")

    def _log(self, host: str, program: str) -> str:
        return str(host_root(self.state.hosts[host]) / "log" / f"{program}.log")

    def _states(self, when: str) -> None:
        for host in self.hosts:
            state = host_root(self.state.hosts[host]) / "faults" / "state"
            text = self._sh(host, STATE_SCRIPT.format(state=shlex.quote(str(state))))
            (self.dir / f"state-{when}-{host}.txt").write_text(text)

    def _activity(self, name: str) -> None:
        try:
            with self.store.connect(timeout_s=3) as conn:
                conn.execute("SET statement_timeout = '3s'")
                row = conn.execute(ACTIVITY_SQL).fetchone()
            body: Any = row[0] if row else None
        except (psycopg.Error, LabNotReady) as exc:
            body = {"error": f"PostgreSQL could not be read: {str(exc).strip()[:300]}"}
        (self.dir / name).write_text(json.dumps(body, indent=1, default=str))

    def _excerpt(self, host: str, program: str) -> None:
        path = self._log(host, program)
        start = self._offsets.get((host, program))
        out = self.dir / f"log-{host}-{program}.txt"
        if start is None:
            out.write_text(f"# no offset was read at the load's start: {path} not excerpted\n")
            return
        script = f"tail -c +{start + 1} {shlex.quote(path)} 2>&1 | tail -c {MAX_LOG_BYTES}"
        try:
            text = self._sh(host, script, timeout=30)
        except (ChaosRunnerError, OSError) as exc:
            text = f"# could not read {path}: {exc}\n"
        out.write_text(f"# {host}:{path} from byte {start} (the load's start)\n{text}")

    def _versions(self, app: dict[str, Any]) -> None:
        lines = [f"FraiseQL {app.get('version')} (Python {app.get('python')}) on {app.get('host')}"]
        try:
            with self.store.connect(timeout_s=3) as conn:
                row = conn.execute("SELECT version()").fetchone()
            lines.append(str(row[0]) if row else "PostgreSQL: no version")
        except (psycopg.Error, LabNotReady) as exc:
            lines.append(f"PostgreSQL: not read ({str(exc).strip()[:200]})")
        pkgs = " ".join(PACKAGES)
        for host in sorted({*self.hosts, *(h for h, _ in self.logs)}):
            text = self._sh(
                host,
                f"echo \"kernel $(uname -r)\"; dpkg-query -W -f '${{Package}} ${{Version}}\\n'"
                f" {pkgs} 2>/dev/null",
            )
            lines.append(f"\n[{host}]\n{text.strip()}")
        (self.dir / "versions.txt").write_text("\n".join(lines) + "\n")
