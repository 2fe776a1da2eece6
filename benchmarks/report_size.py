#!/usr/bin/env python3
"""The HTML report of a large run: its size, how long it takes to build, and how long a
real headless browser (Debian's Chromium) takes to load and draw it.

Run (no lab; needs chromium and chromium-driver, which scripts/setup.sh installs):
    .venv/bin/python benchmarks/report_size.py [--variants 150] [--ops 900] [--keep DIR]

A synthetic run: --variants scenarios, one attempt each, each with a history of --ops
operations (a mixed load at 20/s for 45 s with a 15 s fault in the middle: failures, slow
answers, /health probes) and its windows, checks and one fault. Prints the report's size
(the page and the Plotly bundle beside it), the build time and the browser's load time
until every figure is drawn, against the targets of issue 12 (< 20 MB, < 3 s).

One run; machines are noisy, so nothing is asserted on timing: it exits non-zero only
when it could not run or a figure did not render.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaos_runner.reports.browser import open_report
from chaos_runner.reports.html import build_html
from chaos_runner.results.records import read_journal

S = 1_000_000_000


def synthetic_run(where: Path, variants: int, ops: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    (where / "history").mkdir(parents=True)
    scenarios = []
    t0 = 1000 * S
    span_s = ops / 20
    fault = (span_s / 3, 2 * span_s / 3)
    for v in range(variants):
        sid = f"net.synthetic-{v}"
        lines = []
        for i in range(ops):
            at = i / 20
            hurt = fault[0] <= at < fault[1]
            outcome = "fail" if hurt and rng.random() < 0.3 else "ok"
            ms = rng.lognormvariate(2.3, 0.4) * (40 if hurt else 1)
            kind = "health" if i % 10 == 0 else rng.choice(["query", "nested", "mutation"])
            start = t0 + int(at * S)
            lines.append(json.dumps({
                "index": i, "kind": kind, "start_ns": start, "end_ns": start + int(ms * 1e6),
                "outcome": outcome, "status": 200, "token": "valid",
                "error": "Internal server error" if outcome == "fail" else None,
            }))  # fmt: skip
        name = f"history/{sid}-1.jsonl"
        (where / name).write_text("\n".join(lines) + "\n")
        windows = [{"start_ns": t0 + w * S // 4, "end_ns": t0 + (w + 1) * S // 4,
                    "p50_ms": 10.0, "p95_ms": 30.0, "p99_ms": 60.0, "throughput": 20.0,
                    "error_rate": 0.0} for w in range(int(span_s * 4))]  # fmt: skip
        scenarios.append({
            "scenario": sid, "outcome": "passed" if v % 3 else "deviated", "chosen_attempt": 1,
            "attempts": [{
                "scenario": sid, "attempt": 1, "outcome": "passed" if v % 3 else "deviated",
                "timeline": [{"ns": t0, "event": "load-start"},
                             {"ns": t0 + int(fault[0] * S), "event": "inject-start"},
                             {"ns": t0 + int(fault[1] * S), "event": "heal-end"}],
                "faults": [{"id": f"f{v}", "kind": "net.delay", "host": "db1", "target": "@db",
                            "mechanism": "tbf", "inject_ns": t0 + int(fault[0] * S),
                            "healed_ns": t0 + int(fault[1] * S)}],
                "slo": {"p95_ms": 100.0}, "windows": windows, "history_file": name,
                "checks": [{"name": "p95 during fault (ms)", "ok": bool(v % 3),
                            "measured": 420.0, "expected": "<= 90"}],
                "metrics": {"bite_s": 0.2, "recovery_s": 1.5, "fault_p95_ms": 420.0},
            }],
        })  # fmt: skip
    journal = {"run_id": "run-synthetic", "schema_version": 2, "scenarios": scenarios,
               "environment": {"kind": "synthetic"}, "exit_code": 1}  # fmt: skip
    (where / "journal.json").write_text(json.dumps(journal))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", type=int, default=150)
    p.add_argument("--ops", type=int, default=900)
    p.add_argument("--keep", type=Path, help="build the run here and keep it")
    args = p.parse_args()
    where = args.keep or Path(tempfile.mkdtemp(prefix="chaoslab-report-"))
    try:
        synthetic_run(where, args.variants, args.ops)
        started = time.monotonic()
        page = build_html(where, read_journal(where))
        built = time.monotonic() - started
        page_mb = page.stat().st_size / 1e6
        bundle_mb = (where / "plotly.min.js").stat().st_size / 1e6
        rendered = open_report(page)
        drawn = sum(1 for f in rendered.figures if f["drawn"])
        print(f"variants {args.variants}, {args.ops} operations each")
        print(f"report.html {page_mb:.1f} MB + plotly.min.js {bundle_mb:.1f} MB"
              f" = {page_mb + bundle_mb:.1f} MB (target < 20 MB)")  # fmt: skip
        print(f"built in {built:.1f} s")
        print(f"browser: loaded with the first view drawn in {rendered.load_s:.2f} s"
              f" (target < 3 s); all {drawn}/{len(rendered.figures)} figures drawn, scrolling"
              f" through, after {rendered.all_drawn_s:.1f} s; console errors:"
              f" {len(rendered.errors)}")  # fmt: skip
        return 0 if drawn == len(rendered.figures) == args.variants else 1
    finally:
        if args.keep is None:
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
