"""The fault library on the lab: every effect is measured from the peer's side, then healed."""

from __future__ import annotations

import itertools
import os
import re
import select
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from chaos_runner.errors import ConfigError
from chaos_runner.faults.channel import FaultClient, FaultSpec, artifacts_left
from chaos_runner.target.lab import on_host, start_on_host
from tests.conftest import REPO, chaoslab

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("healed_after")]

CONTROLLER = "198.18.0.1"


@pytest.fixture(scope="module")
def faults(lab):
    with FaultClient(lab) as client:
        yield client
        client.heal_all()


def addr(lab, host):
    return lab.hosts[host]["address"]


def connect_ms(address: str, port: int, timeout: float = 3.0) -> float | None:
    start = time.perf_counter()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return (time.perf_counter() - start) * 1000
    except TimeoutError:
        return None


def on_peer(lab, host: str, code: str, timeout: float = 30) -> str:
    """Run Python on a lab host: the peer's point of view."""
    return on_host(lab, host, "python3", "-c", code, timeout=timeout).stdout.strip()


def icmp_delivery(address: str, count: int = 400, gap_s: float = 0.002) -> float:
    """Fraction of ICMP echo requests answered (raw socket; the controller is root)."""
    return len(set(icmp_replies(address, count, gap_s))) / count


