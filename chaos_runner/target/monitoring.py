"""The monitoring host as the runner sees it: where Prometheus and Alertmanager answer, and
where their alerts are to be delivered (the runner's webhook receiver).

The monitoring role records each monitoring host on the controller
(`<state>/monitoring/<host>.json`); a lab without one has no monitors, and what needs
alerts is skipped there.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chaos_runner.errors import ChaosRunnerError, LabNotReady
from chaos_runner.target.netguard import NetworkGuard

TARGETS_SETTLE_S = 12.0
MONITOR_RECORD_KEYS = ("host", "prometheus", "alertmanager", "webhook_address", "webhook_port")


@dataclass(frozen=True)
class Monitor:
    host: str
    prometheus: str
    alertmanager: str
    # Where Alertmanager sends its notifications: the controller's address as the
    # monitoring host sees it, and the receiver's port.
    webhook_address: str
    webhook_port: int


def load_monitors(state_dir: Path, hosts: set[str]) -> dict[str, Monitor]:
    """The monitoring hosts the monitoring role recorded, of the inventory's hosts."""
    monitors: dict[str, Monitor] = {}
    for path in sorted((state_dir / "monitoring").glob("*.json")):
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LabNotReady(f"{path}: unreadable ({exc}); converge again (lab up)") from None
        missing = [k for k in MONITOR_RECORD_KEYS if k not in raw]
        if missing:
            raise LabNotReady(f"{path}: lacks {', '.join(missing)}; converge again (lab up)")
        if raw["host"] not in hosts:
            continue  # a host of another inventory converged with the same state directory
        monitors[raw["host"]] = Monitor(
            host=str(raw["host"]),
            prometheus=str(raw["prometheus"]),
            alertmanager=str(raw["alertmanager"]),
            webhook_address=str(raw["webhook_address"]),
            webhook_port=int(raw["webhook_port"]),
        )
    return monitors


def get(guard: NetworkGuard, url: str, timeout: float = 3.0) -> tuple[int, str]:
    """GET `url` on a lab host (its address checked by the guard first): status and body."""
    guard.check(urlsplit(url).hostname or "")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read(1 << 20).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode(errors="replace")


def targets(guard: NetworkGuard, monitor: Monitor) -> list[dict[str, Any]]:
    """Prometheus's active targets: [{job, host, instance, health, error}]."""
    status, body = get(guard, monitor.prometheus + "/api/v1/targets?state=active")
    if status != 200:
        raise LabNotReady(f"Prometheus on {monitor.host}: /api/v1/targets answered HTTP {status}")
    out = []
    for t in json.loads(body)["data"]["activeTargets"]:
        labels = t.get("labels", {})
        out.append(
            {
                "job": labels.get("job", "?"),
                "host": labels.get("host", ""),
                "instance": labels.get("instance", "?"),
                "health": t.get("health", "unknown"),
                "error": t.get("lastError", ""),
            }
        )
    return out


def monitor_checks(guard: NetworkGuard, monitor: Monitor) -> list[tuple[str, bool, str]]:
    """What `lab status` reports of a monitoring host: (item, ok, detail) for Prometheus's
    readiness and its targets, and Alertmanager's readiness."""
    checks: list[tuple[str, bool, str]] = []
    for name, url in (("prometheus", monitor.prometheus), ("alertmanager", monitor.alertmanager)):
        try:
            status, body = get(guard, url + "/-/ready")
            checks.append((f"{name} ready", status == 200, body.strip()[:80] or f"HTTP {status}"))
        except (OSError, ChaosRunnerError) as exc:
            checks.append((f"{name} ready", False, str(exc)))
    # A target that was restarted a moment ago (a converge, a heal) stays down until its
    # next scrape (every 1 s; the hosts' every 5 s): asked again for up to TARGETS_SETTLE_S.
    deadline = time.monotonic() + TARGETS_SETTLE_S
    while True:
        try:
            found = targets(guard, monitor)
        except (OSError, ValueError, KeyError, ChaosRunnerError) as exc:
            return [*checks, ("prometheus targets", False, str(exc))]
        down = [t for t in found if t["health"] != "up"]
        if (found and not down) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    detail = f"{len(found) - len(down)}/{len(found)} up"
    if down:
        detail += "; down: " + ", ".join(
            f"{t['job']} {t['instance']} ({t['error'] or t['health']})" for t in down
        )
    checks.append(("prometheus targets", bool(found) and not down, detail))
    return checks


def parse_counters(text: str) -> dict[str, float]:
    """The counters (`*_total` series) of a Prometheus text exposition: series (name and
    labels, as written) -> value."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        brace = line.rfind("}")
        series, _, rest = (
            (line[: brace + 1], "", line[brace + 1 :]) if brace >= 0 else line.partition(" ")
        )
        name = series.split("{", 1)[0]
        if not name.endswith("_total"):
            continue
        try:
            out[series.strip()] = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
    return out


def scrape_counters(guard: NetworkGuard, app_url: str, tries: int = 3) -> dict[str, float] | None:
    """The counters of a FraiseQL app's /metrics, or None when it serves none (an app
    still busy after a flood gets `tries` chances of 5 s each)."""
    for _ in range(tries):
        try:
            status, body = get(guard, app_url + "/metrics", timeout=5)
        except OSError:
            continue
        return parse_counters(body) if status == 200 else None
    return None


def counter_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """How much each counter grew (a series that appeared counts from 0); unchanged ones
    are left out."""
    out = {k: round(v - before.get(k, 0.0), 3) for k, v in after.items()}
    return {k: v for k, v in out.items() if v}


def error_categories(deltas: dict[str, float]) -> dict[str, float]:
    """The errors an app counted, by category: its `*_errors_total` series (labels as the
    category) and its HTTP answers with a 4xx/5xx status (`*_http_requests_total`)."""
    out: dict[str, float] = {}
    for series, value in deltas.items():
        name, _, labels = series.partition("{")
        labels = labels.rstrip("}")
        if name.endswith("_errors_total"):
            out[f"{name}{{{labels}}}"] = value
        elif name.endswith("_http_requests_total"):
            status = next(
                (
                    p.split("=", 1)[1].strip('"')
                    for p in labels.split(",")
                    if p.startswith("status=")
                ),
                "",
            )
            if status[:1] in ("4", "5"):
                out[f"HTTP {status}"] = out.get(f"HTTP {status}", 0.0) + value
    return out
