"""A scenario's faults as the runner drives them: inject / verify / heal.

`AgentFault` is a real change on a lab host through its fault agent (fast path, with a
lease the controller renews) or through playbooks/fault.yml (Ansible transport).
`ClientTokenFault` is the client itself sending tokens FraiseQL must refuse.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

from chaos_runner.faults.channel import FaultClient, FaultSpec
from chaos_runner.model.scenario import FaultStep
from chaos_runner.target.roles import resolve_params
from chaos_runner.workload.tokens import TokenSwitch

# The controller renews each fault's lease; when renewals stop (a killed runner), the host
# heals the fault within this many seconds. The TTL stays as the last resort.
LEASE_S = 6.0


class Fault(Protocol):
    step: FaultStep
    id: str
    host: str

    def inject(self) -> dict[str, Any]: ...

    def verify(self) -> dict[str, Any]: ...

    def heal(self) -> dict[str, Any]: ...


def fault_id(kind: str) -> str:
    return f"{kind.replace('.', '-').replace('_', '-')}-{uuid.uuid4().hex[:8]}"


class AgentFault:
    """A lab fault through the host's agent (fast path) or playbooks/fault.yml (Ansible)."""

    def __init__(self, step: FaultStep, client: FaultClient, ttl_s: float, ansible: Any = None):
        self.step = step
        self.client = client
        self.ttl_s = ttl_s
        self.ansible = ansible
        self.host = client.state.host(step.host)
        self.id = fault_id(step.kind)

    def spec(self) -> FaultSpec:
        state = self.client.state
        params = resolve_params(
            {k: (state.gateway if v == "@controller" else v) for k, v in self.step.params.items()},
            state.roles,
        )
        return FaultSpec(self.host, self.step.kind, params, self.ttl_s, self.id, lease_s=LEASE_S)

    def inject(self) -> dict[str, Any]:
        spec = self.spec()
        if self.ansible is not None:
            return dict(self.ansible("inject", spec))
        return self.client.inject(spec)

    def verify(self) -> dict[str, Any]:
        return self.client.verify(self.host, self.id)

    def heal(self) -> dict[str, Any]:
        if self.ansible is not None:
            return dict(self.ansible("heal", FaultSpec(self.host, self.step.kind, id=self.id)))
        return self.client.heal(self.host, self.id)


class ClientTokenFault:
    """client.bad-token: the client sends tokens that must be refused (real requests, real
    FraiseQL)."""

    host = "controller"

    def __init__(self, step: FaultStep, switch: TokenSwitch) -> None:
        self.step = step
        self.switch = switch
        self.id = f"client-bad-token-{uuid.uuid4().hex[:8]}"
        self._before = 0

    def inject(self) -> dict[str, Any]:
        p = self.step.params
        self._before = self.switch.sent
        self.switch.activate(
            list(p["tokens"]),
            float(p.get("share", 1.0)),
            list(p.get("ops", ["query", "nested", "mutation", "increment"])),
        )
        return {
            "id": self.id,
            "mechanism": "client: bad Authorization headers",
            "host": "controller",
        }

    def verify(self) -> dict[str, Any]:
        deadline = time.monotonic() + 3
        while self.switch.sent == self._before and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = self.switch.sent - self._before
        return {"id": self.id, "ok": sent > 0, "evidence": f"{sent} requests with bad tokens sent"}

    def heal(self) -> dict[str, Any]:
        self.switch.deactivate()
        return {"id": self.id, "healed": True}


def build_fault(
    step: FaultStep, client: FaultClient, switch: TokenSwitch, ttl_s: float, ansible: Any
) -> Fault:
    if step.kind.startswith("client."):
        return ClientTokenFault(step, switch)
    return AgentFault(step, client, step.ttl_s or ttl_s, ansible)
