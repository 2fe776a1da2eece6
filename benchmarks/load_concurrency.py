#!/usr/bin/env python3
"""The load driver holding 1000 requests in flight at once, against a loopback stub.

Run (no lab, no root):  .venv/bin/python benchmarks/load_concurrency.py
                        [--concurrency 1000] [--hold-s 2] [--duration-s 10]

A GraphQL stub on 127.0.0.1 (an ephemeral port; asyncio, HTTP/1.1 keep-alive; a child
process of this one, ended by its pid) holds every POST /graphql for --hold-s before it
answers `{"data": {"posts": [...]}}`, so requests pile up: by Little's law N requests in
flight complete N / hold requests/s. It runs in its own process so that it does not share
the driver's interpreter lock: what is measured is the driver's own timing. Cases:
- closed loop, --concurrency workers;
- open loop at concurrency / hold requests/s (max_in_flight 2 x concurrency), where the send lag
  (sent - due, per operation) is the driver's own scheduling overhead under that load.

Prints per case: in flight (max and time-weighted mean from the history's start/end
times over the steady part: from hold_s after the start to the end of the arrivals), the
most requests the stub held at once and the connections it saw opened, operations
completed and failed (with the first error), throughput against the Little's-law
expectation, the send lag, the client's peak RSS (VmHWM, reset before each case) and the
open-file limit (soft raised to hard in both processes). The send lag is sent - due: in
the open loop, the driver's own scheduling overhead; in the closed loop a worker's due
time is when it takes its next operation, so the lag is ~0 except for each worker's first,
which opens its connection (the ramp: all of them at once).

One run; machines are noisy, so nothing is asserted on timing: it exits non-zero only
when it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from chaos_runner.analysis.history import Operation
from chaos_runner.analysis.metrics import percentile
from chaos_runner.errors import LoadError
from chaos_runner.target.netguard import NetworkGuard
from chaos_runner.workload.load import (
    GraphQLLoad,
    LoadSettings,
    raise_open_files_limit,
    static_policy,
)

# The closed loop opens all its connections at once: a short accept queue (asyncio's
# default is 100) drops SYNs, and the client retries a second later (the kernel's initial
# RTO), which would be the stub's stall, not the driver's. The kernel caps it at somaxconn.
BACKLOG = 4096
# The shape the driver's `query` operation asks for (operations.POSTS): `ok` needs HTTP
# 200, `data` and no `errors`.
ANSWER = json.dumps(
    {"data": {"posts": [{"id": "1", "title": "held", "tags": [], "published": True}]}}
).encode()


# ---------------------------------------------------------------- the stub (child process)
class Stub:
    """Held requests and the driver's connections: now, at most and accepted since the
    last /stats."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.held = self.max_held = 0
        self.conns = self.max_conns = self.accepted = 0

    def stats(self) -> bytes:
        body = {"max_held": self.max_held, "max_conns": self.max_conns, "accepted": self.accepted}
        self.max_held, self.max_conns, self.accepted = self.held, self.conns, 0
        return json.dumps(body).encode()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Counted from its first GraphQL request: the /stats calls are not the driver's.
        counted = False
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                if method == "POST" and path == "/graphql":
                    if not counted:
                        counted = True
                        self.accepted += 1
                        self.conns += 1
                        self.max_conns = max(self.max_conns, self.conns)
                    self.held += 1
                    self.max_held = max(self.max_held, self.held)
                    try:
                        await asyncio.sleep(self.hold_s)
                    finally:
                        self.held -= 1
                    status, body = "200 OK", ANSWER
                elif method == "GET" and path == "/stats":
                    status, body = "200 OK", self.stats()
                else:
                    status, body = "404 Not Found", b'{"detail": "not found"}'
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)
                await writer.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError):
            return
        finally:
            self.conns -= counted
            writer.close()


async def serve(hold_s: float) -> None:
    stub = Stub(hold_s)
    server = await asyncio.start_server(stub.connection, "127.0.0.1", 0, backlog=BACKLOG)
    port = server.sockets[0].getsockname()[1]
    print(port, raise_open_files_limit(), flush=True)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- the client (this process)
@dataclass
class Case:
    name: str
    load: str
    expected_rate: float
    ops: list[Operation]
    window_ns: tuple[int, int]
    stub: dict[str, int]
    peak_rss_kib: int


def start_stub(hold_s: float) -> tuple[subprocess.Popen[str], str, int]:
    """The stub in a child process; (process, its URL, its open-file limit)."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", "--hold-s", str(hold_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    if len(first) != 2:
        stop_stub(proc)
        sys.exit(f"the loopback stub did not start (exit {proc.returncode})")
    return proc, f"http://127.0.0.1:{first[0]}", int(first[1])


def stop_stub(proc: subprocess.Popen[str]) -> None:
    """End the stub we started, by its pid."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stub_stats(url: str) -> dict[str, int]:
    """The stub's maxima since the previous call (and reset them)."""
    with urllib.request.urlopen(f"{url}/stats", timeout=5) as resp:
        stats: dict[str, int] = json.load(resp)
    return stats


