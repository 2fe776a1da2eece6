"""Stored baselines, one file per environment, compared only within that environment.

An environment is what changes the numbers: lab or cluster, FraiseQL version and Python,
core count, kernel. A baseline is kept per load profile (its signature) with the window
statistics of the last runs (mean / stddev / 95 % CI over >= 10 windows).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chaos_runner.analysis.metrics import BASELINE_METRICS, Window, baseline_estimates, median_p95

KEEP_WINDOWS = 200


@dataclass(frozen=True)
class Environment:
    kind: str
    fraiseql: str
    python: str
    cores: int
    kernel: str

    @property
    def key(self) -> str:
        return (
            f"{self.kind}-fraiseql{self.fraiseql}-py{self.python}-{self.cores}cores-{self.kernel}"
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["key"] = self.key
        return out

    @classmethod
    def detect(cls, kind: str, fraiseql: str, python: str) -> Environment:
        return cls(kind, fraiseql, python, os.cpu_count() or 1, platform.release())


def load_signature(load: dict[str, Any]) -> str:
    """Baselines are only comparable under the same offered load, operation parameters
    (a slow query's length, an isolation level) included."""
    keep = {k: load[k] for k in ("mode", "rate", "concurrency", "mix", "params") if k in load}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class BaselineStore:
    directory: Path

    def path(self, env: Environment) -> Path:
        return self.directory / f"{env.key}.json"

    def _read(self, env: Environment) -> dict[str, Any]:
        path = self.path(env)
        if not path.is_file():
            return {"environment": env.as_dict(), "profiles": {}}
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def stored(self, env: Environment, signature: str) -> list[Window]:
        profile = self._read(env)["profiles"].get(signature)
        return [Window(**w) for w in profile["windows"]] if profile else []

    def add(self, env: Environment, signature: str, windows: list[Window]) -> None:
        data = self._read(env)
        profile = data["profiles"].setdefault(signature, {"windows": []})
        profile["windows"] = (profile["windows"] + [asdict(w) for w in windows])[-KEEP_WINDOWS:]
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path(env).with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path(env))


def compare(current: list[Window], stored: list[Window], factor: float = 3.0) -> str | None:
    """Why the current baseline is not this environment's steady state, or None. Medians of
    the window p95s are compared, so one slow window does not decide."""
    cur, ref = median_p95(current), median_p95(stored)
    if cur is not None and ref is not None and cur > factor * ref + 20:
        return (
            f"baseline median window p95 {cur:.1f} ms is more than {factor:g}x (+20 ms) the "
            f"stored {ref:.1f} ms of this environment ({len(stored)} stored windows)"
        )
    return None


def stored_summary(stored: list[Window]) -> dict[str, Any]:
    return {
        "windows": len(stored),
        "median_p95_ms": median_p95(stored),
        **{k: v.as_dict() for k, v in baseline_estimates(stored).items()},
    }


__all__ = [
    "BASELINE_METRICS",
    "BaselineStore",
    "Environment",
    "compare",
    "load_signature",
    "stored_summary",
]
