"""A scenario's faults as the runner drives them: inject / verify / heal.

`AgentFault` is a real change on a lab host through its fault agent (fast path, with a
lease the controller renews) or through playbooks/fault.yml (Ansible transport).
`ClientTokenFault` is the client itself sending tokens FraiseQL must refuse;
`ClientBurstFault` the client sending many operations at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from chaos_runner.faults.channel import FaultClient, FaultSpec, new_fault_id, rotated_jwks
from chaos_runner.model.scenario import FaultStep
from chaos_runner.target.roles import resolve_params
from chaos_runner.workload.operations import EXPECTED_REFUSAL_KINDS
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


class AgentFault:
    """A lab fault through the host's agent (fast path) or playbooks/fault.yml (Ansible)."""

    def __init__(self, step: FaultStep, client: FaultClient, ttl_s: float, ansible: Any = None):
        self.step = step
        self.client = client
        self.ttl_s = ttl_s
        self.ansible = ansible
        self.host = client.state.host(step.host)
        self.id = new_fault_id(step.kind)

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
        self.id = new_fault_id(step.kind)
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


class JwksRotation:
    """jwks.rotate: the signing key is rotated at the JWKS host. A new key is made on the
    controller and the host publishes it (alone, or after the old one with `keep_old`)
    through the agent's jwks.publish; from then on the load signs with the new key, except
    a `withdrawn_share` of the operations that keeps the replaced key (label
    WITHDRAWN). Heal puts the previous document back, the load the old key, and removes
    the new key's file."""

    def __init__(
        self, step: FaultStep, client: FaultClient, switch: TokenSwitch, ttl_s: float, ansible: Any
    ) -> None:
        self.step = step
        self.switch = switch
        self.pki_dir = client.state.settings.state_dir / "pki"
        self.kid = f"chaos-rotated-{uuid.uuid4().hex[:8]}"
        self.old_kid = switch.minter.active_kid()
        self.publish = AgentFault(
            FaultStep("jwks.publish", step.host, {"document": {"keys": []}}), client, ttl_s, ansible
        )
        self.host = self.publish.host
        self.id = self.publish.id

    def inject(self) -> dict[str, Any]:
        keep = [self.old_kid] if self.step.params.get("keep_old") else []
        document = rotated_jwks(self.pki_dir, self.kid, keep)
        self.publish.step = FaultStep("jwks.publish", self.step.host, {"document": document})
        answer = dict(self.publish.inject())
        try:
            self.switch.rotate(self.kid, float(self.step.params.get("withdrawn_share", 0.25)))
        except BaseException:
            self.heal()  # the document must not stay published without the load on it
            raise
        answer["mechanism"] = (
            f"{answer.get('mechanism')}: {self.kid} published, {self.old_kid} "
            + ("kept" if keep else "withdrawn")
        )
        return answer

    def verify(self) -> dict[str, Any]:
        return self.publish.verify()

    def heal(self) -> dict[str, Any]:
        """The previous document first, then the load back on its key: the other order
        would send old-key tokens to a FraiseQL that may rightly refuse them."""
        try:
            answer = self.publish.heal()
            self.switch.unrotate()
        finally:
            (self.pki_dir / "jwt" / f"{self.kid}.key").unlink(missing_ok=True)
        return answer


class Burst(Protocol):
    def burst(self, kind: str, count: int, rate: float | None = None) -> range: ...

    def burst_ended(self, indices: range) -> int: ...

    def cancel_burst(self, indices: range) -> None: ...

    def history(self) -> Any: ...


class ClientBurstFault:
    """client.burst: `count` operations of one kind sent at once on top of the load (a
    stampede, a pool saturated), or spread at `rate` per second (a flood). Verify: a
    burst's every answer (at most the client's deadline), a flood's first; in effect once
    FraiseQL answered one of them as it should (a success; a refusal for invalid
    GraphQL). With `relation` (a burst), how many statements naming it reached PostgreSQL
    meanwhile (pg_stat_statements). Heal drops what a flood has not sent yet."""

    host = "controller"

    def __init__(
        self,
        step: FaultStep,
        load: Burst,
        deadline_s: float,
        statements: Callable[[str], int] | None = None,
    ) -> None:
        self.step = step
        self.load = load
        self.deadline_s = deadline_s
        self.statements = statements
        self.id = new_fault_id(step.kind)
        self.indices = range(0)
        self._calls_before: int | None = None

    def inject(self) -> dict[str, Any]:
        p = self.step.params
        relation = p.get("relation")
        if relation and self.statements is not None:
            self._calls_before = self.statements(relation)
        rate = p.get("rate")
        self.indices = self.load.burst(
            str(p.get("op", "query")), int(p["count"]), float(rate) if rate else None
        )
        how = f"{rate:g} per second" if rate else "at once"
        return {"id": self.id, "mechanism": f"client: operations sent {how}", "host": "controller"}

    def verify(self) -> dict[str, Any]:
        rate = self.step.params.get("rate")
        count = len(self.indices)
        deadline = time.monotonic() + self.deadline_s + 2
        while time.monotonic() < deadline:
            ended = self.load.burst_ended(self.indices)
            if ended >= count or (rate and self._answered()):
                break
            time.sleep(0.05)
        ended = self.load.burst_ended(self.indices)
        answered = self._answered()
        op = self.step.params.get("op", "query")
        if rate:
            evidence = f"{count} {op} at {rate:g} per second: {ended} ended so far"
        else:
            evidence = f"{count} {op} sent at once, {ended} ended, {answered} answered"
        relation = self.step.params.get("relation")
        if self._calls_before is not None and relation and self.statements is not None:
            reached = self.statements(relation) - self._calls_before
            evidence += f"; PostgreSQL ran {reached} statement(s) naming {relation} meanwhile"
        if not answered:
            evidence += "; none answered as it should: the operations did not reach FraiseQL"
        return {"id": self.id, "ok": answered > 0, "evidence": evidence}

    def _answered(self) -> int:
        """Operations FraiseQL answered as it should: successfully, or - for a kind whose
        answer is a refusal (invalid GraphQL) - with a refusal."""
        indices = self.indices
        return sum(
            1
            for o in self.load.history()
            if o.index in indices
            and o.status is not None
            and (o.outcome == "ok" or o.kind in EXPECTED_REFUSAL_KINDS)
        )

    def heal(self) -> dict[str, Any]:
        self.load.cancel_burst(self.indices)
        return {"id": self.id, "healed": True}


def build_fault(
    step: FaultStep,
    client: FaultClient,
    switch: TokenSwitch,
    ttl_s: float,
    ansible: Any,
    load: Burst | None = None,
    statements: Callable[[str], int] | None = None,
    deadline_s: float = 15.0,
) -> Fault:
    if step.kind == "jwks.rotate":
        return JwksRotation(step, client, switch, step.ttl_s or ttl_s, ansible)
    if step.kind == "client.burst":
        if load is None:
            raise ValueError("client.burst needs the running load")
        return ClientBurstFault(step, load, deadline_s, statements)
    if step.kind.startswith("client."):
        return ClientTokenFault(step, switch)
    return AgentFault(step, client, step.ttl_s or ttl_s, ansible)
