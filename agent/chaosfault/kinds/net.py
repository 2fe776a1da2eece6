"""Network faults: iptables rules in the lab's chains, the lab's tbf / netem qdisc, and an
NFQUEUE worker for delay / jitter / reorder / corrupt where the kernel has no netem."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaosfault.capabilities import capabilities
from chaosfault.errors import FaultFailed, FaultInputError
from chaosfault.fault import Artifact, Family, Fault, Record
from chaosfault.iptables import (
    CHAIN_IN,
    CHAIN_OUT,
    add_rule,
    lab_rules,
    remove_chains,
    remove_rules,
    rule_packets,
    rules_present,
)
from chaosfault.processes import is_our_process, kill, process_state, wait_dead
from chaosfault.tc import TC_HANDLE, add_lab_qdisc, del_lab_qdisc, has_lab_qdisc, lab_qdisc
from chaosfault.validation import _choice, _ip, _number

if TYPE_CHECKING:
    from chaosfault.agent import Agent


class IptablesFault(Fault):
    """Faults made of rules in this host's CHAOS-IN / CHAOS-OUT chains."""

    def rules(self, params: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
        raise NotImplementedError

    def inject(self, agent: Agent, record: Record) -> None:
        for chain, match, target in self.rules(record["params"]):
            add_rule(record, chain, match, target)

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        present = rules_present(record)
        return present, f"rules present={present}, matched packets={rule_packets(record)}"

    def heal(self, agent: Agent, record: Record) -> None:
        remove_rules(record)


def _directions(params: dict[str, Any]) -> list[str]:
    direction = params.get("direction", "both")
    return ["in", "out"] if direction == "both" else [direction]


class Partition(IptablesFault):
    params = ("peer", "direction", "port")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {
            "peer": _ip(params, "peer"),
            "direction": _choice(params, "direction", ("both", "in", "out"), "both"),
        }
        if "port" in params:
            out["port"] = _number(params, "port", 1, 65535, integer=True)
        return out

    def rules(self, params: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
        out = []
        for d in _directions(params):
            match = ["-s" if d == "in" else "-d", params["peer"]]
            if "port" in params:
                match += ["-p", "tcp", "--dport" if d == "in" else "--sport", str(params["port"])]
            out.append((CHAIN_IN if d == "in" else CHAIN_OUT, match, ["-j", "DROP"]))
        return out


class Reset(IptablesFault):
    params = ("port", "peer")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {"port": _number(params, "port", 1, 65535, integer=True)}
        if params.get("peer") is not None:
            out["peer"] = _ip(params, "peer")
        return out

    def rules(self, params: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
        match = ["-p", "tcp", "--dport", str(params["port"])]
        if params.get("peer"):
            match = ["-s", params["peer"], *match]
        return [(CHAIN_IN, match, ["-j", "REJECT", "--reject-with", "tcp-reset"])]


class Loss(IptablesFault):
    params = ("probability", "peer", "direction")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {
            "probability": _number(params, "probability", 0.0, 1.0),
            "direction": _choice(params, "direction", ("both", "in", "out"), "in"),
        }
        if params.get("peer") is not None:
            out["peer"] = _ip(params, "peer")
        return out

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "iptables-statistic"

    def rules(self, params: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
        out = []
        for d in _directions(params):
            match = ["-s" if d == "in" else "-d", params["peer"]] if params.get("peer") else []
            match += [
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                f"{params['probability']:.4f}",
            ]
            out.append((CHAIN_IN if d == "in" else CHAIN_OUT, match, ["-j", "DROP"]))
        return out


class Bandwidth(Fault):
    params = ("rate_kbit", "burst_kbit", "latency_ms")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "rate_kbit": _number(params, "rate_kbit", 8, 10_000_000, integer=True),
            "burst_kbit": _number(params, "burst_kbit", 8, 1_000_000, default=32, integer=True),
            "latency_ms": _number(params, "latency_ms", 1, 60_000, default=400, integer=True),
        }

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "tc-tbf"

    def inject(self, agent: Agent, record: Record) -> None:
        p = record["params"]
        add_lab_qdisc(
            agent,
            record,
            "tbf",
            "rate",
            f"{p['rate_kbit']}kbit",
            "burst",
            f"{p['burst_kbit']}kbit",
            "latency",
            f"{p['latency_ms']}ms",
        )

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        out = lab_qdisc(agent)
        ok = f"qdisc tbf {TC_HANDLE}" in out
        sent = re.search(r"Sent (\d+) bytes (\d+) pkt", out)
        return ok, f"tbf present={ok}, {sent.group(0) if sent else 'no counters'}"

    def heal(self, agent: Agent, record: Record) -> None:
        del_lab_qdisc(agent)


class QueueFault(Fault):
    """Delay / jitter / reorder / corrupt on packets *received* by this host, by an NFQUEUE
    worker (netem is used instead where the kernel has it). Queued on INPUT - never on the
    sender's OUTPUT, which collapses TCP - and always with --queue-bypass, so a dead worker
    lets traffic through instead of blackholing it."""

    params = ("delay_ms", "jitter_ms", "peer", "port", "port_side", "syn_only", "probability")
    op = "delay"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "delay_ms": _number(params, "delay_ms", 0, 30_000, default=100),
            "jitter_ms": _number(params, "jitter_ms", 0, 30_000, default=0),
            "syn_only": bool(params.get("syn_only", False)),
            "probability": _number(params, "probability", 0.0, 1.0, default=1.0),
            "port_side": _choice(params, "port_side", ("local", "remote"), "local"),
        }
        if params.get("peer") is not None:
            out["peer"] = _ip(params, "peer")
        if params.get("port") is not None:
            out["port"] = _number(params, "port", 1, 65535, integer=True)
        if out["syn_only"] and "port" not in out:
            raise FaultInputError("params.port: required with syn_only (which connections to slow)")
        return out

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        # netem shapes a whole link's egress; a peer or port selector needs the NFQUEUE
        # worker (tc classifiers are not assumed to exist).
        whole_link = not params.get("peer") and not params.get("port")
        return "netem" if whole_link and capabilities(agent).get("netem") else "nfqueue"

    def netem_args(self, p: dict[str, Any]) -> list[str]:
        delay = ["delay", f"{p['delay_ms']:g}ms"] + (
            [f"{p['jitter_ms']:g}ms"] if p["jitter_ms"] else []
        )
        if self.op == "reorder":
            return [*delay, "reorder", f"{(1 - p['probability']) * 100:.2f}%"]
        if self.op == "corrupt":
            return ["corrupt", f"{p['probability'] * 100:.2f}%"]
        return delay

    def inject(self, agent: Agent, record: Record) -> None:
        p = record["params"]
        if record["mechanism"] == "netem":
            add_lab_qdisc(agent, record, "netem", *self.netem_args(p))
            return
        queue = _free_queue(agent)
        python = agent.config.get("nfqueue_python")
        if not python or not Path(python).exists():
            raise FaultFailed(
                "the NFQUEUE worker's Python (with NetfilterQueue) is not installed:"
                " run the faults role"
            )
        log_path = agent.root / "faults" / f"nfqueue-{record['id']}.log"
        with open(log_path, "w") as worker_log:
            worker_pid = agent.spawn(
                "nfqueue",
                record["id"],
                str(queue),
                self.op,
                json.dumps(p),
                python=python,
                stderr=worker_log,
            )
        record["artifacts"]["worker_pid"] = worker_pid
        record["artifacts"]["queue"] = queue
        ready = agent.root / "faults" / f"nfqueue-{record['id']}.ready"
        for _ in range(100):
            # Gone or a zombie: the worker is the serve process's child, never reaped by it.
            if ready.exists() or process_state(worker_pid) in ("gone", "Z", "X"):
                break
            time.sleep(0.02)
        if not ready.exists():
            raise FaultFailed(
                f"NFQUEUE worker did not start (see faults/nfqueue-{record['id']}.log)"
            )
        match = ["-s", p["peer"]] if p.get("peer") else []
        if p.get("port"):
            match += [
                "-p",
                "tcp",
                "--dport" if p["port_side"] == "local" else "--sport",
                str(p["port"]),
            ]
            if p["syn_only"]:
                match += ["--syn"]
        add_rule(
            record, CHAIN_IN, match, ["-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"]
        )

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        if record["mechanism"] == "netem":
            out = lab_qdisc(agent)
            return f"qdisc netem {TC_HANDLE}" in out, out.strip().replace("\n", " | ")
        pid = record["artifacts"].get("worker_pid")
        alive = bool(pid) and is_our_process(pid, "nfqueue", record["id"])
        present = rules_present(record)
        return (
            alive and present,
            f"worker alive={alive}, rule present={present}, queued packets={rule_packets(record)}",
        )

    def heal(self, agent: Agent, record: Record) -> None:
        if record["mechanism"] == "netem":
            del_lab_qdisc(agent)
            return
        remove_rules(record)
        pid = record["artifacts"].get("worker_pid")
        if pid and is_our_process(pid, "nfqueue", record["id"]):
            kill(pid, signal.SIGTERM)
            if not wait_dead(pid, timeout_s=1.0):
                kill(pid, signal.SIGKILL)
        for suffix in ("ready",):
            (agent.root / "faults" / f"nfqueue-{record['id']}.{suffix}").unlink(missing_ok=True)


class Reorder(QueueFault):
    op = "reorder"


class Corrupt(QueueFault):
    op = "corrupt"


class Duplicate(Fault):
    params = ("probability",)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"probability": _number(params, "probability", 0.0, 1.0)}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        if capabilities(agent).get("netem"):
            return "netem"
        return (
            "skipped: duplication needs sch_netem, which this kernel lacks; an NFQUEUE "
            "verdict can accept, drop, delay or rewrite a packet but not emit a second copy"
        )

    def inject(self, agent: Agent, record: Record) -> None:
        add_lab_qdisc(
            agent, record, "netem", "duplicate", f"{record['params']['probability'] * 100:.2f}%"
        )

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        out = lab_qdisc(agent)
        return f"qdisc netem {TC_HANDLE}" in out, out.strip()

    def heal(self, agent: Agent, record: Record) -> None:
        del_lab_qdisc(agent)


def _free_queue(agent: Agent) -> int:
    used = {r["artifacts"].get("queue") for r in agent.records()}
    for queue in range(100, 200):
        if queue not in used:
            return queue
    raise FaultFailed("no free NFQUEUE number (100-199)")


# ------------------------------------------------------------ NFQUEUE worker


def nfqueue_worker(
    agent: Agent, fault_id: str, queue: int, op: str, params: dict[str, Any]
) -> None:
    import heapq as hq
    import random
    import select

    from netfilterqueue import NetfilterQueue  # type: ignore[import-not-found]

    delay = params.get("delay_ms", 0) / 1000.0
    jitter = params.get("jitter_ms", 0) / 1000.0
    probability = params.get("probability", 1.0)
    pending: list[tuple[float, int, Any]] = []
    seq = 0

    def on_packet(pkt: Any) -> None:
        nonlocal seq
        if op == "corrupt":
            if random.random() < probability:
                payload = bytearray(pkt.get_payload())
                if len(payload) > 40:
                    i = random.randrange(28, len(payload))
                    payload[i] ^= 1 << random.randrange(8)
                    pkt.set_payload(bytes(payload))
            pkt.accept()
            return
        if op == "reorder" and random.random() >= probability:
            pkt.accept()
            return
        hold = max(0.0, random.gauss(delay, jitter) if jitter else delay)
        if hold <= 0:
            pkt.accept()
            return
        seq += 1
        hq.heappush(pending, (time.monotonic() + hold, seq, pkt))

    nfq = NetfilterQueue()
    nfq.bind(queue, on_packet, max_len=65536)
    ready = agent.root / "faults" / f"nfqueue-{fault_id}.ready"
    stop = False

    def on_term(_sig: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    ready.write_text(str(os.getpid()))
    fd = nfq.get_fd()
    try:
        while not stop:
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                hq.heappop(pending)[2].accept()
            timeout = max(0.0, pending[0][0] - now) if pending else 0.2
            readable, _, _ = select.select([fd], [], [], min(timeout, 0.2))
            if readable:
                nfq.run(block=False)
    finally:
        for _, _, pkt in pending:
            pkt.accept()
        nfq.unbind()


def _nfqueue(agent: Agent, args: list[str]) -> None:
    nfqueue_worker(agent, args[0], int(args[1]), args[2], json.loads(args[3]))


def _sweep_qdisc(agent: Agent) -> list[str]:
    if not has_lab_qdisc(agent):
        return []
    del_lab_qdisc(agent)
    return [f"qdisc {TC_HANDLE} on {agent.iface}"]


FAMILY = Family(
    name="net",
    faults={
        "net.partition": Partition(),
        "net.reset": Reset(),
        "net.loss": Loss(),
        "net.bandwidth": Bandwidth(),
        "net.delay": QueueFault(),
        "net.reorder": Reorder(),
        "net.corrupt": Corrupt(),
        "net.duplicate": Duplicate(),
    },
    artifacts=(
        Artifact("iptables_rules", lambda agent: lab_rules(), lambda agent: remove_chains()),
        Artifact("qdisc", has_lab_qdisc, _sweep_qdisc),
    ),
    workers={"nfqueue": _nfqueue},
)
