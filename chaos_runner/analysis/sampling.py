"""Metric sources sampled during a scenario, on the history's clock.

ProcessSampler follows a program through a probe - on the lab, its host's fault agent
reading the program's pidfile and /proc (op `proc`: a guest's PIDs are its own) - recording
pid and resident memory every interval. A pid change between two samples that found the
program is a restart; a probe that answered "not running" saw the program down; a probe
that failed (no answer: the connection to the host was lost) is an *unknown* sample, which
proves neither. ActivitySampler follows PostgreSQL's load the same way, through the
runner's own connection to the database host.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from chaos_runner.analysis.ledger import DbActivity

log = logging.getLogger(__name__)

T = TypeVar("T")
# () -> (pid, rss_kb): pid None when the program does not run; raises when it cannot tell.
Probe = Callable[[], tuple[int | None, int | None]]


@dataclass(frozen=True)
class Sample:
    ns: int
    pid: int | None
    rss_kb: int | None
    # False: the probe failed, pid and rss are unknown (not "not running").
    known: bool = True


class MetricSource(Protocol):
    def start(self) -> None: ...

    def stop(self) -> list[Sample]: ...


class Periodic:
    """A daemon thread calling `take` on the interval's grid (on_grid) until stopped."""

    def __init__(self, name: str, interval_s: float, take: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=lambda: on_grid(self._stop, interval_s, take), name=name, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Sampling(Generic[T]):
    """What a sampler shares: its samples, and a Periodic that takes them."""

    samples: list[T]
    _periodic: Periodic

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> list[T]:
        self._periodic.stop()
        return list(self.samples)


@dataclass
class ProcessSampler(Sampling[Sample]):
    probe: Probe
    interval_s: float = 0.25
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._failures = 0
        self._periodic = Periodic(
            "process-sampler", self.interval_s, lambda: self.samples.append(self.sample())
        )

    def sample(self) -> Sample:
        """One probe, stamped halfway through it: over SSH the answer is read on the host
        somewhere between sending the request and receiving the answer."""
        sent = time.monotonic_ns()
        try:
            pid, rss = self.probe()
        except Exception as exc:  # any failure of the probe is a lost sample, never a crash
            known, pid, rss = False, None, None
            self._failures += 1
            if self._failures == 1:  # once: a lost host fails every probe for a while
                log.warning("process probe failed (sample unknown): %s", exc)
        else:
            known = True
        ns = (sent + time.monotonic_ns()) // 2
        return Sample(ns, pid, rss if pid is not None else None, known)


def on_grid(stop: threading.Event, interval_s: float, take: Callable[[], None]) -> None:
    """Call `take` every interval until `stop` is set: on the interval's grid; after a slow
    call (a timeout) the next one is an interval later, not made up for in a burst."""
    interval_ns = int(interval_s * 1e9)
    due = time.monotonic_ns()
    while not stop.is_set():
        take()
        now = time.monotonic_ns()
        due += interval_ns
        if due <= now:
            due = now + interval_ns
        stop.wait((due - now) / 1e9)


@dataclass(frozen=True)
class DbSample:
    ns: int
    # None: the probe failed (PostgreSQL down or unreachable): its load is unknown.
    activity: DbActivity | None


@dataclass
class ActivitySampler(Sampling[DbSample]):
    """PostgreSQL's load (pg_stat_activity, pg_stat_database) every interval, through its
    own connection: lock waiters, active backends, transaction and tuple counters."""

    probe: Callable[[], DbActivity]
    interval_s: float = 0.5
    samples: list[DbSample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._periodic = Periodic("db-sampler", self.interval_s, self._take)

    def _take(self) -> None:
        sent = time.monotonic_ns()
        try:
            activity: DbActivity | None = self.probe()
        except Exception as exc:  # a lost sample, never a crash
            if not self.samples or self.samples[-1].activity is not None:
                log.warning("PostgreSQL activity probe failed (sample unknown): %s", exc)
            activity = None
        self.samples.append(DbSample((sent + time.monotonic_ns()) // 2, activity))


def db_load(
    samples: list[DbSample], spans: dict[str, tuple[int, int] | None]
) -> dict[str, Any] | None:
    """PostgreSQL's load in each named span (e.g. baseline, fault): the most lock waiters
    and active backends seen, the longest lock wait, transactions and tuples per second
    (counter deltas between the span's first and last known sample), and how many samples
    were unknown; `xact_ratio`: the fault's transaction rate over the baseline's."""
    if not samples:
        return None
    out: dict[str, Any] = {}
    for name, span in spans.items():
        if span is None:
            out[name] = None
            continue
        inside = [s for s in samples if span[0] <= s.ns <= span[1]]
        known = [(s.ns, s.activity) for s in inside if s.activity is not None]
        entry: dict[str, Any] = {"samples": len(inside), "unknown": len(inside) - len(known)}
        if known:
            acts = [a for _, a in known]
            entry.update(
                lock_waiters_max=max(a.lock_waiters for a in acts),
                active_max=max(a.active for a in acts),
                lock_wait_max_s=round(max(a.lock_wait_s for a in acts), 3),
            )
            (t0, a0), (t1, a1) = known[0], known[-1]
            if t1 > t0:
                secs = (t1 - t0) / 1e9
                entry["xacts_per_s"] = round((a1.xacts - a0.xacts) / secs, 1)
                entry["tuples_per_s"] = round((a1.tuples - a0.tuples) / secs, 1)
        out[name] = entry
    base = (out.get("baseline") or {}).get("xacts_per_s")
    fault = (out.get("fault") or {}).get("xacts_per_s")
    out["xact_ratio"] = round(fault / base, 2) if base and fault is not None else None
    return out


def restarts(samples: list[Sample]) -> list[dict[str, int | None]]:
    """Every change of pid between two samples that found the program (a new process took
    over), with when it was seen. Samples without a pid - not running, or unknown - sit
    between the two and neither add nor hide a restart."""
    out: list[dict[str, int | None]] = []
    last: int | None = None
    for s in samples:
        if not s.known or s.pid is None:
            continue
        if last is not None and s.pid != last:
            out.append({"ns": s.ns, "old_pid": last, "new_pid": s.pid})
        last = s.pid
    return out


def pid_samples(samples: list[Sample]) -> int:
    """How many samples found the program's pid: 0 means restarts were not observable."""
    return sum(1 for s in samples if s.known and s.pid is not None)


def unknown_samples(samples: list[Sample]) -> int:
    """How many probes failed: the program's state then is not known."""
    return sum(1 for s in samples if not s.known)


def max_rss_mb(samples: list[Sample]) -> float | None:
    values = [s.rss_kb for s in samples if s.known and s.rss_kb is not None]
    return round(max(values) / 1024, 1) if values else None
