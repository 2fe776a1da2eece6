"""faults: the agent is installed, probes capabilities, and inject/verify/heal work."""

import json

CLI = (
    "/usr/bin/python3 /opt/chaoslab/faults/chaosfault.pyz"
    " --config /srv/chaoslab/mol-flt/faults/agent.json"
)


def agent(host, *args):
    cmd = host.run(f"{CLI} {' '.join(args)}")
    return cmd.rc, json.loads(cmd.stdout)


def test_capabilities_are_probed(host):
    rc, answer = agent(host, "capabilities")
    assert rc == 0
    caps = answer["result"]
    assert caps["iptables"] and caps["tbf"] and caps["nfqueue"]
    assert caps["cgroup"] in ("v1", "v2")


def test_inject_verify_heal_roundtrip(host):
    spec = json.dumps({"kind": "net.reset", "id": "mol", "ttl_s": 30, "params": {"port": 5432}})
    rc, answer = agent(host, "inject", f"'{spec}'")
    assert rc == 0 and answer["result"]["mechanism"] == "iptables"
    assert "CHAOS-IN" in host.check_output("iptables -S CHAOS-IN")
    rc, answer = agent(host, "verify", "mol")
    assert answer["result"]["ok"] is True
    rc, answer = agent(host, "heal", "mol")
    assert answer["result"]["healed"] is True
    rc, answer = agent(host, "verify", "mol")
    assert answer["result"]["ok"] is False


def test_postgresql_setting_fault_and_heal_all(host):
    spec = json.dumps(
        {"kind": "pg.setting", "ttl_s": 30, "params": {"name": "work_mem", "value": "64kB"}}
    )
    rc, _ = agent(host, "inject", f"'{spec}'")
    assert rc == 0
    rc, answer = agent(host, "heal", "--all")
    assert rc == 0
    remaining = answer["result"]["remaining"]
    assert remaining["left"] == [], remaining
    assert remaining["pg_settings"] == ""  # db host: PostgreSQL was asked, not skipped


def test_bad_input_is_refused_with_exit_2(host):
    cmd = host.run(f"""{CLI} inject '{{"kind": "net.loss", "params": {{"probability": 2}}}}'""")
    assert cmd.rc == 2
    assert "params.probability" in cmd.stdout
