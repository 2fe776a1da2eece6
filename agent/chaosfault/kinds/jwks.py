"""JWKS faults: what nginx answers for the key document (an include it reads), and the
document itself (key rotation)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaosfault.errors import FaultFailed, FaultInputError
from chaosfault.fault import Artifact, Family, Fault, Record
from chaosfault.processes import kill
from chaosfault.validation import _number

if TYPE_CHECKING:
    from chaosfault.agent import Agent


class JwksResponse(Fault):
    """Rewrites what nginx answers for /.well-known/jwks.json (500, invalid JSON)."""

    params = ("status", "body")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        status = _number(params, "status", 200, 599, default=500, integer=True)
        body = params.get("body", "")
        if not isinstance(body, str) or any(c in body for c in "'\\;{}\n"):
            raise FaultInputError(
                "params.body: plain text without quotes, braces, semicolons or newlines"
            )
        return {"status": status, "body": body}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "nginx"

    def _conf(self, agent: Agent) -> Path:
        nginx = agent.config.get("nginx")
        if not nginx:
            raise FaultInputError(f"{agent.host} serves no JWKS: JWKS faults target an auth host")
        return Path(nginx["fault_conf"])

    def inject(self, agent: Agent, record: Record) -> None:
        p = record["params"]
        conf = self._conf(agent)
        if conf.read_text().strip():
            raise FaultFailed("another JWKS response fault is active on this host")
        body = f" '{p['body']}'" if p["body"] else ""
        conf.write_text(f"# chaoslab:{record['id']}\nreturn {p['status']}{body};\n")
        self._reload(agent)

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        text = self._conf(agent).read_text()
        return f"chaoslab:{record['id']}" in text, text.strip().replace("\n", " | ")

    def heal(self, agent: Agent, record: Record) -> None:
        conf = self._conf(agent)
        if f"chaoslab:{record['id']}" in conf.read_text():
            conf.write_text("")
            self._reload(agent)

    def _reload(self, agent: Agent) -> None:
        pid = agent.program_pid("nginx")
        kill(pid, signal.SIGHUP)
        time.sleep(0.3)  # nginx re-reads its configuration and replaces the worker


class JwksPublish(Fault):
    """Publishes another JWKS document (key rotation): the controller makes the new key
    and sends only the public document; heal puts the previous document back."""

    params = ("document",)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = params.get("document")
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, dict) and "kid" in k for k in keys):
            raise FaultInputError(
                "params.document: expected a JWKS object {'keys': [{'kid': ...}, ...]}"
            )
        if any("d" in k or "p" in k for k in keys):
            raise FaultInputError("params.document: contains private key material - refused")
        return {"document": doc}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "jwks-document"

    def _path(self, agent: Agent) -> Path:
        if not agent.config.get("nginx"):
            raise FaultInputError(f"{agent.host} serves no JWKS: JWKS faults target an auth host")
        return agent.root / "data" / "jwks" / ".well-known" / "jwks.json"

    def inject(self, agent: Agent, record: Record) -> None:
        path = self._path(agent)
        record["artifacts"]["previous"] = path.read_text()
        agent.save(record)  # the previous document must survive anything before heal
        tmp = path.with_suffix(".chaoslab-tmp")
        tmp.write_text(json.dumps(record["params"]["document"], indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        served = json.loads(self._path(agent).read_text())
        kids = [k["kid"] for k in served.get("keys", [])]
        want = [k["kid"] for k in record["params"]["document"]["keys"]]
        return kids == want, f"published kids {kids}"

    def heal(self, agent: Agent, record: Record) -> None:
        previous = record["artifacts"].get("previous")
        if previous is not None:
            path = self._path(agent)
            tmp = path.with_suffix(".chaoslab-tmp")
            tmp.write_text(previous)
            os.replace(tmp, path)


# ----------------------------------------------------------------- artifacts


def _serves_jwks(agent: Agent) -> bool:
    return bool(agent.config.get("nginx"))


def _fault_conf(agent: Agent) -> Path:
    return Path(agent.config["nginx"]["fault_conf"])


def _response_override(agent: Agent) -> bool:
    return bool(_fault_conf(agent).read_text().strip())


def _clear_response_override(agent: Agent) -> list[str]:
    conf = _fault_conf(agent)
    if not conf.read_text().strip():
        return []
    conf.write_text("")
    with contextlib.suppress(FaultFailed):
        kill(agent.program_pid("nginx"), signal.SIGHUP)
    return ["JWKS response override"]


FAMILY = Family(
    name="jwks",
    faults={"jwks.response": JwksResponse(), "jwks.publish": JwksPublish()},
    artifacts=(
        Artifact("jwks_override", _response_override, _clear_response_override, _serves_jwks),
    ),
)
