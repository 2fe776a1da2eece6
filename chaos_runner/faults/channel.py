"""Faults from the controller: validation, and the fast path to each host's fault agent.

The agent (package `chaosfault`, agent/chaosfault; shipped to hosts as one zipapp by the
faults role) runs on the lab host and owns every fault's inject / verify / heal and its
on-host expiry. The controller keeps one SSH connection per host (paramiko, TCP_NODELAY)
with the agent running in `serve` mode on one channel: a request is one JSON line, so
firing or healing a prepared fault costs milliseconds instead of the ~1.2 s of a one-task
playbook. Parameters are validated by the agent's own code, imported here, so there is one
definition of what a valid fault is.

Every request carries a request id (`rid`) that its answer echoes. A timeout, a broken SSH
connection or an answer out of step is a transport error: the client drops the channel,
reconnects once and repeats the request (the agent's inject of a given id and its heal are
idempotent), then gives up with FaultError naming host and operation.

Leases: a fault injected with `lease_s` stays on its host only while the controller renews
it. FaultClient renews every leased fault from a daemon thread, over a second connection
per host, so a slow request on the main one (filling every connection slot, heal-all)
never holds a renewal back. When the controller dies the renewals stop, and each host
heals its leased faults within lease_s + 0.5 s.

The agent also reports on the host's programs (a guest's pidfiles and PIDs are its own):
`programs` for the lab's status, and `proc` - one program's pid and resident memory - for
the process sampler, on a third connection per host so that sampling every quarter second
neither waits behind a fault request nor delays one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import paramiko

from chaos_runner.errors import ChaosRunnerError, ConfigError, FaultError, LabNotReady
from chaos_runner.target.lab import LabState, SshTarget
from chaosfault.kinds import FAULTS
from chaosfault.validation import FaultInputError
from chaosfault.validation import validate as validate_fault

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 60.0
# A `proc` answer takes ~3 ms; one that has not come within this is a lost sample.
PROBE_TIMEOUT_S = 2.0
# Renewed every 2 s, the runner's 6 s lease (faults.steps.LEASE_S) outlives a lost renewal,
# and a dead controller's faults are healed by their hosts within ~6.5 s.
RENEW_EVERY_S = 2.0

FAULT_KINDS: tuple[str, ...] = tuple(sorted(FAULTS))

# A lost request or answer (socket.timeout is an OSError; ValueError: a closed file).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    paramiko.SSHException,
)


# FaultClient has a `list` method, which shadows the builtin in its annotations.
FaultIds = list[str]
ProgramStates = list[dict[str, Any]]


class AgentTransportError(FaultError):
    """A request or its answer was lost on the way: the channel is out of step and unusable."""


@dataclass(frozen=True)
class FaultSpec:
    host: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    ttl_s: float = 60.0
    id: str | None = None
    lease_s: float | None = None

    def request(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": self.kind, "params": self.params, "ttl_s": self.ttl_s}
        if self.id:
            body["id"] = self.id
        if self.lease_s is not None:
            body["lease_s"] = self.lease_s
        return body


def new_fault_id(kind: str) -> str:
    """A fresh id for one fault of `kind` (`cache.write_fail` -> `cache-write-fail-1a2b3c4d`)."""
    return f"{kind.replace('.', '-').replace('_', '-')}-{uuid.uuid4().hex[:8]}"


def validate(spec: FaultSpec, state: LabState) -> None:
    """Raise ConfigError naming the bad parameter; nothing is sent for an invalid fault."""
    if spec.host not in state.hosts:
        raise ConfigError(
            f"host: unknown lab host {spec.host!r}; known: {', '.join(sorted(state.hosts))}"
        )
    try:
        validate_fault(spec.request())
    except FaultInputError as exc:
        raise ConfigError(f"fault {spec.kind!r} on {spec.host}: {exc}") from None


def validate_request(kind: str, params: dict[str, Any], ttl_s: float = 60.0) -> str | None:
    """The agent's own complaint about a fault request ("params.x: ..."), or None."""
    try:
        validate_fault({"kind": kind, "params": params, "ttl_s": ttl_s})
    except FaultInputError as exc:
        return str(exc)
    return None