def peak_rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) if match else 0


def reset_peak_rss() -> None:
    # "5" resets VmHWM to the current RSS (Linux >= 4.0), so each case shows its own peak.
    Path("/proc/self/clear_refs").write_text("5")


def run_case(
    name: str, load: str, expected_rate: float, url: str, hold_s: float, **kw: Any
) -> Case:
    settings = LoadSettings(
        url=url,
        mix=(("query", 1.0),),
        max_ops=100_000_000,
        timeout_s=hold_s + 10,
        **kw,
    )
    # The real guard: loopback passes before any route lookup (netguard.py), so no stub.
    driver = GraphQLLoad(settings, NetworkGuard(), static_policy("Bearer bench"))
    stub_stats(url)
    reset_peak_rss()
    print(f"{name}: {load} for {settings.max_duration_s:g} s ...", file=sys.stderr)
    driver.start()
    driver.wait()
    ops = list(driver.history())
    if not ops:
        sys.exit(f"{name}: the driver recorded no operation")
    # Steady: past the ramp (the first answers come after hold_s) to the end of arrivals.
    begin = driver.started_ns + int(hold_s * 1e9)
    end = driver.started_ns + int(settings.max_duration_s * 1e9)
    if end <= begin:
        begin, end = min(o.start_ns for o in ops), max(o.end_ns for o in ops)
    return Case(name, load, expected_rate, ops, (begin, end), stub_stats(url), peak_rss_kib())


def in_flight(ops: list[Operation], begin: int, end: int) -> tuple[int, float]:
    """Max and time-weighted mean of the operations open (start..end) within [begin, end)."""
    # At equal times an end sorts before a start: a connection reused at once is one.
    events = sorted([(o.start_ns, 1) for o in ops] + [(o.end_ns, -1) for o in ops])
    count = sum(step for at, step in events if at <= begin)
    peak, area, last = count, 0, begin
    for at, step in events:
        if at <= begin:
            continue
        if at >= end:
            break
        area += count * (at - last)
        last = at
        count += step
        peak = max(peak, count)
    area += count * (end - last)
    return peak, area / (end - begin)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}"


def report(cases: list[Case], nofile: int, stub_nofile: int) -> None:
    rows = []
    details = []
    for case in cases:
        begin, end = case.window_ns
        peak, mean = in_flight(case.ops, begin, end)
        ok = [o for o in case.ops if o.outcome == "ok"]
        failed = [o for o in case.ops if o.outcome != "ok"]
        rate = sum(1 for o in ok if begin <= o.end_ns < end) / ((end - begin) / 1e9)
        lags = [o.sent_ns - o.start_ns for o in case.ops if o.sent_ns is not None]
        lag = "/".join(ms(percentile(lags, p)) for p in (50, 95, 99, 100))
        rows.append(
            [
                case.name,
                case.load,
                f"{peak} / {mean:.0f}",
                f"{case.stub['max_held']} / {case.stub['accepted']}",
                len(ok),
                len(failed),
                f"{rate:.0f} ({case.expected_rate:.0f})",
                lag,
                f"{case.peak_rss_kib / 1024:.0f}",
                nofile,
            ]
        )
        first = failed[0].error if failed else "none"
        details.append(
            f"{case.name}: steady window {(end - begin) / 1e9:.1f} s, in flight mean "
            f"{mean:.1f}; the stub held at most {case.stub['max_held']} on "
            f"{case.stub['max_conns']} open connections ({case.stub['accepted']} opened); "
            f"first failure: {first}"
        )
    print(
        tabulate(
            rows,
            headers=[
                "case",
                "load",
                "in flight max/mean",
                "stub held/opened",
                "ok",
                "failed",
                "req/s (expected)",
                "send lag p50/p95/p99/max ms",
                "RSS MiB",
                "nofile",
            ],
        )
    )
    print()
    for line in details:
        print(line)
    print(f"open-file limit: client {nofile}, stub {stub_nofile} (soft raised to hard)")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--hold-s", type=float, default=2.0, help="the stub's answer delay")
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.hold_s))
        return 0
    nofile = raise_open_files_limit()
    proc, url, stub_nofile = start_stub(args.hold_s)
    rate = args.concurrency / args.hold_s
    try:
        cases = [
            run_case(
                "closed",
                f"{args.concurrency} workers",
                rate,
                url,
                args.hold_s,
                mode="closed",
                concurrency=args.concurrency,
                max_in_flight=args.concurrency,
                max_duration_s=args.duration_s,
            ),
            run_case(
                "open",
                f"{rate:.0f}/s offered",
                rate,
                url,
                args.hold_s,
                mode="open",
                rate=rate,
                max_in_flight=2 * args.concurrency,
                max_duration_s=args.duration_s,
            ),
        ]
    except (LoadError, OSError) as exc:
        sys.exit(f"the benchmark could not run: {exc}")
    finally:
        stop_stub(proc)
    report(cases, nofile, stub_nofile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
