"""The lab's own iptables chains (CHAOS-IN from INPUT, CHAOS-OUT from OUTPUT) and the
rules faults add to them, each tagged with a `chaoslab:<id>` comment."""

from __future__ import annotations

import subprocess
from typing import Any

from chaosfault.processes import run

CHAIN_IN = "CHAOS-IN"
CHAIN_OUT = "CHAOS-OUT"
CHAINS = ((CHAIN_IN, "INPUT"), (CHAIN_OUT, "OUTPUT"))


def ipt(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["iptables", "-w", "5", *args], check=check)


def ensure_chains() -> None:
    for chain, parent in CHAINS:
        if ipt("-n", "-L", chain, check=False).returncode != 0:
            ipt("-N", chain)
        if ipt("-C", parent, "-j", chain, check=False).returncode != 0:
            ipt("-I", parent, "1", "-j", chain)


def rule_args(record: dict[str, Any], chain: str, match: list[str], target: list[str]) -> list[str]:
    comment = ["-m", "comment", "--comment", f"chaoslab:{record['id']}"]
    return [chain, *match, *comment, *target]


def add_rule(record: dict[str, Any], chain: str, match: list[str], target: list[str]) -> None:
    ensure_chains()
    args = rule_args(record, chain, match, target)
    if ipt("-C", *args, check=False).returncode != 0:
        ipt("-A", *args)
    record["artifacts"].setdefault("rules", []).append(args)


def remove_rules(record: dict[str, Any]) -> None:
    for args in record["artifacts"].get("rules", []):
        while ipt("-C", *args, check=False).returncode == 0:
            ipt("-D", *args, check=False)


def rule_packets(record: dict[str, Any]) -> int:
    total = 0
    for chain in (CHAIN_IN, CHAIN_OUT):
        proc = ipt("-n", "-v", "-x", "-L", chain, check=False)
        for line in proc.stdout.splitlines():
            if f"chaoslab:{record['id']}" in line:
                total += int(line.split()[0])
    return total


def rules_present(record: dict[str, Any]) -> bool:
    rules = record["artifacts"].get("rules", [])
    return bool(rules) and all(ipt("-C", *a, check=False).returncode == 0 for a in rules)


def lab_rules() -> list[str]:
    """Every rule in the lab's chains (`-A ...` lines), whatever fault added it."""
    rules = []
    for chain in (CHAIN_IN, CHAIN_OUT):
        proc = ipt("-S", chain, check=False)
        rules += [line for line in proc.stdout.splitlines() if line.startswith("-A")]
    return rules


def remove_chains() -> list[str]:
    """Flush, unhook and delete the lab's chains; the rules that were in them. The chains
    themselves are the lab's own (every net inject hooks them): an empty one is removed
    without being reported, so a sweep that found no fault reports nothing."""
    swept = [f"iptables rule {rule}" for rule in lab_rules()]
    for chain, parent in CHAINS:
        if ipt("-n", "-L", chain, check=False).returncode == 0:
            ipt("-F", chain, check=False)
            while ipt("-C", parent, "-j", chain, check=False).returncode == 0:
                ipt("-D", parent, "-j", chain, check=False)
            ipt("-X", chain, check=False)
    return swept
