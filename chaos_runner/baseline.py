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

from chaos_runner.metrics import BASELINE_METRICS, Estimate, Window, baseline_estimates

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
    """Baselines are only comparable under the same offered load."""
    keep = {k: load[k] for k in ("mode", "rate", "concurrency", "mix") if k in load}
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

    def stored(self, env: Environment, signature: str) -> dict[str, Estimate]:
        profile = self._read(env)["profiles"].get(signature)
        if not profile:
            return {}
        windows = [Window(**w) for w in profile["windows"]]
        return baseline_estimates(windows)

    def add(self, env: Environment, signature: str, windows: list[Window]) -> None:
        data = self._read(env)
        profile = data["profiles"].setdefault(signature, {"windows": []})
        profile["windows"] = (profile["windows"] + [asdict(w) for w in windows])[-KEEP_WINDOWS:]
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path(env).with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path(env))


def compare(
    current: dict[str, Estimate], stored: dict[str, Estimate], factor: float = 3.0
) -> str | None:
    """Why the current baseline is not the environment's steady state, or None."""
    cur, ref = current.get("p95_ms"), stored.get("p95_ms")
    if cur is not None and ref is not None and cur.mean > max(factor * ref.mean, ref.ci_high + 20):
        return (
            f"baseline p95 {cur.mean:.1f} ms is more than {factor:g}x the stored "
            f"{ref.mean:.1f} ms of this environment"
        )
    return None


__all__ = ["BASELINE_METRICS", "BaselineStore", "Environment", "compare", "load_signature"]
