"""Metric sources sampled during a scenario, on the history's clock.

ProcessSampler follows a program through its pidfile (lab hosts share the controller's
PID space; on a cluster the same file is read over the fault agent's host), recording pid
and resident memory every interval: a pid change is a restart, a missing pid a crash
window.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Sample:
    ns: int
    pid: int | None
    rss_kb: int | None


class MetricSource(Protocol):
    def start(self) -> None: ...

    def stop(self) -> list[Sample]: ...


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def rss_kb(pid: int) -> int | None:
    """Resident memory of the process and its children (uvicorn workers) in KiB."""
    total = 0
    found = False
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    found = True
        except OSError:
            continue
    return total if found else None


def _children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = [int(k) for k in kids]
    for k in list(out):
        out.extend(_children(k))
    return out


@dataclass
class ProcessSampler:
    pidfile: Path
    interval_s: float = 0.25
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(5)
        return list(self.samples)

    def _loop(self) -> None:
        while not self._stop.is_set():
            pid = read_pid(self.pidfile)
            self.samples.append(Sample(time.monotonic_ns(), pid, rss_kb(pid) if pid else None))
            self._stop.wait(self.interval_s)


def restarts(samples: list[Sample]) -> list[dict[str, int | None]]:
    """Every change of pid (a new process took over), with when it was seen."""
    out: list[dict[str, int | None]] = []
    last: int | None = None
    for s in samples:
        if s.pid is not None and last is not None and s.pid != last:
            out.append({"ns": s.ns, "old_pid": last, "new_pid": s.pid})
        if s.pid is not None:
            last = s.pid
    return out


def pid_samples(samples: list[Sample]) -> int:
    """How many samples found the program's pid: 0 means restarts were not observable."""
    return sum(1 for s in samples if s.pid is not None)


def max_rss_mb(samples: list[Sample]) -> float | None:
    values = [s.rss_kb for s in samples if s.rss_kb is not None]
    return round(max(values) / 1024, 1) if values else None
