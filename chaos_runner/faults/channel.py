"""Faults from the controller: validation, and the fast path to each host's fault agent.

The agent (roles/faults/files/chaosfault.py) runs on the lab host and owns every fault's
inject / verify / heal and its on-host expiry. The controller keeps one SSH connection
per host (paramiko, TCP_NODELAY) with the agent running in `serve` mode on one channel:
a request is one JSON line, so firing or healing a prepared fault costs milliseconds
instead of the ~1.2 s of a one-task playbook. Parameters are validated by the agent's
own code, loaded here, so there is one definition of what a valid fault is.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import paramiko

from chaos_runner.ansible import REPO_ROOT
from chaos_runner.errors import ConfigError, FaultError, LabNotReady
from chaos_runner.target.lab import LabState

log = logging.getLogger(__name__)

AGENT_SOURCE = REPO_ROOT / "roles" / "faults" / "files" / "chaosfault.py"
AGENT_PATH = "/opt/chaoslab/faults/chaosfault.py"
HOST_ROOT = "/srv/chaoslab"


def load_agent_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaosfault", AGENT_SOURCE)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load the fault agent from {AGENT_SOURCE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_AGENT = load_agent_module()
FAULT_KINDS: tuple[str, ...] = tuple(sorted(_AGENT.FAULTS))


@dataclass(frozen=True)
class FaultSpec:
    host: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    ttl_s: float = 60.0
    id: str | None = None

    def request(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": self.kind, "params": self.params, "ttl_s": self.ttl_s}
        if self.id:
            body["id"] = self.id
        return body


def validate(spec: FaultSpec, state: LabState) -> None:
    """Raise ConfigError naming the bad parameter; nothing is sent for an invalid fault."""
    if spec.host not in state.hosts:
        raise ConfigError(
            f"host: unknown lab host {spec.host!r}; known: {', '.join(sorted(state.hosts))}"
        )
    try:
        _AGENT.validate(spec.request())
    except _AGENT.FaultInputError as exc:
        raise ConfigError(f"fault {spec.kind!r} on {spec.host}: {exc}") from None


def validate_request(kind: str, params: dict[str, Any], ttl_s: float = 60.0) -> str | None:
    """The agent's own complaint about a fault request ("params.x: ..."), or None."""
    try:
        _AGENT.validate({"kind": kind, "params": params, "ttl_s": ttl_s})
    except _AGENT.FaultInputError as exc:
        return str(exc)
    return None


class Fault(Protocol):
    """What the scenario runner needs from a fault (inject / verify / heal)."""

    def inject(self) -> dict[str, Any]: ...

    def verify(self) -> dict[str, Any]: ...

    def heal(self) -> dict[str, Any]: ...


