"""What this host's kernel and tools can do (cached in faults/capabilities.json)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from chaosfault.cgroups import cgroup_layout
from chaosfault.iptables import ipt
from chaosfault.processes import run

if TYPE_CHECKING:
    from chaosfault.agent import Agent


def capabilities(agent: Agent, refresh: bool = False) -> dict[str, Any]:
    cache = agent.root / "faults" / "capabilities.json"
    if cache.exists() and not refresh:
        cached: dict[str, Any] = json.loads(cache.read_text())
        return cached
    caps: dict[str, Any] = {"cgroup": cgroup_layout()}
    # Try each qdisc on a throwaway veth pair in this host's network namespace, never on a
    # link that carries traffic (some kernels here have no dummy links; every kernel with
    # network namespaces has veth).
    probe = "chaosprobe0"
    run(["ip", "link", "add", probe, "type", "veth", "peer", "name", "chaosprobe1"], check=False)

    def qdisc_works(*spec: str) -> bool:
        ok = run(["tc", "qdisc", "add", "dev", probe, "root", *spec], check=False).returncode == 0
        run(["tc", "qdisc", "del", "dev", probe, "root"], check=False)
        return ok

    caps["netem"] = qdisc_works("netem", "delay", "1ms")
    caps["tbf"] = qdisc_works("tbf", "rate", "1mbit", "burst", "32kbit", "latency", "50ms")
    run(["ip", "link", "del", probe], check=False)
    caps["iptables"] = ipt("-n", "-L", "INPUT", check=False).returncode == 0
    python = agent.config.get("nfqueue_python")
    caps["nfqueue"] = (
        bool(python) and run([python, "-c", "import netfilterqueue"], check=False).returncode == 0
    )
    cache.write_text(json.dumps(caps, sort_keys=True))
    return caps