class Fault(Protocol):
    """What the scenario runner needs from a fault (inject / verify / heal)."""

    def inject(self) -> dict[str, Any]: ...

    def verify(self) -> dict[str, Any]: ...

    def heal(self) -> dict[str, Any]: ...


class AgentChannel:
    """One persistent `chaosfault serve` on one host, over one SSH channel. Calls from
    several threads are serialised: one request and its answer at a time."""

    def __init__(self, target: SshTarget) -> None:
        self.host = target.host
        if not (target.agent and target.agent_config):
            raise LabNotReady(
                f"{target.host}: no fault agent is recorded for this host (run `chaoslab lab up`)"
            )
        sock = socket.create_connection((target.address, target.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = paramiko.SSHClient()
        # A host key not in the known_hosts Ansible used is refused, never learned.
        if target.known_hosts.is_file():
            self._client.load_host_keys(str(target.known_hosts))
        self._client.set_missing_host_key_policy(paramiko.RejectPolicy())
        own_keys = target.key_file is None  # the controller user's keys and agent
        self._client.connect(
            target.address,
            port=target.port,
            username=target.user,
            key_filename=None if own_keys else str(target.key_file),
            sock=sock,
            look_for_keys=own_keys,
            allow_agent=own_keys,
            timeout=10,
        )
        transport = self._client.get_transport()
        assert transport is not None
        self._channel = transport.open_session()
        argv = ["/usr/bin/python3", target.agent, "--config", target.agent_config, "serve"]
        self._channel.exec_command(f"SHLVL=1 {target.command(argv)}")
        self._stdin = self._channel.makefile_stdin("wb")
        self._stdout = self._channel.makefile("r")
        self._lock = threading.Lock()
        self._rids = itertools.count(1)
        self._rid_prefix = uuid.uuid4().hex[:8]
        self.broken = False

    def call(self, request: dict[str, Any], timeout_s: float = CALL_TIMEOUT_S) -> dict[str, Any]:
        op = request.get("op")
        with self._lock:
            if self.broken:
                raise AgentTransportError(f"{self.host}: {op}: the channel broke earlier")
            rid = f"{self._rid_prefix}-{next(self._rids)}"
            line = json.dumps({**request, "rid": rid}) + "\n"
            try:
                self._channel.settimeout(timeout_s)
                self._stdin.write(line.encode())
                self._stdin.flush()
                answer_line = self._stdout.readline()
            except TRANSPORT_ERRORS as exc:
                self.broken = True
                problem = (
                    f"no answer within {timeout_s:g} s"
                    if isinstance(exc, TimeoutError)
                    else f"connection lost ({type(exc).__name__}: {exc})"
                )
                raise AgentTransportError(f"{self.host}: {op}: {problem}") from exc
            if not answer_line:
                self.broken = True
                raise AgentTransportError(
                    f"{self.host}: {op}: the fault agent closed its channel {self._stderr()}"
                )
            try:
                answer = json.loads(answer_line)
            except ValueError as exc:
                self.broken = True
                raise AgentTransportError(
                    f"{self.host}: {op}: the answer is not JSON ({exc}): {answer_line[:200]!r}"
                ) from exc
            if not isinstance(answer, dict) or answer.get("rid") != rid:
                # An answer to an earlier request (one that timed out): out of step for good.
                self.broken = True
                got = answer.get("rid") if isinstance(answer, dict) else None
                raise AgentTransportError(
                    f"{self.host}: {op}: answer to request {got!r}, expected {rid!r}"
                )
        return answer

    def _stderr(self) -> str:
        with contextlib.suppress(*TRANSPORT_ERRORS):
            if self._channel.recv_stderr_ready():
                return str(self._channel.recv_stderr(4096).decode(errors="replace")).strip()
        return ""

    def close(self) -> None:
        try:
            with contextlib.suppress(*TRANSPORT_ERRORS):
                self._stdin.close()
                self._channel.close()
        finally:
            self._client.close()


class FaultClient:
    """Fast-path access to the fault agents of every lab host, with lease renewal."""

    def __init__(
        self,
        state: LabState,
        renew_every_s: float = RENEW_EVERY_S,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self.state = state
        self.renew_every_s = renew_every_s
        self.call_timeout_s = call_timeout_s
        self._channels: dict[str, AgentChannel] = {}
        self._channels_lock = threading.Lock()
        # Renewals travel on their own channels: never queued behind a slow request.
        self._lease_channels: dict[str, AgentChannel] = {}
        self._lease_channels_lock = threading.Lock()
        # So do the process sampler's probes.
        self._probe_channels: dict[str, AgentChannel] = {}
        self._probe_channels_lock = threading.Lock()
        self._leases: dict[str, dict[str, float]] = {}  # host -> fault id -> lease_s
        self._leases_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._renewing: dict[str, threading.Thread] = {}
        # Faults whose host no longer held them when renewed (its lease ran out): the
        # runner must not go on believing they are in effect.
        self.lost: list[tuple[str, str]] = []
        self._stop = threading.Event()

    def __enter__(self) -> FaultClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop renewing and close every connection. Faults still leased are left to their
        hosts, which heal them when the lease runs out."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=self.renew_every_s + 1.0)
            self._renewer = None
        for pool, lock in (
            (self._channels, self._channels_lock),
            (self._lease_channels, self._lease_channels_lock),
            (self._probe_channels, self._probe_channels_lock),
        ):
            with lock:
                channels = list(pool.values())
                pool.clear()
            for channel in channels:
                with contextlib.suppress(Exception):
                    channel.close()

    # ---------------------------------------------------------------- channels
    def channel(self, host: str) -> AgentChannel:
        return self._channel(host, self._channels, self._channels_lock)

    def _channel(
        self, host: str, pool: dict[str, AgentChannel], lock: threading.Lock
    ) -> AgentChannel:
        if host not in self.state.hosts:
            raise ConfigError(
                f"host: unknown lab host {host!r}; known: {', '.join(sorted(self.state.hosts))}"
            )
        background = pool is not self._channels  # renewals and probes end with close()
        if background and self._stop.is_set():
            raise FaultError(f"{host}: {self._stopped(pool)}")
        with lock:
            existing = pool.get(host)
        if existing is not None:
            return existing
        opened = self._connect(host)  # outside the lock: one slow host delays no other
        with lock:
            closed = background and self._stop.is_set()
            existing = opened if closed else pool.setdefault(host, opened)
        if closed:
            # close() ran while this connection was being opened: do not leak it.
            opened.close()
            raise FaultError(f"{host}: {self._stopped(pool)}")
        if existing is not opened:
            opened.close()
        return existing

    def _stopped(self, pool: dict[str, AgentChannel]) -> str:
        what = "lease renewal" if pool is self._lease_channels else "process sampling"
        return f"{what} has stopped (client closed)"

    def _connect(self, host: str) -> AgentChannel:
        target = self.state.ssh(host)
        try:
            return AgentChannel(target)
        except (OSError, paramiko.SSHException) as exc:
            raise LabNotReady(
                f"cannot reach the fault agent on {host} ({target.user}@{target.address}:"
                f"{target.port}): {exc} - check the host's address, SSH key and known_hosts"
            ) from exc

    def _drop(
        self, host: str, channel: AgentChannel, pool: dict[str, AgentChannel], lock: threading.Lock
    ) -> None:
        with lock:
            if pool.get(host) is channel:
                del pool[host]
        with contextlib.suppress(Exception):
            channel.close()

    def _call(
        self,
        host: str,
        request: dict[str, Any],
        timeout_s: float | None = None,
        lease: bool = False,
        probe: bool = False,
    ) -> Any:
        if lease:
            pool, lock = self._lease_channels, self._lease_channels_lock
        elif probe:
            pool, lock = self._probe_channels, self._probe_channels_lock
        else:
            pool, lock = self._channels, self._channels_lock
        timeout = self.call_timeout_s if timeout_s is None else timeout_s
        op = request.get("op")
        channel = self._channel(host, pool, lock)
        try:
            answer = channel.call(request, timeout)
        except AgentTransportError as first:
            log.warning("%s; reconnecting once to repeat it", first)
            self._drop(host, channel, pool, lock)
            try:
                channel = self._channel(host, pool, lock)
                answer = channel.call(request, timeout)
            except (AgentTransportError, LabNotReady) as again:
                self._drop(host, channel, pool, lock)
                raise FaultError(
                    f"{host}: {op} failed after one reconnect: {again} (first: {first})"
                ) from again
        if not answer.get("ok"):
            error = f"{host}: {answer.get('error')}"
            raise ConfigError(error) if answer.get("input_error") else FaultError(error)
        return answer["result"]

    # -------------------------------------------------------------- operations
    def inject(self, spec: FaultSpec) -> dict[str, Any]:
        if spec.id is None:
            # Chosen here, so a request repeated after a lost answer is the same fault.
            spec = replace(spec, id=new_fault_id(spec.kind))
        validate(spec, self.state)
        started = time.monotonic_ns()
        result: dict[str, Any] = self._call(spec.host, {"op": "inject", "fault": spec.request()})
        result["host"] = spec.host
        result["call_ns"] = time.monotonic_ns() - started
        if spec.lease_s is not None and not result.get("skipped"):
            self._hold_lease(spec.host, str(result["id"]), spec.lease_s)
        log.info("injected %s on %s via %s", result.get("id"), spec.host, result.get("mechanism"))
        return result

    def verify(self, host: str, fault_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(host, {"op": "verify", "id": fault_id})
        return result

    def heal(self, host: str, fault_id: str) -> dict[str, Any]:
        # Released first: should this heal fail, the host heals the fault when the lease ends.
        self._release_lease(host, fault_id)
        result: dict[str, Any] = self._call(host, {"op": "heal", "id": fault_id})
        return result

    def heal_all(self, hosts: list[str] | None = None) -> dict[str, dict[str, Any]]:
        targets = hosts or sorted(self.state.hosts)
        with self._leases_lock:
            for host in targets:
                self._leases.pop(host, None)
        out: dict[str, dict[str, Any]] = {}
        for host in targets:
            # One unreachable host must not keep the others from being healed.
            try:
                out[host] = self._call(host, {"op": "heal", "all": True})
            except ChaosRunnerError as exc:
                log.error("heal-all on %s failed: %s", host, exc)
                out[host] = {
                    "healed": [],
                    "swept": [],
                    "remaining": {"left": [f"not healed: {exc}"]},
                    "error": str(exc),
                }
        return out

    def artifacts(self, host: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(host, {"op": "artifacts"})
        return result

    def list(self, host: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(host, {"op": "list"})
        return result

    def capabilities(self, host: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(host, {"op": "capabilities"})
        return result

    def programs(self, host: str) -> ProgramStates:
        """Every program with a pidfile on the host: {name, pid, alive, rss_kb, active,
        unit_state}."""
        result: ProgramStates = self._call(host, {"op": "programs"})
        return result

    def proc(self, host: str, program: str) -> dict[str, int | None]:
        """One program's {pid, rss_kb} (pid None: not running), over the probe channel."""
        result: dict[str, int | None] = self._call(
            host, {"op": "proc", "program": program}, timeout_s=PROBE_TIMEOUT_S, probe=True
        )
        return result

    # ------------------------------------------------------------------ leases
    def leased(self) -> dict[str, FaultIds]:
        """Host -> ids of the faults this client keeps alive."""
        with self._leases_lock:
            return {host: sorted(ids) for host, ids in self._leases.items() if ids}

    def renew(self, host: str, fault_ids: FaultIds, lease_s: float) -> dict[str, FaultIds]:
        """One `renew` request: {"renewed": [...], "missing": [...], "unleased": [...]}."""
        request = {"op": "renew", "ids": fault_ids, "lease_s": lease_s}
        result: dict[str, FaultIds] = self._call(
            host, request, timeout_s=max(self.renew_every_s, 1.0), lease=True
        )
        return result

    def renew_leases(self, hosts: FaultIds | None = None) -> None:
        """Renew every leased fault (one request per host and lease length); failures are
        logged, never raised: the runner's own heal stays the normal way out."""
        for host in hosts or sorted(self.leased()):
            self._renew_host(host)

    def _hold_lease(self, host: str, fault_id: str, lease_s: float) -> None:
        with self._leases_lock:
            self._leases.setdefault(host, {})[fault_id] = lease_s
            if self._renewer is None:
                self._stop = threading.Event()
                self._renewer = threading.Thread(
                    target=self._renew_loop, name="fault-lease-renewer", daemon=True
                )
                self._renewer.start()

    def _release_lease(self, host: str, fault_id: str) -> bool:
        with self._leases_lock:
            return self._leases.get(host, {}).pop(fault_id, None) is not None

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every_s):
            for host in self.leased():
                # One thread per host and round: a host that does not answer delays only
                # its own renewals; a renewal still running is not stacked on.
                running = self._renewing.get(host)
                if running is not None and running.is_alive():
                    log.warning("%s: the previous lease renewal is still running", host)
                    continue
                worker = threading.Thread(
                    target=self._renew_host, args=(host,), name=f"renew-{host}", daemon=True
                )
                self._renewing[host] = worker
                worker.start()

    def _renew_host(self, host: str) -> None:
        with self._leases_lock:
            faults = dict(self._leases.get(host, {}))
        by_length: dict[float, FaultIds] = {}
        for fault_id, lease_s in sorted(faults.items()):
            by_length.setdefault(lease_s, []).append(fault_id)
        for lease_s, ids in by_length.items():
            try:
                result = self.renew(host, ids, lease_s)
            except Exception as exc:  # logged, never raised into the runner
                log.warning("%s: lease renewal of %s failed: %s", host, ", ".join(ids), exc)
                continue
            for fault_id in result.get("missing", []):
                if self._release_lease(host, fault_id):
                    self.lost.append((host, fault_id))
                    log.warning(
                        "%s: fault %s is gone (its lease ran out there); renewals stop",
                        host,
                        fault_id,
                    )
            for fault_id in result.get("unleased", []):
                if self._release_lease(host, fault_id):
                    log.warning(
                        "%s: fault %s is no longer leased there (healed by its host?);"
                        " renewals stop",
                        host,
                        fault_id,
                    )


def rotated_jwks(pki_dir: Path, new_kid: str, keep: list[str] | None = None) -> dict[str, Any]:
    """Create signing key `new_kid` on the controller (0600, like every lab key) and return
    the public JWKS document publishing it after the kids in `keep`."""
    from chaos_runner.target.pki import jwk_for, load_or_create_signing_key

    kids = [*(keep or []), new_kid]
    return {"keys": [jwk_for(kid, load_or_create_signing_key(pki_dir, kid)) for kid in kids]}


def artifacts_left(artifacts: dict[str, Any]) -> list[str]:
    """What an `artifacts` answer (or heal-all's `remaining`) says is still on the host: the
    agent's own `left` list, so the names of artifact kinds live in the agent alone."""
    if not isinstance(artifacts.get("left"), list):
        raise FaultError("the agent's artifacts answer has no 'left' list: run the faults role")
    return [str(item) for item in artifacts["left"]]
