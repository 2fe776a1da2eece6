"""Whether `lab up` on a lab that is already up has anything to do.

A converge of every host that ends well records what it converged from: a fingerprint of
every input the playbooks read (roles, playbooks, the agent's source, modules, ansible.cfg,
the inventory, the lab's generated keys, secrets and PKI on the controller, the extra
variables, Ansible's and Python's versions) and each guest's PID. A later `lab up` whose
inputs hash the same, whose guests are the same processes and whose status checks all pass
has nothing to converge, and says so; anything else - an edited file, another FraiseQL line,
a rebooted or missing guest, a failing check, a converge that was limited or interrupted -
runs the playbooks. `lab up --converge` always runs them (drift made inside a guest by hand
is only found by a converge).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos_runner.ansible import REPO_ROOT, toolchain
from chaos_runner.target.lab import Check, LabSettings

RECORD = "converged.json"
# What the playbooks read from the checkout.
REPO_INPUTS = ("ansible.cfg", "roles", "playbooks", "library", "agent/chaosfault")
# What the roles generate on the controller and ship to hosts, under the state directory.
STATE_INPUTS = ("ssh", "secrets", "pki")


def fingerprint(settings: LabSettings, extravars: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    roots = [REPO_ROOT / p for p in REPO_INPUTS] + [settings.inventory]
    roots += [settings.state_dir / p for p in STATE_INPUTS]
    for path in _files(roots):
        digest.update(f"{path}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps(dict(extravars), sort_keys=True, default=str).encode())
    digest.update(toolchain().encode())
    return digest.hexdigest()


def _files(roots: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found += [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(found)


def guests(checks: Iterable[Check]) -> dict[str, str]:
    """Each guest's process as the status checks saw it ("pid 123, release trixie")."""
    return {c.host: c.detail for c in checks if c.item == "guest"}


def record(settings: LabSettings, print_: str, checks: Iterable[Check]) -> None:
    path = settings.state_dir / RECORD
    partial = path.with_name(f"{RECORD}.new")
    partial.write_text(
        json.dumps(
            {
                "fingerprint": print_,
                "guests": guests(checks),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            indent=2,
            sort_keys=True,
        )
    )
    partial.chmod(0o600)
    partial.replace(path)


def forget(settings: LabSettings) -> None:
    (settings.state_dir / RECORD).unlink(missing_ok=True)


def unchanged(settings: LabSettings, print_: str, checks: list[Check]) -> tuple[bool, str]:
    """(True, when the last converge was) when a converge would find nothing to do, else
    (False, why it runs)."""
    path = settings.state_dir / RECORD
    try:
        last = json.loads(path.read_text())
    except (OSError, ValueError):
        return False, "no complete converge is recorded"
    if last.get("fingerprint") != print_:
        return False, "inputs changed since the last converge"
    if last.get("guests") != guests(checks):
        return False, "a guest is not the process the last converge configured"
    failed = [f"{c.host} {c.item}" for c in checks if not c.ok]
    if failed:
        return False, f"status checks fail: {', '.join(failed)}"
    return True, str(last.get("at", "?"))
