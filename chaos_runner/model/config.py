"""The runner's own configuration file (optional; every key has a default).

environment: lab            # lab | cluster: baselines are kept per environment
attempts: 3                 # up to 3 attempts when there is no verdict or they disagree
confirm_deviations: true    # re-run a deviated scenario to tell a finding from flakiness
fault_transport: agent      # agent (fast path) | ansible (playbooks/fault.yml, logged)
db_host: "@db"              # PostgreSQL host the checker reads the ground truth from
baseline_factor: 3.0        # a baseline p95 above factor x the stored one is not steady
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from chaos_runner.model.build import between, build, field, read_yaml


@dataclass(frozen=True)
class RunnerConfig:
    environment: Literal["lab", "cluster"] = "lab"
    attempts: int = field(3, check=between(1, 3))
    confirm_deviations: bool = True
    fault_transport: Literal["agent", "ansible"] = "agent"
    db_host: str = "@db"
    baseline_factor: float = field(3.0, check=between(1, 100))
    baseline_dir: str | None = None
    scenario_dir: str | None = None


def load_config(path: str | None = None) -> RunnerConfig:
    """From --config, else $CHAOSLAB_CONFIG, else defaults."""
    chosen = path or os.environ.get("CHAOSLAB_CONFIG")
    if not chosen:
        return RunnerConfig()
    data, source = read_yaml(Path(chosen))
    return build(RunnerConfig, data if data is not None else {}, source)
