"""The lab's root qdisc (handle `cafe:`) on the host's lab interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chaosfault.errors import FaultFailed
from chaosfault.processes import run

if TYPE_CHECKING:
    from chaosfault.agent import Agent

TC_HANDLE = "cafe:"


def lab_qdisc(agent: Agent) -> str:
    """This host's qdiscs on the lab interface, with counters."""
    return run(["tc", "-s", "qdisc", "show", "dev", agent.iface], check=False).stdout


def has_lab_qdisc(agent: Agent) -> bool:
    return f" {TC_HANDLE} " in lab_qdisc(agent)


def add_lab_qdisc(agent: Agent, record: dict[str, Any], *spec: str) -> None:
    """Root qdisc with the lab's own handle; one link fault per interface at a time."""
    if has_lab_qdisc(agent):
        raise FaultFailed(
            f"{agent.iface} already carries a lab qdisc ({TC_HANDLE}): one link fault at a time"
        )
    run(["tc", "qdisc", "add", "dev", agent.iface, "root", "handle", TC_HANDLE, *spec])
    record["artifacts"]["qdisc"] = agent.iface


def del_lab_qdisc(agent: Agent) -> None:
    if has_lab_qdisc(agent):
        run(["tc", "qdisc", "del", "dev", agent.iface, "root", "handle", TC_HANDLE], check=False)
