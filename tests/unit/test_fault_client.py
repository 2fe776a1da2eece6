"""FaultClient's own logic, with stand-in channels (no SSH, no host): one reconnect and one
retry on a transport error, errors naming host and operation, and lease renewal."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos_runner.errors import ConfigError, FaultError
from chaos_runner.faults.channel import (
    PROBE_TIMEOUT_S,
    AgentChannel,
    AgentTransportError,
    FaultClient,
    FaultSpec,
    artifacts_left,
)


class FakeChannel:
    """Answers like an agent: each entry of `script` is an answer dict, or an exception to
    raise as the transport would (after AgentChannel turned it into AgentTransportError)."""

    def __init__(self, host: str, script: list | None = None) -> None:
        self.host = host
        self.script = list(script or [])
        self.requests: list[dict] = []
        self.closed = False
        self.lock = threading.Lock()

    def call(self, request: dict, timeout_s: float = 60.0) -> dict:
        with self.lock:
            self.requests.append(request)
            step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        if step is not None:
            return step
        if request["op"] == "renew":
            renewed = {"renewed": request["ids"], "missing": [], "unleased": []}
            return {"ok": True, "result": renewed}
        if request["op"] == "inject":
            return {"ok": True, "result": {"id": request["fault"]["id"], "mechanism": "iptables"}}
        return {"ok": True, "result": {"id": request.get("id"), "healed": True}}

    def close(self) -> None:
        self.closed = True


def lost(host: str, op: str) -> AgentTransportError:
    return AgentTransportError(f"{host}: {op}: no answer within 60 s")


@pytest.fixture()
def client(tmp_path: Path):
    state = SimpleNamespace(
        hosts={"db1": {"address": "198.18.0.10"}, "app1": {"address": "198.18.0.20"}},
        settings=SimpleNamespace(state_dir=tmp_path),
        guard=SimpleNamespace(check=lambda address: address),
        ssh_key=tmp_path / "ssh" / "id_ed25519",
        known_hosts=tmp_path / "ssh" / "known_hosts",
    )
    fault_client = FaultClient(state, renew_every_s=0.05)  # type: ignore[arg-type]
    fault_client.connects = []  # type: ignore[attr-defined]

    def connect(host: str) -> FakeChannel:
        channel = FakeChannel(host)
        fault_client.connects.append(channel)  # type: ignore[attr-defined]
        return channel

    fault_client._connect = connect  # type: ignore[method-assign]
    yield fault_client
    fault_client.close()


def test_a_transport_error_reconnects_once_and_repeats_the_request(client):
    broken = FakeChannel("db1", [lost("db1", "heal")])
    client._channels["db1"] = broken
    assert client.heal("db1", "f1") == {"id": "f1", "healed": True}
    assert broken.closed and len(client.connects) == 1
    fresh = client._channels["db1"]
    assert fresh is client.connects[0] and fresh.requests == broken.requests
    assert broken.requests == [{"op": "heal", "id": "f1"}]


def test_inject_is_repeated_with_the_same_id(client):
    client._channels["db1"] = FakeChannel("db1", [lost("db1", "inject")])
    result = client.inject(FaultSpec("db1", "net.reset", {"port": 5432}, ttl_s=30))
    fresh = client._channels.get("db1")
    assert fresh is client.connects[0]
    sent = fresh.requests[0]["fault"]
    assert sent["id"] == result["id"] and sent["id"].startswith("net-reset-")


def test_a_second_transport_error_is_a_fault_error_naming_host_and_op(client):
    client._channels["db1"] = FakeChannel("db1", [lost("db1", "verify")])

    def connect_broken(host: str) -> FakeChannel:
        channel = FakeChannel(host, [lost(host, "verify")])
        client.connects.append(channel)
        return channel

    client._connect = connect_broken
    with pytest.raises(FaultError) as err:
        client.verify("db1", "f1")
    assert "db1: verify failed after one reconnect" in str(err.value)
    assert len(client.connects) == 1 and client.connects[0].closed
    assert "db1" not in client._channels  # the next call starts from a fresh connection


def test_agent_errors_are_not_retried(client):
    client._channels["db1"] = FakeChannel(
        "db1",
        [
            {"ok": False, "error": "params.port: required", "input_error": True},
            {"ok": False, "error": "iptables failed", "input_error": False},
        ],
    )
    with pytest.raises(ConfigError, match=r"db1: params\.port: required"):
        client.heal("db1", "f1")
    with pytest.raises(FaultError, match="db1: iptables failed"):
        client.heal("db1", "f1")
    assert client.connects == []


def test_leased_faults_are_renewed_per_host_until_healed(client):
    client._channels["db1"] = FakeChannel("db1")
    client._channels["app1"] = FakeChannel("app1")
    for host, fault_id in (("db1", "a"), ("db1", "b"), ("app1", "c")):
        client.inject(FaultSpec(host, "net.reset", {"port": 1}, id=fault_id, lease_s=6))
    assert client.leased() == {"app1": ["c"], "db1": ["a", "b"]}
    renewals = wait_for_renewals(client, {"db1", "app1"})
    assert {"op": "renew", "ids": ["a", "b"], "lease_s": 6} in renewals["db1"]
    assert {"op": "renew", "ids": ["c"], "lease_s": 6} in renewals["app1"]
    # Renewals travel on their own channels, never on the runner's.
    assert all(r["op"] != "renew" for ch in client._channels.values() for r in ch.requests)
    client.heal("db1", "a")
    assert client.leased() == {"app1": ["c"], "db1": ["b"]}
    client.heal_all(["app1"])
    assert client.leased() == {"db1": ["b"]}


def test_renewal_failures_are_logged_not_raised(client, caplog):
    client.renew_every_s = 3600  # renewals driven by the test alone
    client._channels["db1"] = FakeChannel("db1")
    client.inject(FaultSpec("db1", "net.reset", {"port": 1}, id="a", lease_s=6))
    client._lease_channels["db1"] = FakeChannel(
        "db1", [{"ok": False, "error": "disk full", "input_error": False}]
    )
    client.renew_leases()
    assert "db1: lease renewal of a failed: db1: disk full" in caplog.text
    client._lease_channels["db1"] = FakeChannel("db1", [lost("db1", "renew")])
    client._connect = lambda host: FakeChannel(host, [lost(host, "renew")])
    client.renew_leases()
    assert "db1: renew failed after one reconnect" in caplog.text
    assert client.leased() == {"db1": ["a"]}


def test_faults_the_host_no_longer_has_stop_being_renewed(client):
    client.renew_every_s = 3600  # renewals driven by the test alone
    client._channels["db1"] = FakeChannel("db1")
    client.inject(FaultSpec("db1", "net.reset", {"port": 1}, id="a", lease_s=6))
    client._lease_channels["db1"] = FakeChannel(
        "db1", [{"ok": True, "result": {"renewed": [], "missing": ["a"], "unleased": []}}]
    )
    client.renew_leases()
    assert client.leased() == {}


def test_close_stops_the_renewer_and_closes_every_channel(client):
    runner = client._channels["db1"] = FakeChannel("db1")
    client.inject(FaultSpec("db1", "net.reset", {"port": 1}, id="a", lease_s=6))
    wait_for_renewals(client, {"db1"})
    renewer = client._renewer
    client.close()
    assert renewer is not None and not renewer.is_alive()
    assert runner.closed and all(ch.closed for ch in client.connects)
    assert client._channels == {} and client._lease_channels == {}


def test_probes_travel_on_their_own_channel_with_a_short_timeout(client):
    runner = client._channels["app1"] = FakeChannel("app1")
    timeouts: list[float] = []

    class Probing(FakeChannel):
        def call(self, request: dict, timeout_s: float = 60.0) -> dict:
            timeouts.append(timeout_s)
            super().call(request, timeout_s)
            return {"ok": True, "result": {"pid": 41, "rss_kb": 2048}}

    client._connect = lambda host: Probing(host)
    assert client.proc("app1", "fraiseql") == {"pid": 41, "rss_kb": 2048}
    assert client._probe_channels["app1"].requests == [{"op": "proc", "program": "fraiseql"}]
    assert runner.requests == [] and timeouts == [PROBE_TIMEOUT_S]
    # The status listing is an ordinary request on the runner's channel.
    runner.script.append({"ok": True, "result": [{"name": "fraiseql", "active": True}]})
    assert client.programs("app1") == [{"name": "fraiseql", "active": True}]
    assert runner.requests == [{"op": "programs"}]


def test_after_close_probes_are_refused_and_open_no_connection(client):
    client.close()
    with pytest.raises(FaultError, match="app1: process sampling has stopped"):
        client.proc("app1", "fraiseql")
    assert client.connects == [] and client._probe_channels == {}


def test_artifacts_left_is_the_agents_own_list():
    assert artifacts_left({"records": [], "left": []}) == []
    assert artifacts_left({"left": ["qdisc", "records=['x']"]}) == ["qdisc", "records=['x']"]
    with pytest.raises(FaultError, match="no 'left' list"):
        artifacts_left({"records": ["x"]})


def test_channel_checks_the_request_id_of_each_answer():
    channel = AgentChannel.__new__(AgentChannel)
    channel.host, channel.broken = "db1", False
    channel._lock = threading.Lock()
    channel._rids, channel._rid_prefix = iter(range(1, 100)), "p"
    sent: list[str] = []
    answers = [json.dumps({"ok": True, "result": 1, "rid": "p-1"}), '{"ok": true, "rid": "p-1"}']
    channel._channel = SimpleNamespace(settimeout=lambda s: None, recv_stderr_ready=lambda: False)
    channel._stdin = SimpleNamespace(write=lambda b: sent.append(b.decode()), flush=lambda: None)
    channel._stdout = SimpleNamespace(readline=lambda: answers.pop(0) + "\n")
    assert channel.call({"op": "ping"}) == {"ok": True, "result": 1, "rid": "p-1"}
    assert json.loads(sent[0]) == {"op": "ping", "rid": "p-1"}
    with pytest.raises(AgentTransportError, match="db1: ping: answer to request 'p-1'"):
        channel.call({"op": "ping"})
    with pytest.raises(AgentTransportError, match="broke earlier"):
        channel.call({"op": "ping"})


def wait_for_renewals(client, hosts: set[str], timeout_s: float = 5.0) -> dict[str, list[dict]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = {
            ch.host: [r for r in ch.requests if r["op"] == "renew"]
            for ch in client.connects
            if any(r["op"] == "renew" for r in ch.requests)
        }
        if hosts <= set(seen):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"no renewal for {hosts} within {timeout_s} s")
