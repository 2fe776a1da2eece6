#!/usr/bin/env python3
"""Fault onset and heal latency, from the runner's call to the effect being observable at
the peer, median and p95 over N runs per fault family (fast path: paramiko + agent).

Run as root with the lab up:  .venv/bin/python benchmarks/fault_latency.py [-n 10]
Target: median <= 0.5 s for onset and heal.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import psycopg
from tabulate import tabulate

from chaos_runner.faults.channel import FaultClient, FaultSpec
from chaos_runner.target.lab import LabSettings, LabState

Probe = Callable[[], bool]  # True when the fault's effect is observable


def until(probe: Probe, want: bool, timeout_s: float = 10.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe() == want:
            return time.monotonic()
        time.sleep(0.001)
    raise TimeoutError("effect not observed")


def refused(address: str, port: int) -> Probe:
    def probe() -> bool:
        try:
            socket.create_connection((address, port), timeout=0.2).close()
            return False
        except ConnectionRefusedError:
            return True
        except OSError:
            return False

    return probe


def http_status(url: str, ctx: ssl.SSLContext, bad: int) -> Probe:
    def probe() -> bool:
        try:
            return urllib.request.urlopen(url, context=ctx, timeout=0.2).status == bad
        except urllib.error.HTTPError as exc:
            return exc.code == bad
        except (OSError, urllib.error.URLError):
            return bad == 0  # 0 = "no answer" is the effect

    return probe


def statement_cancelled(address: str, password: str) -> Probe:
    conn = psycopg.connect(
        host=address,
        dbname="fraiseql_demo",
        user="chaos_admin",
        password=password,
        autocommit=True,
    )

    def probe() -> bool:
        try:
            conn.execute("SELECT pg_sleep(0.02)")
            return False
        except psycopg.errors.QueryCanceled:
            return True

    return probe


def redis_refuses_writes(address: str) -> Probe:
    def probe() -> bool:
        out = subprocess.run(
            ["redis-cli", "-h", address, "-p", "6379", "SET", "chaoslab:bench", "1"],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        ).stdout
        return "OOM" in out

    return probe


def measure(
    client: FaultClient, spec: FaultSpec, probe: Probe, runs: int
) -> tuple[list[float], list[float], str]:
    onset, heal, mechanism = [], [], ""
    for i in range(runs):
        start = time.monotonic()
        result = client.inject(
            FaultSpec(spec.host, spec.kind, spec.params, spec.ttl_s, id=f"bench-{i}")
        )
        mechanism = result["mechanism"]
        onset.append(until(probe, True) - start)
        start = time.monotonic()
        client.heal(spec.host, f"bench-{i}")
        heal.append(until(probe, False) - start)
    return onset, heal, mechanism


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--runs", type=int, default=10)
    args = parser.parse_args()
    state = LabState.load(LabSettings.from_env())
    db = state.guard.check(state.hosts["db1"]["address"])
    auth = state.guard.check(state.hosts["auth1"]["address"])
    ctx = ssl.create_default_context(cafile=str(state.settings.state_dir / "pki" / "ca.crt"))
    jwks = f"https://{auth}/.well-known/jwks.json"
    cases = [
        ("network", FaultSpec("db1", "net.reset", {"port": 5432}, 30), refused(db, 5432)),
        (
            "process",
            FaultSpec("auth1", "proc.pause", {"program": "nginx"}, 30),
            http_status(jwks, ctx, 0),
        ),
        (
            "postgresql",
            FaultSpec("db1", "pg.setting", {"name": "statement_timeout", "value": "5ms"}, 30),
            statement_cancelled(db, state.settings.secret("postgresql_chaos_password")),
        ),
        (
            "jwks",
            FaultSpec("auth1", "jwks.response", {"status": 500}, 30),
            http_status(jwks, ctx, 500),
        ),
        (
            "cache",
            FaultSpec("cache1", "cache.write_fail", {"maxmemory_kb": 1}, 30),
            redis_refuses_writes(state.guard.check(state.hosts["cache1"]["address"])),
        ),
    ]
    # Resource faults (cgroup limits) are not in this table: their effect is a rate (CPU
    # share, allocations failing), which takes about a second to observe at all; the
    # integration tests measure those effects instead.
    rows = []
    with FaultClient(state) as client:
        client.heal_all()
        for family, spec, probe in cases:
            onset, heal, mechanism = measure(client, spec, probe, args.runs)
            rows.append(
                (
                    family,
                    spec.kind,
                    mechanism,
                    len(onset),
                    f"{statistics.median(onset) * 1000:.1f}",
                    f"{p95(onset) * 1000:.1f}",
                    f"{statistics.median(heal) * 1000:.1f}",
                    f"{p95(heal) * 1000:.1f}",
                    "met"
                    if max(statistics.median(onset), statistics.median(heal)) <= 0.5
                    else "NOT met",
                )
            )
        client.heal_all()
    print(
        tabulate(
            rows,
            headers=[
                "family",
                "fault",
                "mechanism",
                "runs",
                "onset median ms",
                "onset p95 ms",
                "heal median ms",
                "heal p95 ms",
                "target 0.5 s",
            ],
        )
    )


if __name__ == "__main__":
    main()
