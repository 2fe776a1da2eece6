#!/usr/bin/env python3
"""The load driver against wrk on the same static endpoint of a lab host, and the smoke
suite's wall time. Ratios come from one run (these machines are noisy).

Run as root with the lab up:  .venv/bin/python benchmarks/load_driver.py [--seconds 8]

A throwaway nginx (its own config, pidfile and port) serves a small static file inside
auth1's guest; it is ended by its pid there at the end. Compared:
- closed loop, same connection count: requests/s and median latency, driver vs wrk;
- open loop at a fixed rate: achieved rate and schedule lag (send time - due time), the
  driver's own timing overhead;
- `chaoslab run smoke`: wall time against the 3-minute budget.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tabulate import tabulate

from chaos_runner.analysis.metrics import percentile
from chaos_runner.target.lab import LabSettings, LabState, on_host, start_on_host
from chaos_runner.workload.load import GraphQLLoad, LoadSettings, static_policy

PORT = 8089
HOST = "auth1"
REPO = Path(__file__).resolve().parent.parent


# In auth1's guest: a directory of the benchmark's own, removed at the end.
BENCH_DIR = "/var/tmp/chaoslab-bench"


def start_nginx(lab: LabState) -> int:
    """A throwaway nginx in auth1's guest (written there over SSH); its pid in the guest."""
    address = lab.guard.check(lab.hosts[HOST]["address"])
    root = BENCH_DIR
    conf = f"""daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp;
  fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  server {{ listen {address}:{PORT}; root {root}/www; }}
}}
"""
    page = '{"ok": true, "pad": "' + "x" * 200 + '"}'
    script = (
        f"set -e; rm -rf {root}; mkdir -p {root}/www {root}/tmp; chmod 755 {root} {root}/www; "
        f"printf '%s\\n' {shlex.quote(page)} > {root}/www/ping.json; "
        f"printf '%s' {shlex.quote(conf)} > {root}/nginx.conf"
    )
    on_host(lab, HOST, "sh", "-c", script)
    pid = start_on_host(lab, HOST, "nginx", "-c", f"{root}/nginx.conf")
    deadline = time.monotonic() + 10
    while on_host(lab, HOST, "test", "-s", f"{root}/nginx.pid", check=False).returncode != 0:
        if time.monotonic() > deadline:
            log = on_host(lab, HOST, "cat", f"{root}/error.log", check=False).stdout
            raise SystemExit(f"nginx did not start in {HOST}: {log}")
        time.sleep(0.1)
    return pid


def stop_nginx(lab: LabState, pid: int) -> None:
    """Graceful stop of the nginx we started (by its pid in the guest), then its directory."""
    on_host(lab, HOST, "sh", "-c", f"kill -QUIT {pid}; sleep 0.5; rm -rf {BENCH_DIR}", check=False)


def wrk(url: str, connections: int, seconds: int) -> tuple[float, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw error answers, the comparison would be meaningless:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    assert p50, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    return rate, float(p50.group(1)) * scale


def driver(lab: LabState, url: str, **kw: object) -> tuple[float, float, float, float, int]:
    settings = LoadSettings(
        url=url, mix=(("get", 1.0),), path="/ping.json", max_ops=10_000_000, timeout_s=5, **kw
    )  # type: ignore[arg-type]
    load = GraphQLLoad(settings, lab.guard, static_policy(None, "none"))
    load.start()
    load.wait()
    ops = list(load.history())
    ok = [o for o in ops if o.outcome == "ok"]
    span = (max(o.end_ns for o in ops) - min(o.start_ns for o in ops)) / 1e9
    lags = [(o.sent_ns or o.start_ns) - o.start_ns for o in ops]
    return (
        len(ok) / span,
        (percentile([o.latency_ns for o in ok], 50) or 0) / 1e6,
        (percentile(lags, 50) or 0) / 1e6,
        (percentile(lags, 99) or 0) / 1e6,
        len(ops) - len(ok),
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--no-smoke", action="store_true", help="skip the smoke suite timing")
    args = parser.parse_args()
    lab = LabState.load(LabSettings.from_env())
    url = f"http://{lab.hosts[HOST]['address']}:{PORT}/ping.json"
    nginx = start_nginx(lab)
    try:
        w_rate, w_p50 = wrk(url, args.connections, args.seconds)
        d_rate, d_p50, _, _, d_fail = driver(
            lab,
            url,
            mode="closed",
            concurrency=args.connections,
            max_duration_s=float(args.seconds),
        )
        o_rate, o_p50, lag50, lag99, o_fail = driver(
            lab,
            url,
            mode="open",
            rate=args.rate,
            max_duration_s=float(args.seconds),
        )
    finally:
        stop_nginx(lab, nginx)
    print(
        tabulate(
            [
                [
                    "wrk (closed, -t1)",
                    f"{args.connections} conns",
                    f"{w_rate:.0f}",
                    f"{w_p50:.2f}",
                    "-",
                    "-",
                ],
                [
                    "driver (closed)",
                    f"{args.connections} conns",
                    f"{d_rate:.0f}",
                    f"{d_p50:.2f}",
                    "-",
                    d_fail,
                ],
                [
                    "driver (open)",
                    f"{args.rate:.0f}/s offered",
                    f"{o_rate:.0f}",
                    f"{o_p50:.2f}",
                    f"{lag50:.3f} / {lag99:.3f}",
                    o_fail,
                ],
            ],
            headers=["client", "load", "req/s", "p50 ms", "send lag p50/p99 ms", "failed"],
        )
    )
    print(f"\ndriver/wrk throughput ratio (closed loop, same connections): {d_rate / w_rate:.2f}")
    print(f"open loop achieved/offered: {o_rate / args.rate:.3f}")
    if not args.no_smoke:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "chaos_runner.cli", "run", "smoke"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.monotonic() - started
        print(proc.stdout.strip())
        print(
            f"\nsmoke suite wall time: {wall:.1f} s (budget 180 s, ratio {wall / 180:.2f}); "
            f"exit {proc.returncode}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
