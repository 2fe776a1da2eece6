"""The one module that talks to ansible-runner.

Runs a playbook of this repository against an inventory, streams progress, stamps every
Ansible event with the runner's monotonic clock (the same clock as the load history),
and turns failures into PlaybookFailed naming the host, task and message.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from chaos_runner.errors import ConfigError, PlaybookFailed

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK_DIR = REPO_ROOT / "playbooks"


def toolchain() -> str:
    """What runs the playbooks: another Ansible or Python may converge differently."""
    from importlib.metadata import version

    return f"ansible-core {version('ansible-core')}, python {sys.version.split()[0]}"


@dataclass(frozen=True)
class PlaybookEvent:
    """One Ansible event, stamped with time.monotonic_ns() when the runner received it."""

    monotonic_ns: int
    event: str
    host: str | None
    task: str | None
    changed: bool
    message: str | None
    role: str | None = None


@dataclass
class PlaybookResult:
    playbook: str
    rc: int
    status: str
    artifacts: str
    started_ns: int
    finished_ns: int
    events: list[PlaybookEvent] = field(default_factory=list)

    @property
    def changed_tasks(self) -> int:
        return sum(1 for e in self.events if e.event == "runner_on_ok" and e.changed)


ProgressCallback = Callable[[PlaybookEvent], None]

_HOST_EVENTS = {
    "runner_on_ok",
    "runner_on_failed",
    "runner_on_unreachable",
    "runner_on_skipped",
    "runner_item_on_failed",
}


def _message(res: Mapping[str, Any]) -> str | None:
    for key in ("msg", "stderr", "reason"):
        value = res.get(key)
        if value:
            return str(value).strip()
    return None


def run_playbook(
    name: str,
    *,
    inventory: str | os.PathLike[str],
    artifacts_dir: str | os.PathLike[str],
    extravars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    tags: Sequence[str] = (),
    check: bool = False,
    progress: ProgressCallback | None = None,
    timeout: int | None = None,
) -> PlaybookResult:
    """Run playbooks/<name>.yml; raise PlaybookFailed unless it succeeded."""
    playbook = PLAYBOOK_DIR / f"{name}.yml"
    if not playbook.is_file():
        known = sorted(p.stem for p in PLAYBOOK_DIR.glob("*.yml"))
        raise ConfigError(f"unknown playbook {name!r}: expected one of {', '.join(known)}")
    inventory_path = Path(inventory).resolve()
    if not inventory_path.exists():
        raise ConfigError(f"inventory {inventory_path} does not exist")
    private = Path(artifacts_dir).resolve()
    private.mkdir(parents=True, exist_ok=True)

    events: list[PlaybookEvent] = []
    failures: list[str] = []

    def on_event(raw: dict[str, Any]) -> bool:
        kind = raw.get("event", "")
        data = raw.get("event_data") or {}
        if kind in ("playbook_on_task_start", "runner_on_start") or kind in _HOST_EVENTS:
            res = data.get("res") or {}
            event = PlaybookEvent(
                monotonic_ns=time.monotonic_ns(),
                event=kind,
                host=data.get("host"),
                task=data.get("task"),
                changed=bool(res.get("changed")),
                message=_message(res) if kind != "runner_on_ok" else None,
                role=data.get("role") or None,
            )
            events.append(event)
            ignored = data.get("ignore_errors")
            if kind in ("runner_on_failed", "runner_on_unreachable") and not ignored:
                failures.append(f"{event.host}: {event.task}: {event.message or kind}")
            if progress is not None:
                progress(event)
        return True

    # ansible-runner starts `ansible-playbook` by name: the venv's bin must be on PATH.
    bin_dir = str(Path(sys.executable).parent)
    envvars = {
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
        "ANSIBLE_LIBRARY": str(REPO_ROOT / "library"),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_FORCE_COLOR": "0",
    }
    cmdline = "--check --diff" if check else None
    started = time.monotonic_ns()
    log.info("running playbook %s (inventory %s, limit %s)", name, inventory_path, limit)
    runner = ansible_runner.run(
        private_data_dir=str(private),
        project_dir=str(REPO_ROOT),
        playbook=str(playbook),
        inventory=str(inventory_path),
        extravars=dict(extravars or {}),
        limit=limit,
        tags=",".join(tags) if tags else None,
        cmdline=cmdline,
        envvars=envvars,
        event_handler=on_event,
        quiet=True,
        timeout=timeout,
        suppress_env_files=True,
    )
    result = PlaybookResult(
        playbook=name,
        rc=int(runner.rc if runner.rc is not None else -1),
        status=str(runner.status),
        artifacts=str(runner.config.artifact_dir),
        started_ns=started,
        finished_ns=time.monotonic_ns(),
        events=events,
    )
    if result.rc != 0 or result.status != "successful":
        if not failures:
            stdout = Path(result.artifacts, "stdout")
            tail = (
                stdout.read_text(errors="replace").strip().splitlines()[-5:]
                if stdout.exists()
                else []
            )
            failures.extend(tail)
        raise PlaybookFailed(name, result.rc, failures, result.artifacts)
    return result
