"""Scenarios are data: one YAML file per scenario id under scenarios/, variants allowed.

Each file is built into typed models (chaos_runner.model.build) that refuse unknown keys; a
variant deep-merges its overrides into the base document and gets its own id and result
row. Defaults of the expectation thresholds are the KPI table of SCENARIOS.md.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chaos_runner.ansible import REPO_ROOT
from chaos_runner.errors import ConfigError
from chaos_runner.model.build import (
    ModelError,
    at_least,
    between,
    build,
    field,
    positive,
    read_yaml,
)

SCENARIO_DIR = REPO_ROOT / "scenarios"
ID_PATTERN = re.compile(r"[a-z]+\.[a-z0-9]+(-[a-z0-9.]+)*")
OP_KINDS = ("query", "nested", "mutation", "increment")
BAD_TOKENS = (
    "none",
    "empty",
    "malformed",
    "alg-none",
    "hs256-public",
    "unknown-kid",
    "bad-signature",
    "expired",
    "wrong-audience",
)
CLIENT_FAULTS = ("client.bad-token",)
Expectation = Literal["tolerate", "fail-fast", "reject", "consistent"]


def _id_check(value: str) -> str | None:
    return None if ID_PATTERN.fullmatch(value) else f"{value!r} is not an id like net.db-stopped"


def _mix_check(mix: dict[str, float]) -> str | None:
    unknown = sorted(set(mix) - set(OP_KINDS))
    if unknown:
        return f"unknown operation {unknown[0]!r} (allowed: {', '.join(OP_KINDS)})"
    if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        return "weights must be >= 0 with a positive sum"
    return None


@dataclass(frozen=True)
class FaultStep:
    kind: str
    host: str
    params: dict[str, Any] = field({})
    ttl_s: float | None = field(None, check=positive)


@dataclass(frozen=True)
class LoadProfile:
    mode: Literal["open", "closed"] = "open"
    rate: float = field(40.0, check=between(0.1, 5000))
    concurrency: int = field(8, check=between(1, 1024))
    max_in_flight: int = field(256, check=between(1, 4096))
    timeout_s: float = field(12.0, check=between(0.1, 120))
    mix: dict[str, float] = field({"query": 6, "nested": 2, "mutation": 2}, check=_mix_check)
    max_ops: int = field(50_000, check=between(1, 1_000_000))


@dataclass(frozen=True)
class Windows:
    window_ms: int = field(250, check=between(50, 10_000))
    settle_s: float = field(1.0, check=between(0, 60))
    baseline_s: float = field(3.0, check=between(0.1, 600))
    hold_s: float = field(10.0, check=between(0, 3600))
    recovery_s: float = field(8.0, check=between(0.1, 600))


@dataclass(frozen=True)
class Expect:
    class_: Expectation
    recovery_s: float = field(5.0, check=positive)
    lost_writes: int = field(0, check=at_least(0))
    crashes: int = field(0, check=at_least(0))
    p95_factor: float = field(3.0, check=positive)
    p95_budget_ms: float | None = field(None, check=positive)
    throughput_min: float = field(0.8, check=between(0, 1))
    max_error_rate: float = field(0.0, check=between(0, 1))
    error_clarity: float = field(1.0, check=between(0, 1))
    memory_mb: float = field(500.0, check=positive)
    hang_s: float | None = field(None, check=positive)
    client_deadline_is_fail_fast: bool = False
    slo_p95_ms: float | None = field(None, check=positive)


@dataclass(frozen=True)
class Abort:
    max_error_rate: float | None = field(None, check=between(0, 1))
    sustained_s: float = field(2.0, check=positive)
    lab_health: bool = True


@dataclass(frozen=True)
class Variant:
    id: str = field(check=_id_check)
    description: str | None = None
    set: dict[str, Any] = field({})


@dataclass(frozen=True)
class ScenarioDoc:
    id: str = field(check=_id_check)
    phase: int = field(check=between(1, 5))
    description: str = field(check=lambda v: None if v.strip() else "must not be empty")
    expect: Expect = field()
    app: str = "app1"
    tags: list[str] = field([])
    suites: list[str] = field([])
    faults: list[FaultStep] = field([])
    load: LoadProfile = field(LoadProfile())
    windows: Windows = field(Windows())
    abort: Abort = field(Abort())
    counter: str | None = None
    skip: str | None = None
    variants: list[Variant] = field([])


@dataclass(frozen=True)
class Scenario:
    """One runnable scenario (a file, or one variant of it)."""

    doc: ScenarioDoc
    source: str

    @property
    def id(self) -> str:
        return self.doc.id

    @property
    def expect(self) -> Expect:
        return self.doc.expect

    @property
    def bound_s(self) -> float:
        return _bound(self.doc)

    def as_dict(self) -> dict[str, Any]:
        import dataclasses

        out = dataclasses.asdict(self.doc)
        out["expect"]["class"] = out["expect"].pop("class_")
        out.pop("variants")
        out["source"] = self.source
        return out


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for k, v in override.items():
            out[k] = _deep_merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(override, list):
        merged = [copy.deepcopy(b) for b in base]
        for i, v in enumerate(override):
            merged[i : i + 1] = [_deep_merge(base[i], v) if i < len(base) else copy.deepcopy(v)]
        return merged
    return copy.deepcopy(override)


def _semantic_checks(doc: ScenarioDoc, source: str, hosts: Iterable[str] | None) -> None:
    w = doc.windows
    if w.baseline_s * 1000 / w.window_ms < 10:
        raise ModelError(
            source,
            "windows.baseline_s",
            f"{w.baseline_s} s holds fewer than 10 windows of {w.window_ms} ms (a baseline "
            "needs >= 10)",
        )
    needed = doc.expect.recovery_s + 3 * w.window_ms / 1000
    if w.recovery_s < needed:
        raise ModelError(
            source,
            "windows.recovery_s",
            f"{w.recovery_s} s cannot show recovery within expect.recovery_s="
            f"{doc.expect.recovery_s} s plus 3 windows (needs >= {needed:g} s)",
        )
    if doc.faults and w.hold_s <= 0:
        raise ModelError(source, "windows.hold_s", "a scenario with faults needs hold_s > 0")
    load = doc.load
    if load.mode == "open" and load.rate * _bound(doc) > load.max_ops:
        raise ModelError(
            source,
            "load.max_ops",
            f"{load.rate}/s for {_bound(doc):g} s needs more than max_ops={load.max_ops}",
        )
    if doc.counter is None and load.mix.get("increment", 0) > 0:
        raise ModelError(source, "counter", "required when load.mix has increment operations")
    known_hosts = set(hosts) if hosts is not None else None
    if known_hosts is not None and doc.app not in known_hosts:
        raise ModelError(source, "app", f"unknown lab host {doc.app!r}")
    from chaos_runner.faults.channel import validate_request

    for i, step in enumerate(doc.faults):
        key = f"faults[{i}]"
        if step.ttl_s is not None and step.ttl_s <= w.hold_s:
            raise ModelError(
                source, f"{key}.ttl_s", f"{step.ttl_s} s expires before hold_s={w.hold_s} s ends"
            )
        if step.kind.startswith("client."):
            _client_fault_check(step, source, key)
            continue
        if known_hosts is not None and step.host not in known_hosts:
            raise ModelError(
                source,
                f"{key}.host",
                f"unknown lab host {step.host!r} (known: {', '.join(sorted(known_hosts))})",
            )
        params = {}
        for name, value in step.params.items():
            ref = host_reference(value)
            if ref is not None and known_hosts is not None and ref not in known_hosts:
                raise ModelError(source, f"{key}.params.{name}", f"unknown lab host {ref!r}")
            # A reference stands for an address; validate the rest with a placeholder.
            params[name] = "198.18.0.1" if ref is not None else value
        problem = validate_request(step.kind, params, ttl_s=step.ttl_s or w.hold_s + 30)
        if problem:
            param_key, _, message = problem.partition(": ")
            dotted = f"{key}.{param_key}" if param_key.startswith("params") else f"{key}.kind"
            raise ModelError(source, dotted, message if param_key.startswith("params") else problem)


def host_reference(value: Any) -> str | None:
    """`"@proxy1"` in fault parameters names a host whose address is filled in at run time,
    so the same scenario file runs on the embedded lab and on a cluster inventory."""
    if isinstance(value, str) and value.startswith("@") and len(value) > 1:
        return value[1:]
    return None


def resolve_params(params: dict[str, Any], addresses: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    for name, value in params.items():
        ref = host_reference(value)
        if ref is not None:
            if ref not in addresses:
                raise ConfigError(f"params.{name}: unknown host {ref!r}")
            value = addresses[ref]
        out[name] = value
    return out


def _bound(doc: ScenarioDoc) -> float:
    """Phase time of one attempt (settle + baseline + hold + recovery)."""
    w = doc.windows
    return w.settle_s + w.baseline_s + w.hold_s + w.recovery_s


def _client_fault_check(step: FaultStep, source: str, key: str) -> None:
    if step.kind not in CLIENT_FAULTS:
        raise ModelError(source, f"{key}.kind", f"unknown client fault {step.kind!r}")
    if step.host != "controller":
        raise ModelError(source, f"{key}.host", "client faults run on 'controller'")
    allowed = {"tokens", "share", "ops"}
    unknown = sorted(set(step.params) - allowed)
    if unknown:
        raise ModelError(
            source,
            f"{key}.params.{unknown[0]}",
            f"unknown parameter (allowed: {', '.join(sorted(allowed))})",
        )
    tokens = step.params.get("tokens")
    if not isinstance(tokens, list) or not tokens or any(t not in BAD_TOKENS for t in tokens):
        raise ModelError(
            source, f"{key}.params.tokens", f"expected a non-empty list of {', '.join(BAD_TOKENS)}"
        )
    share = step.params.get("share", 1.0)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ModelError(
            source, f"{key}.params.share", f"expected a number in (0, 1], got {share!r}"
        )
    ops = step.params.get("ops", list(OP_KINDS))
    if not isinstance(ops, list) or any(o not in OP_KINDS for o in ops):
        raise ModelError(source, f"{key}.params.ops", f"expected a list of {', '.join(OP_KINDS)}")


def load_file(path: Path, hosts: Iterable[str] | None = None) -> list[Scenario]:
    """Every scenario (base and variants) of one file; ConfigError names file and key."""
    data, source = read_yaml(path)
    base = build(ScenarioDoc, data, source)
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    if base.id != stem and not base.variants:
        raise ModelError(source, "id", f"{base.id!r} must match the file name {stem!r}")
    hosts = list(hosts) if hosts is not None else None
    out: list[Scenario] = []
    docs = [base] if not base.variants else []
    for i, variant in enumerate(base.variants):
        if not variant.id.startswith(base.id):
            raise ModelError(source, f"variants[{i}].id", f"must start with {base.id!r}")
        if {"id", "variants"} & set(variant.set):
            raise ModelError(source, f"variants[{i}].set", "cannot change id or variants")
        merged = _deep_merge(data, variant.set)
        merged.update(id=variant.id, variants=[])
        if variant.description:
            merged["description"] = variant.description
        docs.append(build(ScenarioDoc, merged, source, f"variants[{i}].set"))
    for doc in docs:
        where = source if doc is base else f"{source} (variant {doc.id})"
        _semantic_checks(doc, where, hosts)
        out.append(Scenario(doc, source))
    return out


@dataclass
class Catalog:
    scenarios: dict[str, Scenario]

    @classmethod
    def load(cls, directory: Path = SCENARIO_DIR, hosts: Iterable[str] | None = None) -> Catalog:
        if not directory.is_dir():
            raise ConfigError(f"{directory}: no scenario directory")
        hosts = list(hosts) if hosts is not None else None
        found: dict[str, Scenario] = {}
        for path in sorted(directory.glob("*.y*ml")):
            for scenario in load_file(path, hosts):
                if scenario.id in found:
                    raise ModelError(
                        scenario.source,
                        "id",
                        f"{scenario.id!r} is also defined in {found[scenario.id].source}",
                    )
                found[scenario.id] = scenario
        return cls(found)

    def select(self, selectors: Iterable[str]) -> list[Scenario]:
        """By id, `tag:NAME`, `suite:NAME` or a bare suite/tag name; catalog order."""
        chosen: dict[str, Scenario] = {}
        for sel in selectors:
            kind, _, name = sel.partition(":") if ":" in sel else ("", "", sel)
            matched = [
                s
                for s in self.scenarios.values()
                if (kind in ("", "id") and s.id == name)
                or (kind in ("", "suite") and name in s.doc.suites)
                or (kind in ("", "tag") and name in s.doc.tags)
            ]
            if not matched:
                raise ConfigError(f"no scenario, suite or tag matches {sel!r}")
            chosen.update((s.id, s) for s in matched)
        return [s for s in self.scenarios.values() if s.id in chosen]