def icmp_replies(address: str, count: int = 400, gap_s: float = 0.002) -> list[int]:
    """Sequence numbers of the echo replies, in the order they arrived."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    answered: list[int] = []

    def checksum(data: bytes) -> int:
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        total = (total >> 16) + (total & 0xFFFF)
        return ~(total + (total >> 16)) & 0xFFFF

    for seq in range(count):
        header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        payload = b"chaoslab"
        packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload
        sock.sendto(packet, (address, 0))
        time.sleep(gap_s)
        while select.select([sock], [], [], 0)[0]:
            _collect(sock, ident, answered)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0.1)[0]:
            _collect(sock, ident, answered)
    sock.close()
    return answered


def _collect(sock: socket.socket, ident: int, answered: list[int]) -> None:
    data = sock.recv(1024)
    icmp = data[(data[0] & 0x0F) * 4 :]
    kind, _, _, rid, seq = struct.unpack("!BBHHH", icmp[:8])
    if kind == 0 and rid == ident:
        answered.append(seq)


# ------------------------------------------------------------------ network


def test_delay_200ms_is_measured_at_the_peer(lab, faults):
    db = addr(lab, "db1")
    before = statistics.median(connect_ms(db, 5432) for _ in range(10))
    fault = faults.inject(
        FaultSpec("db1", "net.delay", {"delay_ms": 200, "peer": CONTROLLER}, ttl_s=60)
    )
    assert fault["mechanism"] in ("nfqueue", "netem")
    assert faults.verify("db1", fault["id"])["ok"]
    during = [connect_ms(db, 5432) for _ in range(10)]
    added = statistics.median(during) - before
    assert 180 <= added <= 220, (before, during)
    faults.heal("db1", fault["id"])
    assert statistics.median(connect_ms(db, 5432) for _ in range(5)) < before + 20


def test_syn_delay_slows_only_new_connections(lab, faults):
    db = addr(lab, "db1")
    established = socket.create_connection((db, 5432), timeout=3)
    faults.inject(
        FaultSpec("db1", "net.delay", {"delay_ms": 300, "port": 5432, "syn_only": True}, ttl_s=60)
    )
    assert 280 <= connect_ms(db, 5432) <= 400
    # Traffic on an existing connection is not delayed: an SSL request answers at once.
    start = time.perf_counter()
    established.sendall(struct.pack("!II", 8, 80877103))
    assert established.recv(1) == b"N"
    assert (time.perf_counter() - start) * 1000 < 100
    established.close()


def test_random_loss_30_percent_is_measured_within_20_to_40(lab, faults):
    db = addr(lab, "db1")
    assert icmp_delivery(db, count=100) > 0.99
    faults.inject(FaultSpec("db1", "net.loss", {"probability": 0.3, "peer": CONTROLLER}, ttl_s=60))
    loss = 1 - icmp_delivery(db)
    assert 0.2 <= loss <= 0.4, loss


def test_reorder_delivers_packets_out_of_order(lab, faults):
    db = addr(lab, "db1")
    in_order = icmp_replies(db, count=100)
    assert in_order == sorted(in_order)
    fault = faults.inject(
        FaultSpec(
            "db1", "net.reorder", {"delay_ms": 20, "probability": 0.3, "peer": CONTROLLER}, ttl_s=60
        )
    )
    assert fault["mechanism"] in ("nfqueue", "netem")
    replies = icmp_replies(db, count=200)
    inversions = sum(1 for a, b in itertools.pairwise(replies) if b < a)
    assert len(set(replies)) >= 190, "reorder must not lose packets"
    assert inversions >= 10, inversions


def test_corrupted_segments_are_dropped_by_the_receiver(lab, faults):
    db = addr(lab, "db1")
    faults.inject(
        FaultSpec(
            "db1", "net.corrupt", {"probability": 1.0, "peer": CONTROLLER, "port": 5432}, ttl_s=60
        )
    )
    # Every segment arriving at 5432 has a flipped bit: its checksum fails, the kernel
    # drops it, so even the handshake cannot complete.
    assert connect_ms(db, 5432, timeout=2) is None
    faults.heal_all(["db1"])
    assert connect_ms(db, 5432) is not None


def test_partition_times_out_and_heal_restores(lab, faults):
    fault = faults.inject(
        FaultSpec("db1", "net.partition", {"peer": addr(lab, "proxy1")}, ttl_s=60)
    )
    probe = (
        f"import socket\ntry:\n socket.create_connection(('{addr(lab, 'db1')}', 5432), timeout=1)\n"
        " print('connected')\nexcept TimeoutError:\n print('timeout')"
    )
    assert on_peer(lab, "proxy1", probe) == "timeout"
    assert "matched packets=" in faults.verify("db1", fault["id"])["evidence"]
    faults.heal("db1", fault["id"])
    assert on_peer(lab, "proxy1", probe) == "connected"


def test_one_way_partition_drops_only_one_direction(lab, faults):
    faults.inject(
        FaultSpec(
            "db1", "net.partition", {"peer": addr(lab, "proxy1"), "direction": "out"}, ttl_s=60
        )
    )
    probe = (
        f"import socket\ntry:\n socket.create_connection(('{addr(lab, 'db1')}', 5432), timeout=1)\n"
        " print('connected')\nexcept TimeoutError:\n print('timeout')"
    )
    # SYN arrives (in is open), SYN-ACK is dropped on the way out: the peer times out,
    # while the controller (not partitioned) still connects.
    assert on_peer(lab, "proxy1", probe) == "timeout"
    assert connect_ms(addr(lab, "db1"), 5432) is not None


def test_reset_refuses_connections_fast(lab, faults):
    faults.inject(FaultSpec("db1", "net.reset", {"port": 5432}, ttl_s=60))
    start = time.perf_counter()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((addr(lab, "db1"), 5432), timeout=3)
    assert (time.perf_counter() - start) * 1000 < 50


def test_bandwidth_limit_is_measured(lab, faults, db_admin):
    def transfer_s() -> float:
        start = time.perf_counter()
        db_admin.execute("SELECT repeat('x', 2000000)").fetchone()
        return time.perf_counter() - start

    assert transfer_s() < 0.5
    fault = faults.inject(FaultSpec("db1", "net.bandwidth", {"rate_kbit": 4000}, ttl_s=60))
    assert fault["mechanism"] == "tc-tbf"
    elapsed = transfer_s()
    rate_kbit = 2_000_000 * 8 / 1000 / elapsed
    assert 3000 <= rate_kbit <= 4400, rate_kbit


def test_duplicate_is_skipped_with_a_reason_without_netem(lab, faults):
    caps = faults.capabilities("db1")
    result = faults.inject(FaultSpec("db1", "net.duplicate", {"probability": 0.02}, ttl_s=30))
    if caps["netem"]:
        assert result["mechanism"] == "netem"
    else:
        assert result["skipped"] and "sch_netem" in result["mechanism"]


# ------------------------------------------------------------------ process


def test_pause_stops_answers_and_heal_resumes(lab, faults):
    url = lab.app("app1").url + "/health"
    fault = faults.inject(FaultSpec("app1", "proc.pause", {"program": "fraiseql"}, ttl_s=60))
    assert faults.verify("app1", fault["id"])["ok"]
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        urllib.request.urlopen(url, timeout=1)
    faults.heal("app1", fault["id"])
    assert urllib.request.urlopen(url, timeout=5).status == 200


def app_pid(faults) -> int | None:
    """FraiseQL's pid on app1, as its fault agent reads it (None: not running)."""
    return faults.proc("app1", "fraiseql")["pid"]


