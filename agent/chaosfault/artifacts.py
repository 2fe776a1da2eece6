"""Every lab fault artifact on this host, found and swept by name from the families'
declarations - whether or not a fault record survived."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chaosfault.errors import FaultFailed
from chaosfault.fault import Artifact
from chaosfault.kinds import ARTIFACTS

if TYPE_CHECKING:
    from chaosfault.agent import Agent

# The fault records themselves: listed first, removed last (after every family's sweep).
RECORDS = Artifact(
    "records",
    lambda agent: [r["id"] for r in agent.records()],
    lambda agent: agent.remove_state_files(),
)


def declared() -> tuple[Artifact, ...]:
    return (RECORDS, *ARTIFACTS)


def describe(name: str, value: Any) -> str:
    """One entry of `left`: the artifact's name, and what is left unless that is just true."""
    return name if value is True else f"{name}={value}"


def list_artifacts(agent: Agent, artifacts: tuple[Artifact, ...] | None = None) -> dict[str, Any]:
    """One key per artifact this host can have (what is present; falsy when nothing), an
    `<error_key>` for a service that could not be asked, and `left`: one string per
    artifact still present - the single list heal-all checks."""
    out: dict[str, Any] = {}
    left: list[str] = []
    for artifact in declared() if artifacts is None else artifacts:
        if not artifact.applies(agent):
            continue
        try:
            value = artifact.find(agent)
        except FaultFailed as exc:
            out[artifact.error_key or f"{artifact.name}_error"] = str(exc)
            continue
        out[artifact.name] = value
        if value:
            left.append(describe(artifact.name, value))
    out["left"] = left
    return out


def sweep_artifacts(agent: Agent, artifacts: tuple[Artifact, ...] | None = None) -> list[str]:
    """Remove every lab artifact by name, whether or not a record survived: each family's
    in declaration order, then the state files. One that fails does not stop the rest;
    what it left shows in the listing that follows."""
    swept: list[str] = []
    order = (*ARTIFACTS, RECORDS) if artifacts is None else artifacts
    for artifact in order:
        if artifact.sweep is None or not artifact.applies(agent):
            continue
        try:
            swept += artifact.sweep(agent)
        except (FaultFailed, OSError) as exc:
            swept.append(f"{artifact.name}: sweep failed: {exc}")
    return swept
