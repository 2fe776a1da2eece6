"""What a fault family declares: its faults (inject / verify / heal), the artifacts they can
leave on a host (found and swept by name), and the background workers they start."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaosfault.agent import Agent

Record = dict[str, Any]

# Seconds past a fault's ttl at which its watchdog reverts it; sessions that hold something
# (a lock, a connection slot) are given the same bound.
GRACE_S = 5.0


class Fault:
    params: tuple[str, ...] = ()

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(params)

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "iptables"

    def inject(self, agent: Agent, record: Record) -> None:
        raise NotImplementedError

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        raise NotImplementedError

    def heal(self, agent: Agent, record: Record) -> None:
        raise NotImplementedError


def _everywhere(agent: Agent) -> bool:
    return True


@dataclass(frozen=True)
class Artifact:
    """Something faults can leave on a host, recognisable by its name alone.

    `find` answers what is present now (anything falsy means nothing: [], "", 0, False, {});
    `sweep` removes every instance whether or not a fault record survived and says what
    it removed. A host where `applies` is false cannot have it (no PostgreSQL, no Redis),
    and its key is left out of the `artifacts` answer. When the service that holds the
    artifact cannot be asked (FaultFailed), the answer carries `error_key` instead.
    """

    name: str
    find: Callable[[Agent], Any]
    sweep: Callable[[Agent], list[str]] | None = None
    applies: Callable[[Agent], bool] = _everywhere
    error_key: str | None = None


Worker = Callable[["Agent", list[str]], None]


@dataclass(frozen=True)
class Family:
    """One module under kinds/: its fault kinds, artifacts and background workers
    (started by `Agent.spawn(<worker name>, ...)`, argv after the name)."""

    name: str
    faults: dict[str, Fault]
    artifacts: tuple[Artifact, ...]
    workers: dict[str, Worker] = field(default_factory=dict)