class AgentChannel:
    """One persistent `chaosfault serve` on one host, over one SSH channel."""

    def __init__(self, host: str, address: str, key_file: Path, known_hosts: Path) -> None:
        self.host = host
        sock = socket.create_connection((address, 22), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = paramiko.SSHClient()
        self._client.load_host_keys(str(known_hosts))
        self._client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self._client.connect(
            address,
            username="root",
            key_filename=str(key_file),
            sock=sock,
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        transport = self._client.get_transport()
        assert transport is not None
        self._channel = transport.open_session()
        config = f"{HOST_ROOT}/{host}/faults/agent.json"
        self._channel.exec_command(f"SHLVL=1 /usr/bin/python3 {AGENT_PATH} --config {config} serve")
        self._stdin = self._channel.makefile_stdin("wb")
        self._stdout = self._channel.makefile("r")
        self._lock = threading.Lock()

    def call(self, request: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
        with self._lock:
            self._channel.settimeout(timeout_s)
            self._stdin.write((json.dumps(request) + "\n").encode())
            self._stdin.flush()
            line = self._stdout.readline()
        if not line:
            err = (
                self._channel.recv_stderr(4096).decode(errors="replace")
                if self._channel.recv_stderr_ready()
                else ""
            )
            raise FaultError(f"{self.host}: the fault agent closed its channel {err.strip()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        try:
            self._stdin.close()
            self._channel.close()
        finally:
            self._client.close()


class FaultClient:
    """Fast-path access to the fault agents of every lab host."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        self._channels: dict[str, AgentChannel] = {}
        self._key = state.settings.state_dir / "ssh" / "id_ed25519"
        self._known_hosts = state.settings.state_dir / "ssh" / "known_hosts"

    def __enter__(self) -> FaultClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def channel(self, host: str) -> AgentChannel:
        if host not in self.state.hosts:
            raise ConfigError(
                f"host: unknown lab host {host!r}; known: {', '.join(sorted(self.state.hosts))}"
            )
        if host not in self._channels:
            address = self.state.guard.check(self.state.hosts[host]["address"])
            try:
                self._channels[host] = AgentChannel(host, address, self._key, self._known_hosts)
            except (OSError, paramiko.SSHException) as exc:
                raise LabNotReady(
                    f"cannot reach the fault agent on {host} ({address}): {exc}"
                ) from exc
        return self._channels[host]

    def _call(self, host: str, request: dict[str, Any]) -> Any:
        answer = self.channel(host).call(request)
        if not answer.get("ok"):
            error = f"{host}: {answer.get('error')}"
            raise ConfigError(error) if answer.get("input_error") else FaultError(error)
        return answer["result"]

    def inject(self, spec: FaultSpec) -> dict[str, Any]:
        validate(spec, self.state)
        started = time.monotonic_ns()
        result: dict[str, Any] = self._call(spec.host, {"op": "inject", "fault": spec.request()})
        result["host"] = spec.host
        result["call_ns"] = time.monotonic_ns() - started
        log.info("injected %s on %s via %s", result.get("id"), spec.host, result.get("mechanism"))
        return result

    def verify(self, host: str, fault_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(host, {"op": "verify", "id": fault_id})
        return result

    def heal(self, host: str, fault_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(host, {"op": "heal", "id": fault_id})
        return result

    def heal_all(self, hosts: list[str] | None = None) -> dict[str, dict[str, Any]]:
        return {
            h: self._call(h, {"op": "heal", "all": True}) for h in hosts or sorted(self.state.hosts)
        }

    def artifacts(self, host: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(host, {"op": "artifacts"})
        return result

    def list(self, host: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(host, {"op": "list"})
        return result

    def capabilities(self, host: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(host, {"op": "capabilities"})
        return result


def rotated_jwks(pki_dir: Path, new_kid: str, keep: list[str] | None = None) -> dict[str, Any]:
    """Create signing key `new_kid` on the controller (0600, like every lab key) and return
    the public JWKS document publishing it after the kids in `keep`."""
    from chaos_runner.target.pki import jwk_for, load_or_create_signing_key

    kids = [*(keep or []), new_kid]
    return {"keys": [jwk_for(kid, load_or_create_signing_key(pki_dir, kid)) for kid in kids]}


def artifacts_left(artifacts: dict[str, Any]) -> list[str]:
    """Names of the artifact kinds still present in an `artifacts` answer."""
    left = []
    for key in ("records", "iptables_rules", "cgroups", "stopped_processes", "processes"):
        if artifacts.get(key):
            left.append(f"{key}={artifacts[key]}")
    if artifacts.get("qdisc"):
        left.append("qdisc")
    if artifacts.get("pg_settings"):
        left.append(f"pg_settings={artifacts['pg_settings']}")
    if artifacts.get("pg_sessions"):
        left.append(f"pg_sessions={artifacts['pg_sessions']}")
    if artifacts.get("jwks_override"):
        left.append("jwks_override")
    if artifacts.get("redis_config"):
        left.append(f"redis_config={artifacts['redis_config']}")
    return left