def test_kill_9_is_restarted_by_the_service_layer(lab, faults):
    old = app_pid(faults)
    assert old is not None
    faults.inject(FaultSpec("app1", "proc.kill", {"program": "fraiseql"}, ttl_s=30))
    assert _wait_for_health(lab, lambda: app_pid(faults) not in (None, old))


def _wait_for_health(lab, condition, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if (
                condition()
                and urllib.request.urlopen(lab.app("app1").url + "/health", timeout=1).status == 200
            ):
                return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    return False


# ---------------------------------------------------------------- resources


# CPU share of a process over `seconds`, measured on its own host (its /proc, its clock).
CPU_SHARE = """
import os, sys, time
def ticks():
    fields = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
t0, start = ticks(), time.monotonic()
time.sleep(float(sys.argv[2]))
print((ticks() - t0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - start))
"""


def test_cpu_quota_25_percent_is_a_quarter_core(lab, faults):
    pidfile = "/srv/chaoslab/app1/run/burner.pid"
    burner = start_on_host(lab, "app1", "python3", "-c", "while True: pass")
    on_host(lab, "app1", "sh", "-c", f"echo {burner} > {pidfile}")
    try:

        def share(seconds: float = 2.0) -> float:
            answer = on_host(lab, "app1", "python3", "-c", CPU_SHARE, str(burner), str(seconds))
            return float(answer.stdout)

        # Baseline first: the burner must really own a core (a restarting app can briefly
        # take the other one) before the quota is applied.
        deadline = time.monotonic() + 20
        while share(1.0) <= 0.8:
            assert time.monotonic() < deadline, "the burner never got a whole core before the fault"
        fault = faults.inject(FaultSpec("app1", "res.cpu", {"program": "burner", "quota_pct": 25}))
        assert fault["mechanism"].startswith("cgroup-")
        assert 0.20 <= share() <= 0.30
        faults.heal("app1", fault["id"])
        assert share(1.0) > 0.8
    finally:
        on_host(lab, "app1", "sh", "-c", f"kill -9 {burner}; rm -f {pidfile}", check=False)


def test_memory_cap_below_the_working_set_ooms_and_the_service_layer_restarts(lab, faults):
    old = app_pid(faults)
    fault = faults.inject(
        FaultSpec("app1", "res.memory", {"program": "fraiseql", "limit_mb": 40, "restart": True})
    )
    assert fault["mechanism"].startswith("systemd-unit-"), fault
    deadline = time.monotonic() + 10
    while app_pid(faults) in (None, old) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert app_pid(faults) != old, "the program was not restarted under the unit's cap"
    # The restarted FraiseQL needs more than 40 MB: the kernel OOM-kills it (SIGKILL), systemd
    # restarts it, again, until heal. Each restart gets a new cgroup (a new OOM counter), so
    # the proof is systemd's: its restarts and how the main process ended.
    deadline = time.monotonic() + 60
    while (
        "restarts since inject=0" in faults.verify("app1", fault["id"])["evidence"]
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    verified = faults.verify("app1", fault["id"])
    evidence = verified["evidence"]
    assert verified["ok"], evidence  # the cap is in the unit's cgroup, or systemd's between
    assert "restarts since inject=0" not in evidence, evidence
    assert re.search(r"\(journal\): \d+ x killed, status=9/KILL", evidence), evidence
    faults.heal("app1", fault["id"])
    assert _wait_for_health(lab, lambda: True, timeout_s=60)
    assert artifacts_left(faults.artifacts("app1")) == []


def test_pids_limit_blocks_forks(lab, faults):
    pidfile = "/srv/chaoslab/app1/run/sleeper.pid"
    sleeper = start_on_host(lab, "app1", "sleep", "60")
    on_host(lab, "app1", "sh", "-c", f"echo {sleeper} > {pidfile}")
    try:
        fault = faults.inject(FaultSpec("app1", "res.pids", {"program": "sleeper", "max": 1}))
        evidence = faults.verify("app1", fault["id"])["evidence"]
        assert "pids.max" in evidence and "'1'" in evidence
    finally:
        on_host(lab, "app1", "sh", "-c", f"kill -9 {sleeper}; rm -f {pidfile}", check=False)


# --------------------------------------------------------------- PostgreSQL


def test_table_lock_blocks_queries_visibly_in_pg_locks(lab, faults, db_admin):
    fault = faults.inject(FaultSpec("db1", "pg.lock", {"table": "core.tb_post"}, ttl_s=60))
    done = threading.Event()

    def blocked_query() -> None:
        with psycopg.connect(
            host=addr(lab, "db1"),
            dbname="fraiseql_demo",
            user="chaos_admin",
            password=lab.settings.secret("postgresql_chaos_password"),
            autocommit=True,
        ) as conn:
            conn.execute("SELECT count(*) FROM core.tb_post").fetchone()
        done.set()

    thread = threading.Thread(target=blocked_query, daemon=True)
    thread.start()
    time.sleep(0.5)
    assert not done.is_set()
    evidence = faults.verify("db1", fault["id"])["evidence"]
    assert "1 waiting lock request" in evidence, evidence
    faults.heal("db1", fault["id"])
    assert done.wait(5)


def test_setting_is_forced_and_restored(lab, faults, db_admin):
    fault = faults.inject(
        FaultSpec("db1", "pg.setting", {"name": "statement_timeout", "value": "50ms"})
    )
    assert faults.verify("db1", fault["id"])["ok"]
    with (
        psycopg.connect(
            host=addr(lab, "db1"),
            dbname="fraiseql_demo",
            user="chaos_admin",
            password=lab.settings.secret("postgresql_chaos_password"),
            autocommit=True,
        ) as conn,
        pytest.raises(psycopg.errors.QueryCanceled),
    ):
        conn.execute("SELECT pg_sleep(1)")
    faults.heal("db1", fault["id"])
    assert db_admin.execute(
        "SELECT source FROM pg_settings WHERE name = 'statement_timeout'"
    ).fetchone() == ("default",)


def test_revoke_then_grant(lab, faults, db_admin):
    fault = faults.inject(FaultSpec("db1", "pg.revoke", {"object": "public.v_post"}))
    assert faults.verify("db1", fault["id"])["ok"]
    faults.heal("db1", fault["id"])
    assert db_admin.execute(
        "SELECT has_table_privilege('fraiseql', 'public.v_post', 'SELECT')"
    ).fetchone() == (True,)


def test_drop_index_then_rebuild(lab, faults, db_admin):
    fault = faults.inject(FaultSpec("db1", "pg.drop_index", {"index": "core.tb_post_author_idx"}))
    assert db_admin.execute("SELECT to_regclass('core.tb_post_author_idx')").fetchone() == (None,)
    faults.heal("db1", fault["id"])
    assert db_admin.execute("SELECT to_regclass('core.tb_post_author_idx')::text").fetchone() == (
        "core.tb_post_author_idx",
    )


def test_fill_connections_refuses_new_sessions(lab, faults):
    faults.inject(FaultSpec("db1", "pg.fill_connections", {}, ttl_s=60))
    with pytest.raises(
        psycopg.OperationalError, match=r"too many clients|remaining connection slots"
    ):
        psycopg.connect(
            host=addr(lab, "db1"),
            dbname="fraiseql_demo",
            user="fraiseql",
            password=lab.settings.secret("postgresql_app_password"),
            connect_timeout=3,
        )


def test_terminate_backends_repeatedly(lab, faults):
    conn = psycopg.connect(
        host=addr(lab, "db1"),
        dbname="fraiseql_demo",
        user="fraiseql",
        password=lab.settings.secret("postgresql_app_password"),
        autocommit=True,
    )
    fault = faults.inject(FaultSpec("db1", "pg.terminate", {"interval_ms": 200}, ttl_s=30))
    assert faults.verify("db1", fault["id"])["ok"]
    time.sleep(0.5)
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")


def postmaster_pid(lab) -> str:
    pidfile = "/srv/chaoslab/db1/data/postgresql/postmaster.pid"
    return on_host(lab, "db1", "head", "-1", pidfile).stdout.strip()


def test_crash_postmaster_recovers_by_itself(lab, faults, db_admin):
    pid = postmaster_pid(lab)
    fault = faults.inject(FaultSpec("db1", "pg.crash", {}, ttl_s=30))
    assert faults.verify("db1", fault["id"])["ok"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(
                host=addr(lab, "db1"),
                dbname="fraiseql_demo",
                user="chaos_admin",
                password=lab.settings.secret("postgresql_chaos_password"),
                connect_timeout=1,
            ) as conn:
                conn.execute("SELECT 1")
                break
        except psycopg.OperationalError:
            time.sleep(0.3)
    assert postmaster_pid(lab) != pid
    crash_recovery = "database system was interrupted|was not properly shut down"
    recovered = on_host(
        lab, "db1", "grep", "-q", "-E", crash_recovery, "/srv/chaoslab/db1/log/postgresql.log",
        check=False,
    )  # fmt: skip
    assert recovered.returncode == 0, "PostgreSQL's log shows no crash recovery"


# --------------------------------------------------------------------- JWKS


def test_jwks_500_then_healed(lab, faults):
    url = f"https://{addr(lab, 'auth1')}/.well-known/jwks.json"
    ctx = ssl.create_default_context(cafile=str(lab.settings.state_dir / "pki" / "ca.crt"))
    faults.inject(FaultSpec("auth1", "jwks.response", {"status": 500}, ttl_s=60))
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, context=ctx, timeout=3)
    assert err.value.code == 500
    faults.heal_all(["auth1"])
    assert urllib.request.urlopen(url, context=ctx, timeout=3).status == 200


# ------------------------------------------------------ idempotence, expiry


def test_inject_twice_is_once_and_heal_twice_is_fine(lab, faults):
    spec = FaultSpec("db1", "net.reset", {"port": 5432}, ttl_s=60, id="twice")
    first = faults.inject(spec)
    again = faults.inject(spec)
    assert again.get("already") is True
    assert len(faults.artifacts("db1")["iptables_rules"]) == 1
    assert faults.heal("db1", first["id"])["healed"] is True
    assert faults.heal("db1", first["id"])["healed"] is False
    assert faults.verify("db1", first["id"])["ok"] is False


def test_verify_fails_when_the_fault_is_gone(lab, faults):
    fault = faults.inject(FaultSpec("db1", "net.reset", {"port": 5432}, ttl_s=60))
    # Someone removes the rule behind the agent's back: verify must say so.
    on_host(lab, "db1", "iptables", "-F", "CHAOS-IN")
    assert faults.verify("db1", fault["id"])["ok"] is False


def test_a_killed_controller_leaves_nothing_after_the_ttl(lab):
    code = (
        "import time\n"
        "from chaos_runner.target.lab import LabSettings, LabState\n"
        "from chaos_runner.faults.channel import FaultClient, FaultSpec\n"
        "c = FaultClient(LabState.load(LabSettings.from_env()))\n"
        "c.inject(FaultSpec('db1', 'net.reset', {'port': 5432}, ttl_s=2, id='orphan'))\n"
        "print('injected', flush=True)\n"
        "time.sleep(600)\n"
    )
    controller = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert controller.stdout.readline().strip() == "injected"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((addr(lab, "db1"), 5432), timeout=2)
    controller.send_signal(signal.SIGKILL)
    controller.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection((addr(lab, "db1"), 5432), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        pytest.fail("the fault outlived ttl + grace after the controller was killed")
    with FaultClient(lab) as fresh:
        assert fresh.list("db1") == []


def test_heal_all_after_a_killed_run_leaves_zero_artifacts(lab):
    code = (
        "import time\n"
        "from chaos_runner.target.lab import LabSettings, LabState\n"
        "from chaos_runner.faults.channel import FaultClient, FaultSpec\n"
        "c = FaultClient(LabState.load(LabSettings.from_env()))\n"
        "c.inject(FaultSpec('db1', 'net.partition', {'peer': '198.18.0.12'}, ttl_s=600))\n"
        "c.inject(FaultSpec('db1', 'net.delay', {'delay_ms': 50, 'peer': '198.18.0.1'}, 600))\n"
        "c.inject(FaultSpec('db1', 'net.bandwidth', {'rate_kbit': 1000}, ttl_s=600))\n"
        "c.inject(FaultSpec('db1', 'pg.setting', {'name': 'work_mem', 'value': '64kB'}, 600))\n"
        "c.inject(FaultSpec('db1', 'pg.lock', {'table': 'core.tb_counter'}, ttl_s=600))\n"
        "c.inject(FaultSpec('auth1', 'jwks.response', {'status': 500}, ttl_s=600))\n"
        "c.inject(FaultSpec('auth1', 'proc.pause', {'program': 'nginx'}, ttl_s=600))\n"
        "c.inject(FaultSpec('proxy1', 'res.cpu', {'program': 'haproxy', 'quota_pct': 10}, 600))\n"
        "print('injected', flush=True)\n"
        "time.sleep(600)\n"
    )
    controller = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert controller.stdout.readline().strip() == "injected"
    controller.send_signal(signal.SIGKILL)
    controller.wait()
    proc = chaoslab("heal")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("clean") == len(lab.hosts), proc.stdout
    with FaultClient(lab) as fresh:
        for host in lab.hosts:
            assert artifacts_left(fresh.artifacts(host)) == [], host
    assert chaoslab("lab", "status").returncode == 0


# ------------------------------------------------------- leases, reconnects


def _refused(lab, port: int = 5432) -> bool:
    try:
        socket.create_connection((addr(lab, "db1"), port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _sever(channel) -> None:
    """Close the SSH transport under an agent channel, as a network failure would."""
    channel._client.get_transport().close()


def test_a_dead_controllers_leased_fault_heals_within_its_lease(lab):
    client = FaultClient(lab, renew_every_s=1.0)
    fault = client.inject(
        FaultSpec("db1", "net.reset", {"port": 5432}, ttl_s=600, id="leased", lease_s=3)
    )
    # Renewed, it outlives its lease twice over.
    time.sleep(6.5)
    assert client.verify("db1", fault["id"])["ok"]
    assert _refused(lab)
    # The controller dies: no more renewals, no more connection. The TTL (600 s) is far off.
    client.close()
    dead_at = time.monotonic()
    with FaultClient(lab) as fresh:
        while artifacts_left(fresh.artifacts("db1")) and time.monotonic() - dead_at < 10:
            time.sleep(0.2)
        healed_after_s = time.monotonic() - dead_at
        assert artifacts_left(fresh.artifacts("db1")) == [], healed_after_s
    assert healed_after_s < 10
    agent_log = on_host(lab, "db1", "cat", "/srv/chaoslab/db1/faults/agent.log").stdout
    assert f"lease expired {fault['id']} (net.reset" in agent_log
    assert not _refused(lab)


def test_a_cut_fast_path_reconnects_and_heals(lab, faults):
    fault = faults.inject(FaultSpec("db1", "net.reset", {"port": 5432}, ttl_s=120))
    assert _refused(lab)
    cut = faults.channel("db1")
    _sever(cut)
    assert faults.heal("db1", fault["id"])["healed"] is True
    assert faults.channel("db1") is not cut
    assert not _refused(lab)
    assert faults.list("db1") == []


def test_renewals_survive_a_cut_connection(lab):
    with FaultClient(lab, renew_every_s=1.0) as client:
        fault = client.inject(FaultSpec("db1", "net.reset", {"port": 5432}, ttl_s=120, lease_s=4))
        time.sleep(1.5)  # at least one renewal, so the renewal channel exists
        _sever(client._lease_channels["db1"])
        _sever(client.channel("db1"))
        time.sleep(5)  # longer than the lease: only a reconnected renewal keeps the fault
        assert client.verify("db1", fault["id"])["ok"]
        assert _refused(lab)
        assert client.heal("db1", fault["id"])["healed"] is True
    assert not _refused(lab)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["db1", "net.teleport"], "unknown fault 'net.teleport'"),
        (["db9", "net.reset", "-p", "port=5432"], "unknown lab host 'db9'"),
        (["db1", "net.reset", "-p", "port=5432", "--ttl", "-5"], "ttl_s: -5.0 is outside"),
        (["db1", "net.reset", "-p", "port=5432", "--ttl", "999999"], "ttl_s: 999999.0 is outside"),
        (
            ["db1", "net.loss", "-p", "probability=1.5"],
            "params.probability: 1.5 is outside 0.0..1.0",
        ),
        (["db1", "net.loss", "-p", "probability=0.1", "-p", "peer=8.8.8.8.8"], "params.peer"),
        (["db1", "net.reset", "-p", "port=70000"], "params.port: 70000 is outside"),
        (["db1", "net.delay", "-p", "delay_ms=-1"], "params.delay_ms: -1 is outside"),
        (
            ["db1", "net.reset", "-p", "port=5432", "-p", "colour=red"],
            "unknown parameter(s) ['colour']",
        ),
        (["app1", "res.cpu", "-p", "program=fraiseql"], "params.quota_pct: required"),
        (["app1", "proc.kill", "-p", "program=Robert'); DROP"], "is not a program name"),
    ],
)
def test_bad_fault_input_is_named_and_nothing_is_injected(lab, faults, args, message):
    proc = chaoslab("fault", "inject", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    for host in lab.hosts:
        assert faults.list(host) == []


def test_a_fault_for_a_non_lab_host_is_refused(lab, tmp_path):
    from chaos_runner.faults.channel import validate

    with pytest.raises(ConfigError, match=r"unknown lab host '10\.0\.0\.5'"):
        validate(FaultSpec("10.0.0.5", "net.reset", {"port": 1}), lab)


# ------------------------------------------------------ the Ansible path


def _fault_playbook(lab_settings, tmp_path, name, **extravars):
    from chaos_runner.ansible import run_playbook

    return run_playbook(
        "fault",
        inventory=lab_settings.inventory,
        artifacts_dir=tmp_path / name,
        limit="db1",
        extravars={"lab_state_dir": str(lab_settings.state_dir), **extravars},
    )


def test_ansible_entry_points_inject_verify_heal(lab, lab_settings, tmp_path):
    from chaos_runner.errors import PlaybookFailed

    _fault_playbook(
        lab_settings,
        tmp_path,
        "inject",
        fault_action="inject",
        faults_kind="net.reset",
        faults_params={"port": 5432},
        faults_ttl_s=30,
        faults_id="via-ansible",
    )
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((addr(lab, "db1"), 5432), timeout=2)
    _fault_playbook(
        lab_settings, tmp_path, "verify", fault_action="verify", faults_id="via-ansible"
    )
    _fault_playbook(lab_settings, tmp_path, "heal", fault_action="heal", faults_id="via-ansible")
    socket.create_connection((addr(lab, "db1"), 5432), timeout=2).close()
    with pytest.raises(PlaybookFailed):
        _fault_playbook(
            lab_settings, tmp_path, "verify2", fault_action="verify", faults_id="via-ansible"
        )


def test_ansible_entry_point_rejects_an_unknown_kind(lab, lab_settings, tmp_path):
    from chaos_runner.errors import PlaybookFailed

    with pytest.raises(PlaybookFailed) as err:
        _fault_playbook(
            lab_settings, tmp_path, "bad", fault_action="inject", faults_kind="net.warp"
        )
    assert "faults_kind" in str(err.value) and "net.partition" in str(err.value)


def test_heal_all_playbook_checks_every_host(lab, faults):
    faults.inject(FaultSpec("db1", "net.reset", {"port": 5432}, ttl_s=60))
    proc = chaoslab("heal", "--ansible")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for host in lab.hosts:
        assert artifacts_left(faults.artifacts(host)) == []


def test_jwks_rotation_publishes_only_the_new_key_and_heal_restores(lab, faults):
    from chaos_runner.faults.channel import rotated_jwks
    from chaos_runner.workload.graphql import GraphQLClient
    from chaos_runner.workload.tokens import TokenMinter

    pki = lab.settings.state_dir / "pki"
    url = f"https://{addr(lab, 'auth1')}/.well-known/jwks.json"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    import json as _json

    before = _json.load(urllib.request.urlopen(url, context=ctx, timeout=3))
    document = rotated_jwks(pki, "lab-key-rotated")
    fault = faults.inject(FaultSpec("auth1", "jwks.publish", {"document": document}, ttl_s=60))
    served = _json.load(urllib.request.urlopen(url, context=ctx, timeout=3))
    assert [k["kid"] for k in served["keys"]] == ["lab-key-rotated"]
    assert all("d" not in k for k in served["keys"])
    assert faults.verify("auth1", fault["id"])["ok"]
    # A token signed with the new key is accepted: the app fetches the JWKS on an unknown kid.
    app = lab.app("app1")
    minter = TokenMinter(pki_dir=pki, issuer=app.issuer, audience=app.audience)
    with GraphQLClient(app.url, lab.guard) as client:
        resp = client.execute(
            "{ authors(limit: 1) { name } }", token=minter.mint(kid="lab-key-rotated")
        )
    assert resp.ok, resp.text
    faults.heal("auth1", fault["id"])
    assert _json.load(urllib.request.urlopen(url, context=ctx, timeout=3)) == before


def test_jwks_slow_answers_after_the_injected_delay(lab, faults):
    url = f"https://{addr(lab, 'auth1')}/healthz"
    ctx = ssl.create_default_context(cafile=str(lab.settings.state_dir / "pki" / "ca.crt"))
    faults.inject(FaultSpec("auth1", "net.delay", {"delay_ms": 1000, "port": 443}, ttl_s=60))
    start = time.perf_counter()
    assert urllib.request.urlopen(url, context=ctx, timeout=15).status == 200
    # Every packet to port 443 waits 1 s: handshake and request take several round trips.
    assert time.perf_counter() - start >= 2.0


def test_jwks_invalid_json(lab, faults):
    url = f"https://{addr(lab, 'auth1')}/.well-known/jwks.json"
    ctx = ssl.create_default_context(cafile=str(lab.settings.state_dir / "pki" / "ca.crt"))
    faults.inject(FaultSpec("auth1", "jwks.response", {"status": 200, "body": "this is not json"}))
    body = urllib.request.urlopen(url, context=ctx, timeout=3).read().decode()
    assert body == "this is not json"


def test_stop_then_start_and_restart_through_the_service_layer(lab, faults):
    url = f"https://{addr(lab, 'auth1')}/healthz"
    ctx = ssl.create_default_context(cafile=str(lab.settings.state_dir / "pki" / "ca.crt"))
    stop = faults.inject(FaultSpec("auth1", "proc.stop", {"program": "nginx"}, ttl_s=60))
    assert faults.verify("auth1", stop["id"])["ok"]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, context=ctx, timeout=2)
    faults.heal("auth1", stop["id"])
    assert urllib.request.urlopen(url, context=ctx, timeout=5).status == 200
    restart = faults.inject(FaultSpec("auth1", "proc.restart", {"program": "nginx"}, ttl_s=30))
    assert faults.verify("auth1", restart["id"])["ok"]
    assert urllib.request.urlopen(url, context=ctx, timeout=5).status == 200
